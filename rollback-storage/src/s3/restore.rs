//! Point-in-time restore of a bucket or prefix from S3 versioning (kind `s3-restore`).
//!
//! The bucket state is a versioned target: its version id is a content digest of the
//! current objects (key → ETag, see [`super::listing`] for the time semantics), its
//! history has one revision per distinct `LastModified` at which the prefix changed.
//! Restoring to a time T makes current, for every key, the version that was current
//! at T: by copying that version over the key (a new version keeping the source's
//! metadata, tagged with the run's stamp, [`super::TAG_RESTORE`]), or by adding a
//! delete marker for keys created after T. One request per key, each guarded
//! against concurrent writers ([`super::WriteGuard`]). Nothing is destroyed: newer versions stay as noncurrent versions, and the total
//! version count only grows.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rollback_core::{
    Capabilities, Category, Change, DataLoss, Error, ErrorKind, IdempotencyKey, Identity, Observed, Request, Result,
    Reversibility, Revision, Selector, Target, TargetId, Version,
};
use serde::{Deserialize, Serialize};

use super::digest::{StateDigest, item};
use super::listing::{KeyVersions, for_each_current, for_each_key};
use super::plan::{self, ExecOptions, Progress, RestorePayload, Row};
use super::{S3, S3ClientConfig};

/// Config of an `s3-restore` target.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct S3RestoreConfig {
    /// The bucket (versioning must be enabled).
    pub bucket: String,
    /// Only keys under this prefix (default: the whole bucket).
    #[serde(default)]
    pub prefix: String,
    /// Parallel copies (default 16).
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// Attempts per key on retryable errors, on top of the SDK's own retries (default 4).
    #[serde(default)]
    pub attempts: Option<u32>,
    /// The connection.
    #[serde(default)]
    pub client: S3ClientConfig,
}

/// What a restore to time T would do: the dry-run diff and the data-loss report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreDiff {
    /// Keys that get an older version copied back over a newer one.
    pub overwritten: u64,
    /// Keys deleted after T that come back.
    pub recreated: u64,
    /// Keys created after T that get a delete marker.
    pub removed: u64,
    /// Keys already as they were at T.
    pub unchanged: u64,
    /// Objects written after T that stop being current (kept as noncurrent versions).
    pub written_after: u64,
    /// Up to 20 example keys of each change, for people.
    pub examples: Vec<String>,
}

/// Restores a bucket or prefix to a point in time from its versions.
///
/// Requests: `To(Before(t))` (state just before `t`), `To(Previous | Back(n) | Exact(id))`
/// over [`Target::history`], or `Action { action: "restore_at", params: {"at": RFC 3339} }`
/// (state at `at`, inclusive).
#[derive(Debug)]
pub struct S3Restore {
    name: TargetId,
    s3: S3,
    config: S3RestoreConfig,
}

impl S3Restore {
    /// A restore target over `s3`.
    pub fn new(name: &str, s3: S3, config: S3RestoreConfig) -> Result<Self> {
        if config.bucket.len() < 3 {
            return Err(Error::invalid_input(format!("bucket name {:?} is too short", config.bucket))
                .with_context("target", name));
        }
        if config.concurrency == Some(0) {
            return Err(Error::invalid_input("concurrency must be at least 1").with_context("target", name));
        }
        Ok(S3Restore { name: TargetId::new(name), s3, config })
    }

    fn options(&self) -> ExecOptions {
        ExecOptions::new(self.config.concurrency, self.config.attempts, self.config.client.write_guard)
    }

    /// Resolves the plan for the state at `t_ms` (inclusive), streaming the versions.
    async fn plan_at(&self, t_ms: i64) -> Result<(RestorePayload, RestoreDiff, StateDigest, StateDigest)> {
        let (mut from, mut to, mut outside) = (StateDigest::default(), StateDigest::default(), StateDigest::default());
        let mut rows: Vec<Row> = Vec::new();
        let mut diff = RestoreDiff::default();
        let mut any_before = false;
        for_each_key(&self.s3, &self.config.bucket, &self.config.prefix, |kv: KeyVersions| {
            any_before |= kv.entries.iter().any(|e| e.modified_ms <= t_ms);
            let cur = kv.current().and_then(|e| e.etag.clone());
            let target = kv.at(t_ms).map_err(|e| e.with_context("target", &self.name))?;
            let target_etag = target.and_then(|e| e.etag.clone());
            from.add(&kv.key, cur.as_deref());
            to.add(&kv.key, target_etag.as_deref());
            if cur == target_etag {
                outside.add(&kv.key, cur.as_deref());
                if cur.is_some() {
                    diff.unchanged += 1;
                }
                return Ok(());
            }
            let (what, change) = match (&cur, target) {
                (Some(_), Some(_)) => ("overwritten", &mut diff.overwritten),
                (None, Some(_)) => ("recreated", &mut diff.recreated),
                (Some(_), None) => ("removed", &mut diff.removed),
                (None, None) => unreachable!("equal states were skipped"),
            };
            *change += 1;
            if cur.is_some() {
                diff.written_after += 1;
            }
            if diff.examples.len() < 20 {
                diff.examples.push(format!("{what}: {}", kv.key));
            }
            rows.push((kv.key.clone(), cur, None, target.map(|e| e.version_id.clone()), target_etag));
            Ok(())
        })
        .await?;
        if !any_before {
            return Err(Error::not_found(format!(
                "no object version under {:?} is as old as the requested time",
                self.config.prefix
            ))
            .with_context("target", &self.name));
        }
        let payload = RestorePayload {
            bucket: self.config.bucket.clone(),
            prefix: self.config.prefix.clone(),
            source_bucket: None,
            outside: outside.id(),
            rows,
        };
        Ok((payload, diff, from, to))
    }

