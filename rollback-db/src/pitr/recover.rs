//! Apply: recover beside, verify, then switch — each phase visible in the files
//! and servers alone, so `observe` tells them apart and a resume goes on from the
//! one it finds:
//!
//! 1. *fresh*: nothing of this run on disk;
//! 2. *restored*: `<data>.rb-recover-<id>` holds the base backup, the recovery
//!    settings, `recovery.signal` and a marker with the run's key (written into a
//!    `.tmp` directory renamed into place, so it is whole or absent); its server
//!    runs on the spare port, archiving to `<data>.rb-wal-<id>`, until it promotes
//!    and passes the verification queries (a failure stops it, renames it
//!    `.rb-unverified-<id>`, and leaves the live cluster as it was);
//! 3. *renaming*: the live cluster stopped and kept as `<data>.rb-damaged-<id>`;
//! 4. *switched*: the recovered copy is `<data>` (the marker says so), with the
//!    live cluster's port and archiving, its new timeline's history and staged WAL
//!    copied into the real archive; done once it serves, out of recovery.

use serde_json::json;
use std::path::{Path, PathBuf};

use super::resolve::Recovery;
use super::{PgPitr, PitrPhase};
use rollback_core::{Change, Error, ErrorKind, IdempotencyKey, Observed, Result};

const MARKER: &str = "rollback-pitr.json";
const BEGIN: &str = "# rollback pg-pitr: begin";
const END: &str = "# rollback pg-pitr: end";

/// This run's paths beside the data directory.
struct Dirs {
    live: PathBuf,
    recovering: PathBuf,
    tmp: PathBuf,
    damaged: PathBuf,
    unverified: PathBuf,
    staging: PathBuf,
    log: PathBuf,
}

/// FNV-1a: a short, stable id of the run key for directory names.
fn short_id(key: &IdempotencyKey) -> String {
    let hash =
        key.as_str().bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("{hash:016x}")
}

fn dirs(data_dir: &Path, key: &IdempotencyKey) -> Dirs {
    let id = short_id(key);
    let name = data_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let beside = |what: &str| data_dir.with_file_name(format!("{name}.rb-{what}-{id}"));
    Dirs {
        live: data_dir.to_path_buf(),
        recovering: beside("recover"),
        tmp: beside("recover-tmp"),
        damaged: beside("damaged"),
        unverified: beside("unverified"),
        staging: beside("wal"),
        log: data_dir.with_file_name(format!("{name}.rb-{id}.log")),
    }
}

enum Phase {
    Fresh,
    Restored,
    Renaming,
    Switched,
}

fn marker_key(dir: &Path) -> Option<String> {
    let text = std::fs::read(dir.join(MARKER)).ok()?;
    serde_json::from_slice::<serde_json::Value>(&text).ok()?["key"].as_str().map(str::to_owned)
}

fn phase(d: &Dirs, key: &IdempotencyKey) -> Result<Phase> {
    if marker_key(&d.live).as_deref() == Some(key.as_str()) {
        return Ok(Phase::Switched);
    }
    if !d.live.exists() && d.damaged.exists() {
        if !d.recovering.exists() {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!(
                    "{} is gone and so is the recovered copy: the kept cluster is {}",
                    d.live.display(),
                    d.damaged.display()
                ),
            ));
        }
        return Ok(Phase::Renaming);
    }
    Ok(if d.recovering.exists() { Phase::Restored } else { Phase::Fresh })
}

fn recovery_of(change: &Change) -> Result<Recovery> {
    serde_json::from_value(change.payload.clone())
        .map_err(|e| Error::invalid_input(format!("pg-pitr change payload: {e}")))
}

