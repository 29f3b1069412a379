//! The home directory (journal, locks, artifacts) and the engines over it: commands
//! that change things create it; commands that only read never do.

use std::path::PathBuf;
use std::sync::Arc;

use rollback_core::{Engine, Error, MemoryJournal, MemoryLock, Notifier, Registry, Result};

/// Where a run's state lives (`--home`, `$ROLLBACK_HOME`, `./.rollback`).
pub struct Home {
    dir: PathBuf,
}

impl Home {
    /// The home at `dir` (not created yet).
    pub fn new(dir: PathBuf) -> Self {
        Home { dir }
    }

    fn journal_dir(&self) -> PathBuf {
        self.dir.join("journal")
    }

    /// Whether anything ever ran here.
    pub fn exists(&self) -> bool {
        self.journal_dir().is_dir()
    }

    /// The engine of commands that change things (run, drill, resume, approve): the
    /// home is created, private to its owner.
    pub fn engine(&self, registry: Registry, notifiers: Vec<Arc<dyn Notifier>>) -> Result<Engine> {
        let mut builder = Engine::builder(registry).home(&self.dir);
        for notifier in notifiers {
            builder = builder.notifier(notifier);
        }
        builder.try_build().map_err(|e| e.with_context("home", self.dir.display()))
    }

    /// The engine of commands that read runs (report, history, runs, approve,
    /// resume): `None` when nothing ever ran here — and nothing is created.
    pub fn existing(&self, registry: Registry) -> Result<Option<Engine>> {
        if !self.exists() {
            return Ok(None);
        }
        self.engine(registry, Vec::new()).map(Some)
    }

    /// Like [`Home::existing`], but a missing home is an error naming it.
    pub fn require(&self, registry: Registry, run: &str) -> Result<Engine> {
        self.existing(registry)?.ok_or_else(|| self.no_runs(Some(run)))
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
