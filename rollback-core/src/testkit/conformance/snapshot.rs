//! The snapshot suite: capture, then restore what was captured, observed by key.

use std::future::Future;
use std::sync::Arc;

use crate::{ArtifactStore, IdempotencyKey, Snapshot};

/// Captures with `snapshot` into `store`, lets `mutate` change the backend, and — if
/// the snapshot restores — restores and checks with `state` that the backend is back
/// as captured. The `restore_keyed`/`restored` contract (which the compensation kill
/// points once found broken): `restored(key)` is not `Some(true)` before the restore
/// and, where the backend can tell, `Some(true)` after it; restoring again with the
/// same key leaves the backend as it is.
pub async fn snapshot_suite<S, SF, M, MF>(snapshot: Arc<dyn Snapshot>, store: &dyn ArtifactStore, state: S, mutate: M)
where
    S: Fn() -> SF,
    SF: Future<Output = String>,
    M: FnOnce() -> MF,
    MF: Future<Output = ()>,
{
    // Keys of their own: a backend keeps its stamps across test runs.
    let run = crate::RunId::generate();
    let captured_state = state().await;
    let key = IdempotencyKey::new(format!("conformance-{run}/snapshot/fwd"));
    let taken = snapshot.capture(store, &key).await.expect("capture");
    assert_eq!(taken.snapshot, snapshot.name(), "the reference names its snapshot");
    assert_eq!(state().await, captured_state, "capture changed the backend");
    for artifact in &taken.artifacts {
        crate::artifact::validate_key(artifact).expect("artifact keys are valid");
        store.get(artifact).await.expect("every artifact named is in the store");
    }
    mutate().await;
    let restore_key = IdempotencyKey::new(format!("conformance-{run}/snapshot/restore"));
    let before = snapshot.restored(&taken, &restore_key).await.expect("restored");
    assert_ne!(before, Some(true), "restored() says done before any restore");
    match snapshot.restore_keyed(&taken, store, &restore_key).await {
        Err(e) if e.kind() == crate::ErrorKind::Unsupported => return,
        Err(e) => panic!("restore: {e}"),
        Ok(()) => {}
    }
    assert_eq!(state().await, captured_state, "the restore did not bring back what was captured");
    let observed = snapshot.restored(&taken, &restore_key).await.expect("restored");
    assert!(observed != Some(false), "restored() says not done after the restore");
    if observed == Some(true) {
        // The engine would skip it; a resume that restores anyway must not change it.
        snapshot.restore_keyed(&taken, store, &restore_key).await.expect("restore again");
        assert_eq!(state().await, captured_state, "restoring again with the same key changed the backend");
    }
}
