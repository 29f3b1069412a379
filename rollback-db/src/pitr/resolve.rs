//! Prepare: one absolute recovery target, or a refusal naming why PostgreSQL could
//! not reach it — archiving off or failing, an unknown restore point, a target
//! before the oldest base backup's end, a timeline that does not contain it, a gap
//! in the archive, a time in the future (no commit after it), too little disk.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

use super::PgPitr;
use super::archive::{self, BaseBackup, Lsn, RESTORE_POINTS, RestorePoint};
use super::server::{Sessions, wait_archived};
use crate::error::map;
use rollback_core::{Change, DataLoss, Error, ErrorKind, Result, Reversibility, Selector, Version};

/// Where the live cluster writes now.
pub(super) struct Live {
    pub timeline: u32,
    pub lsn: Lsn,
}

/// What recovery stops at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum RecoveryTarget {
    /// A restore point (`recovery_target_name`).
    Name { name: String, lsn: Lsn },
    /// Just before a time (`recovery_target_time`, not inclusive).
    Time { time: DateTime<Utc> },
    /// A WAL location (`recovery_target_lsn`, inclusive).
    Lsn { lsn: Lsn },
    /// The base backup's end (`recovery_target = 'immediate'`).
    Immediate,
}

/// The journaled plan of one recovery (the change's payload).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Recovery {
    pub target: RecoveryTarget,
    /// The base backup restored from (its directory name, or pgBackRest's label).
    pub backup: String,
    /// `recovery_target_timeline`: the live cluster's timeline, whose history leads
    /// to the target.
    pub timeline: u32,
    /// The live cluster's archiving, given to the recovered one at the switch.
    pub archive_mode: String,
    pub archive_command: String,
    /// The live cluster's port.
    pub port: u16,
}

pub(super) async fn live(sessions: &Sessions) -> Result<Live> {
    live_on(&mut sessions.connect(sessions.port()).await?).await
}

async fn live_on(conn: &mut sqlx::PgConnection) -> Result<Live> {
    let (file, lsn): (String, String) =
        sqlx::query_as("SELECT pg_walfile_name(pg_current_wal_lsn()), pg_current_wal_lsn()::text")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| map("read the WAL position", e))?;
    let timeline =
        archive::timeline_of(&file).ok_or_else(|| Error::internal(format!("unexpected WAL file name {file}")))?;
    Ok(Live { timeline, lsn: Lsn::parse(&lsn)? })
}

fn refuse(why: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidInput, why.into())
}

