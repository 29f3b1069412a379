//! Migration tools (Alembic, Django, …): one [`Target`] for every tool whose history
//! is a linear chain of revisions.

use async_trait::async_trait;
use std::path::Path;
use std::time::Duration;

use rollback_core::{
    Capabilities, Category, Change, DataLoss, Error, ErrorKind, IdempotencyKey, Identity, Observed, Request, Result,
    Reversibility, Revision, Target, TargetId, Version, prepare_versioned,
};

/// A migration tool with a linear history (its CLI or its API). Implement it to
/// roll back with another tool (Flyway, Liquibase, a home-grown script).
#[async_trait]
pub trait MigrationTool: Send + Sync + 'static {
    /// The target kind (`"alembic"`).
    fn kind(&self) -> &'static str;
    /// What the schema is (the project file, the database).
    fn identity(&self) -> String;
    /// Revisions newest first, ending with the empty-schema name (`base`, `zero`),
    /// each with its message.
    async fn chain(&self) -> Result<Vec<(String, String)>>;
    /// The applied revision now.
    async fn live(&self) -> Result<String>;
    /// The SQL that going from `from` down to `to` would run, without running it.
    async fn preview(&self, chain: &[(String, String)], from: &str, to: &str) -> Result<String>;
    /// Migrates down to `to`.
    async fn downgrade(&self, to: &str) -> Result<()>;
}

/// A [`Target`] over a [`MigrationTool`]. These tools keep their own version table
/// and have nowhere to hold our key, so `observe` goes by revision: at the target is
/// done, on the chain between `from` and the target is partial (migrating down again
/// finishes it), anywhere else has diverged.
///
/// The chain is read once per prepare and reused by `observe`, which reads it again
/// only when a revision it needs is not in it (migrations deployed since). A
/// rollback asks the tool for the current revision, the chain and the SQL preview in
/// prepare, the current revision and the downgrade in apply, and the current
/// revision to confirm: Alembic answers all six from one process
/// ([`AlembicTool`](crate::AlembicTool)); Django starts `manage.py` for each.
#[derive(Debug)]
pub struct Migrations<T> {
    name: TargetId,
    tool: T,
    chain: std::sync::Mutex<Option<Chain>>,
}

/// Revisions newest first, with their messages.
type Chain = std::sync::Arc<Vec<(String, String)>>;

impl<T: MigrationTool> Migrations<T> {
    /// A target named `name` over `tool`.
    pub fn with_tool(name: &str, tool: T) -> Self {
        Migrations { name: TargetId::new(name), tool, chain: std::sync::Mutex::new(None) }
    }

    /// Reads the chain from the tool and keeps it.
    async fn read_chain(&self) -> Result<Chain> {
        let chain = Chain::new(self.tool.chain().await?);
        if let Ok(mut kept) = self.chain.lock() {
            *kept = Some(chain.clone());
        }
        Ok(chain)
    }

    /// The kept chain if it has every revision in `needed`, else a fresh read.
    async fn chain_with(&self, needed: &[&str]) -> Result<Chain> {
        let kept = self.chain.lock().ok().and_then(|kept| kept.clone());
        match kept {
            Some(chain)
                if needed.iter().filter(|rev| !rev.is_empty()).all(|rev| chain.iter().any(|(r, _)| r == rev)) =>
            {
                Ok(chain)
            }
            _ => self.read_chain().await,
        }
    }
}

/// Runs a tool (argv prefix + args, never a shell) in `dir` with extra `env`; its stdout.
pub(crate) async fn run(
    argv: &[String],
    args: &[&str],
    dir: &Path,
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<String> {
    let mut full = argv.to_vec();
    full.extend(args.iter().map(|a| a.to_string()));
    let what = format!("`{}`", full.join(" "));
    let invocation = rollback_core::process::Invocation { what: &what, argv: &full, dir: Some(dir), env, timeout };
    Ok(String::from_utf8_lossy(&rollback_core::process::run(invocation).await?).into_owned())
}

#[async_trait]
impl<T: MigrationTool> Target for Migrations<T> {
    fn name(&self) -> &TargetId {
        &self.name
    }

    fn kind(&self) -> &str {
        self.tool.kind()
    }

    fn category(&self) -> Category {
        Category::Schema
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { versioned: true, converges_from_partial: true }
    }

    async fn identity(&self) -> Result<Identity> {
        Ok(Identity::new(self.tool.identity()))
    }

    async fn current(&self) -> Result<Version> {
        Ok(Version::new(self.tool.live().await?))
    }

    async fn history(&self) -> Result<Vec<Revision>> {
        Ok(self
            .read_chain()
            .await?
            .iter()
            .map(|(rev, message)| Revision::new(Version::labeled(rev.clone(), message.clone()), message.clone()))
            .collect())
    }

    async fn prepare(&self, request: &Request) -> Result<Change> {
        let Request::To(selector) = request else {
            return Err(Error::new(ErrorKind::Unsupported, format!("{} has no actions", self.tool.kind())));
        };
        let change = prepare_versioned(self, selector).await?;
        let from = change.from.as_ref().map_or(String::new(), |f| f.id.clone());
        let to = change.to.id.clone();
        let chain = self.chain_with(&[&from, &to]).await?;
        let preview = self.tool.preview(&chain, &from, &change.to.id).await?;
        let statements = preview.lines().filter(|l| l.trim_end().ends_with(';') && !l.trim().starts_with("--")).count();
        let description = format!(
            "{}: {} down {from} -> {} ({statements} SQL statements, shown in the preview)",
            self.name,
            self.tool.kind(),
            change.to.id
        );
        Ok(change
            .describe(description)
            .with_reversibility(Reversibility::NeedsSnapshot)
            .with_data_loss(DataLoss::unknown(format!(
                "migrating {from} down to {to} may drop columns or tables; see the SQL preview"
            )))
            .with_preview(preview))
    }

    async fn apply(&self, change: &Change, key: &IdempotencyKey) -> Result<()> {
        if !self.observe(change, key).await?.proceed(change)? {
            return Ok(());
        }
        self.tool.downgrade(&change.to.id).await.map_err(|e| e.with_context("target", &self.name))
    }

    async fn observe(&self, change: &Change, _key: &IdempotencyKey) -> Result<Observed> {
        let live = self.tool.live().await?;
        let from = change.from.as_ref().map_or("", |f| f.id.as_str());
        let chain = self.chain_with(&[&live, from, &change.to.id]).await?;
        let at = |rev: &str| chain.iter().position(|(r, _)| r == rev);
        let (now, from, to) = (at(&live), change.from.as_ref().and_then(|f| at(&f.id)), at(&change.to.id));
        Ok(match (now, from, to) {
            (Some(n), _, Some(t)) if n == t => Observed::Done,
            (Some(n), Some(f), _) if n == f => Observed::NotStarted,
            (Some(n), Some(f), Some(t)) if n > f && n < t => Observed::Partial(format!("at {live}, between the two")),
            _ => Observed::Diverged(format!("{} is at {live}", self.tool.kind())),
        })
    }
}
