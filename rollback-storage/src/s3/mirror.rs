//! Mirror restore (kind `s3-mirror`): put a bucket or prefix back from a backup
//! prefix, the runbook's
//! `mc mirror minio-backup/<backups>/2025-10-16-180000/<path> minio-prod/<bucket>`.
//!
//! Backups are sets under a root: `s3://<backups.bucket>/<backups.prefix><set>/<backups.path>`,
//! one set per immediate sub-folder of the root (`2025-10-16-180000/`), or the root
//! itself with `sets = false`. The target is versioned: its history is the live
//! state (newest, when it equals no backup) followed by the backups, newest first —
//! a set's time is parsed from its name (`2025-10-16-180000`, `20251016T180000Z`,
//! RFC 3339, `2025-10-16`), else it is the newest `LastModified` inside it. Versions
//! are content digests over keys relative to the prefixes, so "the live state equals
//! backup X" is exact.
//!
//! `prepare` resolves the backup once and plans every key absolutely (copy the
//! backup's object where the ETag differs or the key is missing; a delete marker
//! for keys the backup does not hold, unless `delete_extra = false`); on a versioned
//! destination nothing is destroyed. Snapshot the live contents first with an
//! `s3-copy` snapshot step (the runbook's "mirror prod to prod-…-old"), declared as
//! the step's `undo = { restore_from = … }`.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use rollback_core::{
    Capabilities, Category, Change, Error, ErrorKind, IdempotencyKey, Identity, Observed, Request, Result,
    Reversibility, Revision, Selector, Target, TargetId, Version,
};
use serde::{Deserialize, Serialize};

use super::digest::StateDigest;
use super::listing::{CurrentObjects, sub_prefixes};
use super::plan::{self, ExecOptions, Progress, RestorePayload};
use super::sync::{MirrorDiff, Place, plan_mirror};
use super::{S3, S3ClientConfig};

fn yes() -> bool {
    true
}

/// Where the backups are.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BackupLocation {
    /// The bucket holding the backups (may be the destination's bucket, outside its prefix).
    pub bucket: String,
    /// The root holding one sub-folder per backup set (default: the bucket's root).
    #[serde(default)]
    pub prefix: String,
    /// The path inside each set that mirrors the destination (`prod-corporate-documents/`).
    #[serde(default)]
    pub path: String,
    /// Whether the root holds dated sets (default) or is itself the one backup.
    #[serde(default = "yes")]
    pub sets: bool,
}

/// Config of an `s3-mirror` target.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct S3MirrorConfig {
    /// The bucket to restore.
    pub bucket: String,
    /// Only keys under this prefix (default: the whole bucket; a `/` is appended).
    #[serde(default)]
    pub prefix: String,
    /// Where the backups are.
    pub backups: BackupLocation,
    /// Give keys absent from the backup a delete marker (`mc mirror --remove`; default true).
    #[serde(default = "yes")]
    pub delete_extra: bool,
    /// Allow a destination without versioning (overwrites then destroy: snapshot first).
    #[serde(default)]
    pub allow_unversioned: bool,
    /// Parallel copies (default 16).
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// Attempts per key on retryable errors (default 4).
    #[serde(default)]
    pub attempts: Option<u32>,
    /// The connection (backups must be reachable through the same endpoint: copies are server-side).
    #[serde(default)]
    pub client: S3ClientConfig,
}

/// Appends a `/` to a non-empty prefix, so relative keys of both sides compare.
fn folder(prefix: &str) -> String {
    let p = prefix.trim_start_matches('/');
    if p.is_empty() || p.ends_with('/') { p.to_owned() } else { format!("{p}/") }
}

