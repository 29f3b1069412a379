//! Benchmark hooks (feature `bench`, for `bench/overhead.py`): the Rust side of each
//! comparison, timed in Rust. Not in the wheel.

use pyo3::prelude::*;
use rollback_core::{Engine, MemoryJournal, MemoryLock, RunOptions, Verifier};
use std::sync::Arc;

use crate::components::{NoopVerifier, base_registry};
use crate::engine::plan_arg;
use crate::errors::IntoPy;
use crate::runtime::block_on;

/// Benchmark hook: `n` no-op checks in a Rust loop, one runtime entry; seconds.
#[pyfunction]
pub fn _bench_rust_checks(py: Python<'_>, n: u64) -> PyResult<f64> {
    let verifier = NoopVerifier::new("noop");
    block_on(py, async {
        let started = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(verifier.check().await.ok());
        }
        Ok(started.elapsed().as_secs_f64())
    })
}

/// Benchmark hook: runs `plan` `n` times from Rust on a memory journal; seconds.
#[pyfunction]
pub fn _bench_rust_runs(py: Python<'_>, plan: &Bound<'_, PyAny>, n: u64, home: std::path::PathBuf) -> PyResult<f64> {
    let plan = plan_arg(plan)?;
    let engine = Engine::builder(base_registry())
        .journal(Arc::new(MemoryJournal::new()))
        .lock(Arc::new(MemoryLock::new()))
        .artifacts_dir(home)
        .try_build()
        .py_err()?;
    block_on(py, async move {
        let started = std::time::Instant::now();
        for _ in 0..n {
            let report = engine.run(plan.clone(), RunOptions::default()).await?;
            if report.state != rollback_core::RunState::Succeeded {
                return Err(rollback_core::Error::internal(format!("bench run ended {}", report.state)));
            }
        }
        Ok(started.elapsed().as_secs_f64())
    })
}

/// Benchmark hook: an awaitable whose Rust future really suspends (it yields once)
/// before completing, polled on the loop's thread (how `check_async` runs).
#[pyfunction]
pub fn _bench_suspend(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    crate::aio::awaitable_on_loop(py, async {
        tokio::task::yield_now().await;
        Ok(())
    })
}

/// Benchmark hook: the same future spawned on the runtime and completed through the
/// queue (how `AsyncEngine` methods run).
#[pyfunction]
pub fn _bench_suspend_spawned(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    crate::aio::awaitable(py, crate::aio::OnCancel::Abort, async {
        tokio::task::yield_now().await;
        Ok(())
    })
}

/// Benchmark hook: the same future through pyo3-async-runtimes' `future_into_py`
/// (what the module used before the completion queue), for the comparison.
#[pyfunction]
pub fn _bench_suspend_pyo3_async_runtimes(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    pyo3_async_runtimes::tokio::future_into_py(py, async {
        tokio::task::yield_now().await;
        Ok(())
    })
}
