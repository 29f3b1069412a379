//! Where base backups and WAL come from — the recovery engine. Everything else
//! (resolution, recover beside, verify, switch, observe) is the same code for both.
//!
//! * [`Source::Archive`]: an archive directory `archive_command` copies into and a
//!   directory of `pg_basebackup -Fp` backups; PostgreSQL's `restore_command` copies
//!   from the archive (through a temporary name, so a file is whole or absent).
//! * [`Source::Pgbackrest`]: a pgBackRest stanza; `pgbackrest restore` writes the
//!   backup, `restore_command` (`archive-get`) and the recovery target itself, and
//!   the recovered copy's new WAL is `archive-push`ed at the switch.

use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::archive::{self, BaseBackup, Lsn};
use super::resolve::{Recovery, RecoveryTarget};
use super::server::Tools;
use rollback_core::{Error, ErrorKind, Result};

/// A pgBackRest stanza.
#[derive(Debug, Clone)]
pub struct Pgbackrest {
    /// The stanza.
    pub stanza: String,
    /// Its configuration file (pgBackRest's default when `None`).
    pub config: Option<PathBuf>,
}

/// The recovery engine of a `pg-pitr` target.
#[derive(Debug, Clone)]
pub enum Source {
    /// WAL archive directory + `pg_basebackup` directories.
    Archive { archive: PathBuf, backups: PathBuf },
    /// pgBackRest.
    Pgbackrest(Pgbackrest),
}

const DAY: Duration = Duration::from_secs(24 * 3600);

impl Pgbackrest {
    /// `pgbackrest --stanza=S [--config=C] COMMAND EXTRA…` as the cluster's user.
    async fn run(&self, tools: &Tools, command: &str, extra: &[String], timeout: Duration) -> Result<String> {
        let mut args = vec![format!("--stanza={}", self.stanza)];
        if let Some(config) = &self.config {
            args.push(format!("--config={}", config.display()));
        }
        args.push(command.to_owned());
        args.extend(extra.iter().cloned());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        tools.run("/usr/bin/pgbackrest", &refs, timeout).await
    }

    async fn info(&self, tools: &Tools) -> Result<serde_json::Value> {
        let text = self.run(tools, "info", &["--output=json".to_owned()], Duration::from_secs(120)).await?;
        let all: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::internal(format!("pgbackrest info: {e}")))?;
        all.as_array()
            .and_then(|stanzas| stanzas.iter().find(|s| s["name"] == self.stanza.as_str()).cloned())
            .ok_or_else(|| Error::not_found(format!("pgbackrest has no stanza {:?}", self.stanza)))
    }
}

fn lsn_field(value: &serde_json::Value) -> Option<Lsn> {
    Lsn::parse(value.as_str()?).ok()
}

impl Source {
    /// The base backups, oldest first.
    pub async fn backups(&self, tools: &Tools) -> Result<Vec<BaseBackup>> {
        match self {
            Source::Archive { backups, .. } => archive::base_backups(backups),
            Source::Pgbackrest(pgbr) => {
                let info = pgbr.info(tools).await?;
                let mut out = Vec::new();
                for b in info["backup"].as_array().into_iter().flatten() {
                    let (Some(start), Some(end)) = (lsn_field(&b["lsn"]["start"]), lsn_field(&b["lsn"]["stop"])) else {
                        continue;
                    };
                    let timeline = b["archive"]["start"].as_str().and_then(archive::timeline_of).unwrap_or(1);
                    let started = b["timestamp"]["start"].as_i64().and_then(|t| DateTime::<Utc>::from_timestamp(t, 0));
                    out.push(BaseBackup {
                        name: b["label"].as_str().unwrap_or_default().to_owned(),
                        dir: None,
                        start,
                        end,
                        started: started.unwrap_or_default(),
                        timeline,
                        size: b["info"]["size"].as_u64().unwrap_or(0),
                    });
                }
                out.sort_by_key(|b| b.start);
                Ok(out)
            }
        }
    }

    /// A timeline's ancestry (see [`archive::history`]).
    pub async fn history(&self, tools: &Tools, timeline: u32) -> Result<Vec<(u32, Lsn)>> {
        match self {
            Source::Archive { archive, .. } => archive::history(archive, timeline),
            Source::Pgbackrest(pgbr) => {
                if timeline <= 1 {
                    return Ok(Vec::new());
                }
                let dir = tempfile_dir(tools)?;
                let file = format!("{timeline:08X}.history");
                let into = dir.join(&file).display().to_string();
                pgbr.run(tools, "archive-get", &[file.clone(), into], Duration::from_secs(120)).await.map_err(|e| {
                    Error::not_found(format!(
                        "timeline {timeline}'s history file is not in the pgBackRest repository: {e}"
                    ))
                })?;
                let history = archive::history(&dir, timeline);
                let _ = std::fs::remove_dir_all(&dir);
                history
            }
        }
    }

    /// The first WAL segment missing between `from` and `to`, if any (pgBackRest:
    /// outside the archive's min/max range for the cluster).
    pub async fn first_gap(
        &self,
        tools: &Tools,
        ancestry: &[(u32, Lsn)],
        timeline: u32,
        from: Lsn,
        to: Lsn,
        segment_size: u64,
    ) -> Result<Option<String>> {
        match self {
            Source::Archive { archive, .. } => {
                Ok(archive::first_gap(archive, ancestry, timeline, from, to, segment_size))
            }
            Source::Pgbackrest(pgbr) => {
                let info = pgbr.info(tools).await?;
                let max = info["archive"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a["max"].as_str())
                    .max()
                    .unwrap_or_default()
                    .to_owned();
                let last = archive::segment_name(
                    archive::timeline_at(ancestry, timeline, to),
                    to.segment(segment_size),
                    segment_size,
                );
                // Names of one timeline sort as their segments; a later timeline sorts after.
                Ok((max.as_str() < &last[..]).then(|| format!("{last} (the repository's archive ends at {max})")))
            }
        }
    }

