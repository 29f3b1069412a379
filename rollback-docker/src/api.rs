//! A thin layer over bollard: connection settings, and the calls the targets make,
//! each with its error mapped once.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, ContainerInspectResponse, ContainerSummary, ImageInspect, ImageSummary};
use bollard::query_parameters as q;
use futures::StreamExt;
use rollback_core::{Identity, Result};
use serde::{Deserialize, Serialize};

use crate::error::map;

/// Where the Docker engine is.
///
/// ```
/// use rollback_docker::DockerEndpoint;
/// let endpoint: DockerEndpoint = serde_json::from_str(r#"{"host": "unix:///var/run/docker.sock"}"#).unwrap();
/// assert_eq!(endpoint.host.as_deref(), Some("unix:///var/run/docker.sock"));
/// assert_eq!(DockerEndpoint::default().timeout, std::time::Duration::from_secs(120));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DockerEndpoint {
    /// `unix:///var/run/docker.sock`, `tcp://host:2375`; `DOCKER_HOST` or the local
    /// socket when unset.
    #[serde(default)]
    pub host: Option<String>,
    /// Timeout of each API call.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
}

impl DockerEndpoint {
    /// Whether it is this machine's engine: a unix socket, or the default (`DOCKER_HOST`
    /// unset or a unix socket).
    pub fn is_local(&self) -> bool {
        let host = self.host.clone().or_else(|| std::env::var("DOCKER_HOST").ok()).unwrap_or_default();
        host.is_empty() || host.starts_with("unix://") || host.starts_with('/')
    }
}

fn default_timeout() -> Duration {
    Duration::from_secs(120)
}

impl Default for DockerEndpoint {
    fn default() -> Self {
        DockerEndpoint { host: None, timeout: default_timeout() }
    }
}

/// A connection to one Docker engine.
#[derive(Debug, Clone)]
pub struct DockerApi {
    docker: Docker,
}

impl DockerApi {
    /// Connects (lazily: the first call reaches the engine).
    pub fn connect(endpoint: &DockerEndpoint) -> Result<Self> {
        let host = endpoint.host.as_deref().unwrap_or("");
        let docker = if host.is_empty() { Docker::connect_with_defaults() } else { Docker::connect_with_host(host) }
            .map_err(|e| map("connect", host, e))?;
        Ok(DockerApi { docker: docker.with_timeout(endpoint.timeout) })
    }

    /// The bollard client, for calls this crate does not wrap.
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// The engine's ID: what `identity()` of every target on it starts with.
    pub async fn engine_id(&self) -> Result<Identity> {
        let info = self.docker.info().await.map_err(|e| map("info", "engine", e))?;
        Ok(Identity::new(format!("docker:{}", info.id.unwrap_or_else(|| "unknown".into()))))
    }

    /// Inspects a container by name or ID; `None` when there is none.
    pub async fn container(&self, name: &str) -> Result<Option<ContainerInspectResponse>> {
        match self.docker.inspect_container(name, None::<q::InspectContainerOptions>).await {
            Ok(c) => Ok(Some(c)),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
            Err(e) => Err(map("inspect container", name, e)),
        }
    }

    /// Containers (running or not) carrying every `label=value`.
    pub async fn containers_labelled(&self, labels: &[(&str, &str)]) -> Result<Vec<ContainerSummary>> {
        let filters =
            HashMap::from([("label".to_string(), labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>())]);
        let options = q::ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
        self.docker.list_containers(Some(options)).await.map_err(|e| map("list containers", "labels", e))
    }

    /// Containers (running or not) whose name matches the regular expression `pattern`
    /// (names start with `/`, as the engine reports them).
    pub async fn containers_named(&self, pattern: &str) -> Result<Vec<ContainerSummary>> {
        let filters = HashMap::from([("name".to_string(), vec![pattern.to_string()])]);
        let options = q::ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
        self.docker.list_containers(Some(options)).await.map_err(|e| map("list containers", pattern, e))
    }

    /// Inspects an image by reference or ID; `None` when it is not present.
    pub async fn image(&self, reference: &str) -> Result<Option<ImageInspect>> {
        match self.docker.inspect_image(reference).await {
            Ok(i) => Ok(Some(i)),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
            Err(e) => Err(map("inspect image", reference, e)),
        }
    }

    /// Images whose reference matches `repository` (all its tags).
    pub async fn images_of(&self, repository: &str) -> Result<Vec<ImageSummary>> {
        let filters = HashMap::from([("reference".to_string(), vec![repository.to_string()])]);
        let options = q::ListImagesOptions { filters: Some(filters), ..Default::default() };
        self.docker.list_images(Some(options)).await.map_err(|e| map("list images", repository, e))
    }

    /// Creates a container called `name`.
    pub async fn create(&self, name: &str, body: ContainerCreateBody) -> Result<String> {
        let options = q::CreateContainerOptions { name: Some(name.to_string()), ..Default::default() };
        let created = self.docker.create_container(Some(options), body).await.map_err(|e| map("create", name, e))?;
        Ok(created.id)
    }

    /// Connects a container to a further network.
    pub async fn connect_network(
        &self,
        container: &str,
        network: &str,
        endpoint: bollard::models::EndpointSettings,
    ) -> Result<()> {
        let request = bollard::models::NetworkConnectRequest {
            container: container.to_string(),
            endpoint_config: Some(endpoint),
        };
        self.docker.connect_network(network, request).await.map_err(|e| map("connect network", container, e))
    }

    /// Starts a container (already running is fine).
    pub async fn start(&self, name: &str) -> Result<()> {
        match self.docker.start_container(name, None::<q::StartContainerOptions>).await {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) => Ok(()),
            Err(e) => Err(map("start", name, e)),
        }
    }

    /// Stops a container (already stopped is fine), waiting `grace` before SIGKILL.
    pub async fn stop(&self, name: &str, grace: Option<i64>) -> Result<()> {
        let options = q::StopContainerOptions { t: grace.map(|t| t as i32), ..Default::default() };
        match self.docker.stop_container(name, Some(options)).await {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) => Ok(()),
            Err(e) => Err(map("stop", name, e)),
        }
    }

    /// Renames a container.
    pub async fn rename(&self, name: &str, new_name: &str) -> Result<()> {
        let options = q::RenameContainerOptions { name: new_name.to_string() };
        self.docker.rename_container(name, options).await.map_err(|e| map("rename", name, e))
    }

    /// Removes a container (gone already is fine).
    pub async fn remove(&self, name: &str) -> Result<()> {
        let options = q::RemoveContainerOptions { force: true, ..Default::default() };
        match self.docker.remove_container(name, Some(options)).await {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(e) => Err(map("remove", name, e)),
        }
    }

    /// The last `lines` lines of a container's stdout and stderr.
    pub async fn log_tail(&self, name: &str, lines: usize) -> Result<String> {
        let options = q::LogsOptions {
            stdout: true,
            stderr: true,
            timestamps: true,
            tail: lines.to_string(),
            ..Default::default()
        };
        let mut stream = self.docker.logs(name, Some(options));
        let mut text = String::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| map("logs", name, e))?;
            text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
        Ok(text)
    }
}
