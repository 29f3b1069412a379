use async_trait::async_trait;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

use rollback_core::{
    Capabilities, Category, Change, DataLoss, Error, ErrorKind, IdempotencyKey, Identity, Observed, Request, Result,
    Reversibility, Revision, Target, TargetId, Version, prepare_versioned,
};

fn default_command() -> Vec<String> {
    vec!["alembic".into()]
}

fn default_timeout() -> Duration {
    Duration::from_secs(600)
}

/// Configuration of an [`Alembic`] target.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlembicConfig {
    /// How to run Alembic (argv prefix, never a shell): `["alembic"]`,
    /// `[".venv/bin/alembic"]`, `["python", "-m", "alembic"]`.
    #[serde(default = "default_command")]
    pub command: Vec<String>,
    /// The project's `alembic.ini` (passed as `-c`; Alembic runs in its directory).
    pub config: PathBuf,
    /// Timeout of each Alembic call.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

/// Schema revisions managed by the real `alembic` CLI: `current`, `history`,
/// `downgrade REV`, and the SQL preview (`downgrade CUR:TARGET --sql`) shown by
/// dry-run. Alembic keeps its own version table and has nowhere to hold our key, so
/// `observe` goes by revision: at the target is done, on the path between is partial
/// (running the downgrade again finishes it), anywhere else has diverged.
#[derive(Debug)]
pub struct Alembic {
    name: TargetId,
    config: AlembicConfig,
    dir: PathBuf,
}

impl Alembic {
    /// Checks the configuration.
    pub fn new(name: &str, config: AlembicConfig) -> Result<Self> {
        if config.command.first().is_none_or(|p| p.is_empty()) {
            return Err(Error::invalid_input(format!("alembic {name:?}: empty command")));
        }
        let ini = std::fs::canonicalize(&config.config)
            .map_err(|e| Error::invalid_input(format!("alembic {name:?}: {}: {e}", config.config.display())))?;
        let dir = ini.parent().map(PathBuf::from).unwrap_or_default();
        Ok(Alembic { name: TargetId::new(name), config: AlembicConfig { config: ini, ..config }, dir })
    }

    async fn alembic(&self, args: &[&str]) -> Result<String> {
        let mut command = tokio::process::Command::new(&self.config.command[0]);
        command
            .args(&self.config.command[1..])
            .arg("-c")
            .arg(&self.config.config)
            .args(args)
            .current_dir(&self.dir)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let output = tokio::time::timeout(self.config.timeout, command.output())
            .await
            .map_err(|_| {
                Error::new(
                    ErrorKind::Timeout,
                    format!("alembic {} took over {:?}", args.join(" "), self.config.timeout),
                )
            })?
            .map_err(|e| {
                Error::new(ErrorKind::Backend, format!("cannot run {:?}", self.config.command[0])).with_source(e)
            })?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: String =
                stderr.lines().rev().take(6).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join(" | ");
            return Err(Error::new(ErrorKind::Backend, format!("alembic {} failed: {tail}", args.join(" ")))
                .with_context("target", &self.name));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The linear chain, newest first, ending with `base`.
    async fn chain(&self) -> Result<Vec<(String, String)>> {
        let text = self.alembic(&["history"]).await?;
        let mut chain = Vec::new();
        for line in text.lines().filter(|l| l.contains(" -> ")) {
            if line.contains("(branchpoint)") || line.contains("(mergepoint)") || line.contains("(effective head)") {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!("alembic {}: branched histories are not supported yet: {line}", self.name),
                ));
            }
            let (_, rest) = line.split_once(" -> ").unwrap_or_default();
            let (rev, message) = rest.split_once(", ").unwrap_or((rest, ""));
            let rev = rev.split_whitespace().next().unwrap_or_default().to_owned();
            chain.push((rev, message.to_owned()));
        }
        chain.push(("base".into(), "before the first revision".into()));
        Ok(chain)
    }

    async fn live(&self) -> Result<String> {
        let text = self.alembic(&["current"]).await?;
        Ok(text.split_whitespace().next().unwrap_or("base").to_owned())
    }
}

#[async_trait]
impl Target for Alembic {
    fn name(&self) -> &TargetId {
        &self.name
    }

    fn kind(&self) -> &str {
        "alembic"
    }

    fn category(&self) -> Category {
        Category::Schema
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { versioned: true, converges_from_partial: true }
    }

    async fn identity(&self) -> Result<Identity> {
        Ok(Identity::new(format!("alembic:{}", self.config.config.display())))
    }

    async fn current(&self) -> Result<Version> {
        Ok(Version::new(self.live().await?))
    }

    async fn history(&self) -> Result<Vec<Revision>> {
        Ok(self
            .chain()
            .await?
            .into_iter()
            .map(|(rev, message)| Revision::new(Version::labeled(rev, message.clone()), message))
            .collect())
    }

    async fn prepare(&self, request: &Request) -> Result<Change> {
        let Request::To(selector) = request else {
            return Err(Error::new(ErrorKind::Unsupported, "alembic has no actions"));
        };
        let change = prepare_versioned(self, selector).await?;
        let from = change.from.as_ref().map_or("head".to_string(), |f| f.id.clone());
        let range = format!("{from}:{}", change.to.id);
        let preview = self.alembic(&["downgrade", &range, "--sql"]).await?;
        let statements = preview.lines().filter(|l| l.trim_end().ends_with(';')).count();
        let description = format!(
            "{}: alembic downgrade {} (from {from}; SQL preview: {statements} statements)",
            self.name, change.to.id
        );
        Ok(change
            .describe(description)
            .with_reversibility(Reversibility::NeedsSnapshot)
            .with_data_loss(DataLoss::unknown(format!(
                "downgrade {range} may drop columns or tables; see the SQL preview"
            )))
            .with_payload(serde_json::json!({ "sql_preview": preview })))
    }

    async fn apply(&self, change: &Change, key: &IdempotencyKey) -> Result<()> {
        match self.observe(change, key).await? {
            Observed::Done => return Ok(()),
            Observed::Diverged(detail) => {
                return Err(Error::new(ErrorKind::Conflict, format!("expected {:?} but {detail}", change.from)));
            }
            Observed::NotStarted | Observed::Partial(_) => {}
        }
        self.alembic(&["downgrade", &change.to.id]).await.map(drop)
    }

    async fn observe(&self, change: &Change, _key: &IdempotencyKey) -> Result<Observed> {
        let live = self.live().await?;
        let chain = self.chain().await?;
        let at = |rev: &str| chain.iter().position(|(r, _)| r == rev);
        let (now, from, to) = (at(&live), change.from.as_ref().and_then(|f| at(&f.id)), at(&change.to.id));
        Ok(match (now, from, to) {
            (Some(n), _, Some(t)) if n == t => Observed::Done,
            (Some(n), Some(f), _) if n == f => Observed::NotStarted,
            (Some(n), Some(f), Some(t)) if n > f && n < t => Observed::Partial(format!("at {live}, between the two")),
            _ => Observed::Diverged(format!("alembic is at {live}")),
        })
    }
}
