//! Waiting for a Deployment's rollout the way `kubectl rollout status` does: one GET,
//! then a watch on that one Deployment (`fieldSelector=metadata.name=…`, bookmarks on),
//! re-opened from the last version seen when the server ends it (its timeout) and
//! after a `410 Gone` (re-read first); polling every `poll_interval` only when a
//! watch cannot be opened or breaks. The requests do not grow with the rollout's
//! length: a rollout shorter than one watch costs a GET and a WATCH (just the WATCH
//! after our own PATCH, whose answer is the Deployment to start from).

use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{WatchEvent, WatchParams};
use rollback_core::{Error, ErrorKind, Result};

use crate::deployment::WaitConfig;
use crate::error::err;
use crate::rollout::{RolloutStatus, rollout_status};

/// One Deployment to wait for.
pub(crate) struct RolloutWait<'a> {
    pub api: &'a Api<Deployment>,
    pub name: &'a str,
    /// `deployment NS/NAME`, for messages.
    pub what: String,
    pub wait: &'a WaitConfig,
}

/// How one watch ended.
enum Watched {
    /// The rollout finished, failed or timed out.
    Settled(Result<()>),
    /// The server closed the watch; go on from this version.
    Ended(String),
    /// `410 Gone`: the version is too old; read again.
    Expired,
    /// The watch could not be opened or broke: poll instead.
    Broken(String),
}

impl RolloutWait<'_> {
    /// Waits until rolled out; an error on `ProgressDeadlineExceeded` or after the
    /// timeout. `from`: the Deployment just written (its version starts the watch).
    pub(crate) async fn run(&self, from: Option<Deployment>) -> Result<()> {
        let started = Instant::now();
        let mut d = match from {
            Some(d) => d,
            None => self.get().await?,
        };
        loop {
            if let Some(done) = self.settled(&d, started) {
                return done;
            }
            let mut rv = d.metadata.resource_version.clone().unwrap_or_default();
            loop {
                match self.watch_from(&rv, started).await {
                    Watched::Settled(done) => return done,
                    Watched::Ended(last) => rv = last,
                    Watched::Expired => break,
                    Watched::Broken(why) => {
                        tracing::warn!(deployment = %self.what, %why, "watch broke; polling instead");
                        return self.poll(started).await;
                    }
                }
            }
            d = self.get().await?;
        }
    }

    async fn get(&self) -> Result<Deployment> {
        self.api
            .get(self.name)
            .await
            .map_err(err("get deployment"))
            .map_err(|e| e.with_context("deployment", &self.what))
    }

    /// `Some` when the rollout finished, failed, or ran out of time.
    fn settled(&self, d: &Deployment, started: Instant) -> Option<Result<()>> {
        let wanted = d.spec.replicas.unwrap_or(1).max(0) as u64;
        let status = d.status.as_ref();
        let updated = status.and_then(|s| s.updated_replicas).unwrap_or(0);
        let up = updated.min(status.and_then(|s| s.available_replicas).unwrap_or(0)).max(0) as u64;
        rollback_core::progress::report(up.min(wanted), Some(wanted), "replicas");
        match rollout_status(d) {
            RolloutStatus::Complete => Some(Ok(())),
            RolloutStatus::Failed(message) => {
                Some(Err(Error::new(ErrorKind::Backend, format!("rollout failed: {message}"))
                    .set_retryable(false)
                    .with_context("deployment", &self.what)))
            }
            RolloutStatus::Waiting(message) if started.elapsed() >= self.wait.timeout => Some(Err(Error::new(
                ErrorKind::Timeout,
                format!("{} not rolled out after {:?}: {message}", self.what, self.wait.timeout),
            ))),
            RolloutStatus::Waiting(message) => {
                tracing::debug!(deployment = %self.what, message, "waiting for rollout");
                None
            }
        }
    }

    async fn watch_from(&self, rv: &str, started: Instant) -> Watched {
        let left = self.wait.timeout.saturating_sub(started.elapsed());
        // The server's own timeout at most ~5 minutes, as kubectl's and kube's watchers use.
        let params = WatchParams::default()
            .fields(&format!("metadata.name={}", self.name))
            .timeout(left.as_secs().clamp(1, 290) as u32);
        let stream = match self.api.watch(&params, rv).await {
            Ok(stream) => stream,
            Err(e) => return Watched::Broken(format!("cannot watch: {e}")),
        };
        futures::pin_mut!(stream);
        let mut last = rv.to_owned();
        let mut latest: Option<Deployment> = None;
        loop {
            let left = self.wait.timeout.saturating_sub(started.elapsed());
            let event = match tokio::time::timeout(left, stream.next()).await {
                Err(_) => {
                    let d = match latest.take() {
                        Some(d) => d,
                        None => match self.get().await {
                            Ok(d) => d,
                            Err(e) => return Watched::Settled(Err(e)),
                        },
                    };
                    // Out of time: never a success unless the rollout says so.
                    return Watched::Settled(self.settled(&d, started).unwrap_or_else(|| {
                        Err(Error::new(
                            ErrorKind::Timeout,
                            format!("{} not rolled out after {:?}", self.what, self.wait.timeout),
                        ))
                    }));
                }
                Ok(None) => return Watched::Ended(last),
                Ok(Some(Err(e))) => return Watched::Broken(format!("the watch broke: {e}")),
                Ok(Some(Ok(event))) => event,
            };
            match event {
                WatchEvent::Added(d) | WatchEvent::Modified(d) => {
                    last = d.metadata.resource_version.clone().unwrap_or(last);
                    if let Some(done) = self.settled(&d, started) {
                        return Watched::Settled(done);
                    }
                    latest = Some(d);
                }
                WatchEvent::Bookmark(b) => last = b.metadata.resource_version,
                WatchEvent::Deleted(_) => {
                    return Watched::Settled(Err(Error::not_found(format!(
                        "{} was deleted while waiting for its rollout",
                        self.what
                    ))));
                }
                WatchEvent::Error(status) if status.code == 410 => return Watched::Expired,
                WatchEvent::Error(status) => return Watched::Broken(format!("watch error: {}", status.message)),
            }
        }
    }

    /// The fallback: a GET every `poll_interval`.
    async fn poll(&self, started: Instant) -> Result<()> {
        loop {
            let d = self.get().await?;
            if let Some(done) = self.settled(&d, started) {
                return done;
            }
            tokio::time::sleep(self.wait.poll_interval).await;
        }
    }
}
