//! One contender in a lock race (used by `tests/lock_races.rs`): waits until a
//! barrier file exists, tries to acquire `resource` with the chosen lock, prints one
//! JSON line with the outcome, and holds a won lease for `hold-ms`.
//!
//! ```text
//! lock-contender <file|postgres|redis|lease> <resource> <barrier-file> <hold-ms> <location>
//! ```
//! `location`: the lock directory (file), the database URL (postgres), the Redis URL
//! (redis), or the API server URL (lease, namespace `default`).
//!
//! A second form holds a lease and writes to a journal under its fence, for the
//! "holder stopped past its lease" test:
//!
//! ```text
//! lock-contender hold <kind> <resource> <ttl-ms> <location> <journal-dir>
//! ```
//! It prints `held <token>` (or `locked <error>`), then waits for a line on stdin
//! and appends once more, printing `appended` or `rejected <error>`.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rollback_core::journal::{Durability, Entry};
use rollback_core::{FileJournal, FileLock, Holder, Journal, Lock, Result, RunId, Severity};

async fn lock(kind: &str, location: &str) -> Result<Arc<dyn Lock>> {
    Ok(match kind {
        "file" => Arc::new(FileLock::new(location)),
        "postgres" => Arc::new(rollback_db::PgLeaseLock::connect(location).await?),
        "redis" => Arc::new(rollback_storage::redis::RedisLock::new(rollback_storage::redis::RedisConn::open(
            location,
            Duration::from_secs(10),
        )?)),
        "lease" => Arc::new(
            rollback_k8s::LeaseLock::connect(rollback_k8s::LeaseLockConfig {
                cluster: rollback_k8s::ClusterConfig { url: Some(location.to_string()), ..Default::default() },
                namespace: "default".into(),
                prefix: "race".into(),
            })
            .await?,
        ),
        other => return Err(rollback_core::Error::invalid_input(format!("unknown lock kind {other:?}"))),
    })
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Holds a lease on `resource` and appends to the journal in `journal_dir` under its
/// fence: once at once, once more after a line arrives on stdin.
async fn hold(kind: &str, resource: &str, ttl_ms: u64, location: &str, journal_dir: &str) -> i32 {
    let lock = match lock(kind, location).await {
        Ok(lock) => lock,
        Err(e) => {
            say(&format!("error {e}"));
            return 1;
        }
    };
    let journal = FileJournal::open(journal_dir).unwrap_or_else(|e| panic!("{e}"));
    let run = RunId::generate();
    let holder = Holder::this_process(&run);
    let lease = match lock.acquire(&[resource.to_string()], &holder, Duration::from_millis(ttl_ms)).await {
        Ok(lease) => lease,
        Err(e) => {
            say(&format!("locked {e}"));
            return 3;
        }
    };
    let entry = |n: u32| Entry::Escalated { severity: Severity::S3, reason: format!("holder append {n}") };
    if let Err(e) = journal.append(&run, Some(&lease.fence()), entry(1), Durability::Sync).await {
        say(&format!("rejected {e}"));
        return 1;
    }
    say(&format!("held {}", lease.token));
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    match journal.append(&run, Some(&lease.fence()), entry(2), Durability::Sync).await {
        Ok(_) => say("appended"),
        Err(e) => say(&format!("rejected {e}")),
    }
    0
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [mode, kind, resource, ttl_ms, location, journal_dir] = args.as_slice()
        && mode == "hold"
    {
        let ttl_ms = ttl_ms.parse().expect("ttl-ms is a number");
        std::process::exit(hold(kind, resource, ttl_ms, location, journal_dir).await);
    }
    let [kind, resource, barrier, hold_ms, location] = args.as_slice() else {
        eprintln!("usage: lock-contender <file|postgres|redis|lease> <resource> <barrier-file> <hold-ms> <location>");
        std::process::exit(2);
    };
    let lock = match lock(kind, location).await {
        Ok(lock) => lock,
        Err(e) => {
            println!("{}", serde_json::json!({ "outcome": "error", "error": e.to_string() }));
            return;
        }
    };
    let holder = Holder::this_process(&RunId::generate());
    let _ = std::fs::write(format!("{barrier}.ready.{}", std::process::id()), b"");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !Path::new(barrier).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(500));
    }
    match lock.acquire(std::slice::from_ref(resource), &holder, Duration::from_secs(30)).await {
        Ok(lease) => {
            println!(
                "{}",
                serde_json::json!({ "outcome": "acquired", "token": lease.token, "pid": std::process::id() })
            );
            tokio::time::sleep(Duration::from_millis(hold_ms.parse().unwrap_or(0))).await;
            let _ = lock.release(&lease).await;
        }
        Err(e) if e.kind() == rollback_core::ErrorKind::Locked => {
            println!("{}", serde_json::json!({ "outcome": "locked", "error": e.to_string() }));
        }
        Err(e) => println!("{}", serde_json::json!({ "outcome": "error", "error": e.to_string() })),
    }
}
