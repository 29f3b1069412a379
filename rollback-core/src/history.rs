//! Rollback history derived from journals, with the runbook's fields (date, versions
//! from and to, reason, duration, root cause and post-mortem link filled in later)
//! and escalation flags: rollback failed → S1; succeeded but the issue persists → S2;
//! took longer than its budget → S3.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::journal::{Phase, RunLog};
use crate::{RunId, RunState, Severity, StepState, TargetId, Version};

/// One target's change in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetChange {
    /// The target.
    pub target: TargetId,
    /// Before.
    pub from: Option<Version>,
    /// After.
    pub to: Version,
}

/// A run as the history shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryRecord {
    /// The run.
    pub run: RunId,
    /// The plan's name.
    pub plan: String,
    /// When it started.
    pub date: DateTime<Utc>,
    /// How long it took (start to last record).
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Its state.
    pub state: RunState,
    /// Why it ran.
    pub reason: Option<String>,
    /// Versions from and to, per target, for changes that are in place.
    pub changes: Vec<TargetChange>,
    /// The worst escalation (S1 worst).
    pub escalation: Option<Severity>,
    /// The run this one undid.
    pub undoes: Option<RunId>,
    /// Root cause, filled in later with [`crate::Engine::annotate`].
    pub root_cause: Option<String>,
    /// Post-mortem link, filled in later.
    pub postmortem: Option<String>,
}

impl HistoryRecord {
    /// The record of a journaled run.
    pub fn from_log(log: &RunLog) -> HistoryRecord {
        let changes = log
            .steps
            .iter()
            .filter(|s| s.phase == Phase::Forward && s.state == StepState::Done)
            .filter(|s| log.step(&s.step, Phase::Compensation).is_none_or(|c| c.state != StepState::Done))
            .filter_map(|s| s.change.as_ref())
            .map(|c| TargetChange { target: c.target.clone(), from: c.from.clone(), to: c.to.clone() })
            .collect();
        HistoryRecord {
            run: log.run.clone(),
            plan: log.plan.name.clone(),
            date: log.started_at,
            duration: (log.last_at - log.started_at).to_std().unwrap_or_default(),
            state: log.state,
            reason: log.reason.clone(),
            changes,
            escalation: log.escalations.iter().map(|(s, _)| *s).min(),
            undoes: log.plan.undoes.clone(),
            root_cause: log.root_cause.clone(),
            postmortem: log.postmortem.clone(),
        }
    }

    /// Whether the run touched `target` (a changed target, or one the plan declares).
    pub fn touches(&self, target: &TargetId) -> bool {
        self.changes.iter().any(|c| &c.target == target)
    }
}

/// Which history records to return.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryQuery {
    /// Only runs that changed this target.
    pub target: Option<TargetId>,
    /// Only runs started at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only runs started before this time.
    pub until: Option<DateTime<Utc>>,
}

impl HistoryQuery {
    /// Whether `record` matches.
    pub fn matches(&self, record: &HistoryRecord) -> bool {
        self.target.as_ref().is_none_or(|t| record.touches(t))
            && self.since.is_none_or(|s| record.date >= s)
            && self.until.is_none_or(|u| record.date < u)
    }
}
