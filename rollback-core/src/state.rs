//! The two state machines, as tables a reader can check.
//!
//! Run:
//!
//! | from          | event               | to            |
//! |---------------|---------------------|---------------|
//! | pending       | lock_acquired       | locked        |
//! | pending       | fail                | failed        |
//! | locked        | preflight_passed    | preflighted   |
//! | locked        | fail                | failed        |
//! | preflighted   | start               | running       |
//! | preflighted   | fail                | failed        |
//! | running       | all_steps_done      | succeeded     |
//! | running       | fail                | failed        |
//! | running       | cancel              | cancelled     |
//! | failed        | compensate          | compensating  |
//! | failed        | escalate            | escalated     |
//! | compensating  | compensation_done   | compensated   |
//! | compensating  | escalate            | escalated     |
//! | cancelled     | resume              | running       |
//! | escalated     | resume              | running       |
//! | escalated     | resume_compensation | compensating  |
//!
//! Step:
//!
//! | from              | event          | to                 |
//! |-------------------|----------------|--------------------|
//! | pending           | record_intent  | intent_recorded    |
//! | pending           | await_approval | awaiting_approval  |
//! | pending           | skip           | skipped            |
//! | awaiting_approval | approve        | done               |
//! | awaiting_approval | reject         | failed             |
//! | intent_recorded   | begin_apply    | applying           |
//! | intent_recorded   | observe        | observed           |
//! | intent_recorded   | fail           | failed             |
//! | applying          | observe        | observed           |
//! | applying          | fail           | failed             |
//! | observed          | begin_apply    | applying           |
//! | observed          | confirm        | done               |
//! | observed          | fail           | failed             |
//!
//! Anything else is an `ErrorKind::InvalidState` error.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::{Error, ErrorKind, Result};