    /// Writes the backup into `into` (absent), which the server will run from as
    /// `runs_in` (it is renamed there), with the recovery settings the engine writes
    /// itself; returns the settings this crate still has to add.
    pub async fn restore(
        &self,
        tools: &Tools,
        recovery: &Recovery,
        into: &Path,
        runs_in: &Path,
    ) -> Result<Vec<String>> {
        let quoted = |v: &str| format!("'{}'", v.replace('\'', "''"));
        match self {
            Source::Archive { archive, backups } => {
                let from = backups.join(&recovery.backup).display().to_string();
                tools.run("/bin/cp", &["-a", &from, &into.display().to_string()], DAY).await?;
                let archive = archive.display().to_string();
                let mut lines = vec![
                    format!(
                        "restore_command = {}",
                        quoted(&format!(
                            "test -f \"{archive}/%f\" && cp \"{archive}/%f\" \"%p.rbtmp\" && mv \"%p.rbtmp\" \"%p\""
                        ))
                    ),
                    "recovery_target_action = 'promote'".to_owned(),
                    format!("recovery_target_timeline = '{}'", recovery.timeline),
                ];
                match &recovery.target {
                    RecoveryTarget::Name { name, .. } => lines.push(format!("recovery_target_name = {}", quoted(name))),
                    RecoveryTarget::Time { time } => {
                        lines.push(format!("recovery_target_time = '{}'", time.format("%Y-%m-%d %H:%M:%S%.6f+00")));
                        lines.push("recovery_target_inclusive = off".to_owned());
                    }
                    RecoveryTarget::Lsn { lsn } => lines.push(format!("recovery_target_lsn = '{lsn}'")),
                    RecoveryTarget::Immediate => lines.push("recovery_target = 'immediate'".to_owned()),
                }
                Ok(lines)
            }
            Source::Pgbackrest(pgbr) => {
                let mut args = vec![
                    format!("--pg1-path={}", into.display()),
                    format!("--set={}", recovery.backup),
                    "--target-action=promote".to_owned(),
                    format!("--target-timeline={}", recovery.timeline),
                ];
                match &recovery.target {
                    RecoveryTarget::Name { name, .. } => {
                        args.extend(["--type=name".to_owned(), format!("--target={name}")]);
                    }
                    RecoveryTarget::Time { time } => args.extend([
                        "--type=time".to_owned(),
                        format!("--target={}", time.format("%Y-%m-%d %H:%M:%S%.6f+00")),
                        "--target-exclusive".to_owned(),
                    ]),
                    RecoveryTarget::Lsn { lsn } => args.extend(["--type=lsn".to_owned(), format!("--target={lsn}")]),
                    RecoveryTarget::Immediate => args.push("--type=immediate".to_owned()),
                }
                std::fs::create_dir(into).map_err(|e| Error::from(e).with_context("path", into.display()))?;
                tools.own(into)?;
                pgbr.run(tools, "restore", &args, DAY).await?;
                // pgBackRest's restore_command names the directory it restored into.
                let mut command = vec!["/usr/bin/pgbackrest".to_owned()];
                if let Some(config) = &pgbr.config {
                    command.push(format!("--config={}", config.display()));
                }
                command.extend([
                    format!("--pg1-path={}", runs_in.display()),
                    format!("--stanza={}", pgbr.stanza),
                    "archive-get %f \"%p\"".to_owned(),
                ]);
                Ok(vec![format!("restore_command = {}", quoted(&command.join(" ")))])
            }
        }
    }

    /// Copies what the recovered server archived to `staging` into the real archive.
    pub async fn publish(&self, tools: &Tools, staging: &Path, owner: Option<(u32, u32)>) -> Result<()> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(staging)
            .map_err(|e| Error::from(e).with_context("path", staging.display()))?
            .flatten()
            .map(|e| e.path())
            .collect();
        // History files first: a later recovery needs them to follow the timeline.
        files.sort_by_key(|p| (!p.to_string_lossy().ends_with(".history"), p.clone()));
        for file in files {
            match self {
                Source::Archive { archive, .. } => {
                    let name = file.file_name().unwrap_or_default();
                    let into = archive.join(name);
                    if into.exists() {
                        continue;
                    }
                    let tmp = archive.join(format!(".{}.rbtmp", name.to_string_lossy()));
                    std::fs::copy(&file, &tmp).map_err(|e| Error::from(e).with_context("path", tmp.display()))?;
                    if let Some((uid, gid)) = owner {
                        std::os::unix::fs::chown(&tmp, Some(uid), Some(gid))
                            .map_err(|e| Error::from(e).with_context("chown", tmp.display()))?;
                    }
                    std::fs::rename(&tmp, &into).map_err(|e| Error::from(e).with_context("path", into.display()))?;
                }
                Source::Pgbackrest(pgbr) => {
                    // archive-push accepts a file it already has with the same checksum.
                    pgbr.run(tools, "archive-push", &[file.display().to_string()], Duration::from_secs(600))
                        .await
                        .map_err(|e| Error::new(ErrorKind::Backend, format!("publishing {}: {e}", file.display())))?;
                }
            }
        }
        Ok(())
    }
}

/// A private directory the tools' user can write.
fn tempfile_dir(tools: &Tools) -> Result<PathBuf> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let dir = std::env::temp_dir().join(format!("rb-pitr-{}-{nanos:x}", std::process::id()));
    std::fs::create_dir(&dir).map_err(|e| Error::from(e).with_context("path", dir.display()))?;
    tools.own(&dir)?;
    Ok(dir)
}
