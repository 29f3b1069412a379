//! Quickstart on the embedded default: no server needed.
//!
//! Sets up a throw-away deployment (file-backed targets for an app release, a
//! config and a traffic switch), dry-runs a plan, runs it with the file journal,
//! lock and artifact store, and prints the report and where the journal is.
//!
//! ```text
//! cargo run -p rollback-examples --bin quickstart
//! ```

use std::path::Path;
use std::time::Instant;

use rollback_core::testkit::register_file_kinds;
use rollback_core::{Engine, Plan, Registry, RunOptions, Selector, Spec, Step, StepOp};

fn plan(dir: &Path) -> Plan {
    let target = |name: &str, versions: &[&str], category: &str| {
        Spec::new(
            "file",
            name,
            serde_json::json!({"dir": dir.join("deploy").join(name), "versions": versions, "category": category}),
        )
    };
    let mut plan = Plan::new("roll back the broken v3 release")
        .stage(
            "stop traffic",
            1,
            vec![Step::new(
                "traffic-off",
                StepOp::Action {
                    target: "traffic".into(),
                    action: "set".into(),
                    params: serde_json::json!({"version": "maintenance"}),
                },
            )],
        )
        .stage(
            "app and config",
            2,
            vec![
                Step::new("app", StepOp::Rollback { target: "app".into(), to: Selector::Previous }),
                Step::new("config", StepOp::Rollback { target: "config".into(), to: Selector::Previous }),
            ],
        );
    plan.finally.push(Step::new("traffic-on", StepOp::Revert { step: "traffic-off".into() }));
    plan.targets = vec![
        target("traffic", &["maintenance", "live"], "traffic"),
        target("app", &["v1", "v2", "v3"], "app"),
        target("config", &[".env.2025-10-15", ".env.2025-10-16"], "config"),
    ];
    plan
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let dir = tempfile::Builder::new().prefix("rollback-quickstart-").tempdir()?.keep();
    let mut registry = Registry::new();
    register_file_kinds(&mut registry);
    let engine = Engine::builder(registry).home(dir.join(".rollback")).try_build()?;
    let plan = plan(&dir);

    println!("{}", engine.dry_run(&plan).await?);
    let report = engine.run(plan, RunOptions { reason: Some("v3 returns 500s".into()), ..Default::default() }).await?;
    println!("{report}");
    println!("journal:   {}", dir.join(".rollback/journal/runs").join(format!("{}.jsonl", report.run)).display());
    println!("artifacts: {}", dir.join(".rollback/artifacts").display());
    println!("finished in {:.0?}", started.elapsed());
    Ok(())
}
