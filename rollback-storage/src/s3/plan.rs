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

use std::time::Duration;

use std::collections::HashMap;

use aws_sdk_s3::types::{MetadataDirective, TaggingDirective};
use futures::StreamExt;
use rollback_core::{Error, IdempotencyKey, Observed, Result};
use serde::{Deserialize, Serialize};

use super::S3;
use super::client::{encode_key, etag};
use super::digest::StateDigest;
use super::guard::{self, WriteGuard};
use super::listing::CurrentObjects;
use crate::error;

/// The object tag a restore's copy carries: [`restore_stamp`] of the run's key and
/// the source. The copy keeps the source's metadata (`MetadataDirective = COPY`) and
/// replaces its tags with this one (`TaggingDirective = REPLACE`): one request per key.
pub const TAG_RESTORE: &str = "rollback-restore";

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
/// plus a tag read for rows whose current ETag is neither (a copy's ETag differs
/// from its source's for multipart sources and SSE-KMS). Memory: the rows, one listing page and one index per row.
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
        } else if row.4.is_some() && cur.is_some() && stamped(s3, payload, row, key).await? {
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

/// Whether the current object of `row` is our copy, by its tag: ETags cannot tell
/// when the copy's ETag differs from the source's (multipart sources, SSE-KMS).
async fn stamped(s3: &S3, payload: &RestorePayload, row: &Row, key: &IdempotencyKey) -> Result<bool> {
    let tags = s3.client().get_object_tagging().bucket(&payload.bucket).key(&row.0).send().await;
    let tags = match tags {
        Ok(t) => t,
        Err(e) => {
            let e = error::s3("get object tagging", e);
            return if e.kind() == rollback_core::ErrorKind::NotFound { Ok(false) } else { Err(e) };
        }
    };
    let expected = restore_stamp(key, &source_label(payload, row));
    Ok(tags.tag_set().iter().any(|t| t.key() == TAG_RESTORE && t.value() == expected))
}

/// The value of the [`TAG_RESTORE`] tag a restore's copy carries: a digest of the
/// run's idempotency key and the source (`bucket/key` or `bucket/key?versionId=v`),
/// 32 hex digits (tag values cannot hold every character a key can).
///
/// ```
/// use rollback_core::IdempotencyKey;
/// use rollback_storage::s3::restore_stamp;
/// let stamp = restore_stamp(&IdempotencyKey::new("run-1/restore/fwd"), "bucket/app/a?versionId=3");
/// assert_eq!(stamp.len(), 32);
/// assert_ne!(stamp, restore_stamp(&IdempotencyKey::new("run-2/restore/fwd"), "bucket/app/a?versionId=3"));
/// ```
pub fn restore_stamp(key: &IdempotencyKey, source: &str) -> String {
    use sha2::{Digest as _, Sha256};
    let digest = Sha256::new().chain_update(key.as_str()).chain_update([0u8]).chain_update(source).finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
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
    pub guard: WriteGuard,
}

impl ExecOptions {
    /// From optional settings: 16 parallel copies, 4 attempts per key by default.
    pub fn new(concurrency: Option<usize>, attempts: Option<u32>, guard: Option<WriteGuard>) -> Self {
        ExecOptions {
            concurrency: concurrency.unwrap_or(16).max(1),
            attempts: attempts.unwrap_or(4).max(1),
            guard: guard.unwrap_or_default(),
        }
    }
}

/// Applies the rows at `indices`, a page of up to [`guard::PAGE`] keys at a time
/// with bounded parallelism inside a page, each write guarded as [`super::guard`]
/// describes. A failed or conflicting row stops the run with an error naming the key
/// and how many rows were restored. The path taken (`write_guard`) and the listings
/// it cost go into the step's report.
pub(crate) async fn execute(
    s3: &S3,
    payload: &RestorePayload,
    mut indices: Vec<usize>,
    key: &IdempotencyKey,
    options: ExecOptions,
) -> Result<u64> {
    indices.sort_by(|&a, &b| payload.rows[a].0.cmp(&payload.rows[b].0));
    let mut run =
        Execution { s3, payload, key, options, guard: options.guard, done: 0, total: indices.len(), listings: 0 };
    let result = run.pages(&indices).await;
    let guard = if run.guard == WriteGuard::Auto { WriteGuard::Relist } else { run.guard };
    rollback_core::progress::note("write_guard", guard.as_str());
    rollback_core::progress::note("guard_listings", run.listings);
    tracing::info!(bucket = %payload.bucket, guard = guard.as_str(), listings = run.listings, restored = run.done, "s3 writes");
    result.map_err(|e| {
        e.with_context("restored_in_this_attempt", run.done).with_context("remaining_at_start", run.total).with_context(
            "resume",
            "observe decides: Partial finishes the remaining keys, Diverged names the keys someone else changed",
        )
    })?;
    Ok(run.done)
}

struct Execution<'a> {
    s3: &'a S3,
    payload: &'a RestorePayload,
    key: &'a IdempotencyKey,
    options: ExecOptions,
    /// `Auto` until the first overwrite tells.
    guard: WriteGuard,
    done: u64,
    total: usize,
    listings: usize,
}

