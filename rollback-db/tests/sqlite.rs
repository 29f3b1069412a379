//! sqlx migrations on a real SQLite database, migrated up by sqlx's own migrator.

use std::path::Path;
use std::sync::Arc;

use rollback_core::testkit::conformance;
use rollback_core::{ErrorKind, IdempotencyKey, Observed, Request, Reversibility, Selector, Target};
use rollback_db::{SqlxMigrations, SqlxMigrationsConfig};

fn write(dir: &Path, name: &str, sql: &str) {
    std::fs::write(dir.join(name), sql).unwrap();
}

fn migrations(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    write(dir, "20251001_create_users.up.sql", "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);");
    write(dir, "20251001_create_users.down.sql", "DROP TABLE users;");
    write(dir, "20251005_add_email.up.sql", "ALTER TABLE users ADD COLUMN email TEXT;");
    write(dir, "20251005_add_email.down.sql", "ALTER TABLE users DROP COLUMN email;");
    write(
        dir,
        "20251010_create_orders.up.sql",
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER);\nCREATE INDEX orders_user ON orders(user_id);",
    );
    write(dir, "20251010_create_orders.down.sql", "DROP INDEX orders_user;\nDROP TABLE orders;");
}

/// Creates the database and runs sqlx's real migrator up to the newest migration.
async fn migrated(root: &Path) -> (String, std::path::PathBuf) {
    let db = root.join("app.db");
    let dir = root.join("migrations");
    if !dir.exists() {
        migrations(&dir);
    }
    let url = format!("sqlite://{}?mode=rwc", db.display());
    let pool = sqlx::sqlite::SqlitePoolOptions::new().connect(&url).await.unwrap();
    sqlx::migrate::Migrator::new(dir.clone()).await.unwrap().run(&pool).await.unwrap();
    pool.close().await;
    (format!("sqlite://{}", db.display()), dir)
}

async fn target(root: &Path) -> Arc<SqlxMigrations> {
    let (url, dir) = migrated(root).await;
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
    )
}

async fn tables(root: &Path) -> Vec<String> {
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .connect(&format!("sqlite://{}", root.join("app.db").display()))
        .await
        .unwrap();
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_%' ESCAPE '\\' ORDER BY name",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    rows.into_iter().map(|r| r.0).collect()
}

#[tokio::test]
async fn sqlx_migrations_conform() {
    let base = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    conformance::target_suite(|| {
        let root = base.path().join(format!("db{}", n.fetch_add(1, std::sync::atomic::Ordering::SeqCst)));
        async move {
            std::fs::create_dir_all(&root).unwrap();
            target(&root).await as Arc<dyn Target>
        }
    })
    .await;
}

#[tokio::test]
async fn down_migrations_run_with_bookkeeping_and_report_data_loss() {
    let root = tempfile::tempdir().unwrap();
    let schema = target(root.path()).await;
    assert_eq!(schema.current().await.unwrap().id, "20251010");
    let change = schema.prepare(&Request::To(Selector::Exact("20251001".into()))).await.unwrap();
    assert_eq!(change.reversibility, Reversibility::NeedsSnapshot);
    assert!(
        !change.data_loss.none && change.data_loss.summary.contains("20251010 create orders"),
        "{}",
        change.data_loss
    );
    assert!(change.description.contains("undo 20251010 create orders, 20251005 add email"), "{}", change.description);
    let key = IdempotencyKey::new("run/schema/fwd");
    schema.apply(&change, &key).await.unwrap();
    assert_eq!(schema.current().await.unwrap().id, "20251001");
    assert_eq!(schema.observe(&change, &key).await.unwrap(), Observed::Done);
    assert_eq!(tables(root.path()).await, vec!["users".to_string()]);
}

#[tokio::test]
async fn simple_migrations_are_irreversible_not_skipped() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("migrations");
    migrations(&dir);
    write(&dir, "20251015_seed_admin.sql", "INSERT INTO users (name) VALUES ('admin');");
    let schema = target(root.path()).await;
    assert_eq!(schema.current().await.unwrap().id, "20251015");
    let err = schema.prepare(&Request::To(Selector::Previous)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.to_string().contains("20251015 (seed admin) is simple"), "{err}");
    let err = schema.prepare(&Request::To(Selector::Exact("20251005".into()))).await.unwrap_err();
    assert!(err.to_string().contains("no .down.sql"), "{err}");
}