/// A `postgresql.conf` string literal.
fn quoted(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

pub(super) async fn apply(target: &PgPitr, change: &Change, key: &IdempotencyKey) -> Result<()> {
    let recovery = recovery_of(change)?;
    let d = dirs(&target.config.data_dir, key);
    // Every pass moves at least one phase on (four phases; two passes to spare).
    for _ in 0..6 {
        match phase(&d, key)? {
            Phase::Switched => return serve(target, &d, recovery.port).await,
            Phase::Renaming => {
                rename(&d.recovering, &d.live)?;
                target.reached(PitrPhase::Switched);
            }
            Phase::Fresh => {
                if let Some(moved) = timeline_moved(target, &recovery).await? {
                    return Err(Error::new(ErrorKind::Conflict, moved));
                }
                restore(target, &recovery, &d, key).await?
            }
            Phase::Restored => beside_then_switch(target, &recovery, &d, key).await?,
        }
    }
    Err(Error::internal("pg-pitr apply did not converge"))
}

pub(super) async fn observe(target: &PgPitr, change: &Change, key: &IdempotencyKey) -> Result<Observed> {
    let d = dirs(&target.config.data_dir, key);
    Ok(match phase(&d, key)? {
        Phase::Switched if serving(target, &d.live, recovery_of(change)?.port).await => Observed::Done,
        Phase::Switched => Observed::Partial(format!("{} is the recovered cluster, not serving yet", d.live.display())),
        Phase::Renaming => {
            Observed::Partial(format!("the live cluster is kept as {}; the switch is half-way", d.damaged.display()))
        }
        Phase::Restored => {
            Observed::Partial(format!("the recovered copy {} is not switched in", d.recovering.display()))
        }
        Phase::Fresh => match timeline_moved(target, &recovery_of(change)?).await {
            Ok(Some(moved)) => Observed::Diverged(moved),
            // A live cluster that cannot be read now is judged again by apply.
            Ok(None) | Err(_) => Observed::NotStarted,
        },
    })
}

/// The compare of the compare-and-swap: the live cluster must still be on the
/// timeline the change was prepared on (a recovery by anyone else starts a new one).
/// Writes since then do not count: they are what the recovery is for.
async fn timeline_moved(target: &PgPitr, recovery: &Recovery) -> Result<Option<String>> {
    let live = super::resolve::live(&target.sessions).await?;
    Ok((live.timeline != recovery.timeline).then(|| {
        format!(
            "the live cluster is on timeline {} now, not {} as when this recovery was prepared: it was recovered \
             since; prepare again",
            live.timeline, recovery.timeline
        )
    }))
}

async fn serving(target: &PgPitr, data: &Path, port: u16) -> bool {
    if !target.tools.running(data).await {
        return false;
    }
    let Ok(mut conn) = target.sessions.connect(port).await else { return false };
    matches!(sqlx::query_scalar::<_, bool>("SELECT pg_is_in_recovery()").fetch_one(&mut conn).await, Ok(false))
}

/// The switched cluster up on the real port, out of recovery.
async fn serve(target: &PgPitr, d: &Dirs, port: u16) -> Result<()> {
    target.tools.start(&d.live, port, &d.log).await?;
    let alive = || target.tools.running(&d.live);
    target.sessions.wait_promoted(port, target.config.recovery_timeout, alive).await.map_err(|e| with_log(e, &d.log))
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to)
        .map_err(|e| Error::from(e).with_context("rename", format!("{} -> {}", from.display(), to.display())))
}

/// The data directory's owner, for what this runner (root) writes into it.
fn owner(d: &Dirs) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&d.live).or_else(|_| std::fs::metadata(&d.damaged)).ok()?;
    Some((meta.uid(), meta.gid()))
}

fn write_owned(path: &Path, bytes: &[u8], owner: Option<(u32, u32)>) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::from(e).with_context("path", path.display()))?;
    chown(path, owner)
}

fn chown(path: &Path, owner: Option<(u32, u32)>) -> Result<()> {
    match owner {
        Some((uid, gid)) => std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(|e| Error::from(e).with_context("chown", path.display())),
        None => Ok(()),
    }
}

/// Replaces this target's block at the end of `postgresql.auto.conf`.
fn settings(dir: &Path, lines: &[String], owner: Option<(u32, u32)>) -> Result<()> {
    let path = dir.join("postgresql.auto.conf");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let mut kept = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        match line {
            BEGIN => inside = true,
            END => inside = false,
            _ if !inside => kept.push(line.to_owned()),
            _ => {}
        }
    }
    kept.push(BEGIN.to_owned());
    kept.extend(lines.iter().cloned());
    kept.push(END.to_owned());
    write_owned(&path, format!("{}\n", kept.join("\n")).as_bytes(), owner)
}

/// Phase 1 → 2: the base backup copied into a temporary directory, the recovery
/// settings, `recovery.signal` and the marker written, then renamed into place.
async fn restore(target: &PgPitr, recovery: &Recovery, d: &Dirs, key: &IdempotencyKey) -> Result<()> {
    let owner = owner(d);
    if d.tmp.exists() {
        std::fs::remove_dir_all(&d.tmp).map_err(|e| Error::from(e).with_context("path", d.tmp.display()))?;
    }
    let engine_settings = target.source.restore(&target.tools, recovery, &d.tmp, &d.recovering).await?;
    if !d.staging.exists() {
        std::fs::create_dir(&d.staging).map_err(|e| Error::from(e).with_context("path", d.staging.display()))?;
        chown(&d.staging, owner)?;
    }
    for stale in ["postmaster.pid", "standby.signal"] {
        let _ = std::fs::remove_file(d.tmp.join(stale));
    }
    let staging = d.staging.display().to_string();
    let mut lines = vec![
        format!("port = {}", target.config.spare_port),
        "archive_mode = 'on'".to_owned(),
        format!("archive_command = {}", quoted(&format!("test ! -f \"{staging}/%f\" && cp \"%p\" \"{staging}/%f\""))),
    ];
    lines.extend(engine_settings);
    settings(&d.tmp, &lines, owner)?;
    write_owned(&d.tmp.join("recovery.signal"), b"", owner)?;
    let marker = json!({ "key": key.as_str(), "backup": recovery.backup, "target": recovery.target });
    write_owned(&d.tmp.join(MARKER), marker.to_string().as_bytes(), owner)?;
    tracing::info!(dir = %d.recovering.display(), "pg-pitr: base backup restored beside the live cluster");
    rename(&d.tmp, &d.recovering)?;
    target.reached(PitrPhase::Restored);
    Ok(())
}

