//! A Redis lock implementing [`rollback_core::Lock`]: one key per resource set with
//! `SET NX PX` semantics (all or nothing, in one Lua script), a fencing token from
//! `INCR` on a counter key, renewal and release only by the holder's exact value
//! (`<token> <holder json>`), so a holder whose lease expired and was taken over can
//! neither extend nor delete the new holder's lease.

use async_trait::async_trait;
use chrono::Utc;
use redis::aio::MultiplexedConnection;
use rollback_core::{Error, ErrorKind, Holder, Lease, Lock, Result};
use std::time::Duration;
use tokio::sync::Mutex;

use super::RedisConn;
use crate::error;

/// KEYS = resource keys..., counter. ARGV = holder json, ttl ms.
/// Returns {1, token} or {0, existing value}.
const ACQUIRE: &str = r"
local n = #KEYS - 1
for i = 1, n do
  local v = redis.call('GET', KEYS[i])
  if v then return {0, v} end
end
local token = redis.call('INCR', KEYS[#KEYS])
local value = tostring(token) .. ' ' .. ARGV[1]
for i = 1, n do
  redis.call('SET', KEYS[i], value, 'PX', ARGV[2])
end
return {1, token}
";

/// KEYS = resource keys. ARGV = value, ttl ms. Returns 1 if every key held the value.
const RENEW: &str = r"
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) ~= ARGV[1] then return 0 end
end
for i = 1, #KEYS do
  redis.call('PEXPIRE', KEYS[i], ARGV[2])
end
return 1
";

/// KEYS = resource keys. ARGV = value. Deletes only keys holding the value.
const RELEASE: &str = r"
local n = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]); n = n + 1 end
end
return n
";

/// A lock service on a Redis server (keys under a prefix, default `rollback:lock`).
pub struct RedisLock {
    conn: RedisConn,
    prefix: String,
    cached: Mutex<Option<MultiplexedConnection>>,
}

impl std::fmt::Debug for RedisLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLock").field("server", &self.conn.server()).field("prefix", &self.prefix).finish()
    }
}

impl RedisLock {
    /// A lock under the default key prefix `rollback:lock`.
    pub fn new(conn: RedisConn) -> Self {
        Self::with_prefix(conn, "rollback:lock")
    }

    /// A lock under `prefix` (`<prefix>:res:<resource>`, `<prefix>:fence`).
    pub fn with_prefix(conn: RedisConn, prefix: &str) -> Self {
        RedisLock { conn, prefix: prefix.to_owned(), cached: Mutex::new(None) }
    }

    async fn conn(&self) -> Result<MultiplexedConnection> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref() {
            return Ok(c.clone());
        }
        let c = self.conn.connect(None).await?;
        *cached = Some(c.clone());
        Ok(c)
    }

    fn keys(&self, resources: &[String]) -> Vec<String> {
        let mut sorted: Vec<&String> = resources.iter().collect();
        sorted.sort();
        sorted.dedup();
        sorted.into_iter().map(|r| format!("{}:res:{r}", self.prefix)).collect()
    }

    fn value(lease: &Lease) -> Result<String> {
        Ok(format!("{} {}", lease.token, holder_json(&lease.holder)?))
    }
}

fn holder_json(holder: &Holder) -> Result<String> {
    serde_json::to_string(holder).map_err(|e| Error::internal(format!("holder json: {e}")))
}

fn ttl_ms(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}

#[async_trait]
impl Lock for RedisLock {
    async fn acquire(&self, resources: &[String], holder: &Holder, ttl: Duration) -> Result<Lease> {
        if resources.is_empty() {
            return Err(Error::invalid_input("a lease needs at least one resource"));
        }
        let mut conn = self.conn().await?;
        let keys = self.keys(resources);
        let json = holder_json(holder)?;
        let compiled = redis::Script::new(ACQUIRE);
        let mut script = compiled.prepare_invoke();
        for k in &keys {
            script.key(k);
        }
        script.key(format!("{}:fence", self.prefix)).arg(&json).arg(ttl_ms(ttl));
        let (ok, value): (i64, redis::Value) =
            script.invoke_async(&mut conn).await.map_err(|e| error::redis("acquire lock", e))?;
        if ok == 1 {
            let token: u64 = redis::from_redis_value(value).map_err(|e| error::redis("acquire lock", e.into()))?;
            let mut sorted = resources.to_vec();
            sorted.sort();
            sorted.dedup();
            return Ok(Lease {
                resources: sorted,
                token,
                holder: holder.clone(),
                expires_at: Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX),
            });
        }
        let existing: String = redis::from_redis_value(value).unwrap_or_default();
        let other = existing
            .split_once(' ')
            .and_then(|(_, json)| serde_json::from_str::<Holder>(json).ok())
            .map_or_else(|| "another holder".to_owned(), |h| h.to_string());
        Err(Error::new(ErrorKind::Locked, format!("locked by {other}"))
            .with_operation("acquire lock")
            .with_context("resources", resources.join(",")))
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease> {
        let mut conn = self.conn().await?;
        let compiled = redis::Script::new(RENEW);
        let mut script = compiled.prepare_invoke();
        for k in self.keys(&lease.resources) {
            script.key(k);
        }
        script.arg(Self::value(lease)?).arg(ttl_ms(ttl));
        let ok: i64 = script.invoke_async(&mut conn).await.map_err(|e| error::redis("renew lock", e))?;
        if ok != 1 {
            return Err(Error::new(ErrorKind::Locked, "the lease was lost (expired and possibly taken over)")
                .with_operation("renew lock")
                .with_context("token", lease.token));
        }
        let mut renewed = lease.clone();
        renewed.expires_at = Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        Ok(renewed)
    }

    async fn release(&self, lease: &Lease) -> Result<()> {
        let mut conn = self.conn().await?;
        let compiled = redis::Script::new(RELEASE);
        let mut script = compiled.prepare_invoke();
        for k in self.keys(&lease.resources) {
            script.key(k);
        }
        script.arg(Self::value(lease)?);
        let _: i64 = script.invoke_async(&mut conn).await.map_err(|e| error::redis("release lock", e))?;
        Ok(())
    }
}
