//! `rollback`: validate, dry-run, run, resume and report rollback plans.
//!
//! ```text
//! rollback validate plan.toml          # offline checks, every problem with file:line:col
//! rollback dry-run plan.toml           # every change, its data loss and full preview
//! rollback run plan.toml --reason "p99 > 2s"
//! rollback resume RUN                  # finish a run that stopped
//! rollback kinds; rollback explain k8s-deployment
//! ```
//!
//! Results go to stdout (text, or JSON with `--output json`); the live view and logs
//! go to stderr. Exit codes are listed by `rollback --help`.
//!
//! The library holds the command (the binary only calls [`main`]) and
//! [`registry`], every kind compiled in, for programs that load the same plans.

mod args;
mod commands;
mod exit;
mod home;
mod html;
mod kinds;
mod live;
mod show;
mod verify;

pub use kinds::registry;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::args::Cli;

/// Logs go through the live view (so they print above its bars), to stderr.
#[derive(Clone, Copy)]
struct StderrAboveBars;

impl std::io::Write for StderrAboveBars {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        live::write_stderr(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn init_logging(cli: &Cli) {
    use std::io::IsTerminal;
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal() && live::colour_allowed())
        .with_writer(|| StderrAboveBars)
        .init();
}

/// Parses the command line; a typo'd subcommand or flag gets the closest valid one.
fn parse() -> Cli {
    use clap::CommandFactory;
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let mut err = match Cli::try_parse() {
        Ok(cli) => return cli,
        Err(err) => err,
    };
    let command = Cli::command();
    let (given, suggestion_kind, candidates): (_, _, Vec<String>) = match err.kind() {
        ErrorKind::InvalidSubcommand => (
            err.get(ContextKind::InvalidSubcommand),
            ContextKind::SuggestedSubcommand,
            command.get_subcommands().map(|c| c.get_name().to_string()).collect(),
        ),
        ErrorKind::UnknownArgument => (
            err.get(ContextKind::InvalidArg),
            ContextKind::SuggestedArg,
            std::iter::once(&command)
                .chain(command.get_subcommands())
                .flat_map(|c| c.get_arguments().filter_map(|a| a.get_long().map(|l| format!("--{l}"))))
                .collect(),
        ),
        _ => (None, ContextKind::Custom, Vec::new()),
    };
    let given = match given {
        Some(ContextValue::String(given)) => Some(given.clone()),
        _ => None,
    };
    // The nearest by edit distance replaces clap's guess (which offers `runs` for `rn`).
    if let Some(given) = given {
        let word = given.split('=').next().unwrap_or(&given);
        if let Some(near) = rollback_core::load::closest(word, candidates.iter().map(String::as_str)) {
            err.insert(suggestion_kind, ContextValue::String(near.to_string()));
        }
    }
    err.exit()
}

/// Runs `rollback` with the process's arguments and exits with its code.
pub fn main() -> ! {
    let cli = parse();
    init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            std::process::exit(exit::FAILED);
        }
    };
    let code = runtime.block_on(async {
        match commands::run(cli).await {
            Ok(code) => code,
            Err(err) => {
                eprintln!("error: {err}");
                exit::of_error(&err)
            }
        }
    });
    // Backend clients may hold idle connections; do not wait for them.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    std::process::exit(code);
}