/// PostgreSQL's own cause in an error: the server log's last FATAL/PANIC/ERROR
/// line, else its last line.
fn with_log(err: Error, log: &Path) -> Error {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let cause =
        lines.iter().rev().find(|l| l.contains("FATAL") || l.contains("PANIC") || l.contains("ERROR")).or(lines.last());
    match cause {
        Some(line) => Error::new(err.kind(), format!("{}: {}", err.message(), rollback_core::process::cause(line))),
        None => err,
    }
}

/// Phase 2 → 3: recovered beside on the spare port, verified, stopped; the live
/// cluster stopped and kept; the copy made the live one.
async fn beside_then_switch(target: &PgPitr, recovery: &Recovery, d: &Dirs, key: &IdempotencyKey) -> Result<()> {
    let spare = target.config.spare_port;
    target.tools.start(&d.recovering, spare, &d.log).await?;
    let alive = || target.tools.running(&d.recovering);
    target
        .sessions
        .wait_promoted(spare, target.config.recovery_timeout, alive)
        .await
        .map_err(|e| with_log(e, &d.log))?;
    target.reached(PitrPhase::Promoted);
    if let Some(line) =
        std::fs::read_to_string(&d.log).unwrap_or_default().lines().find(|l| l.contains("recovery stopping"))
    {
        // PostgreSQL's own word on where it stopped, in the step's report too.
        let stopped = rollback_core::process::cause(line);
        tracing::info!(target: "rollback_db::pitr", "{stopped}");
        rollback_core::progress::note("recovery_stopped", stopped);
    }
    if let Err(failed) = verify(target, spare).await {
        target.tools.stop(&d.recovering).await?;
        rename(&d.recovering, &d.unverified)?;
        return Err(failed.with_context("kept for inspection", d.unverified.display()));
    }
    target.reached(PitrPhase::Verified);
    target.tools.stop(&d.recovering).await?;
    let owner = owner(d);
    settings(
        &d.recovering,
        &[
            format!("port = {}", recovery.port),
            format!("archive_mode = {}", quoted(&recovery.archive_mode)),
            format!("archive_command = {}", quoted(&recovery.archive_command)),
        ],
        owner,
    )?;
    // The compare of the compare-and-swap once more, right before the switch: the
    // recovery took a while, and a resume comes here without passing the first one.
    if target.tools.running(&d.live).await
        && let Some(moved) = timeline_moved(target, recovery).await?
    {
        return Err(Error::new(ErrorKind::Conflict, moved));
    }
    target.source.publish(&target.tools, &d.staging, owner).await?;
    target.tools.stop(&d.live).await?;
    target.reached(PitrPhase::LiveStopped);
    rename(&d.live, &d.damaged)?;
    target.reached(PitrPhase::LiveKept);
    tracing::info!(kept = %d.damaged.display(), key = key.as_str(), "pg-pitr: live cluster stopped and kept");
    rename(&d.recovering, &d.live)?;
    target.reached(PitrPhase::Switched);
    Ok(())
}

/// The configured queries on the recovered copy: each must succeed, and a boolean
/// result must be true.
async fn verify(target: &PgPitr, port: u16) -> Result<()> {
    use sqlx::Row;
    let mut conn = target.sessions.connect(port).await?;
    for query in &target.config.verify {
        let row = sqlx::query(sqlx::AssertSqlSafe(query.clone())).fetch_optional(&mut conn).await.map_err(|e| {
            Error::new(ErrorKind::VerificationFailed, format!("verification query failed on the recovered copy: {e}"))
                .with_context("query", query)
        })?;
        if let Some(false) = row.and_then(|r| r.try_get::<bool, _>(0).ok()) {
            return Err(Error::new(ErrorKind::VerificationFailed, format!("verification returned false: {query}")));
        }
    }
    Ok(())
}
