//! Streaming listings: every version of every key (grouped per key, newest first),
//! or the current objects. Memory is one page plus one key's versions.
//!
//! ## Time semantics
//!
//! The state "at T" of a key is its **newest version (or delete marker) with
//! `LastModified <= T`**; a delete marker (or no version at all) means absent.
//! `LastModified` has one-second resolution on many servers, so several versions may
//! share a timestamp: their order is taken from the ListObjectVersions order (newest
//! first within a key, `IsLatest` first). The SDK returns versions and delete markers
//! in two separate lists, so a version and a delete marker of the same key with the
//! same timestamp cannot be ordered unless one of them is the latest: picking a
//! state inside such a tie is refused with an error naming the key and the second,
//! rather than guessed.

use aws_smithy_types::DateTime as AwsTime;
use rollback_core::{Error, ErrorKind, Result};

use super::S3;
use super::client::etag;
use crate::error;

/// One version or delete marker of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub version_id: String,
    pub deleted: bool,
    pub modified_ms: i64,
    pub etag: Option<String>,
    pub latest: bool,
}

/// Every version of one key, newest first.
#[derive(Debug, Clone)]
pub(crate) struct KeyVersions {
    pub key: String,
    pub entries: Vec<Entry>,
    /// Timestamps at which a version and a delete marker tie (neither the latest).
    pub ambiguous: Vec<i64>,
}

impl KeyVersions {
    fn build(key: String, raw: Vec<Entry>) -> Self {
        let (mut versions, mut markers): (Vec<Entry>, Vec<Entry>) = raw.into_iter().partition(|e| !e.deleted);
        versions.reverse();
        markers.reverse();
        let mut entries = Vec::with_capacity(versions.len() + markers.len());
        let mut ambiguous = Vec::new();
        loop {
            let pick_version = match (versions.last(), markers.last()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(v), Some(m)) if v.modified_ms != m.modified_ms => v.modified_ms > m.modified_ms,
                (Some(v), Some(m)) => {
                    if !v.latest && !m.latest {
                        ambiguous.push(v.modified_ms);
                    }
                    !m.latest
                }
            };
            let next = if pick_version { versions.pop() } else { markers.pop() };
            entries.extend(next);
        }
        ambiguous.dedup();
        KeyVersions { key, entries, ambiguous }
    }

    /// The current version (`None`: absent or a delete marker).
    pub fn current(&self) -> Option<&Entry> {
        self.entries.first().filter(|e| !e.deleted)
    }

    /// The version current at `t_ms` (inclusive). `None`: absent then.
    pub fn at(&self, t_ms: i64) -> Result<Option<&Entry>> {
        let Some(entry) = self.entries.iter().find(|e| e.modified_ms <= t_ms) else { return Ok(None) };
        if self.ambiguous.contains(&entry.modified_ms) {
            let when = chrono::DateTime::from_timestamp_millis(entry.modified_ms).map(|t| t.to_rfc3339());
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "key {:?} has a version and a delete marker with the same LastModified ({}), and the \
                     server's listing cannot order them: pick a time outside that second",
                    self.key,
                    when.unwrap_or_default()
                ),
            ));
        }
        Ok(Some(entry).filter(|e| !e.deleted))
    }
}

fn millis(t: Option<&AwsTime>) -> i64 {
    t.and_then(|t| t.to_millis().ok()).unwrap_or(0)
}

/// Calls `f` for every key under `prefix` with all its versions, in key order.
pub(crate) async fn for_each_key(
    s3: &S3,
    bucket: &str,
    prefix: &str,
    mut f: impl FnMut(KeyVersions) -> Result<()>,
) -> Result<()> {
    let mut key_marker: Option<String> = None;
    let mut version_marker: Option<String> = None;
    let mut pending: Option<(String, Vec<Entry>)> = None;
    loop {
        let page = s3
            .client()
            .list_object_versions()
            .bucket(bucket)
            .prefix(prefix)
            .set_key_marker(key_marker.take())
            .set_version_id_marker(version_marker.take())
            .max_keys(1000)
            .send()
            .await
            .map_err(|e| error::s3("list object versions", e).with_context("bucket", bucket))?;
        let mut items: Vec<(String, Entry)> = Vec::new();
        for v in page.versions() {
            items.push((
                v.key().unwrap_or_default().to_owned(),
                Entry {
                    version_id: v.version_id().unwrap_or("null").to_owned(),
                    deleted: false,
                    modified_ms: millis(v.last_modified()),
                    etag: etag(v.e_tag()),
                    latest: v.is_latest().unwrap_or(false),
                },
            ));
        }
        for m in page.delete_markers() {
            items.push((
                m.key().unwrap_or_default().to_owned(),
                Entry {
                    version_id: m.version_id().unwrap_or("null").to_owned(),
                    deleted: true,
                    modified_ms: millis(m.last_modified()),
                    etag: None,
                    latest: m.is_latest().unwrap_or(false),
                },
            ));
        }
        items.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, entry) in items {
            match &mut pending {
                Some((k, entries)) if *k == key => entries.push(entry),
                _ => {
                    if let Some((k, entries)) = pending.replace((key, vec![entry])) {
                        f(KeyVersions::build(k, entries))?;
                    }
                }
            }
        }
        if page.is_truncated() == Some(true) {
            key_marker = page.next_key_marker().map(str::to_owned);
            version_marker = page.next_version_id_marker().map(str::to_owned);
            if key_marker.is_none() {
                return Err(Error::new(ErrorKind::Backend, "truncated version listing without a next marker"));
            }
        } else {
            break;
        }
    }
    if let Some((k, entries)) = pending {
        f(KeyVersions::build(k, entries))?;
    }
    Ok(())
}

