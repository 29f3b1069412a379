//! Runbook 002's full restore, in one call: restore a dump into `<db>_restore`,
//! verify it, then swap it in under the real name keeping the original as `<db>_old`.

use async_trait::async_trait;
use serde::Deserialize;
use sqlx::Row;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::PgUrl;
use crate::error::map;
use rollback_core::{
    Capabilities, Category, Change, DataLoss, Error, ErrorKind, IdempotencyKey, Identity, Observed, Request, Result,
    Reversibility, Target, TargetId, Version,
};

/// What to check in the restored database before it goes live.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SwapVerify {
    /// Minimum row counts per table.
    #[serde(default)]
    pub tables: BTreeMap<String, i64>,
    /// Queries that must return a single true value.
    #[serde(default)]
    pub queries: Vec<String>,
}

/// What to do with sessions still connected to the original at swap time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sessions {
    /// `pg_terminate_backend` them (runbook 002).
    #[default]
    Terminate,
    /// Wait for them to leave, up to `wait_timeout`, then fail with the original in place.
    Wait,
}

/// A step a test can stop after, as if the process died there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[doc(hidden)]
pub enum SwapPhase {
    /// `<db>_restore` created and restored.
    Restored,
    /// Connections to the original disabled.
    ConnectionsDisabled,
    /// Renamed, connections not re-enabled.
    Renamed,
}

/// Configuration of a [`PgRestoreSwap`]. The URL of the database to replace comes
/// from the spec's secret `url`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PgRestoreSwapConfig {
    /// Database to connect to for `CREATE`/`ALTER DATABASE` (`postgres`).
    #[serde(default)]
    pub admin_database: Option<String>,
    /// Checks on the restored database.
    #[serde(default)]
    pub verify: SwapVerify,
    /// Sessions on the original at swap time.
    #[serde(default)]
    pub sessions: Sessions,
    /// How long to wait for sessions to leave (`Sessions::Wait`).
    #[serde(default, with = "humantime_serde::option")]
    #[schemars(with = "Option<String>")]
    pub wait_timeout: Option<Duration>,
    /// `pg_restore` program.
    #[serde(default)]
    pub pg_restore: Option<String>,
    /// Data-loss estimate: rows changed after the dump was taken.
    #[serde(default)]
    pub data_loss: crate::DataLossProbe,
}

/// Restore-and-swap of a PostgreSQL database (runbook 002): the action `restore` with
/// `{ "dump": "<pg_dump -Fc file>" }`. Phases: create and restore `<db>_restore`
/// (commented with the run key), verify row counts and queries, disable connections
/// to the original, terminate or wait for its sessions, rename both in **one
/// transaction** (`<db>` → `<db>_old`, `<db>_restore` → `<db>`), allow connections
/// again. A failure or a kill at any point leaves the original or the restored
/// database under the real name — never neither — and `observe` tells which by OID.
///
/// `<db>_old` keeps refusing connections afterwards, so nothing still configured
/// with the old name writes to it by mistake; to inspect it, run
/// `ALTER DATABASE "<db>_old" ALLOW_CONNECTIONS true` first.
pub struct PgRestoreSwap {
    name: TargetId,
    url: PgUrl,
    admin_url: String,
    config: PgRestoreSwapConfig,
    /// Test hooks (feature `test-helpers`): fail, or abort the process, after a phase.
    fail_after: Option<SwapPhase>,
    abort_after: Option<SwapPhase>,
}

impl std::fmt::Debug for PgRestoreSwap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgRestoreSwap").field("name", &self.name).field("database", &self.url.database).finish()
    }
}

/// One row of `pg_database`.
#[derive(Debug, Clone)]
struct DbRow {
    oid: i64,
    allow: bool,
    comment: String,
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl PgRestoreSwap {
    /// A restore-and-swap of the database at `url`.
    pub fn new(name: &str, url: &str, config: PgRestoreSwapConfig) -> Result<Self> {
        let url_parts = PgUrl::parse(url)?;
        let admin_db = config.admin_database.clone().unwrap_or_else(|| "postgres".into());
        let (base, _) = url.rsplit_once('/').ok_or_else(|| Error::invalid_input("bad PostgreSQL URL"))?;
        let admin_url = format!("{base}/{admin_db}");
        Ok(PgRestoreSwap {
            name: TargetId::new(name),
            url: url_parts,
            admin_url,
            config,
            fail_after: None,
            abort_after: None,
        })
    }

    fn db(&self) -> &str {
        &self.url.database
    }

    fn restore_db(&self) -> String {
        format!("{}_restore", self.db())
    }

    fn old_db(&self) -> String {
        format!("{}_old", self.db())
    }

    async fn admin(&self) -> Result<sqlx::PgPool> {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&self.admin_url)
            .await
            .map_err(|e| map("connect (admin)", e).with_context("target", &self.name))
    }

