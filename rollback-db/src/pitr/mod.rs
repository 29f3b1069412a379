//! Point-in-time recovery of a PostgreSQL cluster from its WAL archive
//! (`pg-pitr`), and the restore points it returns to (`pg-restore-point`).
//!
//! Versions are what can be recovered to: the restore points `pg-restore-point`
//! made (`exact = "rb-pre-deploy-42"`, `previous`, `back = N`), a time inside the
//! archive (`before = T`, exclusive), a WAL location (`exact = "lsn:0/3000060"`,
//! inclusive), or a base backup's end (`exact = "backup:NAME"`). Prepare resolves the target once — the recovery target, the
//! base backup, the timeline, the real `archive_command` — and refuses what
//! PostgreSQL could not reach (`pitr/resolve.rs`). Apply recovers beside the live
//! cluster on a spare port, verifies, and only then switches (`pitr/recover.rs`).
//!
//! Supported: self-contained data directories (`postgresql.conf` inside, as
//! `initdb` makes them). Two recovery engines, the rest being the same code:
//! `engine = "archive"` (base backups made by `pg_basebackup -Fp` into one directory
//! each, an archive directory `archive_command` copies into, PostgreSQL's own
//! `restore_command`) and `engine = "pgbackrest"` (`pgbackrest restore` of a
//! stanza).

mod archive;
mod recover;
mod resolve;
mod restore_point;
mod server;
mod source;

pub use archive::{BaseBackup, Lsn, RESTORE_POINTS, RestorePoint, base_backups, restore_points, timeline_of};
pub use restore_point::{PgRestorePoint, PgRestorePointConfig};

use async_trait::async_trait;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

use crate::{DataLossProbe, PgUrl};
use rollback_core::{
    Capabilities, Category, Change, Error, IdempotencyKey, Identity, Observed, Request, Result, Revision, Target,
    TargetId, Version,
};
use server::{Sessions, Tools};

fn default_recovery_timeout() -> Duration {
    Duration::from_secs(3600)
}

/// Configuration of a [`PgPitr`] target (kind `pg-pitr`).
///
/// ```toml
/// [[targets]]
/// kind = "pg-pitr"
/// name = "orders-db"
/// secrets = { url = { from = "env", var = "ORDERS_ADMIN_URL" } }
/// config = { data_dir = "/srv/pg/orders", archive = "/srv/pg/wal", backups = "/srv/pg/base", spare_port = 5499, os_user = "postgres", verify = ["SELECT count(*) > 0 FROM orders"] }
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PgPitrConfig {
    /// The cluster's data directory (kept, renamed `<dir>.rb-damaged-<id>`, at the
    /// switch; never deleted).
    pub data_dir: PathBuf,
    /// Where WAL and base backups come from: `"archive"` (the `archive` and `backups`
    /// directories) or `"pgbackrest"` (the `stanza`).
    #[serde(default)]
    pub engine: RecoveryEngine,
    /// The directory holding the restore-point list `pg-restore-point` writes; with
    /// the `archive` engine also the WAL archive (where `archive_command` copies).
    pub archive: PathBuf,
    /// The directory of base backups, one `pg_basebackup -Fp` directory each
    /// (`archive` engine).
    #[serde(default)]
    pub backups: Option<PathBuf>,
    /// The pgBackRest stanza (`pgbackrest` engine).
    #[serde(default)]
    pub stanza: Option<String>,
    /// pgBackRest's configuration file (its default when absent).
    #[serde(default)]
    pub pgbackrest_config: Option<PathBuf>,
    /// The port the recovered copy runs on beside the live cluster until the switch.
    pub spare_port: u16,
    /// The server binaries (`pg_ctl`); default the newest `/usr/lib/postgresql/*/bin`.
    #[serde(default)]
    pub bin_dir: Option<PathBuf>,
    /// Run the server tools as this OS user (the cluster's owner), through `runuser`.
    #[serde(default)]
    pub os_user: Option<String>,
    /// Extra server options for `pg_ctl -o` when this target starts a server
    /// (`-c listen_addresses=127.0.0.1`).
    #[serde(default)]
    pub server_options: String,
    /// Queries run on the recovered copy before the switch; each must succeed, and one
    /// returning a boolean must return true.
    #[serde(default)]
    pub verify: Vec<String>,
    /// Rows the recovery throws away, counted on the live cluster by dry-run.
    #[serde(default)]
    pub data_loss: DataLossProbe,
    /// Longest wait for the recovery to reach its target and promote.
    #[serde(default = "default_recovery_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub recovery_timeout: Duration,
}

