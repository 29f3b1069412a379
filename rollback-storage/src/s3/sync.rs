//! Plans that make a prefix equal to a given content — the runbook's `mc mirror`
//! from a backup prefix, and a version manifest's exact versions — built by one
//! merge-join over key-ordered listings, so memory is one page of each side plus
//! the rows (the changed keys), whatever the number of unchanged objects.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

use super::S3;
use super::digest::StateDigest;
use super::listing::{CurrentObjects, Object};
use super::plan::{RestorePayload, Row};
use rollback_core::{DataLoss, Error, Result};

/// What making a prefix equal to a source does, counted per key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorDiff {
    /// Keys whose content differs: the source's object is copied over them.
    pub overwritten: u64,
    /// Keys only in the source: copied in.
    pub created: u64,
    /// Keys absent from the source: they get a delete marker (versioned buckets).
    pub removed: u64,
    /// Keys absent from the source that are left alone (`delete_extra = false`).
    pub kept: u64,
    /// Keys already equal (same ETag).
    pub unchanged: u64,
    /// Up to 20 example keys of each change, for people.
    pub examples: Vec<String>,
}

/// The preview a person reads before a restore or mirror: each count, then the
/// example keys (at most 20 per diff), one per line.
pub(crate) fn key_preview(counts: &[(&str, u64)], examples: &[String]) -> String {
    let mut out: Vec<String> = counts.iter().map(|(what, n)| format!("{n:>8} {what}")).collect();
    if !examples.is_empty() {
        out.push(format!("examples ({} of the changed keys):", examples.len()));
        out.extend(examples.iter().map(|e| format!("  {e}")));
    }
    out.join("\n")
}

impl MirrorDiff {
    fn note(&mut self, what: &str, key: &str) {
        if self.examples.len() < 20 {
            self.examples.push(format!("{what}: {key}"));
        }
    }

    /// The data-loss estimate: objects that stop being current. `versioned`: the
    /// destination keeps them as noncurrent versions.
    pub fn data_loss(&self, versioned: bool) -> DataLoss {
        let lost = self.overwritten + self.removed;
        if lost == 0 {
            return DataLoss::none();
        }
        let fate = if versioned {
            "they stay as noncurrent versions, nothing is destroyed"
        } else {
            "the bucket is NOT versioned: they are destroyed unless a snapshot was taken first"
        };
        DataLoss::some(
            Some(lost),
            format!(
                "{lost} current objects are replaced ({} overwritten by the source's content, {} absent from the \
                 source get a delete marker); {fate}",
                self.overwritten, self.removed
            ),
        )
    }
}

/// A resolved plan and the digests of the states before and after (over keys
/// relative to the prefixes, so a destination and a backup compare).
pub(crate) struct SyncPlan {
    pub payload: RestorePayload,
    pub diff: MirrorDiff,
    /// Destination now (relative keys).
    pub from: StateDigest,
    /// Destination after the plan (relative keys).
    pub to: StateDigest,
}

/// A bucket and a prefix (`""`: the whole bucket).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Place<'a> {
    pub bucket: &'a str,
    pub prefix: &'a str,
}

impl Place<'_> {
    /// Refuses places that overlap: a mirror into a prefix holding its own source
    /// (or the other way round) would copy or delete its own input.
    pub fn check_disjoint(&self, other: &Place<'_>) -> Result<()> {
        if self.bucket == other.bucket
            && (self.prefix.starts_with(other.prefix) || other.prefix.starts_with(self.prefix))
        {
            return Err(Error::invalid_input(format!(
                "s3://{}/{} and s3://{}/{} overlap: the source of a mirror must be outside its destination",
                self.bucket, self.prefix, other.bucket, other.prefix
            )));
        }
        Ok(())
    }
}

fn rel<'k>(key: &'k str, prefix: &str) -> &'k str {
    key.strip_prefix(prefix).unwrap_or(key)
}

/// Accumulates rows and digests while merging.
struct Builder {
    rows: Vec<Row>,
    diff: MirrorDiff,
    from: StateDigest,
    to: StateDigest,
    outside: StateDigest,
}

impl Builder {
    fn new() -> Self {
        Builder {
            rows: Vec::new(),
            diff: MirrorDiff::default(),
            from: StateDigest::default(),
            to: StateDigest::default(),
            outside: StateDigest::default(),
        }
    }

    fn finish(self, dst: Place<'_>, source_bucket: Option<&str>) -> SyncPlan {
        SyncPlan {
            payload: RestorePayload {
                bucket: dst.bucket.to_owned(),
                prefix: dst.prefix.to_owned(),
                source_bucket: source_bucket.map(str::to_owned),
                outside: self.outside.id(),
                rows: self.rows,
            },
            diff: self.diff,
            from: self.from,
            to: self.to,
        }
    }
}

