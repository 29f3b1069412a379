//! Cache invalidation: an action, not a versioned target.
//!
//! Two modes, neither of which blocks the server: `FLUSHDB ASYNC` of one database, or
//! `SCAN MATCH pattern` + `UNLINK` in batches (never `KEYS`, never a blocking flush).
//! The run's idempotency key is stamped into Redis as a marker key
//! `rollback:invalidate:<key>` — `started` before the first `UNLINK`, `done` after the
//! last (written after the flush in flush mode) — so `observe` tells NotStarted /
//! Partial / Done from the server alone. Invalidation converges: re-running a partial
//! one finishes it.

use async_trait::async_trait;
use redis::aio::MultiplexedConnection;
use rollback_core::{
    Capabilities, Category, Change, DataLoss, Error, IdempotencyKey, Identity, Observed, Request, Result,
    Reversibility, Target, TargetId, Version,
};
use serde::{Deserialize, Serialize};
use std::time::Duration;

use super::RedisConn;
use crate::error;

/// How long the marker key lives (it only has to outlive a resume).
const MARKER_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// What to invalidate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum Invalidation {
    /// `FLUSHDB ASYNC` of the database.
    Flush,
    /// Keys matching a glob pattern, by `SCAN` + `UNLINK` in batches.
    Pattern {
        /// The `SCAN MATCH` glob (`session:*`).
        pattern: String,
    },
}

/// Config of a `redis-invalidate` target.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RedisInvalidateConfig {
    /// Connection (URL without credentials, timeout); else the secret `url`.
    #[serde(flatten)]
    pub conn: super::RedisConnConfig,
    /// The database (default: the URL's).
    #[serde(default)]
    pub db: Option<i64>,
    /// Default invalidation when a step gives no parameters.
    #[serde(flatten)]
    pub what: Invalidation,
    /// Keys per `SCAN COUNT` / `UNLINK` batch (default 1000).
    #[serde(default)]
    pub batch: Option<usize>,
}

/// The journaled payload of an invalidation.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Payload {
    db: i64,
    #[serde(flatten)]
    what: Invalidation,
    batch: usize,
    keys_before: u64,
}

/// Invalidates a Redis cache without blocking the server (kind `redis-invalidate`).
///
/// Request: `Request::Action { action: "invalidate", params }` where `params` may be
/// `{}` (the configured invalidation), `{"mode": "flush"}` or
/// `{"mode": "pattern", "pattern": "session:*"}`.
#[derive(Debug)]
pub struct RedisInvalidate {
    name: TargetId,
    conn: RedisConn,
    db: i64,
    what: Invalidation,
    batch: usize,
}

impl RedisInvalidate {
    /// A target over `conn`'s server.
    pub fn new(name: &str, conn: RedisConn, config: &RedisInvalidateConfig) -> Result<Self> {
        if let Invalidation::Pattern { pattern } = &config.what {
            validate_pattern(pattern)?;
        }
        let batch = config.batch.unwrap_or(1000);
        if batch == 0 {
            return Err(Error::invalid_input("batch must be at least 1").with_context("target", name));
        }
        let db = config.db.unwrap_or_else(|| conn.db());
        Ok(RedisInvalidate { name: TargetId::new(name), conn, db, what: config.what.clone(), batch })
    }

    fn marker(key: &IdempotencyKey) -> String {
        format!("rollback:invalidate:{key}")
    }

    async fn marker_state(&self, conn: &mut MultiplexedConnection, key: &IdempotencyKey) -> Result<Option<String>> {
        redis::cmd("GET").arg(Self::marker(key)).query_async(conn).await.map_err(|e| error::redis("get marker", e))
    }

    async fn set_marker(&self, conn: &mut MultiplexedConnection, key: &IdempotencyKey, state: &str) -> Result<()> {
        redis::cmd("SET")
            .arg(Self::marker(key))
            .arg(state)
            .arg("PX")
            .arg(MARKER_TTL.as_millis() as u64)
            .query_async::<()>(conn)
            .await
            .map_err(|e| error::redis("set marker", e))
    }
}

fn validate_pattern(pattern: &str) -> Result<()> {
    if pattern.trim().is_empty() {
        return Err(Error::invalid_input("the key pattern is empty (use mode = \"flush\" to drop the database)"));
    }
    Ok(())
}

/// Counts keys matching `pattern` with `SCAN … COUNT batch` (never `KEYS`, which
/// blocks the server): what an invalidation of `pattern` would remove.
pub async fn count_matching(conn: &mut MultiplexedConnection, pattern: &str, batch: usize) -> Result<u64> {
    let mut cursor: u64 = 0;
    let mut count = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(batch)
            .query_async(conn)
            .await
            .map_err(|e| error::redis("scan", e))?;
        count += keys.len() as u64;
        cursor = next;
        if cursor == 0 {
            return Ok(count);
        }
    }
}