/// Calls `f(key, etag)` for every current object under `prefix` (ListObjectsV2).
pub(crate) async fn for_each_current(
    s3: &S3,
    bucket: &str,
    prefix: &str,
    mut f: impl FnMut(&str, &str) -> Result<()>,
) -> Result<()> {
    let mut pages = s3.client().list_objects_v2().bucket(bucket).prefix(prefix).max_keys(1000).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| error::s3("list objects", e).with_context("bucket", bucket))?;
        for o in page.contents() {
            f(o.key().unwrap_or_default(), &etag(o.e_tag()).unwrap_or_default())?;
        }
    }
    Ok(())
}

/// One current object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Object {
    pub key: String,
    pub etag: String,
    pub modified_ms: i64,
}

/// A pull-based listing of the current objects under a prefix (ListObjectsV2), in
/// key order, one page in memory: two of them can be merge-joined (mirror plans,
/// manifest restores) without holding either side.
pub(crate) struct CurrentObjects<'a> {
    s3: &'a S3,
    bucket: String,
    prefix: String,
    token: Option<String>,
    page: std::collections::VecDeque<Object>,
    last: Option<String>,
    finished: bool,
}

impl<'a> CurrentObjects<'a> {
    /// A listing of `bucket` under `prefix`; nothing is sent until [`Self::next`].
    pub fn new(s3: &'a S3, bucket: &str, prefix: &str) -> Self {
        CurrentObjects {
            s3,
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            token: None,
            page: Default::default(),
            last: None,
            finished: false,
        }
    }

    /// The next object, or `None` at the end. Refuses a listing out of key order
    /// (a merge-join over it would be wrong).
    pub async fn next(&mut self) -> Result<Option<Object>> {
        while self.page.is_empty() && !self.finished {
            let page = self
                .s3
                .client()
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&self.prefix)
                .set_continuation_token(self.token.take())
                .max_keys(1000)
                .send()
                .await
                .map_err(|e| error::s3("list objects", e).with_context("bucket", &self.bucket))?;
            for o in page.contents() {
                self.page.push_back(Object {
                    key: o.key().unwrap_or_default().to_owned(),
                    etag: etag(o.e_tag()).unwrap_or_default(),
                    modified_ms: millis(o.last_modified()),
                });
            }
            self.token = page.next_continuation_token().map(str::to_owned);
            self.finished = page.is_truncated() != Some(true) || self.token.is_none();
        }
        let Some(next) = self.page.pop_front() else { return Ok(None) };
        if self.last.as_deref().is_some_and(|last| last >= next.key.as_str()) {
            return Err(Error::new(
                ErrorKind::Backend,
                format!("the server listed {:?} after {:?}: keys out of order", next.key, self.last),
            )
            .with_context("bucket", &self.bucket));
        }
        self.last = Some(next.key.clone());
        Ok(Some(next))
    }
}

/// The immediate "sub-folders" of `prefix` (ListObjectsV2 with delimiter `/`), in order.
pub(crate) async fn sub_prefixes(s3: &S3, bucket: &str, prefix: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut pages = s3.client().list_objects_v2().bucket(bucket).prefix(prefix).delimiter("/").into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| error::s3("list prefixes", e).with_context("bucket", bucket))?;
        out.extend(page.common_prefixes().iter().filter_map(|p| p.prefix()).map(str::to_owned));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(id: &str, deleted: bool, s: i64, latest: bool) -> Entry {
        Entry {
            version_id: id.into(),
            deleted,
            modified_ms: s * 1000,
            etag: (!deleted).then(|| format!("etag-{id}")),
            latest,
        }
    }

    #[test]
    fn merges_by_time_and_refuses_ambiguous_ties() {
        // listing order: versions newest first, then markers newest first
        let kv = KeyVersions::build(
            "k".into(),
            vec![
                e("v3", false, 30, true),
                e("v2", false, 20, false),
                e("v1", false, 10, false),
                e("d1", true, 20, false),
            ],
        );
        let ids: Vec<_> = kv.entries.iter().map(|e| e.version_id.as_str()).collect();
        assert_eq!(ids[0], "v3");
        assert_eq!(kv.ambiguous, vec![20_000]);
        assert_eq!(kv.at(15_000).unwrap().unwrap().version_id, "v1");
        assert!(kv.at(25_000).unwrap_err().to_string().contains("same LastModified"));
        assert_eq!(kv.at(30_000).unwrap().unwrap().version_id, "v3");
        assert!(kv.at(5_000).unwrap().is_none());
    }

    #[test]
    fn latest_breaks_ties() {
        let kv = KeyVersions::build("k".into(), vec![e("v1", false, 10, false), e("d1", true, 10, true)]);
        assert!(kv.current().is_none());
        assert!(kv.at(10_000).unwrap().is_none());
        assert!(kv.ambiguous.is_empty());
        let kv = KeyVersions::build("k".into(), vec![e("v2", false, 10, false), e("v1", false, 10, false)]);
        assert_eq!(kv.at(10_000).unwrap().unwrap().version_id, "v2", "listing order within a kind");
    }
}
