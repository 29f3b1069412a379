//! Redis verifiers: `PING` (kind `redis-ping`) and `INFO keyspace` (kind
//! `redis-keyspace`, a key-count bound on one database).

use async_trait::async_trait;
use rollback_core::{Check, Outcome, Result, Verifier};
use serde::{Deserialize, Serialize};
use std::time::Instant;

use super::RedisConn;
use crate::error;

/// Passes when the server answers `PING` with `PONG`; measures `latency_ms`.
#[derive(Debug)]
pub struct RedisPing {
    name: String,
    conn: RedisConn,
}

impl RedisPing {
    /// A ping verifier.
    pub fn new(name: &str, conn: RedisConn) -> Self {
        RedisPing { name: name.to_owned(), conn }
    }
}

#[async_trait]
impl Verifier for RedisPing {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self) -> Result<Check> {
        let started = Instant::now();
        let mut conn = match self.conn.connect(None).await {
            Ok(c) => c,
            Err(e) => return Ok(Check::new(Outcome::Fail, format!("cannot connect: {e}"))),
        };
        let reply: std::result::Result<String, _> = redis::cmd("PING").query_async(&mut conn).await;
        let latency = started.elapsed();
        let mut check = match reply {
            Ok(r) if r == "PONG" => Check::new(Outcome::Pass, "PONG"),
            Ok(r) => Check::new(Outcome::Fail, format!("PING answered {r:?}")),
            Err(e) => Check::new(Outcome::Fail, error::redis("ping", e).to_string()),
        };
        check.latency = latency;
        Ok(check.measure("latency_ms", latency.as_secs_f64() * 1000.0))
    }
}

/// Config of a `redis-keyspace` verifier: the connection and the bounds.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
pub struct RedisKeyspaceConfig {
    /// Connection (URL without credentials, timeout); else the secret `url`.
    #[serde(flatten)]
    pub conn: super::RedisConnConfig,
    /// The bounds.
    #[serde(flatten)]
    pub check: KeyspaceCheck,
}

/// Bounds on the key count of one database, read from `INFO keyspace`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct KeyspaceCheck {
    /// The database (default 0).
    #[serde(default)]
    pub db: i64,
    /// Fail when more keys than this (e.g. `0` after a flush).
    #[serde(default)]
    pub max_keys: Option<u64>,
    /// Fail when fewer keys than this (a warmed cache).
    #[serde(default)]
    pub min_keys: Option<u64>,
}

/// Checks `INFO keyspace` against [`KeyspaceCheck`]; measures `keys`.
#[derive(Debug)]
pub struct RedisKeyspace {
    name: String,
    conn: RedisConn,
    check: KeyspaceCheck,
}

impl RedisKeyspace {
    /// A keyspace verifier.
    pub fn new(name: &str, conn: RedisConn, check: KeyspaceCheck) -> Self {
        RedisKeyspace { name: name.to_owned(), conn, check }
    }
}

/// The key count of `db` in an `INFO keyspace` reply (`db0:keys=3,expires=0,…`); 0 if absent.
///
/// ```
/// use rollback_storage::redis::keys_in_info;
/// let info = "# Keyspace\r\ndb0:keys=12,expires=1,avg_ttl=0\r\ndb3:keys=7,expires=0,avg_ttl=0\r\n";
/// assert_eq!(keys_in_info(info, 3), 7);
/// assert_eq!(keys_in_info(info, 1), 0);
/// ```
pub fn keys_in_info(info: &str, db: i64) -> u64 {
    let prefix = format!("db{db}:");
    info.lines()
        .find_map(|l| l.trim().strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').find_map(|kv| kv.strip_prefix("keys=")))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[async_trait]
impl Verifier for RedisKeyspace {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self) -> Result<Check> {
        let started = Instant::now();
        let mut conn = match self.conn.connect(None).await {
            Ok(c) => c,
            Err(e) => return Ok(Check::new(Outcome::Fail, format!("cannot connect: {e}"))),
        };
        let info: String = match redis::cmd("INFO").arg("keyspace").query_async(&mut conn).await {
            Ok(i) => i,
            Err(e) => return Ok(Check::new(Outcome::Inconclusive, error::redis("info keyspace", e).to_string())),
        };
        let keys = keys_in_info(&info, self.check.db);
        let c = &self.check;
        let outcome = if c.max_keys.is_some_and(|m| keys > m) || c.min_keys.is_some_and(|m| keys < m) {
            Outcome::Fail
        } else {
            Outcome::Pass
        };
        let mut check = Check::new(outcome, format!("db{} has {keys} keys", c.db));
        check.latency = started.elapsed();
        Ok(check.measure("keys", keys as f64))
    }
}
