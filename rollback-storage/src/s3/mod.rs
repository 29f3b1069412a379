//! S3 (any S3-compatible store): point-in-time restore from versions, mirror restore
//! from a backup prefix, version-manifest and copy snapshots, an artifact store with
//! retention, and verifiers.

mod client;
mod digest;
pub mod listing;
mod mirror;
mod plan;
mod restore;
mod snapshot;
mod store;
mod sync;
mod verify;

pub use client::{S3, S3ClientConfig, S3Credentials};
pub use mirror::{BackupLocation, S3Mirror, S3MirrorConfig};
pub use plan::{META_ROLLBACK_KEY, META_SOURCE, Progress};
pub use restore::{RestoreDiff, S3Restore, S3RestoreConfig};
pub use snapshot::{S3CopyConfig, S3CopySnapshot, S3VersionManifest, S3VersionManifestConfig};
pub use store::{Retention, S3ArtifactStore, unfinished_runs};
pub use sync::MirrorDiff;
pub use verify::{BucketCheck, S3BucketVerifier};
