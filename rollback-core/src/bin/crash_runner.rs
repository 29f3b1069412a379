//! Test helper (feature `testkit`): runs, resumes and contends in a separate process,
//! so tests can kill it with SIGKILL at the crash hook, stop it with SIGSTOP, or race
//! two of them.
//!
//! ```text
//! rollback-crash-runner run <dir>                 # honours ROLLBACK_TEST_CRASH_AT
//! rollback-crash-runner resume <dir> <run-id>
//! rollback-crash-runner contend <dir> <resource> <hold-ms>
//! rollback-crash-runner hold-lease <dir> <resource> <ttl-ms>
//! ```

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rollback_core::crash::CrashPoint;
use rollback_core::journal::{Durability, Entry};
use rollback_core::testkit::register_file_kinds;
use rollback_core::{
    Engine, FileJournal, FileLock, Holder, Journal, Lock, Plan, Registry, RunId, RunOptions, Selector, Settings,
    Severity, Spec, Step, StepOp, Undo,
};

fn usage() -> ! {
    eprintln!("usage: rollback-crash-runner run|resume|contend|hold-lease <dir> ...");
    std::process::exit(2)
}

/// The multi-step plan the crash tests run: traffic off, evidence, app and config in
/// parallel, schema back two with a snapshot as its undo, traffic back on finally.
pub fn crash_plan(dir: &Path) -> Plan {
    let target = |name: &str, versions: &[&str], category: &str| {
        let config = serde_json::json!({
            "dir": dir.join("targets").join(name), "versions": versions, "category": category,
        });
        Spec::new("file", name, config)
    };
    let mut plan = Plan::new("crash plan")
        .stage(
            "traffic",
            1,
            vec![Step::new(
                "traffic-off",
                StepOp::Action {
                    target: "traffic".into(),
                    action: "set".into(),
                    params: serde_json::json!({"version": "off"}),
                },
            )],
        )
        .stage("evidence", 1, vec![Step::new("snap-schema", StepOp::Snapshot { snapshot: "schema-state".into() })])
        .stage(
            "app",
            2,
            vec![
                Step::new("app", StepOp::Rollback { target: "app".into(), to: Selector::Previous }),
                Step::new("config", StepOp::Rollback { target: "config".into(), to: Selector::Previous }),
            ],
        )
        .stage(
            "schema",
            1,
            vec![
                Step::new("schema", StepOp::Rollback { target: "schema".into(), to: Selector::Back(2) })
                    .undo(Undo::RestoreFrom("snap-schema".into())),
            ],
        );
    plan.finally.push(Step::new("traffic-on", StepOp::Revert { step: "traffic-off".into() }));
    plan.targets = vec![
        target("traffic", &["off", "on"], "traffic"),
        target("app", &["v1", "v2", "v3"], "app"),
        target("config", &["c1", "c2"], "config"),
        target("schema", &["s1", "s2", "s3"], "schema"),
    ];
    plan.snapshots =
        vec![Spec::new("file", "schema-state", serde_json::json!({"dir": dir.join("targets").join("schema")}))];
    plan
}

fn engine(dir: &Path) -> Engine {
    let mut registry = Registry::new();
    register_file_kinds(&mut registry);
    let settings = Settings {
        crash_at: CrashPoint::from_env().unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(2)
        }),
        ..Settings::default()
    };
    Engine::builder(registry).home(dir).settings(settings).build()
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(args.get(1).unwrap_or_else(|| usage()));
    let code = match args[0].as_str() {
        "run" => {
            let run = RunId::generate();
            say(&format!("run {run}"));
            let options = RunOptions { run_id: Some(run), reason: Some("crash test".into()), ..RunOptions::default() };
            match engine(&dir).run(crash_plan(&dir), options).await {
                Ok(report) => {
                    say(&format!("state {}", report.state));
                    0
                }
                Err(err) => {
                    say(&format!("error {err}"));
                    1
                }
            }
        }
        "resume" => {
            let run: RunId = args.get(2).unwrap_or_else(|| usage()).parse().unwrap_or_else(|_| usage());
            match engine(&dir).resume(&run).await {
                Ok(report) => {
                    say(&format!("state {}", report.state));
                    0
                }
                Err(err) => {
                    say(&format!("error {err}"));
                    1
                }
            }
        }
        "contend" => {
            let resource = args.get(2).unwrap_or_else(|| usage()).clone();
            let hold: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or_else(|| usage());
            let lock = FileLock::new(dir.join("locks"));
            let holder = Holder::this_process(&RunId::generate());
            match lock.acquire(&[resource], &holder, Duration::from_secs(30)).await {
                Ok(lease) => {
                    say(&format!("acquired {}", lease.token));
                    tokio::time::sleep(Duration::from_millis(hold)).await;
                    let _ = lock.release(&lease).await;
                    0
                }
                Err(err) => {
                    say(&format!("locked {err}"));
                    3
                }
            }
        }
        "hold-lease" => {
            let resource = args.get(2).unwrap_or_else(|| usage()).clone();
            let ttl: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or_else(|| usage());
            let lock = FileLock::new(dir.join("locks"));
            let journal = FileJournal::open(dir.join("journal")).unwrap_or_else(|e| panic!("{e}"));
            let run = RunId::generate();
            let holder = Holder::this_process(&run);
            let lease = match lock.acquire(&[resource], &holder, Duration::from_millis(ttl)).await {
                Ok(lease) => lease,
                Err(err) => {
                    say(&format!("locked {err}"));
                    std::process::exit(3);
                }
            };
            let entry = |n: u32| Entry::Escalated { severity: Severity::S3, reason: format!("holder append {n}") };
            let fence = lease.fence();
            if let Err(err) = journal.append(&run, Some(&fence), entry(1), Durability::Sync).await {
                say(&format!("rejected {err}"));
                std::process::exit(1);
            }
            say(&format!("held {}", lease.token));
            let mut line = String::new();
            let _ = std::io::stdin().lock().read_line(&mut line);
            match journal.append(&run, Some(&fence), entry(2), Durability::Sync).await {
                Ok(_) => say("appended"),
                Err(err) => say(&format!("rejected {err}")),
            }
            0
        }
        _ => usage(),
    };
    std::process::exit(code);
}
