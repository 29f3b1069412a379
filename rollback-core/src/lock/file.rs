use async_trait::async_trait;
use chrono::Utc;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{Holder, Lease, LeaseTable, Lock};
use crate::Result;
use crate::fsutil::{SharedJson, run_blocking};

/// The embedded lock: a [`LeaseTable`] in `leases.json` under a directory, read and
/// replaced atomically under an advisory `flock` (held only for the
/// read-modify-write, never across a run). Leases expire unless the engine's heartbeat renews them; a lease of
/// a process on this host that no longer exists is taken over at once.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use rollback_core::{FileLock, Holder, Lock, RunId};
/// use std::time::Duration;
/// let dir = tempfile::tempdir().unwrap();
/// let lock = FileLock::new(dir.path());
/// let a = Holder::this_process(&RunId::generate());
/// let lease = lock.acquire(&["web".into()], &a, Duration::from_secs(30)).await.unwrap();
/// let b = Holder::this_process(&RunId::generate());
/// let err = lock.acquire(&["web".into()], &b, Duration::from_secs(30)).await.unwrap_err();
/// assert!(err.to_string().contains(&a.run.to_string()), "names the holder: {err}");
/// lock.release(&lease).await.unwrap();
/// let next = lock.acquire(&["web".into()], &b, Duration::from_secs(30)).await.unwrap();
/// assert!(next.token > lease.token);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct FileLock {
    leases: Arc<SharedJson<LeaseTable>>,
}

impl FileLock {
    /// A lock whose state lives in `dir` (created on first use).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileLock { leases: Arc::new(SharedJson::new(dir.into().join("leases.json"))) }
    }

    async fn with_table<T>(&self, f: impl FnOnce(&mut LeaseTable) -> Result<(T, bool)>) -> Result<T> {
        run_blocking(|| self.leases.update(|table, _| f(table)))
    }
}

#[async_trait]
impl Lock for FileLock {
    async fn acquire(&self, resources: &[String], holder: &Holder, ttl: Duration) -> Result<Lease> {
        let (resources, holder) = (resources.to_vec(), holder.clone());
        self.with_table(move |t| Ok((t.acquire(&resources, &holder, ttl, Utc::now())?, true)))
            .await
            .map_err(|e| e.with_operation("acquire lock"))
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease> {
        let lease = lease.clone();
        self.with_table(move |t| Ok((t.renew(&lease, ttl, Utc::now())?, true)))
            .await
            .map_err(|e| e.with_operation("renew lock"))
    }

    async fn release(&self, lease: &Lease) -> Result<()> {
        let lease = lease.clone();
        self.with_table(move |t| Ok(((), t.release(&lease)))).await.map_err(|e| e.with_operation("release lock"))
    }
}
