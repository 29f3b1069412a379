//! [`ContainerHealth`]: a verifier reading the engine's health status of a container.

use async_trait::async_trait;
use bollard::models::HealthStatusEnum;
use rollback_core::{Check, Outcome, Result, Verifier};
use serde::Deserialize;

use crate::api::{DockerApi, DockerEndpoint};
use crate::recreate::is_running;
use crate::select::{ComposeService, Locator};

/// Configuration of a [`ContainerHealth`] verifier (kind `docker-health`).
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContainerHealthConfig {
    /// The engine (the local socket by default).
    #[serde(default)]
    pub docker: DockerEndpoint,
    /// The container's name.
    #[serde(default)]
    pub container: Option<String>,
    /// Or the compose service (every container must pass).
    #[serde(default)]
    pub compose: Option<ComposeService>,
}

/// Passes when every container meant is healthy — or running, when its image has no
/// healthcheck; fails when one is unhealthy, exited or gone; inconclusive while a
/// healthcheck is still starting. Run it under a probe policy (N consecutive passes).
pub struct ContainerHealth {
    name: String,
    api: DockerApi,
    locator: Locator,
}

impl std::fmt::Debug for ContainerHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerHealth").field("name", &self.name).field("locator", &self.locator).finish()
    }
}

impl ContainerHealth {
    /// Checks the configuration and connects (lazily).
    pub fn new(name: &str, config: ContainerHealthConfig) -> Result<Self> {
        let locator = Locator::from_config(name, &config.container, &config.compose)?;
        Ok(ContainerHealth { name: name.to_string(), api: DockerApi::connect(&config.docker)?, locator })
    }
}

#[async_trait]
impl Verifier for ContainerHealth {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self) -> Result<Check> {
        let names = match self.locator.names(&self.api).await {
            Ok(names) => names,
            Err(e) if e.kind() == rollback_core::ErrorKind::NotFound => {
                return Ok(Check::new(Outcome::Fail, e.message().to_string()));
            }
            Err(e) => return Err(e),
        };
        let mut details = Vec::new();
        let mut outcome = Outcome::Pass;
        for name in &names {
            let Some(c) = self.api.container(name).await? else {
                return Ok(Check::new(Outcome::Fail, format!("{name} is gone")));
            };
            let health = c.state.as_ref().and_then(|s| s.health.as_ref()).and_then(|h| h.status);
            let (this, what) = match health {
                Some(HealthStatusEnum::HEALTHY) => (Outcome::Pass, "healthy"),
                Some(HealthStatusEnum::UNHEALTHY) => (Outcome::Fail, "unhealthy"),
                Some(HealthStatusEnum::STARTING) if is_running(&c) => (Outcome::Inconclusive, "starting"),
                _ if is_running(&c) => (Outcome::Pass, "running (no healthcheck)"),
                _ => (Outcome::Fail, "not running"),
            };
            details.push(format!("{name}: {what}"));
            outcome = match (outcome, this) {
                (Outcome::Fail, _) | (_, Outcome::Fail) => Outcome::Fail,
                (Outcome::Inconclusive, _) | (_, Outcome::Inconclusive) => Outcome::Inconclusive,
                _ => Outcome::Pass,
            };
        }
        Ok(Check::new(outcome, details.join("; ")))
    }
}
