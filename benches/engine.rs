//! Engine overhead per step, in memory and with the file journal, beside a raw
//! append + fsync of a record of the same size, measured in the same run.
//!
//! ```text
//! cargo bench -p rollback-benches --bench engine            # criterion + summary table
//! ROLLBACK_BENCH_QUICK=1 cargo bench -p rollback-benches --bench engine -- --test
//! ```

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput};
use rollback_core::testkit::MemoryTarget;
use rollback_core::{
    Engine, FileJournal, Journal, MemoryJournal, MemoryLock, Plan, Registry, RunState, Selector, Step, StepOp,
};

/// A plan of `steps` rollback steps, one target each, in stages of 10 run
/// `parallelism` at a time.
fn setup(steps: usize, parallelism: usize) -> (Plan, Registry) {
    let mut registry = Registry::new();
    let mut stage = Vec::new();
    let mut plan = Plan::new("bench");
    for i in 0..steps {
        let name = format!("t{i}");
        registry.register_target(Arc::new(MemoryTarget::with_versions(&name, &["a", "b"])));
        stage.push(Step::new(name.as_str(), StepOp::Rollback { target: name.as_str().into(), to: Selector::Previous }));
        if stage.len() == 10 {
            plan = plan.stage(format!("s{i}"), parallelism, std::mem::take(&mut stage));
        }
    }
    if !stage.is_empty() {
        plan = plan.stage("last", parallelism, stage);
    }
    (plan, registry)
}

fn engine(registry: Registry, journal: Arc<dyn Journal>, dir: &Path) -> Engine {
    Engine::builder(registry)
        .journal(journal)
        .lock(Arc::new(MemoryLock::new()))
        .artifacts_dir(dir.join("artifacts"))
        .build()
}

async fn run_once(steps: usize, parallelism: usize, file: bool, dir: &Path) -> (Duration, u64) {
    let (plan, registry) = setup(steps, parallelism);
    let file_journal = Arc::new(FileJournal::open(dir.join(format!("j{}", rand_suffix()))).unwrap());
    let journal: Arc<dyn Journal> = if file { file_journal.clone() } else { Arc::new(MemoryJournal::new()) };
    let engine = engine(registry, journal, dir);
    let started = Instant::now();
    let report = engine.run(plan, Default::default()).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(report.state, RunState::Succeeded);
    (elapsed, file_journal.counters().1)
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

/// One intent-sized line appended and fdatasync'd: what a write-ahead log costs at least.
fn raw_append_fsync(file: &mut std::fs::File, line: &[u8]) {
    file.write_all(line).unwrap();
    file.sync_data().unwrap();
}

fn intent_line_len(dir: &Path) -> usize {
    // Measure a real intent record from a file-journaled run.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let journal_dir = dir.join("probe");
    let (plan, registry) = setup(1, 1);
    let journal = Arc::new(FileJournal::open(&journal_dir).unwrap());
    let report = rt.block_on(engine(registry, journal.clone(), dir).run(plan, Default::default())).unwrap();
    let text = std::fs::read_to_string(journal_dir.join("runs").join(format!("{}.jsonl", report.run))).unwrap();
    text.lines().find(|l| l.contains("\"type\":\"intent\"")).map(str::len).unwrap() + 1
}

fn criterion_benches(c: &mut Criterion, dir: &Path) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut group = c.benchmark_group("engine");
    group.sample_size(10);
    for steps in [10usize, 1000] {
        for (label, file) in [("memory", false), ("file", true)] {
            group.throughput(Throughput::Elements(steps as u64));
            group.bench_function(format!("{label}/{steps}"), |b| {
                b.to_async(&rt).iter_batched(
                    || setup(steps, 4),
                    |(plan, registry)| async move {
                        let journal: Arc<dyn Journal> = if file {
                            Arc::new(FileJournal::open(dir.join(format!("c{}", rand_suffix()))).unwrap())
                        } else {
                            Arc::new(MemoryJournal::new())
                        };
                        engine(registry, journal, dir).run(plan, Default::default()).await.unwrap()
                    },
                    BatchSize::PerIteration,
                )
            });
        }
    }
    group.finish();
    let line = vec![b'x'; intent_line_len(dir) - 1].into_iter().chain([b'\n']).collect::<Vec<u8>>();
    let mut raw = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("raw.log")).unwrap();
    c.bench_function("raw/append+fdatasync", |b| b.iter(|| raw_append_fsync(&mut raw, &line)));
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn summary(dir: &Path, quick: bool) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let reps = |steps: usize| {
        if quick {
            3
        } else if steps > 100 {
            7
        } else {
            41
        }
    };
    let mut rows = Vec::new();
    for steps in [10usize, 1000] {
        for parallelism in [1usize, 4] {
            for file in [false, true] {
                let mut per_step = Vec::new();
                let mut syncs = 0;
                for _ in 0..reps(steps) {
                    let (elapsed, s) = rt.block_on(run_once(steps, parallelism, file, dir));
                    per_step.push(elapsed.as_secs_f64() * 1e6 / steps as f64);
                    syncs = s;
                }
                rows.push((steps, parallelism, file, median(per_step), syncs as f64 / steps as f64));
            }
        }
    }
    let len = intent_line_len(dir);
    let line: Vec<u8> = vec![b'x'; len - 1].into_iter().chain([b'\n']).collect();
    let mut raw = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("raw2.log")).unwrap();
    let raw_us = median(
        (0..if quick { 20 } else { 400 })
            .map(|_| {
                let t = Instant::now();
                raw_append_fsync(&mut raw, &line);
                t.elapsed().as_secs_f64() * 1e6
            })
            .collect(),
    );
    // The journal alone: one fenced, fsync'd intent-sized append.
    let journal = FileJournal::open(dir.join("alone")).unwrap();
    let run = rollback_core::RunId::generate();
    let fence = rollback_core::Fence::new(vec!["bench".into()], 1);
    let entry = rollback_core::journal::Entry::Escalated {
        severity: rollback_core::Severity::S3,
        reason: "x".repeat(len.saturating_sub(160)),
    };
    let journal_us = median(
        (0..if quick { 20 } else { 400 })
            .map(|_| {
                let t = Instant::now();
                rt.block_on(journal.append_batch(
                    &run,
                    Some(&fence),
                    vec![entry.clone(), entry.clone()],
                    rollback_core::journal::Durability::Sync,
                ))
                .unwrap();
                t.elapsed().as_secs_f64() * 1e6
            })
            .collect(),
    );
    println!();
    println!(
        "file journal alone: one step's fenced batch (outcome + intent) + fdatasync {journal_us:.0} µs = {:.2}x raw",
        journal_us / raw_us
    );
    rollback_benches::summary(
        "engine",
        "journal: one step's fenced records + fdatasync vs a raw append + fdatasync",
        &format!("{journal_us:.0} µs"),
        &format!("{raw_us:.0} µs"),
        &format!("{:.2}×", journal_us / raw_us),
        &format!("≤ 1.10×: {}", rollback_benches::met(journal_us / raw_us <= 1.10)),
    );
    println!("engine overhead per step (median; {len}-byte intent record; 2 cores, ext4 on virtio disk)");
    println!(
        "| steps | parallel | journal | µs/step | fsyncs/step | µs per fsync'd record | vs raw append+fdatasync ({raw_us:.0} µs) |"
    );
    println!("|---:|---:|---|---:|---:|---:|---:|");
    for (steps, parallelism, file, us, syncs) in rows {
        if file {
            let per_record = us / syncs.max(1e-9);
            println!(
                "| {steps} | {parallelism} | file | {us:.1} | {syncs:.2} | {per_record:.1} | {:.2}x |",
                per_record / raw_us
            );
        } else {
            println!("| {steps} | {parallelism} | memory | {us:.1} | 0 | - | - |");
            if steps >= 1000 && parallelism == 1 {
                rollback_benches::summary(
                    "engine",
                    &format!("in-memory engine, {steps} steps"),
                    &format!("{us:.1} µs/step"),
                    "-",
                    "-",
                    &format!("< 20 µs/step: {}", rollback_benches::met(us < 20.0)),
                );
            }
        }
    }
}

