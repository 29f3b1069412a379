//! One contender in a lock race (used by `tests/lock_races.rs`): waits until a
//! barrier file exists, tries to acquire `resource` with the chosen lock, prints one
//! JSON line with the outcome, and holds a won lease for `hold-ms`.
//!
//! ```text
//! lock-contender <file|postgres|redis|lease> <resource> <barrier-file> <hold-ms> <location>
//! ```
//! `location`: the lock directory (file), the database URL (postgres), the Redis URL
//! (redis), or the API server URL (lease, namespace `default`).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rollback_core::{FileLock, Holder, Lock, Result, RunId};

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

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
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
