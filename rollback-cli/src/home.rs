//! The home directory (journal, locks, artifacts) and the engines over it: commands
//! that change things create it; commands that only read never do.

use std::path::PathBuf;
use std::sync::Arc;

use rollback_core::{Engine, Error, MemoryJournal, MemoryLock, Notifier, Registry, Result, Settings};

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
        let mut builder = Engine::builder(registry).home(&self.dir).settings(self.settings.clone());
        if let Some(journal) = &self.journal {
            // The journal schemes every backend compiled in registers (db: postgres://).
            let opener = crate::kinds::registry();
            let url = journal.resolve().map_err(|e| e.with_context("journal", "--journal / ROLLBACK_JOURNAL"))?;
            let opened = opener.open_journal(&url).await.map_err(|e| e.with_context("journal", "--journal"))?;
            builder = builder.journal(opened.journal).lock(opened.lock);
        }
        for notifier in notifiers {
            builder = builder.notifier(notifier);
        }
        builder.try_build().map_err(|e| e.with_context("home", self.dir.display()))
    }

    /// The engine of commands that read runs (report, history, runs, approve,
    /// resume): `None` when nothing ever ran here — and nothing is created.
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
