//! The quickstart's outcome, asserted: final versions, health, a complete journal, evidence.

use rollback_core::journal::{Entry, RunLog};
use rollback_core::{FileJournal, Journal, RunState, StepState};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_rolls_back_the_broken_release_and_config() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = rollback_examples::quickstart::run(dir.path()).await.unwrap();
    assert!(outcome.decision.action.is_rollback(), "{}", outcome.decision);
    assert_eq!(outcome.report.state, RunState::Succeeded, "{}", outcome.report);
    assert_eq!(outcome.health, (503, 200));
    assert_eq!(std::fs::read_link(dir.path().join("app/current")).unwrap().to_str(), Some("releases/v1"));
    let env = std::fs::read_to_string(dir.path().join("app/shared/.env.production")).unwrap();
    assert!(env.starts_with("ORDERS_API=http://orders.internal\n"), "{env}");
    assert!(outcome.dry_run.steps.iter().any(|s| s.description.contains("switch current")));

    // The journal is complete: every step has an outcome, every effect an intent before it.
    let journal = FileJournal::open(dir.path().join(".rollback/journal")).unwrap();
    let records = journal.read(&outcome.report.run).await.unwrap();
    let log = RunLog::from_records(&records).unwrap();
    assert_eq!(log.state, RunState::Succeeded);
    assert!(log.steps.iter().all(|s| s.state == StepState::Done), "{:?}", log.steps);
    let intents = records.iter().filter(|r| matches!(r.entry, Entry::Intent { .. })).count();
    assert_eq!(intents, 3, "release switch, config restore, schema down");
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .connect(&format!("sqlite://{}", dir.path().join("app/shared/app.db").display()))
        .await
        .unwrap();
    let (version,): (i64,) =
        sqlx::query_as("SELECT MAX(version) FROM _sqlx_migrations").fetch_one(&pool).await.unwrap();
    assert_eq!(version, 20251001, "v2's migration was rolled back");
    let columns: Vec<(String,)> =
        sqlx::query_as("SELECT name FROM pragma_table_info('orders')").fetch_all(&pool).await.unwrap();
    assert!(!columns.iter().any(|c| c.0 == "coupon"), "{columns:?}");
    assert!(outcome.journal.exists());

    // Evidence: present, private, and with the secret redacted.
    assert_eq!(outcome.evidence.len(), 2, "{:?}", outcome.evidence);
    for path in &outcome.evidence {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(!text.contains("s3cr3t"), "{path:?} leaks a secret");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let env_evidence = outcome.evidence.iter().find(|p| p.to_string_lossy().contains(".env")).unwrap();
    assert!(std::fs::read_to_string(env_evidence).unwrap().contains("DB_PASSWORD=***"));
}
