use async_trait::async_trait;
use serde::Deserialize;
use sqlx::Row;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::map;
use rollback_core::{
    Capabilities, Category, Change, DataLoss, Error, ErrorKind, IdempotencyKey, Identity, Observed, Request, Result,
    Reversibility, Revision, Target, TargetId, Version, prepare_versioned,
};

/// Configuration of a [`SqlxMigrations`] target.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlxMigrationsConfig {
    /// Connection URL (`sqlite:///srv/app/app.db`). One with a password must come as
    /// the secret `url`, never in config.
    #[serde(default)]
    pub url: Option<String>,
    /// The migrations directory.
    pub migrations: PathBuf,
    /// How migrations are laid out and recorded.
    #[serde(default)]
    pub layout: Layout,
    /// Data-loss estimate: rows changed since the oldest migration being undone was
    /// applied (sqlx layout, which records when).
    #[serde(default)]
    pub data_loss: crate::DataLossProbe,
}

/// How migrations are laid out on disk and recorded in the database.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "style")]
pub enum Layout {
    /// sqlx: `<version>_<name>.up.sql` / `.down.sql` (or `<version>_<name>.sql`, simple
    /// and irreversible), recorded in `_sqlx_migrations` (with its dirty flag).
    #[default]
    Sqlx,
    /// The runbooks' raw SQL: `NNN_<name>.sql` with `NNN_<name>_rollback.sql`,
    /// applied versions in a table (`schema_migrations.version` by default).
    RawSql {
        /// The bookkeeping table.
        #[serde(default = "default_table")]
        table: String,
        /// Its version column (text, e.g. `"003"`).
        #[serde(default = "default_column")]
        column: String,
    },
}

fn default_table() -> String {
    "schema_migrations".into()
}

fn default_column() -> String {
    "version".into()
}

fn sql_ident(name: &str) -> Result<String> {
    if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(name.to_owned())
    } else {
        Err(Error::invalid_input(format!("{name:?} is not a plain SQL identifier")))
    }
}

/// A migration found on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct Migration {
    /// Its version.
    pub version: i64,
    /// The version as written in the bookkeeping table (`"003"` for raw SQL).
    pub version_text: String,
    /// Its description (the file name after the version).
    pub description: String,
    /// Its down script, if it is reversible.
    pub down: Option<PathBuf>,
}

/// Schema migrations managed by sqlx (`_sqlx_migrations`), rolled back with their
/// `.down.sql` scripts. Versions are migration numbers; `0` is the empty schema.
pub struct SqlxMigrations {
    name: TargetId,
    layout: Layout,
    data_loss: crate::DataLossProbe,
    sqlite: bool,
    pool: sqlx::AnyPool,
    identity: String,
    migrations: BTreeMap<i64, Migration>,
}

impl std::fmt::Debug for SqlxMigrations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlxMigrations").field("name", &self.name).field("identity", &self.identity).finish()
    }
}

const MARKER_DDL: &str = "CREATE TABLE IF NOT EXISTS _rollback_marker (\
    target TEXT PRIMARY KEY, run_key TEXT NOT NULL, reached BIGINT NOT NULL, goal BIGINT NOT NULL)";

/// Reads a migrations directory in `layout`.
fn scan(dir: &Path, layout: &Layout) -> Result<BTreeMap<i64, Migration>> {
    let mut found: BTreeMap<i64, Migration> = BTreeMap::new();
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::invalid_input(format!("migrations directory {}: {e}", dir.display())))?;
    for entry in entries {
        let path = entry?.path();
        let Some(file) = path.file_name().and_then(|f| f.to_str()) else { continue };
        let Some(stem) = file.strip_suffix(".sql") else { continue };
        let (stem, is_down) = match layout {
            Layout::Sqlx => match (stem.strip_suffix(".up"), stem.strip_suffix(".down")) {
                (Some(s), _) => (s, false),
                (_, Some(s)) => (s, true),
                _ => (stem, false),
            },
            Layout::RawSql { .. } => match stem.strip_suffix("_rollback") {
                Some(s) => (s, true),
                None => (stem, false),
            },
        };
        let Some((version_text, description)) = stem.split_once('_') else { continue };
        let Ok(version) = version_text.parse::<i64>() else { continue };
        let m = found.entry(version).or_insert(Migration {
            version,
            version_text: version_text.to_owned(),
            description: description.replace('_', " "),
            down: None,
        });
        if is_down {
            m.down = Some(path.clone());
        }
    }
    Ok(found)
}

