//! Fault injection over ONE plan that touches every backend (Docker containers and
//! traffic, PostgreSQL migrations, S3 point-in-time restore, Redis invalidation,
//! config files and release dirs, Deployments and a scale on the Kubernetes API
//! double): the runner is killed with SIGKILL at a crash point — an intent journaled
//! with its effect not done, or the effect done with its outcome not journaled —
//! then resumed in a fresh process; every backend must end in the plan's final state
//! with every effect done exactly once, judged from the backends' own evidence.
//!
//! Kill points: 2 per intent (before / after its effect), from a clean reference run's
//! journal. `ROLLBACK_KILL_POINTS=all` runs every one; `ROLLBACK_KILL_POINTS=12:after,3:before`
//! runs those; otherwise a subset of 6 chosen from `ROLLBACK_KILL_SEED` (default 10).
//!
//! Needs Docker, PostgreSQL, Redis and S3 (moto): `ROLLBACK_TEST_DOCKER`,
//! `ROLLBACK_TEST_POSTGRES_URL`, `ROLLBACK_TEST_REDIS_URL`, `ROLLBACK_TEST_S3_ENDPOINT`
//! (`scripts/test.sh` sets them). The API double runs in this test process; the
//! runners reach it over HTTP through `cluster = { url }` in the target specs.

mod support;

use std::time::Instant;

use futures::FutureExt;
use rollback_core::{RunId, RunState};
use support::at_kill::effect_visible;
use support::evidence::assert_final_state;
use support::fixture::{EFFECT_STEPS, Fixture};
use support::points::{Point, intents, run_points, run_state, select};
use support::{Servers, Shared, resume, run_plan};

/// How many points CI runs.
const SUBSET: usize = 6;
/// The default seed of the subset.
const DEFAULT_SEED: u64 = 10;

/// Kill at `point`, resume in a fresh process, check every backend.
async fn kill_and_resume(shared: &Shared, n: usize, point: &Point) -> Vec<RunId> {
    let f = Fixture::create(shared, n).await;
    let killed = run_plan(&f.home, &f.plan_file, &f.env, Some(&point.env())).await;
    let run = killed.run();
    let runs = vec![run.clone()];
    let result = std::panic::AssertUnwindSafe(async {
        assert!(killed.killed(), "{point}: the runner died by SIGKILL\n{}", killed.tail());
        let state = run_state(&f.home, &run).await;
        assert!(!state.is_terminal(), "{point}: killed mid-run, journal says {state}");
        let seen = intents(&f.home, &run).await;
        assert_eq!(seen.last().map(|i| i.seq), Some(point.seq), "{point}: the last intent is the kill point's");
        assert_eq!(
            seen.last().map(|i| i.step.as_str()),
            Some(point.step.as_str()),
            "{point}: same step as the reference"
        );
        let visible = effect_visible(shared, &f, &run, &point.step).await;
        let expected = point.when == "after";
        assert_eq!(visible, expected, "{point}: the killed step's effect at its backend when the runner died");
        let resumed = resume(&f.home, &run, &f.env).await;
        assert!(resumed.status.success(), "{point}: resume in a fresh process\n{}", resumed.tail());
        assert!(resumed.stdout.contains("state succeeded"), "{point}: {}", resumed.tail());
        assert_eq!(run_state(&f.home, &run).await, RunState::Succeeded);
        assert_final_state(shared, &f, &run).await;
    })
    .catch_unwind()
    .await;
    f.cleanup(shared, &runs).await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    runs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_every_crash_point_of_a_plan_over_every_backend() {
    let Some(servers) = Servers::from_env() else { return };
    let shared = Shared::start(servers, "rbfault").await;
    kill_points(&shared, "ROLLBACK_KILL_POINTS", SUBSET).await;
}

/// The same, every runner journaling in one shared PostgreSQL journal (PgJournal and
/// its lease lock) instead of its home's files: a seeded 3 points in CI, the list in
/// `ROLLBACK_KILL_POINTS_PG` (or `ROLLBACK_KILL_POINTS=all`) for more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_crash_points_with_the_shared_postgres_journal() {
    let Some(servers) = Servers::from_env() else { return };
    let journal = format!("rbfault_journal_{}", std::process::id());
    let shared = Shared::start(servers, "rbfaultpg").await.with_shared_journal(&journal).await;
    kill_points(&shared, "ROLLBACK_KILL_POINTS_PG", 3).await;
}

/// A clean reference run, then each chosen point killed and resumed.
async fn kill_points(shared: &Shared, list_var: &str, subset: usize) {
    let started = Instant::now();

    // The reference: a clean run, its final state, and the intents that make the points.
    let f = Fixture::create(shared, 0).await;
    let clean = run_plan(&f.home, &f.plan_file, &f.env, None).await;
    let run = clean.run();
    let result = std::panic::AssertUnwindSafe(async {
        assert!(clean.status.success(), "the clean run\n{}", clean.tail());
        assert_final_state(shared, &f, &run).await;
        intents(&f.home, &run).await
    })
    .catch_unwind()
    .await;
    f.cleanup(shared, std::slice::from_ref(&run)).await;
    let reference = result.unwrap_or_else(|p| std::panic::resume_unwind(p));
    assert_eq!(reference.len(), EFFECT_STEPS, "one intent per effect step: {reference:?}");
    let all = Point::all(&reference);
    assert!(all.len() >= 50, "{} kill points", all.len());
    let chosen = select(&all, list_var, subset, DEFAULT_SEED);

    run_points(&chosen, started, |n, point| async move {
        kill_and_resume(shared, n, &point).await;
    })
    .await;
}
