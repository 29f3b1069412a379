//! Database backend for `rollback`.
//!
//! Today: [`SqlxMigrations`], a migration target over sqlx's `_sqlx_migrations`
//! bookkeeping and `.down.sql` files, on SQLite (through sqlx's `Any` driver, so the
//! same code will serve PostgreSQL). Each down migration runs in its own transaction
//! together with its bookkeeping and this run's idempotency marker, so a crash leaves
//! the schema at a version `observe` can name. Simple (non-reversible) migrations are
//! refused by `prepare`, never skipped.
//!
//! Still to come (see the project's issues): PostgreSQL in CI, Alembic, Django and raw
//! `NNN_*_rollback.sql` targets, `pg_dump` and clone snapshots, restore-and-swap,
//! data-loss estimates from `updated_at` columns.

mod error;
mod migrations;

pub use migrations::{Migration, SqlxMigrations, SqlxMigrationsConfig};

use std::sync::Arc;

use rollback_core::{Registry, Spec, Target};

/// Registers the `sqlx-migrations` target kind.
pub fn register(registry: &mut Registry) {
    registry.register_target_kind("sqlx-migrations", |spec: Spec| async move {
        let mut config: SqlxMigrationsConfig = spec.config_as()?;
        if config.url.is_none() {
            config.url = Some(spec.secret("url")?.expose().to_owned());
        }
        Ok(Arc::new(SqlxMigrations::connect(&spec.name, config).await?) as Arc<dyn Target>)
    });
}
