//! Cheap copies as snapshots: a SQLite file via `VACUUM INTO`, a PostgreSQL database
//! via `CREATE DATABASE … TEMPLATE`.

use async_trait::async_trait;
use serde::Deserialize;
use std::path::PathBuf;

use crate::PgUrl;
use crate::error::map;
use rollback_core::{ArtifactStore, Error, ErrorKind, IdempotencyKey, Result, Snapshot, SnapshotRef};

/// Configuration of a [`SqliteCopy`].
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqliteCopyConfig {
    /// The database file.
    pub path: PathBuf,
}

/// A consistent copy of a SQLite database (`VACUUM INTO`, safe with writers) into the
/// artifact store. Restore replaces the file atomically: stop the application first
/// (a traffic step), as the runbooks do.
#[derive(Debug)]
pub struct SqliteCopy {
    name: String,
    path: PathBuf,
}

impl SqliteCopy {
    /// A snapshotter of the database at `path`.
    pub fn new(name: &str, config: SqliteCopyConfig) -> Result<Self> {
        if !config.path.is_file() {
            return Err(Error::invalid_input(format!("SQLite database {} does not exist", config.path.display())));
        }
        Ok(SqliteCopy { name: name.to_owned(), path: config.path })
    }
}

#[async_trait]
impl Snapshot for SqliteCopy {
    fn name(&self) -> &str {
        &self.name
    }

    async fn capture(&self, store: &dyn ArtifactStore, key: &IdempotencyKey) -> Result<SnapshotRef> {
        let dir = self.path.parent().map(PathBuf::from).unwrap_or_default();
        let tmp = dir.join(format!(".{}.copy-{}", self.name, std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect(&format!("sqlite://{}", self.path.display()))
            .await
            .map_err(|e| map("connect", e))?;
        let copied = sqlx::query("VACUUM INTO $1")
            .bind(tmp.display().to_string())
            .execute(&pool)
            .await
            .map_err(|e| map("VACUUM INTO", e));
        pool.close().await;
        copied?;
        let bytes = std::fs::read(&tmp)?;
        let _ = std::fs::remove_file(&tmp);
        let artifact = format!(
            "{}/{}/{}",
            key.as_str().replace('/', "_"),
            self.name,
            self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
        );
        let size = bytes.len();
        store.put(&artifact, bytes).await?;
        Ok(SnapshotRef {
            snapshot: self.name.clone(),
            artifacts: vec![artifact],
            taken_at: chrono::Utc::now(),
            description: format!("VACUUM INTO copy of {} ({size} bytes)", self.path.display()),
            metadata: serde_json::json!({ "bytes": size }),
        })
    }

    async fn restore(&self, snapshot: &SnapshotRef, store: &dyn ArtifactStore) -> Result<()> {
        let artifact = snapshot.artifacts.first().ok_or_else(|| Error::not_found("the snapshot has no copy"))?;
        let bytes = store.get(artifact).await?;
        rollback_core::artifact::write_private_atomic(&self.path, &bytes)?;
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.path.display()));
        }
        Ok(())
    }
}

/// Configuration of a [`PgTemplateClone`]. The URL comes from the spec's secret `url`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PgTemplateCloneConfig {
    /// Database for `CREATE DATABASE` (`postgres`).
    #[serde(default)]
    pub admin_database: Option<String>,
}

/// A same-server clone (`CREATE DATABASE <db>_snap_<n> TEMPLATE <db> STRATEGY
/// FILE_COPY`): fast, but PostgreSQL needs zero sessions on the source, so it costs
/// downtime — it refuses clearly, naming how many sessions are connected, rather than
/// terminating them.
pub struct PgTemplateClone {
    name: String,
    url: PgUrl,
    admin_url: String,
}

impl std::fmt::Debug for PgTemplateClone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTemplateClone").field("name", &self.name).field("database", &self.url.database).finish()
    }
}

impl PgTemplateClone {
    /// A cloner of the database at `url`.
    pub fn new(name: &str, url: &str, config: PgTemplateCloneConfig) -> Result<Self> {
        let parsed = PgUrl::parse(url)?;
        let (base, _) = url.rsplit_once('/').ok_or_else(|| Error::invalid_input("bad PostgreSQL URL"))?;
        let admin_url = format!("{base}/{}", config.admin_database.unwrap_or_else(|| "postgres".into()));
        Ok(PgTemplateClone { name: name.to_owned(), url: parsed, admin_url })
    }
}

#[async_trait]
impl Snapshot for PgTemplateClone {
    fn name(&self) -> &str {
        &self.name
    }

    async fn capture(&self, _store: &dyn ArtifactStore, key: &IdempotencyKey) -> Result<SnapshotRef> {
        let admin = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&self.admin_url)
            .await
            .map_err(|e| map("connect (admin)", e))?;
        let result = async {
            let db = &self.url.database;
            let (sessions,): (i64,) = sqlx::query_as("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
                .bind(db)
                .fetch_one(&admin)
                .await
                .map_err(|e| map("sessions", e))?;
            if sessions > 0 {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!("cannot clone {db}: {sessions} session(s) are connected and a TEMPLATE copy needs none; stop traffic first or use a pg_dump snapshot"),
                ));
            }
            let digest: u32 = key.as_str().bytes().fold(2166136261u32, |h, b| (h ^ b as u32).wrapping_mul(16777619));
            let clone = format!("{db}_snap_{digest:08x}");
            let exists: Option<(i64,)> = sqlx::query_as("SELECT 1::bigint FROM pg_database WHERE datname = $1").bind(&clone).fetch_optional(&admin).await.map_err(|e| map("pg_database", e))?;
            if exists.is_none() {
                let sql = format!("CREATE DATABASE \"{clone}\" TEMPLATE \"{db}\" STRATEGY FILE_COPY");
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&admin).await.map_err(|e| map("CREATE DATABASE TEMPLATE", e))?;
            }
            Ok(SnapshotRef {
                snapshot: self.name.clone(),
                artifacts: Vec::new(),
                taken_at: chrono::Utc::now(),
                description: format!("clone of {db} as {clone} (same server)"),
                metadata: serde_json::json!({ "clone": clone, "source": db }),
            })
        }
        .await;
        admin.close().await;
        result
    }
}
