//! The one Tokio runtime of the module (pyo3-async-runtimes' multi-thread runtime)
//! and the way sync methods wait on it: with the GIL released, and Ctrl-C heard.

use pyo3::prelude::*;
use std::future::Future;
use std::time::Duration;

use crate::errors::IntoPy;

/// How often a blocking call looks for a signal (Ctrl-C) while it waits.
const SIGNALS_EVERY: Duration = Duration::from_millis(50);

/// The module's runtime.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    pyo3_async_runtimes::tokio::get_runtime()
}

/// Runs `fut` to completion on the runtime with the GIL released, so other Python
/// threads run meanwhile (and Python targets or verifiers called by the engine can
/// take the GIL on the runtime's blocking threads). Ctrl-C (on the main thread)
/// drops `fut` and raises `KeyboardInterrupt` within 50 ms.
pub fn block_on<T, F>(py: Python<'_>, fut: F) -> PyResult<T>
where
    F: Future<Output = rollback_core::Result<T>> + Send,
    T: Send,
{
    wait(py, None, fut)
}

/// [`block_on`] for a run: the first Ctrl-C asks it to stop at its next step
/// boundary (journaled cancelled, resumable) and raises `KeyboardInterrupt` once it
/// has; a second one drops it at once.
pub fn wait<T, F>(py: Python<'_>, cancel: Option<&rollback_core::CancelHandle>, fut: F) -> PyResult<T>
where
    F: Future<Output = rollback_core::Result<T>> + Send,
    T: Send,
{
    let mut interrupted: Option<PyErr> = None;
    let outcome = py.detach(|| {
        runtime().block_on(async {
            let mut fut = std::pin::pin!(fut);
            loop {
                tokio::select! {
                    out = &mut fut => return Ok(out),
                    _ = tokio::time::sleep(SIGNALS_EVERY) => {
                        if let Err(signal) = Python::attach(|py| py.check_signals()) {
                            match cancel {
                                Some(handle) if interrupted.is_none() => {
                                    tracing::info!("interrupted: stopping the run at its next step boundary");
                                    handle.cancel();
                                    interrupted = Some(signal);
                                }
                                _ => return Err(signal),
                            }
                        }
                    }
                }
            }
        })
    });
    match (outcome, interrupted) {
        (Err(signal), _) => Err(signal),
        (Ok(_), Some(signal)) => Err(signal),
        (Ok(out), None) => out.py_err(),
    }
}
