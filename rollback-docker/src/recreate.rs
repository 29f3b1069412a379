//! Recreating a container with another image, in phases `observe` can tell apart
//! after a crash: old stopped → old renamed → replacement created → replacement
//! started (stop-first), or replacement created and started beside the old one →
//! old stopped and renamed → replacement renamed into place (start-first).
//!
//! The old container is renamed `<name>_rb_old_<h>` and the start-first replacement
//! is created as `<name>_rb_new_<h>`, where `<h>` is derived from the idempotency
//! key, so a resumed run finds them again. The replacement carries the key in the
//! `io.rollback.key` label.

use std::time::{Duration, Instant};

use bollard::models::{ContainerInspectResponse, HealthStatusEnum};
use rollback_core::{Change, Error, ErrorKind, IdempotencyKey, Observed, Result};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::api::DockerApi;
use crate::carry::{LABEL_KEY, LABEL_REPLACES, replacement};

/// In which order the old container goes and the replacement comes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// Stop the old container, then start the replacement (the default; what compose
    /// does; needed when both would bind the same ports).
    #[default]
    StopFirst,
    /// Start the replacement and wait until it runs (and is healthy, when it has a
    /// healthcheck) before the old one stops; a replacement that never gets there is
    /// removed and the old container keeps running.
    StartFirst,
}

/// The journaled description of one recreate (no configuration values: those are
/// read from the old container at apply time, so no secret reaches the journal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Recreate {
    /// The container's name.
    pub container: String,
    /// The ID of the container expected under the name; `None` for an inverse, which
    /// expects whatever container runs the `from` image.
    pub replaces: Option<String>,
    pub order: Order,
    /// Whether the old container was running (the replacement is started only then).
    pub was_running: bool,
    /// Keep the old container (stopped, renamed) for inspection and a quick way back.
    pub retain_old: bool,
    /// Seconds between SIGTERM and SIGKILL when stopping.
    pub stop_grace: Option<i64>,
    /// How long start-first waits for the replacement to run (and be healthy).
    pub start_timeout_secs: u64,
}

/// The names a recreate with `key` uses for the retired and the start-first containers.
pub(crate) fn side_names(container: &str, key: &IdempotencyKey) -> (String, String) {
    let digest = sha2::Sha256::digest(key.as_str().as_bytes());
    let h: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    (format!("{container}_rb_old_{h}"), format!("{container}_rb_new_{h}"))
}

/// What the engine shows for one recreate.
struct Seen {
    named: Option<ContainerInspectResponse>,
    retired: Option<ContainerInspectResponse>,
    temp: Option<ContainerInspectResponse>,
    retired_name: String,
    temp_name: String,
}

fn label<'a>(c: &'a ContainerInspectResponse, key: &str) -> Option<&'a str> {
    c.config.as_ref()?.labels.as_ref()?.get(key).map(String::as_str)
}

pub(crate) fn is_running(c: &ContainerInspectResponse) -> bool {
    c.state.as_ref().and_then(|s| s.running).unwrap_or(false)
}

fn id(c: &ContainerInspectResponse) -> &str {
    c.id.as_deref().unwrap_or("")
}

fn short(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    &id[..id.len().min(12)]
}

impl Recreate {
    async fn look(&self, api: &DockerApi, key: &IdempotencyKey) -> Result<Seen> {
        let (retired_name, temp_name) = side_names(&self.container, key);
        // Three reads of one moment, sent together.
        let (named, retired, temp) =
            tokio::try_join!(api.container(&self.container), api.container(&retired_name), api.container(&temp_name))?;
        Ok(Seen { named, retired, temp, retired_name, temp_name })
    }

    fn is_ours(c: &ContainerInspectResponse, key: &IdempotencyKey) -> bool {
        label(c, LABEL_KEY) == Some(key.as_str())
    }

    fn is_old(&self, c: &ContainerInspectResponse, change: &Change, key: &IdempotencyKey) -> bool {
        match &self.replaces {
            Some(expected) => id(c) == expected,
            None => !Self::is_ours(c, key) && change.from.as_ref().is_some_and(|f| c.image.as_deref() == Some(&f.id)),
        }
    }

    /// Classifies what the engine shows, from the engine alone.
    pub(crate) async fn observe(&self, api: &DockerApi, change: &Change, key: &IdempotencyKey) -> Result<Observed> {
        let seen = self.look(api, key).await?;
        Ok(self.classify(&seen, change, key))
    }

