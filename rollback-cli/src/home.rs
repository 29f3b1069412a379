//! The home directory (journal, locks, artifacts) and the engines over it: commands
//! that change things create it; commands that only read never do.

use std::path::PathBuf;
use std::sync::Arc;

use rollback_core::{Engine, Error, JournalAccess, MemoryJournal, MemoryLock, Notifier, Registry, Result, Settings};

use crate::args::JournalArg;

/// Where a run's state lives (`--home`, `$ROLLBACK_HOME`, `./.rollback`).
pub struct Home {
    dir: PathBuf,
    /// A shared journal (`--journal`, `$ROLLBACK_JOURNAL`); its URL is never printed.
    journal: Option<JournalArg>,
    /// This runner's host id and lease time (`--host`, `--lease-ttl`).
    settings: Settings,
}

impl Home {
    /// The home at `dir` (not created yet), with a shared journal when `journal` names
    /// one, for a runner with `settings`.
    pub fn new(dir: PathBuf, journal: Option<JournalArg>, settings: Settings) -> Self {
        let journal = journal.filter(|j| !matches!(j, JournalArg::Url(url) if url.expose().is_empty()));
        Home { dir, journal, settings }
    }

    fn journal_dir(&self) -> PathBuf {
        self.dir.join("journal")
    }

    /// Whether anything ever ran here (a shared journal always counts).
    pub fn exists(&self) -> bool {
        self.journal.is_some() || self.journal_dir().is_dir()
    }

    /// The engine of commands that change things (run, drill, resume, approve): the
    /// home is created, private to its owner.
    pub async fn engine(&self, registry: Registry, notifiers: Vec<Arc<dyn Notifier>>) -> Result<Engine> {
        self.build(registry, notifiers, JournalAccess::ReadWrite).await
    }

    async fn build(
        &self,
        registry: Registry,
        notifiers: Vec<Arc<dyn Notifier>>,
        access: JournalAccess,
    ) -> Result<Engine> {
        let mut builder = Engine::builder(registry).home(&self.dir).settings(self.settings.clone());
        if let Some(journal) = &self.journal {
            // Opened by the journal schemes of the backends compiled in (db: postgres://).
            let url = journal.resolve().map_err(|e| e.with_context("journal", "--journal / ROLLBACK_JOURNAL"))?;
            builder = builder.journal_url(&url, access).await.map_err(|e| e.with_context("journal", "--journal"))?;
        }
        for notifier in notifiers {
            builder = builder.notifier(notifier);
        }
        builder.try_build().map_err(|e| e.with_context("home", self.dir.display()))
    }

    /// The engine of commands that act on a journaled run (approve, resume, cancel):
    /// `None` when nothing ever ran here — and nothing is created.
    pub async fn existing(&self, registry: Registry) -> Result<Option<Engine>> {
        if !self.exists() {
            return Ok(None);
        }
        self.engine(registry, Vec::new()).await.map(Some)
    }

    /// Like [`Home::existing`], but a missing home is an error naming it.
    pub async fn require(&self, registry: Registry, run: &str) -> Result<Engine> {
        self.existing(registry).await?.ok_or_else(|| self.no_runs(Some(run)))
    }

    /// The engine of commands that only read runs (report, history, runs): nothing is
    /// created, and a shared journal is neither created nor migrated; `None` when
    /// nothing ever ran here.
    pub async fn reading(&self) -> Result<Option<Engine>> {
        if !self.exists() {
            return Ok(None);
        }
        match self.build(crate::kinds::registry(), Vec::new(), JournalAccess::ReadOnly).await {
            Err(err) if err.kind() == rollback_core::ErrorKind::NotFound && self.journal.is_some() => Ok(None),
            built => built.map(Some),
        }
    }

    /// Like [`Home::reading`], but nothing to read is an error naming the run.
    pub async fn require_reading(&self, run: &str) -> Result<Engine> {
        self.reading().await?.ok_or_else(|| self.no_runs(Some(run)))
    }

    /// An engine that journals nothing to disk, for validate and dry-run.
    pub fn offline(registry: Registry) -> Engine {
        Engine::builder(registry)
            .journal(Arc::new(MemoryJournal::new()))
            .lock(Arc::new(MemoryLock::new()))
            .artifacts_dir(std::env::temp_dir().join("rollback-dry-run-unused"))
            .build()
    }

    /// "No runs here" (a run id named is not found).
    pub fn no_runs(&self, run: Option<&str>) -> Error {
        let what = run.map_or_else(String::new, |r| format!("no run {r}: "));
        Error::not_found(format!(
            "{what}nothing has run with home {} (set --home or ROLLBACK_HOME)",
            self.dir.display()
        ))
    }
}