pub(super) async fn prepare(target: &PgPitr, selector: &Selector) -> Result<Change> {
    let config = &target.config;
    let mut conn = target.sessions.connect(target.sessions.port()).await?;
    let (archive_mode, archive_command, segment_size): (String, String, String) = sqlx::query_as(
        "SELECT current_setting('archive_mode'), current_setting('archive_command'), \
         (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size')",
    )
    .fetch_one(&mut conn)
    .await
    .map_err(|e| map("read the archive settings", e))?;
    let segment_size: u64 = segment_size.parse().map_err(|_| Error::internal("unreadable wal_segment_size"))?;
    if archive_mode == "off" {
        return Err(refuse("archive_mode is off: there is no WAL archive to recover from"));
    }
    let (failed_wal, failing): (Option<String>, bool) = sqlx::query_as(
        "SELECT last_failed_wal, COALESCE(last_failed_time > COALESCE(last_archived_time, '-infinity'), false) \
         FROM pg_stat_archiver",
    )
    .fetch_one(&mut conn)
    .await
    .map_err(|e| map("read pg_stat_archiver", e))?;
    if failing {
        return Err(refuse(format!(
            "archiving is failing now (last failed: {}); the archive would end before the target",
            failed_wal.unwrap_or_default()
        )));
    }
    // What the selector names, before anything is written (a switch keeps the timeline).
    let points = archive::restore_points(&config.archive)?;
    let backups = target.source.backups(&target.tools).await?;
    let timeline = live_on(&mut conn).await?.timeline;
    let Goal { target: goal, timeline: goal_tli, lsn: goal_lsn, since, label, backup: named_backup } =
        goal(selector, &points, &backups, &config.archive, timeline)?;
    // A time needs a commit after it (recovery ends with FATAL otherwise): make one.
    if let Selector::Before(time) = selector {
        let now: DateTime<Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| map("read the clock", e))?;
        if *time >= now {
            return Err(refuse(format!(
                "{time} is not in the past (the server's clock says {now}): nothing to recover to"
            )));
        }
        sqlx::query("SELECT pg_current_xact_id()").execute(&mut conn).await.map_err(|e| map("commit a marker", e))?;
    }
    // Everything up to now into the archive before it is read.
    let (switched, switch_lsn): (String, String) =
        sqlx::query_as("SELECT pg_walfile_name(lsn), lsn::text FROM pg_switch_wal() AS lsn")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| map("pg_switch_wal", e))?;
    let wait = Duration::from_secs(60);
    if let Err(last) = wait_archived(&mut conn, &switched, wait).await? {
        return Err(refuse(format!(
            "WAL segment {switched} was not archived within {wait:?} of pg_switch_wal() (last archived: {last})"
        )));
    }
    let switch_lsn = Lsn::parse(&switch_lsn)?;
    let live = live_on(&mut conn).await?;
    let ancestry = target.source.history(&target.tools, live.timeline).await?;
    if goal_tli != live.timeline {
        match ancestry.iter().find(|(tli, _)| *tli == goal_tli) {
            Some((_, ended)) if goal_lsn.is_some_and(|lsn| lsn <= *ended) => {}
            Some((_, ended)) => {
                return Err(refuse(format!(
                    "{label} is on timeline {goal_tli}, which the live timeline {} left at {ended}, before it",
                    live.timeline
                )));
            }
            None => {
                return Err(refuse(format!(
                    "{label} is on timeline {goal_tli}, which is not in the live timeline {}'s history",
                    live.timeline
                )));
            }
        }
    }
    let on_path = |b: &BaseBackup| archive::timeline_at(&ancestry, live.timeline, b.start) == b.timeline;
    let backup = match &goal {
        RecoveryTarget::Immediate => backups.iter().find(|b| named_backup.as_ref() == Some(&b.name)).cloned(),
        RecoveryTarget::Name { lsn, .. } | RecoveryTarget::Lsn { lsn } => {
            backups.iter().rev().find(|b| on_path(b) && b.end <= *lsn).cloned()
        }
        RecoveryTarget::Time { time } => backups.iter().rev().find(|b| on_path(b) && b.started < *time).cloned(),
    };
    let Some(backup) = backup else {
        let oldest = backups
            .first()
            .map(|b| format!("the oldest, {}, is consistent at {} ({})", b.name, b.end, b.started))
            .unwrap_or_else(|| "there is none".to_owned());
        return Err(refuse(format!("{label} is before the oldest usable base backup's end: {oldest}")));
    };
    let until = goal_lsn.unwrap_or(Lsn(switch_lsn.0.saturating_sub(1)));
    if let Some(missing) =
        target.source.first_gap(&target.tools, &ancestry, live.timeline, backup.start, until, segment_size).await?
    {
        return Err(refuse(format!(
            "the archive has a gap: {missing} is missing from {} (needed from the base backup at {} to {label})",
            config.archive.display(),
            backup.start
        )));
    }
    check_disk(&backup, &config.data_dir).await?;

    let from_lsn = goal_lsn.map_or_else(|| format!("after {since}"), |lsn| format!("after {lsn}"));
    let mut data_loss = DataLoss::unknown(format!(
        "recovery discards every write {from_lsn} ({since}) up to {} (now, timeline {}); the live data directory is \
         kept",
        live.lsn, live.timeline
    ));
    if let Some(counted) = count_loss(target, since).await? {
        data_loss = DataLoss { summary: format!("{}; {}", counted.summary, data_loss.summary), ..counted };
    }
    let recovery = Recovery {
        target: goal,
        backup: backup.name.clone(),
        timeline: live.timeline,
        archive_mode,
        archive_command,
        port: target.sessions.port(),
    };
    let id = match &recovery.target {
        RecoveryTarget::Name { name, .. } => name.clone(),
        RecoveryTarget::Time { time } => format!("time:{}", time.to_rfc3339()),
        RecoveryTarget::Immediate => format!("backup:{}", backup.name),
        RecoveryTarget::Lsn { lsn } => format!("lsn:{lsn}"),
    };
    let description = format!(
        "{}: recover {} to {label} from base backup {} (timeline {}), verify on port {}, then switch; the live data \
         directory is kept",
        target.name,
        config.data_dir.display(),
        backup.name,
        live.timeline,
        config.spare_port
    );
    let from = Version::labeled(format!("live:{}:{}", live.timeline, live.lsn), format!("timeline {}", live.timeline));
    Ok(Change::new(target.name.clone(), "pg-pitr", Some(from), Version::labeled(id, label))
        .with_payload(serde_json::to_value(&recovery).map_err(|e| Error::internal(e.to_string()))?)
        .describe(description)
        .with_reversibility(Reversibility::Irreversible)
        .with_data_loss(data_loss))
}

