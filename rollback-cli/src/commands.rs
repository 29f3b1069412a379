//! One function per subcommand; each returns its exit code.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::CommandFactory;
use rollback_core::load::PlanLoader;
use rollback_core::{CancelHandle, Engine, Error, HistoryQuery, Plan, Registry, Report, Result, RunId, RunOptions};
use serde::Serialize;

use crate::args::{Cli, Command, Output, RunArgs};
use crate::exit;
use crate::home::Home;
use crate::kinds;
use crate::live::{Live, Mode};
use crate::show;

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<i32> {
    if cli.lease_ttl.is_zero() {
        return Err(Error::invalid_input("--lease-ttl / ROLLBACK_LEASE_TTL must be longer than zero"));
    }
    let settings = rollback_core::Settings { host: cli.host.clone(), lease_ttl: cli.lease_ttl, ..Default::default() };
    let home = Home::new(cli.home.clone(), cli.journal.clone(), settings);
    let mode = Mode::detect(cli.quiet);
    match cli.command {
        Command::Validate(arg) => validate(&arg.plan),
        Command::DryRun { plan, output } => dry_run(&plan.plan, output).await,
        Command::Run(args) => run_plan(&home, args, false, mode).await,
        Command::Drill(args) => run_plan(&home, args, true, mode).await,
        Command::Resume { run, no_wait, output } => resume(&home, &run, no_wait, output, mode).await,
        Command::Approve { run, step, by, reject } => approve(&home, &run, &step, &by, reject).await,
        Command::Cancel { run, by } => cancel(&home, &run, &by).await,
        Command::Report { run, output, html } => report(&home, &run, output, html.as_deref()).await,
        Command::History { target, since, output } => history(&home, target, since.as_deref(), output).await,
        Command::Runs { limit, output } => runs(&home, limit, output).await,
        Command::Kinds { output } => {
            let kinds = kinds::registry().kinds();
            match output {
                Output::Text => print!("{}", kinds::list(&kinds)),
                Output::Json => print_json(&kinds)?,
            }
            Ok(exit::OK)
        }
        Command::Explain { kind } => {
            print!("{}", kinds::explain(&kinds::registry().kinds(), &kind)?);
            Ok(exit::OK)
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "rollback", &mut std::io::stdout());
            Ok(exit::OK)
        }
        Command::Verify(command) => crate::verify::run(&home, command).await,
        Command::Man => {
            clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .map_err(|e| Error::internal(format!("cannot write the man page: {e}")))?;
            Ok(exit::OK)
        }
    }
}

fn print_json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::internal(e.to_string()))?;
    println!("{text}");
    Ok(())
}

/// Loads a plan through core's strict loader (file:line:col, `${VAR}` as text, every
/// kind's config checked) — before any home is created or server contacted.
fn load(registry: &Registry, path: &Path) -> Result<Plan> {
    PlanLoader::new().registry(registry).load_file(path)
}

fn validate(path: &Path) -> Result<i32> {
    let plan = load(&kinds::registry(), path)?;
    let steps = plan.steps().count();
    println!(
        "{}: ok — plan {:?}: {} stage(s), {steps} step(s), {} target(s), {} verifier(s), {} snapshot(s)",
        path.display(),
        plan.name,
        plan.stages.len(),
        plan.targets.len(),
        plan.verifiers.len(),
        plan.snapshots.len()
    );
    Ok(exit::OK)
}

async fn dry_run(path: &Path, output: Output) -> Result<i32> {
    let registry = kinds::registry();
    let plan = load(&registry, path)?;
    let dry = Home::offline(registry).dry_run(&plan).await?;
    match output {
        Output::Text => print!("{}", show::dry_run(&dry)),
        Output::Json => print_json(&dry)?,
    }
    Ok(exit::OK)
}

/// Ctrl-C cancels at the next step boundary; a second one exits at once.
fn on_interrupt(cancel: CancelHandle) -> Arc<AtomicBool> {
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        flag.store(true, Ordering::SeqCst);
        cancel.cancel();
        crate::live::write_stderr(
            b"interrupted: stopping at the next step boundary (the run stays journaled; Ctrl-C again exits now)\n",
        );
        if tokio::signal::ctrl_c().await.is_ok() {
            crate::live::write_stderr(b"interrupted again: exiting; `rollback resume` observes what was in flight\n");
            std::process::exit(exit::INTERRUPTED);
        }
    });
    interrupted
}

/// On a terminal, shows the dry run's summary (data loss first) and asks.
async fn confirm(engine: &Engine, plan: &Plan) -> Result<bool> {
    let dry = engine.dry_run(plan).await?;
    if dry.steps.iter().all(|s| s.change.is_none()) && dry.steps.iter().any(|s| s.satisfied.is_some()) {
        return Ok(true);
    }
    let mut summary = String::new();
    for line in show::data_loss_lines(&dry) {
        summary.push_str(&format!("  DATA LOSS  {line}\n"));
    }
    for s in dry.steps.iter().filter(|s| s.change.is_some() || s.satisfied.is_some()) {
        summary.push_str(&format!("  {:<18} {}\n", s.step.as_str(), s.description));
    }
    crate::live::write_stderr(
        format!("plan {:?} will:\n{summary}Roll back now? [y/N] (--yes skips this) ", dry.plan).as_bytes(),
    );
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await
    .map_err(|e| Error::internal(e.to_string()))?
    .map_err(Error::from)?;
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}