macro_rules! machine {
    (
        $(#[$sdoc:meta])* state $state:ident { $($(#[$sd:meta])* $s:ident = $sname:literal),+ $(,)? }
        $(#[$edoc:meta])* event $event:ident { $($(#[$ed:meta])* $e:ident = $ename:literal),+ $(,)? }
        table { $($from:ident + $ev:ident => $to:ident),+ $(,)? }
    ) => {
        $(#[$sdoc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $state { $($(#[$sd])* $s),+ }

        $(#[$edoc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $event { $($(#[$ed])* $e),+ }

        impl $state {
            /// Every state.
            pub const ALL: &'static [$state] = &[$($state::$s),+];
            /// The transition table, as `(from, event, to)` rows.
            pub const TRANSITIONS: &'static [($state, $event, $state)] = &[$(($state::$from, $event::$ev, $state::$to)),+];

            /// The state `event` leads to, or an `InvalidState` error naming both.
            pub fn on(self, event: $event) -> Result<$state> {
                Self::TRANSITIONS
                    .iter()
                    .find(|(from, ev, _)| *from == self && *ev == event)
                    .map(|(_, _, to)| *to)
                    .ok_or_else(|| {
                        Error::new(ErrorKind::InvalidState, format!("{} cannot {} while {}", stringify!($state), event, self))
                    })
            }

            /// The snake-case name.
            pub fn as_str(self) -> &'static str {
                match self { $($state::$s => $sname),+ }
            }
        }

        impl $event {
            /// Every event.
            pub const ALL: &'static [$event] = &[$($event::$e),+];
        }

        impl fmt::Display for $state {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl fmt::Display for $event {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self { $($event::$e => $ename),+ })
            }
        }
    };
}

machine! {
    /// A run's state.
    state RunState {
        /// Created, nothing done.
        Pending = "pending",
        /// The lock on every target is held.
        Locked = "locked",
        /// Every step prepared, identities recorded; nothing changed yet.
        Preflighted = "preflighted",
        /// Steps are being applied.
        Running = "running",
        /// Every step done.
        Succeeded = "succeeded",
        /// A step failed (or preflight failed: then nothing was changed).
        Failed = "failed",
        /// Undoing completed steps.
        Compensating = "compensating",
        /// Completed steps undone.
        Compensated = "compensated",
        /// Handed to people, with a report of the state left; once the cause is
        /// fixed, resume retries from where it stopped.
        Escalated = "escalated",
        /// Stopped at a step boundary on request; resume continues it.
        Cancelled = "cancelled",
    }
    /// What moves a run.
    event RunEvent {
        /// The lock was acquired.
        LockAcquired = "acquire the lock",
        /// Every step prepared.
        PreflightPassed = "pass preflight",
        /// Steps start.
        Start = "start",
        /// Every step finished.
        AllStepsDone = "finish",
        /// Something failed.
        Fail = "fail",
        /// Compensation starts.
        Compensate = "compensate",
        /// Compensation finished.
        CompensationDone = "finish compensation",
        /// Handed to people.
        Escalate = "escalate",
        /// Cancelled at a step boundary.
        Cancel = "cancel",
        /// Resumed after a cancel, or after people fixed what made a step fail.
        Resume = "resume",
        /// Resumed to finish a compensation that had failed.
        ResumeCompensation = "resume compensation",
    }
    table {
        Pending + LockAcquired => Locked,
        Pending + Fail => Failed,
        Locked + PreflightPassed => Preflighted,
        Locked + Fail => Failed,
        Preflighted + Start => Running,
        Preflighted + Fail => Failed,
        Running + AllStepsDone => Succeeded,
        Running + Fail => Failed,
        Running + Cancel => Cancelled,
        Failed + Compensate => Compensating,
        Failed + Escalate => Escalated,
        Compensating + CompensationDone => Compensated,
        Compensating + Escalate => Escalated,
        Cancelled + Resume => Running,
        Escalated + Resume => Running,
        Escalated + ResumeCompensation => Compensating,
    }
}

impl RunState {
    /// Whether the run is over for good. `failed` leads to compensation or escalation
    /// (it is final only when preflight failed and nothing was changed), and an
    /// `escalated` run can be resumed once people fixed the cause.
    pub fn is_terminal(self) -> bool {
        matches!(self, RunState::Succeeded | RunState::Compensated)
    }
}

machine! {
    /// A step's state.
    state StepState {
        /// Not started.
        Pending = "pending",
        /// A gate waiting for a person.
        AwaitingApproval = "awaiting_approval",
        /// The change, pre-state and key are journaled; the effect may or may not have happened.
        IntentRecorded = "intent_recorded",
        /// The effect is being applied.
        Applying = "applying",
        /// The backend was observed after (or instead of) applying.
        Observed = "observed",
        /// Done.
        Done = "done",
        /// Failed.
        Failed = "failed",
        /// Not run (an earlier step halted the run, or the plan was cancelled).
        Skipped = "skipped",
    }
    /// What moves a step.
    event StepEvent {
        /// Journal the intent.
        RecordIntent = "record its intent",
        /// Wait for approval.
        AwaitApproval = "await approval",
        /// Not run.
        Skip = "skip",
        /// Approved.
        Approve = "be approved",
        /// Rejected.
        Reject = "be rejected",
        /// Start the effect.
        BeginApply = "begin applying",
        /// Look at the backend.
        Observe = "observe",
        /// The backend shows the change done.
        Confirm = "confirm",
        /// It failed.
        Fail = "fail",
    }
    table {
        Pending + RecordIntent => IntentRecorded,
        Pending + AwaitApproval => AwaitingApproval,
        Pending + Skip => Skipped,
        AwaitingApproval + Approve => Done,
        AwaitingApproval + Reject => Failed,
        IntentRecorded + BeginApply => Applying,
        IntentRecorded + Observe => Observed,
        IntentRecorded + Fail => Failed,
        Applying + Observe => Observed,
        Applying + Fail => Failed,
        Observed + BeginApply => Applying,
        Observed + Confirm => Done,
        Observed + Fail => Failed,
    }
}

impl StepState {
    /// Whether the step is finished one way or another.
    pub fn is_final(self) -> bool {
        matches!(self, StepState::Done | StepState::Failed | StepState::Skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every (state, event) pair: legal ones per the table, all others refused.
    #[test]
    fn run_machine_every_pair() {
        let expected = |from: RunState, ev: RunEvent| -> Option<RunState> {
            use RunEvent as E;
            use RunState as S;
            Some(match (from, ev) {
                (S::Pending, E::LockAcquired) => S::Locked,
                (S::Pending | S::Locked | S::Preflighted | S::Running, E::Fail) => S::Failed,
                (S::Locked, E::PreflightPassed) => S::Preflighted,
                (S::Preflighted, E::Start) => S::Running,
                (S::Running, E::AllStepsDone) => S::Succeeded,
                (S::Running, E::Cancel) => S::Cancelled,
                (S::Failed, E::Compensate) => S::Compensating,
                (S::Failed | S::Compensating, E::Escalate) => S::Escalated,
                (S::Compensating, E::CompensationDone) => S::Compensated,
                (S::Cancelled | S::Escalated, E::Resume) => S::Running,
                (S::Escalated, E::ResumeCompensation) => S::Compensating,
                _ => return None,
            })
        };
        let mut legal = 0;
        for &s in RunState::ALL {
            for &e in RunEvent::ALL {
                match (s.on(e), expected(s, e)) {
                    (Ok(to), Some(want)) => {
                        assert_eq!(to, want, "{s} + {e}");
                        legal += 1;
                    }
                    (Err(err), None) => {
                        assert_eq!(err.kind(), ErrorKind::InvalidState);
                        assert!(err.to_string().contains(s.as_str()), "{err}");
                    }
                    (got, want) => panic!("{s} + {e}: got {got:?}, want {want:?}"),
                }
            }
        }
        assert_eq!(legal, RunState::TRANSITIONS.len());
        for terminal in [RunState::Succeeded, RunState::Compensated] {
            assert!(RunEvent::ALL.iter().all(|&e| terminal.on(e).is_err()), "{terminal} is terminal");
        }
    }

    #[test]
    fn step_machine_every_pair() {
        let expected = |from: StepState, ev: StepEvent| -> Option<StepState> {
            use StepEvent as E;
            use StepState as S;
            Some(match (from, ev) {
                (S::Pending, E::RecordIntent) => S::IntentRecorded,
                (S::Pending, E::AwaitApproval) => S::AwaitingApproval,
                (S::Pending, E::Skip) => S::Skipped,
                (S::AwaitingApproval, E::Approve) => S::Done,
                (S::AwaitingApproval, E::Reject) => S::Failed,
                (S::IntentRecorded | S::Observed, E::BeginApply) => S::Applying,
                (S::IntentRecorded | S::Applying, E::Observe) => S::Observed,
                (S::IntentRecorded | S::Applying | S::Observed, E::Fail) => S::Failed,
                (S::Observed, E::Confirm) => S::Done,
                _ => return None,
            })
        };
        let mut legal = 0;
        for &s in StepState::ALL {
            for &e in StepEvent::ALL {
                match (s.on(e), expected(s, e)) {
                    (Ok(to), Some(want)) => {
                        assert_eq!(to, want, "{s} + {e}");
                        legal += 1;
                    }
                    (Err(err), None) => assert_eq!(err.kind(), ErrorKind::InvalidState),
                    (got, want) => panic!("{s} + {e}: got {got:?}, want {want:?}"),
                }
            }
        }
        assert_eq!(legal, StepState::TRANSITIONS.len());
        assert!(
            StepState::ALL.iter().filter(|s| s.is_final()).all(|s| StepEvent::ALL.iter().all(|&e| s.on(e).is_err()))
        );
    }
}
