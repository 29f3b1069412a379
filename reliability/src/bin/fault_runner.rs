//! `rollback-fault-runner`: runs or resumes a plan file with every kind this workspace
//! has registered (core's local kinds and built-in verifiers, docker, databases,
//! storage, Kubernetes), for kill-and-resume tests in separate processes.
//!
//! ```text
//! rollback-fault-runner run <home> <plan.json>     # honours ROLLBACK_TEST_CRASH_AT
//! rollback-fault-runner resume <home> <run-id>     # honours it too
//! ```
//!
//! The journal, locks and artifacts are files under `<home>`; with
//! `ROLLBACK_FAULT_JOURNAL` set to a `postgres://` URL, the journal (and its lease
//! lock) is that shared PostgreSQL journal instead. The first line of
//! output is `run <id>` (for `run`, printed before anything is done, so a test that
//! kills the process still knows the run), then the report, then `state <state>`.
//! Exit status: 0 when the run finished as succeeded, 1 when it ended otherwise or
//! failed, 2 on bad usage or a bad `ROLLBACK_TEST_CRASH_AT`. With the crash hook the
//! process dies by SIGKILL at the chosen point.

use std::io::Write;
use std::path::Path;

use rollback_core::crash::CrashPoint;
use rollback_core::local::register_local_kinds;
use rollback_core::verify::register_builtin_verifiers;
use rollback_core::{Engine, Plan, Registry, Report, Result, RunId, RunOptions, RunState, Settings};

fn usage() -> ! {
    eprintln!("usage: rollback-fault-runner run <home> <plan.json> | resume <home> <run-id>");
    std::process::exit(2)
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Every kind of every backend, so a plan touching all of them builds from its specs.
fn registry() -> Registry {
    let mut registry = Registry::new();
    register_local_kinds(&mut registry);
    register_builtin_verifiers(&mut registry);
    rollback_db::register(&mut registry);
    rollback_docker::register(&mut registry);
    rollback_storage::register(&mut registry);
    rollback_k8s::register(&mut registry);
    registry
}

async fn engine(home: &Path) -> Result<Engine> {
    let settings = Settings { crash_at: CrashPoint::from_env()?, ..Settings::default() };
    let mut builder = Engine::builder(registry()).home(home).settings(settings);
    if let Ok(url) = std::env::var("ROLLBACK_FAULT_JOURNAL") {
        let access = rollback_core::JournalAccess::ReadWrite;
        builder = builder.journal_url(&rollback_core::Secret::new(url), access).await?;
    }
    builder.try_build()
}

fn finish(report: Result<Report>) -> i32 {
    match report {
        Ok(report) => {
            say(&report.to_string());
            say(&format!("state {}", report.state));
            if report.state == RunState::Succeeded { 0 } else { 1 }
        }
        Err(err) => {
            say(&format!("error {err}"));
            1
        }
    }
}

async fn main_inner(args: &[String]) -> Result<i32> {
    match args {
        [command, home, plan] if command == "run" => {
            let home = Path::new(home);
            let text =
                std::fs::read_to_string(plan).map_err(|e| rollback_core::Error::from(e).with_context("plan", plan))?;
            let plan = Plan::from_json_str(&text)?;
            let engine = engine(home).await?;
            let run = RunId::generate();
            say(&format!("run {run}"));
            let options =
                RunOptions { run_id: Some(run), reason: Some("fault injection".into()), ..RunOptions::default() };
            Ok(finish(engine.run(plan, options).await))
        }
        [command, home, run] if command == "resume" => {
            let run: RunId = run.parse()?;
            let engine = engine(Path::new(home)).await?;
            say(&format!("run {run}"));
            Ok(finish(engine.resume(&run).await))
        }
        _ => usage(),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match main_inner(&args).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            if err.kind() == rollback_core::ErrorKind::InvalidInput { 2 } else { 1 }
        }
    };
    std::process::exit(code);
}
