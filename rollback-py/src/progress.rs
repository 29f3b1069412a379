//! `rollback.progress(done, total=None, unit="items")`: a Python target's `apply`
//! reports how far its work has come, like the Rust backends do; the engine turns it
//! into `progress` events (`on_event`, notifiers, the CLI's bar).

use std::cell::RefCell;

use pyo3::prelude::*;
use rollback_core::progress::Reporter;

thread_local! {
    /// The reporter of the step whose Python method runs on this thread.
    static CURRENT: RefCell<Option<Reporter>> = const { RefCell::new(None) };
}

/// Runs `f` with `reporter` as this thread's current one.
pub fn with_reporter<R>(reporter: Option<Reporter>, f: impl FnOnce() -> R) -> R {
    let previous = CURRENT.with(|c| c.replace(reporter));
    let out = f();
    CURRENT.with(|c| *c.borrow_mut() = previous);
    out
}

/// Reports progress of the running step (from a target's `apply`); does nothing
/// outside a step. Reports are throttled to one per 100 ms; `done == total` always
/// goes out.
#[pyfunction]
#[pyo3(signature = (done, total=None, unit="items"))]
pub fn progress(done: u64, total: Option<u64>, unit: &str) {
    CURRENT.with(|c| {
        if let Some(reporter) = c.borrow().as_ref() {
            reporter.report(done, total, unit);
        }
    });
}
