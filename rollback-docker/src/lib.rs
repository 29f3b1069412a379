//! rollback backend for Docker: containers and compose services rolled back by image.
//!
//! - [`ContainerTarget`] (kind `docker-container`): a container, or a compose service
//!   found by its labels, recreated with an earlier image ID and the same
//!   configuration, in phases that `observe` tells apart after a crash;
//! - [`ServiceTraffic`] (kind `docker-traffic`): stop and start a service's containers;
//! - [`ComposeFiles`] (kind `docker-compose-files`): runbook 002's emergency path —
//!   restore the compose file and `.env` from timestamped backups and converge the
//!   project with the compose CLI;
//! - [`ContainerHealth`] (verifier kind `docker-health`) and [`ContainerSnapshot`]
//!   (snapshot kind `docker-evidence`);
//! - [`project_stages`]: several services of a project in dependency order, each
//!   stage in parallel under a limit.
//!
//! ```no_run
//! # async fn demo() -> rollback_core::Result<()> {
//! use rollback_core::{Request, Selector, Target, IdempotencyKey};
//! use rollback_docker::{ContainerTarget, ContainerTargetConfig};
//! let api = ContainerTarget::new("api", ContainerTargetConfig::compose("shop", "api"))?;
//! let change = api.prepare(&Request::To(Selector::Previous)).await?; // resolves to an image ID
//! api.apply(&change, &IdempotencyKey::new("run-1/api")).await?;
//! # Ok(()) }
//! ```

mod api;
mod carry;
mod compose;
mod container;
mod error;
mod health;
mod images;
mod project;
mod recreate;
mod select;
mod snapshot;
#[cfg(feature = "testkit")]
pub mod testkit;
mod traffic;

pub use api::{DockerApi, DockerEndpoint};
pub use compose::{ComposeFiles, ComposeFilesConfig};
pub use container::{ContainerTarget, ContainerTargetConfig};
pub use health::{ContainerHealth, ContainerHealthConfig};
pub use images::repository_of;
pub use project::{ServiceRollback, project_stages};
pub use recreate::Order;
pub use select::{ComposeService, Locator};
pub use snapshot::{ContainerSnapshot, ContainerSnapshotConfig};
pub use traffic::{ServiceTraffic, ServiceTrafficConfig};

use rollback_core::Registry;

/// Registers the target kinds `docker-container`, `docker-traffic` and
/// `docker-compose-files`, the verifier kind `docker-health` and the snapshot kind
/// `docker-evidence`.
///
/// ```
/// let mut registry = rollback_core::Registry::new();
/// rollback_docker::register(&mut registry);
/// assert!(format!("{registry:?}").contains("docker-container"));
/// ```
pub fn register(registry: &mut Registry) {
    registry.target_kind::<ContainerTarget>().target_kind::<ServiceTraffic>().target_kind::<ComposeFiles>();
    registry.verifier_kind::<ContainerHealth>().snapshot_kind::<ContainerSnapshot>();
}

rollback_core::impl_kind!(ContainerTarget, "docker-container", ContainerTargetConfig, new);
rollback_core::impl_kind!(ServiceTraffic, "docker-traffic", ServiceTrafficConfig, new);
rollback_core::impl_kind!(ComposeFiles, "docker-compose-files", ComposeFilesConfig, new);
rollback_core::impl_kind!(ContainerHealth, "docker-health", ContainerHealthConfig, new);
rollback_core::impl_kind!(ContainerSnapshot, "docker-evidence", ContainerSnapshotConfig, new);
