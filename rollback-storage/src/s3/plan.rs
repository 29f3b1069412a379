//! The absolute restore plan shared by point-in-time restore, mirror restore and
//! snapshot restore: for every key that must change, its prepared ETag and what it
//! becomes (a copy of a source version/object, or deleted — which on a versioned
//! bucket adds a delete marker and destroys nothing).
//!
//! The plan is resolved once by `prepare` and journaled inside the change's payload,
//! compactly as `[key, from_etag, source_key, source_version, to_etag]` rows (about
//! 150 bytes per changed key: 10,000 changed keys ≈ 1.5 MB of journal). `observe`
//! compares each key's current ETag with the row; `apply` acts only on keys not yet
//! restored, so re-running after a crash creates no extra versions for keys already
//! restored.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_s3::types::MetadataDirective;
use futures::TryStreamExt;
use rollback_core::{Error, IdempotencyKey, Observed, Result};
use serde::{Deserialize, Serialize};

use super::S3;
use super::client::{encode_key, etag};
use super::digest::StateDigest;
use super::listing::CurrentObjects;
use crate::error;

/// Object metadata key (`x-amz-meta-rollback-key`) holding the run's idempotency key.
pub const META_ROLLBACK_KEY: &str = "rollback-key";
/// Object metadata key holding the version (or source) a copy restored.
pub const META_SOURCE: &str = "rollback-source";

/// One row: `(key, from_etag, source_key (None = same key), source_version, to_etag (None = delete))`.
pub(crate) type Row = (String, Option<String>, Option<String>, Option<String>, Option<String>);

/// The journaled payload of an S3 restore change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RestorePayload {
    pub bucket: String,
    pub prefix: String,
    /// Where copies come from (`None`: the same bucket — point-in-time restore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_bucket: Option<String>,
    /// The digest of the keys the plan leaves alone, as prepared.
    pub outside: String,
    /// The rows.
    pub rows: Vec<Row>,
}

impl RestorePayload {
    /// The payload of a prepared change (deserialized in place, no copy of the JSON).
    pub fn from_change(change: &rollback_core::Change) -> Result<Self> {
        RestorePayload::deserialize(&change.payload).map_err(|e| {
            Error::invalid_input(format!("bad s3 restore payload: {e}")).with_context("target", &change.target)
        })
    }

    /// The payload as JSON, for the change.
    pub fn to_json(&self) -> Result<serde_json::Value> {
        serde_json::to_value(self).map_err(|e| Error::internal(e.to_string()))
    }
}

/// How far a restore is, per key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Keys in the plan.
    pub planned: usize,
    /// Keys already in their restored state.
    pub done: usize,
    /// Keys still in their prepared state.
    pub pending: usize,
    /// Keys in neither state (someone else changed them).
    pub diverged: Vec<String>,
    /// Whether keys outside the plan changed since prepare.
    pub outside_changed: bool,
}

impl Progress {
    /// The classification `observe` reports.
    pub fn observed(&self) -> Observed {
        if !self.diverged.is_empty() || self.outside_changed {
            let examples: Vec<&str> = self.diverged.iter().take(5).map(String::as_str).collect();
            let mut what = Vec::new();
            if !self.diverged.is_empty() {
                what.push(format!(
                    "{} keys are neither as prepared nor restored (e.g. {})",
                    self.diverged.len(),
                    examples.join(", ")
                ));
            }
            if self.outside_changed {
                what.push("keys outside the plan changed since prepare".to_owned());
            }
            Observed::Diverged(what.join("; "))
        } else if self.done == self.planned {
            Observed::Done
        } else if self.pending == self.planned {
            Observed::NotStarted
        } else {
            Observed::Partial(format!("{} of {} keys restored, {} to go", self.done, self.planned, self.pending))
        }
    }
}

fn matches(current: Option<&str>, expected: Option<&str>) -> bool {
    current == expected
}

