//! Kubernetes backend for `rollback` — **not implemented yet**.
//!
//! This crate will hold a Deployment target (undo to a revision as `kubectl
//! rollout undo` does, with optimistic concurrency), traffic steps (scale,
//! Service selector, canary), ConfigMap and Secret restore with the workload, and
//! a Lease lock, built on `kube`, tested against an in-repo API double.
//! Until then it exports nothing: see the project's issues for its plan.