/// What a selector names.
struct Goal {
    target: RecoveryTarget,
    /// The timeline it is on.
    timeline: u32,
    /// Where it is, when known (not for a time).
    lsn: Option<Lsn>,
    /// The time it stands for.
    since: DateTime<Utc>,
    /// How reports name it.
    label: String,
    /// The base backup it names (`backup:NAME`).
    backup: Option<String>,
}

/// The recovery target a selector names.
fn goal(
    selector: &Selector,
    points: &[RestorePoint],
    backups: &[BaseBackup],
    archive: &Path,
    live_timeline: u32,
) -> Result<Goal> {
    let point = |p: &RestorePoint| Goal {
        target: RecoveryTarget::Name { name: p.name.clone(), lsn: p.lsn },
        timeline: p.timeline,
        lsn: Some(p.lsn),
        since: p.time,
        label: format!("restore point {:?} ({} on timeline {})", p.name, p.lsn, p.timeline),
        backup: None,
    };
    let listed = || {
        let names: Vec<&str> = points.iter().rev().take(10).map(|p| p.name.as_str()).collect();
        format!("the restore points recorded in {} are: {}", archive.join(RESTORE_POINTS).display(), names.join(", "))
    };
    match selector {
        Selector::Exact(id) if id.starts_with("backup:") => {
            let name = &id["backup:".len()..];
            let b = backups
                .iter()
                .find(|b| b.name == name)
                .ok_or_else(|| Error::not_found(format!("no base backup {name:?} in the backups directory")))?;
            Ok(Goal {
                target: RecoveryTarget::Immediate,
                timeline: b.timeline,
                lsn: Some(b.end),
                since: b.started,
                label: format!("base backup {name} (consistent at {})", b.end),
                backup: Some(b.name.clone()),
            })
        }
        Selector::Exact(id) if id.starts_with("lsn:") => {
            let lsn = Lsn::parse(&id["lsn:".len()..])?;
            Ok(Goal {
                target: RecoveryTarget::Lsn { lsn },
                timeline: live_timeline,
                lsn: Some(lsn),
                // No time is known for a location: the data-loss count starts at the newest
                // restore point before it, or counts nothing.
                since: points.iter().rev().find(|p| p.lsn <= lsn).map_or_else(Utc::now, |p| p.time),
                label: format!("WAL location {lsn} (inclusive)"),
                backup: None,
            })
        }
        Selector::Exact(name) => points
            .iter()
            .find(|p| &p.name == name)
            .map(point)
            .ok_or_else(|| Error::not_found(format!("no restore point {name:?}; {}", listed()))),
        Selector::Previous | Selector::Back(_) => {
            let n = if let Selector::Back(n) = selector { (*n).max(1) as usize } else { 1 };
            points
                .iter()
                .rev()
                .nth(n - 1)
                .map(point)
                .ok_or_else(|| Error::not_found(format!("fewer than {n} restore point(s) to go back to; {}", listed())))
        }
        Selector::Before(time) => Ok(Goal {
            target: RecoveryTarget::Time { time: *time },
            timeline: live_timeline,
            lsn: None,
            since: *time,
            label: format!("just before {}", time.to_rfc3339()),
            backup: None,
        }),
    }
}

/// Bytes under `dir`.
fn size_of(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => size_of(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

/// Refuses when the new data directory (the backup, plus a tenth for WAL replay)
/// would not fit beside the live one.
async fn check_disk(backup: &BaseBackup, data_dir: &Path) -> Result<()> {
    let parent = data_dir.parent().unwrap_or(Path::new("/"));
    let argv = vec!["df".to_owned(), "-Pk".to_owned(), parent.display().to_string()];
    let out =
        rollback_core::process::run(rollback_core::process::Invocation::new("df", &argv, Duration::from_secs(10)))
            .await?;
    let free_kib: u64 = String::from_utf8_lossy(&out)
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| Error::internal("unreadable df output"))?;
    let size = backup.dir.as_deref().map_or(backup.size, size_of);
    let needed = size + size / 10;
    if free_kib * 1024 < needed {
        return Err(refuse(format!(
            "not enough free disk beside {}: {} MiB needed, {} MiB free",
            data_dir.display(),
            needed >> 20,
            free_kib >> 10
        )));
    }
    Ok(())
}

/// The configured data-loss count on the live cluster, since `since`.
async fn count_loss(target: &PgPitr, since: DateTime<Utc>) -> Result<Option<DataLoss>> {
    if target.config.data_loss.is_empty() {
        return Ok(None);
    }
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(target.url.expose())
        .await
        .map_err(|e| map("connect", e))?;
    let estimate = target.config.data_loss.estimate(&pool, false, since, "by the recovery").await;
    pool.close().await;
    estimate
}
