//! [`ServiceTraffic`]: stop a service's containers and start them again (runbook 002
//! stops the API while its database is rolled back).

use async_trait::async_trait;
use rollback_core::target::{Capabilities, Observed, Request};
use rollback_core::{
    Category, Change, DataLoss, Error, IdempotencyKey, Identity, Result, Reversibility, Target, TargetId, Version,
};
use serde::{Deserialize, Serialize};

use crate::api::{DockerApi, DockerEndpoint};
use crate::recreate::is_running;
use crate::select::{ComposeService, Locator};

/// Configuration of a [`ServiceTraffic`] target (kind `docker-traffic`).
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceTrafficConfig {
    /// The engine (the local socket by default).
    #[serde(default)]
    pub docker: DockerEndpoint,
    /// The container's name.
    #[serde(default)]
    pub container: Option<String>,
    /// Or the compose service (all its containers).
    #[serde(default)]
    pub compose: Option<ComposeService>,
    /// Seconds between SIGTERM and SIGKILL (the container's own setting by default).
    #[serde(default)]
    pub stop_grace_secs: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Containers {
    containers: Vec<String>,
}

const RUNNING: &str = "running";
const STOPPED: &str = "stopped";

/// Actions `stop` and `start` on a container or every container of a compose service
/// (kind `docker-traffic`, category traffic: undone by its inverse by default).
///
/// The containers are resolved once, in `prepare`. Stopping what is already stopped
/// is done, not a conflict: the state asked for is the state seen.
pub struct ServiceTraffic {
    name: TargetId,
    api: DockerApi,
    locator: Locator,
    config: ServiceTrafficConfig,
}

impl std::fmt::Debug for ServiceTraffic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceTraffic").field("name", &self.name).field("locator", &self.locator).finish()
    }
}

impl ServiceTraffic {
    /// Checks the configuration and connects (lazily).
    pub fn new(name: &str, config: ServiceTrafficConfig) -> Result<Self> {
        let locator = Locator::from_config(name, &config.container, &config.compose)?;
        let api = DockerApi::connect(&config.docker)?;
        Ok(ServiceTraffic { name: TargetId::new(name), api, locator, config })
    }

    fn containers(&self, change: &Change) -> Result<Vec<String>> {
        serde_json::from_value::<Containers>(change.payload.clone())
            .map(|c| c.containers)
            .map_err(|e| Error::invalid_input(format!("{}: not a docker-traffic change: {e}", self.name)))
    }

    /// `running` / `stopped` for each container, in order.
    async fn states(&self, containers: &[String]) -> Result<Vec<&'static str>> {
        let mut states = Vec::with_capacity(containers.len());
        for name in containers {
            let c = self.api.container(name).await?.ok_or_else(|| {
                Error::new(rollback_core::ErrorKind::Diverged, format!("container {name} no longer exists"))
            })?;
            states.push(if is_running(&c) { RUNNING } else { STOPPED });
        }
        Ok(states)
    }
}

#[async_trait]
impl Target for ServiceTraffic {
    fn name(&self) -> &TargetId {
        &self.name
    }

    fn kind(&self) -> &str {
        <Self as rollback_core::kind::Kind>::KIND
    }

    fn category(&self) -> Category {
        Category::Traffic
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { versioned: false, converges_from_partial: true }
    }

    async fn identity(&self) -> Result<Identity> {
        Ok(Identity::new(format!("{}/{}", self.api.engine_id().await?, self.locator.describe())))
    }

    async fn prepare(&self, request: &Request) -> Result<Change> {
        let to = match request {
            Request::Action { action, .. } if action == "stop" => STOPPED,
            Request::Action { action, .. } if action == "start" => RUNNING,
            other => {
                return Err(Error::invalid_input(format!(
                    "{}: docker-traffic does `stop` and `start`, not {other}",
                    self.name
                )));
            }
        };
        let containers = self.locator.names(&self.api).await?;
        let states = self.states(&containers).await?;
        let from = if states.iter().all(|s| *s == RUNNING) {
            RUNNING
        } else if states.iter().all(|s| *s == STOPPED) {
            STOPPED
        } else {
            "mixed"
        };
        let verb = if to == STOPPED { "stop" } else { "start" };
        let payload = serde_json::to_value(Containers { containers: containers.clone() })
            .map_err(|e| Error::internal(e.to_string()))?;
        Ok(Change::new(self.name.clone(), self.kind(), Some(Version::new(from)), Version::new(to))
            .describe(format!("{}: {verb} {} ({})", self.name, self.locator.describe(), containers.join(", ")))
            .with_payload(payload)
            .with_reversibility(if from == "mixed" { Reversibility::Irreversible } else { Reversibility::Inverse })
            .with_data_loss(DataLoss::none()))
    }

    async fn apply(&self, change: &Change, key: &IdempotencyKey) -> Result<()> {
        if !self.observe(change, key).await?.proceed(change)? {
            return Ok(());
        }
        let stop = change.to.id == STOPPED;
        for name in self.containers(change)? {
            tracing::info!(target_name = %self.name, container = %name, action = if stop { "stop" } else { "start" });
            if stop {
                self.api.stop(&name, self.config.stop_grace_secs).await?;
            } else {
                self.api.start(&name).await?;
            }
        }
        Ok(())
    }

    async fn observe(&self, change: &Change, _key: &IdempotencyKey) -> Result<Observed> {
        let containers = self.containers(change)?;
        let states = self.states(&containers).await?;
        let done = states.iter().filter(|s| **s == change.to.id).count();
        Ok(if done == states.len() {
            Observed::Done
        } else if done == 0 {
            Observed::NotStarted
        } else {
            Observed::Partial(format!("{done} of {} containers {}", states.len(), change.to.id))
        })
    }
}
