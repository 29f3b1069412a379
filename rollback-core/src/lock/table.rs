use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use super::{Holder, Lease, Lock};
use crate::{Error, ErrorKind, Result};

/// Lease bookkeeping shared by every lock that stores leases as data (the file lock
/// and the in-memory lock): who holds what, until when, and the token counter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LeaseTable {
    /// The last token handed out (tokens only grow).
    pub last_token: u64,
    /// Held resources.
    pub held: BTreeMap<String, HeldBy>,
}

/// One held resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldBy {
    /// The holder.
    pub holder: Holder,
    /// Its token.
    pub token: u64,
    /// Its expiry.
    pub expires_at: DateTime<Utc>,
}

fn ttl_delta(ttl: Duration) -> Result<chrono::TimeDelta> {
    chrono::TimeDelta::from_std(ttl).map_err(|_| Error::invalid_input("lease ttl is too long"))
}

impl LeaseTable {
    /// Acquires all `resources` or none.
    pub fn acquire(
        &mut self,
        resources: &[String],
        holder: &Holder,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<Lease> {
        let mut sorted: Vec<String> = resources.to_vec();
        sorted.sort();
        sorted.dedup();
        if sorted.is_empty() {
            return Err(Error::invalid_input("nothing to lock"));
        }
        for resource in &sorted {
            if let Some(held) = self.held.get(resource) {
                let expired = held.expires_at <= now;
                if !expired && !held.holder.is_dead_local_process() {
                    return Err(Error::new(
                        ErrorKind::Locked,
                        format!("{resource:?} is locked by {} until {}", held.holder, held.expires_at.to_rfc3339()),
                    )
                    .with_context("resource", resource)
                    .with_context("holder", &held.holder)
                    .set_retryable(true));
                }
                tracing::warn!(resource, holder = %held.holder, expired, "taking over a lease from a holder that is gone");
            }
        }
        self.last_token += 1;
        let expires_at = now + ttl_delta(ttl)?;
        for resource in &sorted {
            self.held.insert(resource.clone(), HeldBy { holder: holder.clone(), token: self.last_token, expires_at });
        }
        Ok(Lease { resources: sorted, token: self.last_token, holder: holder.clone(), expires_at })
    }

    /// Extends a lease that is still held by its token.
    pub fn renew(&mut self, lease: &Lease, ttl: Duration, now: DateTime<Utc>) -> Result<Lease> {
        for resource in &lease.resources {
            match self.held.get(resource) {
                Some(held) if held.token == lease.token => {}
                other => {
                    let by = other.map_or("nobody".to_string(), |h| h.holder.to_string());
                    return Err(Error::new(
                        ErrorKind::Locked,
                        format!("lease on {resource:?} (token {}) was lost; now held by {by}", lease.token),
                    )
                    .set_retryable(false));
                }
            }
        }
        let expires_at = now + ttl_delta(ttl)?;
        for resource in &lease.resources {
            if let Some(held) = self.held.get_mut(resource) {
                held.expires_at = expires_at;
            }
        }
        Ok(Lease { expires_at, ..lease.clone() })
    }

    /// Releases what `lease` still holds; returns whether anything was released.
    pub fn release(&mut self, lease: &Lease) -> bool {
        let before = self.held.len();
        self.held.retain(|_, held| held.token != lease.token);
        self.held.len() != before
    }
}

/// A lock inside one process: for tests, benchmarks and single-process embedders.
#[derive(Debug, Default)]
pub struct MemoryLock {
    table: Mutex<LeaseTable>,
}

impl MemoryLock {
    /// An empty lock.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut LeaseTable) -> Result<T>) -> Result<T> {
        f(&mut *self.table.lock().map_err(|_| Error::internal("lock mutex poisoned"))?)
    }
}

#[async_trait]
impl Lock for MemoryLock {
    async fn acquire(&self, resources: &[String], holder: &Holder, ttl: Duration) -> Result<Lease> {
        self.with(|t| t.acquire(resources, holder, ttl, Utc::now()))
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease> {
        self.with(|t| t.renew(lease, ttl, Utc::now()))
    }

    async fn release(&self, lease: &Lease) -> Result<()> {
        self.with(|t| {
            t.release(lease);
            Ok(())
        })
    }
}
