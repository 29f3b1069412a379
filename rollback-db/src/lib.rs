//! Database backend for `rollback` — **not implemented yet**.
//!
//! This crate will hold migration targets for PostgreSQL and SQLite (sqlx
//! migrations, Alembic, Django, raw `NNN_*_rollback.sql` scripts), `pg_dump` and
//! clone snapshots, and runbook 002's restore-into-`<db>_restore`-then-swap, built
//! on `sqlx`. Until then it exports nothing: see the project's issues for its plan.