impl SqlxMigrations {
    /// Connects and reads the migrations directory.
    pub async fn connect(name: &str, config: SqlxMigrationsConfig) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let url = config.url.ok_or_else(|| Error::invalid_input(format!("{name:?}: no database url")))?;
        let sqlite = url.starts_with("sqlite:");
        if !sqlite && !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("{name:?}: only sqlite: and postgres:// URLs are supported"),
            ));
        }
        let sqlite_identity = if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))
        {
            let path = path.split('?').next().unwrap_or(path);
            let canonical = std::fs::canonicalize(path)
                .map_err(|e| Error::not_found(format!("{name:?}: SQLite database {path}: {e}")))?;
            use std::os::unix::fs::MetadataExt;
            let meta = std::fs::metadata(&canonical)?;
            Some(format!("sqlite:{}@{}:{}", canonical.display(), meta.dev(), meta.ino()))
        } else {
            None
        };
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(2)
            .connect(&url)
            .await
            .map_err(|e| map("connect", e).with_context("target", name))?;
        let identity = match sqlite_identity {
            Some(identity) => identity,
            // Host, port, database name and OID: a database dropped and re-created under
            // the same name is a different database.
            None => {
                let row = sqlx::query(
                    "SELECT COALESCE(host(inet_server_addr()), 'local') AS host, COALESCE(inet_server_port(), 0) AS port, \
                     current_database()::text AS db, (SELECT oid::bigint FROM pg_database WHERE datname = current_database()) AS oid",
                )
                .fetch_one(&pool)
                .await
                .map_err(|e| map("identity", e))?;
                format!(
                    "postgres:{}:{}/{}@{}",
                    row.try_get::<String, _>("host").map_err(|e| map("decode", e))?,
                    row.try_get::<i32, _>("port").map_err(|e| map("decode", e))?,
                    row.try_get::<String, _>("db").map_err(|e| map("decode", e))?,
                    row.try_get::<i64, _>("oid").map_err(|e| map("decode", e))?
                )
            }
        };
        let migrations = scan(&config.migrations, &config.layout)?;
        if let Layout::RawSql { table, column } = &config.layout {
            sql_ident(table)?;
            sql_ident(column)?;
        }
        Ok(SqlxMigrations {
            name: TargetId::new(name),
            layout: config.layout,
            data_loss: config.data_loss,
            sqlite,
            pool,
            identity,
            migrations,
        })
    }

    /// Applied versions, newest first: (version, description, installed_on, success).
    async fn applied(&self) -> Result<Vec<(i64, String, String, bool)>> {
        let query = match &self.layout {
            Layout::Sqlx => "SELECT version, description, CAST(installed_on AS TEXT) AS installed_on, \
                CAST(CASE WHEN success THEN 1 ELSE 0 END AS BIGINT) AS ok FROM _sqlx_migrations ORDER BY version DESC"
                .to_owned(),
            Layout::RawSql { table, column } => {
                format!("SELECT CAST({column} AS TEXT) AS v FROM {table}")
            }
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(query))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| map("read applied migrations", e).with_context("target", &self.name))?;
        let mut applied = rows
            .iter()
            .map(|r| match &self.layout {
                Layout::Sqlx => Ok((
                    r.try_get::<i64, _>("version").map_err(|e| map("decode", e))?,
                    r.try_get::<String, _>("description").map_err(|e| map("decode", e))?,
                    r.try_get::<String, _>("installed_on").unwrap_or_default(),
                    r.try_get::<i64, _>("ok").map_err(|e| map("decode", e))? == 1,
                )),
                Layout::RawSql { .. } => {
                    let text: String = r.try_get("v").map_err(|e| map("decode", e))?;
                    let version = text.trim().parse::<i64>().map_err(|_| {
                        Error::new(ErrorKind::Corrupt, format!("applied version {text:?} is not a number"))
                    })?;
                    let description = self.migrations.get(&version).map(|m| m.description.clone()).unwrap_or_default();
                    Ok((version, description, String::new(), true))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        applied.sort_by_key(|a| std::cmp::Reverse(a.0));
        Ok(applied)
    }

    /// Deletes one version's bookkeeping row.
    fn forget(&self, migration: &Migration) -> (String, String) {
        match &self.layout {
            Layout::Sqlx => (
                "DELETE FROM _sqlx_migrations WHERE version = CAST($1 AS BIGINT)".to_owned(),
                migration.version.to_string(),
            ),
            Layout::RawSql { table, column } => {
                (format!("DELETE FROM {table} WHERE CAST({column} AS TEXT) = $1"), migration.version_text.clone())
            }
        }
    }

    async fn live(&self) -> Result<i64> {
        let applied = self.applied().await?;
        if let Some((version, description, ..)) = applied.iter().find(|(.., ok)| !ok) {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("migration {version} ({description}) is dirty (failed half-way); fix it by hand first"),
            ));
        }
        Ok(applied.first().map_or(0, |(v, ..)| *v))
    }

    async fn marker(&self) -> Result<Option<(String, i64, i64)>> {
        sqlx::query(MARKER_DDL).execute(&self.pool).await.map_err(|e| map("create marker table", e))?;
        let row = sqlx::query("SELECT run_key, reached, goal FROM _rollback_marker WHERE target = $1")
            .bind(self.name.as_str().to_owned())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| map("read marker", e))?;
        row.map(|r| {
            Ok((
                r.try_get::<String, _>("run_key").map_err(|e| map("decode", e))?,
                r.try_get::<i64, _>("reached").map_err(|e| map("decode", e))?,
                r.try_get::<i64, _>("goal").map_err(|e| map("decode", e))?,
            ))
        })
        .transpose()
    }

    fn version_of(v: &Version) -> Result<i64> {
        v.id.parse().map_err(|_| Error::invalid_input(format!("{v} is not a migration version")))
    }

    /// Applied migrations above `to` that have to be undone, newest first.
    fn downs(&self, applied: &[(i64, String, String, bool)], to: i64) -> Result<Vec<Migration>> {
        applied
            .iter()
            .filter(|(v, ..)| *v > to)
            .map(|(v, description, ..)| match self.migrations.get(v) {
                Some(m) if m.down.is_some() => Ok(m.clone()),
                Some(m) => Err(Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "migration {v} ({}) is simple: it has no {} and is irreversible; \
                         restore from a snapshot to go below it",
                        m.description,
                        match self.layout {
                            Layout::Sqlx => ".down.sql",
                            Layout::RawSql { .. } => "_rollback.sql",
                        }
                    ),
                )),
                None => Err(Error::new(
                    ErrorKind::Conflict,
                    format!("applied migration {v} ({description}) is unknown to the migrations directory"),
                )),
            })
            .collect()
    }
}

