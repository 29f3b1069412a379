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

#[tokio::test]
async fn local_dir_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = rollback_core::LocalDirStore::new(dir.path());
    conformance::artifact_store_suite(&store, "conformance").await;
}

#[tokio::test]
async fn file_snapshot_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("t");
    let target = FileTarget::open("web", &state, &["v1", "v2", "v3"], Category::App).unwrap();
    let store = rollback_core::LocalDirStore::new(dir.path().join("artifacts"));
    let snapshot = Arc::new(rollback_core::testkit::FileSnapshot::new("web-state", &state));
    let read = || async { std::fs::read_to_string(state.join("state.json")).unwrap() };
    conformance::snapshot_suite(snapshot, &store, read, || async {
        let change = target.prepare(&rollback_core::Request::To(rollback_core::Selector::Previous)).await.unwrap();
        target.apply(&change, &rollback_core::IdempotencyKey::new("mutate/fwd")).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn files_evidence_conforms_as_a_capture_only_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join(".env");
    std::fs::write(&env, "PORT=8080\nDB_PASSWORD=hunter2\n").unwrap();
    let store = rollback_core::LocalDirStore::new(dir.path().join("artifacts"));
    let config = rollback_core::local::FilesEvidenceConfig { paths: vec![env.clone()], redact_env: true };
    let snapshot = Arc::new(rollback_core::local::FilesEvidence::new("evidence", config).unwrap());
    let read = || async { std::fs::read_to_string(&env).unwrap() };
    conformance::snapshot_suite(snapshot, &store, read, || async {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_verifiers_conform() {
    use rollback_core::verify::{CommandCheck, CommandVerifier, HttpCheck, HttpVerifier, TcpVerifier};
    let timeout = std::time::Duration::from_secs(10);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed = rollback_core::testkit::outage::free_port();
    conformance::verifier_suite(
        &TcpVerifier::new("open", &listener.local_addr().unwrap().to_string()),
        &TcpVerifier::new("closed", &format!("127.0.0.1:{closed}")),
        timeout,
    )
    .await;
    let command = |argv: &[&str]| {
        let check: CommandCheck = serde_json::from_value(serde_json::json!({ "argv": argv })).expect("a command check");
        CommandVerifier::new(argv[0], check).unwrap()
    };
    conformance::verifier_suite(&command(&["true"]), &command(&["false"]), timeout).await;
    let server = rollback_core::testkit::TestHttpServer::start().await;
    server.route("/health", 200, "ok");
    server.route("/broken", 503, "down");
    let http = |path: &str| {
        let check: HttpCheck = serde_json::from_value(serde_json::json!({ "url": server.url(path) })).unwrap();
        HttpVerifier::new(path, check).unwrap()
    };
    conformance::verifier_suite(&http("/health"), &http("/broken"), timeout).await;
}
