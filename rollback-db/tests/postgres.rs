//! sqlx migrations and pg_dump snapshots on a real PostgreSQL server.
//!
//! Needs `ROLLBACK_TEST_POSTGRES_URL` (a superuser URL; `scripts/test.sh` starts the
//! server and sets it). Under `CI=true` a missing server fails the tests.

use std::sync::Arc;

use rollback_core::testkit::conformance;
use rollback_core::{ArtifactStore, IdempotencyKey, LocalDirStore, Request, Selector, Snapshot, Target};
use rollback_db::{PgDump, PgDumpConfig, SqlxMigrations, SqlxMigrationsConfig};

fn admin_url() -> Option<String> {
    rollback_core::testkit::server_env("ROLLBACK_TEST_POSTGRES_URL", "PostgreSQL")
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
                SqlxMigrations::connect(
                    "schema",
                    SqlxMigrationsConfig {
                        url: Some(url),
                        migrations: dir,
                        layout: Default::default(),
                        data_loss: Default::default(),
                    },
                )
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
        SqlxMigrationsConfig {
            url: Some(url.clone()),
            migrations: dir.path().into(),
            layout: Default::default(),
            data_loss: Default::default(),
        },
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
    // A large object: pg_restore wraps those in their own transaction unless told not to.
    sqlx::query("SELECT lo_from_bytea(0, 'avatar')").execute(&pool).await.unwrap();
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

    // The engine's keyed restore: the key is recorded in the restore's own transaction,
    // so `restored` tells a finished restore (and only that one) from the database.
    let key = IdempotencyKey::new("r/undo-'quoted'/comp");
    assert_eq!(dump.restored(&snapshot, &key).await.unwrap(), Some(false), "no restores table yet");
    sqlx::query("DELETE FROM users").execute(&pool).await.unwrap();
    dump.restore_keyed(&snapshot, &store, &key).await.unwrap();
    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM users").fetch_one(&pool).await.unwrap();
    assert_eq!(count, 2, "rows are back after the keyed restore");
    assert_eq!(dump.restored(&snapshot, &key).await.unwrap(), Some(true));
    assert_eq!(dump.restored(&snapshot, &IdempotencyKey::new("r/other/comp")).await.unwrap(), Some(false));
    // A restore that fails after the data is in, just before its key: nothing of it
    // stays (not the drops, not the rows, not the large object), and no key.
    let psql = dir.path().join("psql-failing-late");
    std::fs::write(
        &psql,
        "#!/bin/sh\nfor script; do :; done\nsed -i 's/^INSERT INTO public._rollback_restores/SELECT 1\\/0;\\n&/' \"$script\"\nexec psql \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&psql, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config = PgDumpConfig { psql: Some(psql.display().to_string()), ..Default::default() };
    let broken = PgDump::new("db-dump", &url, config).unwrap();
    sqlx::query("DELETE FROM users").execute(&pool).await.unwrap();
    sqlx::query("SELECT lo_unlink(oid) FROM pg_largeobject_metadata").execute(&pool).await.unwrap();
    let other = IdempotencyKey::new("r/broken/comp");
    let err = broken.restore_keyed(&snapshot, &store, &other).await.unwrap_err();
    assert!(err.to_string().contains("division by zero"), "failed where the wrapper broke it: {err}");
    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM users").fetch_one(&pool).await.unwrap();
    assert_eq!(count, 0, "the failed restore left nothing behind");
    let (objects,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM pg_largeobject_metadata").fetch_one(&pool).await.unwrap();
    assert_eq!(objects, 0, "not even its large object");
    assert_eq!(dump.restored(&snapshot, &other).await.unwrap(), Some(false));
}

use rollback_core::Observed;
use rollback_db::{PgRestoreSwap, PgRestoreSwapConfig, SwapPhase, SwapVerify};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A database `rb_swap_*` with 100 items, a `pg_dump -Fc` of it, then 50 more items.
async fn swap_fixture(admin: &str, dir: &std::path::Path) -> (String, String, std::path::PathBuf) {
    let name = format!("rb_swap_{}", uuid_like());
    let admin_pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(admin).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin_pool).await.unwrap();
    admin_pool.close().await;
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE items (id BIGSERIAL PRIMARY KEY, note TEXT NOT NULL, changed_at TIMESTAMPTZ NOT NULL DEFAULT now()); \
                   INSERT INTO items (note) SELECT 'before ' || g FROM generate_series(1, 100) g;",
    )
    .execute(&pool)
    .await
    .unwrap();
    let store = LocalDirStore::new(dir.join("artifacts"));
    let snapshot = PgDump::new("dump", &url, PgDumpConfig::default())
        .unwrap()
        .capture(&store, &IdempotencyKey::new("k"))
        .await
        .unwrap();
    let dump = dir.join("items.dump");
    std::fs::write(&dump, store.get(&snapshot.artifacts[0]).await.unwrap()).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    sqlx::query("INSERT INTO items (note) SELECT 'after ' || g FROM generate_series(1, 50) g")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    (name, url, dump)
}

