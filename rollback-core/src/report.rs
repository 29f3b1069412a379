//! The [`Report`] of a run, derived from its journal: timeline, per-step durations,
//! versions from and to, verifications, the final state, and — when it did not
//! succeed — exactly what state was left and what resume would do.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

use crate::journal::{Phase, RunLog};
use crate::{ErrorRecord, RunId, RunState, Severity, StepId, StepState, TargetId, Version};

/// A run's report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The run.
    pub run: RunId,
    /// The plan's name.
    pub plan: String,
    /// Why it ran.
    pub reason: Option<String>,
    /// The run it undoes.
    pub undoes: Option<RunId>,
    /// The final (or current) state.
    pub state: RunState,
    /// Why it reached that state (a preflight error, the failed steps).
    pub state_reason: Option<String>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When its last record was written.
    pub last_at: DateTime<Utc>,
    /// From start to last record.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// The budget.
    #[serde(with = "humantime_serde")]
    pub budget: Duration,
    /// Whether the budget was exceeded.
    pub budget_exceeded: bool,
    /// Every step that started, in order (forward and compensation).
    pub steps: Vec<StepReport>,
    /// Steps that never started.
    pub not_started: Vec<StepId>,
    /// Escalations.
    pub escalations: Vec<Escalation>,
    /// What the targets were left with, one line each.
    pub left: Vec<String>,
    /// What `resume` would do now.
    pub resume_would: String,
    /// Notifications that failed (`notifier: event: error`); the run went on.
    pub notification_failures: Vec<String>,
    /// Steps whose target already was where they point (`target: what was checked`).
    #[serde(default)]
    pub already_done: Vec<String>,
    /// The run succeeded without changing anything: every target it would roll
    /// back was already at its target version (a re-run of a finished rollback).
    #[serde(default)]
    pub nothing_to_do: bool,
    /// Who asked the run to stop through the journal, since it was last started or
    /// resumed
    /// ([`Engine::request_cancel`](crate::Engine::request_cancel)), from any host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_requested_by: Option<String>,
}

/// An escalation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Escalation {
    /// How bad.
    pub severity: Severity,
    /// Why.
    pub reason: String,
}

/// One step in a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// The step.
    pub step: StepId,
    /// Forward or compensation.
    pub phase: Phase,
    /// The target changed, if any.
    pub target: Option<TargetId>,
    /// Its state.
    pub state: StepState,
    /// What it does.
    pub description: String,
    /// Version before.
    pub from: Option<Version>,
    /// Version after.
    pub to: Option<Version>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// How long it took.
    #[serde(with = "humantime_serde::option")]
    pub duration: Option<Duration>,
    /// Why it failed.
    pub error: Option<ErrorRecord>,
    /// Step-specific result (verdict with every check, snapshot reference).
    pub detail: serde_json::Value,
}

impl Report {
    /// Builds the report of a journaled run.
    pub fn from_log(log: &RunLog) -> Report {
        let steps: Vec<StepReport> = log
            .steps
            .iter()
            .map(|s| StepReport {
                step: s.step.clone(),
                phase: s.phase,
                target: s.change.as_ref().map(|c| c.target.clone()),
                state: s.state,
                description: match &s.change {
                    Some(c) => c.description.clone(),
                    // A verdict's reason, a snapshot's description, a gate's approver.
                    None => ["reason", "description", "by", "skipped"]
                        .iter()
                        .find_map(|k| s.detail.get(*k).and_then(|v| v.as_str()))
                        .map_or_else(|| s.step.to_string(), |d| format!("{}: {d}", s.step)),
                },
                from: s.change.as_ref().and_then(|c| c.from.clone()),
                to: s.change.as_ref().map(|c| c.to.clone()),
                started_at: s.started_at,
                duration: s.duration,
                error: s.error.clone(),
                detail: s.detail.clone(),
            })
            .collect();
        let already_done: Vec<String> = log.prepared.iter().filter_map(|p| p.satisfied.clone()).collect();
        let changed_anything =
            log.steps.iter().any(|s| s.phase == Phase::Forward && s.state == StepState::Done && s.change.is_some());
        let nothing_to_do = log.state == RunState::Succeeded && !already_done.is_empty() && !changed_anything;
        let not_started =
            log.plan.steps().filter(|p| log.step(&p.id, Phase::Forward).is_none()).map(|p| p.id.clone()).collect();
        Report {
            run: log.run.clone(),
            plan: log.plan.name.clone(),
            reason: log.reason.clone(),
            undoes: log.plan.undoes.clone(),
            state: log.state,
            state_reason: log.state_reason.clone(),
            started_at: log.started_at,
            last_at: log.last_at,
            duration: (log.last_at - log.started_at).to_std().unwrap_or_default(),
            budget: log.plan.budget,
            budget_exceeded: log.budget_exceeded,
            left: left_state(log),
            resume_would: resume_would(log),
            notification_failures: log
                .notifier_failures
                .iter()
                .map(|(notifier, event, error)| format!("{notifier}: {event}: {error}"))
                .collect(),
            escalations: log
                .escalations
                .iter()
                .map(|(severity, reason)| Escalation { severity: *severity, reason: reason.clone() })
                .collect(),
            steps,
            not_started,
            already_done,
            nothing_to_do,
            cancel_requested_by: log.cancel_requested_by.clone(),
        }
    }

