//! What a WAL archive and a base-backup directory say, read from their files alone:
//! LSNs, segment names and their continuity, timeline histories, base backups
//! (`backup_label` + `backup_manifest` of `pg_basebackup -Fp`), and the restore
//! points `pg-restore-point` recorded.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use rollback_core::{Error, Result};

/// The file in the archive where `pg-restore-point` records the points it made.
pub const RESTORE_POINTS: &str = "rollback-restore-points.json";

/// A WAL location.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Lsn(pub u64);

impl Lsn {
    /// `0/3000060` as PostgreSQL prints it.
    ///
    /// ```
    /// # use rollback_db::pitr::Lsn;
    /// assert_eq!(Lsn::parse("1/3000060").unwrap().0, 0x1_0300_0060);
    /// assert_eq!(Lsn(0x1_0300_0060).to_string(), "1/3000060");
    /// ```
    pub fn parse(text: &str) -> Result<Lsn> {
        let (hi, lo) = text.trim().split_once('/').ok_or_else(|| Error::invalid_input(format!("bad LSN {text:?}")))?;
        let part = |p: &str| u64::from_str_radix(p, 16).map_err(|_| Error::invalid_input(format!("bad LSN {text:?}")));
        Ok(Lsn((part(hi)? << 32) | part(lo)?))
    }

    /// The segment number holding this location.
    pub fn segment(self, segment_size: u64) -> u64 {
        self.0 / segment_size
    }
}

impl std::fmt::Display for Lsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl TryFrom<String> for Lsn {
    type Error = Error;
    fn try_from(text: String) -> Result<Lsn> {
        Lsn::parse(&text)
    }
}

impl From<Lsn> for String {
    fn from(lsn: Lsn) -> String {
        lsn.to_string()
    }
}

/// A WAL segment file's name: timeline and segment number.
pub fn segment_name(timeline: u32, segment: u64, segment_size: u64) -> String {
    let per_id = 0x1_0000_0000 / segment_size;
    format!("{timeline:08X}{:08X}{:08X}", segment / per_id, segment % per_id)
}

/// The timeline of a WAL file name (its first eight hex digits).
///
/// ```
/// assert_eq!(rollback_db::pitr::timeline_of("000000020000000000000003"), Some(2));
/// ```
pub fn timeline_of(segment: &str) -> Option<u32> {
    u32::from_str_radix(segment.get(..8)?, 16).ok()
}

/// A restore point `pg-restore-point` made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestorePoint {
    /// Its name (unique: recovery stops at the first match).
    pub name: String,
    /// Where it is in the WAL.
    pub lsn: Lsn,
    /// When it was made.
    pub time: DateTime<Utc>,
    /// The timeline it was made on.
    pub timeline: u32,
    /// The idempotency key of the step that made it.
    pub key: String,
}

/// The restore points recorded in `archive` (oldest first).
pub fn restore_points(archive: &Path) -> Result<Vec<RestorePoint>> {
    match std::fs::read(archive.join(RESTORE_POINTS)) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            Error::new(rollback_core::ErrorKind::Corrupt, format!("{}: {e}", archive.join(RESTORE_POINTS).display()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::from(e).with_context("path", archive.join(RESTORE_POINTS).display())),
    }
}

/// Rewrites the restore-point list atomically (a temporary file renamed over it).
pub fn write_restore_points(archive: &Path, points: &[RestorePoint]) -> Result<()> {
    let path = archive.join(RESTORE_POINTS);
    let tmp = archive.join(format!(".{RESTORE_POINTS}.tmp"));
    let bytes = serde_json::to_vec_pretty(points).map_err(|e| Error::internal(e.to_string()))?;
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| Error::from(e).with_context("path", path.display()))
}

/// A base backup: a `pg_basebackup -Fp` directory or a pgBackRest backup set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaseBackup {
    /// Its name: the directory's, or pgBackRest's label.
    pub name: String,
    /// Its directory (`pg_basebackup` backups).
    pub dir: Option<PathBuf>,
    /// Its size in bytes, when known without reading it.
    pub size: u64,
    /// Where its WAL starts.
    pub start: Lsn,
    /// Where it becomes consistent (from `backup_manifest`; the start when absent).
    pub end: Lsn,
    /// When it started.
    pub started: DateTime<Utc>,
    /// Its timeline.
    pub timeline: u32,
}

