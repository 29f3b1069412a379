//! Test helper (feature `test-helpers`): one journaled recovery run by the engine in
//! its own process, killed (SIGKILL) right after a phase, so a test can resume it
//! from another process.
//!
//! `rollback-db-pitr-child SPEC_JSON HOME PLAN_JSON RUN_ID PHASE`

use std::sync::Arc;

use rollback_core::{Engine, Plan, Registry, RunId, RunOptions, Spec};
use rollback_db::PgPitr;
use rollback_db::pitr::PitrPhase;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [spec, home, plan, run, phase] = args.as_slice() else {
        eprintln!("usage: rollback-db-pitr-child SPEC_JSON HOME PLAN_JSON RUN_ID PHASE");
        std::process::exit(2);
    };
    let phase = match phase.as_str() {
        "Restored" => PitrPhase::Restored,
        "Promoted" => PitrPhase::Promoted,
        "Verified" => PitrPhase::Verified,
        "LiveStopped" => PitrPhase::LiveStopped,
        "LiveKept" => PitrPhase::LiveKept,
        _ => PitrPhase::Switched,
    };
    let spec: Spec = serde_json::from_str(&std::fs::read_to_string(spec).unwrap()).unwrap();
    let config = serde_json::from_value(spec.config.clone()).unwrap();
    let target = PgPitr::new(&spec.name, spec.secret("url").unwrap().expose(), config).unwrap().kill_after(phase);
    let mut registry = Registry::new();
    rollback_db::register(&mut registry);
    registry.register_target(Arc::new(target));
    let engine = Engine::builder(registry).home(home).try_build().unwrap();
    let plan: Plan = serde_json::from_str(&std::fs::read_to_string(plan).unwrap()).unwrap();
    let run_id: RunId = run.parse().expect("a run id");
    let options = RunOptions { run_id: Some(run_id), again: true, ..Default::default() };
    let report = engine.run(plan, options).await.unwrap();
    println!("finished {}", report.state);
}
