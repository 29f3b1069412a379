//! Typed engine events, for notifiers and progress displays.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::{Check, ErrorRecord, RunId, RunState, StepId, StepState};

/// Escalation severity, per the runbooks' escalation table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Severity {
    /// Rollback failed or lost data: all hands.
    S1,
    /// Rolled back but the issue persists.
    S2,
    /// Took longer than the budget: post-mortem.
    S3,
}

/// One event of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The run.
    pub run: RunId,
    /// When.
    pub at: DateTime<Utc>,
    /// What.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// A run started.
    RunStarted {
        /// The plan's name.
        plan: String,
        /// How many steps.
        steps: usize,
        /// The run it undoes, if any.
        undoes: Option<RunId>,
        /// Why.
        reason: Option<String>,
        /// The time budget (the runbooks' ETA).
        #[serde(with = "humantime_serde")]
        budget: Duration,
    },
    /// A status update at a chosen offset from the start (runbook 001: T+5, 15, 30, 60).
    StatusUpdate {
        /// Time since the run started.
        #[serde(with = "humantime_serde")]
        elapsed: Duration,
        /// The run's state.
        state: RunState,
        /// Steps finished so far.
        steps_done: usize,
        /// Steps in the plan.
        steps_total: usize,
    },
    /// A run was resumed in this process.
    RunResumed {
        /// The state it was found in.
        state: RunState,
    },
    /// The run changed state.
    StateChanged {
        /// Before.
        from: RunState,
        /// After.
        to: RunState,
    },
    /// A step started.
    StepStarted {
        /// The step.
        step: StepId,
        /// What it does.
        description: String,
        /// Whether this is compensation.
        compensation: bool,
    },
    /// A step finished.
    StepFinished {
        /// The step.
        step: StepId,
        /// Its final state.
        state: StepState,
        /// How long it took.
        #[serde(with = "humantime_serde")]
        duration: Duration,
        /// Why it failed.
        error: Option<ErrorRecord>,
        /// Whether this is compensation.
        compensation: bool,
    },
    /// A verification check was taken.
    Verification {
        /// The step.
        step: StepId,
        /// The check.
        check: Check,
    },
    /// How far a long step's work has come (reported by its backend, throttled; see
    /// [`crate::progress`]).
    Progress {
        /// The step.
        step: StepId,
        /// Units done so far.
        done: u64,
        /// Units in all, when known.
        total: Option<u64>,
        /// What is counted ("keys", "replicas").
        unit: String,
    },
    /// A gate waits for approval.
    ApprovalRequested {
        /// The step.
        step: StepId,
        /// What to approve.
        prompt: String,
    },
    /// The time budget was exceeded.
    BudgetExceeded {
        /// Elapsed since the run started.
        #[serde(with = "humantime_serde")]
        elapsed: Duration,
        /// The budget.
        #[serde(with = "humantime_serde")]
        budget: Duration,
    },
    /// Handed to people.
    Escalated {
        /// How bad.
        severity: Severity,
        /// Why.
        reason: String,
    },
    /// The run reached a final state in this process.
    RunFinished {
        /// The state.
        state: RunState,
        /// Total time since the run started.
        #[serde(with = "humantime_serde")]
        duration: Duration,
        /// What each changed target is at now (`"web: v1.4.2 (was v1.5.0)"`).
        restored: Vec<String>,
        /// The worst escalation, if any.
        escalation: Option<Severity>,
    },
}