const STEPS: rollback_benches::Plot = rollback_benches::Plot {
    id: "engine-steps",
    title: "engine: cost per step as the plan grows (4 parallel per stage)",
    x: "steps in the plan",
    y: "µs per step (median)",
    per_unit: true,
};

/// How a step's cost grows with the plan: 10 → 10,000 steps, memory and file journal.
fn series(dir: &Path, quick: bool) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let sizes: &[usize] = if quick { &[10, 100] } else { &[10, 100, 1000, 10_000] };
    println!("\nengine cost per step by plan size (parallelism 4; median)");
    println!("| steps | memory journal µs/step | file journal µs/step |");
    println!("|---:|---:|---:|");
    for &steps in sizes {
        let reps = if quick { 2 } else { (20_000 / steps).clamp(3, 41) };
        let mut row = Vec::new();
        for (curve, file) in [("memory journal", false), ("file journal", true)] {
            let per_step: Vec<f64> = (0..reps)
                .map(|_| rt.block_on(run_once(steps, 4, file, dir)).0.as_secs_f64() * 1e6 / steps as f64)
                .collect();
            let us = median(per_step);
            STEPS.point(curve, steps as f64, us);
            row.push(us);
        }
        println!("| {steps} | {:.1} | {:.1} |", row[0], row[1]);
    }
}

fn main() {
    let quick = std::env::var_os("ROLLBACK_BENCH_QUICK").is_some() || std::env::args().any(|a| a == "--test");
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    if !quick {
        // No criterion plots: its SVG charts need a registered font once plotters is
        // built with ab_glyph (for rollback-bench-plot).
        let mut c = Criterion::default().without_plots().configure_from_args();
        criterion_benches(&mut c, dir.path());
        c.final_summary();
    }
    summary(dir.path(), quick);
    series(dir.path(), quick);
}
