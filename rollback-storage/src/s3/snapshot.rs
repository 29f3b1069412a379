//! S3 snapshots (kinds `s3-version-manifest` and `s3-copy`).
//!
//! - [`S3VersionManifest`]: cheap — writes `key → version id + ETag` of every current
//!   object under a prefix into the artifact store (about 100 bytes per object, no
//!   object is copied). Restoring makes exactly those versions current again (a
//!   point-in-time restore to the manifest: copy each listed version over its key
//!   where the ETag differs, a delete marker for keys created since). Needs
//!   versioning, and the versions must still exist (a lifecycle rule expiring
//!   noncurrent versions breaks it: the restore then fails naming the key).
//! - [`S3CopySnapshot`]: copies every current object to a backup prefix
//!   (`<backups.prefix><capture key>/`), server-side, like the runbook's
//!   `mc mirror prod prod-old`; works on unversioned buckets. Restoring mirrors the
//!   copy back (overwrite differing keys, delete keys created since).
//!
//! Both are idempotent: capturing again with the same key rewrites the manifest or
//! copies only what differs; a restore re-plans from the bucket, so running it again
//! after a crash finishes the remaining keys only. Restores stamp
//! `<capture key>/restore` into the copies' metadata.

use async_trait::async_trait;
use rollback_core::{ArtifactStore, Error, ErrorKind, IdempotencyKey, Result, Snapshot, SnapshotRef};
use serde::{Deserialize, Serialize};

use super::digest::StateDigest;
use super::listing::for_each_key;
use super::plan::{self, ExecOptions};
use super::sync::{ManifestEntry, Place, SyncPlan, plan_manifest, plan_mirror};
use super::{S3, S3ClientConfig};

/// Config of an `s3-version-manifest` snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct S3VersionManifestConfig {
    /// The bucket (versioning must be enabled).
    pub bucket: String,
    /// Only keys under this prefix (default: the whole bucket).
    #[serde(default)]
    pub prefix: String,
    /// Parallel copies on restore (default 16).
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// The connection.
    #[serde(default)]
    pub client: S3ClientConfig,
}

/// Config of an `s3-copy` snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct S3CopyConfig {
    /// The bucket to copy.
    pub bucket: String,
    /// Only keys under this prefix (default: the whole bucket).
    #[serde(default)]
    pub prefix: String,
    /// Where copies go: bucket (same endpoint) and a root prefix; each capture gets a folder.
    pub backup_bucket: String,
    /// The root prefix of the copies.
    #[serde(default)]
    pub backup_prefix: String,
    /// Parallel copies (default 16).
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// The connection.
    #[serde(default)]
    pub client: S3ClientConfig,
}

/// What a capture records in its [`SnapshotRef::metadata`] (no secrets).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    bucket: String,
    prefix: String,
    /// Where the copy is (`s3-copy` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backup_bucket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backup_prefix: Option<String>,
    objects: u64,
    /// Content digest over keys relative to the prefix.
    digest: String,
    /// The capture's idempotency key; restores stamp `<key>/restore`.
    key: String,
}

fn folder_name(key: &IdempotencyKey) -> String {
    key.as_str()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
        .collect()
}

fn meta_of(snapshot: &SnapshotRef) -> Result<Meta> {
    serde_json::from_value(snapshot.metadata.clone())
        .map_err(|e| Error::invalid_input(format!("snapshot {} has bad metadata: {e}", snapshot.snapshot)))
}

async fn run_plan(s3: &S3, plan: &SyncPlan, key: &IdempotencyKey, options: ExecOptions) -> Result<u64> {
    let all = (0..plan.payload.rows.len()).collect();
    plan::execute(s3, &plan.payload, all, key, options).await
}

/// A version manifest of a versioned bucket or prefix (see the module docs).
#[derive(Debug)]
pub struct S3VersionManifest {
    name: String,
    s3: S3,
    config: S3VersionManifestConfig,
}

