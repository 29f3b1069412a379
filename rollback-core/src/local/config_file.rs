use async_trait::async_trait;
use serde::Deserialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::marker::{MarkerFile, Phase};
use super::{default_timeout, file_identity, run_command};
use crate::target::{Capabilities, Observed, Request};
use crate::{
    Category, Change, Error, ErrorKind, IdempotencyKey, Identity, Result, Revision, Target, TargetId, Version,
    prepare_versioned,
};

/// Configuration of a [`ConfigFile`].
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigFileConfig {
    /// The live file (`/srv/app/.env.production`).
    pub path: PathBuf,
    /// Where the timestamped backups are (the live file's directory by default).
    #[serde(default)]
    pub backups_dir: Option<PathBuf>,
    /// Validates a candidate before it goes live (argv, never a shell; `{}` is replaced
    /// by the candidate's path), e.g. `["nginx", "-t", "-c", "{}"]`.
    #[serde(default)]
    pub validate: Option<Vec<String>>,
    /// Run after the file is replaced, e.g. `["systemctl", "reload", "nginx"]`.
    #[serde(default)]
    pub reload: Option<Vec<String>>,
    /// Timeout of each command.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
}

/// A configuration file restored from timestamped backups named
/// `<file>.<YYYY-MM-DD-HHMMSS>` (the runbooks' `.env.production.2025-10-16-180000`).
/// Versions are content hashes, labelled with the backup's name. The candidate is
/// validated before it goes live, swapped in atomically, then the reload command
/// runs. The replaced file is kept beside it as `<file>.replaced-<hash>` — evidence,
/// and what the inverse change restores.
#[derive(Debug)]
pub struct ConfigFile {
    name: TargetId,
    config: ConfigFileConfig,
    marker: MarkerFile,
    backup_pattern: regex::Regex,
}

/// A short content hash: `sha256:<16 hex>`.
fn content_id(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    format!("sha256:{}", digest.iter().take(8).map(|b| format!("{b:02x}")).collect::<String>())
}

impl ConfigFile {
    /// Checks the configuration.
    pub fn new(name: &str, config: ConfigFileConfig) -> Result<Self> {
        let base = config
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| Error::invalid_input(format!("config file {name:?}: path has no file name")))?;
        for (what, argv) in [("validate", &config.validate), ("reload", &config.reload)] {
            if argv.as_ref().is_some_and(|a| a.first().is_none_or(|p| p.is_empty())) {
                return Err(Error::invalid_input(format!("config file {name:?}: {what} command is empty")));
            }
        }
        let backup_pattern =
            regex::Regex::new(&format!(r"^{}\.(\d{{4}}-\d{{2}}-\d{{2}}-\d{{6}})$", regex::escape(&base)))
                .map_err(|e| Error::internal(e.to_string()))?;
        let marker = MarkerFile::beside(&config.path);
        Ok(ConfigFile { name: TargetId::new(name), config, marker, backup_pattern })
    }

    fn dir(&self) -> &Path {
        self.config.path.parent().unwrap_or(Path::new("."))
    }

    fn backups_dir(&self) -> PathBuf {
        self.config.backups_dir.clone().unwrap_or_else(|| self.dir().to_path_buf())
    }

    fn live(&self) -> Result<(String, Vec<u8>)> {
        let bytes = std::fs::read(&self.config.path)
            .map_err(|e| Error::from(e).with_context("config", self.config.path.display()))?;
        Ok((content_id(&bytes), bytes))
    }

    fn evidence_path(&self, id: &str) -> PathBuf {
        let base = self.config.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        self.dir().join(format!("{base}.replaced-{}", id.trim_start_matches("sha256:")))
    }

    fn source_of(change: &Change) -> Result<PathBuf> {
        change
            .payload
            .get("source")
            .and_then(|s| s.as_str())
            .map(PathBuf::from)
            .ok_or_else(|| Error::invalid_input("config change has no payload.source"))
    }

    /// Writes `bytes` as a candidate beside the live file (same mode), validates it, and
    /// returns its path.
    async fn candidate(&self, bytes: &[u8]) -> Result<PathBuf> {
        let tmp = self.dir().join(format!(".{}.candidate-{}", self.name, std::process::id()));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        if let Ok(meta) = std::fs::metadata(&self.config.path) {
            std::fs::set_permissions(&tmp, meta.permissions())?;
        }
        if let Some(validate) = &self.config.validate {
            let argv: Vec<String> = validate.iter().map(|a| a.replace("{}", &tmp.display().to_string())).collect();
            if let Err(err) = run_command("validate", &argv, None, self.config.timeout).await {
                let _ = std::fs::remove_file(&tmp);
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!("the candidate failed validation, nothing was replaced: {err}"),
                ));
            }
        }
        Ok(tmp)
    }
}

