//! Locks: a lease with a fencing token, renewed by a heartbeat. Several targets are
//! locked at once, in sorted order, all or nothing. [`FileLock`] ships in core;
//! Postgres, Redis and Kubernetes Lease locks live in the backends.

mod file;
mod table;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

pub use file::FileLock;
pub use table::{LeaseTable, MemoryLock};

use crate::{Fence, Result, RunId};

/// Who holds a lease: the run, the process and the host, so a "locked" error can name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The run.
    pub run: RunId,
    /// The process id.
    pub pid: u32,
    /// The host name.
    pub host: String,
}

impl Holder {
    /// This process, running `run`.
    pub fn this_process(run: &RunId) -> Self {
        let host =
            nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "unknown".into());
        Holder { run: run.clone(), pid: std::process::id(), host }
    }

    /// Whether this holder is a process on this host that no longer exists (crashed).
    pub fn is_dead_local_process(&self) -> bool {
        let here = Holder::this_process(&self.run).host;
        if self.host != here {
            return false;
        }
        let Ok(pid) = i32::try_from(self.pid) else { return false };
        matches!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None), Err(nix::errno::Errno::ESRCH))
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "run {} (pid {} on {})", self.run, self.pid, self.host)
    }
}

/// A held lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Locked resources, sorted.
    pub resources: Vec<String>,
    /// The fencing token: larger than any earlier lease's on these resources.
    pub token: u64,
    /// The holder.
    pub holder: Holder,
    /// When it expires unless renewed.
    pub expires_at: DateTime<Utc>,
}

impl Lease {
    /// The fence journal appends carry.
    pub fn fence(&self) -> Fence {
        Fence::new(self.resources.clone(), self.token)
    }
}

/// A lock service. Usable as `Arc<dyn Lock>`.
#[async_trait]
pub trait Lock: Send + Sync + 'static {
    /// Acquires every resource or none; a held one gives [`crate::ErrorKind::Locked`]
    /// naming its holder. Expired leases, and leases of crashed local processes, are taken over.
    async fn acquire(&self, resources: &[String], holder: &Holder, ttl: Duration) -> Result<Lease>;
    /// Extends a lease; [`crate::ErrorKind::Locked`] if it was lost (expired and taken).
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease>;
    /// Releases a lease (no error if already gone).
    async fn release(&self, lease: &Lease) -> Result<()>;
}
