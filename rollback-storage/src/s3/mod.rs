//! S3 (any S3-compatible store): point-in-time restore from versions, mirror restore
//! from a backup prefix, version-manifest and copy snapshots, an artifact store with
//! retention, and verifiers.
//!
//! ## Memory: what streams and what grows
//!
//! - **Listings stream.** Planning a point-in-time restore holds one page of
//!   ListObjectVersions (1,000 entries) plus one key's versions; mirror plans,
//!   manifest restores and `observe` merge-join key-ordered ListObjectsV2 pages
//!   (one page per side). Unchanged objects cost nothing beyond their page.
//! - **The plan grows with the keys that change — by design.** `prepare` resolves
//!   every changed key once into a row (key, prepared ETag, source, version, target
//!   ETag) and the rows are journaled in the change's payload, so resume never
//!   re-resolves them. That is O(changed keys): about 150 bytes of JSON per key in
//!   the journal, and in memory the `Change`'s JSON value plus one typed copy while
//!   applying (plus an index per row in `observe`). Benchmark (b) in
//!   `benches/storage.rs` measures the peak for a 1 % and a 100 % restore at each
//!   bucket size.
//! - **`S3Restore::history` is O(versions)** (about 40 bytes per version, no strings):
//!   revisions are ordered across keys by time. Only `Previous`, `Back(n)` and
//!   `Exact(id)` call it; `Before(t)` and the `restore_at` action do not.
//! - `S3Mirror::history` streams one backup set at a time (O(sets)).
//! - A version manifest is held as bytes (about 100 bytes per object) because
//!   [`rollback_core::ArtifactStore`] takes and returns buffers.

mod client;
mod digest;
mod guard;
pub mod listing;
mod mirror;
mod plan;
mod restore;
mod snapshot;
mod store;
mod sync;
mod verify;

pub use client::{S3, S3ClientConfig, S3Credentials};
pub use guard::WriteGuard;
pub use mirror::{BackupLocation, S3Mirror, S3MirrorConfig};
pub use plan::{Progress, TAG_RESTORE, restore_stamp};
pub use restore::{RestoreDiff, S3Restore, S3RestoreConfig};
pub use snapshot::{S3CopyConfig, S3CopySnapshot, S3VersionManifest, S3VersionManifestConfig};
pub use store::{Retention, S3ArtifactStore, unfinished_runs};
pub use sync::MirrorDiff;
pub use verify::{BucketCheck, S3BucketVerifier, S3BucketVerifierConfig};
