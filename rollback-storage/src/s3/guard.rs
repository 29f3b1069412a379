//! Keeping a restore from overwriting a concurrent writer.
//!
//! Every copy of a restore is sent as a compare-and-swap on the destination:
//! `If-Match` on the ETag the plan found there, or `If-None-Match: *` for a key that
//! must not exist. S3 evaluates these atomically; some servers ignore them (moto 5.2
//! does on CopyObject). Which one a run talks to is found out once, by the first
//! overwrite of the run, sent with an `If-Match` no object can match: a server that
//! refuses it honours conditions ([`WriteGuard::Conditional`], one extra request per
//! run); a server that performs it ignores them (the copy was the planned one, of a
//! key checked a moment before), and the run re-lists instead
//! ([`WriteGuard::Relist`]): each page of up to 1,000 planned keys is listed right
//! before it is written (a key changed since prepare is refused, nothing of the page
//! is written) and right after (a key written by someone else in between is
//! reported), so the window in which a concurrent write can be lost is one page, not
//! the whole restore. Deletes are not conditional on either path (S3 does not take
//! `If-Match` on DeleteObject of general-purpose buckets); on a versioned bucket
//! they add a delete marker and destroy nothing.

use std::collections::HashMap;

use rollback_core::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};

use super::S3;
use super::client::etag;
use crate::error;

/// How a restore keeps its writes from overwriting someone else's (config
/// `client.write_guard`).
///
/// ```
/// use rollback_storage::s3::WriteGuard;
/// let guard: WriteGuard = serde_json::from_str("\"relist\"").unwrap();
/// assert_eq!(guard, WriteGuard::Relist);
/// assert_eq!(WriteGuard::default(), WriteGuard::Auto);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WriteGuard {
    /// Find out from the server, with the run's first overwrite (the default).
    #[default]
    Auto,
    /// The server honours `If-Match` / `If-None-Match` on CopyObject: every copy is
    /// a compare-and-swap, nothing is listed.
    Conditional,
    /// The server ignores them: list each page of keys before and after writing it.
    Relist,
}

impl WriteGuard {
    /// The name a report shows.
    pub fn as_str(self) -> &'static str {
        match self {
            WriteGuard::Auto => "auto",
            WriteGuard::Conditional => "conditional",
            WriteGuard::Relist => "relist",
        }
    }
}

/// Planned keys per page on the re-listing path (one ListObjectsV2 page).
pub(crate) const PAGE: usize = 1000;

/// An `If-Match` value no object has (ETags are hex digests, `-n` for multipart).
pub(crate) const NO_SUCH_ETAG: &str = "\"rollback-write-guard-probe\"";

/// The current ETag of each of `keys` (any order, duplicates allowed), `None` for
/// absent keys, read with as few listings as the keys allow: each request starts
/// just before the next key not yet seen, so dense keys cost one request per 1,000
/// and sparse ones one each. Returns the ETags and the number of requests sent.
pub(crate) async fn current_etags(
    s3: &S3,
    bucket: &str,
    prefix: &str,
    keys: &[&str],
) -> Result<(HashMap<String, Option<String>>, usize)> {
    let mut pending = Pending::new(keys);
    let mut requests = 0;
    while let Some(next) = pending.next_key() {
        let page = s3
            .client()
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .start_after(just_before(next))
            .max_keys(PAGE as i32)
            .send()
            .await
            .map_err(|e| error::s3("list objects", e).with_context("bucket", bucket))?;
        requests += 1;
        let listed: Vec<(&str, Option<String>)> =
            page.contents().iter().map(|o| (o.key().unwrap_or_default(), etag(o.e_tag()))).collect();
        pending.answer(&listed, page.is_truncated() != Some(true)).map_err(|e| e.with_context("bucket", bucket))?;
    }
    Ok((pending.found, requests))
}

/// The keys a series of listings must answer, walked in key order (a listing starts
/// after a key, so answering keys out of order would read a listed key as absent).
struct Pending<'k> {
    keys: Vec<&'k str>,
    next: usize,
    found: HashMap<String, Option<String>>,
}

