//! [`PgLeaseLock`]: the engine's lock kept in PostgreSQL — leases in a table, expiry
//! judged by the server's clock, fencing tokens from a sequence.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rollback_core::{Error, ErrorKind, Holder, Lease, Lock, Result, RunId};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Row};

use crate::error::map;

/// A [`Lock`] in PostgreSQL: one row per locked resource in `rollback_leases`
/// (holder, token, expiry). Every change runs in a transaction that first takes a
/// transaction-level advisory lock, so concurrent acquirers are serialized by the
/// server and all-or-nothing holds across several resources. Expiry uses the
/// server's `now()`, so hosts with skewed clocks agree; fencing tokens come from a
/// sequence and only grow.
///
/// ```no_run
/// # async fn demo() -> rollback_core::Result<()> {
/// use rollback_core::{Engine, Registry};
/// let lock = rollback_db::PgLeaseLock::connect("postgres://rollback@db/ops").await?;
/// let engine = Engine::builder(Registry::new()).lock(std::sync::Arc::new(lock)).try_build()?;
/// # Ok(()) }
/// ```
pub struct PgLeaseLock {
    pool: PgPool,
    table: String,
}

impl std::fmt::Debug for PgLeaseLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLeaseLock").field("table", &self.table).finish_non_exhaustive()
    }
}

const SERIALIZE: &str = "SELECT pg_advisory_xact_lock(hashtextextended('rollback-leases', 0))";

impl PgLeaseLock {
    /// Connects and creates the lease table and token sequence if they are missing.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with_table(url, "rollback_leases").await
    }

    /// Like [`PgLeaseLock::connect`] with another table name (letters, digits, `_`,
    /// optionally `schema.table`).
    pub async fn connect_with_table(url: &str, table: &str) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(|e| map("connect (lock)", e))?;
        Self::on_pool(pool, table).await
    }

    /// The lock on an open pool (the shared journal's, for its lease table).
    pub(crate) async fn on_pool(pool: PgPool, table: &str) -> Result<Self> {
        let plain = |part: &str| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if table.split('.').count() > 2 || !table.split('.').all(plain) {
            return Err(Error::invalid_input(format!("lease table name {table:?} is not a plain identifier")));
        }
        let lock = PgLeaseLock { pool, table: table.to_string() };
        let mut tx = lock.pool.begin().await.map_err(|e| map("begin", e))?;
        sqlx::query(SERIALIZE).execute(&mut *tx).await.map_err(|e| map("lock table", e))?;
        for ddl in [
            format!(
                "CREATE TABLE IF NOT EXISTS {table} (resource TEXT PRIMARY KEY, run TEXT NOT NULL, pid BIGINT NOT NULL, \
                 host TEXT NOT NULL, token BIGINT NOT NULL, expires_at TIMESTAMPTZ NOT NULL)"
            ),
            format!("CREATE SEQUENCE IF NOT EXISTS {table}_token"),
        ] {
            sqlx::query(AssertSqlSafe(ddl)).execute(&mut *tx).await.map_err(|e| map("create lease table", e))?;
        }
        tx.commit().await.map_err(|e| map("commit", e))?;
        Ok(lock)
    }
}

fn sorted(resources: &[String]) -> Vec<String> {
    let mut resources = resources.to_vec();
    resources.sort();
    resources.dedup();
    resources
}

fn interval(ttl: Duration) -> f64 {
    ttl.as_secs_f64()
}

#[async_trait]
impl Lock for PgLeaseLock {
    async fn acquire(&self, resources: &[String], holder: &Holder, ttl: Duration) -> Result<Lease> {
        let resources = sorted(resources);
        let table = &self.table;
        let mut tx = self.pool.begin().await.map_err(|e| map("begin", e))?;
        sqlx::query(SERIALIZE).execute(&mut *tx).await.map_err(|e| map("serialize", e))?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT resource, run, pid, host FROM {table} WHERE resource = ANY($1) AND expires_at > now() ORDER BY resource"
        )))
        .bind(&resources)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| map("read leases", e))?;
        for row in rows {
            let run: String = row.get("run");
            let other = Holder {
                run: run.parse::<RunId>().map_err(|_| Error::internal(format!("bad run id {run:?} in {table}")))?,
                pid: u32::try_from(row.get::<i64, _>("pid")).unwrap_or(0),
                host: row.get("host"),
            };
            if other.is_dead_local_process() {
                tracing::warn!(holder = %other, "taking over the lease of a crashed local process");
                continue;
            }
            let resource: String = row.get("resource");
            return Err(Error::new(ErrorKind::Locked, format!("{resource} is locked by {other}"))
                .with_context("resource", resource));
        }
        let token: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT nextval('{table}_token')")))
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| map("next token", e))?;
        let expires_at: DateTime<Utc> = sqlx::query_scalar(AssertSqlSafe(format!(
            "INSERT INTO {table} (resource, run, pid, host, token, expires_at) \
             SELECT r, $2, $3, $4, $5, now() + make_interval(secs => $6) FROM unnest($1::text[]) AS r \
             ON CONFLICT (resource) DO UPDATE SET run = EXCLUDED.run, pid = EXCLUDED.pid, host = EXCLUDED.host, \
             token = EXCLUDED.token, expires_at = EXCLUDED.expires_at RETURNING expires_at"
        )))
        .bind(&resources)
        .bind(holder.run.as_str())
        .bind(i64::from(holder.pid))
        .bind(&holder.host)
        .bind(token)
        .bind(interval(ttl))
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| map("write leases", e))?;
        tx.commit().await.map_err(|e| map("commit", e))?;
        Ok(Lease { resources, token: token as u64, holder: holder.clone(), expires_at })
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease> {
        let table = &self.table;
        let mut tx = self.pool.begin().await.map_err(|e| map("begin", e))?;
        sqlx::query(SERIALIZE).execute(&mut *tx).await.map_err(|e| map("serialize", e))?;
        let renewed: Vec<DateTime<Utc>> = sqlx::query_scalar(AssertSqlSafe(format!(
            "UPDATE {table} SET expires_at = now() + make_interval(secs => $3) \
             WHERE resource = ANY($1) AND token = $2 RETURNING expires_at"
        )))
        .bind(&lease.resources)
        .bind(lease.token as i64)
        .bind(interval(ttl))
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| map("renew lease", e))?;
        if renewed.len() != lease.resources.len() {
            return Err(Error::new(
                ErrorKind::Locked,
                format!(
                    "the lease on {} (token {}) was lost: it expired and was taken over",
                    lease.resources.join(", "),
                    lease.token
                ),
            ));
        }
        tx.commit().await.map_err(|e| map("commit", e))?;
        Ok(Lease { expires_at: renewed[0], ..lease.clone() })
    }

    async fn release(&self, lease: &Lease) -> Result<()> {
        sqlx::query(AssertSqlSafe(format!("DELETE FROM {} WHERE resource = ANY($1) AND token = $2", self.table)))
            .bind(&lease.resources)
            .bind(lease.token as i64)
            .execute(&self.pool)
            .await
            .map_err(|e| map("release lease", e))?;
        Ok(())
    }
}
