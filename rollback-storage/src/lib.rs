//! Storage backend for `rollback` — **not implemented yet**.
//!
//! This crate will hold Redis cache invalidation (non-blocking flush or
//! `SCAN` + `UNLINK`), a Redis lock, S3 point-in-time restore from object
//! versions, mirror restore from a backup prefix, and an S3 artifact store.
//! Until then it exports nothing: see the project's issues for its plan.