#[async_trait]
impl Target for SqlxMigrations {
    fn name(&self) -> &TargetId {
        &self.name
    }

    fn kind(&self) -> &str {
        // One kind for both layouts: what specs name it (raw SQL is `layout = { style = "raw_sql" }`).
        <Self as rollback_core::kind::Kind>::KIND
    }

    fn category(&self) -> Category {
        Category::Schema
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { versioned: true, converges_from_partial: true }
    }

    async fn identity(&self) -> Result<Identity> {
        Ok(Identity::new(self.identity.clone()))
    }

    async fn current(&self) -> Result<Version> {
        Ok(Version::new(self.live().await?.to_string()))
    }

    /// Applied migrations newest first, then `0` (the empty schema). A version is
    /// available when every applied migration above it has a down script.
    async fn history(&self) -> Result<Vec<Revision>> {
        let applied = self.applied().await?;
        let mut revisions = Vec::new();
        for (i, (version, description, installed_on, _)) in applied.iter().enumerate() {
            let created =
                chrono::NaiveDateTime::parse_from_str(&installed_on[..installed_on.len().min(19)], "%Y-%m-%d %H:%M:%S")
                    .ok()
                    .map(|t| t.and_utc());
            let mut revision =
                Revision::new(Version::labeled(version.to_string(), description.clone()), description.clone());
            revision.created = created;
            revision.available = self.downs(&applied[..i], *version).is_ok();
            revisions.push(revision);
        }
        let mut empty = Revision::new(Version::labeled("0", "empty schema"), "before the first migration");
        empty.available = self.downs(&applied, 0).is_ok();
        revisions.push(empty);
        Ok(revisions)
    }

