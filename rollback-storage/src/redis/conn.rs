//! Connecting to Redis from a URL held in a secret (or a password-free URL in config).

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use rollback_core::{Error, Result, Spec};
use serde::{Deserialize, Serialize};

use crate::error;

/// Where a Redis server is. The URL (which may hold a password) comes from the
/// spec's secret `url`; a URL without credentials may be given as config `url`.
#[derive(Clone)]
pub struct RedisConn {
    client: redis::Client,
    timeout: Duration,
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConn").field("server", &self.server()).finish()
    }
}

/// Connection settings in a spec's config.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RedisConnConfig {
    /// A URL without credentials (`redis://127.0.0.1:6379/0`); else the secret `url` is used.
    #[serde(default)]
    pub url: Option<String>,
    /// Per-command response timeout (default 10 s).
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Option<Duration>,
}

impl RedisConn {
    /// Opens a client for `url` (nothing is sent yet). The URL is never shown in errors.
    pub fn open(url: &str, timeout: Duration) -> Result<Self> {
        let client = redis::Client::open(url).map_err(|e| error::redis("open redis client", e))?;
        Ok(RedisConn { client, timeout })
    }

    /// From a spec: config `url` (no credentials) or the secret `url`.
    pub fn from_spec(spec: &Spec, config: &RedisConnConfig) -> Result<Self> {
        let timeout = config.timeout.unwrap_or(Duration::from_secs(10));
        match &config.url {
            Some(url) if url.contains('@') => Err(Error::invalid_input(
                "config `url` must not hold credentials: put the URL under `secrets.url` as a reference",
            )
            .with_context("spec", &spec.name)),
            Some(url) => Self::open(url, timeout),
            None => Self::open(spec.secret("url")?.expose(), timeout),
        }
    }

    /// `host:port` (no credentials), for identities and messages.
    pub fn server(&self) -> String {
        self.client.get_connection_info().addr().to_string()
    }

    /// The database number in the URL.
    pub fn db(&self) -> i64 {
        self.client.get_connection_info().redis_settings().db()
    }

    /// The response timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A new multiplexed connection to `db` (the URL's database when `None`).
    pub async fn connect(&self, db: Option<i64>) -> Result<MultiplexedConnection> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let client = match db.filter(|d| *d != self.db()) {
            Some(db) => {
                let info = self.client.get_connection_info().clone();
                let settings = info.redis_settings().clone().set_db(db);
                redis::Client::open(info.set_redis_settings(settings))
                    .map_err(|e| error::redis("open redis client", e))?
            }
            None => self.client.clone(),
        };
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| error::redis("connect", e).with_context("server", self.server()))
    }
}
