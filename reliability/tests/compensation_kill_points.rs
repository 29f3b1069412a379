//! Fault injection on the way BACK: snapshots, a verification and the compensation
//! that undoes a rollback. One plan ([`support::compensation`]) snapshots a PostgreSQL
//! database (`pg-dump`) and an S3 prefix (`s3-version-manifest`), rolls back a Docker
//! container, a config file, the database's migrations and the prefix, then fails its
//! verification, so the engine compensates — the container and the file by their
//! inverse, the database and the prefix from their snapshots — and ends `compensated`.
//!
//! Kill points: every intent of a clean reference run — the snapshot steps' starts,
//! the forward effects, the verification's start, the compensation's intents and
//! restores' starts — × before/after its work. For each: fresh backends, the runner
//! killed there (SIGKILL, journal not terminal, last intent = the point, the work
//! absent at its backend for `before`, present for `after`), `resume` in a fresh
//! process, then every backend back to its state before the plan with each forward and
//! each compensation effect done once, judged from the backends' evidence.
//!
//! `ROLLBACK_KILL_POINTS=all` runs every point; `ROLLBACK_COMPENSATION_KILL_POINTS=9:after,3:before`
//! runs those; otherwise a subset of 4 chosen from `ROLLBACK_KILL_SEED` (default 7).
//! Needs the same servers as `kill_points.rs`.

mod support;

use std::time::Instant;

use futures::FutureExt;
use rollback_core::RunState;
use support::compensation::{assert_compensated, effect_visible, write_plan};
use support::fixture::Fixture;
use support::points::{Point, intents, run_points, run_state, select};
use support::{Servers, Shared, resume, run_plan};

/// How many points CI runs.
const SUBSET: usize = 4;
/// The default seed of the subset.
const DEFAULT_SEED: u64 = 7;

/// Kill at `point`, resume in a fresh process, check every backend.
async fn kill_and_resume(shared: &Shared, n: usize, point: &Point) {
    let f = Fixture::create(shared, n).await;
    write_plan(&f, shared);
    let killed = run_plan(&f.home, &f.plan_file, &f.env, Some(&point.env())).await;
    let run = killed.run();
    let result = std::panic::AssertUnwindSafe(async {
        assert!(killed.killed(), "{point}: the runner died by SIGKILL\n{}", killed.tail());
        let state = run_state(&f.home, &run).await;
        assert!(!state.is_terminal(), "{point}: killed mid-run, journal says {state}");
        let last = intents(&f.home, &run).await.pop();
        let last = last.map(|i| (i.seq, i.step, i.undo));
        assert_eq!(last, Some((point.seq, point.step.clone(), point.undo)), "{point}: the last intent is the point's");
        if let Some(visible) = effect_visible(shared, &f, &run, &point.step, point.undo).await {
            let expected = point.when == "after";
            assert_eq!(visible, expected, "{point}: the killed step's work at its backend when the runner died");
        }
        let resumed = resume(&f.home, &run, &f.env).await;
        assert!(resumed.stdout.contains("state compensated"), "{point}: resume in a fresh process\n{}", resumed.tail());
        assert_eq!(run_state(&f.home, &run).await, RunState::Compensated, "{point}");
        assert_compensated(shared, &f, &run).await;
    })
    .catch_unwind()
    .await;
    f.cleanup(shared, std::slice::from_ref(&run)).await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_every_snapshot_verify_and_compensation_point() {
    let Some(servers) = Servers::from_env() else { return };
    let shared = Shared::start(servers, "rbcomp").await;
    let started = Instant::now();

    // The reference: a clean run ends compensated; its intents make the points.
    let f = Fixture::create(&shared, 0).await;
    write_plan(&f, &shared);
    let clean = run_plan(&f.home, &f.plan_file, &f.env, None).await;
    let run = clean.run();
    let result = std::panic::AssertUnwindSafe(async {
        assert!(clean.stdout.contains("state compensated"), "the clean run\n{}", clean.tail());
        assert_compensated(&shared, &f, &run).await;
        intents(&f.home, &run).await
    })
    .catch_unwind()
    .await;
    f.cleanup(&shared, std::slice::from_ref(&run)).await;
    let reference = result.unwrap_or_else(|p| std::panic::resume_unwind(p));
    let steps: Vec<String> =
        reference.iter().map(|i| format!("{}{}", i.step, if i.undo { " undo" } else { "" })).collect();
    assert_eq!(
        steps,
        [
            "orders-snap",
            "avatars-snap",
            "api-back",
            "cfg-0-back",
            "orders-back",
            "avatars-back",
            "healthy",
            "avatars-back undo",
            "orders-back undo",
            "cfg-0-back undo",
            "api-back undo"
        ],
        "snapshots, forward effects, the verification, the compensation newest first"
    );
    let all = Point::all(&reference);
    let chosen = select(&all, "ROLLBACK_COMPENSATION_KILL_POINTS", SUBSET, DEFAULT_SEED);
    run_points(&chosen, started, |n, point| {
        let shared = &shared;
        async move { kill_and_resume(shared, n, &point).await }
    })
    .await;
}