/// Plans making `dst` equal to `src` (`mc mirror --overwrite`, plus `--remove` when
/// `delete_extra`): copy every source object whose ETag differs or is missing,
/// delete (a delete marker on versioned buckets) every destination key absent from
/// the source. Copies are conditional on the source's ETag as listed, so a source
/// changed after prepare fails the copy instead of restoring other content.
pub(crate) async fn plan_mirror(s3: &S3, dst: Place<'_>, src: Place<'_>, delete_extra: bool) -> Result<SyncPlan> {
    dst.check_disjoint(&src)?;
    let mut b = Builder::new();
    let mut d_list = CurrentObjects::new(s3, dst.bucket, dst.prefix);
    let mut s_list = CurrentObjects::new(s3, src.bucket, src.prefix);
    let (mut d, mut s) = (d_list.next().await?, s_list.next().await?);
    loop {
        let order = match (&d, &s) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(x), Some(y)) => rel(&x.key, dst.prefix).cmp(rel(&y.key, src.prefix)),
        };
        match order {
            Ordering::Equal => {
                let (x, y) = (d.take().expect("dst"), s.take().expect("src"));
                let r = rel(&x.key, dst.prefix);
                b.from.add(r, Some(&x.etag));
                b.to.add(r, Some(&y.etag));
                if x.etag == y.etag {
                    b.diff.unchanged += 1;
                    b.outside.add(&x.key, Some(&x.etag));
                } else {
                    b.diff.overwritten += 1;
                    b.diff.note("overwritten", &x.key);
                    b.rows.push((x.key, Some(x.etag), Some(y.key), None, Some(y.etag)));
                }
                d = d_list.next().await?;
                s = s_list.next().await?;
            }
            Ordering::Less => {
                let x = d.take().expect("dst");
                let r = rel(&x.key, dst.prefix);
                b.from.add(r, Some(&x.etag));
                if delete_extra {
                    b.diff.removed += 1;
                    b.diff.note("removed", &x.key);
                    b.rows.push((x.key, Some(x.etag), None, None, None));
                } else {
                    b.diff.kept += 1;
                    b.to.add(r, Some(&x.etag));
                    b.outside.add(&x.key, Some(&x.etag));
                }
                d = d_list.next().await?;
            }
            Ordering::Greater => {
                let y = s.take().expect("src");
                let r = rel(&y.key, src.prefix);
                b.to.add(r, Some(&y.etag));
                let key = format!("{}{r}", dst.prefix);
                b.diff.created += 1;
                b.diff.note("created", &key);
                b.rows.push((key, None, Some(y.key), None, Some(y.etag)));
                s = s_list.next().await?;
            }
        }
    }
    Ok(b.finish(dst, Some(src.bucket)))
}

/// One line of a version manifest: a key (relative to the manifest's prefix), the
/// version that was current, and its ETag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ManifestEntry {
    /// Key relative to the prefix.
    pub k: String,
    /// Version id.
    pub v: String,
    /// ETag.
    pub e: String,
}

/// Plans making `dst` hold exactly the manifest's versions (a point-in-time restore
/// to those versions): copy each listed version over its key where the current ETag
/// differs, delete keys the manifest does not list. `entries` must be in key order.
pub(crate) async fn plan_manifest(s3: &S3, dst: Place<'_>, entries: &[ManifestEntry]) -> Result<SyncPlan> {
    if let Some(w) = entries.windows(2).find(|w| w[0].k >= w[1].k) {
        return Err(Error::invalid_input(format!("the manifest is not in key order at {:?}", w[1].k)));
    }
    let mut b = Builder::new();
    let mut list = CurrentObjects::new(s3, dst.bucket, dst.prefix);
    let mut d: Option<Object> = list.next().await?;
    let mut m = entries.iter().peekable();
    loop {
        let order = match (&d, m.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(x), Some(y)) => rel(&x.key, dst.prefix).cmp(y.k.as_str()),
        };
        match order {
            Ordering::Equal | Ordering::Greater => {
                let y = m.next().expect("entry");
                let key = format!("{}{}", dst.prefix, y.k);
                b.to.add(&y.k, Some(&y.e));
                let cur = if order == Ordering::Equal {
                    let x = d.take().expect("dst");
                    d = list.next().await?;
                    b.from.add(&y.k, Some(&x.etag));
                    Some(x.etag)
                } else {
                    None
                };
                if cur.as_deref() == Some(y.e.as_str()) {
                    b.diff.unchanged += 1;
                    b.outside.add(&key, cur.as_deref());
                    continue;
                }
                if cur.is_some() {
                    b.diff.overwritten += 1;
                    b.diff.note("overwritten", &key);
                } else {
                    b.diff.created += 1;
                    b.diff.note("recreated", &key);
                }
                b.rows.push((key, cur, None, Some(y.v.clone()), Some(y.e.clone())));
            }
            Ordering::Less => {
                let x = d.take().expect("dst");
                b.from.add(rel(&x.key, dst.prefix), Some(&x.etag));
                b.diff.removed += 1;
                b.diff.note("removed", &x.key);
                b.rows.push((x.key, Some(x.etag), None, None, None));
                d = list.next().await?;
            }
        }
    }
    Ok(b.finish(dst, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_places_are_refused() {
        let p = |bucket, prefix| Place { bucket, prefix };
        assert!(p("b", "app/").check_disjoint(&p("b", "app/backups/")).is_err());
        assert!(p("b", "").check_disjoint(&p("b", "x/")).is_err());
        assert!(p("b", "app/").check_disjoint(&p("b", "backups/")).is_ok());
        assert!(p("b", "app/").check_disjoint(&p("c", "app/")).is_ok());
    }

    #[test]
    fn data_loss_names_the_fate() {
        let diff = MirrorDiff { overwritten: 2, removed: 1, ..Default::default() };
        assert!(diff.data_loss(true).summary.contains("nothing is destroyed"));
        assert!(diff.data_loss(false).summary.contains("destroyed unless a snapshot"));
        assert_eq!(diff.data_loss(true).items, Some(3));
        assert_eq!(MirrorDiff::default().data_loss(false), DataLoss::none());
    }
}
