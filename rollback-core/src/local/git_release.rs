use async_trait::async_trait;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

use super::marker::{MarkerFile, Phase};
use super::{default_timeout, file_identity, run_command};
use crate::target::{Capabilities, Observed, Request};
use crate::{
    Category, Change, Error, ErrorKind, IdempotencyKey, Identity, Result, Revision, Target, TargetId, Version,
    prepare_versioned,
};

/// Which history a [`GitRelease`] offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GitHistory {
    /// Release tags, newest first (`v1.4.2`, …).
    #[default]
    Tags,
    /// First-parent commits of HEAD, newest first.
    Commits,
}

/// Configuration of a [`GitRelease`].
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GitReleaseConfig {
    /// The deploy checkout.
    pub repo: PathBuf,
    /// Build and deploy after the checkout or revert (argv, never a shell), e.g.
    /// `["make", "deploy"]`.
    #[serde(default)]
    pub build: Option<Vec<String>>,
    /// Tags or commits.
    #[serde(default)]
    pub history: GitHistory,
    /// Build timeout.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
}

/// A git-based release (runbook 003: "revert to previous git commit, rebuild,
/// deploy"): check out an older tag or commit in the deploy checkout, or — the action
/// `revert` with `{"commits": [...]}` — `git revert` chosen commits for a partial
/// (frontend-only / backend-only) rollback; then run the build/deploy command. A
/// revert commit carries the run key as a `Rollback-Key:` trailer; a checkout is
/// recorded in a marker beside `.git`.
#[derive(Debug)]
pub struct GitRelease {
    name: TargetId,
    config: GitReleaseConfig,
    marker: MarkerFile,
}

impl GitRelease {
    /// Checks that `repo` is a git work tree.
    pub fn new(name: &str, config: GitReleaseConfig) -> Result<Self> {
        if !config.repo.join(".git").exists() {
            return Err(Error::invalid_input(format!(
                "git release {name:?}: {} is not a git checkout",
                config.repo.display()
            )));
        }
        if let Some(build) = &config.build
            && build.first().is_none_or(|p| p.is_empty())
        {
            return Err(Error::invalid_input(format!("git release {name:?}: empty build command")));
        }
        let marker = MarkerFile::beside(&config.repo.join(".git").join("rollback"));
        Ok(GitRelease { name: TargetId::new(name), config, marker })
    }

    async fn git(&self, args: &[&str]) -> Result<String> {
        let mut argv = vec!["git".to_string(), "-C".into(), self.config.repo.display().to_string()];
        argv.extend(args.iter().map(|a| a.to_string()));
        let what = format!("`git {}`", args.join(" "));
        let env = [("GIT_TERMINAL_PROMPT", "0")];
        let invocation =
            crate::process::Invocation { what: &what, argv: &argv, dir: None, env: &env, timeout: self.config.timeout };
        let stdout = crate::process::run(invocation).await?;
        Ok(String::from_utf8_lossy(&stdout).trim().to_owned())
    }

    async fn head(&self) -> Result<String> {
        self.git(&["rev-parse", "HEAD"]).await
    }

    async fn build(&self) -> Result<()> {
        match &self.config.build {
            // Builds run in the checkout.
            Some(build) => run_command("build", build, Some(&self.config.repo), self.config.timeout).await,
            None => Ok(()),
        }
    }
}

