//! Exit codes, one place: what a pipeline reads from `rollback`.

use rollback_core::journal::Phase;
use rollback_core::{Error, ErrorKind, Report, RunState, StepState};

/// Succeeded, or already at the target ("nothing to do").
pub const OK: i32 = 0;
/// The rollback failed, was undone or escalated.
pub const FAILED: i32 = 1;
/// Bad input: nothing was changed.
pub const BAD_INPUT: i32 = 2;
/// Another run holds a target.
pub const LOCKED: i32 = 3;
/// Stopped at an approval gate (`--no-wait`).
pub const AT_GATE: i32 = 4;
/// Interrupted (Ctrl-C, or `rollback cancel` from anywhere), stopped at a step boundary.
pub const INTERRUPTED: i32 = 130;

/// The exit code of an error that ended a command before or outside a run.
pub fn of_error(err: &Error) -> i32 {
    match err.kind() {
        ErrorKind::InvalidInput | ErrorKind::NotFound | ErrorKind::Unsupported => BAD_INPUT,
        ErrorKind::Locked => LOCKED,
        ErrorKind::Cancelled => INTERRUPTED,
        _ => FAILED,
    }
}

/// The exit code of a run's report; `interrupted` when Ctrl-C stopped it (a
/// `rollback cancel` from anywhere counts as an interruption too).
pub fn of_report(report: &Report, interrupted: bool) -> i32 {
    match report.state {
        RunState::Succeeded => OK,
        RunState::Cancelled if interrupted || report.cancel_requested_by.is_some() => INTERRUPTED,
        RunState::Cancelled if at_gate(report) => AT_GATE,
        _ => FAILED,
    }
}

/// The gate a stopped run waits at, if any.
pub fn at_gate(report: &Report) -> bool {
    report.steps.iter().any(|s| s.phase == Phase::Forward && s.state == StepState::AwaitingApproval)
}