impl Execution<'_> {
    async fn pages(&mut self, indices: &[usize]) -> Result<()> {
        for page in indices.chunks(guard::PAGE) {
            let mut page = page.to_vec();
            if self.guard != WriteGuard::Conditional {
                let current = self.current(&page).await?;
                page.retain(|&i| current[&self.payload.rows[i].0] != self.payload.rows[i].4);
                self.check_unchanged(&page, &current)?;
                self.check_sources(&page).await?;
            }
            let mut written = Vec::with_capacity(page.len());
            if self.guard == WriteGuard::Auto
                && let Some(at) =
                    page.iter().position(|&i| self.payload.rows[i].1.is_some() && self.payload.rows[i].4.is_some())
            {
                let i = page.remove(at);
                if let Some(etag) = self.probe(i).await? {
                    written.push((i, etag));
                } else {
                    page.insert(at, i);
                }
            }
            written.extend(self.write(&page).await?);
            if self.guard != WriteGuard::Conditional {
                self.check_written(&written).await?;
            }
        }
        Ok(())
    }

    async fn current(&mut self, page: &[usize]) -> Result<HashMap<String, Option<String>>> {
        let keys: Vec<&str> = page.iter().map(|&i| self.payload.rows[i].0.as_str()).collect();
        let (current, requests) =
            guard::current_etags(self.s3, &self.payload.bucket, &self.payload.prefix, &keys).await?;
        self.listings += requests;
        Ok(current)
    }

    /// Before a page is written: every key still as prepared.
    fn check_unchanged(&self, page: &[usize], current: &HashMap<String, Option<String>>) -> Result<()> {
        let changed: Vec<&str> = page
            .iter()
            .map(|&i| &self.payload.rows[i])
            .filter(|row| current[&row.0] != row.1)
            .map(|row| row.0.as_str())
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        Err(conflicting(
            &changed,
            &format!(
                "changed since prepare{{}}: someone else wrote them; none of this page of {} keys was written",
                page.len()
            ),
        ))
    }

    /// Before a page is written (re-listing path): every source not pinned by a version
    /// (a mirror's backup objects) still has its prepared ETag — the server may ignore
    /// `x-amz-copy-source-if-match` too.
    async fn check_sources(&mut self, page: &[usize]) -> Result<()> {
        let Some(bucket) = self.payload.source_bucket.as_deref() else { return Ok(()) };
        let rows: Vec<&Row> = page.iter().map(|&i| &self.payload.rows[i]).filter(|r| r.3.is_none()).collect();
        let sources: Vec<&str> = rows.iter().filter_map(|r| r.2.as_deref()).collect();
        if sources.is_empty() {
            return Ok(());
        }
        let (current, requests) = guard::current_etags(self.s3, bucket, "", &sources).await?;
        self.listings += requests;
        let Some(row) = rows.iter().find(|r| r.2.as_ref().is_some_and(|k| current[k] != r.4)) else { return Ok(()) };
        Err(Error::new(
            rollback_core::ErrorKind::Conflict,
            format!(
                "the source {bucket}/{} changed since prepare (its ETag is no longer {}): none of this page was written",
                row.2.as_deref().unwrap_or_default(),
                row.4.as_deref().unwrap_or_default()
            ),
        )
        .with_context("failed_key", &row.0))
    }

    /// After a page is written (re-listing path): every key holds what was written.
    async fn check_written(&mut self, written: &[(usize, Option<String>)]) -> Result<()> {
        let indices: Vec<usize> = written.iter().map(|(i, _)| *i).collect();
        let current = self.current(&indices).await?;
        let overwritten: Vec<&str> = written
            .iter()
            .map(|(i, etag)| (&self.payload.rows[*i], etag))
            .filter(|(row, etag)| current[&row.0] != row.4 && !(current[&row.0] == **etag && copy_may_differ(row)))
            .map(|(row, _)| row.0.as_str())
            .collect();
        if overwritten.is_empty() {
            return Ok(());
        }
        Err(conflicting(
            &overwritten,
            "were written by someone else while this restore wrote them{}: the server ignores conditional writes, \
             so their write may be a noncurrent version now, or ours is",
        ))
    }

    /// The run's first overwrite, sent with an `If-Match` nothing matches: refused,
    /// the server honours conditions (`None`: the row is still to write); performed,
    /// it does not (the row is written, its new ETag returned).
    async fn probe(&mut self, i: usize) -> Result<Option<Option<String>>> {
        let row = &self.payload.rows[i];
        let result = act(self.s3, self.payload, row, self.key, Condition::Probe).await;
        match guard::probe_outcome(&result) {
            Some(WriteGuard::Conditional) => {
                self.guard = WriteGuard::Conditional;
                Ok(None)
            }
            Some(_) => {
                self.guard = WriteGuard::Relist;
                self.count();
                Ok(Some(result.expect("performed")))
            }
            None => Err(result.expect_err("failed").with_context(
                "write_guard",
                "finding out whether the server honours conditional writes failed; set client.write_guard",
            )),
        }
    }

    fn count(&mut self) {
        self.done += 1;
        rollback_core::progress::report(self.done, Some(self.total as u64), "keys");
    }

    /// Writes a page's rows, `concurrency` at a time; returns each row's new ETag.
    async fn write(&mut self, page: &[usize]) -> Result<Vec<(usize, Option<String>)>> {
        let condition = if self.guard == WriteGuard::Conditional { Condition::Planned } else { Condition::None };
        let (s3, payload, key, attempts) = (self.s3, self.payload, self.key, self.options.attempts);
        let mut writes = futures::stream::iter(page.iter().copied())
            .map(|i| async move {
                let row = &payload.rows[i];
                restore_row(s3, payload, row, key, attempts, condition)
                    .await
                    .map(|etag| (i, etag))
                    .map_err(|e| e.with_context("failed_key", &row.0))
            })
            .buffer_unordered(self.options.concurrency);
        let mut written = Vec::with_capacity(page.len());
        while let Some(one) = writes.next().await {
            written.push(one?);
            self.count();
        }
        Ok(written)
    }
}