/// The base backups under `dir` (each a subdirectory with a `backup_label`), oldest
/// first; subdirectories without one are skipped.
pub fn base_backups(dir: &Path) -> Result<Vec<BaseBackup>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::from(e).with_context("path", dir.display()))?;
    let mut backups = Vec::new();
    for entry in entries.flatten() {
        let label = match std::fs::read_to_string(entry.path().join("backup_label")) {
            Ok(label) => label,
            Err(_) => continue,
        };
        let field = |name: &str| label.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
        let bad = || Error::invalid_input(format!("{}: unreadable backup_label", entry.path().display()));
        let start =
            Lsn::parse(field("START WAL LOCATION:").ok_or_else(bad)?.split_whitespace().next().ok_or_else(bad)?)?;
        let started = field("START TIME:")
            .and_then(|t| NaiveDateTime::parse_from_str(t.trim_end_matches(" UTC"), "%Y-%m-%d %H:%M:%S").ok())
            .map(|t| t.and_utc())
            .ok_or_else(bad)?;
        let timeline = field("START TIMELINE:").and_then(|t| t.parse().ok()).ok_or_else(bad)?;
        let end = manifest_end(&entry.path().join("backup_manifest")).unwrap_or(start);
        let name = entry.file_name().to_string_lossy().into_owned();
        backups.push(BaseBackup { name, dir: Some(entry.path()), size: 0, start, end, started, timeline });
    }
    backups.sort_by_key(|b| b.start);
    Ok(backups)
}

/// The last WAL range's end in a `backup_manifest`.
fn manifest_end(path: &Path) -> Option<Lsn> {
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let ranges = manifest["WAL-Ranges"].as_array()?;
    ranges.iter().filter_map(|r| Lsn::parse(r["End-LSN"].as_str()?).ok()).max()
}

/// A timeline's ancestry from its `.history` file in the archive: `(parent
/// timeline, where it ended)` oldest first. Timeline 1 has none.
pub fn history(archive: &Path, timeline: u32) -> Result<Vec<(u32, Lsn)>> {
    if timeline <= 1 {
        return Ok(Vec::new());
    }
    let path = archive.join(format!("{timeline:08X}.history"));
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Error::not_found(format!(
            "timeline {timeline}'s history file {} is not in the archive ({e}): a recovery cannot follow it",
            path.display()
        ))
    })?;
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
        let mut words = line.split_whitespace();
        let (Some(tli), Some(lsn)) = (words.next(), words.next()) else { continue };
        out.push((
            tli.parse().map_err(|_| Error::invalid_input(format!("{}: bad line", path.display())))?,
            Lsn::parse(lsn)?,
        ));
    }
    Ok(out)
}

/// The timeline a location belongs to on the way to `timeline`: the first ancestor
/// whose switch point is after it, else `timeline` itself.
pub fn timeline_at(ancestry: &[(u32, Lsn)], timeline: u32, lsn: Lsn) -> u32 {
    ancestry.iter().find(|(_, end)| lsn < *end).map_or(timeline, |(tli, _)| *tli)
}

/// The first segment missing from the archive between `from` and `to` (inclusive)
/// on the way to `timeline`, if any.
pub fn first_gap(
    archive: &Path,
    ancestry: &[(u32, Lsn)],
    timeline: u32,
    from: Lsn,
    to: Lsn,
    segment_size: u64,
) -> Option<String> {
    (from.segment(segment_size)..=to.segment(segment_size)).find_map(|segment| {
        // A segment holding a switch point is read from the newer timeline (the older
        // one's copy is archived as `.partial`).
        let tli = timeline_at(ancestry, timeline, Lsn(segment * segment_size + segment_size - 1));
        let name = segment_name(tli, segment, segment_size);
        (!archive.join(&name).is_file()).then_some(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_follow_postgres() {
        let size = 16 * 1024 * 1024;
        assert_eq!(segment_name(1, Lsn::parse("0/3000060").unwrap().segment(size), size), "000000010000000000000003");
        assert_eq!(segment_name(2, Lsn::parse("1/0").unwrap().segment(size), size), "000000020000000100000000");
    }

    #[test]
    fn a_location_belongs_to_the_timeline_it_was_written_on() {
        let ancestry = [(1, Lsn::parse("0/5000000").unwrap()), (2, Lsn::parse("0/9000000").unwrap())];
        assert_eq!(timeline_at(&ancestry, 3, Lsn::parse("0/4000000").unwrap()), 1);
        assert_eq!(timeline_at(&ancestry, 3, Lsn::parse("0/6000000").unwrap()), 2);
        assert_eq!(timeline_at(&ancestry, 3, Lsn::parse("0/A000000").unwrap()), 3);
    }
}
