//! [`ContainerSnapshot`]: evidence before a rollback — `docker inspect` with every
//! environment value redacted, the last log lines, and the compose file and `.env`
//! with secret values redacted — into the artifact store.

use std::path::PathBuf;

use async_trait::async_trait;
use rollback_core::local::{redact_args_json, redact_env};
use rollback_core::{ArtifactStore, Error, IdempotencyKey, Result, Snapshot, SnapshotRef};
use serde::Deserialize;

use crate::api::{DockerApi, DockerEndpoint};
use crate::select::{ComposeService, Locator};

/// Configuration of a [`ContainerSnapshot`] (kind `docker-evidence`).
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContainerSnapshotConfig {
    /// The engine (the local socket by default).
    #[serde(default)]
    pub docker: DockerEndpoint,
    /// The container's name.
    #[serde(default)]
    pub container: Option<String>,
    /// Or the compose service (every container).
    #[serde(default)]
    pub compose: Option<ComposeService>,
    /// How many log lines per container.
    #[serde(default = "default_log_lines")]
    pub log_lines: usize,
    /// The compose file to keep a copy of.
    #[serde(default)]
    pub compose_file: Option<PathBuf>,
    /// The `.env` file to keep a copy of (secret-looking values and URL passwords redacted).
    #[serde(default)]
    pub env_file: Option<PathBuf>,
}

fn default_log_lines() -> usize {
    500
}

/// Captures evidence of containers' state. Capture only; nothing to restore.
pub struct ContainerSnapshot {
    name: String,
    api: DockerApi,
    locator: Locator,
    config: ContainerSnapshotConfig,
}

impl std::fmt::Debug for ContainerSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerSnapshot").field("name", &self.name).field("locator", &self.locator).finish()
    }
}

/// Replaces every environment value in an inspect document with `***`, and secrets
/// on command lines (`Config.Cmd`, `Config.Entrypoint`, `Args`, the healthcheck's
/// `Test`) as core's [`redact_args_json`] does.
fn redact_inspect(mut inspect: serde_json::Value) -> serde_json::Value {
    for pointer in ["/Config/Cmd", "/Config/Entrypoint", "/Args", "/Config/Healthcheck/Test"] {
        if let Some(args) = inspect.pointer_mut(pointer) {
            redact_args_json(args);
        }
    }
    if let Some(env) = inspect.pointer_mut("/Config/Env").and_then(|e| e.as_array_mut()) {
        for entry in env.iter_mut() {
            if let Some(text) = entry.as_str() {
                let key = text.split_once('=').map_or(text, |(k, _)| k);
                *entry = serde_json::Value::String(format!("{key}=***"));
            }
        }
    }
    inspect
}

impl ContainerSnapshot {
    /// Checks the configuration and connects (lazily).
    pub fn new(name: &str, config: ContainerSnapshotConfig) -> Result<Self> {
        let locator = Locator::from_config(name, &config.container, &config.compose)?;
        Ok(ContainerSnapshot { name: name.to_string(), api: DockerApi::connect(&config.docker)?, locator, config })
    }
}

#[async_trait]
impl Snapshot for ContainerSnapshot {
    fn name(&self) -> &str {
        &self.name
    }

    async fn capture(&self, store: &dyn ArtifactStore, key: &IdempotencyKey) -> Result<SnapshotRef> {
        let prefix = format!("{}/{}", self.name, key.as_str().replace('/', "_"));
        let mut artifacts = Vec::new();
        for container in self.locator.names(&self.api).await? {
            let inspect = self
                .api
                .container(&container)
                .await?
                .ok_or_else(|| Error::not_found(format!("container {container} vanished during the snapshot")))?;
            let json = serde_json::to_value(&inspect).map_err(|e| Error::internal(e.to_string()))?;
            let redacted =
                serde_json::to_vec_pretty(&redact_inspect(json)).map_err(|e| Error::internal(e.to_string()))?;
            let key = format!("{prefix}/{container}.inspect.json");
            store.put(&key, redacted).await?;
            artifacts.push(key);
            let logs = self.api.log_tail(&container, self.config.log_lines).await?;
            let key = format!("{prefix}/{container}.log");
            store.put(&key, logs.into_bytes()).await?;
            artifacts.push(key);
        }
        for (path, label) in [(&self.config.compose_file, "compose"), (&self.config.env_file, "env")] {
            let Some(path) = path else { continue };
            let text = std::fs::read_to_string(path).map_err(|e| Error::from(e).with_context(label, path.display()))?;
            let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| label.into());
            let key = format!("{prefix}/{file_name}");
            store.put(&key, redact_env(&text).into_bytes()).await?;
            artifacts.push(key);
        }
        Ok(SnapshotRef {
            snapshot: self.name.clone(),
            description: format!(
                "{}: inspect (env redacted), last {} log lines",
                self.locator.describe(),
                self.config.log_lines
            ),
            artifacts,
            taken_at: chrono::Utc::now(),
            metadata: serde_json::Value::Null,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_env_value_is_redacted() {
        let doc = serde_json::json!({"Config": {"Env": ["DB_URL=postgres://u:hunter2@db/app", "MODE=prod", "FLAG"]}});
        let out = redact_inspect(doc).to_string();
        assert!(!out.contains("hunter2") && !out.contains("prod"), "{out}");
        assert!(out.contains("DB_URL=***") && out.contains("FLAG=***"));
    }

    #[test]
    fn command_line_secrets_are_redacted() {
        let doc = serde_json::json!({
            "Args": ["--token", "hunter2", "--port", "80"],
            "Config": {"Cmd": ["serve", "--db-password=hunter2"], "Entrypoint": ["/app", "--dsn=postgres://u:hunter2@db/x"],
                "Healthcheck": {"Test": ["CMD-SHELL", "curl -H 'Authorization: Bearer hunter2' localhost"]}},
        });
        let out = redact_inspect(doc);
        assert!(!out.to_string().contains("hunter2"), "{out}");
        assert_eq!(out["Args"], serde_json::json!(["--token", "***", "--port", "80"]));
        assert_eq!(out["Config"]["Cmd"], serde_json::json!(["serve", "--db-password=***"]));
    }
}
