//! [`ComposeFiles`]: runbook 002's emergency rollback as one step — put the previous
//! compose file and `.env` back from their timestamped backups and converge the
//! project with the compose CLI.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use rollback_core::local::{ConfigFile, ConfigFileConfig};
use rollback_core::process::{Invocation, run};
use rollback_core::target::{Capabilities, Observed, Request};
use rollback_core::{
    Category, Change, DataLoss, Error, ErrorKind, IdempotencyKey, Identity, Result, Reversibility, Revision, Selector,
    Target, TargetId, Version,
};
use serde::{Deserialize, Serialize};

use crate::api::{DockerApi, DockerEndpoint};

/// Configuration of [`ComposeFiles`] (kind `docker-compose-files`).
///
/// ```
/// use rollback_docker::ComposeFilesConfig;
/// let config: ComposeFilesConfig = toml::from_str(r#"
///     compose_file = "/srv/app/docker-compose.prod.yml"
///     env_file = "/srv/app/.env.production"
///     backups_dir = "/opt/app/backups/deployments"
///     project = "corporate-intel"
/// "#).unwrap();
/// assert_eq!(config.project.as_deref(), Some("corporate-intel"));
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ComposeFilesConfig {
    /// The engine the project runs on (the local socket by default).
    #[serde(default)]
    pub docker: DockerEndpoint,
    /// The live compose file; backups are `<file>.<YYYY-MM-DD-HHMMSS>`.
    pub compose_file: PathBuf,
    /// The live env file, restored from the backup of the same moment (or the newest
    /// one before it) and passed as `--env-file`.
    #[serde(default)]
    pub env_file: Option<PathBuf>,
    /// Where the backups are (beside the live files by default).
    #[serde(default)]
    pub backups_dir: Option<PathBuf>,
    /// The compose project name (compose's default, the directory's name, otherwise).
    #[serde(default)]
    pub project: Option<String>,
    /// The compose command, e.g. `["docker", "compose"]`; by default `docker compose`
    /// when the plugin is installed, else `docker-compose`.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Timeout of each compose command.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(300)
}

/// The journaled part: the two file changes, resolved once.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Payload {
    compose: Change,
    env: Option<Change>,
}

/// Restores a compose file (and its `.env`) from timestamped backups and converges
/// the project (`up -d --remove-orphans`), kind `docker-compose-files`.
///
/// Each file is a core [`ConfigFile`] (validated before it goes live — the compose
/// file with `compose config -q` — swapped atomically, the replaced file kept as
/// evidence). `observe` is Done when both files are the prepared ones and every
/// running service's `com.docker.compose.config-hash` label equals what
/// `compose config --hash` computes: the engine shows the converge, not a memory of it.
pub struct ComposeFiles {
    name: TargetId,
    config: ComposeFilesConfig,
    compose: ConfigFile,
    env: Option<ConfigFile>,
    api: DockerApi,
}

impl std::fmt::Debug for ComposeFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComposeFiles")
            .field("name", &self.name)
            .field("compose_file", &self.config.compose_file)
            .finish()
    }
}

