//! Runnable examples of `rollback`: the quickstart on the embedded default (its
//! logic lives here so a test can assert its outcome), and the plan runner.

pub mod quickstart;

/// A registry with every kind this repository ships: core's local targets and
/// built-in verifiers, and the db, docker, storage and k8s backends — what the plan
/// runner builds plans from.
///
/// ```
/// let registry = rollback_examples::every_kind();
/// let kinds = format!("{registry:?}");
/// assert!(kinds.contains("docker-container") && kinds.contains("k8s-deployment") && kinds.contains("s3-restore"));
/// ```
pub fn every_kind() -> rollback_core::Registry {
    let mut registry = rollback_core::Registry::new();
    rollback_core::local::register_local_kinds(&mut registry);
    rollback_core::verify::register_builtin_verifiers(&mut registry);
    rollback_db::register(&mut registry);
    rollback_docker::register(&mut registry);
    rollback_storage::register(&mut registry);
    rollback_k8s::register(&mut registry);
    registry
}
