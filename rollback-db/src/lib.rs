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
//! [`Alembic`] (through Alembic's API, in one helper process run with the project's
//! interpreter) and [`Django`] (through `manage.py`) give current, history,
//! downgrade and the SQL preview to one [`Migrations`] target over a
//! [`MigrationTool`].

mod alembic;
mod alembic_session;
mod cli;
mod copies;
mod django;
mod error;
#[cfg(feature = "pg-journal")]
mod journal;
mod lock;
mod loss;
mod migrations;
mod pgdump;
mod pgurl;
pub mod pitr;
mod swap;
#[cfg(feature = "test-helpers")]
pub mod testing;

pub use alembic::{Alembic, AlembicConfig, AlembicTool};
pub use cli::{MigrationTool, Migrations};
pub use copies::{PgTemplateClone, PgTemplateCloneConfig, SqliteCopy, SqliteCopyConfig};
pub use django::{Django, DjangoCli, DjangoConfig};
#[cfg(feature = "pg-journal")]
pub use journal::{JOURNAL_SCHEMA, PgJournal, PgJournalOptions};
pub use lock::PgLeaseLock;
pub use loss::DataLossProbe;
pub use migrations::{Layout, Migration, SqlxMigrations, SqlxMigrationsConfig};
pub use pgdump::{PgDump, PgDumpConfig};
pub use pgurl::PgUrl;
pub use pitr::{PgPitr, PgPitrConfig, PgRestorePoint, PgRestorePointConfig};
pub use swap::{PgRestoreSwap, PgRestoreSwapConfig, Sessions, SwapPhase, SwapVerify};

use rollback_core::kind::Kind;
use rollback_core::{Registry, Spec};

/// Registers the `sqlx-migrations` target kind (with `layout = { style = "raw_sql" }`
/// for the runbooks' `NNN_*_rollback.sql` convention), the `pg-restore-swap` target
/// kind and the `pg-dump` snapshot kind
/// (both take the database URL as the secret `url`; SQLite URLs may be in config).
pub fn register(registry: &mut Registry) {
    registry
        .target_kind::<Alembic>()
        .target_kind::<Django>()
        .target_kind::<PgRestoreSwap>()
        .target_kind::<SqlxMigrations>()
        .target_kind::<PgPitr>()
        .target_kind::<PgRestorePoint>()
        .snapshot_kind::<SqliteCopy>()
        .snapshot_kind::<PgTemplateClone>()
        .snapshot_kind::<PgDump>();
    #[cfg(feature = "pg-journal")]
    for scheme in ["postgres", "postgresql"] {
        registry.journal_scheme(scheme, open_pg_journal);
    }
}

/// The shared journal at `url` with its own lease lock (the `postgres://` journal
/// scheme [`register`] adds); to read only, without migrating it or a lock.
#[cfg(feature = "pg-journal")]
async fn open_pg_journal(
    url: rollback_core::Secret,
    access: rollback_core::JournalAccess,
) -> rollback_core::Result<rollback_core::OpenedJournal> {
    let read_only = access == rollback_core::JournalAccess::ReadOnly;
    let options = PgJournalOptions { migrate: !read_only, ..PgJournalOptions::default() };
    let journal =
        PgJournal::connect_with(url.expose(), options).await.map_err(|e| e.with_context("journal", "postgres"))?;
    let lock: Option<std::sync::Arc<dyn rollback_core::Lock>> =
        if read_only { None } else { Some(std::sync::Arc::new(journal.lease_lock().await?)) };
    Ok(rollback_core::OpenedJournal { journal: std::sync::Arc::new(journal), lock })
}

rollback_core::impl_kind!(Django, "django", DjangoConfig, new);
rollback_core::impl_kind!(SqliteCopy, "sqlite-copy", SqliteCopyConfig, new);

/// The PostgreSQL kinds that take the database URL as the secret `url`.
macro_rules! pg_url_kind {
    ($type:ty, $kind:literal, $config:ty) => {
        impl Kind for $type {
            const KIND: &'static str = $kind;
            type Config = $config;
            async fn build(spec: Spec, config: $config) -> rollback_core::Result<Self> {
                <$type>::new(&spec.name, spec.secret("url")?.expose(), config)
            }
        }
    };
}

pg_url_kind!(PgRestoreSwap, "pg-restore-swap", PgRestoreSwapConfig);
pg_url_kind!(PgTemplateClone, "pg-clone", PgTemplateCloneConfig);
pg_url_kind!(PgDump, "pg-dump", PgDumpConfig);

impl Kind for SqlxMigrations {
    const KIND: &'static str = "sqlx-migrations";
    type Config = SqlxMigrationsConfig;
    async fn build(spec: Spec, mut config: SqlxMigrationsConfig) -> rollback_core::Result<Self> {
        if config.url.is_none() {
            config.url = Some(spec.secret("url")?.expose().to_owned());
        }
        SqlxMigrations::connect(&spec.name, config).await
    }
}
