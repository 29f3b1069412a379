//! 100 separate processes held at a barrier, released together to lock the same
//! resource: under every lock kind exactly one proceeds and the other 99 get a
//! "locked" error naming the winner.
//!
//! Needs `ROLLBACK_TEST_POSTGRES_URL` and `ROLLBACK_TEST_REDIS_URL` for those kinds
//! (`scripts/test.sh` starts the servers); the Lease lock runs on the Kubernetes API
//! double, the file lock on a temporary directory.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CONTENDERS: usize = 100;

fn race(kind: &str, location: &str, dir: &Path) {
    let barrier = dir.join(format!("go-{kind}"));
    let resource = format!("race-{kind}-{}", std::process::id());
    let children: Vec<_> = (0..CONTENDERS)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_lock-contender"))
                // The winner holds on until every other contender has decided.
                .args([kind, &resource, barrier.to_str().unwrap(), "15000", location])
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn a contender")
        })
        .collect();
    let ready = |dir: &Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("go-{kind}.ready.")))
            .count()
    };
    let started = Instant::now();
    while ready(dir) < CONTENDERS && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(ready(dir), CONTENDERS, "every contender is connected and waiting");
    std::fs::write(&barrier, b"go").unwrap();
    let outcomes: Vec<serde_json::Value> = children
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().unwrap();
            serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stdout)))
        })
        .collect();
    let winners: Vec<&serde_json::Value> = outcomes.iter().filter(|o| o["outcome"] == "acquired").collect();
    let errors: Vec<&serde_json::Value> = outcomes.iter().filter(|o| o["outcome"] == "error").collect();
    assert!(errors.is_empty(), "{kind}: contenders failed otherwise: {errors:?}");
    assert_eq!(winners.len(), 1, "{kind}: exactly one proceeds: {winners:?}");
    let winner_pid = winners[0]["pid"].as_u64().unwrap();
    for loser in outcomes.iter().filter(|o| o["outcome"] == "locked") {
        let error = loser["error"].as_str().unwrap();
        assert!(error.contains(&format!("pid {winner_pid}")), "{kind}: the error names the holder: {error}");
    }
    assert_eq!(outcomes.iter().filter(|o| o["outcome"] == "locked").count(), CONTENDERS - 1);
    eprintln!("{kind}: 1 acquired, {} locked", CONTENDERS - 1);
}

#[test]
fn file_lock_race() {
    let dir = tempfile::tempdir().unwrap();
    let locks = dir.path().join("locks");
    std::fs::create_dir_all(&locks).unwrap();
    race("file", locks.to_str().unwrap(), dir.path());
}

#[test]
fn postgres_lock_race() {
    let Some(url) = rollback_core::testkit::server_env("ROLLBACK_TEST_POSTGRES_URL", "PostgreSQL") else { return };
    let dir = tempfile::tempdir().unwrap();
    race("postgres", &url, dir.path());
}

#[test]
fn redis_lock_race() {
    let Some(url) = rollback_core::testkit::server_env("ROLLBACK_TEST_REDIS_URL", "Redis") else { return };
    let dir = tempfile::tempdir().unwrap();
    race("redis", &url, dir.path());
}

#[test]
fn lease_lock_race_on_the_api_double() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let double = runtime.block_on(rollback_k8s::double::ApiDouble::start());
    let dir = tempfile::tempdir().unwrap();
    race("lease", double.url(), dir.path());
    drop(double);
}