/// Observes every row against the bucket: one streaming listing merge-joined with
/// the rows (in key order; rows out of order are visited through a sorted index),
/// plus a HEAD for rows whose target ETag cannot be compared (multipart ETags change
/// on copy). Memory: the rows, one listing page and one index per row.
pub(crate) async fn observe(s3: &S3, payload: &RestorePayload, key: &IdempotencyKey) -> Result<(Progress, Vec<usize>)> {
    let rows = &payload.rows;
    let mut order: Vec<usize> = (0..rows.len()).collect();
    if !rows.windows(2).all(|w| w[0].0 < w[1].0) {
        order.sort_by(|&a, &b| rows[a].0.cmp(&rows[b].0));
    }
    let mut listing = CurrentObjects::new(s3, &payload.bucket, &payload.prefix);
    let mut next = listing.next().await?;
    let mut outside = StateDigest::default();
    let mut progress = Progress { planned: rows.len(), ..Default::default() };
    let mut pending = Vec::new();
    for i in order {
        let row = &rows[i];
        while let Some(o) = next.as_ref().filter(|o| o.key < row.0) {
            outside.add(&o.key, Some(&o.etag));
            next = listing.next().await?;
        }
        let cur = match next.take() {
            Some(o) if o.key == row.0 => {
                next = listing.next().await?;
                Some(o.etag)
            }
            other => {
                next = other;
                None
            }
        };
        if matches(cur.as_deref(), row.4.as_deref()) {
            progress.done += 1;
        } else if matches(cur.as_deref(), row.1.as_deref()) {
            progress.pending += 1;
            pending.push(i);
        } else if row.4.as_deref().is_some_and(|t| t.contains('-')) && stamped(s3, payload, row, key).await? {
            progress.done += 1;
        } else {
            progress.diverged.push(row.0.clone());
        }
    }
    while let Some(o) = next {
        outside.add(&o.key, Some(&o.etag));
        next = listing.next().await?;
    }
    progress.outside_changed = outside.id() != payload.outside;
    pending.sort_unstable();
    Ok((progress, pending))
}

/// Whether the current object of `row` is our copy (multipart sources: ETags differ).
async fn stamped(s3: &S3, payload: &RestorePayload, row: &Row, key: &IdempotencyKey) -> Result<bool> {
    let head = s3.client().head_object().bucket(&payload.bucket).key(&row.0).send().await;
    let head = match head {
        Ok(h) => h,
        Err(e) => {
            let e = error::s3("head object", e);
            return if e.kind() == rollback_core::ErrorKind::NotFound { Ok(false) } else { Err(e) };
        }
    };
    let meta = head.metadata();
    Ok(meta.and_then(|m| m.get(META_ROLLBACK_KEY)).map(String::as_str) == Some(key.as_str())
        && meta.and_then(|m| m.get(META_SOURCE)).map(String::as_str) == Some(&source_label(payload, row)))
}

fn source_label(payload: &RestorePayload, row: &Row) -> String {
    let bucket = payload.source_bucket.as_deref().unwrap_or(&payload.bucket);
    let key = row.2.as_deref().unwrap_or(&row.0);
    match &row.3 {
        Some(v) => format!("{bucket}/{key}?versionId={v}"),
        None => format!("{bucket}/{key}"),
    }
}

/// How `execute` runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExecOptions {
    pub concurrency: usize,
    pub attempts: u32,
}

impl ExecOptions {
    /// From optional settings: 16 parallel copies, 4 attempts per key by default.
    pub fn new(concurrency: Option<usize>, attempts: Option<u32>) -> Self {
        ExecOptions { concurrency: concurrency.unwrap_or(16).max(1), attempts: attempts.unwrap_or(4).max(1) }
    }
}

/// Applies the rows at `indices` with bounded parallelism. A failed row stops the
/// run with an error naming the key and how many rows were restored.
pub(crate) async fn execute(
    s3: &S3,
    payload: &RestorePayload,
    indices: Vec<usize>,
    key: &IdempotencyKey,
    options: ExecOptions,
) -> Result<u64> {
    let done = Arc::new(AtomicU64::new(0));
    let total = indices.len();
    let result = futures::stream::iter(indices.into_iter().map(Ok::<usize, Error>))
        .try_for_each_concurrent(options.concurrency.max(1), |i| {
            let done = done.clone();
            async move {
                let row = &payload.rows[i];
                restore_row(s3, payload, row, key, options.attempts)
                    .await
                    .map_err(|e| e.with_context("failed_key", &row.0))?;
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                rollback_core::progress::report(n, Some(total as u64), "keys");
                Ok(())
            }
        })
        .await;
    let n = done.load(Ordering::Relaxed);
    result.map_err(|e| {
        e.with_context("restored_in_this_attempt", n)
            .with_context("remaining_at_start", total)
            .with_context("resume", "observe says Partial; applying again finishes the remaining keys")
    })?;
    Ok(n)
}