/// Parses a backup set's name as a time, in the formats backup scripts use.
pub(crate) fn parse_set_time(name: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(name) {
        return Some(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%d-%H%M%S", "%Y%m%dT%H%M%SZ", "%Y%m%d-%H%M%S", "%Y-%m-%dT%H%M%S", "%Y%m%d%H%M%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(name, format) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(name, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc())
}

/// One backup set and what it holds.
struct BackupSet {
    name: String,
    digest: StateDigest,
    created: Option<DateTime<Utc>>,
}

/// Restores a bucket or prefix from a backup prefix (`mc mirror`), without
/// destroying anything on a versioned bucket.
///
/// Requests: `To(Previous | Back(n) | Before(t) | Exact(set name or version id))` over
/// [`Target::history`], or `Action { action: "mirror", params: {"backup": "<set>"} }`.
#[derive(Debug)]
pub struct S3Mirror {
    name: TargetId,
    s3: S3,
    config: S3MirrorConfig,
}

impl S3Mirror {
    /// A mirror target over `s3`. Refuses short bucket names and a backup location
    /// overlapping the destination.
    pub fn new(name: &str, s3: S3, mut config: S3MirrorConfig) -> Result<Self> {
        for bucket in [&config.bucket, &config.backups.bucket] {
            if bucket.len() < 3 {
                return Err(
                    Error::invalid_input(format!("bucket name {bucket:?} is too short")).with_context("target", name)
                );
            }
        }
        if config.concurrency == Some(0) {
            return Err(Error::invalid_input("concurrency must be at least 1").with_context("target", name));
        }
        config.prefix = folder(&config.prefix);
        config.backups.prefix = folder(&config.backups.prefix);
        config.backups.path = folder(&config.backups.path);
        let dst = Place { bucket: &config.bucket, prefix: &config.prefix };
        dst.check_disjoint(&Place { bucket: &config.backups.bucket, prefix: &config.backups.prefix })
            .map_err(|e| e.with_context("target", name))?;
        Ok(S3Mirror { name: TargetId::new(name), s3, config })
    }

    fn dst(&self) -> Place<'_> {
        Place { bucket: &self.config.bucket, prefix: &self.config.prefix }
    }

    /// The prefix of backup set `set` (`""` when `sets = false`).
    fn set_prefix(&self, set: &str) -> String {
        let b = &self.config.backups;
        if b.sets { format!("{}{set}/{}", b.prefix, b.path) } else { format!("{}{}", b.prefix, b.path) }
    }

    /// The backup set names, in listing order.
    pub async fn backups(&self) -> Result<Vec<String>> {
        let b = &self.config.backups;
        if !b.sets {
            return Ok(vec![String::new()]);
        }
        let sets = sub_prefixes(&self.s3, &b.bucket, &b.prefix).await?;
        Ok(sets.into_iter().map(|p| p[b.prefix.len()..].trim_end_matches('/').to_owned()).collect())
    }

    async fn digest(&self, bucket: &str, prefix: &str) -> Result<(StateDigest, i64)> {
        let mut list = CurrentObjects::new(&self.s3, bucket, prefix);
        let mut digest = StateDigest::default();
        let mut newest = 0;
        while let Some(o) = list.next().await? {
            digest.add(o.key.strip_prefix(prefix).unwrap_or(&o.key), Some(&o.etag));
            newest = newest.max(o.modified_ms);
        }
        Ok((digest, newest))
    }

    async fn set(&self, name: &str) -> Result<BackupSet> {
        let (digest, newest) = self.digest(&self.config.backups.bucket, &self.set_prefix(name)).await?;
        let created = parse_set_time(name).or_else(|| (newest > 0).then(|| DateTime::from_timestamp_millis(newest))?);
        Ok(BackupSet { name: name.to_owned(), digest, created })
    }

    fn label(name: &str) -> String {
        if name.is_empty() { "backup".to_owned() } else { name.to_owned() }
    }

    /// The dry-run diff of mirroring backup set `set` over the destination. Changes nothing.
    pub async fn diff(&self, set: &str) -> Result<MirrorDiff> {
        let src_prefix = self.set_prefix(set);
        let src = Place { bucket: &self.config.backups.bucket, prefix: &src_prefix };
        Ok(plan_mirror(&self.s3, self.dst(), src, self.config.delete_extra).await?.diff)
    }

    /// Per-key progress of a prepared change.
    pub async fn progress(&self, change: &Change, key: &IdempotencyKey) -> Result<Progress> {
        Ok(plan::observe(&self.s3, &RestorePayload::from_change(change)?, key).await?.0)
    }

    /// Resolves a request to a backup set name.
    async fn resolve(&self, request: &Request) -> Result<(String, String)> {
        match request {
            Request::Action { action, params } if action == "mirror" => {
                let set = params.get("backup").and_then(|v| v.as_str()).ok_or_else(|| {
                    Error::invalid_input("mirror needs {\"backup\": \"<set name>\"}").with_context("target", &self.name)
                })?;
                if !self.backups().await?.iter().any(|s| s == set) {
                    return Err(Error::not_found(format!("no backup set {set:?} under {}", self.backups_location()))
                        .with_context("target", &self.name));
                }
                Ok((set.to_owned(), format!("from backup {set}")))
            }
            Request::To(Selector::Exact(name)) if self.backups().await?.iter().any(|s| s == name) => {
                Ok((name.clone(), format!("from backup {name}")))
            }
            Request::To(selector) => {
                let current = self.current().await?;
                let history = self.history().await?;
                let revision = selector.resolve(&history, &current)?;
                let set = revision.version.label.clone().unwrap_or_default();
                let set = if set == "backup" && !self.config.backups.sets { String::new() } else { set };
                Ok((set.clone(), format!("{selector} = backup {}", Self::label(&set))))
            }
            other => Err(Error::invalid_input(format!("s3-mirror cannot {other}")).with_context("target", &self.name)),
        }
    }

    fn backups_location(&self) -> String {
        format!("s3://{}/{}", self.config.backups.bucket, self.config.backups.prefix)
    }
}

#[async_trait]
impl Target for S3Mirror {
    fn name(&self) -> &TargetId {
        &self.name
    }

    fn kind(&self) -> &str {
        <Self as rollback_core::kind::Kind>::KIND
    }

    fn category(&self) -> Category {
        Category::Data
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { versioned: true, converges_from_partial: true }
    }

    async fn identity(&self) -> Result<Identity> {
        if !self.config.allow_unversioned && !self.s3.versioning_enabled(&self.config.bucket).await? {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "bucket {} does not have versioning enabled: a mirror would destroy the objects it overwrites; \
                     enable versioning, or set allow_unversioned = true and take an s3-copy snapshot first",
                    self.config.bucket
                ),
            ));
        }
        self.s3.client().head_bucket().bucket(&self.config.backups.bucket).send().await.map_err(|e| {
            crate::error::s3("head backup bucket", e).with_context("bucket", &self.config.backups.bucket)
        })?;
        Ok(Identity::new(format!(
            "s3 {} bucket {} prefix {:?} from backups {}",
            self.s3.endpoint(),
            self.config.bucket,
            self.config.prefix,
            self.backups_location()
        )))
    }

    async fn current(&self) -> Result<Version> {
        Ok(Version::new(self.digest(&self.config.bucket, &self.config.prefix).await?.0.id()))
    }

    /// The live state (when it equals no backup), then the backups newest first. An
    /// empty backup set is listed but unavailable: mirroring it would delete everything.
    /// Cost: one listing of every backup set.
    async fn history(&self) -> Result<Vec<Revision>> {
        let current = self.current().await?;
        let mut sets = Vec::new();
        for name in self.backups().await? {
            sets.push(self.set(&name).await?);
        }
        sets.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| b.name.cmp(&a.name)));
        let mut revisions = Vec::new();
        if !sets.iter().any(|s| s.digest.id() == current.id) {
            revisions.push(Revision::new(Version::labeled(current.id.clone(), "live"), "the live contents"));
        }
        for set in sets {
            let label = Self::label(&set.name);
            let mut revision = Revision::new(
                Version::labeled(set.digest.id(), label.clone()),
                format!("backup {label}: {} objects", set.digest.count()),
            );
            revision.created = set.created;
            revision.available = set.digest.count() > 0;
            revisions.push(revision);
        }
        Ok(revisions)
    }

    async fn prepare(&self, request: &Request) -> Result<Change> {
        let (set, how) = self.resolve(request).await?;
        let src_prefix = self.set_prefix(&set);
        let src = Place { bucket: &self.config.backups.bucket, prefix: &src_prefix };
        let plan = plan_mirror(&self.s3, self.dst(), src, self.config.delete_extra).await?;
        if plan.to.count() == 0 {
            return Err(Error::invalid_input(format!(
                "backup s3://{}/{src_prefix} is empty: refusing to mirror it (it would remove every object)",
                src.bucket
            ))
            .with_context("target", &self.name));
        }
        if plan.payload.rows.is_empty() {
            return Err(Error::already_done(format!(
                "{} already holds backup {}: nothing to restore",
                self.name,
                Self::label(&set)
            )));
        }
        let d = &plan.diff;
        let description = format!(
            "{}: mirror s3://{}/{src_prefix} over s3://{}/{} ({how}): {} keys overwritten, {} copied in, {} absent \
             from the backup get a delete marker, {} kept, {} unchanged",
            self.name,
            src.bucket,
            self.config.bucket,
            self.config.prefix,
            d.overwritten,
            d.created,
            d.removed,
            d.kept,
            d.unchanged
        );
        let versioned = !self.config.allow_unversioned || self.s3.versioning_enabled(&self.config.bucket).await?;
        Ok(Change::new(
            self.name.clone(),
            "s3-mirror",
            Some(Version::new(plan.from.id())),
            Version::labeled(plan.to.id(), Self::label(&set)),
        )
        .describe(description)
        .with_reversibility(Reversibility::NeedsSnapshot)
        .with_data_loss(d.data_loss(versioned))
        .with_preview(super::sync::key_preview(
            &[
                ("keys overwritten by the backup's content", d.overwritten),
                ("keys copied in", d.created),
                ("keys absent from the backup, get a delete marker", d.removed),
                ("keys absent from the backup, kept", d.kept),
                ("keys unchanged", d.unchanged),
            ],
            &d.examples,
        ))
        .with_payload(plan.payload.to_json()?))
    }

    async fn apply(&self, change: &Change, key: &IdempotencyKey) -> Result<()> {
        let payload = RestorePayload::from_change(change)?;
        let (progress, pending) = plan::observe(&self.s3, &payload, key).await?;
        if !progress.observed().proceed(change)? {
            return Ok(());
        }
        let options = ExecOptions::new(self.config.concurrency, self.config.attempts, self.config.client.write_guard);
        let n = plan::execute(&self.s3, &payload, pending, key, options).await?;
        tracing::info!(target = %self.name, restored = n, planned = progress.planned, "s3 mirror applied");
        Ok(())
    }

    async fn observe(&self, change: &Change, key: &IdempotencyKey) -> Result<Observed> {
        Ok(self.progress(change, key).await?.observed())
    }

    fn inverse(&self, change: &Change) -> Result<Change> {
        Err(Error::unsupported("inverse")
            .with_context("target", &change.target)
            .with_context("how", "declare undo = { restore_from = <an s3-copy snapshot step taken before> }"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_names_parse_as_times() {
        let t = |s: &str| parse_set_time(s).map(|t| t.to_rfc3339());
        assert_eq!(t("2025-10-16-180000").as_deref(), Some("2025-10-16T18:00:00+00:00"));
        assert_eq!(t("20251016T180000Z").as_deref(), Some("2025-10-16T18:00:00+00:00"));
        assert_eq!(t("2025-10-16T18:00:00Z").as_deref(), Some("2025-10-16T18:00:00+00:00"));
        assert_eq!(t("2025-10-16").as_deref(), Some("2025-10-16T00:00:00+00:00"));
        assert_eq!(t("nightly"), None);
    }

    #[test]
    fn prefixes_become_folders() {
        assert_eq!(folder(""), "");
        assert_eq!(folder("/avatars"), "avatars/");
        assert_eq!(folder("a/b/"), "a/b/");
    }
}