/// Unlinks keys matching `pattern` in `SCAN` batches, skipping `keep`; returns how
/// many, reporting progress against `expected` (the count at prepare).
pub(crate) async fn unlink_matching(
    conn: &mut MultiplexedConnection,
    pattern: &str,
    batch: usize,
    keep: &str,
    expected: Option<u64>,
) -> Result<u64> {
    let mut cursor: u64 = 0;
    let mut unlinked = 0u64;
    loop {
        let (next, mut keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(batch)
            .query_async(conn)
            .await
            .map_err(|e| error::redis("scan", e))?;
        keys.retain(|k| k != keep);
        if !keys.is_empty() {
            let n: u64 = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(conn)
                .await
                .map_err(|e| error::redis("unlink", e).with_context("unlinked_so_far", unlinked))?;
            unlinked += n;
            // Keys written since prepare may push the count past the estimate.
            rollback_core::progress::report(unlinked, expected.map(|e| e.max(unlinked)), "keys");
        }
        cursor = next;
        if cursor == 0 {
            rollback_core::progress::report(unlinked, Some(unlinked), "keys");
            return Ok(unlinked);
        }
    }
}

#[async_trait]
impl Target for RedisInvalidate {
    fn name(&self) -> &TargetId {
        &self.name
    }

    fn kind(&self) -> &str {
        <Self as rollback_core::kind::Kind>::KIND
    }

    fn category(&self) -> Category {
        Category::Cache
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { versioned: false, converges_from_partial: true }
    }

    /// The server's address and the database. Not the server's `run_id`: that changes
    /// on every restart, and a run cut short by a Redis restart must resume on it.
    /// Reaching the server is still required, so a resume while it is down fails.
    async fn identity(&self) -> Result<Identity> {
        let mut conn = self.conn.connect(Some(self.db)).await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await.map_err(|e| error::redis("ping", e))?;
        Ok(Identity::new(format!("redis {} db {}", self.conn.server(), self.db)))
    }

    async fn prepare(&self, request: &Request) -> Result<Change> {
        let what = match request {
            Request::Action { action, params } if action == "invalidate" || action == "flush" => {
                if params.is_null() || params.as_object().is_some_and(|m| m.is_empty()) {
                    if action == "flush" { Invalidation::Flush } else { self.what.clone() }
                } else {
                    serde_json::from_value::<Invalidation>(params.clone()).map_err(|e| {
                        Error::invalid_input(format!("bad invalidate parameters: {e}"))
                            .with_context("target", &self.name)
                    })?
                }
            }
            other => {
                return Err(Error::invalid_input(format!(
                    "redis-invalidate is an action target: use action \"invalidate\" (got {other})"
                ))
                .with_context("target", &self.name));
            }
        };
        let mut conn = self.conn.connect(Some(self.db)).await?;
        let (keys_before, scope) = match &what {
            Invalidation::Flush => {
                let n: u64 =
                    redis::cmd("DBSIZE").query_async(&mut conn).await.map_err(|e| error::redis("dbsize", e))?;
                (n, format!("all {n} keys of db {}", self.db))
            }
            Invalidation::Pattern { pattern } => {
                validate_pattern(pattern)?;
                let n = count_matching(&mut conn, pattern, self.batch).await?;
                (n, format!("{n} keys matching {pattern:?} in db {}", self.db))
            }
        };
        let (how, to) = match &what {
            Invalidation::Flush => ("FLUSHDB ASYNC".to_owned(), format!("flushed db {}", self.db)),
            Invalidation::Pattern { pattern } => {
                (format!("SCAN + UNLINK in batches of {}", self.batch), format!("invalidated {pattern}"))
            }
        };
        let payload = Payload { db: self.db, what, batch: self.batch, keys_before };
        Ok(Change::new(self.name.clone(), "invalidate", None, Version::new(to))
            .describe(format!("{}: invalidate {scope} on {} ({how})", self.name, self.conn.server()))
            .with_reversibility(Reversibility::Irreversible)
            .with_data_loss(DataLoss::some(
                Some(keys_before),
                format!("{scope} are deleted (cache entries; rebuilt from the source of truth on demand)"),
            ))
            .with_payload(serde_json::to_value(payload).map_err(|e| Error::internal(e.to_string()))?))
    }

    async fn apply(&self, change: &Change, key: &IdempotencyKey) -> Result<()> {
        let payload: Payload = serde_json::from_value(change.payload.clone())
            .map_err(|e| Error::invalid_input(format!("bad redis-invalidate payload: {e}")))?;
        if !self.observe(change, key).await?.proceed(change)? {
            return Ok(());
        }
        let mut conn = self.conn.connect(Some(payload.db)).await?;
        match &payload.what {
            Invalidation::Flush => {
                redis::cmd("FLUSHDB")
                    .arg("ASYNC")
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(|e| error::redis("flushdb async", e))?;
                tracing::info!(target = %self.name, db = payload.db, "FLUSHDB ASYNC sent");
            }
            Invalidation::Pattern { pattern } => {
                self.set_marker(&mut conn, key, "started").await?;
                let n =
                    unlink_matching(&mut conn, pattern, payload.batch, &Self::marker(key), Some(payload.keys_before))
                        .await?;
                tracing::info!(target = %self.name, db = payload.db, pattern, unlinked = n, "keys unlinked");
            }
        }
        self.set_marker(&mut conn, key, "done").await
    }

    async fn observe(&self, change: &Change, key: &IdempotencyKey) -> Result<Observed> {
        let payload: Payload = serde_json::from_value(change.payload.clone())
            .map_err(|e| Error::invalid_input(format!("bad redis-invalidate payload: {e}")))?;
        let mut conn = self.conn.connect(Some(payload.db)).await?;
        Ok(match self.marker_state(&mut conn, key).await?.as_deref() {
            Some("done") => Observed::Done,
            Some(_) => {
                let left = match &payload.what {
                    Invalidation::Pattern { pattern } => count_matching(&mut conn, pattern, payload.batch).await?,
                    Invalidation::Flush => 0,
                };
                Observed::Partial(format!(
                    "invalidation started; {left} matching keys left of {} before",
                    payload.keys_before
                ))
            }
            None => Observed::NotStarted,
        })
    }
}