    async fn prepare(&self, request: &Request) -> Result<Change> {
        let Request::To(selector) = request else {
            return Err(Error::new(ErrorKind::Unsupported, "sqlx migrations have no actions"));
        };
        let applied = self.applied().await?;
        // An exact target below an irreversible migration gets the precise reason.
        if let rollback_core::Selector::Exact(to) = selector
            && let Ok(to) = to.parse::<i64>()
        {
            self.downs(&applied, to)?;
        }
        let change = match prepare_versioned(self, selector).await {
            Ok(change) => change,
            // Explain why no revision is available: the first irreversible migration.
            Err(err) if err.kind() == ErrorKind::NotFound => {
                self.downs(&applied, 0)?;
                return Err(err);
            }
            Err(err) => return Err(err),
        };
        let downs = self.downs(&applied, Self::version_of(&change.to)?)?;
        // Rows changed since the oldest undone migration was applied.
        let to_version = Self::version_of(&change.to)?;
        let since = applied
            .iter()
            .filter(|(v, ..)| *v > to_version)
            .filter_map(|(.., installed_on, _)| {
                chrono::NaiveDateTime::parse_from_str(installed_on.get(..19)?, "%Y-%m-%d %H:%M:%S").ok()
            })
            .min()
            .map(|t| t.and_utc());
        let estimate = match since {
            Some(since) => {
                self.data_loss.estimate(&self.pool, self.sqlite, since, "with the schema changes undone").await?
            }
            None => None,
        };
        let names: Vec<String> = downs.iter().map(|m| format!("{} {}", m.version, m.description)).collect();
        let description = format!(
            "{}: migrate down {} -> {} (undo {})",
            self.name,
            change.from.as_ref().map_or("?".into(), |f| f.id.clone()),
            change.to.id,
            names.join(", ")
        );
        Ok(change
            .describe(description)
            .with_reversibility(Reversibility::NeedsSnapshot)
            .with_data_loss(estimate.unwrap_or_else(|| {
                DataLoss::unknown(format!(
                    "down migrations may drop columns or tables ({}); take a snapshot first",
                    names.join(", ")
                ))
            }))
            .with_payload(serde_json::json!({ "downs": downs.iter().map(|m| m.version).collect::<Vec<_>>() })))
    }

    async fn apply(&self, change: &Change, key: &IdempotencyKey) -> Result<()> {
        let to = Self::version_of(&change.to)?;
        if !self.observe(change, key).await?.proceed(change)? {
            return Ok(());
        }
        let applied = self.applied().await?;
        for migration in self.downs(&applied, to)? {
            let path = migration.down.as_ref().ok_or_else(|| Error::internal("down script vanished"))?;
            let sql =
                std::fs::read_to_string(path).map_err(|e| Error::from(e).with_context("script", path.display()))?;
            let mut tx = self.pool.begin().await.map_err(|e| map("begin", e))?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut *tx)
                .await
                .map_err(|e| map("down migration", e).with_context("migration", migration.version))?;
            let (forget, version) = self.forget(&migration);
            sqlx::query(sqlx::AssertSqlSafe(forget))
                .bind(version)
                .execute(&mut *tx)
                .await
                .map_err(|e| map("bookkeeping", e))?;
            sqlx::query("DELETE FROM _rollback_marker WHERE target = $1")
                .bind(self.name.as_str().to_owned())
                .execute(&mut *tx)
                .await
                .map_err(|e| map("marker", e))?;
            let reached = applied.iter().map(|(v, ..)| *v).filter(|v| *v < migration.version).max().unwrap_or(0);
            sqlx::query("INSERT INTO _rollback_marker (target, run_key, reached, goal) VALUES ($1, $2, $3, $4)")
                .bind(self.name.as_str().to_owned())
                .bind(key.as_str().to_owned())
                .bind(reached)
                .bind(to)
                .execute(&mut *tx)
                .await
                .map_err(|e| map("marker", e))?;
            tx.commit().await.map_err(|e| map("commit", e))?;
            tracing::info!(target = %self.name, version = migration.version, "migrated down");
        }
        Ok(())
    }

    async fn observe(&self, change: &Change, key: &IdempotencyKey) -> Result<Observed> {
        let live = self.live().await?;
        let to = Self::version_of(&change.to)?;
        let from = change.from.as_ref().map(Self::version_of).transpose()?;
        let ours = self.marker().await?.filter(|(k, _, goal)| k == key.as_str() && *goal == to);
        Ok(match (ours, live) {
            (Some((_, reached, _)), live) if live == to && reached == to => Observed::Done,
            (Some(_), live) if from.is_some_and(|f| live < f && live > to) => {
                Observed::Partial(format!("down to {live} of {to}"))
            }
            (_, live) if Some(live) == from => Observed::NotStarted,
            (_, live) => Observed::Diverged(format!("schema is at {live}")),
        })
    }
}