/// `docker compose` when the plugin answers, else `docker-compose`.
fn detect_command() -> Vec<String> {
    let plugin = std::process::Command::new("docker")
        .args(["compose", "version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    if plugin.is_ok_and(|s| s.success()) {
        vec!["docker".into(), "compose".into()]
    } else {
        vec!["docker-compose".into()]
    }
}

/// Compose v1's default project name: the directory's name, lowercased, alphanumerics only.
fn default_project(compose_file: &Path) -> String {
    let dir = compose_file.parent().and_then(|d| d.file_name()).map(|n| n.to_string_lossy().into_owned());
    dir.unwrap_or_default().to_lowercase().chars().filter(|c| c.is_ascii_alphanumeric()).collect()
}

impl ComposeFiles {
    /// Checks the configuration.
    pub fn new(name: &str, mut config: ComposeFilesConfig) -> Result<Self> {
        let mut validate = config.command.get_or_insert_with(detect_command).clone();
        validate.extend(["-f", "{}", "config", "-q"].map(String::from));
        let file = |path: &PathBuf, validate: Option<Vec<String>>| {
            ConfigFile::new(
                name,
                ConfigFileConfig {
                    path: path.clone(),
                    backups_dir: config.backups_dir.clone(),
                    validate,
                    reload: None,
                    timeout: config.timeout,
                },
            )
        };
        let compose = file(&config.compose_file, Some(validate))?;
        let env = config.env_file.as_ref().map(|p| file(p, None)).transpose()?;
        let api = DockerApi::connect(&config.docker)?;
        Ok(ComposeFiles { name: TargetId::new(name), config, compose, env, api })
    }

    fn project(&self) -> String {
        self.config.project.clone().unwrap_or_else(|| default_project(&self.config.compose_file))
    }

    async fn compose(&self, what: &str, args: &[&str]) -> Result<String> {
        // `new` filled the command in (configured or detected).
        let mut argv = self.config.command.clone().unwrap_or_default();
        argv.extend(["-f".to_string(), self.config.compose_file.display().to_string()]);
        argv.extend(["-p".to_string(), self.project()]);
        if let Some(env) = &self.config.env_file {
            argv.extend(["--env-file".to_string(), env.display().to_string()]);
        }
        argv.extend(args.iter().map(|a| a.to_string()));
        let dir = self.config.compose_file.parent().filter(|d| !d.as_os_str().is_empty());
        let host = self.config.docker.host.clone().unwrap_or_default();
        let env: Vec<(&str, &str)> = if host.is_empty() { vec![] } else { vec![("DOCKER_HOST", host.as_str())] };
        let out = run(Invocation { dir, env: &env, ..Invocation::new(what, &argv, self.config.timeout) }).await?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Services whose running containers do not match the live files' config hash.
    async fn unconverged(&self) -> Result<Vec<String>> {
        let hashes = self.compose("compose config --hash", &["config", "--hash=*"]).await?;
        let project = self.project();
        let mut behind = Vec::new();
        for line in hashes.lines() {
            let Some((service, hash)) = line.trim().split_once(' ') else { continue };
            let containers = self
                .api
                .containers_labelled(&[
                    ("com.docker.compose.project", &project),
                    ("com.docker.compose.service", service),
                ])
                .await?;
            let ok = !containers.is_empty()
                && containers.iter().all(|c| {
                    c.state.as_ref().is_some_and(|s| s.to_string() == "running")
                        && c.labels.as_ref().and_then(|l| l.get("com.docker.compose.config-hash")).map(String::as_str)
                            == Some(hash.trim())
                })
                && !containers.iter().any(|c| c.names.iter().flatten().any(|n| crate::select::is_side_name(n)));
            if !ok {
                behind.push(service.to_string());
            }
        }
        Ok(behind)
    }

    fn payload(&self, change: &Change) -> Result<Payload> {
        serde_json::from_value(change.payload.clone())
            .map_err(|e| Error::invalid_input(format!("{}: not a docker-compose-files change: {e}", self.name)))
    }

    fn sub_key(key: &IdempotencyKey, part: &str) -> IdempotencyKey {
        IdempotencyKey::new(format!("{}/{part}", key.as_str()))
    }

    /// The env backup that belongs with a compose backup: the newest one not newer.
    fn env_selector(compose: &Revision, env_history: &[Revision]) -> Result<Selector> {
        let at = compose.created;
        env_history
            .iter()
            .skip(1) // the live file
            .find(|r| r.created.is_some() && r.created <= at)
            .map(|r| Selector::Exact(r.version.label.clone().unwrap_or_else(|| r.version.id.clone())))
            .ok_or_else(|| Error::not_found(format!("no env backup from {} or before", compose.version)))
    }
}

#[async_trait]
impl Target for ComposeFiles {
    fn name(&self) -> &TargetId {
        &self.name
    }

    fn host_local(&self) -> bool {
        true
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
        Ok(Identity::new(format!(
            "{}/compose-project:{}/{}",
            self.api.engine_id().await?,
            self.project(),
            self.compose.identity().await?
        )))
    }

    async fn current(&self) -> Result<Version> {
        self.compose.current().await
    }

    async fn history(&self) -> Result<Vec<Revision>> {
        self.compose.history().await
    }

    async fn prepare(&self, request: &Request) -> Result<Change> {
        let compose = self.compose.prepare(request).await?;
        let env = match &self.env {
            Some(env_file) => {
                let history = self.compose.history().await?;
                let chosen =
                    history.iter().find(|r| r.version.id == compose.to.id && r.version.label == compose.to.label);
                let chosen = chosen.ok_or_else(|| Error::internal("the chosen compose backup left the history"))?;
                let selector = Self::env_selector(chosen, &env_file.history().await?)?;
                match env_file.prepare(&Request::To(selector)).await {
                    Ok(change) => Some(change),
                    // The env backup has the live content already: nothing to restore.
                    Err(e) if e.kind() == ErrorKind::AlreadyDone => None,
                    Err(e) => return Err(e),
                }
            }
            None => None,
        };
        let mut description = format!(
            "{}: restore {} from {}",
            self.name,
            self.config.compose_file.display(),
            compose.to.label.clone().unwrap_or_default()
        );
        if let Some(env) = &env {
            description.push_str(&format!(" and {} from {}", env.target, env.to.label.clone().unwrap_or_default()));
        }
        description.push_str(&format!(", then converge project {} (up -d)", self.project()));
        let payload = serde_json::to_value(Payload { compose: compose.clone(), env })
            .map_err(|e| Error::internal(e.to_string()))?;
        Ok(Change::new(self.name.clone(), self.kind(), compose.from.clone(), compose.to.clone())
            .describe(description)
            .with_payload(payload)
            .with_reversibility(Reversibility::Inverse)
            .with_data_loss(DataLoss::none()))
    }

    async fn apply(&self, change: &Change, key: &IdempotencyKey) -> Result<()> {
        let observed = self.observe(change, key).await?;
        if !observed.proceed(change)? {
            return Ok(());
        }
        let payload = self.payload(change)?;
        self.compose.apply(&payload.compose, &Self::sub_key(key, "compose")).await?;
        if let (Some(env_file), Some(env)) = (&self.env, &payload.env) {
            env_file.apply(env, &Self::sub_key(key, "env")).await?;
        }
        tracing::info!(target_name = %self.name, project = %self.project(), "converging the compose project");
        self.compose("compose up", &["up", "-d", "--remove-orphans"]).await?;
        Ok(())
    }

    async fn observe(&self, change: &Change, key: &IdempotencyKey) -> Result<Observed> {
        let payload = self.payload(change)?;
        let compose = self.compose.observe(&payload.compose, &Self::sub_key(key, "compose")).await?;
        let env = match (&self.env, &payload.env) {
            (Some(env_file), Some(env)) => env_file.observe(env, &Self::sub_key(key, "env")).await?,
            _ => Observed::Done,
        };
        Ok(match (compose, env) {
            (Observed::Diverged(d), _) => Observed::Diverged(format!("compose file: {d}")),
            (_, Observed::Diverged(d)) => Observed::Diverged(format!("env file: {d}")),
            (Observed::NotStarted, Observed::NotStarted) => Observed::NotStarted,
            (Observed::NotStarted, Observed::Done) if payload.env.is_none() => Observed::NotStarted,
            (Observed::Done, Observed::Done) => {
                let behind = self.unconverged().await?;
                if behind.is_empty() {
                    Observed::Done
                } else {
                    Observed::Partial(format!("files restored; services not converged yet: {}", behind.join(", ")))
                }
            }
            (c, e) => Observed::Partial(format!("compose file {c:?}, env file {e:?}")),
        })
    }

    fn inverse(&self, change: &Change) -> Result<Change> {
        let payload = self.payload(change)?;
        let compose = self.compose.inverse(&payload.compose)?;
        let env = match (&self.env, &payload.env) {
            (Some(env_file), Some(env)) => Some(env_file.inverse(env)?),
            _ => None,
        };
        let payload = serde_json::to_value(Payload { compose: compose.clone(), env })
            .map_err(|e| Error::internal(e.to_string()))?;
        Ok(Change::new(self.name.clone(), self.kind(), compose.from.clone(), compose.to.clone())
            .describe(format!("{}: put back the replaced compose files and converge", self.name))
            .with_payload(payload)
            .with_reversibility(Reversibility::Inverse))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_defaults_to_the_directory_name_as_compose_v1_does() {
        assert_eq!(default_project(Path::new("/srv/Corporate-Intel/docker-compose.yml")), "corporateintel");
    }

    #[test]
    fn the_env_backup_of_the_same_moment_or_before() {
        let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let rev = |label: &str, t: &str| Revision::new(Version::labeled(label, label), "").created_at(at(t));
        let compose = rev("docker-compose.yml.2025-10-16-180000", "2025-10-16T18:00:00Z");
        let env = vec![
            rev("live", "2025-10-17T12:00:00Z"),
            rev(".env.2025-10-17-120000", "2025-10-17T12:00:00Z"),
            rev(".env.2025-10-16-180000", "2025-10-16T18:00:00Z"),
        ];
        assert_eq!(
            ComposeFiles::env_selector(&compose, &env).unwrap(),
            Selector::Exact(".env.2025-10-16-180000".into())
        );
        let too_old = rev("docker-compose.yml.2025-10-01-000000", "2025-10-01T00:00:00Z");
        assert!(ComposeFiles::env_selector(&too_old, &env).is_err());
    }
}