impl<'k> Pending<'k> {
    fn new(keys: &[&'k str]) -> Self {
        let mut keys = keys.to_vec();
        keys.sort_unstable();
        keys.dedup();
        Pending { found: HashMap::with_capacity(keys.len()), keys, next: 0 }
    }

    /// The smallest key not answered yet.
    fn next_key(&self) -> Option<&'k str> {
        self.keys.get(self.next).copied()
    }

    /// Takes one listing page (sorted, as S3 returns it, starting at or before the
    /// next key): answers every key up to its last listed key, or all of them when
    /// the listing is complete.
    fn answer(&mut self, listed: &[(&str, Option<String>)], complete: bool) -> Result<()> {
        let last = listed.last().map(|(k, _)| *k);
        let before = self.next;
        while let Some(key) = self.next_key()
            && (complete || last.is_some_and(|l| key <= l))
        {
            let found = listed.binary_search_by(|(k, _)| (*k).cmp(key)).ok().and_then(|at| listed[at].1.clone());
            self.found.insert(key.to_owned(), found);
            self.next += 1;
        }
        if self.next == before {
            return Err(Error::new(ErrorKind::Backend, "the server's listing made no progress (truncated and empty)"));
        }
        Ok(())
    }
}

/// A string ordered just before `key` with few keys between them: `key` without its
/// last character (a `start-after` that includes `key` itself).
fn just_before(key: &str) -> &str {
    key.char_indices().last().map_or("", |(at, _)| &key[..at])
}

/// What the probe copy (sent with [`NO_SUCH_ETAG`]) says about the server.
pub(crate) fn probe_outcome<T>(result: &Result<T>) -> Option<WriteGuard> {
    match result {
        Ok(_) => Some(WriteGuard::Relist),
        Err(e) if e.kind() == ErrorKind::Conflict => Some(WriteGuard::Conditional),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn just_before_is_a_prefix_below_the_key() {
        assert_eq!(just_before("app/a"), "app/");
        assert_eq!(just_before("ü"), "");
        assert_eq!(just_before("x/ü"), "x/");
        assert_eq!(just_before(""), "");
        for k in ["a", "app/b", "z€"] {
            assert!(just_before(k) < k);
        }
    }

    #[test]
    fn keys_in_completion_order_are_answered_like_sorted_ones() {
        // Writes finish in any order; a first key of `sub/e` once made the listing
        // start after `sub/` and read `a`, `b`, `c` as absent (a false Conflict).
        let mut pending = Pending::new(&["p/sub/e", "p/a", "p/c", "p/b", "p/a"]);
        assert_eq!(pending.next_key(), Some("p/a"));
        let listed: Vec<(&str, Option<String>)> =
            ["p/a", "p/b", "p/c", "p/sub/e"].iter().map(|k| (*k, Some(format!("etag-{k}")))).collect();
        pending.answer(&listed, true).unwrap();
        assert_eq!(pending.next_key(), None);
        assert_eq!(pending.found.len(), 4);
        for (k, etag) in &listed {
            assert_eq!(&pending.found[*k], etag, "{k}");
        }
    }

    #[test]
    fn a_truncated_page_answers_only_up_to_its_last_key() {
        let mut pending = Pending::new(&["p/c", "p/a", "p/z"]);
        pending.answer(&[("p/a", Some("1".into())), ("p/b", Some("2".into()))], false).unwrap();
        assert_eq!(pending.next_key(), Some("p/c"));
        pending.answer(&[("p/c", Some("3".into()))], true).unwrap();
        assert_eq!((pending.found["p/c"].as_deref(), pending.found["p/z"].as_deref()), (Some("3"), None));
        let mut stuck = Pending::new(&["p/a"]);
        assert!(stuck.answer(&[], false).is_err(), "a truncated empty page makes no progress");
    }

    #[test]
    fn the_probe_tells_the_paths_apart() {
        assert_eq!(probe_outcome(&Ok(())), Some(WriteGuard::Relist));
        let refused: Result<()> = Err(Error::new(ErrorKind::Conflict, "412"));
        assert_eq!(probe_outcome(&refused), Some(WriteGuard::Conditional));
        let broken: Result<()> = Err(Error::new(ErrorKind::Backend, "500"));
        assert_eq!(probe_outcome(&broken), None);
    }
}