    fn classify(&self, seen: &Seen, change: &Change, key: &IdempotencyKey) -> Observed {
        let name = &self.container;
        match &seen.named {
            Some(c) if Self::is_ours(c, key) => {
                if is_running(c) || !self.was_running {
                    Observed::Done
                } else {
                    Observed::Partial(format!("replacement {name} ({}) created but not started", short(id(c))))
                }
            }
            Some(c) if self.is_old(c, change, key) => {
                if let Some(temp) = &seen.temp {
                    let state = if is_running(temp) { "running" } else { "created" };
                    Observed::Partial(format!("replacement {} {state} beside the old container", seen.temp_name))
                } else if self.was_running && !is_running(c) {
                    Observed::Partial(format!("old container {name} stopped, not yet replaced"))
                } else {
                    Observed::NotStarted
                }
            }
            Some(c) => Observed::Diverged(format!(
                "{name} is now container {} running image {}, which this run did not create",
                short(id(c)),
                short(c.image.as_deref().unwrap_or("?"))
            )),
            None if seen.retired.is_some() || seen.temp.is_some() => {
                let mut detail = format!("no container is named {name}");
                if seen.retired.is_some() {
                    detail.push_str(&format!("; the old one is stopped as {}", seen.retired_name));
                }
                if seen.temp.is_some() {
                    detail.push_str(&format!("; the replacement exists as {}", seen.temp_name));
                }
                Observed::Partial(detail)
            }
            None => Observed::Diverged(format!("no container is named {name} any more")),
        }
    }

    /// Performs the recreate, or finishes it from whatever phase the engine shows.
    /// `stop_after` names a phase after which to stop with an error, as a crash there
    /// would (tests of the half-finished states).
    pub(crate) async fn apply(
        &self,
        api: &DockerApi,
        change: &Change,
        key: &IdempotencyKey,
        stop_after: Option<&str>,
    ) -> Result<()> {
        let seen = self.look(api, key).await?;
        if !self.classify(&seen, change, key).proceed(change)? && seen.named.as_ref().is_some_and(is_running) {
            return self.cleanup(api, &seen).await;
        }
        match self.order {
            Order::StopFirst => self.stop_first(api, change, key, seen, stop_after).await,
            Order::StartFirst => self.start_first(api, change, key, seen, stop_after).await,
        }
    }

    async fn stop_first(
        &self,
        api: &DockerApi,
        change: &Change,
        key: &IdempotencyKey,
        seen: Seen,
        stop_after: Option<&str>,
    ) -> Result<()> {
        let name = &self.container;
        if let Some(old) = seen.named.as_ref().filter(|c| self.is_old(c, change, key)) {
            tracing::info!(container = %name, "stopping the old container");
            api.stop(id(old), self.stop_grace).await?;
            checkpoint(stop_after, "old-stopped")?;
            tracing::info!(container = %name, retired = %seen.retired_name, "renaming the old container");
            api.rename(id(old), &seen.retired_name).await?;
            checkpoint(stop_after, "old-renamed")?;
        }
        let (current, retired) = tokio::try_join!(api.container(name), api.container(&seen.retired_name))?;
        let new = match current {
            Some(c) if Self::is_ours(&c, key) => c,
            Some(_) => return Err(self.lost(change, "another container took the name")),
            None => {
                let old = retired.as_ref().ok_or_else(|| {
                    self.lost(change, &format!("neither {name} nor the retired {} exists", seen.retired_name))
                })?;
                let new = self.create_replacement(api, old, change, key, name).await?;
                checkpoint(stop_after, "created")?;
                new
            }
        };
        if let Some(old) = &retired {
            self.ensure_networks(api, &new, old).await?;
        }
        // The retired container is the one read above (nothing else renames to its
        // name); it is stopped, so removing it goes on while the replacement starts.
        let seen = Seen { retired, ..seen };
        let cleanup = self.cleanup(api, &seen);
        let start = async {
            if self.was_running {
                tracing::info!(container = %name, "starting the replacement");
                api.start(name).await?;
            }
            Ok(())
        };
        tokio::try_join!(start, cleanup).map(drop)
    }

    async fn start_first(
        &self,
        api: &DockerApi,
        change: &Change,
        key: &IdempotencyKey,
        seen: Seen,
        stop_after: Option<&str>,
    ) -> Result<()> {
        let name = &self.container;
        if let Some(old) = seen.named.as_ref().filter(|c| self.is_old(c, change, key)) {
            let temp = match &seen.temp {
                Some(t) => t.clone(),
                None => self.create_replacement(api, old, change, key, &seen.temp_name).await?,
            };
            self.ensure_networks(api, &temp, old).await?;
            api.start(&seen.temp_name).await?;
            checkpoint(stop_after, "started-beside")?;
            if let Err(err) = wait_ready(api, &seen.temp_name, Duration::from_secs(self.start_timeout_secs)).await {
                tracing::warn!(container = %name, error = %err, "replacement not ready; removing it, the old container keeps running");
                api.remove(&seen.temp_name).await?;
                return Err(err.with_context("container", name).with_context("left", "the old container, untouched"));
            }
            api.stop(id(old), self.stop_grace).await?;
            api.rename(id(old), &seen.retired_name).await?;
            checkpoint(stop_after, "old-renamed")?;
        }
        if api.container(name).await?.is_none() {
            if api.container(&seen.temp_name).await?.is_some() {
                api.rename(&seen.temp_name, name).await?;
            } else {
                let old = api.container(&seen.retired_name).await?.ok_or_else(|| {
                    self.lost(change, &format!("neither {name}, {} nor {} exists", seen.temp_name, seen.retired_name))
                })?;
                let new = self.create_replacement(api, &old, change, key, name).await?;
                self.ensure_networks(api, &new, &old).await?;
            }
        }
        api.start(name).await?;
        self.cleanup(api, &self.look(api, key).await?).await
    }

