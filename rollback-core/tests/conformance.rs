//! The public conformance suites, run against core's own implementations.

use std::sync::Arc;

use rollback_core::testkit::{FileTarget, MemoryTarget, conformance};
use rollback_core::{Category, FileJournal, FileLock, Journal, Lock, MemoryJournal, MemoryLock, Target};

#[tokio::test]
async fn memory_target_conforms() {
    conformance::target_suite(|| async {
        Arc::new(MemoryTarget::with_versions("web", &["v1", "v2", "v3"])) as Arc<dyn Target>
    })
    .await;
}

#[tokio::test]
async fn memory_target_partial_state_is_observed() {
    let target = Arc::new(MemoryTarget::with_versions("web", &["v1", "v2", "v3"]));
    let faulty = target.clone();
    conformance::observe_between_phases(target.clone(), |change, key| async move {
        faulty.inject(rollback_core::testkit::Fault::StopBetweenPhases);
        assert!(faulty.apply(&change, &key).await.is_err());
        faulty.clear_faults();
    })
    .await;
}

#[tokio::test]
async fn file_target_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    conformance::target_suite(|| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = dir.path().join(format!("t{n}"));
        async move {
            Arc::new(FileTarget::open("web", path, &["v1", "v2", "v3"], Category::App).unwrap()) as Arc<dyn Target>
        }
    })
    .await;
}

#[tokio::test]
async fn file_target_partial_state_is_observed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t");
    let target = Arc::new(FileTarget::open("web", &path, &["v1", "v2", "v3"], Category::App).unwrap());
    conformance::observe_between_phases(target, |change, key| async move {
        // Phase 1 of apply: the staged file is written, the state is not.
        let staged = serde_json::json!({"version": change.to.id, "key": key.as_str()});
        std::fs::write(path.join("staged.json"), staged.to_string()).unwrap();
    })
    .await;
}

#[tokio::test]
async fn journals_conform() {
    conformance::journal_suite(|| async { Arc::new(MemoryJournal::new()) as Arc<dyn Journal> }).await;
    let dir = tempfile::tempdir().unwrap();
    conformance::journal_suite(|| async { Arc::new(FileJournal::open(dir.path()).unwrap()) as Arc<dyn Journal> }).await;
}

#[tokio::test]
async fn locks_conform() {
    conformance::lock_suite(|| async { Arc::new(MemoryLock::new()) as Arc<dyn Lock> }).await;
    let dir = tempfile::tempdir().unwrap();
    conformance::lock_suite(|| async { Arc::new(FileLock::new(dir.path())) as Arc<dyn Lock> }).await;
}