async fn current_etag(s3: &S3, bucket: &str, key: &str) -> Result<Option<String>> {
    match s3.client().head_object().bucket(bucket).key(key).send().await {
        Ok(h) => Ok(etag(h.e_tag())),
        Err(e) => {
            let e = error::s3("head object", e);
            if e.kind() == rollback_core::ErrorKind::NotFound { Ok(None) } else { Err(e) }
        }
    }
}

async fn restore_row(s3: &S3, payload: &RestorePayload, row: &Row, key: &IdempotencyKey, attempts: u32) -> Result<()> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        if attempt > 1 {
            // A lost response may hide a copy that happened: check before redoing it,
            // so a retry never writes a second version.
            tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt.min(6) - 1))).await;
            match current_etag(s3, &payload.bucket, &row.0).await {
                Ok(cur) if cur.as_deref() == row.4.as_deref() => return Ok(()),
                Ok(_) => {}
                Err(e) if e.is_retryable() && attempt < attempts => continue,
                Err(e) => return Err(e),
            }
        }
        match act(s3, payload, row, key).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_retryable() && attempt < attempts => {
                tracing::warn!(key = %row.0, attempt, error = %e, "retrying restore of one key");
            }
            Err(e) => return Err(e.with_context("attempts", attempt)),
        }
    }
}

/// Writes are retried by [`restore_row`] only after checking the key (a lost response
/// may hide a write that happened); the SDK's blind retries would add versions.
fn no_sdk_retries() -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Builder::default().retry_config(aws_smithy_types::retry::RetryConfig::disabled())
}

async fn act(s3: &S3, payload: &RestorePayload, row: &Row, key: &IdempotencyKey) -> Result<()> {
    let client = s3.client();
    let Some(to_etag) = &row.4 else {
        client
            .delete_object()
            .bucket(&payload.bucket)
            .key(&row.0)
            .customize()
            .config_override(no_sdk_retries())
            .send()
            .await
            .map_err(|e| error::s3("delete object", e))?;
        return Ok(());
    };
    let src_bucket = payload.source_bucket.as_deref().unwrap_or(&payload.bucket);
    let src_key = row.2.as_deref().unwrap_or(&row.0);
    let head = client
        .head_object()
        .bucket(src_bucket)
        .key(src_key)
        .set_version_id(row.3.clone())
        .send()
        .await
        .map_err(|e| error::s3("head source", e))?;
    if row.3.is_none() && etag(head.e_tag()).as_deref() != Some(to_etag.as_str()) {
        // The source changed since prepare. The copy below is also conditional
        // (`x-amz-copy-source-if-match`, atomic on S3 and MinIO); this check covers
        // servers that ignore that header (moto 5.2).
        return Err(Error::new(
            rollback_core::ErrorKind::Conflict,
            format!("the source {src_bucket}/{src_key} changed since prepare (ETag is no longer {to_etag})"),
        ));
    }
    let mut metadata = head.metadata().cloned().unwrap_or_default();
    metadata.insert(META_ROLLBACK_KEY.to_owned(), key.as_str().to_owned());
    metadata.insert(META_SOURCE.to_owned(), source_label(payload, row));
    let mut copy_source = format!("{src_bucket}/{}", encode_key(src_key));
    if let Some(v) = &row.3 {
        copy_source.push_str(&format!("?versionId={v}"));
    }
    let mut request = client
        .copy_object()
        .bucket(&payload.bucket)
        .key(&row.0)
        .copy_source(copy_source)
        .metadata_directive(MetadataDirective::Replace)
        .set_metadata(Some(metadata))
        .set_content_type(head.content_type().map(str::to_owned))
        .set_cache_control(head.cache_control().map(str::to_owned))
        .set_content_disposition(head.content_disposition().map(str::to_owned))
        .set_content_encoding(head.content_encoding().map(str::to_owned))
        .set_content_language(head.content_language().map(str::to_owned));
    if row.3.is_none() {
        // No version pins the source: the copy must be of the prepared content.
        request = request.copy_source_if_match(format!("\"{to_etag}\""));
    }
    request.customize().config_override(no_sdk_retries()).send().await.map_err(|e| error::s3("copy object", e))?;
    Ok(())
}
