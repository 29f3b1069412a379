//! Python binding for `rollback` — **not implemented yet**.
//!
//! This crate will build the Python package `rollback` (pyo3 + maturin): plans,
//! dry-run, run, resume, verifiers, Python-defined targets, and one exception
//! class per error kind. Until then it exports nothing: see the project's issues.
