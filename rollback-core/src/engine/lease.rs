//! Holding a lease for a run: heartbeat renewal, and the check made before every effect.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

use crate::{Error, ErrorKind, Fence, Lease, Lock, Result};

/// A lease renewed in the background. When renewal fails for good, or the lease runs
/// out without renewal (the process was stopped, say), [`LeaseGuard::check`] fails and
/// the engine issues no more effects.
pub(crate) struct LeaseGuard {
    lease: Arc<Mutex<Lease>>,
    fence: Fence,
    lost: Arc<AtomicBool>,
    valid_until: Arc<Mutex<Instant>>,
    heartbeat: tokio::task::JoinHandle<()>,
    lock: Arc<dyn Lock>,
}

impl LeaseGuard {
    pub(crate) fn start(lock: Arc<dyn Lock>, lease: Lease, ttl: Duration) -> Self {
        let fence = lease.fence();
        let lease = Arc::new(Mutex::new(lease));
        let lost = Arc::new(AtomicBool::new(false));
        let valid_until = Arc::new(Mutex::new(Instant::now() + ttl));
        let heartbeat = tokio::spawn(heartbeat(lock.clone(), lease.clone(), ttl, lost.clone(), valid_until.clone()));
        LeaseGuard { lease, fence, lost, valid_until, heartbeat, lock }
    }

    pub(crate) fn fence(&self) -> &Fence {
        &self.fence
    }

    /// Fails when the lease is lost or ran out unrenewed.
    pub(crate) fn check(&self) -> Result<()> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(Error::new(
                ErrorKind::Locked,
                "the lease was lost to another holder; no more effects are issued",
            )
            .with_context("token", self.fence.token())
            .set_retryable(false));
        }
        let valid_until = *self.valid_until.lock().map_err(|_| Error::internal("lease mutex poisoned"))?;
        if Instant::now() >= valid_until {
            return Err(Error::new(
                ErrorKind::Locked,
                "the lease ran out without renewal (was this process stopped?); no more effects are issued",
            )
            .with_context("token", self.fence.token())
            .set_retryable(false));
        }
        Ok(())
    }

    pub(crate) async fn release(self) {
        self.heartbeat.abort();
        let lease = self.lease.lock().map(|l| l.clone()).ok();
        if let Some(lease) = lease
            && let Err(err) = self.lock.release(&lease).await
        {
            tracing::warn!(error = %err, "could not release the lease; it will expire");
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

async fn heartbeat(
    lock: Arc<dyn Lock>,
    lease: Arc<Mutex<Lease>>,
    ttl: Duration,
    lost: Arc<AtomicBool>,
    valid_until: Arc<Mutex<Instant>>,
) {
    loop {
        tokio::time::sleep(ttl / 3).await;
        let Some(current) = lease.lock().map(|l| l.clone()).ok() else { return };
        let asked = Instant::now();
        match lock.renew(&current, ttl).await {
            Ok(renewed) => {
                if let (Ok(mut l), Ok(mut v)) = (lease.lock(), valid_until.lock()) {
                    *l = renewed;
                    *v = asked + ttl;
                }
            }
            Err(err) if err.kind() == ErrorKind::Locked => {
                tracing::error!(error = %err, "lease lost; stopping effects");
                lost.store(true, Ordering::SeqCst);
                return;
            }
            Err(err) => tracing::warn!(error = %err, "lease renewal failed; retrying"),
        }
    }
}
