//! Test helper (feature `test-helpers`): one restore-and-swap in its own process, so
//! a test can let it die between phases and finish the job from another process.
//!
//! `rollback-db-swap-child <url> <dump> <key> [abort-after-phase]`

use rollback_core::{IdempotencyKey, Request, Target};
use rollback_db::{PgRestoreSwap, PgRestoreSwapConfig, SwapPhase};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, dump, key, rest @ ..] = args.as_slice() else {
        eprintln!("usage: rollback-db-swap-child URL DUMP KEY [restored|connections_disabled|renamed]");
        std::process::exit(2);
    };
    let abort_after = rest.first().map(|p| match p.as_str() {
        "restored" => SwapPhase::Restored,
        "connections_disabled" => SwapPhase::ConnectionsDisabled,
        _ => SwapPhase::Renamed,
    });
    let mut target = PgRestoreSwap::new("db", url, PgRestoreSwapConfig::default()).expect("target");
    if let Some(phase) = abort_after {
        target = target.abort_after(phase);
    }
    let change_file = std::path::Path::new(dump).with_extension("change.json");
    // The change is prepared once and kept, as the engine's journal would keep it.
    let change = match std::fs::read(&change_file) {
        Ok(bytes) => serde_json::from_slice(&bytes).expect("change"),
        Err(_) => {
            let change = target
                .prepare(&Request::Action { action: "restore".into(), params: serde_json::json!({ "dump": dump }) })
                .await
                .expect("prepare");
            std::fs::write(&change_file, serde_json::to_vec(&change).unwrap()).unwrap();
            change
        }
    };
    match target.apply(&change, &IdempotencyKey::new(key.as_str())).await {
        Ok(()) => println!("done"),
        Err(err) => {
            println!("error {err}");
            std::process::exit(1);
        }
    }
}
