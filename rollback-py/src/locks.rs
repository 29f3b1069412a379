//! `Engine(lock=…)`: where runs take their leases. `"file"` (default, this machine),
//! or a shared lock so runs on several hosts or processes exclude each other:
//! `{"kind": "postgres", "url": SECRET_REF}` (PgLeaseLock, the database's clock) or
//! `{"kind": "redis", "url": SECRET_REF}` (RedisLock), or Kubernetes Leases
//! `{"kind": "kubernetes", "namespace": "…", "cluster": {…}, "prefix": "rollback"}`
//! (LeaseLock; `cluster` as in the k8s kinds: kubeconfig, context or url). The URL is
//! a secret reference (`{"from": "env", "var": "…"}` or `{"from": "file", "path":
//! "…"}`), never a value.

use std::sync::Arc;

use pyo3::prelude::*;
use rollback_core::{Lock, SecretRef};
use serde::Deserialize;

use crate::convert::from_py;

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
enum LockChoice {
    Postgres {
        url: SecretRef,
    },
    Redis {
        url: SecretRef,
    },
    #[cfg(feature = "k8s")]
    Kubernetes(rollback_k8s::LeaseLockConfig),
    #[cfg(not(feature = "k8s"))]
    Kubernetes(serde::de::IgnoredAny),
}

/// The lock a `lock=` argument names; `None` for the engine's default (the file lock).
pub fn lock_of(lock: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Arc<dyn Lock>>> {
    let Some(lock) = lock.filter(|l| !l.is_none()) else { return Ok(None) };
    let py = lock.py();
    if lock.extract::<String>().is_ok_and(|s| s == "file") {
        return Ok(None);
    }
    let what = "lock (\"file\", {\"kind\": \"postgres\" | \"redis\", \"url\": {…}}, or {\"kind\": \"kubernetes\", \
                \"namespace\": …})";
    let choice: LockChoice = from_py(lock, what)?;
    match choice {
        LockChoice::Postgres { url } => postgres(py, &url),
        LockChoice::Redis { url } => redis(&url),
        LockChoice::Kubernetes(config) => kubernetes(py, config),
    }
}

#[cfg(feature = "k8s")]
fn kubernetes(py: Python<'_>, config: rollback_k8s::LeaseLockConfig) -> PyResult<Option<Arc<dyn Lock>>> {
    let lock = crate::runtime::block_on(py, rollback_k8s::LeaseLock::connect(config))?;
    Ok(Some(Arc::new(lock)))
}

#[cfg(not(feature = "k8s"))]
fn kubernetes(_: Python<'_>, _: serde::de::IgnoredAny) -> PyResult<Option<Arc<dyn Lock>>> {
    Err(crate::errors::invalid_input("this build has no k8s backend: the kubernetes lock needs it"))
}

#[cfg(feature = "db")]
fn postgres(py: Python<'_>, url: &SecretRef) -> PyResult<Option<Arc<dyn Lock>>> {
    use crate::errors::IntoPy;
    let url = url.resolve().py_err()?;
    let lock = crate::runtime::block_on(py, rollback_db::PgLeaseLock::connect(url.expose()))?;
    Ok(Some(Arc::new(lock)))
}

#[cfg(not(feature = "db"))]
fn postgres(_: Python<'_>, _: &SecretRef) -> PyResult<Option<Arc<dyn Lock>>> {
    Err(crate::errors::invalid_input("this build has no db backend: the postgres lock needs it"))
}

#[cfg(feature = "storage")]
fn redis(url: &SecretRef) -> PyResult<Option<Arc<dyn Lock>>> {
    use crate::errors::IntoPy;
    let url = url.resolve().py_err()?;
    let conn = rollback_storage::redis::RedisConn::open(url.expose(), std::time::Duration::from_secs(10)).py_err()?;
    Ok(Some(Arc::new(rollback_storage::redis::RedisLock::new(conn))))
}

#[cfg(not(feature = "storage"))]
fn redis(_: &SecretRef) -> PyResult<Option<Arc<dyn Lock>>> {
    Err(crate::errors::invalid_input("this build has no storage backend: the redis lock needs it"))
}