#[tokio::test]
async fn a_failure_half_way_is_partial_and_apply_converges() {
    let root = tempfile::tempdir().unwrap();
    let schema = target(root.path()).await;
    let dir = root.path().join("migrations");
    // Break the middle down script: the first down commits, the second fails.
    write(&dir, "20251005_add_email.down.sql", "ALTER TABLE nope DROP COLUMN email;");
    let broken = SqlxMigrations::connect(
        "schema",
        SqlxMigrationsConfig {
            url: Some(format!("sqlite://{}", root.path().join("app.db").display())),
            migrations: dir.clone(),
            layout: Default::default(),
            data_loss: Default::default(),
        },
    )
    .await
    .unwrap();
    let change = broken.prepare(&Request::To(Selector::Exact("20251001".into()))).await.unwrap();
    let key = IdempotencyKey::new("run/schema/fwd");
    let err = broken.apply(&change, &key).await.unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    assert_eq!(broken.current().await.unwrap().id, "20251005", "the first down committed with its bookkeeping");
    assert!(matches!(broken.observe(&change, &key).await.unwrap(), Observed::Partial(_)));
    // Fixed script, same change and key: it converges.
    write(&dir, "20251005_add_email.down.sql", "ALTER TABLE users DROP COLUMN email;");
    let fixed = SqlxMigrations::connect(
        "schema",
        SqlxMigrationsConfig {
            url: Some(format!("sqlite://{}", root.path().join("app.db").display())),
            migrations: dir,
            layout: Default::default(),
            data_loss: Default::default(),
        },
    )
    .await
    .unwrap();
    fixed.apply(&change, &key).await.unwrap();
    assert_eq!(fixed.observe(&change, &key).await.unwrap(), Observed::Done);
    assert_eq!(schema.current().await.unwrap().id, "20251001");
}

#[tokio::test]
async fn dirty_rows_are_a_clear_error() {
    let root = tempfile::tempdir().unwrap();
    let schema = target(root.path()).await;
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .connect(&format!("sqlite://{}", root.path().join("app.db").display()))
        .await
        .unwrap();
    sqlx::query("UPDATE _sqlx_migrations SET success = 0 WHERE version = 20251010").execute(&pool).await.unwrap();
    let err = schema.current().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.to_string().contains("20251010") && err.to_string().contains("dirty"), "{err}");
}

