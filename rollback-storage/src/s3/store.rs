//! An S3 [`ArtifactStore`]: evidence and snapshots as objects under a prefix, with
//! retention (keep the newest N rollback points and/or a maximum age) that never
//! prunes a point an unfinished run still needs.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rollback_core::artifact::validate_key;
use rollback_core::{ArtifactStore, Error, ErrorKind, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::S3;
use crate::error;

/// Artifacts in `s3://bucket/prefix/<key>`.
#[derive(Debug, Clone)]
pub struct S3ArtifactStore {
    s3: S3,
    bucket: String,
    prefix: String,
}

/// How many rollback points to keep. A point is the first path segment of an
/// artifact key (the run id, as the engine names snapshot keys).
#[derive(Debug, Clone, Copy, Default)]
pub struct Retention {
    /// Keep at least the newest N points.
    pub keep: Option<usize>,
    /// Prune points older than this (unless kept by `keep` or protected).
    pub max_age: Option<Duration>,
}

impl S3ArtifactStore {
    /// A store under `prefix` (may be empty) of `bucket`.
    pub fn new(s3: S3, bucket: &str, prefix: &str) -> Self {
        let prefix = prefix.trim_matches('/');
        let prefix = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
        S3ArtifactStore { s3, bucket: bucket.to_owned(), prefix }
    }

    fn object(&self, key: &str) -> Result<String> {
        validate_key(key)?;
        Ok(format!("{}{key}", self.prefix))
    }

    /// Deletes rollback points beyond `retention`, never one in `protected` (the run
    /// ids of unfinished runs). Returns the pruned points.
    pub async fn prune(&self, retention: Retention, protected: &BTreeSet<String>) -> Result<Vec<String>> {
        let mut points: BTreeMap<String, (DateTime<Utc>, Vec<String>)> = BTreeMap::new();
        let mut pages =
            self.s3.client().list_objects_v2().bucket(&self.bucket).prefix(&self.prefix).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| error::s3("list artifacts", e))?;
            for o in page.contents() {
                let key = o.key().unwrap_or_default().trim_start_matches(&self.prefix).to_owned();
                let point = key.split('/').next().unwrap_or_default().to_owned();
                let at = o
                    .last_modified()
                    .and_then(|t| t.to_millis().ok())
                    .and_then(DateTime::from_timestamp_millis)
                    .unwrap_or_default();
                let entry = points.entry(point).or_insert((at, Vec::new()));
                entry.0 = entry.0.max(at);
                entry.1.push(key);
            }
        }
        let mut by_age: Vec<(String, DateTime<Utc>, Vec<String>)> =
            points.into_iter().map(|(p, (at, keys))| (p, at, keys)).collect();
        by_age.sort_by_key(|p| std::cmp::Reverse(p.1));
        let now = Utc::now();
        let mut pruned = Vec::new();
        for (i, (point, at, keys)) in by_age.into_iter().enumerate() {
            let beyond_keep = retention.keep.is_some_and(|k| i >= k);
            let too_old =
                retention.max_age.is_some_and(|age| now.signed_duration_since(at).to_std().is_ok_and(|d| d > age));
            let prune = if retention.keep.is_some() && retention.max_age.is_some() {
                beyond_keep && too_old
            } else {
                beyond_keep || too_old
            };
            if !prune || protected.contains(&point) {
                continue;
            }
            for key in keys {
                self.delete(&key).await?;
            }
            pruned.push(point);
        }
        Ok(pruned)
    }
}

/// Run ids of journaled runs that are not finished (not succeeded or compensated):
/// their rollback points must survive retention.
pub async fn unfinished_runs(journal: &dyn rollback_core::Journal) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for run in journal.runs().await? {
        let records = journal.read(&run.run).await?;
        let last = records.iter().rev().find_map(|r| match &r.entry {
            rollback_core::journal::Entry::StateChanged { to, .. } => Some(*to),
            _ => None,
        });
        if !last.is_some_and(|s| s.is_terminal()) {
            out.insert(run.run.to_string());
        }
    }
    Ok(out)
}

#[async_trait]
impl ArtifactStore for S3ArtifactStore {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        let object = self.object(key)?;
        self.s3
            .client()
            .put_object()
            .bucket(&self.bucket)
            .key(object)
            .body(bytes.into())
            .send()
            .await
            .map_err(|e| error::s3("artifact put", e).with_context("key", key))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>> {
        let object = self.object(key)?;
        let out = self
            .s3
            .client()
            .get_object()
            .bucket(&self.bucket)
            .key(object)
            .send()
            .await
            .map_err(|e| error::s3("artifact get", e).with_context("key", key))?;
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| Error::new(ErrorKind::Backend, format!("reading artifact {key}: {e}")))?;
        Ok(body.into_bytes().to_vec())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let full = format!("{}{prefix}", self.prefix);
        let mut pages = self.s3.client().list_objects_v2().bucket(&self.bucket).prefix(full).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| error::s3("artifact list", e))?;
            keys.extend(page.contents().iter().filter_map(|o| o.key()).map(|k| k[self.prefix.len()..].to_owned()));
        }
        keys.sort();
        Ok(keys)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let object = self.object(key)?;
        self.s3
            .client()
            .delete_object()
            .bucket(&self.bucket)
            .key(object)
            .send()
            .await
            .map_err(|e| error::s3("artifact delete", e).with_context("key", key))?;
        Ok(())
    }

    fn location(&self, key: &str) -> String {
        format!("s3://{}/{}{key}", self.bucket, self.prefix)
    }
}