    async fn row(&self, pool: &sqlx::PgPool, name: &str) -> Result<Option<DbRow>> {
        let row = sqlx::query(
            "SELECT oid::bigint AS oid, datallowconn, COALESCE(shobj_description(oid, 'pg_database'), '') AS comment \
             FROM pg_database WHERE datname = $1",
        )
        .bind(name)
        .fetch_optional(pool)
        .await
        .map_err(|e| map("read pg_database", e))?;
        row.map(|r| {
            Ok(DbRow {
                oid: r.try_get("oid").map_err(|e| map("decode", e))?,
                allow: r.try_get("datallowconn").map_err(|e| map("decode", e))?,
                comment: r.try_get("comment").map_err(|e| map("decode", e))?,
            })
        })
        .transpose()
    }

    async fn exec(&self, pool: &sqlx::PgPool, sql: String) -> Result<()> {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(pool).await.map(drop).map_err(|e| map("swap", e))
    }

    /// Test hook (feature `test-helpers`): `apply` fails after `phase`.
    #[cfg(feature = "test-helpers")]
    pub fn fail_after(mut self, phase: SwapPhase) -> Self {
        self.fail_after = Some(phase);
        self
    }

    /// Test hook (feature `test-helpers`): the process aborts after `phase`, as a kill
    /// between phases would.
    #[cfg(feature = "test-helpers")]
    pub fn abort_after(mut self, phase: SwapPhase) -> Self {
        self.abort_after = Some(phase);
        self
    }

    fn stop_after(&self, phase: SwapPhase) -> Result<()> {
        if self.abort_after == Some(phase) {
            tracing::warn!(?phase, "test hook: aborting the process between phases");
            std::process::abort();
        }
        if self.fail_after == Some(phase) {
            return Err(Error::new(ErrorKind::Backend, format!("injected stop after {phase:?}")));
        }
        Ok(())
    }