#[async_trait]
impl Target for ConfigFile {
    fn name(&self) -> &TargetId {
        &self.name
    }

    fn host_local(&self) -> bool {
        true
    }

    fn kind(&self) -> &str {
        <Self as crate::kind::Kind>::KIND
    }

    fn category(&self) -> Category {
        Category::Config
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { versioned: true, converges_from_partial: true }
    }

    async fn identity(&self) -> Result<Identity> {
        Ok(Identity::new(format!("config-file:{}", file_identity(self.dir())?)))
    }

    async fn current(&self) -> Result<Version> {
        Ok(Version::labeled(self.live()?.0, "live"))
    }

    /// The live file first, then the backups newest first (by the timestamp in their names).
    async fn history(&self) -> Result<Vec<Revision>> {
        let (live_id, _) = self.live()?;
        let mut backups = Vec::new();
        let dir = self.backups_dir();
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::from(e).with_context("backups", dir.display()))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(stamp) = self.backup_pattern.captures(&name).and_then(|c| c.get(1)).map(|m| m.as_str().to_owned())
            else {
                continue;
            };
            let created = chrono::NaiveDateTime::parse_from_str(&stamp, "%Y-%m-%d-%H%M%S").ok().map(|t| t.and_utc());
            let bytes = std::fs::read(entry.path())?;
            let mut revision =
                Revision::new(Version::labeled(content_id(&bytes), name.clone()), format!("backup {name}"));
            revision.created = created;
            backups.push(revision);
        }
        backups.sort_by_key(|b| std::cmp::Reverse(b.created));
        let live_created =
            std::fs::metadata(&self.config.path)?.modified().ok().map(chrono::DateTime::<chrono::Utc>::from);
        let mut live = Revision::new(Version::labeled(live_id, "live"), "the live file");
        live.created = live_created.max(backups.first().and_then(|b| b.created));
        let mut history = vec![live];
        history.extend(backups);
        Ok(history)
    }

    async fn prepare(&self, request: &Request) -> Result<Change> {
        let Request::To(selector) = request else {
            return Err(Error::new(ErrorKind::Unsupported, "config file has no actions"));
        };
        let change = prepare_versioned(self, selector).await?;
        let label = change.to.label.clone().unwrap_or_default();
        let source = self.backups_dir().join(&label);
        let description = format!(
            "{}: restore {} from {label}{}{}",
            self.name,
            self.config.path.display(),
            if self.config.validate.is_some() { ", validated first" } else { "" },
            if self.config.reload.is_some() { ", then reload" } else { "" }
        );
        Ok(change.describe(description).with_payload(serde_json::json!({ "source": source })))
    }

    async fn apply(&self, change: &Change, key: &IdempotencyKey) -> Result<()> {
        let (live_id, live_bytes) = self.live()?;
        if !self.marker.observe(change, key, &live_id)?.proceed(change)? {
            return Ok(());
        }
        if live_id != change.to.id {
            let source = Self::source_of(change)?;
            let bytes = std::fs::read(&source).map_err(|e| Error::from(e).with_context("source", source.display()))?;
            if content_id(&bytes) != change.to.id {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!("{} changed since it was prepared (want {})", source.display(), change.to.id),
                ));
            }
            let candidate = self.candidate(&bytes).await?;
            let evidence = self.evidence_path(&live_id);
            if !evidence.exists() {
                crate::fsutil::write_private_atomic(&evidence, &live_bytes)?;
            }
            self.marker.write(key, &change.to.id, Phase::Intent)?;
            std::fs::rename(&candidate, &self.config.path)?;
            std::fs::File::open(self.dir())?.sync_all()?;
        }
        self.marker.write(key, &change.to.id, Phase::Switched)?;
        if let Some(reload) = &self.config.reload {
            run_command("reload", reload, None, self.config.timeout).await?;
        }
        self.marker.write(key, &change.to.id, Phase::Done)
    }

    async fn observe(&self, change: &Change, key: &IdempotencyKey) -> Result<Observed> {
        self.marker.observe(change, key, &self.live()?.0)
    }

    /// Restores the replaced file from its evidence copy.
    fn inverse(&self, change: &Change) -> Result<Change> {
        let from = change.from.clone().ok_or_else(|| Error::unsupported("inverse"))?;
        let evidence = self.evidence_path(&from.id);
        let description =
            format!("{}: put back the replaced {} ({})", self.name, self.config.path.display(), evidence.display());
        Ok(Change::new(self.name.clone(), change.kind.clone(), Some(change.to.clone()), from)
            .describe(description)
            .with_payload(serde_json::json!({ "source": evidence })))
    }
}