/// A conflict over `keys` (not empty): "N keys WHAT", with up to five of them named
/// where `what` holds `{}`, and the first as `failed_key`.
fn conflicting(keys: &[&str], what: &str) -> Error {
    let examples = format!(" (e.g. {})", keys.iter().take(5).copied().collect::<Vec<_>>().join(", "));
    Error::new(rollback_core::ErrorKind::Conflict, format!("{} keys {}", keys.len(), what.replacen("{}", &examples, 1)))
        .with_context("failed_key", keys[0])
}

/// What a write is conditional on at the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Condition {
    /// Nothing (the re-listing path).
    None,
    /// The planned current ETag (`If-Match`), or absence (`If-None-Match: *`).
    Planned,
    /// An ETag nothing has: finds out whether the server honours conditions.
    Probe,
}

/// Whether a correct copy of `row` may have another ETag than its source: multipart
/// sources (and SSE-KMS, where a pinned version cannot have changed). An unpinned
/// source whose copy has another ETag changed after prepare.
fn copy_may_differ(row: &Row) -> bool {
    row.3.is_some() || row.4.as_deref().is_some_and(|t| t.contains('-'))
}

/// Whether `row` is already restored: its ETag is the target's, or it carries our stamp.
async fn restored(s3: &S3, payload: &RestorePayload, row: &Row, key: &IdempotencyKey) -> Result<bool> {
    let head = s3.client().head_object().bucket(&payload.bucket).key(&row.0).send().await;
    let current = match head {
        Ok(h) => etag(h.e_tag()),
        Err(e) => {
            let e = error::s3("head object", e);
            if e.kind() != rollback_core::ErrorKind::NotFound {
                return Err(e);
            }
            None
        }
    };
    if current == row.4 {
        return Ok(true);
    }
    Ok(current.is_some() && row.4.is_some() && stamped(s3, payload, row, key).await?)
}

