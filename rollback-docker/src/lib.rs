//! Docker backend for `rollback` — **not implemented yet**.
//!
//! This crate will hold targets for containers and compose services rolled back
//! by image (recreated with their configuration kept, the run key stamped in a
//! label for `observe`), container snapshots into an artifact store, compose-file
//! rollback and traffic steps, built on `bollard` against a real Docker engine.
//! Until then it exports nothing: see the project's issues for its plan.
