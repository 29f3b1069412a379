//! Shared pieces of the outage tests, where a private server goes away mid-run: a
//! free port for it, waiting for it to answer, and the checks every such run must
//! pass — failed with a report that names the step and a retryable cause.

use std::time::{Duration, Instant};

use crate::{ErrorKind, ErrorRecord, Report, RunState};

/// A port on 127.0.0.1 that was free a moment ago (bind, read, release), for a
/// private server the test starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port on 127.0.0.1")
}

/// Polls `ready` every 50 ms until it says yes; `false` after `timeout`.
pub fn wait_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while !ready() {
        if started.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// Asserts that `report` is a run cut short by an outage at `step`: failed or
/// escalated, the step failed with a retryable backend or timeout error, the report
/// names the step and says what resume would do. Returns the step's error.
///
/// # Panics
/// When any of that does not hold (it is an assertion).
pub fn assert_cut_by_outage(report: &Report, step: &str) -> ErrorRecord {
    let text = report.to_string();
    assert!(matches!(report.state, RunState::Failed | RunState::Escalated), "{text}");
    let failed = report.steps.iter().find(|s| s.step.as_str() == step).unwrap_or_else(|| panic!("no {step}: {text}"));
    let error = failed.error.clone().unwrap_or_else(|| panic!("{step} failed without saying why: {text}"));
    assert!(error.retryable, "an outage is retryable: {error:?}");
    assert!(matches!(error.kind, ErrorKind::Backend | ErrorKind::Timeout), "{error:?}");
    assert!(text.contains(step), "the report names the step: {text}");
    assert!(!report.resume_would.is_empty(), "the report says what resume would do: {text}");
    error
}