impl S3VersionManifest {
    /// A manifest snapshotter.
    pub fn new(name: &str, s3: S3, config: S3VersionManifestConfig) -> Result<Self> {
        if config.bucket.len() < 3 {
            return Err(Error::invalid_input(format!("bucket name {:?} is too short", config.bucket))
                .with_context("snapshot", name));
        }
        Ok(S3VersionManifest { name: name.to_owned(), s3, config })
    }
}

#[async_trait]
impl Snapshot for S3VersionManifest {
    fn name(&self) -> &str {
        &self.name
    }

    /// Streams the version listing into JSON lines (`{"k","v","e"}` in key order);
    /// memory is the manifest's bytes (the artifact store takes a buffer).
    async fn capture(&self, store: &dyn ArtifactStore, key: &IdempotencyKey) -> Result<SnapshotRef> {
        let c = &self.config;
        if !self.s3.versioning_enabled(&c.bucket).await? {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "bucket {} does not have versioning enabled: a version manifest needs it (use s3-copy)",
                    c.bucket
                ),
            )
            .with_context("snapshot", &self.name));
        }
        let mut bytes = Vec::new();
        let mut digest = StateDigest::default();
        for_each_key(&self.s3, &c.bucket, &c.prefix, |kv| {
            if let Some(e) = kv.current() {
                let entry = ManifestEntry {
                    k: kv.key[c.prefix.len()..].to_owned(),
                    v: e.version_id.clone(),
                    e: e.etag.clone().unwrap_or_default(),
                };
                digest.add(&entry.k, Some(&entry.e));
                serde_json::to_writer(&mut bytes, &entry).map_err(|e| Error::internal(e.to_string()))?;
                bytes.push(b'\n');
            }
            Ok(())
        })
        .await?;
        let artifact = format!("{}/{}/manifest.jsonl", folder_name(key), self.name);
        let size = bytes.len();
        store.put(&artifact, bytes).await?;
        let meta = Meta {
            bucket: c.bucket.clone(),
            prefix: c.prefix.clone(),
            backup_bucket: None,
            backup_prefix: None,
            objects: digest.count(),
            digest: digest.id(),
            key: key.as_str().to_owned(),
        };
        Ok(SnapshotRef {
            snapshot: self.name.clone(),
            artifacts: vec![artifact],
            taken_at: chrono::Utc::now(),
            description: format!(
                "version manifest of s3://{}/{}: {} objects ({size} bytes)",
                c.bucket,
                c.prefix,
                digest.count()
            ),
            metadata: serde_json::to_value(&meta).map_err(|e| Error::internal(e.to_string()))?,
        })
    }

    async fn restore(&self, snapshot: &SnapshotRef, store: &dyn ArtifactStore) -> Result<()> {
        let meta = meta_of(snapshot)?;
        let artifact = snapshot.artifacts.first().ok_or_else(|| Error::not_found("the snapshot has no manifest"))?;
        let bytes = store.get(artifact).await?;
        let mut entries = Vec::new();
        for (n, line) in bytes.split(|b| *b == b'\n').enumerate().filter(|(_, l)| !l.is_empty()) {
            entries.push(
                serde_json::from_slice::<ManifestEntry>(line)
                    .map_err(|e| Error::new(ErrorKind::Corrupt, format!("manifest {artifact} line {}: {e}", n + 1)))?,
            );
        }
        let dst = Place { bucket: &meta.bucket, prefix: &meta.prefix };
        let plan = plan_manifest(&self.s3, dst, &entries).await?;
        drop(entries);
        let key = IdempotencyKey::new(format!("{}/restore", meta.key));
        let n = run_plan(
            &self.s3,
            &plan,
            &key,
            ExecOptions::new(self.config.concurrency, None, self.config.client.write_guard),
        )
        .await?;
        tracing::info!(snapshot = %self.name, restored = n, "restored a version manifest");
        Ok(())
    }
}

/// A server-side copy of a bucket or prefix to a backup prefix (see the module docs).
#[derive(Debug)]
pub struct S3CopySnapshot {
    name: String,
    s3: S3,
    config: S3CopyConfig,
}