    /// The step's report for a phase.
    pub fn step(&self, step: &str, phase: Phase) -> Option<&StepReport> {
        self.steps.iter().find(|s| s.step.as_str() == step && s.phase == phase)
    }
}

fn left_state(log: &RunLog) -> Vec<String> {
    log.steps
        .iter()
        .filter_map(|s| {
            let change = s.change.as_ref()?;
            let from = change.from.as_ref().map_or_else(|| "its previous state".to_string(), |v| v.to_string());
            let what = match (s.phase, s.state) {
                (Phase::Forward, StepState::Done) => format!("now at {} (was {from})", change.to),
                (Phase::Compensation, StepState::Done) => format!("undone: back at {}", change.to),
                (_, StepState::IntentRecorded | StepState::Applying | StepState::Observed) => {
                    format!("in flight: {from} -> {} may or may not have happened; resume observes it", change.to)
                }
                (_, StepState::Failed) => format!(
                    "failed moving {from} -> {}: {}",
                    change.to,
                    s.error.as_ref().map_or("unknown error", |e| e.message.as_str())
                ),
                _ => return None,
            };
            Some(format!(
                "{} [{}{}]: {what}",
                change.target,
                s.step,
                if s.phase == Phase::Compensation { ", undo" } else { "" }
            ))
        })
        .collect()
}

fn resume_would(log: &RunLog) -> String {
    let in_flight: Vec<&str> = log
        .steps
        .iter()
        .filter(|s| !s.state.is_final() && s.state != StepState::Pending)
        .map(|s| s.step.as_str())
        .collect();
    let observe = if in_flight.is_empty() {
        String::new()
    } else {
        format!(" after observing in-flight step(s) {} at their backends", in_flight.join(", "))
    };
    match log.state {
        RunState::Succeeded | RunState::Compensated => "nothing: the run is finished".into(),
        RunState::Failed if !log.any_effect_started() => {
            "nothing: preflight failed and nothing was changed; fix the cause and start a new run".into()
        }
        RunState::Pending | RunState::Locked => "start over from preflight (nothing was changed)".into(),
        RunState::Preflighted | RunState::Running | RunState::Cancelled => {
            format!("continue the plan with its journaled changes (never re-resolved){observe}")
        }
        RunState::Failed => format!("compensate or escalate per the failed step's policy{observe}"),
        RunState::Compensating => format!("continue compensation{observe}"),
        RunState::Escalated => format!(
            "retry the failed step(s) with their journaled changes once the cause is fixed, \
             observing each backend first{observe}"
        ),
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "run {} ({}): {} in {:.1?}", self.run, self.plan, self.state, self.duration)?;
        if let Some(why) = &self.state_reason {
            writeln!(f, "  because: {why}")?;
        }
        if let Some(reason) = &self.reason {
            writeln!(f, "  reason: {reason}")?;
        }
        if self.nothing_to_do {
            writeln!(f, "  nothing to do: {}", self.already_done.join("; "))?;
        }
        writeln!(f, "  {:<18} {:>8} {:>9}  {:<16} what", "step", "at", "took", "state")?;
        for s in &self.steps {
            let duration = s.duration.map_or_else(|| "-".to_string(), |d| format!("{d:.1?}"));
            let offset = (s.started_at - self.started_at).to_std().unwrap_or_default();
            let phase = if s.phase == Phase::Compensation { " (undo)" } else { "" };
            writeln!(
                f,
                "  {:<18} {:>8} {:>9}  {:<16} {}{phase}",
                s.step.as_str(),
                format!("+{:.1}s", offset.as_secs_f64()),
                duration,
                s.state.as_str(),
                s.description
            )?;
            if let Some(error) = &s.error {
                writeln!(f, "      error: {error}")?;
            }
        }
        for step in &self.not_started {
            writeln!(f, "  {:<18} {:<16}", step.as_str(), "not started")?;
        }
        for failure in &self.notification_failures {
            writeln!(f, "  notification failed: {failure}")?;
        }
        for e in &self.escalations {
            writeln!(f, "  escalated {:?}: {}", e.severity, e.reason)?;
        }
        if self.state != RunState::Succeeded {
            for line in &self.left {
                writeln!(f, "  left: {line}")?;
            }
            writeln!(f, "  resume would: {}", self.resume_would)?;
        }
        Ok(())
    }
}
