//! `pg-restore-point`: the step a deploy tool runs before each deploy, so that a
//! rollback can later name the moment to return to. `pg_create_restore_point(name)`
//! then `pg_switch_wal()`, waiting until that segment is in the archive; the name,
//! LSN, time and timeline are journaled and recorded in the archive's
//! [`RESTORE_POINTS`](super::RESTORE_POINTS) file, the list `pg-pitr` and this
//! kind read. Names must be unique there (recovery stops at the first match).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

use super::archive::{self, Lsn, RESTORE_POINTS, RestorePoint};
use super::server::{Sessions, wait_archived};
use crate::PgUrl;
use crate::error::map;
use rollback_core::{
    Capabilities, Category, Change, Error, IdempotencyKey, Identity, Observed, Request, Result, Target, TargetId,
    Version,
};

/// Configuration of a [`PgRestorePoint`] target (kind `pg-restore-point`; the
/// cluster is the secret `url`). Steps: `op = "action"`, `action = "create"`,
/// `params = { name = "rb-pre-deploy-42" }`.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PgRestorePointConfig {
    /// The directory holding the restore-point list (the `archive` of the `pg-pitr`
    /// targets that return to these points; with their `archive` engine, the WAL
    /// archive itself).
    pub archive: PathBuf,
    /// Longest wait for the switched segment to reach the archive.
    #[serde(default = "default_archive_wait", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub archive_wait: Duration,
}

fn default_archive_wait() -> Duration {
    Duration::from_secs(60)
}

/// Makes named restore points (see the module docs).
#[derive(Debug)]
pub struct PgRestorePoint {
    name: TargetId,
    config: PgRestorePointConfig,
    sessions: Sessions,
}

impl PgRestorePoint {
    /// Checks the configuration offline.
    pub fn new(name: &str, url: &str, config: PgRestorePointConfig) -> Result<Self> {
        if !config.archive.is_absolute() {
            return Err(Error::invalid_input(format!("pg-restore-point {name:?}: archive must be an absolute path")));
        }
        Ok(PgRestorePoint { name: TargetId::new(name), config, sessions: Sessions::new(PgUrl::parse(url)?) })
    }

    fn requested(request: &Request) -> Result<String> {
        let Request::Action { action, params } = request else {
            return Err(Error::invalid_input("pg-restore-point is an action target: action = \"create\""));
        };
        let name = params["name"].as_str().unwrap_or_default();
        if action != "create" {
            return Err(Error::invalid_input(format!("pg-restore-point has one action, \"create\" (got {action:?})")));
        }
        // PostgreSQL keeps 63 bytes of a name; quotes would not survive recovery settings.
        if name.is_empty() || name.len() > 63 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        {
            return Err(Error::invalid_input(format!(
                "restore point name {name:?}: 1-63 characters of letters, digits and - _ . : (params = {{ name = \"…\" }})"
            )));
        }
        Ok(name.to_owned())
    }
}

impl rollback_core::kind::Kind for PgRestorePoint {
    const KIND: &'static str = "pg-restore-point";
    type Config = PgRestorePointConfig;
    async fn build(spec: rollback_core::Spec, config: PgRestorePointConfig) -> Result<Self> {
        PgRestorePoint::new(&spec.name, spec.secret("url")?.expose(), config)
    }
}

#[async_trait]
impl Target for PgRestorePoint {
    fn name(&self) -> &TargetId {
        &self.name
    }

    fn kind(&self) -> &str {
        "pg-restore-point"
    }

    fn category(&self) -> Category {
        Category::Other
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { versioned: false, converges_from_partial: false }
    }

    async fn identity(&self) -> Result<Identity> {
        Ok(Identity::new(format!("pg-restore-point:{}", self.config.archive.display())))
    }

    async fn prepare(&self, request: &Request) -> Result<Change> {
        let name = Self::requested(request)?;
        if let Some(used) = archive::restore_points(&self.config.archive)?.into_iter().find(|p| p.name == name) {
            return Err(Error::invalid_input(format!(
                "restore point {name:?} already exists (at {} on timeline {}, {}), as recorded in {}: names must be \
                 unique, recovery stops at the first one",
                used.lsn,
                used.timeline,
                used.time,
                self.config.archive.join(RESTORE_POINTS).display()
            )));
        }
        Ok(Change::new(self.name.clone(), "pg-restore-point", None, Version::new(name.clone()))
            .with_payload(serde_json::json!({ "name": name }))
            .describe(format!("{}: make restore point {name:?} and archive its WAL", self.name)))
    }

    async fn apply(&self, change: &Change, key: &IdempotencyKey) -> Result<()> {
        if !self.observe(change, key).await?.proceed(change)? {
            return Ok(());
        }
        let name = change.to.id.clone();
        let mut conn = self.sessions.connect(self.sessions.port()).await?;
        let (lsn, time, file): (String, DateTime<Utc>, String) = sqlx::query_as(
            "SELECT pg_create_restore_point($1)::text, clock_timestamp(), pg_walfile_name(pg_switch_wal())",
        )
        .bind(&name)
        .fetch_one(&mut conn)
        .await
        .map_err(|e| map("pg_create_restore_point", e))?;
        let timeline = archive::timeline_of(&file).unwrap_or(1);
        if let Err(last) = wait_archived(&mut conn, &file, self.config.archive_wait).await? {
            return Err(Error::new(
                rollback_core::ErrorKind::Timeout,
                format!(
                    "restore point {name:?} made, but segment {file} was not archived within {:?} (last archived: \
                     {last})",
                    self.config.archive_wait
                ),
            ));
        }
        let mut points = archive::restore_points(&self.config.archive)?;
        points.push(RestorePoint {
            name: name.clone(),
            lsn: Lsn::parse(&lsn)?,
            time,
            timeline,
            key: key.as_str().to_owned(),
        });
        archive::write_restore_points(&self.config.archive, &points)?;
        tracing::info!(restore_point = %name, %lsn, timeline, "restore point made and archived");
        Ok(())
    }

    async fn observe(&self, change: &Change, key: &IdempotencyKey) -> Result<Observed> {
        let points = archive::restore_points(&self.config.archive)?;
        Ok(match points.iter().find(|p| p.name == change.to.id) {
            Some(p) if p.key == key.as_str() => Observed::Done,
            Some(p) => Observed::Diverged(format!("restore point {:?} was made by another run ({})", p.name, p.key)),
            None => Observed::NotStarted,
        })
    }
}
