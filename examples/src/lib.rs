//! Runnable examples of `rollback`: the quickstart on the embedded default (its
//! logic lives here so a test can assert its outcome), and the plan runner.

pub mod quickstart;
