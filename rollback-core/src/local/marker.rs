//! The idempotency marker local targets keep beside what they change: which key
//! moved the target to which version, and how far the effect got.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use crate::fsutil::write_private_atomic;
use crate::{Change, Error, ErrorKind, IdempotencyKey, Observed, Result};

/// How far an effect got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Phase {
    /// The marker is written, the switch is not done.
    Intent,
    /// The switch is done, the restart/reload is not.
    Switched,
    /// Everything is done.
    Done,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Marker {
    pub(crate) key: String,
    pub(crate) to: String,
    pub(crate) phase: Phase,
}

/// A marker file: `<dir>/.<name>.rollback.json`.
#[derive(Debug, Clone)]
pub(crate) struct MarkerFile(PathBuf);

impl MarkerFile {
    pub(crate) fn beside(path: &Path) -> Self {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        MarkerFile(path.with_file_name(format!(".{name}.rollback.json")))
    }

    pub(crate) fn read(&self) -> Result<Option<Marker>> {
        match std::fs::read(&self.0) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::new(ErrorKind::Corrupt, format!("{}: {e}", self.0.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) fn write(&self, key: &IdempotencyKey, to: &str, phase: Phase) -> Result<()> {
        let marker = Marker { key: key.to_string(), to: to.to_owned(), phase };
        write_private_atomic(&self.0, &serde_json::to_vec(&marker).map_err(|e| Error::internal(e.to_string()))?)
    }

    /// Classifies the state for `change` and `key`, given the version live now.
    pub(crate) fn observe(&self, change: &Change, key: &IdempotencyKey, live: &str) -> Result<Observed> {
        let marker = self.read()?.filter(|m| m.key == key.as_str() && m.to == change.to.id);
        let from = change.from.as_ref().map(|f| f.id.as_str());
        Ok(match (marker.map(|m| m.phase), live == change.to.id, Some(live) == from) {
            (Some(Phase::Done), true, _) => Observed::Done,
            (Some(Phase::Switched), true, _) => Observed::Partial("switched, restart/reload not confirmed".into()),
            (Some(Phase::Intent), _, true) => Observed::Partial("intent marked, not switched".into()),
            (_, _, true) => Observed::NotStarted,
            _ => Observed::Diverged(format!("live version is {live}")),
        })
    }
}