async fn oid_of(admin: &str, name: &str) -> Option<i64> {
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(admin).await.unwrap();
    let row: Option<(i64,)> = sqlx::query_as("SELECT oid::bigint FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(&pool)
        .await
        .unwrap();
    pool.close().await;
    row.map(|r| r.0)
}

async fn count(url: &str) -> i64 {
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(url).await.unwrap();
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM items").fetch_one(&pool).await.unwrap();
    pool.close().await;
    n
}

fn swap(url: &str, verify: SwapVerify, fail_after: Option<SwapPhase>) -> PgRestoreSwap {
    let config = PgRestoreSwapConfig { verify, ..Default::default() };
    let target = PgRestoreSwap::new("orders-db", url, config).unwrap();
    match fail_after {
        Some(phase) => target.fail_after(phase),
        None => target,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_and_swap_under_live_writers() {
    let Some(admin) = admin_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (name, url, dump) = swap_fixture(&admin, dir.path()).await;
    let original = oid_of(&admin, &name).await.unwrap();

    // Writers that reconnect whenever their session is cut, like an application pool.
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let written = std::sync::Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..3 {
        let (url, stop, written) = (url.clone(), stop.clone(), written.clone());
        writers.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let Ok(mut conn) = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await else {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                };
                while !stop.load(Ordering::SeqCst) {
                    let inserted = sqlx::query("INSERT INTO items (note) VALUES ($1)")
                        .bind(format!("writer {w}"))
                        .execute(&mut conn)
                        .await;
                    if inserted.is_err() {
                        break;
                    }
                    written.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let target = swap(
        &url,
        SwapVerify { tables: [("items".into(), 100)].into(), queries: vec!["SELECT count(*) = 100 FROM items".into()] },
        None,
    );
    let change = target
        .prepare(&Request::Action { action: "restore".into(), params: serde_json::json!({ "dump": dump }) })
        .await
        .unwrap();
    assert!(change.data_loss.summary.contains("after the dump was taken"), "{}", change.data_loss);
    let key = IdempotencyKey::new("r/restore/fwd");
    assert_eq!(target.observe(&change, &key).await.unwrap(), Observed::NotStarted);
    target.apply(&change, &key).await.unwrap();
    assert_eq!(target.observe(&change, &key).await.unwrap(), Observed::Done);
    let before_swap = written.load(Ordering::SeqCst);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }
    assert!(
        written.load(Ordering::SeqCst) > before_swap,
        "writers reconnected to the restored database and kept writing"
    );
    let swapped = oid_of(&admin, &name).await.unwrap();
    assert_ne!(swapped, original, "a new database is under the real name");
    assert_eq!(oid_of(&admin, &format!("{name}_old")).await, Some(original), "the original is kept as _old");
    assert_eq!(oid_of(&admin, &format!("{name}_restore")).await, None);
    let rows = count(&url).await;
    assert!(rows >= 100 && rows < 150 + written.load(Ordering::SeqCst) as i64, "restored rows plus new writes: {rows}");
    target.apply(&change, &key).await.unwrap();
    assert_eq!(oid_of(&admin, &name).await, Some(swapped), "re-applying is a no-op");
}

#[tokio::test]
async fn a_stop_at_any_phase_leaves_one_database_under_the_real_name_and_apply_finishes() {
    let Some(admin) = admin_url() else { return };
    for phase in [SwapPhase::Restored, SwapPhase::ConnectionsDisabled, SwapPhase::Renamed] {
        let dir = tempfile::tempdir().unwrap();
        let (name, url, dump) = swap_fixture(&admin, dir.path()).await;
        let original = oid_of(&admin, &name).await.unwrap();
        let faulty = swap(&url, SwapVerify::default(), Some(phase));
        let change = faulty
            .prepare(&Request::Action { action: "restore".into(), params: serde_json::json!({ "dump": dump }) })
            .await
            .unwrap();
        let key = IdempotencyKey::new("r/restore/fwd");
        let err = faulty.apply(&change, &key).await.unwrap_err();
        assert!(err.to_string().contains("injected stop"), "{phase:?}: {err}");
        let under_name = oid_of(&admin, &name).await;
        assert!(under_name.is_some(), "{phase:?}: something is always under the real name");
        let observed = faulty.observe(&change, &key).await.unwrap();
        assert!(matches!(observed, Observed::Partial(_)), "{phase:?}: {observed:?}");
        if phase == SwapPhase::Renamed {
            assert_ne!(under_name, Some(original), "renamed: the restored database is in place");
        } else {
            assert_eq!(under_name, Some(original), "{phase:?}: the original is in place");
        }
        let fixed = swap(&url, SwapVerify::default(), None);
        fixed.apply(&change, &key).await.unwrap();
        assert_eq!(fixed.observe(&change, &key).await.unwrap(), Observed::Done, "{phase:?}");
        assert_eq!(oid_of(&admin, &format!("{name}_old")).await, Some(original), "{phase:?}");
        assert_eq!(count(&url).await, 100, "{phase:?}: the dump's rows");
    }
}

#[tokio::test]
async fn a_failed_verification_leaves_the_original_untouched() {
    let Some(admin) = admin_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (name, url, dump) = swap_fixture(&admin, dir.path()).await;
    let original = oid_of(&admin, &name).await.unwrap();
    let target = swap(&url, SwapVerify { tables: [("items".into(), 1000)].into(), queries: vec![] }, None);
    let change = target
        .prepare(&Request::Action { action: "restore".into(), params: serde_json::json!({ "dump": dump }) })
        .await
        .unwrap();
    let err = target.apply(&change, &IdempotencyKey::new("r/restore/fwd")).await.unwrap_err();
    assert_eq!(err.kind(), rollback_core::ErrorKind::VerificationFailed);
    assert!(err.to_string().contains("original is untouched"), "{err}");
    assert_eq!(oid_of(&admin, &name).await, Some(original));
    assert_eq!(count(&url).await, 150, "nothing lost");
    let err = swap(&url, SwapVerify::default(), None)
        .prepare(&Request::Action {
            action: "restore".into(),
            params: serde_json::json!({ "dump": "/nonexistent.dump" }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), rollback_core::ErrorKind::InvalidInput);
}

#[tokio::test]
async fn data_loss_counts_rows_changed_after_the_dump() {
    let Some(admin) = admin_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (_name, url, dump) = swap_fixture(&admin, dir.path()).await;
    let config = PgRestoreSwapConfig {
        data_loss: rollback_db::DataLossProbe {
            changed_columns: [("items".into(), "changed_at".into())].into(),
            queries: vec![
                "SELECT count(*) FROM items WHERE note LIKE 'after%' AND changed_at > CAST($1 AS TIMESTAMPTZ)".into(),
            ],
        },
        ..Default::default()
    };
    let target = PgRestoreSwap::new("orders-db", &url, config).unwrap();
    let change = target
        .prepare(&Request::Action { action: "restore".into(), params: serde_json::json!({ "dump": dump }) })
        .await
        .unwrap();
    assert_eq!(change.data_loss.items, Some(100), "{}", change.data_loss);
    assert!(
        change.data_loss.summary.contains("items: 50") && change.data_loss.summary.contains("query 1: 50"),
        "{}",
        change.data_loss
    );
}

#[tokio::test]
async fn template_clone_refuses_while_sessions_are_connected() {
    let Some(admin) = admin_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (name, url, _dump) = swap_fixture(&admin, dir.path()).await;
    let store = LocalDirStore::new(dir.path().join("artifacts"));
    let clone = rollback_db::PgTemplateClone::new("clone", &url, Default::default()).unwrap();
    let session = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
    sqlx::query("SELECT 1").execute(&session).await.unwrap();
    let err = clone.capture(&store, &IdempotencyKey::new("r/clone/fwd")).await.unwrap_err();
    assert!(err.to_string().contains("1 session(s) are connected"), "{err}");
    session.close().await;
    let snapshot = clone.capture(&store, &IdempotencyKey::new("r/clone/fwd")).await.unwrap();
    let copy = snapshot.metadata["clone"].as_str().unwrap().to_string();
    assert!(copy.starts_with(&format!("{name}_snap_")), "{copy}");
    assert_eq!(count(&format!("{}/{copy}", admin.rsplit_once('/').unwrap().0)).await, 150);
}

#[tokio::test]
async fn a_process_killed_between_phases_is_finished_by_another_process() {
    let Some(admin) = admin_url() else { return };
    for phase in ["restored", "connections_disabled", "renamed"] {
        let dir = tempfile::tempdir().unwrap();
        let (name, url, dump) = swap_fixture(&admin, dir.path()).await;
        let original = oid_of(&admin, &name).await.unwrap();
        let child = env!("CARGO_BIN_EXE_rollback-db-swap-child");
        let killed = std::process::Command::new(child)
            .args([&url, dump.to_str().unwrap(), "r/restore/fwd", phase])
            .output()
            .unwrap();
        assert!(!killed.status.success(), "{phase}: the child died");
        assert!(oid_of(&admin, &name).await.is_some(), "{phase}: a database is under the real name");
        let finished =
            std::process::Command::new(child).args([&url, dump.to_str().unwrap(), "r/restore/fwd"]).output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&finished.stdout).trim(),
            "done",
            "{phase}: {}",
            String::from_utf8_lossy(&finished.stderr)
        );
        assert_eq!(oid_of(&admin, &format!("{name}_old")).await, Some(original), "{phase}");
        assert_ne!(oid_of(&admin, &name).await, Some(original), "{phase}");
        assert_eq!(count(&url).await, 100, "{phase}");
    }
}

#[tokio::test]
async fn wait_for_sessions_instead_of_terminating_them() {
    let Some(admin) = admin_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (name, url, dump) = swap_fixture(&admin, dir.path()).await;
    let original = oid_of(&admin, &name).await.unwrap();
    let config = |wait_ms| PgRestoreSwapConfig {
        sessions: rollback_db::Sessions::Wait,
        wait_timeout: Some(std::time::Duration::from_millis(wait_ms)),
        ..Default::default()
    };
    // A session that stays: the wait times out and the original stays in place, serving.
    let session = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
    sqlx::query("SELECT 1").execute(&session).await.unwrap();
    let impatient = PgRestoreSwap::new("db", &url, config(300)).unwrap();
    let change = impatient
        .prepare(&Request::Action { action: "restore".into(), params: serde_json::json!({ "dump": dump }) })
        .await
        .unwrap();
    let key = IdempotencyKey::new("r/restore/fwd");
    let err = impatient.apply(&change, &key).await.unwrap_err();
    assert!(
        err.to_string().contains("did not leave in time") && err.to_string().contains("original is in place"),
        "{err}"
    );
    assert_eq!(oid_of(&admin, &name).await, Some(original));
    sqlx::query("SELECT 1").execute(&session).await.expect("connections to the original are allowed again");
    // The session leaves during a longer wait: the swap goes through without terminating anyone.
    let leaving = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        session.close().await;
    });
    let patient = PgRestoreSwap::new("db", &url, config(10_000)).unwrap();
    patient.apply(&change, &key).await.unwrap();
    leaving.await.unwrap();
    assert_eq!(oid_of(&admin, &format!("{name}_old")).await, Some(original));
}

#[tokio::test]
async fn the_postgres_lease_lock_conforms() {
    let Some(admin) = admin_url() else { return };
    let table = format!("rb_leases_{}", uuid_like());
    rollback_core::testkit::conformance::lock_suite(|| {
        let (admin, table) = (admin.clone(), table.clone());
        async move {
            Arc::new(rollback_db::PgLeaseLock::connect_with_table(&admin, &table).await.unwrap())
                as Arc<dyn rollback_core::Lock>
        }
    })
    .await;
}

#[tokio::test]
async fn pg_dump_passes_the_core_snapshot_suite() {
    let Some(admin) = admin_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(&admin, &dir.path().join("m")).await;
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
    sqlx::query("INSERT INTO users (name) VALUES ('ada'), ('grace')").execute(&pool).await.unwrap();
    let store = LocalDirStore::new(dir.path().join("artifacts"));
    let dump = Arc::new(PgDump::new("db-dump", &url, PgDumpConfig::default()).unwrap());
    // What the database shows: the users, by name.
    let state = || async {
        let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT name FROM users ORDER BY name").fetch_all(&pool).await.unwrap();
        pool.close().await;
        format!("{rows:?}")
    };
    conformance::snapshot_suite(dump, &store, state, || async {
        sqlx::query("DELETE FROM users WHERE name = 'ada'").execute(&pool).await.unwrap();
        sqlx::query("INSERT INTO users (name) VALUES ('mallory')").execute(&pool).await.unwrap();
        pool.close().await;
    })
    .await;
}
