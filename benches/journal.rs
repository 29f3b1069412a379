//! The shared journal's cost, side by side in one run on the server of
//! ROLLBACK_TEST_POSTGRES_URL (a database of its own):
//!
//! (a) per engine step: PgJournal vs FileJournal vs a raw `INSERT` of a record of the
//!     same size committed on its own (synchronous_commit on) — the floor a journal
//!     on this server cannot beat;
//! (b) appends per second with 1 → 64 concurrent writers, each on its own run (how
//!     many runs and hosts one server serves).
//!
//! ```text
//! cargo bench -p rollback-benches --bench journal            # full
//! cargo bench -p rollback-benches --bench journal -- --test  # smoke
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use rollback_core::journal::{Durability, Entry};
use rollback_core::testkit::MemoryTarget;
use rollback_core::{
    Engine, FileJournal, Journal, MemoryLock, Plan, Registry, RunId, RunState, Selector, Severity, Step, StepOp,
};
use rollback_db::{PgJournal, PgJournalOptions};

const WRITERS: rollback_benches::Plot = rollback_benches::Plot {
    id: "journal-writers",
    title: "PostgreSQL journal: appends per second by concurrent writers",
    x: "concurrent writers (one run each)",
    y: "appends per second",
    per_unit: false,
};

fn plan(steps: usize) -> (Plan, Registry) {
    let mut registry = Registry::new();
    let mut stage = Vec::new();
    for i in 0..steps {
        let name = format!("t{i}");
        registry.register_target(Arc::new(MemoryTarget::with_versions(&name, &["a", "b"])));
        stage.push(Step::new(name.as_str(), StepOp::Rollback { target: name.as_str().into(), to: Selector::Previous }));
    }
    (Plan::new("bench").stage("all", 1, stage), registry)
}

/// Median µs per step of `reps` runs of `steps` steps on `journal`.
async fn per_step(
    journal: impl Fn() -> Arc<dyn Journal>,
    lock: Arc<dyn rollback_core::Lock>,
    steps: usize,
    reps: usize,
    dir: &std::path::Path,
) -> f64 {
    let mut samples = Vec::new();
    for _ in 0..reps {
        let (plan, registry) = plan(steps);
        let engine = Engine::builder(registry)
            .journal(journal())
            .lock(lock.clone())
            .artifacts_dir(dir.join("artifacts"))
            .build();
        let started = Instant::now();
        let report = engine.run(plan, Default::default()).await.unwrap();
        assert_eq!(report.state, RunState::Succeeded);
        samples.push(started.elapsed().as_secs_f64() * 1e6 / steps as f64);
    }
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

async fn database(admin: &str) -> String {
    let name = format!("rb_bench_journal_{}", std::process::id());
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(admin).await.unwrap();
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}"))).execute(&pool).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&pool).await.unwrap();
    format!("{}/{name}", admin.rsplit_once('/').unwrap().0)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--test");
    let Ok(admin) = std::env::var("ROLLBACK_TEST_POSTGRES_URL") else {
        println!("journal bench: ROLLBACK_TEST_POSTGRES_URL not set, skipped");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    rt.block_on(async {
        let url = database(&admin).await;
        let pg = Arc::new(
            PgJournal::connect_with(&url, PgJournalOptions { max_connections: 70, ..Default::default() })
                .await
                .unwrap(),
        );
        let (steps, reps) = if quick { (20, 1) } else { (200, 9) };
        // The record a step writes: its intent, measured from a journaled run.
        // PgJournal with its own lease lock (the token checked at append is the one
        // the lock granted); the file journal with an in-process lock.
        let pg_lock: Arc<dyn rollback_core::Lock> = Arc::new(pg.lease_lock().await.unwrap());
        let memory_lock: Arc<dyn rollback_core::Lock> = Arc::new(MemoryLock::new());
        per_step(|| pg.clone() as Arc<dyn Journal>, pg_lock.clone(), 1, 1, dir.path()).await;
        let run = pg.runs().await.unwrap().pop().unwrap().run;
        let records = pg.read(&run).await.unwrap();
        let intent = records.iter().find(|r| matches!(r.entry, Entry::Intent { .. })).unwrap();
        let record = serde_json::to_string(&intent.entry).unwrap();

        let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
        sqlx::query("CREATE TABLE raw_records (run TEXT, seq BIGINT, entry JSONB, PRIMARY KEY (run, seq))")
            .execute(&pool)
            .await
            .unwrap();
        let n = if quick { 50 } else { 2000 };
        let mut raw = Vec::new();
        for seq in 0..n {
            let t = Instant::now();
            sqlx::query("INSERT INTO raw_records VALUES ('raw', $1, $2::jsonb)")
                .bind(seq as i64)
                .bind(&record)
                .execute(&pool)
                .await
                .unwrap();
            raw.push(t.elapsed().as_secs_f64() * 1e6);
        }
        raw.sort_by(f64::total_cmp);
        let raw_us = raw[raw.len() / 2];

        let pg_us = per_step(|| pg.clone() as Arc<dyn Journal>, pg_lock.clone(), steps, reps, dir.path()).await;
        let file_us = per_step(
            || {
                Arc::new(FileJournal::open(dir.path().join(format!("f{}", RunId::generate()))).unwrap())
                    as Arc<dyn Journal>
            },
            memory_lock.clone(),
            steps,
            reps,
            dir.path(),
        )
        .await;
        println!("\n(a) engine cost per step ({steps} steps, median of {reps}; {}-byte intent record)", record.len());
        println!("| journal | µs per step | vs the raw INSERT + COMMIT |");
        println!("|---|---:|---:|");
        println!("| PgJournal + its lease lock (one function call per step) | {pg_us:.0} | {:.2}× |", pg_us / raw_us);
        println!("| FileJournal (one write + fdatasync per step) | {file_us:.0} | {:.2}× |", file_us / raw_us);
        println!("| raw INSERT of the record, autocommit | {raw_us:.0} | 1.00× |");
        rollback_benches::summary(
            "journal",
            "engine step with the PostgreSQL journal vs a raw INSERT + COMMIT of the same record",
            &format!("{pg_us:.0} µs"),
            &format!("{raw_us:.0} µs"),
            &format!("{:.2}×", pg_us / raw_us),
            &format!("≤ 1.2×: {}", rollback_benches::met(pg_us / raw_us <= 1.2)),
        );

        println!("\n(b) synchronous appends per second, each writer on its own run (one record each)");
        println!("| writers | appends/s | ms per append (median) |");
        println!("|---:|---:|---:|");
        let writers: &[usize] = if quick { &[1, 4] } else { &[1, 4, 16, 64] };
        let window = Duration::from_secs(if quick { 1 } else { 5 });
        for &w in writers {
            let started = Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..w {
                let pg = pg.clone();
                tasks.spawn(async move {
                    let run = RunId::generate();
                    let mut lat = Vec::new();
                    while started.elapsed() < window {
                        let t = Instant::now();
                        let entry = Entry::Escalated { severity: Severity::S3, reason: "bench".into() };
                        pg.append(&run, None, entry, Durability::Sync).await.unwrap();
                        lat.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                    lat
                });
            }
            let mut all = Vec::new();
            while let Some(done) = tasks.join_next().await {
                all.extend(done.unwrap());
            }
            let rate = all.len() as f64 / started.elapsed().as_secs_f64();
            all.sort_by(f64::total_cmp);
            println!("| {w} | {rate:.0} | {:.2} |", all[all.len() / 2]);
            WRITERS.point("PgJournal, synchronous commit", w as f64, rate);
        }
    });
}