impl S3CopySnapshot {
    /// A copy snapshotter; refuses a backup location overlapping the source.
    pub fn new(name: &str, s3: S3, mut config: S3CopyConfig) -> Result<Self> {
        for bucket in [&config.bucket, &config.backup_bucket] {
            if bucket.len() < 3 {
                return Err(
                    Error::invalid_input(format!("bucket name {bucket:?} is too short")).with_context("snapshot", name)
                );
            }
        }
        if !config.backup_prefix.is_empty() && !config.backup_prefix.ends_with('/') {
            config.backup_prefix.push('/');
        }
        Place { bucket: &config.bucket, prefix: &config.prefix }
            .check_disjoint(&Place { bucket: &config.backup_bucket, prefix: &config.backup_prefix })
            .map_err(|e| e.with_context("snapshot", name))?;
        Ok(S3CopySnapshot { name: name.to_owned(), s3, config })
    }
}

#[async_trait]
impl Snapshot for S3CopySnapshot {
    fn name(&self) -> &str {
        &self.name
    }

    async fn capture(&self, store: &dyn ArtifactStore, key: &IdempotencyKey) -> Result<SnapshotRef> {
        let c = &self.config;
        let copy_prefix = format!("{}{}/", c.backup_prefix, folder_name(key));
        let src = Place { bucket: &c.bucket, prefix: &c.prefix };
        let dst = Place { bucket: &c.backup_bucket, prefix: &copy_prefix };
        let plan = plan_mirror(&self.s3, dst, src, true).await?;
        let copied =
            run_plan(&self.s3, &plan, key, ExecOptions::new(c.concurrency, None, c.client.write_guard)).await?;
        let meta = Meta {
            bucket: c.bucket.clone(),
            prefix: c.prefix.clone(),
            backup_bucket: Some(c.backup_bucket.clone()),
            backup_prefix: Some(copy_prefix.clone()),
            objects: plan.to.count(),
            digest: plan.to.id(),
            key: key.as_str().to_owned(),
        };
        let metadata = serde_json::to_value(&meta).map_err(|e| Error::internal(e.to_string()))?;
        let artifact = format!("{}/{}/copy.json", folder_name(key), self.name);
        store.put(&artifact, serde_json::to_vec_pretty(&metadata).map_err(|e| Error::internal(e.to_string()))?).await?;
        Ok(SnapshotRef {
            snapshot: self.name.clone(),
            artifacts: vec![artifact],
            taken_at: chrono::Utc::now(),
            description: format!(
                "copy of s3://{}/{} to s3://{}/{copy_prefix}: {} objects ({copied} copied now)",
                c.bucket,
                c.prefix,
                c.backup_bucket,
                plan.to.count()
            ),
            metadata,
        })
    }

    async fn restore(&self, snapshot: &SnapshotRef, _store: &dyn ArtifactStore) -> Result<()> {
        let meta = meta_of(snapshot)?;
        let (Some(bb), Some(bp)) = (&meta.backup_bucket, &meta.backup_prefix) else {
            return Err(Error::invalid_input(format!("snapshot {} is not an s3-copy", snapshot.snapshot)));
        };
        let src = Place { bucket: bb, prefix: bp };
        let dst = Place { bucket: &meta.bucket, prefix: &meta.prefix };
        let plan = plan_mirror(&self.s3, dst, src, true).await?;
        if plan.to.id() != meta.digest {
            return Err(Error::new(
                ErrorKind::Diverged,
                format!(
                    "the copy at s3://{bb}/{bp} no longer holds what was captured ({} objects then, {} now): refusing \
                     to restore from it",
                    meta.objects,
                    plan.to.count()
                ),
            ));
        }
        let key = IdempotencyKey::new(format!("{}/restore", meta.key));
        let n = run_plan(
            &self.s3,
            &plan,
            &key,
            ExecOptions::new(self.config.concurrency, None, self.config.client.write_guard),
        )
        .await?;
        tracing::info!(snapshot = %self.name, restored = n, "restored an s3 copy");
        Ok(())
    }
}
