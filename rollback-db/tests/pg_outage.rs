//! A PostgreSQL outage in the middle of a migration rollback: a private server is
//! stopped (`pg_ctl stop -m immediate`, a crash) while the second of two down
//! migrations runs (held there on an advisory lock the test owns); the run fails with a report that names the step, the retryable
//! cause and what the database was left with; `resume` refuses to act while the
//! server is down and, once it is back, finishes — each down script ran exactly once.
//!
//! Runs its own server (initdb in a temporary directory, as the `postgres` user when
//! run as root), so stopping it disturbs no other test. Needs the PostgreSQL server
//! binaries (`/usr/lib/postgresql/<v>/bin`); gated like every server test on
//! `ROLLBACK_TEST_POSTGRES_URL`, which `scripts/test.sh` sets once it has installed them.

use std::path::Path;

use rollback_core::testkit::outage::assert_cut_by_outage;
use rollback_core::{Engine, Plan, Registry, RunState, Selector, Spec, Step, StepOp};
use rollback_db::testing::{
    HELD_DOWN_LOCK as HOLD, MIGRATIONS, PrivatePostgres, applied, await_lock_waiter, down_log, held_migrations,
};

fn plan(url: &str, migrations: &Path) -> Plan {
    let mut plan = Plan::new("schema back two").stage(
        "schema",
        1,
        vec![Step::new("schema-down", StepOp::Rollback { target: "schema".into(), to: Selector::Back(2) })],
    );
    plan.targets.push(Spec::new(
        "sqlx-migrations",
        "schema",
        serde_json::json!({ "url": url, "migrations": migrations }),
    ));
    plan
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_crash_mid_migration_is_reported_and_resume_finishes() {
    if rollback_core::testkit::server_env("ROLLBACK_TEST_POSTGRES_URL", "PostgreSQL").is_none() {
        return;
    }
    let server = PrivatePostgres::init();
    let url = server.url("postgres");
    let work = tempfile::tempdir().unwrap();
    let migrations = work.path().join("migrations");
    held_migrations(&url, &migrations).await;
    let mut registry = Registry::new();
    rollback_db::register(&mut registry);
    let engine = Engine::builder(registry).home(work.path().join("home")).try_build().unwrap();

    // Hold the lock the second down script waits on, so the crash lands inside it.
    let holder = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
    let mut held = holder.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)").bind(HOLD).execute(&mut *held).await.unwrap();
    let run = tokio::spawn({
        let engine = engine.clone();
        let plan = plan(&url, &migrations);
        async move { engine.run(plan, Default::default()).await }
    });
    // The first down script (20251010) has committed; the second waits on the lock.
    await_lock_waiter(&mut held).await;
    assert_eq!(down_log(&url).await.as_deref(), Some(&[MIGRATIONS[2]][..]), "the first down script committed");
    server.crash();
    drop(held);
    let report = run.await.unwrap().unwrap();

    assert_cut_by_outage(&report, "schema-down");
    let text = report.to_string();
    assert!(text.contains("migration=20251005"), "the report names the migration the outage cut: {text}");
    eprintln!("--- the report of the failed run\n{text}");

    let err = engine.resume(&report.run).await.expect_err("resume while the server is down fails before acting");
    assert!(err.is_retryable(), "{err}");

    server.start();
    assert_eq!(down_log(&url).await.unwrap(), [MIGRATIONS[2]], "the crash undid the half-run second script");
    let report = engine.resume(&report.run).await.unwrap();
    assert_eq!(report.state, RunState::Succeeded, "{report}");
    assert_eq!(down_log(&url).await.unwrap(), [MIGRATIONS[2], MIGRATIONS[1]], "each down script ran exactly once");
    assert_eq!(applied(&url).await, [MIGRATIONS[0]]);
}
