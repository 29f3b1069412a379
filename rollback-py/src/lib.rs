//! The Python package `rollback` (module `rollback._rollback`), built with maturin.
//!
//! - [`engine`]: `Plan`, `Engine` (blocking, GIL released) and `AsyncEngine`
//!   (asyncio), `Report`, `DryRun`, `Cancel`;
//! - [`handles`]: `Target` and `Verifier` built from spec dicts or Python objects,
//!   `should_rollback`, `gather_signals`;
//! - [`components`]: Python targets, verifiers and notifiers inside plans run by
//!   the Rust engine;
//! - [`errors`]: one exception class per error kind, all `RollbackError`s;
//! - [`convert`]: Python objects ↔ the core's serde types;
//! - [`progress`]: `rollback.progress()`, for Python targets' long work;
//! - [`verify`]: `rollback.verify`: benchmark, the lab service, replays.
//!
//! Backends are Cargo features (`db`, `docker`, `k8s`, `storage`); `pyproject.toml` enables all and
//! pyo3's `extension-module`, so plain `cargo` builds of the workspace link normally.

pub mod aio;
#[cfg(feature = "bench")]
pub mod bench;
pub mod components;
pub mod convert;
pub mod engine;
pub mod errors;
pub mod handles;
pub mod journals;
pub mod locks;
pub mod progress;
pub mod runtime;
pub mod secrets;
pub mod snapshots;
pub mod verify;

use pyo3::prelude::*;

/// The extension module.
#[pymodule]
fn _rollback(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    m.add_class::<engine::PyPlan>()?;
    m.add_class::<engine::PyEngine>()?;
    m.add_class::<engine::PyAsyncEngine>()?;
    m.add_class::<engine::PyReport>()?;
    m.add_class::<engine::PyDryRun>()?;
    m.add_class::<engine::PyCancel>()?;
    m.add_class::<secrets::PySecrets>()?;
    m.add_class::<handles::PyTargetHandle>()?;
    m.add_class::<handles::PyVerifierHandle>()?;
    m.add_class::<handles::PyDecision>()?;
    m.add_function(wrap_pyfunction!(handles::should_rollback, m)?)?;
    m.add_function(wrap_pyfunction!(handles::gather_signals, m)?)?;
    m.add_function(wrap_pyfunction!(progress::progress, m)?)?;
    m.add_function(wrap_pyfunction!(handles::kinds, m)?)?;
    verify::register(m)?;
    // Benchmark helpers only in bench builds (`maturin develop -F bench`), not the wheel.
    #[cfg(feature = "bench")]
    m.add_function(wrap_pyfunction!(bench::_bench_rust_checks, m)?)?;
    #[cfg(feature = "bench")]
    m.add_function(wrap_pyfunction!(bench::_bench_rust_runs, m)?)?;
    #[cfg(feature = "bench")]
    m.add_function(wrap_pyfunction!(bench::_bench_suspend, m)?)?;
    #[cfg(feature = "bench")]
    m.add_function(wrap_pyfunction!(bench::_bench_suspend_spawned, m)?)?;
    #[cfg(feature = "bench")]
    m.add_function(wrap_pyfunction!(bench::_bench_suspend_pyo3_async_runtimes, m)?)?;
    m.add("BACKENDS", components::backends())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
