use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::{Entry, Phase, PreparedStep, Record};
use crate::{
    Change, Error, ErrorKind, ErrorRecord, IdempotencyKey, Identity, Plan, Result, RunId, RunState, Severity, StepId,
    StepState, TargetId,
};

/// A run rebuilt from its journal: what resume, reports and history read.
#[derive(Debug, Clone, Serialize)]
pub struct RunLog {
    /// The run.
    pub run: RunId,
    /// Its plan.
    pub plan: Plan,
    /// Why it was started.
    pub reason: Option<String>,
    /// Who started it.
    pub holder: String,
    /// The host id of the runner that started it, when journaled.
    pub host: Option<String>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When the last record was written.
    pub last_at: DateTime<Utc>,
    /// Its state.
    pub state: RunState,
    /// Why it reached that state, when the transition said.
    pub state_reason: Option<String>,
    /// Target identities recorded at preflight.
    pub identities: BTreeMap<TargetId, Identity>,
    /// Steps as preflight prepared them (empty before preflight).
    pub prepared: Vec<PreparedStep>,
    /// Step records in the order they started.
    pub steps: Vec<StepLog>,
    /// Approvals given, by step.
    pub approvals: BTreeMap<StepId, (bool, String)>,
    /// Escalations, in order.
    pub escalations: Vec<(Severity, String)>,
    /// Whether the budget was exceeded.
    pub budget_exceeded: bool,
    /// The newest fencing token that wrote to the run.
    pub last_token: u64,
    /// Offsets of the status updates already sent.
    pub status_updates_sent: Vec<Duration>,
    /// Notifier failures: (notifier, event, error).
    pub notifier_failures: Vec<(String, String, String)>,
    /// Root cause, filled in later.
    pub root_cause: Option<String>,
    /// Post-mortem link, filled in later.
    pub postmortem: Option<String>,
    /// Who asked the run to stop ([`Entry::CancelRequested`]) since it was last
    /// started or resumed.
    pub cancel_requested_by: Option<String>,
    /// The highest sequence number read (0 for entries not written yet).
    pub last_seq: u64,
    /// Index of `steps` by step and phase.
    #[serde(skip)]
    step_index: HashMap<(StepId, Phase), usize>,
    /// Index of `prepared` by step.
    #[serde(skip)]
    prepared_index: HashMap<StepId, usize>,
}

/// One step (one phase of it) as the journal shows it.
#[derive(Debug, Clone, Serialize)]
pub struct StepLog {
    /// The step.
    pub step: StepId,
    /// Forward or compensation.
    pub phase: Phase,
    /// Its state per the journal (intent without outcome = `intent_recorded`: in flight).
    pub state: StepState,
    /// The change it applies, if any.
    pub change: Option<Change>,
    /// Its idempotency key, if any.
    pub key: Option<IdempotencyKey>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// How long it took, once finished.
    pub duration: Option<Duration>,
    /// Why it failed.
    pub error: Option<ErrorRecord>,
    /// Step-specific result.
    pub detail: serde_json::Value,
}

impl RunLog {
    /// Replays records. The first must be `run_started`.
    pub fn from_records(records: &[Record]) -> Result<RunLog> {
        let first =
            records.first().ok_or_else(|| Error::new(ErrorKind::Corrupt, "the journal of this run is empty"))?;
        let Entry::RunStarted { plan, holder, reason, host } = &first.entry else {
            return Err(Error::new(ErrorKind::Corrupt, "the journal does not start with run_started"));
        };
        let mut log = RunLog {
            run: first.run.clone(),
            plan: (**plan).clone(),
            reason: reason.clone(),
            holder: holder.clone(),
            host: host.clone(),
            started_at: first.at,
            last_at: first.at,
            state: RunState::Pending,
            state_reason: None,
            identities: BTreeMap::new(),
            prepared: Vec::new(),
            steps: Vec::new(),
            approvals: BTreeMap::new(),
            escalations: Vec::new(),
            budget_exceeded: false,
            last_token: first.token,
            status_updates_sent: Vec::new(),
            notifier_failures: Vec::new(),
            root_cause: None,
            postmortem: None,
            cancel_requested_by: None,
            last_seq: first.seq,
            step_index: HashMap::new(),
            prepared_index: HashMap::new(),
        };
        for record in &records[1..] {
            log.apply(record)?;
        }
        Ok(log)
    }