async fn run_plan(home: &Home, args: RunArgs, drill: bool, mode: Mode) -> Result<i32> {
    let mut plan = load(&kinds::registry(), &args.plan.plan)?;
    let engine = home.engine(kinds::registry(), Vec::new()).await?;
    if drill {
        plan.name = format!("drill: {}", plan.name);
    }
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if !args.yes && interactive && !confirm(&engine, &plan).await? {
        eprintln!("not confirmed: nothing was changed");
        return Ok(exit::FAILED);
    }
    let cancel = CancelHandle::new();
    let interrupted = on_interrupt(cancel.clone());
    let reason = args.reason.or_else(|| drill.then(|| "drill".to_owned()));
    let options =
        RunOptions { reason, cancel: Some(cancel), again: args.again, no_wait: args.no_wait, ..Default::default() };
    let live = Live::start(&engine, mode);
    let result = engine.run(plan, options).await;
    live.finish().await;
    let report = result?;
    print_report(&report, args.output)?;
    if drill && args.output == Output::Text {
        let met = report.duration <= report.budget;
        println!(
            "drill took {:.1?} against a budget of {:?}: {}",
            report.duration,
            report.budget,
            if met { "met" } else { "NOT met" }
        );
    }
    Ok(exit::of_report(&report, interrupted.load(Ordering::SeqCst)))
}

fn print_report(report: &Report, output: Output) -> Result<()> {
    match output {
        Output::Json => print_json(report),
        Output::Text => {
            println!("{report}");
            if let Some(next) = show::next_steps(report) {
                println!("{next}");
            }
            Ok(())
        }
    }
}

async fn resume(home: &Home, run: &str, no_wait: bool, output: Output, mode: Mode) -> Result<i32> {
    let run: RunId = run.parse()?;
    let engine = home.require(kinds::registry(), run.as_str()).await?;
    let cancel = CancelHandle::new();
    let interrupted = on_interrupt(cancel.clone());
    let live = Live::start(&engine, mode);
    let result = engine.resume_with(&run, RunOptions { cancel: Some(cancel), no_wait, ..Default::default() }).await;
    live.finish().await;
    let report = result?;
    print_report(&report, output)?;
    Ok(exit::of_report(&report, interrupted.load(Ordering::SeqCst)))
}

async fn approve(home: &Home, run: &str, step: &str, by: &str, reject: bool) -> Result<i32> {
    let run: RunId = run.parse()?;
    let engine = home.require(kinds::registry(), run.as_str()).await?;
    engine.approve(&run, &step.into(), !reject, by).await?;
    println!("{} {step} of {run} as {by}", if reject { "rejected" } else { "approved" });
    Ok(exit::OK)
}

async fn cancel(home: &Home, run: &str, by: &str) -> Result<i32> {
    let run: RunId = run.parse()?;
    let engine = home.require(kinds::registry(), run.as_str()).await?;
    engine.request_cancel(&run, by).await?;
    println!("asked {run} to stop at its next step boundary, as {by}");
    Ok(exit::OK)
}

async fn report(home: &Home, run: &str, output: Output, html: Option<&Path>) -> Result<i32> {
    let run: RunId = run.parse()?;
    let engine = home.require_reading(run.as_str()).await?;
    let report = engine.report(&run).await?;
    print_report(&report, output)?;
    if let Some(path) = html {
        rollback_core::artifact::write_private_atomic(path, crate::html::page(&report).as_bytes())?;
        if output == Output::Text {
            println!("wrote {}", path.display());
        }
    }
    Ok(exit::OK)
}

/// `--since`: an RFC 3339 time, or an age such as `2h` or `7d`.
fn since(text: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&chrono::Utc));
    }
    let age = humantime::parse_duration(text).map_err(|e| {
        Error::invalid_input(format!("--since {text:?} is neither an RFC 3339 time nor an age like 2h or 7d: {e}"))
    })?;
    let age = chrono::Duration::from_std(age).map_err(|e| Error::invalid_input(e.to_string()))?;
    Ok(chrono::Utc::now() - age)
}

async fn history(home: &Home, target: Option<String>, since_text: Option<&str>, output: Output) -> Result<i32> {
    let query = HistoryQuery { target: target.map(Into::into), since: since_text.map(since).transpose()?, until: None };
    let records = match home.reading().await? {
        Some(engine) => engine.history(&query).await?,
        None => Vec::new(),
    };
    match output {
        Output::Text => print!("{}", show::history(&records)),
        Output::Json => print_json(&records)?,
    }
    Ok(exit::OK)
}

async fn runs(home: &Home, limit: usize, output: Output) -> Result<i32> {
    let mut reports = Vec::new();
    if let Some(engine) = home.reading().await? {
        let mut entries = engine.runs().await?;
        entries.sort_by_key(|e| std::cmp::Reverse(e.started_at));
        for entry in entries.into_iter().take(limit) {
            match engine.report(&entry.run).await {
                Ok(report) => reports.push(report),
                Err(err) => tracing::warn!(run = %entry.run, error = %err, "cannot read this run"),
            }
        }
    }
    match output {
        Output::Text => print!("{}", show::runs(&reports)),
        Output::Json => print_json(&reports)?,
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::since;

    #[test]
    fn since_takes_times_and_ages() {
        assert_eq!(since("2025-10-16T18:00:00Z").unwrap().to_rfc3339(), "2025-10-16T18:00:00+00:00");
        let two_hours_ago = since("2h").unwrap();
        let diff = chrono::Utc::now() - two_hours_ago;
        assert!((diff.num_minutes() - 120).abs() <= 1);
        assert!(since("yesterday-ish").unwrap_err().to_string().contains("RFC 3339"));
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        crate::args::Cli::command().debug_assert();
    }
}
