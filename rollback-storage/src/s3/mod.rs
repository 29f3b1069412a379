//! S3 (any S3-compatible store): point-in-time restore from versions, mirror restore
//! from a backup prefix, version-manifest snapshots, an artifact store with
//! retention, and verifiers.

mod client;
mod digest;
pub mod listing;
mod plan;
mod restore;

pub use client::{S3, S3ClientConfig, S3Credentials};
pub use plan::{META_ROLLBACK_KEY, META_SOURCE, Progress};
pub use restore::{RestoreDiff, S3Restore, S3RestoreConfig};
mod store;
mod verify;

pub use store::{Retention, S3ArtifactStore, unfinished_runs};
pub use verify::{BucketCheck, S3BucketVerifier};