    /// Folds one more record into the log (the engine keeps its in-process view this
    /// way, so it is the same view resume rebuilds).
    pub fn apply(&mut self, record: &Record) -> Result<()> {
        self.last_at = record.at;
        self.last_token = self.last_token.max(record.token);
        self.last_seq = self.last_seq.max(record.seq);
        match &record.entry {
            Entry::RunStarted { .. } => {
                return Err(Error::new(ErrorKind::Corrupt, format!("second run_started at seq {}", record.seq)));
            }
            Entry::StateChanged { to, reason, .. } => {
                self.state = *to;
                self.state_reason = reason.clone();
            }
            Entry::Preflighted { identities, steps } => {
                self.identities = identities.clone();
                self.prepared = steps.clone();
                self.prepared_index = steps.iter().enumerate().map(|(i, p)| (p.step.clone(), i)).collect();
            }
            Entry::Intent { step, phase, change, key } => {
                let entry = self.step_entry(step, *phase, record.at);
                entry.state = StepState::IntentRecorded;
                entry.change = Some((**change).clone());
                entry.key = Some(key.clone());
                entry.error = None;
            }
            Entry::StepStarted { step, phase } => {
                let entry = self.step_entry(step, *phase, record.at);
                entry.state = StepState::Applying;
                entry.error = None;
            }
            Entry::ApprovalRequested { step, .. } => {
                self.step_entry(step, Phase::Forward, record.at).state = StepState::AwaitingApproval;
            }
            Entry::Approval { step, approved, by } => {
                self.approvals.entry(step.clone()).or_insert((*approved, by.clone()));
            }
            Entry::Outcome { step, phase, state, error, duration, detail } => {
                let entry = self.step_entry(step, *phase, record.at);
                entry.state = *state;
                entry.error = error.clone();
                entry.duration = Some(*duration);
                entry.detail = detail.clone();
            }
            Entry::BudgetExceeded { .. } => self.budget_exceeded = true,
            Entry::Escalated { severity, reason } => self.escalations.push((*severity, reason.clone())),
            // A cancel asked for before the run was taken over does not stop it again.
            Entry::Resumed { .. } => self.cancel_requested_by = None,
            Entry::StatusUpdateSent { offset } => self.status_updates_sent.push(*offset),
            Entry::NotifierFailed { notifier, event, error } => {
                self.notifier_failures.push((notifier.clone(), event.clone(), error.clone()));
            }
            Entry::Annotated { root_cause, postmortem, .. } => {
                if root_cause.is_some() {
                    self.root_cause = root_cause.clone();
                }
                if postmortem.is_some() {
                    self.postmortem = postmortem.clone();
                }
            }
            Entry::CancelRequested { by } => self.cancel_requested_by = Some(by.clone()),
        }
        Ok(())
    }

    fn step_entry(&mut self, step: &StepId, phase: Phase, at: DateTime<Utc>) -> &mut StepLog {
        let index = match self.step_index.get(&(step.clone(), phase)) {
            Some(index) => *index,
            None => {
                self.step_index.insert((step.clone(), phase), self.steps.len());
                self.steps.push(StepLog {
                    step: step.clone(),
                    phase,
                    state: StepState::Pending,
                    change: None,
                    key: None,
                    started_at: at,
                    duration: None,
                    error: None,
                    detail: serde_json::Value::Null,
                });
                self.steps.len() - 1
            }
        };
        &mut self.steps[index]
    }

    /// A step's record for a phase.
    pub fn step(&self, step: &StepId, phase: Phase) -> Option<&StepLog> {
        self.step_index.get(&(step.clone(), phase)).map(|i| &self.steps[*i])
    }

    /// A step as preflight prepared it.
    pub fn prepared(&self, step: &StepId) -> Option<&PreparedStep> {
        self.prepared_index.get(step).map(|i| &self.prepared[*i])
    }

    /// Whether any effect may have happened (an intent was journaled).
    pub fn any_effect_started(&self) -> bool {
        self.steps.iter().any(|s| s.change.is_some())
    }
}