/// Where a `pg-pitr` target's WAL and base backups come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RecoveryEngine {
    /// An archive directory and `pg_basebackup` directories; PostgreSQL's restore_command.
    #[default]
    Archive,
    /// A pgBackRest stanza.
    Pgbackrest,
}

/// A PostgreSQL cluster recovered to a point in time (see the module docs).
#[derive(Debug)]
pub struct PgPitr {
    name: TargetId,
    config: PgPitrConfig,
    source: source::Source,
    tools: Tools,
    sessions: Sessions,
    /// The live cluster's URL (for the data-loss count).
    url: rollback_core::Secret,
    #[cfg(feature = "test-helpers")]
    kill_after: Option<PitrPhase>,
}

/// The points between the phases of a recovery (logged as each is passed; in test
/// builds, where `PgPitr::kill_after` stops the process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PitrPhase {
    /// The base backup and settings are in place beside the live cluster.
    Restored,
    /// The copy has reached its target and promoted.
    Promoted,
    /// The copy passed verification.
    Verified,
    /// The live cluster is stopped.
    LiveStopped,
    /// The live cluster's directory is renamed (kept).
    LiveKept,
    /// The copy is in the data directory's place, not started yet.
    Switched,
}

/// The newest `/usr/lib/postgresql/<version>/bin` with a `pg_ctl`.
pub(crate) fn default_bin_dir() -> Result<PathBuf> {
    std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("pg_ctl").exists())
        .max()
        .ok_or_else(|| Error::invalid_input("no PostgreSQL server binaries under /usr/lib/postgresql: set bin_dir"))
}

/// Paths go into `postgresql.conf` settings and shell commands: no quotes or newlines.
fn plain_path(what: &str, path: &std::path::Path) -> Result<()> {
    let text = path.display().to_string();
    if !path.is_absolute() || text.contains(['\'', '"', '\n', '\\', '%', '$', '`']) {
        return Err(Error::invalid_input(format!(
            "pg-pitr {what} {text:?} must be an absolute path without quotes, `%`, `$`, backslashes or newlines"
        )));
    }
    Ok(())
}

impl PgPitr {
    /// Checks the configuration offline; `url` reaches the live cluster (its port is
    /// the real one).
    pub fn new(name: &str, url: &str, config: PgPitrConfig) -> Result<Self> {
        let paths = [
            ("data_dir", Some(&config.data_dir)),
            ("archive", Some(&config.archive)),
            ("backups", config.backups.as_ref()),
        ];
        for (what, path) in paths {
            if let Some(path) = path {
                plain_path(what, path)?;
            }
        }
        let source = match (config.engine, &config.backups, &config.stanza) {
            (RecoveryEngine::Archive, Some(backups), None) => {
                source::Source::Archive { archive: config.archive.clone(), backups: backups.clone() }
            }
            (RecoveryEngine::Pgbackrest, None, Some(stanza)) if !stanza.is_empty() => {
                source::Source::Pgbackrest(source::Pgbackrest {
                    stanza: stanza.clone(),
                    config: config.pgbackrest_config.clone(),
                })
            }
            (RecoveryEngine::Archive, _, _) => {
                return Err(Error::invalid_input(format!(
                    "pg-pitr {name:?}: engine \"archive\" needs backups (a directory of pg_basebackup backups) and no stanza"
                )));
            }
            (RecoveryEngine::Pgbackrest, _, _) => {
                return Err(Error::invalid_input(format!(
                    "pg-pitr {name:?}: engine \"pgbackrest\" needs stanza and no backups directory"
                )));
            }
        };
        let secret = rollback_core::Secret::new(url);
        let url = PgUrl::parse(url)?;
        if config.spare_port == url.port {
            return Err(Error::invalid_input(format!(
                "pg-pitr {name:?}: spare_port is the cluster's own port {}",
                url.port
            )));
        }
        let bin = match &config.bin_dir {
            Some(bin) => bin.clone(),
            None => default_bin_dir()?,
        };
        let tools = Tools { bin, os_user: config.os_user.clone(), options: config.server_options.clone() };
        Ok(PgPitr {
            name: TargetId::new(name),
            config,
            source,
            tools,
            sessions: Sessions::new(url),
            url: secret,
            #[cfg(feature = "test-helpers")]
            kill_after: None,
        })
    }
}