    async fn sessions_on(&self, pool: &sqlx::PgPool, db: &str) -> Result<i64> {
        let (n,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()")
                .bind(db)
                .fetch_one(pool)
                .await
                .map_err(|e| map("sessions", e))?;
        Ok(n)
    }

    async fn clear_sessions(&self, pool: &sqlx::PgPool, db: &str) -> Result<()> {
        match self.config.sessions {
            Sessions::Terminate => {
                sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()")
                    .bind(db)
                    .execute(pool)
                    .await
                    .map_err(|e| map("terminate sessions", e))?;
                for _ in 0..100 {
                    if self.sessions_on(pool, db).await? == 0 {
                        return Ok(());
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(Error::new(ErrorKind::Timeout, format!("sessions on {db} did not end after termination")))
            }
            Sessions::Wait => {
                let deadline =
                    tokio::time::Instant::now() + self.config.wait_timeout.unwrap_or(Duration::from_secs(30));
                while self.sessions_on(pool, db).await? > 0 {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(Error::new(ErrorKind::Timeout, format!("sessions on {db} did not leave in time")));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(())
            }
        }
    }

    async fn verify(&self) -> Result<()> {
        let url = format!("{}/{}", self.admin_url.rsplit_once('/').map_or("", |(b, _)| b), self.restore_db());
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .map_err(|e| map("connect (restore)", e))?;
        let result = async {
            for (table, min) in &self.config.verify.tables {
                let (n,): (i64,) =
                    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {}", ident(table))))
                        .fetch_one(&pool)
                        .await
                        .map_err(|e| map("verify", e).with_context("table", table))?;
                if n < *min {
                    return Err(Error::new(
                        ErrorKind::VerificationFailed,
                        format!("{table} has {n} rows in the restored database, at least {min} expected"),
                    ));
                }
            }
            for query in &self.config.verify.queries {
                let (ok,): (bool,) = sqlx::query_as(sqlx::AssertSqlSafe(query.clone()))
                    .fetch_one(&pool)
                    .await
                    .map_err(|e| map("verify", e).with_context("query", query))?;
                if !ok {
                    return Err(Error::new(
                        ErrorKind::VerificationFailed,
                        format!("check failed on the restored database: {query}"),
                    ));
                }
            }
            Ok(())
        }
        .await;
        pool.close().await;
        result
    }

    /// Rows changed after `since` in the live database, per the configured probe.
    async fn rows_changed_since(&self, since: chrono::DateTime<chrono::Utc>) -> Result<Option<DataLoss>> {
        if self.config.data_loss.is_empty() {
            return Ok(None);
        }
        sqlx::any::install_default_drivers();
        let url = format!("{}/{}", self.admin_url.rsplit_once('/').map_or("", |(b, _)| b), self.db());
        let pool =
            sqlx::any::AnyPoolOptions::new().max_connections(1).connect(&url).await.map_err(|e| map("connect", e))?;
        let what = format!("by restoring the dump (the original stays as {})", self.old_db());
        let estimate = self.config.data_loss.estimate(&pool, false, since, &what).await;
        pool.close().await;
        estimate
    }

    async fn restore_into_new(&self, admin: &sqlx::PgPool, dump: &str, key: &IdempotencyKey) -> Result<()> {
        let restore = self.restore_db();
        if let Some(existing) = self.row(admin, &restore).await? {
            if existing.comment == format!("rollback:{key}:restored") {
                return Ok(());
            }
            if !existing.comment.starts_with("rollback:") {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!("{restore} exists and is not ours; drop or rename it first"),
                ));
            }
            self.clear_sessions(admin, &restore).await?;
            self.exec(admin, format!("DROP DATABASE {}", ident(&restore))).await?;
        }
        self.exec(admin, format!("CREATE DATABASE {}", ident(&restore))).await?;
        self.exec(admin, format!("COMMENT ON DATABASE {} IS 'rollback:{key}:restoring'", ident(&restore))).await?;
        let program = self.config.pg_restore.clone().unwrap_or_else(|| "pg_restore".into());
        let mut target = self.url.clone();
        target.database = restore.clone();
        let mut argv = vec![program.clone(), "--no-owner".into(), "--exit-on-error".into()];
        argv.extend(target.tool_args());
        argv.push(dump.to_owned());
        let what = format!("{program} into {restore}");
        let env = target.tool_env();
        let invocation = rollback_core::process::Invocation {
            what: &what,
            argv: &argv,
            dir: None,
            env: &env,
            timeout: Duration::from_secs(3600),
        };
        rollback_core::process::run(invocation).await.map_err(|e| {
            Error::new(e.kind(), format!("{}; the original is untouched under {}", e.message(), self.db()))
        })?;
        self.exec(admin, format!("COMMENT ON DATABASE {} IS 'rollback:{key}:restored'", ident(&restore))).await
    }
}

#[async_trait]
impl Target for PgRestoreSwap {
    fn name(&self) -> &TargetId {
        &self.name
    }

    fn kind(&self) -> &str {
        <Self as rollback_core::kind::Kind>::KIND
    }

    fn category(&self) -> Category {
        Category::Data
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { versioned: false, converges_from_partial: true }
    }

    async fn identity(&self) -> Result<Identity> {
        Ok(Identity::new(format!("postgres-database:{}:{}/{}", self.url.host, self.url.port, self.db())))
    }

    async fn current(&self) -> Result<Version> {
        let admin = self.admin().await?;
        let row = self.row(&admin, self.db()).await?;
        admin.close().await;
        let row = row.ok_or_else(|| Error::not_found(format!("database {} does not exist", self.db())))?;
        Ok(Version::labeled(format!("oid:{}", row.oid), self.db()))
    }

    async fn prepare(&self, request: &Request) -> Result<Change> {
        let Request::Action { action, params } = request else {
            return Err(Error::new(ErrorKind::Unsupported, "restore-and-swap is an action: use action \"restore\""));
        };
        if action != "restore" {
            return Err(Error::new(ErrorKind::Unsupported, format!("restore-and-swap has no action {action:?}")));
        }
        let dump = PathBuf::from(
            params
                .get("dump")
                .and_then(|d| d.as_str())
                .ok_or_else(|| Error::invalid_input("restore needs params.dump"))?,
        );
        let meta =
            std::fs::metadata(&dump).map_err(|e| Error::invalid_input(format!("dump {}: {e}", dump.display())))?;
        let admin = self.admin().await?;
        let original = self.row(&admin, self.db()).await?;
        let old = self.row(&admin, &self.old_db()).await?;
        admin.close().await;
        let original = original.ok_or_else(|| Error::not_found(format!("database {} does not exist", self.db())))?;
        if old.is_some() {
            return Err(Error::invalid_input(format!(
                "{} exists from an earlier swap; drop or rename it before a new restore",
                self.old_db()
            )));
        }
        let taken: chrono::DateTime<chrono::Utc> =
            meta.modified().map(Into::into).unwrap_or_else(|_| chrono::Utc::now());
        let lost = self.rows_changed_since(taken).await?;
        let from = Version::labeled(format!("oid:{}", original.oid), self.db());
        let to = Version::labeled(format!("restore:{}", dump.display()), format!("{} restored", self.db()));
        let description = format!(
            "{}: restore {} into {}_restore, verify, swap it in (the original kept as {})",
            self.name,
            dump.display(),
            self.db(),
            self.old_db()
        );
        Ok(Change::new(self.name.clone(), "restore-swap", Some(from), to)
            .describe(description)
            .with_reversibility(Reversibility::Irreversible)
            .with_data_loss(lost.unwrap_or_else(|| {
                DataLoss::unknown(format!(
                    "everything written to {} after the dump was taken ({}) is not in the restored database; \
                     the original stays as {}",
                    self.db(),
                    taken.format("%Y-%m-%d %H:%M:%S UTC"),
                    self.old_db()
                ))
            }))
            .with_payload(serde_json::json!({ "dump": dump })))
    }

    async fn apply(&self, change: &Change, key: &IdempotencyKey) -> Result<()> {
        if !self.observe(change, key).await?.proceed(change)? {
            return Ok(());
        }
        let dump = change
            .payload
            .get("dump")
            .and_then(|d| d.as_str())
            .ok_or_else(|| Error::invalid_input("no payload.dump"))?;
        let admin = self.admin().await?;
        let result = async {
            let (db, restore, old) = (self.db().to_owned(), self.restore_db(), self.old_db());
            let live = self.row(&admin, &db).await?;
            let ours = live.as_ref().is_some_and(|r| r.comment.starts_with(&format!("rollback:{key}:")));
            if !ours {
                self.restore_into_new(&admin, dump, key).await?;
                self.stop_after(SwapPhase::Restored)?;
                self.verify().await.map_err(|e| {
                    Error::new(
                        e.kind(),
                        format!(
                            "{}; the original is untouched under {db}, the restore is left in {restore}",
                            e.message()
                        ),
                    )
                })?;
                self.exec(&admin, format!("ALTER DATABASE {} ALLOW_CONNECTIONS false", ident(&db))).await?;
                self.stop_after(SwapPhase::ConnectionsDisabled)?;
                let swapped = async {
                    self.clear_sessions(&admin, &db).await?;
                    self.clear_sessions(&admin, &restore).await?;
                    let mut tx = admin.begin().await.map_err(|e| map("begin", e))?;
                    for sql in [
                        format!("ALTER DATABASE {} RENAME TO {}", ident(&db), ident(&old)),
                        format!("ALTER DATABASE {} RENAME TO {}", ident(&restore), ident(&db)),
                    ] {
                        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                            .execute(&mut *tx)
                            .await
                            .map_err(|e| map("rename", e))?;
                    }
                    tx.commit().await.map_err(|e| map("commit renames", e))
                }
                .await;
                if let Err(err) = swapped {
                    // Never neither: the original is still under its name; let it serve again.
                    let _ = self.exec(&admin, format!("ALTER DATABASE {} ALLOW_CONNECTIONS true", ident(&db))).await;
                    return Err(Error::new(
                        err.kind(),
                        format!(
                            "swap failed ({}); the original is in place under {db}, connections allowed again",
                            err.message()
                        ),
                    ));
                }
                self.stop_after(SwapPhase::Renamed)?;
            }
            self.exec(&admin, format!("ALTER DATABASE {} ALLOW_CONNECTIONS true", ident(&db))).await?;
            self.exec(&admin, format!("COMMENT ON DATABASE {} IS 'rollback:{key}:swapped'", ident(&db))).await?;
            tracing::info!(target = %self.name, %db, "restored database swapped in");
            Ok(())
        }
        .await;
        admin.close().await;
        result
    }

    async fn observe(&self, change: &Change, key: &IdempotencyKey) -> Result<Observed> {
        let admin = self.admin().await?;
        let live = self.row(&admin, self.db()).await?;
        let restore = self.row(&admin, &self.restore_db()).await?;
        admin.close().await;
        let from_oid = change.from.as_ref().map(|v| v.id.clone());
        let db = self.db();
        Ok(match live {
            None => Observed::Diverged(format!("no database is named {db}")),
            Some(row) if row.comment == format!("rollback:{key}:swapped") && row.allow => Observed::Done,
            Some(row) if row.comment.starts_with(&format!("rollback:{key}:")) => {
                Observed::Partial(format!("the restored database is in place under {db} (oid {}); finishing", row.oid))
            }
            Some(row) if Some(format!("oid:{}", row.oid)) == from_oid => {
                let restored = restore.is_some_and(|r| r.comment == format!("rollback:{key}:restored"));
                match (row.allow, restored) {
                    (false, _) => {
                        Observed::Partial(format!("the original is in place under {db} with connections disabled"))
                    }
                    (true, true) => Observed::Partial(format!(
                        "the original is in place under {db}; {db}_restore is restored, not swapped"
                    )),
                    (true, false) => Observed::NotStarted,
                }
            }
            Some(row) => Observed::Diverged(format!("{db} is now oid {}, neither the original nor ours", row.oid)),
        })
    }
}