/// The runbooks' raw SQL convention: `NNN_name.sql` + `NNN_name_rollback.sql`,
/// applied versions in `schema_migrations`, applied here the way their deploy
/// scripts do (`psql < NNN_name.sql` and an INSERT).
async fn raw_sql_database(root: &Path) -> Arc<SqlxMigrations> {
    let dir = root.join("migrations");
    std::fs::create_dir_all(&dir).unwrap();
    let scripts = [
        ("001_create_users", "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);", "DROP TABLE users;"),
        ("002_add_email", "ALTER TABLE users ADD COLUMN email TEXT;", "ALTER TABLE users DROP COLUMN email;"),
        ("003_create_orders", "CREATE TABLE orders (id INTEGER PRIMARY KEY);", "DROP TABLE orders;"),
    ];
    let url = format!("sqlite://{}?mode=rwc", root.join("app.db").display());
    let pool = sqlx::sqlite::SqlitePoolOptions::new().connect(&url).await.unwrap();
    sqlx::query("CREATE TABLE schema_migrations (version TEXT PRIMARY KEY, applied_at TEXT DEFAULT CURRENT_TIMESTAMP)")
        .execute(&pool)
        .await
        .unwrap();
    for (name, up, down) in scripts {
        write(&dir, &format!("{name}.sql"), up);
        write(&dir, &format!("{name}_rollback.sql"), down);
        sqlx::raw_sql(sqlx::AssertSqlSafe(up)).execute(&pool).await.unwrap();
        sqlx::query("INSERT INTO schema_migrations (version) VALUES ($1)")
            .bind(&name[..3])
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;
    let config = SqlxMigrationsConfig {
        url: Some(format!("sqlite://{}", root.join("app.db").display())),
        migrations: dir,
        layout: rollback_db::Layout::RawSql { table: "schema_migrations".into(), column: "version".into() },
        data_loss: Default::default(),
    };
    Arc::new(SqlxMigrations::connect("schema", config).await.unwrap())
}

#[tokio::test]
async fn raw_sql_convention_conforms() {
    let base = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    conformance::target_suite(|| {
        let root = base.path().join(format!("raw{}", n.fetch_add(1, std::sync::atomic::Ordering::SeqCst)));
        async move {
            std::fs::create_dir_all(&root).unwrap();
            raw_sql_database(&root).await as Arc<dyn Target>
        }
    })
    .await;
}

#[tokio::test]
async fn raw_sql_rollback_scripts_and_bookkeeping_in_one_transaction() {
    let root = tempfile::tempdir().unwrap();
    let schema = raw_sql_database(root.path()).await;
    assert_eq!(schema.kind(), "sqlx-migrations", "the registered kind, whatever the layout");
    assert_eq!(schema.current().await.unwrap().id, "3");
    let change = schema.prepare(&Request::To(Selector::Previous)).await.unwrap();
    assert!(change.description.contains("undo 3 create orders"), "{}", change.description);
    schema.apply(&change, &IdempotencyKey::new("r/schema/fwd")).await.unwrap();
    assert_eq!(tables(root.path()).await, vec!["schema_migrations".to_string(), "users".to_string()]);
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .connect(&format!("sqlite://{}", root.path().join("app.db").display()))
        .await
        .unwrap();
    let versions: Vec<(String,)> =
        sqlx::query_as("SELECT version FROM schema_migrations ORDER BY version").fetch_all(&pool).await.unwrap();
    assert_eq!(versions, vec![("001".to_string(),), ("002".to_string(),)], "the row went with the script");
    // A missing rollback script is irreversible, named.
    std::fs::remove_file(root.path().join("migrations/002_add_email_rollback.sql")).unwrap();
    let schema = raw_sql_database_reopen(root.path()).await;
    let err = schema.prepare(&Request::To(Selector::Previous)).await.unwrap_err();
    assert!(err.to_string().contains("no _rollback.sql"), "{err}");
}

async fn raw_sql_database_reopen(root: &Path) -> SqlxMigrations {
    let config = SqlxMigrationsConfig {
        url: Some(format!("sqlite://{}", root.join("app.db").display())),
        migrations: root.join("migrations"),
        layout: rollback_db::Layout::RawSql { table: "schema_migrations".into(), column: "version".into() },
        data_loss: Default::default(),
    };
    SqlxMigrations::connect("schema", config).await.unwrap()
}

#[tokio::test]
async fn sqlite_copy_captures_and_restores() {
    use rollback_core::{ArtifactStore, LocalDirStore, Snapshot};
    let root = tempfile::tempdir().unwrap();
    migrated(root.path()).await;
    let db = root.path().join("app.db");
    let url = format!("sqlite://{}", db.display());
    let pool = sqlx::sqlite::SqlitePoolOptions::new().connect(&url).await.unwrap();
    sqlx::query("INSERT INTO users (name) VALUES ('ada')").execute(&pool).await.unwrap();
    let store = LocalDirStore::new(root.path().join("artifacts"));
    let copy = rollback_db::SqliteCopy::new("db-copy", rollback_db::SqliteCopyConfig { path: db.clone() }).unwrap();
    let snapshot = copy.capture(&store, &IdempotencyKey::new("r/copy/fwd")).await.unwrap();
    assert!(store.get(&snapshot.artifacts[0]).await.unwrap().starts_with(b"SQLite format 3"));
    sqlx::query("DELETE FROM users").execute(&pool).await.unwrap();
    pool.close().await;
    copy.restore(&snapshot, &store).await.unwrap();
    let pool = sqlx::sqlite::SqlitePoolOptions::new().connect(&url).await.unwrap();
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM users").fetch_one(&pool).await.unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn data_loss_counts_rows_changed_since_the_undone_migration() {
    let root = tempfile::tempdir().unwrap();
    let (url, dir) = migrated(root.path()).await;
    let pool = sqlx::sqlite::SqlitePoolOptions::new().connect(&url).await.unwrap();
    sqlx::raw_sql("ALTER TABLE orders ADD COLUMN updated_at TEXT; \
                   INSERT INTO orders (user_id, updated_at) VALUES (1, '2000-01-01 00:00:00'), (2, datetime('now', '+1 minute'));")
        .execute(&pool)
        .await
        .unwrap();
    let probe = rollback_db::DataLossProbe {
        changed_columns: [("orders".into(), "updated_at".into())].into(),
        queries: vec![],
    };
    let schema = SqlxMigrations::connect(
        "schema",
        SqlxMigrationsConfig { url: Some(url), migrations: dir, layout: Default::default(), data_loss: probe },
    )
    .await
    .unwrap();
    let change = schema.prepare(&Request::To(Selector::Previous)).await.unwrap();
    assert_eq!(change.data_loss.items, Some(1), "{}", change.data_loss);
    assert!(change.data_loss.summary.contains("orders: 1"), "{}", change.data_loss);
}

#[tokio::test]
async fn sqlite_copy_passes_the_core_snapshot_suite() {
    use rollback_core::LocalDirStore;
    let root = tempfile::tempdir().unwrap();
    migrated(root.path()).await;
    let db = root.path().join("app.db");
    let url = format!("sqlite://{}", db.display());
    let pool = sqlx::sqlite::SqlitePoolOptions::new().connect(&url).await.unwrap();
    sqlx::query("INSERT INTO users (name) VALUES ('ada'), ('grace')").execute(&pool).await.unwrap();
    pool.close().await;
    let store = LocalDirStore::new(root.path().join("artifacts"));
    let copy = Arc::new(rollback_db::SqliteCopy::new("db-copy", rollback_db::SqliteCopyConfig { path: db }).unwrap());
    let state = || async {
        let pool = sqlx::sqlite::SqlitePoolOptions::new().connect(&url).await.unwrap();
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT name FROM users ORDER BY name").fetch_all(&pool).await.unwrap();
        pool.close().await;
        format!("{rows:?}")
    };
    rollback_core::testkit::conformance::snapshot_suite(copy, &store, state, || async {
        let pool = sqlx::sqlite::SqlitePoolOptions::new().connect(&url).await.unwrap();
        sqlx::query("DELETE FROM users WHERE name = 'ada'").execute(&pool).await.unwrap();
        pool.close().await;
    })
    .await;
}
