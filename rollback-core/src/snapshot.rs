//! The [`Snapshot`] trait: capture evidence and restore points into an
//! [`ArtifactStore`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{ArtifactStore, Error, IdempotencyKey, Result};

/// What a capture produced; journaled as the snapshot step's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRef {
    /// The snapshotter's name.
    pub snapshot: String,
    /// Keys of the artifacts written into the store.
    pub artifacts: Vec<String>,
    /// When it was captured.
    pub taken_at: DateTime<Utc>,
    /// What it holds, for people.
    pub description: String,
    /// Snapshotter-specific details needed to restore (no secrets).
    #[serde(default)]
    pub metadata: serde_json::Value,
}

/// Captures state into an artifact store, and optionally restores it.
/// Evidence is sensitive: redact environment values and secret data.
#[async_trait]
pub trait Snapshot: Send + Sync + 'static {
    /// The name steps refer to.
    fn name(&self) -> &str;

    /// Captures into `store`; `key` names this capture (re-capturing with the same key
    /// may overwrite).
    async fn capture(&self, store: &dyn ArtifactStore, key: &IdempotencyKey) -> Result<SnapshotRef>;

    /// Restores what `capture` produced.
    async fn restore(&self, _snapshot: &SnapshotRef, _store: &dyn ArtifactStore) -> Result<()> {
        Err(Error::unsupported("restore"))
    }

    /// Restores like [`Snapshot::restore`], recording `key` in the backend as part of
    /// the restore where it can, so [`Snapshot::restored`] tells a finished restore from
    /// the backend alone. The engine calls this one. Default: `restore` (which must
    /// then be idempotent: a resume after a crash may run it again).
    async fn restore_keyed(
        &self,
        snapshot: &SnapshotRef,
        store: &dyn ArtifactStore,
        _key: &IdempotencyKey,
    ) -> Result<()> {
        self.restore(snapshot, store).await
    }

    /// Whether the restore keyed `key` has finished, from the backend alone:
    /// `Some(true)` done (the engine does not restore again), `Some(false)` not done,
    /// `None` cannot tell (the default: the engine restores).
    async fn restored(&self, _snapshot: &SnapshotRef, _key: &IdempotencyKey) -> Result<Option<bool>> {
        Ok(None)
    }
}
