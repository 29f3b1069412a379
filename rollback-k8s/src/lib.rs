//! Kubernetes backend for `rollback`, on `kube` and `k8s-openapi`.
//!
//! - [`DeploymentTarget`] (`k8s-deployment`): history from the ReplicaSets a Deployment
//!   controls; undo to the previous or a given revision as `kubectl rollout undo` does
//!   (paused → a clear error, template already matching → no-op), but compare-and-swap:
//!   a JSON-patch `test` on `resourceVersion`, the run key in an annotation; waits like
//!   `kubectl rollout status` (`ProgressDeadlineExceeded` is a failure).
//! - Traffic: [`ScaleTarget`] (`k8s-scale`: to zero and back to the recorded count),
//!   [`ServiceSelectorTarget`] (`k8s-service-selector`: block and restore),
//!   [`CanaryTarget`] (`k8s-canary`: canary to 0, stable up).
//! - [`DeploymentSnapshot`] (`k8s-deployment` snapshot): the Deployment, its ReplicaSets,
//!   events and recent pod logs as evidence; the ConfigMaps (into the store) and Secrets
//!   (copied inside the cluster, never exported) its template uses, restored together
//!   with the template.
//! - [`LeaseLock`]: a `rollback_core::Lock` on `coordination.k8s.io/v1` Leases with
//!   expiry and fencing tokens.
//! - `double` (feature `api-double`): a Kubernetes API double on 127.0.0.1 with a
//!   deployment-controller emulation, to test plans without a cluster.
//!
//! Errors from `kube` become `rollback_core::Error`s in one place (`error.rs`).

mod canary;
mod cluster;
mod deployment;
#[cfg(feature = "api-double")]
pub mod double;
mod error;
mod hpa;
mod lease;
pub mod rollout;
mod scale;
mod selector;
mod snapshot;
mod wait;

pub use canary::{CanaryConfig, CanaryTarget};
pub use cluster::{
    Cluster, ClusterConfig, DEPLOYED_AT_ANNOTATION, FIELD_MANAGER, SELECTOR_KEY_ANNOTATION, UNDO_KEY_ANNOTATION,
};
pub use deployment::{DeploymentConfig, DeploymentTarget, WaitConfig};
pub use hpa::HpaPolicy;
pub use lease::{LeaseLock, LeaseLockConfig};
pub use scale::{ScaleConfig, ScaleTarget};
pub use selector::{BLOCKED_LABEL, ServiceSelectorConfig, ServiceSelectorTarget};
pub use snapshot::{DeploymentSnapshot, DeploymentSnapshotConfig, SecretCopy};

use rollback_core::Registry;

/// Registers the target kinds `k8s-deployment`, `k8s-scale`, `k8s-service-selector`,
/// `k8s-canary` and the snapshot kind `k8s-deployment`. Each spec's config takes a
/// `cluster = { kubeconfig, context }` or `cluster = { url }` (default: inferred).
///
/// ```
/// let mut registry = rollback_core::Registry::new();
/// rollback_k8s::register(&mut registry);
/// assert!(format!("{registry:?}").contains("k8s-service-selector"));
/// ```
pub fn register(registry: &mut Registry) {
    registry
        .target_kind::<DeploymentTarget>()
        .target_kind::<ScaleTarget>()
        .target_kind::<ServiceSelectorTarget>()
        .target_kind::<CanaryTarget>()
        .snapshot_kind::<DeploymentSnapshot>();
}

rollback_core::impl_kind!(DeploymentTarget, "k8s-deployment", DeploymentConfig, connect);
rollback_core::impl_kind!(ScaleTarget, "k8s-scale", ScaleConfig, connect);
rollback_core::impl_kind!(ServiceSelectorTarget, "k8s-service-selector", ServiceSelectorConfig, connect);
rollback_core::impl_kind!(CanaryTarget, "k8s-canary", CanaryConfig, connect);
rollback_core::impl_kind!(DeploymentSnapshot, "k8s-deployment", DeploymentSnapshotConfig, connect);
