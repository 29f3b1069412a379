//! What-if on a journaled run: a real engine run probes the lab service over HTTP
//! while it recovers on a schedule; the file journal is then read back and the
//! verify step re-decided under its own policy (the same verdict, the same checks)
//! and under others (fewer checks and later, a false alarm).
#![cfg(feature = "http")]

use std::sync::Arc;
use std::time::Duration;

use rollback_core::testkit::MemoryTarget;
use rollback_core::verify::lab::{LabService, Schedule};
use rollback_core::verify::replay::{Hold, replay_run};
use rollback_core::verify::{HttpCheck, HttpVerifier};
use rollback_core::{
    Engine, FileJournal, MemoryLock, Plan, ProbePolicy, Registry, RunOptions, RunState, Selector, Step, StepOp,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journaled_verification_replays_to_its_own_verdict_and_to_others() {
    let lab = LabService::start("127.0.0.1:0".parse().unwrap(), Schedule::parse("0s=unhealthy,600ms=healthy").unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let web = Arc::new(MemoryTarget::with_versions("web", &["v1", "v2"]));
    let mut registry = Registry::new();
    registry.register_target(web.clone());
    registry.register_verifier(Arc::new(HttpVerifier::new("health", HttpCheck::get(&lab.url("/health"))).unwrap()));
    let journal = Arc::new(FileJournal::open(dir.path().join("journal")).unwrap());
    let engine = Engine::builder(registry)
        .journal(journal.clone())
        .lock(Arc::new(MemoryLock::new()))
        .artifacts_dir(dir.path().join("artifacts"))
        .build();
    let own = ProbePolicy {
        interval: Duration::from_millis(50),
        passes: 3,
        deadline: Duration::from_secs(10),
        ..Default::default()
    };
    let plan = Plan::new("web back")
        .stage("app", 1, vec![Step::new("web", StepOp::Rollback { target: "web".into(), to: Selector::Previous })])
        .stage(
            "verify",
            1,
            vec![Step::new("health", StepOp::Verify { verifier: "health".into(), policy: own.clone() })],
        );
    let report = engine.run(plan, RunOptions::default()).await.unwrap();
    assert_eq!(report.state, RunState::Succeeded, "{report}");
    let served = lab.requests();

    let same = replay_run(journal.as_ref(), &report.run, None, Hold::Record).await.unwrap();
    assert_eq!(same.len(), 1);
    let step = &same[0];
    assert_eq!((step.step.as_str(), step.verifier.as_str()), ("health", "health"));
    assert_eq!(step.recorded.checks as u64, served, "the journal holds every request the lab served");
    assert_eq!(step.replayed.passed, Some(true));
    assert_eq!(step.replayed.checks, step.recorded.checks, "its own policy replays check for check: {step:?}");
    let outcomes = |r: &rollback_core::verify::replay::Replayed| r.observations.iter().map(|o| o.1).collect::<Vec<_>>();
    assert_eq!(outcomes(&step.replayed), outcomes(&step.recorded));
    assert!(step.change.starts_with("same verdict"), "{}", step.change);

    // Checking every 200 ms needs three passes at 600, 800 and 1000 ms: past the
    // record's end, undetermined — unless the healthy end is taken to hold.
    let sparse = ProbePolicy { interval: Duration::from_millis(200), ..own.clone() };
    let strict = &replay_run(journal.as_ref(), &report.run, Some(&sparse), Hold::Record).await.unwrap()[0];
    assert_eq!(strict.replayed.passed, None, "{strict:?}");
    assert!(strict.change.starts_with("undetermined"), "{}", strict.change);
    let slower = &replay_run(journal.as_ref(), &report.run, Some(&sparse), Hold::LastObservation).await.unwrap()[0];
    assert_eq!(slower.replayed.passed, Some(true), "{slower:?}");
    assert!(slower.replayed.checks < step.recorded.checks, "{}", slower.change);
    assert!(slower.change.contains("checks fewer") && slower.change.contains("later"), "{}", slower.change);

    // A policy allowing no failure would have failed the recovery: a false alarm.
    let impatient = ProbePolicy { max_failures: 2, ..own };
    let alarm = &replay_run(journal.as_ref(), &report.run, Some(&impatient), Hold::Record).await.unwrap()[0];
    assert_eq!(alarm.replayed.passed, Some(false), "{alarm:?}");
    assert!(alarm.change.contains("false alarm"), "{}", alarm.change);
}
