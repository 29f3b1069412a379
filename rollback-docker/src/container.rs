//! [`ContainerTarget`]: a container, or a compose service's container, rolled back by
//! recreating it with an earlier image and the same configuration.

use std::time::Duration;

use async_trait::async_trait;
use bollard::models::{ContainerInspectResponse, ContainerSummary};
use rollback_core::target::{Capabilities, Observed, Request};
use rollback_core::{
    Category, Change, DataLoss, Error, IdempotencyKey, Identity, Result, Reversibility, Revision, Selector, Target,
    TargetId, Version,
};
use serde::Deserialize;

use crate::api::{DockerApi, DockerEndpoint};
use crate::images::{self, repository_of, version_of};
use crate::recreate::{Order, Recreate};
use crate::select::{ComposeService, Locator};

/// Configuration of a [`ContainerTarget`] (kind `docker-container`).
///
/// ```
/// use rollback_docker::ContainerTargetConfig;
/// let config: ContainerTargetConfig = toml::from_str(r#"
///     compose = { project = "shop", service = "api" }
///     order = "start_first"
///     start_timeout = "90s"
/// "#).unwrap();
/// assert_eq!(config.compose.unwrap().service, "api");
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContainerTargetConfig {
    /// The engine (the local socket by default).
    #[serde(default)]
    pub docker: DockerEndpoint,
    /// The container's name.
    #[serde(default)]
    pub container: Option<String>,
    /// Or the compose service.
    #[serde(default)]
    pub compose: Option<ComposeService>,
    /// Where the history's images come from (the repository of the container's
    /// image reference by default).
    #[serde(default)]
    pub repository: Option<String>,
    /// Stop-first (default) or start-first.
    #[serde(default)]
    pub order: Order,
    /// Keep the old container, stopped and renamed `<name>_rb_old_<h>` (default: yes
    /// for plain containers; no for compose services, as compose itself does, since
    /// compose counts every container with the service's labels).
    #[serde(default)]
    pub retain_old: Option<bool>,
    /// Time between SIGTERM and SIGKILL (the container's own setting by default).
    #[serde(default, with = "humantime_serde::option")]
    #[schemars(with = "Option<String>")]
    pub stop_grace: Option<Duration>,
    /// How long start-first waits for the replacement to run and be healthy.
    #[serde(default = "default_start_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub start_timeout: Duration,
}

fn default_start_timeout() -> Duration {
    Duration::from_secs(60)
}

impl ContainerTargetConfig {
    /// A config for the container called `name`, other settings default.
    pub fn container(name: &str) -> Self {
        ContainerTargetConfig {
            docker: DockerEndpoint::default(),
            container: Some(name.to_string()),
            compose: None,
            repository: None,
            order: Order::default(),
            retain_old: None,
            stop_grace: None,
            start_timeout: default_start_timeout(),
        }
    }

    /// A config for a compose service, other settings default.
    pub fn compose(project: &str, service: &str) -> Self {
        ContainerTargetConfig {
            container: None,
            compose: Some(ComposeService { project: project.into(), service: service.into() }),
            ..Self::container("unused")
        }
    }
}

/// A container rolled back to an earlier image (kind `docker-container`).
///
/// Versions are image IDs (tags move), labelled with a tag. History: the images of
/// the container's repository present on the engine and those of retained old
/// containers, newest first. `apply` recreates the container as compose does —
/// stop, rename the old one aside, create with the same configuration and the
/// prepared image ID, start — stamping the idempotency key in a label so `observe`
/// can tell every phase after a crash, and finishing from any of them.
pub struct ContainerTarget {
    name: TargetId,
    api: DockerApi,
    locator: Locator,
    config: ContainerTargetConfig,
    stop_after: Option<String>,
}

impl std::fmt::Debug for ContainerTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerTarget").field("name", &self.name).field("locator", &self.locator).finish()
    }
}

impl ContainerTarget {
    /// Checks the configuration and connects (lazily).
    pub fn new(name: &str, config: ContainerTargetConfig) -> Result<Self> {
        let locator = Locator::from_config(name, &config.container, &config.compose)?;
        let api = DockerApi::connect(&config.docker)?;
        Ok(ContainerTarget { name: TargetId::new(name), api, locator, config, stop_after: None })
    }

    /// Test hook: `apply` stops with an error after the named phase, leaving the
    /// engine as a crash there would: `old-stopped`, `old-renamed`, `created` (stop-first)
    /// or `started-beside`, `old-renamed` (start-first). Feature `testkit` only.
    #[cfg(feature = "testkit")]
    pub fn stop_after_phase(mut self, phase: &str) -> Self {
        self.stop_after = Some(phase.to_string());
        self
    }

    fn repository(&self, container: &ContainerInspectResponse) -> Result<String> {
        if let Some(repository) = &self.config.repository {
            return Ok(repository.clone());
        }
        let reference = container.config.as_ref().and_then(|c| c.image.clone()).unwrap_or_default();
        if reference.is_empty() || reference.starts_with("sha256:") {
            return Err(Error::invalid_input(format!(
                "{}: the container's image is referenced by ID; set `repository` to say where its history is",
                self.name
            )));
        }
        Ok(repository_of(&reference).to_string())
    }

    async fn retained(&self, container: &str) -> Result<Vec<ContainerSummary>> {
        self.api.containers_named(&format!("^/{}_rb_old_", regex_escape(container))).await
    }

    async fn version(&self, image_id: &str, repository: &str) -> Result<Version> {
        let tags = self.api.image(image_id).await?.and_then(|i| i.repo_tags).unwrap_or_default();
        Ok(version_of(image_id, &tags, repository))
    }

