use async_trait::async_trait;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::marker::{MarkerFile, Phase};
use super::{default_timeout, file_identity, run_command};
use crate::target::{Capabilities, Observed, Request};
use crate::{
    Category, Change, Error, ErrorKind, IdempotencyKey, Identity, Result, Revision, Target, TargetId, Version,
    prepare_versioned,
};

/// Configuration of a [`ReleaseDir`].
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseDirConfig {
    /// The deploy root: `releases/<name>/` and the `current` symlink live here.
    pub root: PathBuf,
    /// Run after the switch (argv, never a shell), e.g. `["systemctl", "restart", "app"]`.
    #[serde(default)]
    pub restart: Option<Vec<String>>,
    /// Restart timeout.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub restart_timeout: Duration,
}

/// Capistrano-style releases: `root/releases/<name>/` and `root/current ->
/// releases/<name>`. Rolling back renames a new symlink over `current` (atomic), then
/// runs the restart command. A release's `REVISION` file, if any, describes it.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use rollback_core::local::{ReleaseDir, ReleaseDirConfig};
/// use rollback_core::{IdempotencyKey, Request, Selector, Target};
/// let root = tempfile::tempdir().unwrap();
/// for r in ["20251015-120000", "20251016-180000"] {
///     std::fs::create_dir_all(root.path().join("releases").join(r)).unwrap();
/// }
/// std::os::unix::fs::symlink("releases/20251016-180000", root.path().join("current")).unwrap();
/// let config = ReleaseDirConfig { root: root.path().into(), restart: None, restart_timeout: std::time::Duration::from_secs(5) };
/// let app = ReleaseDir::new("app", config).unwrap();
/// let change = app.prepare(&Request::To(Selector::Previous)).await.unwrap();
/// app.apply(&change, &IdempotencyKey::new("run/app/fwd")).await.unwrap();
/// assert_eq!(app.current().await.unwrap().id, "20251015-120000");
/// # });
/// ```
#[derive(Debug)]
pub struct ReleaseDir {
    name: TargetId,
    config: ReleaseDirConfig,
    marker: MarkerFile,
}

impl ReleaseDir {
    /// Checks the layout.
    pub fn new(name: &str, config: ReleaseDirConfig) -> Result<Self> {
        if !config.root.join("releases").is_dir() {
            return Err(Error::invalid_input(format!(
                "release dir {name:?}: {} has no releases/ directory",
                config.root.display()
            )));
        }
        if let Some(restart) = &config.restart
            && restart.first().is_none_or(|p| p.is_empty())
        {
            return Err(Error::invalid_input(format!("release dir {name:?}: restart command is empty")));
        }
        let marker = MarkerFile::beside(&config.root.join("current"));
        Ok(ReleaseDir { name: TargetId::new(name), config, marker })
    }

    fn current_link(&self) -> PathBuf {
        self.config.root.join("current")
    }

    fn live(&self) -> Result<String> {
        let target = std::fs::read_link(self.current_link()).map_err(|e| {
            Error::from(e).with_context("symlink", self.current_link().display()).with_operation("read current release")
        })?;
        target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| Error::new(ErrorKind::Corrupt, format!("`current` points at {}", target.display())))
    }

    fn switch(&self, release: &str, key: &IdempotencyKey) -> Result<()> {
        let release_dir = self.config.root.join("releases").join(release);
        if !release_dir.is_dir() {
            return Err(Error::not_found(format!("release {release} is gone from {}", release_dir.display())));
        }
        let tmp = self.config.root.join(format!(".current.tmp-{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(Path::new("releases").join(release), &tmp)?;
        std::fs::rename(&tmp, self.current_link())?;
        std::fs::File::open(&self.config.root)?.sync_all()?;
        tracing::info!(target = %self.name, %release, %key, "switched current");
        Ok(())
    }
}

#[async_trait]
impl Target for ReleaseDir {
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
        Category::App
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { versioned: true, converges_from_partial: true }
    }

    async fn identity(&self) -> Result<Identity> {
        Ok(Identity::new(format!("release-dir:{}", file_identity(&self.config.root)?)))
    }

    async fn current(&self) -> Result<Version> {
        Ok(Version::new(self.live()?))
    }

    async fn history(&self) -> Result<Vec<Revision>> {
        let mut revisions = Vec::new();
        for entry in std::fs::read_dir(self.config.root.join("releases"))? {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let description =
                std::fs::read_to_string(entry.path().join("REVISION")).unwrap_or_default().trim().to_owned();
            let created = entry.metadata()?.modified().ok().map(chrono::DateTime::<chrono::Utc>::from);
            let mut revision = Revision::new(Version::new(name), description);
            revision.created = created;
            revisions.push(revision);
        }
        // Release names are timestamps (Capistrano): name order is deploy order.
        revisions.sort_by(|a, b| b.version.id.cmp(&a.version.id));
        Ok(revisions)
    }

    async fn prepare(&self, request: &Request) -> Result<Change> {
        match request {
            Request::To(selector) => {
                let change = prepare_versioned(self, selector).await?;
                let description = format!(
                    "{}: switch current from releases/{} to releases/{}{}",
                    self.name,
                    change.from.as_ref().map_or("?", |v| v.id.as_str()),
                    change.to.id,
                    if self.config.restart.is_some() { ", then restart" } else { "" }
                );
                Ok(change.describe(description))
            }
            Request::Action { action, .. } => {
                Err(Error::new(ErrorKind::Unsupported, format!("release dir has no action {action:?}")))
            }
        }
    }

    async fn apply(&self, change: &Change, key: &IdempotencyKey) -> Result<()> {
        let live = self.live()?;
        if !self.marker.observe(change, key, &live)?.proceed(change)? {
            return Ok(());
        }
        if live != change.to.id {
            self.marker.write(key, &change.to.id, Phase::Intent)?;
            self.switch(&change.to.id, key)?;
        }
        self.marker.write(key, &change.to.id, Phase::Switched)?;
        if let Some(restart) = &self.config.restart {
            run_command("restart", restart, None, self.config.restart_timeout).await?;
        }
        self.marker.write(key, &change.to.id, Phase::Done)
    }

    async fn observe(&self, change: &Change, key: &IdempotencyKey) -> Result<Observed> {
        self.marker.observe(change, key, &self.live()?)
    }
}