impl PgPitr {
    /// Test support: the process kills itself (SIGKILL) right after `phase`, as a
    /// crash between two phases would.
    #[cfg(feature = "test-helpers")]
    pub fn kill_after(mut self, phase: PitrPhase) -> Self {
        self.kill_after = Some(phase);
        self
    }

    /// Marks the end of a phase.
    fn reached(&self, phase: PitrPhase) {
        tracing::debug!(?phase, "pg-pitr phase done");
        #[cfg(feature = "test-helpers")]
        if self.kill_after == Some(phase) {
            let _ = std::process::Command::new("kill").args(["-9", &std::process::id().to_string()]).status();
            std::thread::sleep(std::time::Duration::from_secs(5));
        }
    }
}

impl rollback_core::kind::Kind for PgPitr {
    const KIND: &'static str = "pg-pitr";
    type Config = PgPitrConfig;
    async fn build(spec: rollback_core::Spec, config: PgPitrConfig) -> Result<Self> {
        PgPitr::new(&spec.name, spec.secret("url")?.expose(), config)
    }
}

#[async_trait]
impl Target for PgPitr {
    fn name(&self) -> &TargetId {
        &self.name
    }

    fn host_local(&self) -> bool {
        true
    }

    fn kind(&self) -> &str {
        "pg-pitr"
    }

    fn category(&self) -> Category {
        Category::Data
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { versioned: true, converges_from_partial: true }
    }

    async fn identity(&self) -> Result<Identity> {
        Ok(Identity::new(format!("pg-pitr:{}", self.config.data_dir.display())))
    }

    async fn current(&self) -> Result<Version> {
        let live = resolve::live(&self.sessions).await?;
        Ok(Version::labeled(format!("live:{}:{}", live.timeline, live.lsn), format!("timeline {}", live.timeline)))
    }

    async fn history(&self) -> Result<Vec<Revision>> {
        let mut revisions: Vec<Revision> = restore_points(&self.config.archive)?
            .into_iter()
            .rev()
            .map(|p| {
                let about = format!("restore point at {} on timeline {}", p.lsn, p.timeline);
                Revision::new(Version::labeled(p.name, about.clone()), about).created_at(p.time)
            })
            .collect();
        for backup in self.source.backups(&self.tools).await?.into_iter().rev() {
            let name = backup.name;
            let about = format!("base backup {name}, consistent at {}", backup.end);
            revisions.push(
                Revision::new(Version::labeled(format!("backup:{name}"), about.clone()), about)
                    .created_at(backup.started),
            );
        }
        Ok(revisions)
    }

    async fn prepare(&self, request: &Request) -> Result<Change> {
        let Request::To(selector) = request else {
            return Err(Error::unsupported("pg-pitr actions"));
        };
        resolve::prepare(self, selector).await
    }

    async fn apply(&self, change: &Change, key: &IdempotencyKey) -> Result<()> {
        recover::apply(self, change, key).await.map_err(|e| e.with_context("target", &self.name))
    }

    async fn observe(&self, change: &Change, key: &IdempotencyKey) -> Result<Observed> {
        recover::observe(self, change, key).await
    }
}
