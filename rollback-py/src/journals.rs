//! `Engine(journal=…)`: where runs are journaled. `"file"` (default: the home's
//! directory, this machine), `"memory"` (this process only), or the journal every
//! runner host shares, `{"kind": "postgres", "url": SECRET_REF}` (PgJournal; its
//! lease lock comes with it, so the token checked at each append is the one the
//! lock granted). The URL is a secret reference (`{"from": "env", "var": "…"}` or
//! `{"from": "file", "path": "…"}`), never a value, and never part of an error.

use std::sync::Arc;

use pyo3::prelude::*;
use rollback_core::{EngineBuilder, MemoryJournal, MemoryLock, SecretRef};
use serde::Deserialize;

use crate::convert::from_py;
use crate::errors::invalid_input;

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
enum JournalChoice {
    Postgres { url: SecretRef },
}

/// Which journal a `journal=` argument names.
pub enum Journal {
    /// The home's file journal and file lock.
    File,
    /// In this process only (tests, dry tooling).
    Memory,
    /// PostgreSQL, shared by every host.
    Postgres(SecretRef),
}

impl Journal {
    /// Reads `journal=` (`None`: the file journal).
    pub fn of(journal: Option<&Bound<'_, PyAny>>) -> PyResult<Journal> {
        let Some(journal) = journal.filter(|j| !j.is_none()) else { return Ok(Journal::File) };
        if let Ok(name) = journal.extract::<String>() {
            return match name.as_str() {
                "file" => Ok(Journal::File),
                "memory" => Ok(Journal::Memory),
                _ if name.contains("://") => Err(invalid_input(
                    "journal: give the URL as a secret reference, {\"kind\": \"postgres\", \"url\": {\"from\": \"env\", \
                     \"var\": \"ROLLBACK_JOURNAL\"}}, not as text (it holds credentials)",
                )),
                _ => Err(invalid_input(
                    "journal must be \"file\", \"memory\" or {\"kind\": \"postgres\", \"url\": {…}} (the text \
                     given is not shown: it may hold credentials)",
                )),
            };
        }
        // A URL as text inside the dict: refused before serde, whose message would quote it.
        if let Ok(url) = journal.get_item("url")
            && url.extract::<String>().is_ok()
        {
            return Err(invalid_input(
                "journal: give \"url\" as a secret reference ({\"from\": \"env\", \"var\": \"ROLLBACK_JOURNAL\"} or \
                 {\"from\": \"file\", \"path\": \"…\"}), not as text (it holds credentials)",
            ));
        }
        let choice: JournalChoice = from_py(journal, "journal ({\"kind\": \"postgres\", \"url\": {\"from\": …}})")?;
        match choice {
            JournalChoice::Postgres { url } => Ok(Journal::Postgres(url)),
        }
    }

    /// Whether it brings its own lock (a `lock=` as well would disagree with it).
    pub fn has_lock(&self) -> bool {
        matches!(self, Journal::Postgres(_))
    }

    /// Puts the journal (and its lock) on `builder`; artifacts stay in `home`.
    pub fn apply(self, py: Python<'_>, builder: EngineBuilder, home: &std::path::Path) -> PyResult<EngineBuilder> {
        Ok(match self {
            Journal::File => builder.home(home),
            Journal::Memory => builder
                .journal(Arc::new(MemoryJournal::new()))
                .lock(Arc::new(MemoryLock::new()))
                .artifacts_dir(home.join("artifacts")),
            Journal::Postgres(url) => postgres(py, builder.home(home), &url)?,
        })
    }
}

/// The shared journal through the registry's journal schemes (rollback-db's
/// `postgres://`, present when the wheel has the db backend).
fn postgres(py: Python<'_>, builder: EngineBuilder, url: &SecretRef) -> PyResult<EngineBuilder> {
    use crate::errors::IntoPy;
    let url = url.resolve().py_err()?;
    let access = rollback_core::JournalAccess::ReadWrite;
    crate::runtime::block_on(py, async move { builder.journal_url(&url, access).await })
}
