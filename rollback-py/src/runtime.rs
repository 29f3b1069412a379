//! The one Tokio runtime of the module (pyo3-async-runtimes' multi-thread runtime)
//! and the way sync methods wait on it: with the GIL released.

use pyo3::prelude::*;
use std::future::Future;

/// The module's runtime.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    pyo3_async_runtimes::tokio::get_runtime()
}

/// Runs `fut` to completion on the runtime with the GIL released, so other Python
/// threads run meanwhile (and Python targets or verifiers called by the engine can
/// take the GIL on the runtime's blocking threads).
pub fn block_on<F>(py: Python<'_>, fut: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    py.detach(|| runtime().block_on(fut))
}
