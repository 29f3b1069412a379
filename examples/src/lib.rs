//! Runnable examples of `rollback`: the quickstart on the embedded default (its
//! logic lives here so a test can assert its outcome). The plan runner is the
//! `rollback` command (crate `rollback-cli`); its sample plans are in `plans/`.

pub mod quickstart;