    /// The dry-run diff of restoring to the state at `at` (inclusive). Changes nothing.
    pub async fn diff_at(&self, at: DateTime<Utc>) -> Result<RestoreDiff> {
        Ok(self.plan_at(at.timestamp_millis()).await?.1)
    }

    /// Per-key progress of a prepared change (counts of done, pending, diverged keys).
    pub async fn progress(&self, change: &Change, key: &IdempotencyKey) -> Result<Progress> {
        Ok(plan::observe(&self.s3, &payload(change)?, key).await?.0)
    }

    /// Every key's timeline for history: at each distinct time one of its versions
    /// was written, the digest item of the version current then (`Ok(None)`: absent,
    /// `Err`: a tie the listing cannot order). 24 bytes per version plus 16 in `times`
    /// — O(versions), since history orders every version by time; no strings kept.
    async fn timelines(&self) -> Result<(Vec<Timeline>, Vec<(i64, u32)>)> {
        let (mut timelines, mut times) = (Vec::new(), Vec::new());
        for_each_key(&self.s3, &self.config.bucket, &self.config.prefix, |kv| {
            let index = u32::try_from(timelines.len()).map_err(|_| Error::internal("more than 2^32 keys"))?;
            let mut at: Vec<i64> = kv.entries.iter().map(|e| e.modified_ms).collect();
            at.sort_unstable_by(|a, b| b.cmp(a));
            at.dedup();
            let points: Timeline = at
                .into_iter()
                .map(|t| {
                    times.push((t, index));
                    let state = kv.at(t).map(|e| e.and_then(|e| e.etag.as_deref()).map(|etag| item(&kv.key, etag)));
                    (t, state.map_err(|_| ()))
                })
                .collect();
            timelines.push(points);
            Ok(())
        })
        .await?;
        Ok((timelines, times))
    }
}

/// One key's states at its version times, newest first (see `S3Restore::timelines`).
type Timeline = Vec<(i64, std::result::Result<Option<u128>, ()>)>;

fn payload(change: &Change) -> Result<RestorePayload> {
    RestorePayload::from_change(change)
}

pub(crate) fn describe_loss(diff: &RestoreDiff, at: &str) -> DataLoss {
    if diff.written_after == 0 && diff.removed == 0 {
        return DataLoss::none();
    }
    DataLoss::some(
        Some(diff.written_after),
        format!(
            "{} objects written after {at} stop being current ({} overwritten by their older version, {} get a \
             delete marker); they stay as noncurrent versions, nothing is destroyed",
            diff.written_after, diff.overwritten, diff.removed
        ),
    )
}