    /// `Exact("app:v1")` names an image by tag: resolve the tag to the image's ID
    /// once, here, and refuse an image that is not on the engine.
    async fn normalize(&self, selector: &Selector, history: &[Revision]) -> Result<Selector> {
        let Selector::Exact(reference) = selector else { return Ok(selector.clone()) };
        if history.iter().any(|r| r.version.matches(reference)) {
            return Ok(selector.clone());
        }
        match self.api.image(reference).await? {
            Some(image) => Ok(Selector::Exact(image.id.unwrap_or_else(|| reference.clone()))),
            None => Err(Error::not_found(format!(
                "image {reference} is not on this docker engine (pruned?); pull it first (`docker pull {reference}`)"
            ))
            .with_context("target", &self.name)),
        }
    }

    fn recreate(&self, change: &Change) -> Result<Recreate> {
        serde_json::from_value(change.payload.clone())
            .map_err(|e| Error::invalid_input(format!("{}: not a docker-container change: {e}", self.name)))
    }
}

fn regex_escape(text: &str) -> String {
    text.chars().map(|c| if c == '.' { "\\.".to_string() } else { c.to_string() }).collect()
}

fn short(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    &id[..id.len().min(12)]
}

#[async_trait]
impl Target for ContainerTarget {
    fn name(&self) -> &TargetId {
        &self.name
    }

    /// On the local socket (the default), the engine is this machine's.
    fn host_local(&self) -> bool {
        self.config.docker.is_local()
    }

    fn kind(&self) -> &str {
        <Self as rollback_core::kind::Kind>::KIND
    }

    fn category(&self) -> Category {
        Category::App
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { versioned: true, converges_from_partial: true }
    }

    async fn identity(&self) -> Result<Identity> {
        Ok(Identity::new(format!("{}/{}", self.api.engine_id().await?, self.locator.describe())))
    }

    async fn current(&self) -> Result<Version> {
        let container = self.locator.one(&self.api).await?;
        let image = container.image.clone().unwrap_or_default();
        self.version(&image, &self.repository(&container)?).await
    }

    async fn history(&self) -> Result<Vec<Revision>> {
        let container = self.locator.one(&self.api).await?;
        let name = container.name.as_deref().unwrap_or_default().trim_start_matches('/').to_string();
        let retained = self.retained(&name).await?;
        images::history(&self.api, &self.repository(&container)?, &retained).await
    }

    async fn prepare(&self, request: &Request) -> Result<Change> {
        let Request::To(selector) = request else {
            return Err(Error::invalid_input(format!(
                "{}: docker-container has no actions; use docker-traffic",
                self.name
            )));
        };
        let container = self.locator.one(&self.api).await?;
        let container_name = container.name.as_deref().unwrap_or_default().trim_start_matches('/').to_string();
        let repository = self.repository(&container)?;
        let current = self.version(container.image.as_deref().unwrap_or_default(), &repository).await?;
        let history = images::history(&self.api, &repository, &self.retained(&container_name).await?).await?;
        let selector = self.normalize(selector, &history).await?;
        let to = selector.resolve(&history, &current)?.version.clone();
        if to.id == current.id {
            let message = format!("{selector} resolves to the current image {current}");
            return Err(if selector.is_relative() {
                Error::invalid_input(message)
            } else {
                Error::already_done(message)
            });
        }
        let retain_old = self.config.retain_old.unwrap_or(matches!(self.locator, Locator::Container(_)));
        let recreate = Recreate {
            container: container_name.clone(),
            replaces: container.id.clone(),
            order: self.config.order,
            was_running: crate::recreate::is_running(&container),
            retain_old,
            stop_grace: self.config.stop_grace.map(|d| d.as_secs() as i64),
            start_timeout_secs: self.config.start_timeout.as_secs(),
        };
        let description = format!(
            "{}: recreate container {container_name} ({}) with {} instead of {}, {}",
            self.name,
            short(container.id.as_deref().unwrap_or_default()),
            to,
            current,
            match self.config.order {
                Order::StopFirst => "stop-first",
                Order::StartFirst => "start-first",
            }
        );
        let payload = serde_json::to_value(&recreate).map_err(|e| Error::internal(e.to_string()))?;
        Ok(Change::new(self.name.clone(), self.kind(), Some(current), to)
            .describe(description)
            .with_payload(payload)
            .with_reversibility(Reversibility::Inverse)
            .with_data_loss(DataLoss::none()))
    }

    async fn apply(&self, change: &Change, key: &IdempotencyKey) -> Result<()> {
        self.recreate(change)?
            .apply(&self.api, change, key, self.stop_after.as_deref())
            .await
            .map_err(|e| e.with_context("target", &self.name))
    }

    async fn observe(&self, change: &Change, key: &IdempotencyKey) -> Result<Observed> {
        self.recreate(change)?.observe(&self.api, change, key).await
    }

    /// Back to the image the container ran before: a recreate that expects whichever
    /// container now runs `change.to` under the same name.
    fn inverse(&self, change: &Change) -> Result<Change> {
        let mut recreate = self.recreate(change)?;
        recreate.replaces = None;
        let mut inverse = change.swapped().ok_or_else(|| Error::unsupported("inverse"))?;
        inverse.payload = serde_json::to_value(&recreate).map_err(|e| Error::internal(e.to_string()))?;
        inverse.reversibility = Reversibility::Inverse;
        Ok(inverse)
    }
}
