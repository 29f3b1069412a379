//! Kill points: the intents of a clean reference run (effect intents, and the durable
//! starts of snapshot, verify and restore steps) × before/after, and which of them a
//! test runs: all, a given list, or a seeded subset.

use std::path::Path;

use rollback_core::journal::{Entry, Phase, RunLog};
use rollback_core::{FileJournal, Journal, RunId, RunState};

/// The journal a fixture's runners write: the shared PostgreSQL one when the fixture
/// names it (`journal-url` beside the home), else the home's files.
async fn journal(home: &Path) -> Box<dyn Journal> {
    match home.parent().map(|dir| dir.join("journal-url")).and_then(|f| std::fs::read_to_string(f).ok()) {
        Some(url) => Box::new(rollback_db::PgJournal::connect(&url).await.unwrap()),
        None => Box::new(FileJournal::open(home.join("journal")).unwrap()),
    }
}

/// A crash point: an intent's sequence number, before or after its effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Point {
    pub seq: u64,
    pub when: &'static str,
    pub step: String,
    /// A compensation (undo) intent.
    pub undo: bool,
}

impl Point {
    /// The value of `ROLLBACK_TEST_CRASH_AT` (and of the point lists).
    pub fn env(&self) -> String {
        format!("{}:{}", self.seq, self.when)
    }

    /// Every point of a reference run's intents.
    pub fn all(intents: &[Intent]) -> Vec<Point> {
        intents
            .iter()
            .flat_map(|i| {
                ["before", "after"].map(|when| Point { seq: i.seq, when, step: i.step.clone(), undo: i.undo })
            })
            .collect()
    }
}

impl std::fmt::Display for Point {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let undo = if self.undo { " undo" } else { "" };
        write!(f, "{}:{} ({}{undo})", self.seq, self.when, self.step)
    }
}

/// A journaled intent: an effect's `Intent`, or the durable `StepStarted` of a
/// snapshot, verify or restore step (the crash hook fires at both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub seq: u64,
    pub step: String,
    pub undo: bool,
}

/// The intents of a run, in journal order.
pub async fn intents(home: &Path, run: &RunId) -> Vec<Intent> {
    journal(home)
        .await
        .read(run)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|r| match r.entry {
            Entry::Intent { step, phase, .. } | Entry::StepStarted { step, phase } => {
                Some(Intent { seq: r.seq, step: step.to_string(), undo: phase == Phase::Compensation })
            }
            _ => None,
        })
        .collect()
}

/// The run's state in its journal.
pub async fn run_state(home: &Path, run: &RunId) -> RunState {
    RunLog::from_records(&journal(home).await.read(run).await.unwrap()).unwrap().state
}

/// splitmix64: a seeded, dependency-free generator for the subset.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The points to run (sorted, in plan order), printed with how they were chosen:
/// `ROLLBACK_KILL_POINTS=all` → every point; a list in `list_var`
/// (`12:after,3:before`) → those; otherwise `subset` points from
/// `ROLLBACK_KILL_SEED` (default `default_seed`).
pub fn select(all: &[Point], list_var: &str, subset: usize, default_seed: u64) -> Vec<Point> {
    let (chosen, how) = choose(all, list_var, subset, default_seed);
    println!(
        "kill points: {} in this plan; running {} ({how}): {}",
        all.len(),
        chosen.len(),
        chosen.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
    );
    chosen
}

fn choose(all: &[Point], list_var: &str, subset: usize, default_seed: u64) -> (Vec<Point>, String) {
    if std::env::var("ROLLBACK_KILL_POINTS").is_ok_and(|v| v == "all") {
        return (all.to_vec(), "ROLLBACK_KILL_POINTS=all".into());
    }
    let wanted = std::env::var(list_var).unwrap_or_default();
    if !wanted.is_empty() && wanted != "all" {
        let chosen: Vec<Point> = wanted
            .split(',')
            .map(|w| {
                all.iter()
                    .find(|p| p.env() == w.trim())
                    .unwrap_or_else(|| {
                        let names: Vec<String> = all.iter().map(Point::to_string).collect();
                        panic!("{list_var}: {w:?} is not a kill point of this plan: {}", names.join(", "))
                    })
                    .clone()
            })
            .collect();
        return (chosen, format!("{list_var}={wanted}"));
    }
    let seed = match std::env::var("ROLLBACK_KILL_SEED") {
        Ok(s) => s.parse().unwrap_or_else(|_| panic!("ROLLBACK_KILL_SEED={s:?}: not a number")),
        Err(_) => default_seed,
    };
    let mut state = seed;
    let mut indexes: Vec<usize> = (0..all.len()).collect();
    for i in 0..subset.min(all.len()) {
        let j = i + (splitmix(&mut state) % (all.len() - i) as u64) as usize;
        indexes.swap(i, j);
    }
    let mut chosen: Vec<usize> = indexes[..subset.min(all.len())].to_vec();
    chosen.sort();
    (chosen.into_iter().map(|i| all[i].clone()).collect(), format!("ROLLBACK_KILL_SEED={seed}"))
}

/// Runs every chosen point through `check` (its number, the point), catching panics,
/// printing each result and a summary line; fails at the end if any point failed.
pub async fn run_points<F, Fut>(chosen: &[Point], started: std::time::Instant, mut check: F)
where
    F: FnMut(usize, Point) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use futures::FutureExt;
    let mut failures = Vec::new();
    for (i, point) in chosen.iter().enumerate() {
        let t = std::time::Instant::now();
        match std::panic::AssertUnwindSafe(check(i + 1, point.clone())).catch_unwind().await {
            Ok(()) => println!("  ok   {point} in {:.1?}", t.elapsed()),
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
