//! `rollback-plan`: run rollback plans from TOML or JSON files.
//!
//! ```text
//! rollback-plan dry-run PLAN [--home DIR]
//! rollback-plan run PLAN [--reason TEXT] [--home DIR]
//! rollback-plan drill PLAN [--home DIR]          # a rehearsal, timed against the budget
//! rollback-plan resume RUN [--home DIR]
//! rollback-plan approve RUN STEP --by NAME [--reject] [--home DIR]
//! rollback-plan history [--target NAME] [--home DIR]
//! rollback-plan report RUN [--home DIR]
//! ```
//!
//! `${NAME}` inside a string value of a plan file is replaced by the environment
//! variable NAME, as text (an unset one is an error naming it and its line); every
//! problem of the file is reported at once with its line and column. Targets may be of any kind registered in
//! the registry: the local kinds, the built-in verifiers, and each backend's kinds
//! as they land. The journal, locks and artifacts live under `--home` (default
//! `./.rollback`). Exit status: 0 succeeded, 1 failed or escalated, 2 bad usage.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use rollback_core::notify::message;
use rollback_core::{Engine, EventKind, HistoryQuery, Plan, Result, RunId, RunOptions, RunState};

struct Args {
    command: String,
    positional: Vec<String>,
    home: PathBuf,
    reason: Option<String>,
    by: Option<String>,
    reject: bool,
    target: Option<String>,
}

fn usage() -> ! {
    eprintln!(
        "usage: rollback-plan dry-run|run|drill PLAN | resume|report RUN | approve RUN STEP --by NAME [--reject] | history [--target NAME]  [--home DIR]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_else(|| usage());
    let mut parsed = Args {
        command,
        positional: Vec::new(),
        home: ".rollback".into(),
        reason: None,
        by: None,
        reject: false,
        target: None,
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--home" => parsed.home = args.next().unwrap_or_else(|| usage()).into(),
            "--reason" => parsed.reason = Some(args.next().unwrap_or_else(|| usage())),
            "--by" => parsed.by = Some(args.next().unwrap_or_else(|| usage())),
            "--target" => parsed.target = Some(args.next().unwrap_or_else(|| usage())),
            "--reject" => parsed.reject = true,
            other if other.starts_with("--") => usage(),
            other => parsed.positional.push(other.to_owned()),
        }
    }
    parsed
}

/// The plan file, through core's loader: strict (unknown keys refused with the
/// closest name), `${VAR}` substituted inside string values only, every kind's config
/// and every reference checked before any server is contacted.
fn load_plan(engine: &Engine, path: &str) -> Result<Plan> {
    rollback_core::load::PlanLoader::new().registry(engine.registry()).load_file(path)
}

fn engine(home: &Path) -> Result<Engine> {
    Engine::builder(rollback_examples::every_kind()).home(home).try_build()
}

/// Prints progress: people-facing messages, plus one line per step; with a terminal,
/// verification checks overwrite one line.
fn show_progress(engine: &Engine) -> tokio::task::JoinHandle<()> {
    let mut events = engine.subscribe();
    let tty = std::io::stdout().is_terminal();
    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            match &event.kind {
                EventKind::StepStarted { step, description, compensation } => {
                    println!("→ {step}{}: {description}", if *compensation { " (undo)" } else { "" });
                }
                EventKind::StepFinished { step, state, duration, .. } => {
                    println!("  {step}: {state} in {duration:.1?}")
                }
                EventKind::Verification { step, check } if tty => {
                    print!("\r  {step}: {:?} {}          ", check.outcome, check.detail);
                    use std::io::Write;
                    let _ = std::io::stdout().flush();
                }
                _ => {
                    if let Some(text) = message(&event) {
                        println!("{text}");
                    }
                }
            }
        }
    })
}

async fn main_inner(args: Args) -> Result<i32> {
    let exit = |state: RunState| if state == RunState::Succeeded { 0 } else { 1 };
    match (args.command.as_str(), args.positional.as_slice()) {
        ("dry-run", [plan]) => {
            let engine = engine(&args.home)?;
            let plan = load_plan(&engine, plan)?;
            println!("{}", engine.dry_run(&plan).await?);
            Ok(0)
        }
        ("run" | "drill", [plan]) => {
            let engine = engine(&args.home)?;
            let mut plan = load_plan(&engine, plan)?;
            let drill = args.command == "drill";
            if drill {
                plan.name = format!("drill: {}", plan.name);
            }
            let progress = show_progress(&engine);
            let reason = args.reason.or_else(|| drill.then(|| "monthly drill".to_owned()));
            let report = engine.run(plan, RunOptions { reason, ..Default::default() }).await?;
            progress.abort();
            println!("\n{report}");
            if drill {
                let met = report.duration <= report.budget;
                println!(
                    "drill took {:.1?} against a budget of {:?}: {}",
                    report.duration,
                    report.budget,
                    if met { "met" } else { "NOT met" }
                );
            }
            Ok(exit(report.state))
        }
        ("resume", [run]) => {
            let engine = engine(&args.home)?;
            let progress = show_progress(&engine);
            let report = engine.resume(&run.parse::<RunId>()?).await?;
            progress.abort();
            println!("\n{report}");
            Ok(exit(report.state))
        }
        ("report", [run]) => {
            let report = engine(&args.home)?.report(&run.parse::<RunId>()?).await?;
            println!("{report}");
            Ok(exit(report.state))
        }
        ("approve", [run, step]) => {
            let by = args.by.unwrap_or_else(|| usage());
            engine(&args.home)?.approve(&run.parse::<RunId>()?, &step.as_str().into(), !args.reject, &by).await?;
            println!("{} {step} of {run} as {by}", if args.reject { "rejected" } else { "approved" });
            Ok(0)
        }
        ("history", []) => {
            let query = HistoryQuery { target: args.target.map(Into::into), ..Default::default() };
            for record in engine(&args.home)?.history(&query).await? {
                let changes: Vec<String> = record
                    .changes
                    .iter()
                    .map(|c| {
                        format!("{} {} -> {}", c.target, c.from.as_ref().map_or("?".into(), |v| v.to_string()), c.to)
                    })
                    .collect();
                println!(
                    "{}  {:<11} {:>8.1?}  {}  [{}]{}{}",
                    record.date.format("%Y-%m-%d %H:%M:%S"),
                    record.state.as_str(),
                    record.duration,
                    record.plan,
                    changes.join(", "),
                    record.escalation.map(|s| format!(" {s:?}")).unwrap_or_default(),
                    record.reason.map(|r| format!(" — {r}")).unwrap_or_default()
                );
            }
            Ok(0)
        }
        _ => usage(),
    }
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match main_inner(parse_args()).await {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("error: {err}");
            std::process::exit(if err.kind() == rollback_core::ErrorKind::InvalidInput { 2 } else { 1 });
        }
    }
}
