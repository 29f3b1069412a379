//! Database backend for `rollback`.
//!
//! Today: [`SqlxMigrations`], a migration target over sqlx's `_sqlx_migrations`
//! bookkeeping and `.down.sql` files, on SQLite and PostgreSQL (one implementation,
//! through sqlx's `Any` driver), and [`PgDump`], a `pg_dump -Fc` snapshot with
//! `pg_restore` as its restore. Each down migration runs in its own transaction
//! together with its bookkeeping and this run's idempotency marker, so a crash leaves
//! the schema at a version `observe` can name. Simple (non-reversible) migrations are
//! refused by `prepare`, never skipped.
//!
//! [`PgRestoreSwap`] is runbook 002's full restore: into `<db>_restore`, verified,
//! swapped in under the real name in one transaction, the original kept as `<db>_old`.
//!
//! [`Alembic`] and [`Django`] drive the real CLIs (current, history, downgrade, SQL
//! preview) through one [`CliMigrations`] target over a [`MigrationTool`].

mod alembic;
mod cli;
mod copies;
mod django;
mod error;
mod lock;
mod loss;
mod migrations;
mod pgdump;
mod pgurl;
mod swap;
#[cfg(feature = "test-helpers")]
pub mod testing;

pub use alembic::{Alembic, AlembicCli, AlembicConfig};
pub use cli::{CliMigrations, MigrationTool};
pub use copies::{PgTemplateClone, PgTemplateCloneConfig, SqliteCopy, SqliteCopyConfig};
pub use django::{Django, DjangoCli, DjangoConfig};
pub use lock::PgLeaseLock;
pub use loss::DataLossProbe;
pub use migrations::{Layout, Migration, SqlxMigrations, SqlxMigrationsConfig};
pub use pgdump::{PgDump, PgDumpConfig};
pub use pgurl::PgUrl;
pub use swap::{PgRestoreSwap, PgRestoreSwapConfig, Sessions, SwapPhase, SwapVerify};

use std::sync::Arc;

use rollback_core::{Registry, Spec, Target};

/// Registers the `sqlx-migrations` target kind (with `layout = { style = "raw_sql" }`
/// for the runbooks' `NNN_*_rollback.sql` convention), the `pg-restore-swap` target
/// kind and the `pg-dump` snapshot kind
/// (both take the database URL as the secret `url`; SQLite URLs may be in config).
pub fn register(registry: &mut Registry) {
    registry.register_target_kind("alembic", |spec: Spec| async move {
        Ok(Arc::new(Alembic::new(&spec.name, spec.config_as()?)?) as Arc<dyn Target>)
    });
    registry.register_target_kind("django", |spec: Spec| async move {
        Ok(Arc::new(Django::new(&spec.name, spec.config_as()?)?) as Arc<dyn Target>)
    });
    registry.register_target_kind("pg-restore-swap", |spec: Spec| async move {
        let url = spec.secret("url")?;
        Ok(Arc::new(PgRestoreSwap::new(&spec.name, url.expose(), spec.config_as()?)?) as Arc<dyn Target>)
    });
    registry.register_snapshot_kind("sqlite-copy", |spec: Spec| async move {
        Ok(Arc::new(SqliteCopy::new(&spec.name, spec.config_as()?)?) as Arc<dyn rollback_core::Snapshot>)
    });
    registry.register_snapshot_kind("pg-clone", |spec: Spec| async move {
        let url = spec.secret("url")?;
        Ok(Arc::new(PgTemplateClone::new(&spec.name, url.expose(), spec.config_as()?)?)
            as Arc<dyn rollback_core::Snapshot>)
    });
    registry.register_snapshot_kind("pg-dump", |spec: Spec| async move {
        let url = spec.secret("url")?;
        Ok(Arc::new(PgDump::new(&spec.name, url.expose(), spec.config_as()?)?) as Arc<dyn rollback_core::Snapshot>)
    });
    registry.register_target_kind("sqlx-migrations", |spec: Spec| async move {
        let mut config: SqlxMigrationsConfig = spec.config_as()?;
        if config.url.is_none() {
            config.url = Some(spec.secret("url")?.expose().to_owned());
        }
        Ok(Arc::new(SqlxMigrations::connect(&spec.name, config).await?) as Arc<dyn Target>)
    });
}
