//! The write-ahead journal: an intent (the change, its pre-state, the key) before
//! each effect, an outcome after. Records carry a sequence number, the run, the
//! fencing token and (in files) a checksum. An append with a stale fencing token is
//! rejected: that is where fencing is enforced, since Docker, S3 and DDL cannot check
//! tokens.

mod fence;
mod file;
mod memory;
mod replay;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

pub use fence::{Fence, FenceTable};
pub use file::{FileJournal, Parsed, parse_records};
pub use memory::MemoryJournal;
pub use replay::{RunLog, StepLog};

use crate::{
    Change, ErrorRecord, FailurePolicy, IdempotencyKey, Identity, Plan, Result, RunId, RunState, Severity, StepId,
    StepState, TargetId, Undo,
};

/// Whether an append must be on disk before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync before returning (intents: the effect must not happen before its intent is durable).
    Sync,
    /// Written, made durable by the next `Sync` append (outcomes: if lost, resume observes).
    Buffered,
}

/// Whether a step record is the forward effect or its compensation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The step itself.
    Forward,
    /// Its undo during compensation.
    Compensation,
}

impl Phase {
    /// The suffix of idempotency keys of this phase.
    pub fn key_suffix(self) -> &'static str {
        match self {
            Phase::Forward => "fwd",
            Phase::Compensation => "undo",
        }
    }
}

/// A step as preflight resolved it: its change (for steps that change a target) and
/// its effective failure policy and undo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreparedStep {
    /// The step.
    pub step: StepId,
    /// The absolute change, for rollback, action and apply steps. Revert steps get
    /// theirs when they run, from the journaled change they revert.
    pub change: Option<Change>,
    /// Effective failure policy.
    pub on_failure: FailurePolicy,
    /// Effective undo.
    pub undo: Undo,
    /// Why the step has nothing to do: its target already is where an absolute
    /// request points (then `change` is `None` and the step is skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub satisfied: Option<String>,
}

/// One journal entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Entry {
    /// The run started with this plan.
    RunStarted {
        /// The plan (specs hold secret references only).
        plan: Box<Plan>,
        /// Who runs it.
        holder: String,
        /// Why, if given.
        reason: Option<String>,
        /// The host id of the runner that started it (absent in older journals).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
    },
    /// The run changed state.
    StateChanged {
        /// Before.
        from: RunState,
        /// After.
        to: RunState,
        /// Why.
        reason: Option<String>,
    },
    /// Every step prepared; nothing applied yet.
    Preflighted {
        /// Each target's identity.
        identities: BTreeMap<TargetId, Identity>,
        /// Each step as prepared.
        steps: Vec<PreparedStep>,
    },
    /// About to apply a change (durable before the effect).
    Intent {
        /// The step.
        step: StepId,
        /// Forward or compensation.
        phase: Phase,
        /// The absolute change.
        change: Box<Change>,
        /// The idempotency key stamped into the backend.
        key: IdempotencyKey,
    },
    /// A step started that has no effect to journal first (verify, snapshot, gate).
    StepStarted {
        /// The step.
        step: StepId,
        /// Forward or compensation.
        phase: Phase,
    },
    /// How a step ended.
    Outcome {
        /// The step.
        step: StepId,
        /// Forward or compensation.
        phase: Phase,
        /// Done, failed or skipped.
        state: StepState,
        /// Why it failed.
        error: Option<ErrorRecord>,
        /// How long it took.
        #[serde(with = "humantime_serde")]
        duration: Duration,
        /// Step-specific result (a verdict, a snapshot reference, an observation).
        #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
        detail: serde_json::Value,
    },
    /// A gate is waiting.
    ApprovalRequested {
        /// The step.
        step: StepId,
        /// What to approve.
        prompt: String,
    },
    /// A person decided on a gate (possibly from another process).
    Approval {
        /// The step.
        step: StepId,
        /// Approved or rejected.
        approved: bool,
        /// Who.
        by: String,
    },
    /// Someone asked, possibly from another process or host, that the run stop at
    /// its next step boundary ([`Engine::request_cancel`](crate::Engine::request_cancel)).
    CancelRequested {
        /// Who.
        by: String,
    },
    /// The time budget was exceeded.
    BudgetExceeded {
        /// Elapsed.
        #[serde(with = "humantime_serde")]
        elapsed: Duration,
        /// Budget.
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
    /// A process took the run over to resume it.
    Resumed {
        /// Who.
        holder: String,
    },
    /// The status update at this offset was sent (never sent again on resume).
    StatusUpdateSent {
        /// Offset from the start.
        #[serde(with = "humantime_serde")]
        offset: Duration,
    },
    /// A notifier failed to deliver an event (the run went on).
    NotifierFailed {
        /// The notifier.
        notifier: String,
        /// The event's kind.
        event: String,
        /// The error.
        error: String,
    },
    /// Facts added after the run, for the history (root cause, post-mortem link).
    Annotated {
        /// Root cause.
        root_cause: Option<String>,
        /// Post-mortem link.
        postmortem: Option<String>,
        /// Who.
        by: String,
    },
}

/// A journal record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// 1, 2, 3… within the run, without gaps.
    pub seq: u64,
    /// The run.
    pub run: RunId,
    /// The fencing token of the writer (0 for unfenced records such as approvals).
    pub token: u64,
    /// When it was written.
    pub at: DateTime<Utc>,
    /// What.
    #[serde(flatten)]
    pub entry: Entry,
}

/// A summary of a journaled run, from the index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunIndexEntry {
    /// The run.
    pub run: RunId,
    /// Its plan's name.
    pub plan: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
}

/// Where runs are journaled. Usable as `Arc<dyn Journal>`.
#[async_trait]
pub trait Journal: Send + Sync + 'static {
    /// Appends an entry and returns its sequence number. With a fence, the append is
    /// rejected ([`crate::ErrorKind::Locked`]) if any of its resources has seen a newer token.
    async fn append(&self, run: &RunId, fence: Option<&Fence>, entry: Entry, durability: Durability) -> Result<u64>;

    /// Appends several entries in order, as one write where the journal can, and
    /// returns the sequence number of the last. The engine uses it to write a step's
    /// outcome together with the next step's intent: one write and one fsync per step.
    async fn append_batch(
        &self,
        run: &RunId,
        fence: Option<&Fence>,
        entries: Vec<Entry>,
        durability: Durability,
    ) -> Result<u64> {
        let count = entries.len();
        let mut last = 0;
        for (i, entry) in entries.into_iter().enumerate() {
            let d = if i + 1 == count { durability } else { Durability::Buffered };
            last = self.append(run, fence, entry, d).await?;
        }
        Ok(last)
    }

    /// Every complete record of a run, in order. A torn tail is dropped; corruption
    /// before the tail is an [`crate::ErrorKind::Corrupt`] error.
    async fn read(&self, run: &RunId) -> Result<Vec<Record>>;

    /// Runs known to the journal, oldest first.
    async fn runs(&self) -> Result<Vec<RunIndexEntry>>;

    /// Whether [`Journal::wait_for_records`] wakes when another process appends
    /// (PostgreSQL's NOTIFY), rather than only sleeping its timeout.
    fn notifies(&self) -> bool {
        false
    }

    /// Waits until `run` may have new records (another process appended), at most
    /// `timeout`. A waiting gate calls it between reads. The default waits out the
    /// timeout; a journal that hears of appends (PostgreSQL's `LISTEN`) returns early.
    /// Returning is only a hint: the caller reads the journal to see what changed.
    async fn wait_for_records(&self, run: &RunId, timeout: Duration) {
        let _ = run;
        tokio::time::sleep(timeout).await;
    }
}