#[async_trait]
impl Target for GitRelease {
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
        Ok(Identity::new(format!("git:{}", file_identity(&self.config.repo.join(".git"))?)))
    }

    async fn current(&self) -> Result<Version> {
        let head = self.head().await?;
        let tag = self.git(&["tag", "--points-at", "HEAD"]).await.unwrap_or_default();
        Ok(match tag.lines().next() {
            Some(tag) if !tag.is_empty() => Version::labeled(head, tag),
            _ => Version::new(head),
        })
    }

    async fn history(&self) -> Result<Vec<Revision>> {
        let mut revisions = Vec::new();
        let lines = match self.config.history {
            GitHistory::Tags => {
                self.git(&[
                    "for-each-ref",
                    "--sort=-creatordate",
                    "--format=%(objectname)^{commit} %(refname:short) %(creatordate:iso-strict)",
                    "refs/tags",
                ])
                .await?
            }
            GitHistory::Commits => self.git(&["log", "--first-parent", "-n", "100", "--format=%H %H %cI %s"]).await?,
        };
        for line in lines.lines() {
            let mut parts = line.splitn(4, ' ');
            let (Some(object), Some(label), Some(date)) = (parts.next(), parts.next(), parts.next()) else { continue };
            let commit = match self.config.history {
                GitHistory::Tags => self.git(&["rev-parse", object]).await?,
                GitHistory::Commits => object.to_owned(),
            };
            let subject = parts.next().unwrap_or(label).to_owned();
            let version = if self.config.history == GitHistory::Tags {
                Version::labeled(commit, label)
            } else {
                Version::new(commit)
            };
            let mut revision = Revision::new(version, subject);
            revision.created = chrono::DateTime::parse_from_rfc3339(date).ok().map(|d| d.with_timezone(&chrono::Utc));
            revisions.push(revision);
        }
        let head = self.current().await?;
        if !revisions.iter().any(|r| r.version.id == head.id) {
            let mut current = Revision::new(head, "HEAD (untagged)");
            current.created = revisions.first().and_then(|r| r.created);
            revisions.insert(0, current);
        }
        Ok(revisions)
    }

    async fn prepare(&self, request: &Request) -> Result<Change> {
        match request {
            Request::To(selector) => {
                let change = prepare_versioned(self, selector).await?;
                let description = format!(
                    "{}: git checkout {} in {}{}",
                    self.name,
                    change.to,
                    self.config.repo.display(),
                    if self.config.build.is_some() { ", then build and deploy" } else { "" }
                );
                Ok(change.describe(description).with_payload(serde_json::json!({ "mode": "checkout" })))
            }
            Request::Action { action, params } if action == "revert" => {
                let commits: Vec<String> = params
                    .get("commits")
                    .and_then(|c| serde_json::from_value(c.clone()).ok())
                    .filter(|c: &Vec<String>| !c.is_empty())
                    .ok_or_else(|| Error::invalid_input("revert needs params.commits, a non-empty list"))?;
                let mut resolved = Vec::new();
                for commit in &commits {
                    resolved.push(
                        self.git(&["rev-parse", "--verify", &format!("{commit}^{{commit}}")]).await.map_err(|_| {
                            Error::not_found(format!("commit {commit:?} is not in {}", self.config.repo.display()))
                        })?,
                    );
                }
                let head = self.current().await?;
                let short: Vec<&str> = resolved.iter().map(|c| &c[..c.len().min(10)]).collect();
                let description = format!("{}: git revert {} on {head} (partial rollback)", self.name, short.join(" "));
                Ok(Change::new(
                    self.name.clone(),
                    "revert",
                    Some(head),
                    Version::new(format!("revert:{}", resolved.join(","))),
                )
                .describe(description)
                .with_payload(serde_json::json!({ "mode": "revert", "commits": resolved })))
            }
            Request::Action { action, .. } => {
                Err(Error::new(ErrorKind::Unsupported, format!("git release has no action {action:?}")))
            }
        }
    }

    async fn apply(&self, change: &Change, key: &IdempotencyKey) -> Result<()> {
        if !self.observe(change, key).await?.proceed(change)? {
            return Ok(());
        }
        let head = self.head().await?;
        if change.payload["mode"] == "revert" {
            if change.from.as_ref().is_some_and(|f| f.id == head) {
                let commits: Vec<String> =
                    serde_json::from_value(change.payload["commits"].clone()).unwrap_or_default();
                let mut args = vec!["revert", "--no-commit"];
                args.extend(commits.iter().map(String::as_str));
                if let Err(err) = self.git(&args).await {
                    let _ = self.git(&["revert", "--abort"]).await;
                    return Err(err);
                }
                let message = format!(
                    "Roll back {}\n\nRollback-Key: {key}",
                    commits.iter().map(|c| &c[..c.len().min(10)]).collect::<Vec<_>>().join(", ")
                );
                self.git(&[
                    "-c",
                    "user.name=rollback",
                    "-c",
                    "user.email=rollback@localhost",
                    "commit",
                    "--no-verify",
                    "-m",
                    &message,
                ])
                .await?;
            }
            let new_head = self.head().await?;
            self.marker.write(key, &new_head, Phase::Switched)?;
            self.build().await?;
            return self.marker.write(key, &new_head, Phase::Done);
        }
        if head != change.to.id {
            self.marker.write(key, &change.to.id, Phase::Intent)?;
            self.git(&["checkout", "--quiet", "--detach", &change.to.id]).await?;
        }
        self.marker.write(key, &change.to.id, Phase::Switched)?;
        self.build().await?;
        self.marker.write(key, &change.to.id, Phase::Done)
    }

    async fn observe(&self, change: &Change, key: &IdempotencyKey) -> Result<Observed> {
        let head = self.head().await?;
        if change.payload["mode"] == "revert" {
            let message = self.git(&["log", "-1", "--format=%B"]).await?;
            let ours = message.lines().any(|l| l.trim() == format!("Rollback-Key: {key}"));
            let marker = self.marker.read()?.filter(|m| m.key == key.as_str() && m.to == head);
            return Ok(match (ours, marker.map(|m| m.phase)) {
                (true, Some(Phase::Done)) => Observed::Done,
                (true, _) => Observed::Partial("reverted, build not confirmed".into()),
                (false, _) if change.from.as_ref().is_some_and(|f| f.id == head) => Observed::NotStarted,
                _ => Observed::Diverged(format!("HEAD is {head}")),
            });
        }
        self.marker.observe(change, key, &head)
    }
}