#[async_trait]
impl Target for S3Restore {
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
        if !self.s3.versioning_enabled(&self.config.bucket).await? {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "bucket {} does not have versioning enabled: point-in-time restore needs it",
                    self.config.bucket
                ),
            ));
        }
        Ok(Identity::new(format!(
            "s3 {} bucket {} prefix {:?}",
            self.s3.endpoint(),
            self.config.bucket,
            self.config.prefix
        )))
    }

    async fn current(&self) -> Result<Version> {
        let mut digest = StateDigest::default();
        for_each_current(&self.s3, &self.config.bucket, &self.config.prefix, |k, e| {
            digest.add(k, Some(e));
            Ok(())
        })
        .await?;
        Ok(Version::new(digest.id()))
    }

    async fn history(&self) -> Result<Vec<Revision>> {
        let (timelines, mut times) = self.timelines().await?;
        times.sort_unstable();
        times.dedup();
        let mut contributions: Vec<Option<u128>> = vec![None; timelines.len()];
        let mut ambiguous: Vec<bool> = vec![false; timelines.len()];
        let mut n_ambiguous = 0usize;
        let mut sum = StateDigest::default();
        let mut revisions = Vec::new();
        let mut i = 0;
        while i < times.len() {
            let t = times[i].0;
            let mut changed = 0;
            while i < times.len() && times[i].0 == t {
                let k = times[i].1 as usize;
                let points = &timelines[k];
                let state = points.binary_search_by(|p| t.cmp(&p.0)).map(|j| points[j].1).unwrap_or(Err(()));
                match state {
                    Ok(item) => {
                        sum.remove_item(contributions[k]);
                        contributions[k] = item;
                        sum.add_item(item);
                        if std::mem::replace(&mut ambiguous[k], false) {
                            n_ambiguous -= 1;
                        }
                    }
                    Err(()) => {
                        if !std::mem::replace(&mut ambiguous[k], true) {
                            n_ambiguous += 1;
                        }
                    }
                }
                changed += 1;
                i += 1;
            }
            let created = DateTime::from_timestamp_millis(t).unwrap_or_default();
            let mut revision = Revision::new(
                Version::labeled(sum.id(), created.to_rfc3339()),
                format!("{} objects; {changed} keys changed at this time", sum.count()),
            )
            .created_at(created);
            revision.available = n_ambiguous == 0;
            revisions.push(revision);
        }
        revisions.reverse();
        Ok(revisions)
    }

    async fn prepare(&self, request: &Request) -> Result<Change> {
        let (t_ms, how) = match request {
            Request::To(Selector::Before(t)) => (t.timestamp_millis() - 1, format!("before {}", t.to_rfc3339())),
            Request::To(selector) => {
                let current = self.current().await?;
                let history = self.history().await?;
                let revision = selector.resolve(&history, &current)?;
                let created = revision.created.ok_or_else(|| Error::internal("revision without a time"))?;
                (created.timestamp_millis(), format!("{selector} = state at {}", created.to_rfc3339()))
            }
            Request::Action { action, params } if action == "restore_at" => {
                #[derive(Deserialize)]
                struct At {
                    at: DateTime<Utc>,
                }
                let at: At = serde_json::from_value(params.clone()).map_err(|e| {
                    Error::invalid_input(format!("restore_at needs {{\"at\": RFC 3339 time}}: {e}"))
                        .with_context("target", &self.name)
                })?;
                (at.at.timestamp_millis(), format!("at {}", at.at.to_rfc3339()))
            }
            other => {
                return Err(
                    Error::invalid_input(format!("s3-restore cannot {other}")).with_context("target", &self.name)
                );
            }
        };
        let (payload, diff, from, to) = self.plan_at(t_ms).await?;
        if payload.rows.is_empty() {
            return Err(Error::already_done(format!(
                "{} is already in the state {how}: nothing to restore",
                self.name
            )));
        }
        let at = DateTime::from_timestamp_millis(t_ms).unwrap_or_default().to_rfc3339();
        let description = format!(
            "{}: restore s3://{}/{} to its state {how}: {} keys overwritten with their older version, {} recreated, \
             {} created later get a delete marker, {} unchanged",
            self.name,
            self.config.bucket,
            self.config.prefix,
            diff.overwritten,
            diff.recreated,
            diff.removed,
            diff.unchanged
        );
        Ok(Change::new(
            self.name.clone(),
            "s3-restore",
            Some(Version::new(from.id())),
            Version::labeled(to.id(), at.clone()),
        )
        .describe(description)
        .with_reversibility(Reversibility::NeedsSnapshot)
        .with_data_loss(describe_loss(&diff, &at))
        .with_preview(super::sync::key_preview(
            &[
                ("keys overwritten with their older version", diff.overwritten),
                ("keys deleted since, recreated", diff.recreated),
                ("keys created since, get a delete marker", diff.removed),
                ("keys unchanged", diff.unchanged),
            ],
            &diff.examples,
        ))
        .with_payload(serde_json::to_value(&payload).map_err(|e| Error::internal(e.to_string()))?))
    }

    async fn apply(&self, change: &Change, key: &IdempotencyKey) -> Result<()> {
        let payload = payload(change)?;
        let (progress, pending) = plan::observe(&self.s3, &payload, key).await?;
        if !progress.observed().proceed(change)? {
            return Ok(());
        }
        let n = plan::execute(&self.s3, &payload, pending, key, self.options()).await?;
        tracing::info!(target = %self.name, restored = n, planned = progress.planned, "s3 restore applied");
        Ok(())
    }

    async fn observe(&self, change: &Change, key: &IdempotencyKey) -> Result<Observed> {
        Ok(self.progress(change, key).await?.observed())
    }

    fn inverse(&self, change: &Change) -> Result<Change> {
        Err(Error::unsupported("inverse")
            .with_context("target", &change.target)
            .with_context("how", "restore again to a time after this run: every version is kept"))
    }
}
