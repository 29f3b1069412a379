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
use rollback_core::journal::{Entry, RunLog};
use rollback_core::{FileJournal, Journal, RunId, RunState};
use support::at_kill::effect_visible;
use support::evidence::assert_final_state;
use support::fixture::{EFFECT_STEPS, Fixture};
use support::{Servers, Shared, resume, run_plan};

/// How many points CI runs.
const SUBSET: usize = 6;
/// The default seed of the subset.
const DEFAULT_SEED: u64 = 10;

/// A crash point: an intent's sequence number, before or after its effect.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Point {
    seq: u64,
    when: &'static str,
    step: String,
}

impl Point {
    fn env(&self) -> String {
        format!("{}:{}", self.seq, self.when)
    }
}

impl std::fmt::Display for Point {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{} ({})", self.seq, self.when, self.step)
    }
}

/// The intents of a run, in journal order: (seq, step).
async fn intents(f: &Fixture, run: &RunId) -> Vec<(u64, String)> {
    let journal = FileJournal::open(f.home.join("journal")).unwrap();
    journal
        .read(run)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|r| match r.entry {
            Entry::Intent { step, .. } => Some((r.seq, step.to_string())),
            _ => None,
        })
        .collect()
}

async fn run_state(f: &Fixture, run: &RunId) -> RunState {
    let journal = FileJournal::open(f.home.join("journal")).unwrap();
    RunLog::from_records(&journal.read(run).await.unwrap()).unwrap().state
}

/// splitmix64: a seeded, dependency-free generator for the subset.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The points to run: all, a given list, or a seeded subset (sorted, in plan order).
fn select(all: &[Point]) -> (Vec<Point>, String) {
    let wanted = std::env::var("ROLLBACK_KILL_POINTS").unwrap_or_default();
    if wanted == "all" {
        return (all.to_vec(), "ROLLBACK_KILL_POINTS=all".into());
    }
    if !wanted.is_empty() {
        let chosen: Vec<Point> = wanted
            .split(',')
            .map(|w| {
                all.iter()
                    .find(|p| p.env() == w.trim())
                    .unwrap_or_else(|| {
                        let names: Vec<String> = all.iter().map(Point::to_string).collect();
                        panic!("ROLLBACK_KILL_POINTS: {w:?} is not a kill point of this plan: {}", names.join(", "))
                    })
                    .clone()
            })
            .collect();
        return (chosen, format!("ROLLBACK_KILL_POINTS={wanted}"));
    }
    let seed = match std::env::var("ROLLBACK_KILL_SEED") {
        Ok(s) => s.parse().unwrap_or_else(|_| panic!("ROLLBACK_KILL_SEED={s:?}: not a number")),
        Err(_) => DEFAULT_SEED,
    };
    let mut state = seed;
    let mut indexes: Vec<usize> = (0..all.len()).collect();
    for i in 0..SUBSET.min(all.len()) {
        let j = i + (splitmix(&mut state) % (all.len() - i) as u64) as usize;
        indexes.swap(i, j);
    }
    let mut chosen: Vec<usize> = indexes[..SUBSET.min(all.len())].to_vec();
    chosen.sort();
    (chosen.into_iter().map(|i| all[i].clone()).collect(), format!("ROLLBACK_KILL_SEED={seed}"))
}

/// Kill at `point`, resume in a fresh process, check every backend.
async fn kill_and_resume(shared: &Shared, n: usize, point: &Point) -> Vec<RunId> {
    let f = Fixture::create(shared, n).await;
    let killed = run_plan(&f.home, &f.plan_file, &f.env, Some(&point.env())).await;
    let run = killed.run();
    let runs = vec![run.clone()];
    let result = std::panic::AssertUnwindSafe(async {
        assert!(killed.killed(), "{point}: the runner died by SIGKILL\n{}", killed.tail());
        let state = run_state(&f, &run).await;
        assert!(!state.is_terminal(), "{point}: killed mid-run, journal says {state}");
        let seen = intents(&f, &run).await;
        assert_eq!(seen.last().map(|(s, _)| *s), Some(point.seq), "{point}: the last intent is the kill point's");
        assert_eq!(
            seen.last().map(|(_, s)| s.as_str()),
            Some(point.step.as_str()),
            "{point}: same step as the reference"
        );
        let visible = effect_visible(shared, &f, &run, &point.step).await;
        let expected = point.when == "after";
        assert_eq!(visible, expected, "{point}: the killed step's effect at its backend when the runner died");
        let resumed = resume(&f.home, &run, &f.env).await;
        assert!(resumed.status.success(), "{point}: resume in a fresh process\n{}", resumed.tail());
        assert!(resumed.stdout.contains("state succeeded"), "{point}: {}", resumed.tail());
        assert_eq!(run_state(&f, &run).await, RunState::Succeeded);
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
    let shared = Shared::start(servers).await;
    let started = Instant::now();

    // The reference: a clean run, its final state, and the intents that make the points.
    let f = Fixture::create(&shared, 0).await;
    let clean = run_plan(&f.home, &f.plan_file, &f.env, None).await;
    let run = clean.run();
    let result = std::panic::AssertUnwindSafe(async {
        assert!(clean.status.success(), "the clean run\n{}", clean.tail());
        assert_final_state(&shared, &f, &run).await;
        intents(&f, &run).await
    })
    .catch_unwind()
    .await;
    f.cleanup(&shared, std::slice::from_ref(&run)).await;
    let reference = result.unwrap_or_else(|p| std::panic::resume_unwind(p));
    assert_eq!(reference.len(), EFFECT_STEPS, "one intent per effect step: {reference:?}");
    let all: Vec<Point> = reference
        .iter()
        .flat_map(|(seq, step)| ["before", "after"].map(|when| Point { seq: *seq, when, step: step.clone() }))
        .collect();
    assert!(all.len() >= 50, "{} kill points", all.len());
    let (chosen, how) = select(&all);
    println!(
        "kill points: {} in this plan; running {} ({how}): {}",
        all.len(),
        chosen.len(),
        chosen.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
    );

    let mut failures = Vec::new();
    for (i, point) in chosen.iter().enumerate() {
        let t = Instant::now();
        match std::panic::AssertUnwindSafe(kill_and_resume(&shared, i + 1, point)).catch_unwind().await {
            Ok(_) => println!("  ok   {point} in {:.1?}", t.elapsed()),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                println!("  FAIL {point}: {message}");
                failures.push(format!("{point}: {message}"));
            }
        }
    }
    println!(
        "kill points: {} run, {} passed, {} failed, in {:.0?}",
        chosen.len(),
        chosen.len() - failures.len(),
        failures.len(),
        started.elapsed()
    );
    assert!(failures.is_empty(), "{} kill point(s) failed:\n{}", failures.len(), failures.join("\n"));
}
