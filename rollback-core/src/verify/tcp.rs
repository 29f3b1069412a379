use async_trait::async_trait;
use serde::Deserialize;
use std::time::{Duration, Instant};

use super::{Check, Outcome, Verifier};
use crate::Result;

/// Passes when a TCP connection to `addr` opens (refused = fail). The probe loop's
/// per-check timeout bounds a connect that hangs.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use rollback_core::verify::TcpVerifier;
/// use rollback_core::{Outcome, Verifier};
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
/// let v = TcpVerifier::new("db-port", &listener.local_addr().unwrap().to_string());
/// assert_eq!(v.check().await.unwrap().outcome, Outcome::Pass);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct TcpVerifier {
    name: String,
    addr: String,
}

/// A TCP port that must accept connections.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpConfig {
    /// `host:port`.
    pub addr: String,
}

impl TcpVerifier {
    /// A verifier of `addr` (`host:port`).
    pub fn new(name: &str, addr: &str) -> Self {
        TcpVerifier { name: name.to_owned(), addr: addr.to_owned() }
    }
}

#[async_trait]
impl Verifier for TcpVerifier {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self) -> Result<Check> {
        let started = Instant::now();
        let outcome = match tokio::net::TcpStream::connect(&self.addr).await {
            Ok(_) => (Outcome::Pass, format!("connected to {}", self.addr)),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                (Outcome::Fail, format!("connection to {} refused", self.addr))
            }
            Err(e) => (Outcome::Inconclusive, format!("cannot connect to {}: {e}", self.addr)),
        };
        let latency: Duration = started.elapsed();
        Ok(Check::new(outcome.0, outcome.1).measure("latency_ms", latency.as_secs_f64() * 1000.0))
    }
}