    async fn create_replacement(
        &self,
        api: &DockerApi,
        old: &ContainerInspectResponse,
        change: &Change,
        key: &IdempotencyKey,
        as_name: &str,
    ) -> Result<ContainerInspectResponse> {
        let old_image = match old.image.as_deref() {
            Some(image) => api.image(image).await?.and_then(|i| i.config),
            None => None,
        };
        let image_ref = image_reference(api, old, &change.to.id).await?;
        let labels = [(LABEL_KEY, key.as_str().to_string()), (LABEL_REPLACES, id(old).to_string())];
        let plan = replacement(old, old_image.as_ref(), &image_ref, &labels);
        tracing::info!(container = %as_name, image = %image_ref, "creating the replacement");
        api.create(as_name, plan.body).await?;
        api.container(as_name).await?.ok_or_else(|| Error::internal(format!("{as_name} vanished right after creation")))
    }

    /// Connects `new` to the further networks `old_name` is on (after a crash between
    /// create and connect, the missing ones).
    async fn ensure_networks(
        &self,
        api: &DockerApi,
        new: &ContainerInspectResponse,
        old: &ContainerInspectResponse,
    ) -> Result<()> {
        let plan = replacement(old, None, "", &[]);
        let joined = new.network_settings.as_ref().and_then(|n| n.networks.as_ref());
        for (network, endpoint) in plan.extra_networks {
            if !joined.is_some_and(|j| j.contains_key(&network)) {
                api.connect_network(id(new), &network, endpoint).await?;
            }
        }
        Ok(())
    }

    async fn cleanup(&self, api: &DockerApi, seen: &Seen) -> Result<()> {
        if !self.retain_old && seen.retired.is_some() {
            tracing::info!(retired = %seen.retired_name, "removing the old container");
            api.remove(&seen.retired_name).await?;
        }
        Ok(())
    }

    fn lost(&self, change: &Change, what: &str) -> Error {
        Error::new(ErrorKind::Diverged, format!("cannot finish recreating {}: {what}", self.container))
            .with_context("target", &change.target)
    }
}

/// Stops with an error after `phase` when the test hook names it.
fn checkpoint(stop_after: Option<&str>, phase: &str) -> Result<()> {
    if stop_after == Some(phase) {
        return Err(Error::internal(format!("stopped after phase {phase} (test hook)")));
    }
    Ok(())
}

/// What goes into the replacement's `Config.Image`: a tag of the same repository as
/// the old container's reference when it still points at `image_id` (so `docker ps`
/// reads well), else the ID itself (tags move; the ID is what was prepared).
async fn image_reference(api: &DockerApi, old: &ContainerInspectResponse, image_id: &str) -> Result<String> {
    let image = api.image(image_id).await?.ok_or_else(|| {
        Error::not_found(format!("image {} is no longer on this engine (pruned?)", short(image_id)))
            .with_context("image", image_id)
    })?;
    let old_reference = old.config.as_ref().and_then(|c| c.image.clone()).unwrap_or_default();
    let repository = crate::images::repository_of(&old_reference);
    let tags = image.repo_tags.unwrap_or_default();
    Ok(tags
        .iter()
        .find(|t| Some(crate::images::repository_of(t)) == Some(repository).filter(|r| !r.is_empty()))
        .or(tags.first())
        .cloned()
        .unwrap_or_else(|| image_id.to_string()))
}

/// Waits until a container runs and, if it has a healthcheck, reports healthy.
pub(crate) async fn wait_ready(api: &DockerApi, name: &str, timeout: Duration) -> Result<()> {
    let started = Instant::now();
    loop {
        let c = api.container(name).await?.ok_or_else(|| Error::not_found(format!("container {name} is gone")))?;
        let health = c.state.as_ref().and_then(|s| s.health.as_ref()).and_then(|h| h.status);
        match health {
            Some(HealthStatusEnum::HEALTHY) => return Ok(()),
            Some(HealthStatusEnum::UNHEALTHY) => {
                return Err(Error::new(ErrorKind::VerificationFailed, format!("container {name} is unhealthy")));
            }
            None | Some(HealthStatusEnum::NONE) | Some(HealthStatusEnum::EMPTY) if is_running(&c) => return Ok(()),
            _ => {}
        }
        if c.state.as_ref().and_then(|s| s.status).is_some_and(|s| s.to_string() == "exited") {
            return Err(Error::new(ErrorKind::VerificationFailed, format!("container {name} exited")));
        }
        if started.elapsed() >= timeout {
            return Err(Error::new(ErrorKind::Timeout, format!("container {name} not ready after {timeout:?}")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