async fn restore_row(
    s3: &S3,
    payload: &RestorePayload,
    row: &Row,
    key: &IdempotencyKey,
    attempts: u32,
    condition: Condition,
) -> Result<Option<String>> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        if attempt > 1 {
            // A lost response may hide a write that happened: check before redoing it,
            // so a retry never writes a second version.
            tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt.min(6) - 1))).await;
            match restored(s3, payload, row, key).await {
                Ok(true) => return Ok(row.4.clone()),
                Ok(false) => {}
                Err(e) if e.is_retryable() && attempt < attempts => continue,
                Err(e) => return Err(e),
            }
        }
        match act(s3, payload, row, key, condition).await {
            Ok(etag) => return Ok(etag),
            Err(e) if e.is_retryable() && attempt < attempts => {
                tracing::warn!(key = %row.0, attempt, error = %e, "retrying restore of one key");
            }
            Err(e) if e.kind() == rollback_core::ErrorKind::Conflict && condition == Condition::Planned => {
                return Err(Error::new(
                    rollback_core::ErrorKind::Conflict,
                    format!(
                        "{} changed since prepare (the server refused the conditional write): not overwritten",
                        row.0
                    ),
                ));
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

/// One request: a delete, or a copy that keeps the source's metadata and replaces
/// its tags with the run's stamp. Returns the new ETag (`None` after a delete).
async fn act(
    s3: &S3,
    payload: &RestorePayload,
    row: &Row,
    key: &IdempotencyKey,
    condition: Condition,
) -> Result<Option<String>> {
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
        return Ok(None);
    };
    let src_bucket = payload.source_bucket.as_deref().unwrap_or(&payload.bucket);
    let src_key = row.2.as_deref().unwrap_or(&row.0);
    let mut copy_source = format!("{src_bucket}/{}", encode_key(src_key));
    if let Some(v) = &row.3 {
        copy_source.push_str(&format!("?versionId={v}"));
    }
    let mut request = client
        .copy_object()
        .bucket(&payload.bucket)
        .key(&row.0)
        .copy_source(copy_source)
        .metadata_directive(MetadataDirective::Copy)
        .tagging_directive(TaggingDirective::Replace)
        .tagging(format!("{TAG_RESTORE}={}", restore_stamp(key, &source_label(payload, row))));
    if row.3.is_none() && condition != Condition::Probe {
        // No version pins the source: the copy must be of the prepared content (a
        // server that ignores this too is caught by the check after the page).
        request = request.copy_source_if_match(format!("\"{to_etag}\""));
    }
    request = match (condition, &row.1) {
        (Condition::None, _) => request,
        (Condition::Probe, _) => request.if_match(guard::NO_SUCH_ETAG),
        (Condition::Planned, Some(from)) => request.if_match(format!("\"{from}\"")),
        (Condition::Planned, None) => request.if_none_match("*"),
    };
    let out =
        request.customize().config_override(no_sdk_retries()).send().await.map_err(|e| error::s3("copy object", e))?;
    Ok(out.copy_object_result().and_then(|r| etag(r.e_tag())))
}
