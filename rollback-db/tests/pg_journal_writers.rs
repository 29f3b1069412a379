//! Many runner processes on one shared journal: 100 processes, each with its own
//! PgJournal (one connection), append to the same 10 runs at once, released
//! together; every run's sequence numbers come out gapless and unique, and every
//! record written is there exactly once.
//!
//! The writers are this test binary run again (`writer_process` does the writing
//! when `RB_JOURNAL_WRITER` is set). Their server is a private PostgreSQL with room
//! for 100 more connections, so the shared server's other tests keep theirs.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rollback_core::journal::{Durability, Entry, Journal};
use rollback_core::{RunId, Severity};
use rollback_db::testing::PrivatePostgres;
use rollback_db::{PgJournal, PgJournalOptions};

const WRITERS: usize = 100;
const RUNS: usize = 10;
/// Batches each writer appends to each run (two records each).
const BATCHES: usize = 3;

fn note(writer: usize, run: usize, batch: usize, half: usize) -> Entry {
    Entry::Escalated { severity: Severity::S3, reason: format!("w{writer}-r{run}-b{batch}-{half}") }
}

fn wait_for(what: &str, limit: Duration, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Not a test on its own: the body of each writer process (does nothing unless
/// `RB_JOURNAL_WRITER` = `writer|url|dir|run,run,…`).
#[tokio::test]
async fn writer_process() {
    let Ok(spec) = std::env::var("RB_JOURNAL_WRITER") else { return };
    let [writer, url, dir, runs]: [&str; 4] = spec.splitn(4, '|').collect::<Vec<_>>().try_into().unwrap();
    let writer: usize = writer.parse().unwrap();
    let runs: Vec<RunId> = runs.split(',').map(|r| r.parse().unwrap()).collect();
    let journal =
        PgJournal::connect_with(url, PgJournalOptions { max_connections: 1, ..Default::default() }).await.unwrap();
    let dir = Path::new(dir);
    std::fs::write(dir.join(format!("ready-{writer}")), "").unwrap();
    wait_for("the start signal", Duration::from_secs(120), || dir.join("go").exists());
    for batch in 0..BATCHES {
        // Each writer visits the runs in its own order.
        for k in 0..RUNS {
            let r = (k + writer) % RUNS;
            let entries = vec![note(writer, r, batch, 0), note(writer, r, batch, 1)];
            journal.append_batch(&runs[r], None, entries, Durability::Sync).await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_processes_appending_to_ten_runs_leave_gapless_unique_sequences() {
    if rollback_core::testkit::server_env("ROLLBACK_TEST_POSTGRES_URL", "PostgreSQL").is_none() {
        return;
    }
    let server = PrivatePostgres::init_with(&["max_connections = 160"]);
    let url = server.url("postgres");
    let reader = PgJournal::connect(&url).await.unwrap(); // migrates the schema once, before the writers
    let runs: Vec<RunId> = (0..RUNS).map(|_| RunId::generate()).collect();
    let list = runs.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",");
    let dir = tempfile::tempdir().unwrap();
    let me = std::env::current_exe().unwrap();
    let mut children = Vec::new();
    for writer in 0..WRITERS {
        let child = Command::new(&me)
            .args(["--exact", "writer_process", "--test-threads", "1", "-q"])
            .env("RB_JOURNAL_WRITER", format!("{writer}|{url}|{}|{list}", dir.path().display()))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        children.push(child);
    }
    let ready = || std::fs::read_dir(dir.path()).unwrap().count() >= WRITERS;
    wait_for("every writer connected", Duration::from_secs(120), ready);
    std::fs::write(dir.path().join("go"), "").unwrap();
    let released = Instant::now();
    for child in children {
        let done = child.wait_with_output().unwrap();
        assert!(done.status.success(), "a writer failed: {}", String::from_utf8_lossy(&done.stderr));
    }
    eprintln!("{} appends by {WRITERS} processes in {:?}", WRITERS * RUNS * BATCHES, released.elapsed());

    for (r, run) in runs.iter().enumerate() {
        let records = reader.read(run).await.unwrap();
        assert_eq!(records.len(), WRITERS * BATCHES * 2, "run {r}");
        let seqs: Vec<u64> = records.iter().map(|x| x.seq).collect();
        assert_eq!(seqs, (1..=records.len() as u64).collect::<Vec<_>>(), "run {r}: gapless, unique, in order");
        let mut seen = BTreeSet::new();
        for (i, record) in records.iter().enumerate() {
            let Entry::Escalated { reason, .. } = &record.entry else { panic!("run {r}: {:?}", record.entry) };
            assert!(seen.insert(reason.clone()), "run {r}: {reason} twice");
            // A batch's two records are adjacent: nobody's append lands inside another's.
            if reason.ends_with("-1") {
                let first = reason.trim_end_matches('1').to_owned() + "0";
                assert!(
                    matches!(&records[i - 1].entry, Entry::Escalated { reason, .. } if *reason == first),
                    "run {r}"
                );
            }
        }
        let expected: BTreeSet<String> = (0..WRITERS)
            .flat_map(|w| (0..BATCHES).flat_map(move |b| [0, 1].map(|h| format!("w{w}-r{r}-b{b}-{h}"))))
            .collect();
        assert_eq!(seen, expected, "run {r}: every record once");
    }
}
