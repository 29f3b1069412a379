//! The shared journal's server crashes mid-run: a private PostgreSQL holds the
//! journal and is stopped with `pg_ctl -m immediate` while a down migration (on
//! another server) is held inside its script; the script then commits, the journal
//! cannot record it, and the run stops with a retryable error naming the step.
//! Once the journal's server is back, `resume` observes the migration done and
//! finishes — each down script committed once, as the target database shows.

use std::sync::Arc;
use std::time::Duration;

use rollback_core::{Engine, Plan, Registry, RunId, RunOptions, RunState, Selector, Settings, Spec, Step, StepOp};
use rollback_db::PgJournal;
use rollback_db::testing::{
    HELD_DOWN_LOCK, MIGRATIONS, PrivatePostgres, applied, await_lock_waiter, down_log, held_migrations,
};

/// A database of this test's own on the shared server.
async fn database(admin: &str) -> String {
    let name = format!("rb_journal_outage_{}", std::process::id());
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(admin).await.unwrap();
    for sql in [format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"), format!("CREATE DATABASE {name}")] {
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await.unwrap();
    }
    pool.close().await;
    format!("{}/{name}", admin.rsplit_once('/').unwrap().0)
}

async fn runner(journal_url: &str, dir: &std::path::Path) -> Engine {
    let journal = PgJournal::connect(journal_url).await.unwrap();
    let lock = journal.lease_lock().await.unwrap();
    let mut registry = Registry::new();
    rollback_db::register(&mut registry);
    let settings = Settings { host: Some("host-a".into()), lease_ttl: Duration::from_secs(3), ..Settings::default() };
    Engine::builder(registry)
        .journal(Arc::new(journal))
        .lock(Arc::new(lock))
        .artifacts_dir(dir.join("artifacts"))
        .settings(settings)
        .build()
}

/// Takes the schema back two migrations; its URL read from a file, as a plan's secret.
fn plan(url_file: &std::path::Path, migrations: &std::path::Path) -> Plan {
    let mut plan = Plan::new("schema back two").stage(
        "schema",
        1,
        vec![Step::new("schema-down", StepOp::Rollback { target: "schema".into(), to: Selector::Back(2) })],
    );
    let mut spec = Spec::new("sqlx-migrations", "schema", serde_json::json!({ "migrations": migrations }));
    spec.secrets.insert("url".into(), rollback_core::SecretRef::File { path: url_file.into() });
    plan.targets.push(spec);
    plan
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_server_crashing_mid_run_is_retryable_and_resume_finishes() {
    let Some(admin) = rollback_core::testkit::server_env("ROLLBACK_TEST_POSTGRES_URL", "PostgreSQL") else { return };
    let journal_server = PrivatePostgres::init();
    let journal_url = journal_server.url("postgres");
    let schema_url = database(&admin).await;
    let dir = tempfile::tempdir().unwrap();
    let migrations = dir.path().join("migrations");
    held_migrations(&schema_url, &migrations).await;
    let url_file = dir.path().join("schema-url");
    std::fs::write(&url_file, &schema_url).unwrap();
    let engine = runner(&journal_url, dir.path()).await;

    let hold = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&schema_url).await.unwrap();
    let mut held = hold.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)").bind(HELD_DOWN_LOCK).execute(&mut *held).await.unwrap();
    let run = RunId::generate();
    let running = tokio::spawn({
        let (engine, plan, run) = (engine.clone(), plan(&url_file, &migrations), run.clone());
        async move { engine.run(plan, RunOptions { run_id: Some(run), ..Default::default() }).await }
    });
    await_lock_waiter(&mut held).await;
    journal_server.crash();
    // The held script now commits on the target; its outcome has nowhere to go.
    sqlx::query("SELECT pg_advisory_unlock($1)").bind(HELD_DOWN_LOCK).execute(&mut *held).await.unwrap();
    drop(held);
    let outcome = tokio::time::timeout(Duration::from_secs(120), running).await.unwrap().unwrap();
    let text = match &outcome {
        Ok(report) => {
            assert_ne!(report.state, RunState::Succeeded, "{report}");
            report.to_string()
        }
        Err(err) => {
            assert!(err.is_retryable(), "a journal outage is retryable: {err}");
            err.to_string()
        }
    };
    eprintln!("--- the run cut by the journal's outage\n{text}");
    assert!(text.contains("schema-down"), "the error names the step: {text}");
    assert_eq!(down_log(&schema_url).await.unwrap(), [MIGRATIONS[2], MIGRATIONS[1]], "both scripts committed");

    let err = engine.resume(&run).await.expect_err("resume while the journal is down fails before acting");
    assert!(err.is_retryable(), "{err}");

    journal_server.start();
    let resumed = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match engine.resume(&run).await {
                Err(e) if e.kind() == rollback_core::ErrorKind::Locked => {
                    tokio::time::sleep(Duration::from_millis(500)).await
                }
                other => break other,
            }
        }
    })
    .await
    .expect("resume finished")
    .unwrap();
    assert_eq!(resumed.state, RunState::Succeeded, "{resumed}");
    assert_eq!(down_log(&schema_url).await.unwrap(), [MIGRATIONS[2], MIGRATIONS[1]], "each down script once");
    assert_eq!(applied(&schema_url).await, [MIGRATIONS[0]]);
    hold.close().await;
}
