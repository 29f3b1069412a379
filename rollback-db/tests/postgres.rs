//! sqlx migrations and pg_dump snapshots on a real PostgreSQL server.
//!
//! Needs `ROLLBACK_TEST_POSTGRES_URL` (a superuser URL; `scripts/test.sh` starts the
//! server and sets it). Under `CI=true` a missing server fails the tests.

use std::sync::Arc;

use rollback_core::testkit::conformance;
use rollback_core::{ArtifactStore, IdempotencyKey, LocalDirStore, Request, Selector, Snapshot, Target};
use rollback_db::{PgDump, PgDumpConfig, SqlxMigrations, SqlxMigrationsConfig};

fn admin_url() -> Option<String> {
    match std::env::var("ROLLBACK_TEST_POSTGRES_URL") {
        Ok(url) => Some(url),
        Err(_) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("ROLLBACK_TEST_POSTGRES_URL is not set: PostgreSQL is required under CI (scripts/test.sh starts it)")
        }
        Err(_) => {
            eprintln!("\n*** NOT RUN: PostgreSQL tests need ROLLBACK_TEST_POSTGRES_URL (run ./scripts/test.sh) ***\n");
            None
        }
    }
}

/// A fresh database on the server, migrated up by sqlx's own migrator.
async fn fresh_database(admin: &str, dir: &std::path::Path) -> String {
    let name = format!("rb_test_{}", uuid_like());
    let admin_pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(admin).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin_pool).await.unwrap();
    admin_pool.close().await;
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    std::fs::create_dir_all(dir).unwrap();
    for (file, sql) in [
        ("20251001_create_users.up.sql", "CREATE TABLE users (id BIGSERIAL PRIMARY KEY, name TEXT);"),
        ("20251001_create_users.down.sql", "DROP TABLE users;"),
        ("20251005_add_email.up.sql", "ALTER TABLE users ADD COLUMN email TEXT;"),
        ("20251005_add_email.down.sql", "ALTER TABLE users DROP COLUMN email;"),
        (
            "20251010_create_orders.up.sql",
            "CREATE TABLE orders (id BIGSERIAL PRIMARY KEY, user_id BIGINT REFERENCES users(id));",
        ),
        ("20251010_create_orders.down.sql", "DROP TABLE orders;"),
    ] {
        std::fs::write(dir.join(file), sql).unwrap();
    }
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
    sqlx::migrate::Migrator::new(dir.to_path_buf()).await.unwrap().run(&pool).await.unwrap();
    pool.close().await;
    url
}

fn uuid_like() -> String {
    format!("{}_{}", std::process::id(), chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default())
}

#[tokio::test]
async fn sqlx_migrations_on_postgres_conform() {
    let Some(admin) = admin_url() else { return };
    let base = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    conformance::target_suite(|| {
        let dir = base.path().join(format!("m{}", n.fetch_add(1, std::sync::atomic::Ordering::SeqCst)));
        let admin = admin.clone();
        async move {
            let url = fresh_database(&admin, &dir).await;
            Arc::new(
                SqlxMigrations::connect("schema", SqlxMigrationsConfig { url: Some(url), migrations: dir })
                    .await
                    .unwrap(),
            ) as Arc<dyn Target>
        }
    })
    .await;
}

#[tokio::test]
async fn identity_names_the_database_oid() {
    let Some(admin) = admin_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(&admin, dir.path()).await;
    let schema = SqlxMigrations::connect(
        "schema",
        SqlxMigrationsConfig { url: Some(url.clone()), migrations: dir.path().into() },
    )
    .await
    .unwrap();
    let identity = schema.identity().await.unwrap();
    assert!(
        identity.as_str().starts_with("postgres:127.0.0.1:5432/rb_test_") && identity.as_str().contains('@'),
        "{identity}"
    );
    assert!(!identity.as_str().contains("rollback-test"), "no password in identities");
    let change = schema.prepare(&Request::To(Selector::Previous)).await.unwrap();
    schema.apply(&change, &IdempotencyKey::new("r/schema/fwd")).await.unwrap();
    assert_eq!(schema.current().await.unwrap().id, "20251005");
}

#[tokio::test]
async fn pg_dump_captures_and_restores() {
    let Some(admin) = admin_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(&admin, &dir.path().join("m")).await;
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
    sqlx::query("INSERT INTO users (name) VALUES ('ada'), ('grace')").execute(&pool).await.unwrap();
    let store = LocalDirStore::new(dir.path().join("artifacts"));
    let dump = PgDump::new("db-dump", &url, PgDumpConfig::default()).unwrap();
    assert!(!format!("{dump:?}").contains("rollback-test"));
    let snapshot = dump.capture(&store, &IdempotencyKey::new("r/dump/fwd")).await.unwrap();
    assert_eq!(snapshot.artifacts.len(), 1);
    let bytes = store.get(&snapshot.artifacts[0]).await.unwrap();
    assert!(bytes.starts_with(b"PGDMP"), "custom-format dump");
    sqlx::query("DELETE FROM orders").execute(&pool).await.unwrap();
    sqlx::query("DELETE FROM users").execute(&pool).await.unwrap();
    pool.close().await;
    dump.restore(&snapshot, &store).await.unwrap();
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM users").fetch_one(&pool).await.unwrap();
    assert_eq!(count, 2, "rows are back");
}
