//! Driving a run through its state machine: stages, steps, compensation, finally
//! steps and escalation.

use futures::StreamExt;
use futures::future::BoxFuture;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::time::Instant;
use tracing::Instrument;

use super::context::RunCtx;
use crate::crash::{CrashPoint, CrashWhen};
use crate::journal::{Durability, Entry, Phase, StepLog};
use crate::{
    Change, Error, ErrorKind, EventKind, FailurePolicy, IdempotencyKey, Observed, Report, Result, RunEvent, RunState,
    Severity, SnapshotRef, Step, StepEvent, StepId, StepOp, StepState, Undo, probe,
};

/// How the stages ended.
enum Flow {
    Completed,
    Failed(String),
    Cancelled,
}

impl RunCtx {
    /// A new run: preflight, then drive.
    pub(crate) async fn drive_new(self: Arc<Self>) -> Result<Report> {
        let result = self.drive_from_locked().await;
        self.conclude(result).await
    }

    /// A resumed run: pick up from the journaled state.
    pub(crate) async fn drive_resumed(self: Arc<Self>) -> Result<Report> {
        let result = async {
            match self.state() {
                RunState::Pending => {
                    self.transition(RunEvent::LockAcquired, None).await?;
                    return self.drive_from_locked().await;
                }
                RunState::Locked => return self.drive_from_locked().await,
                RunState::Cancelled => {
                    self.transition(RunEvent::Resume, Some("resumed".into())).await?;
                }
                RunState::Escalated => {
                    let compensating = self.with_log(|log| log.steps.iter().any(|s| s.phase == Phase::Compensation));
                    let event = if compensating { RunEvent::ResumeCompensation } else { RunEvent::Resume };
                    self.transition(event, Some("resumed after escalation".into())).await?;
                }
                _ => {}
            }
            self.drive().await
        }
        .await;
        self.conclude(result).await
    }

    async fn conclude(self: Arc<Self>, result: Result<()>) -> Result<Report> {
        let flushed = if result.is_ok() { self.flush().await } else { Ok(()) };
        let result = result.and(flushed);
        let report = self.report();
        self.finish().await;
        result.map(|()| report)
    }

    async fn drive_from_locked(&self) -> Result<()> {
        if let Err(err) = self.preflight().await {
            tracing::warn!(run = %self.run, error = %err, "preflight failed; nothing was changed");
            self.transition(RunEvent::Fail, Some(format!("preflight failed, nothing was changed: {err}"))).await?;
            return Ok(());
        }
        self.transition(RunEvent::PreflightPassed, None).await?;
        self.drive().await
    }

    async fn drive(&self) -> Result<()> {
        loop {
            match self.state() {
                RunState::Preflighted => {
                    self.transition(RunEvent::Start, None).await?;
                }
                RunState::Running => match self.run_stages().await? {
                    Flow::Completed => {
                        let failed = self.run_finally().await?;
                        if failed.is_empty() {
                            self.transition(RunEvent::AllStepsDone, None).await?;
                        } else {
                            let reason = format!("finally step(s) {} failed", failed.join(", "));
                            self.transition(RunEvent::Fail, Some(reason)).await?;
                        }
                    }
                    Flow::Failed(reason) => {
                        self.transition(RunEvent::Fail, Some(reason)).await?;
                    }
                    Flow::Cancelled => {
                        self.transition(RunEvent::Cancel, Some(self.cancel_reason())).await?;
                    }
                },
                RunState::Failed => {
                    if !self.with_log(|log| log.any_effect_started()) && self.with_log(|log| log.prepared.is_empty()) {
                        return Ok(());
                    }
                    if self.failed_policy() == FailurePolicy::Compensate {
                        self.transition(RunEvent::Compensate, None).await?;
                    } else {
                        self.run_finally().await?;
                        let reason = self.failure_summary();
                        let escalation = if self.only_verification_failed() {
                            (Severity::S2, format!("rolled back, but the issue persists: {reason}"))
                        } else {
                            (Severity::S1, format!("rollback failed: {reason}"))
                        };
                        self.escalation(escalation.0, escalation.1).await?;
                        self.transition(RunEvent::Escalate, Some(reason)).await?;
                    }
                }
                RunState::Compensating => {
                    let outcome = self.compensate().await?;
                    self.run_finally().await?;
                    match outcome {
                        None => {
                            self.transition(RunEvent::CompensationDone, None).await?;
                        }
                        Some(reason) => {
                            self.escalation(Severity::S1, format!("compensation failed: {reason}")).await?;
                            self.transition(RunEvent::Escalate, Some(reason)).await?;
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// Whether a step still has to run (not done, not skipped, not a tolerated failure).
    fn needs_run(&self, step: &Step) -> bool {
        self.with_log(|log| match log.step(&step.id, Phase::Forward).map(|s| s.state) {
            None => true,
            Some(StepState::Done | StepState::Skipped) => false,
            Some(StepState::Failed) => log.prepared(&step.id).is_none_or(|p| p.on_failure != FailurePolicy::Continue),
            Some(_) => true,
        })
    }

    /// What a step boundary decides: cancel, budget abort, or go on. A lost lease is fatal.
    fn boundary(&self) -> Result<Option<Flow>> {
        if self.cancel.is_cancelled() {
            return Ok(Some(Flow::Cancelled));
        }
        if self.plan.abort_on_budget && self.budget_exceeded.load(Ordering::SeqCst) {
            return Ok(Some(Flow::Failed(format!(
                "budget of {:?} exceeded; aborted at a step boundary as configured",
                self.plan.budget
            ))));
        }
        self.lease.check()?;
        Ok(None)
    }

    async fn run_stages(&self) -> Result<Flow> {
        for stage in &self.plan.stages {
            let todo: Vec<&Step> = stage.steps.iter().filter(|s| self.needs_run(s)).collect();
            if todo.is_empty() {
                continue;
            }
            if let Some(flow) = self.boundary()? {
                return Ok(flow);
            }
            // Once a step of the stage failed (and its policy is not `continue`), steps
            // not yet started stay pending: a failed rollback is not followed by its checks.
            let stage_failed = std::sync::atomic::AtomicBool::new(false);
            let stage_failed = &stage_failed;
            // Boxed up front: a lazily mapped stream of borrowing futures trips the
            // compiler's Send inference (rust-lang/rust#102211).
            let steps: Vec<BoxFuture<'_, Result<Option<StepState>>>> = todo
                .iter()
                .map(|step| -> BoxFuture<'_, Result<Option<StepState>>> {
                    Box::pin(async move {
                        if self.cancel.is_cancelled() || stage_failed.load(std::sync::atomic::Ordering::SeqCst) {
                            return Ok(None);
                        }
                        let state = self.run_step(step).await?;
                        let policy = self.with_log(|log| log.prepared(&step.id).map(|p| p.on_failure));
                        if state == StepState::Failed && policy != Some(FailurePolicy::Continue) {
                            stage_failed.store(true, std::sync::atomic::Ordering::SeqCst);
                        }
                        Ok(Some(state))
                    })
                })
                .collect();
            let results: Vec<Result<Option<StepState>>> =
                futures::stream::iter(steps).buffer_unordered(stage.parallelism).collect().await;
            let mut failed = Vec::new();
            for (step, result) in todo.iter().zip(results) {
                // buffer_unordered reorders results; look states up in the log instead.
                result?;
                let state = self.with_log(|log| log.step(&step.id, Phase::Forward).map(|s| s.state));
                let policy = self.with_log(|log| log.prepared(&step.id).map(|p| p.on_failure));
                if state == Some(StepState::Failed) && policy != Some(FailurePolicy::Continue) {
                    failed.push(step.id.to_string());
                }
            }
            if !failed.is_empty() {
                return Ok(Flow::Failed(format!("step(s) {} failed in stage {:?}", failed.join(", "), stage.name)));
            }
            let goal = stage.steps.iter().find(|s| {
                s.stop_if_passes
                    && self.with_log(|log| log.step(&s.id, Phase::Forward).is_some_and(|l| l.state == StepState::Done))
            });
            if let Some(goal) = goal {
                let why = format!("health restored: {} passed", goal.id);
                tracing::info!(run = %self.run, %why, "stopping early");
                let later = self.plan.stages.iter().skip_while(|s| !std::ptr::eq(*s, stage)).skip(1);
                for step in later.flat_map(|s| s.steps.iter()) {
                    if self.needs_run(step) {
                        self.skip(&step.id, &why).await?;
                    }
                }
                return Ok(Flow::Completed);
            }
            if self.cancel.is_cancelled() {
                return Ok(Flow::Cancelled);
            }
        }
        Ok(Flow::Completed)
    }

    /// Runs the finally steps that still have to run; returns the ids of those that failed.
    async fn run_finally(&self) -> Result<Vec<String>> {
        let mut failed = Vec::new();
        for step in &self.plan.finally {
            if self.needs_run(step) && self.run_step(step).await? == StepState::Failed {
                failed.push(step.id.to_string());
            }
        }
        Ok(failed)
    }

    /// The policy that applies to the failed stage steps: compensate only if every one says so.
    fn failed_policy(&self) -> FailurePolicy {
        self.with_log(|log| {
            let finally: Vec<&StepId> = self.plan.finally.iter().map(|s| &s.id).collect();
            let policies: Vec<FailurePolicy> = log
                .steps
                .iter()
                .filter(|s| s.phase == Phase::Forward && s.state == StepState::Failed && !finally.contains(&&s.step))
                .filter_map(|s| log.prepared(&s.step).map(|p| p.on_failure))
                .filter(|p| *p != FailurePolicy::Continue)
                .collect();
            if !policies.is_empty() && policies.iter().all(|p| *p == FailurePolicy::Compensate) {
                FailurePolicy::Compensate
            } else {
                FailurePolicy::Halt
            }
        })
    }

    /// Every effect went through and only verification failed: the runbooks' S2
    /// ("rollback succeeded but the issue persists").
    fn only_verification_failed(&self) -> bool {
        self.with_log(|log| {
            let failed: Vec<&StepId> =
                log.steps.iter().filter(|s| s.state == StepState::Failed).map(|s| &s.step).collect();
            !failed.is_empty()
                && failed
                    .iter()
                    .all(|id| self.plan.steps().any(|p| &&p.id == id && matches!(p.op, StepOp::Verify { .. })))
        })
    }

    fn failure_summary(&self) -> String {
        self.with_log(|log| {
            let failed: Vec<String> = log
                .steps
                .iter()
                .filter(|s| s.state == StepState::Failed)
                .map(|s| match &s.error {
                    Some(e) => format!("{} ({e})", s.step),
                    None => s.step.to_string(),
                })
                .collect();
            if failed.is_empty() {
                log.state_reason.clone().unwrap_or_else(|| "unknown".into())
            } else {
                failed.join("; ")
            }
        })
    }

    /// Runs one forward step.
    async fn run_step(&self, step: &Step) -> Result<StepState> {
        let span = tracing::info_span!("step", step = %step.id, op = step.op.name());
        self.run_step_inner(step).instrument(span).await
    }

    async fn run_step_inner(&self, step: &Step) -> Result<StepState> {
        let prior = self.with_log(|log| log.step(&step.id, Phase::Forward).cloned());
        match &step.op {
            StepOp::Rollback { .. } | StepOp::Action { .. } | StepOp::Apply { .. } => {
                let satisfied = self.with_log(|log| log.prepared(&step.id).and_then(|p| p.satisfied.clone()));
                if let (None, Some(why)) = (&prior, satisfied) {
                    return self.skip(&step.id, &format!("already done: {why}")).await;
                }
                let change = match prior.as_ref().and_then(|p| p.change.clone()) {
                    Some(change) => change,
                    None => self
                        .with_log(|log| log.prepared(&step.id).and_then(|p| p.change.clone()))
                        .ok_or_else(|| Error::internal(format!("step {} has no prepared change", step.id)))?,
                };
                self.effect(&step.id, Phase::Forward, change, prior.is_some()).await
            }
            StepOp::Revert { step: earlier } => self.revert(step, earlier, prior).await,
            StepOp::Verify { verifier, policy } => {
                let verifier = self
                    .components
                    .verifiers
                    .get(verifier)
                    .ok_or_else(|| Error::internal(format!("verifier {verifier} was not built")))?
                    .clone();
                let description = format!("verify {}", verifier.name());
                self.simple_step(&step.id, Phase::Forward, description, async {
                    let verdict = probe(verifier.as_ref(), policy, |check| {
                        self.emit_now(EventKind::Verification { step: step.id.clone(), check: check.clone() })
                    })
                    .await;
                    let detail = serde_json::to_value(&verdict).unwrap_or_default();
                    if verdict.passed {
                        (Ok(()), detail)
                    } else {
                        (Err(Error::new(ErrorKind::VerificationFailed, verdict.reason.clone())), detail)
                    }
                })
                .await
            }
            StepOp::Snapshot { snapshot } => {
                let snapshotter = self
                    .components
                    .snapshots
                    .get(snapshot)
                    .ok_or_else(|| Error::internal(format!("snapshot {snapshot} was not built")))?
                    .clone();
                let key = IdempotencyKey::for_step(&self.run, &step.id, Phase::Forward.key_suffix());
                let store = self.engine.store.clone();
                self.simple_step(&step.id, Phase::Forward, format!("capture snapshot {snapshot}"), async move {
                    match snapshotter.capture(store.as_ref(), &key).await {
                        Ok(reference) => (Ok(()), serde_json::to_value(&reference).unwrap_or_default()),
                        Err(err) => (Err(err), serde_json::Value::Null),
                    }
                })
                .await
            }
            StepOp::Approval { prompt, timeout, .. } => self.gate(&step.id, prompt, *timeout, prior).await,
        }
    }

    /// Applies a change as compare-and-swap, journaled before and after; with
    /// `observe_first` (a journaled intent exists), the backend decides whether to apply.
    async fn effect(&self, step: &StepId, phase: Phase, change: Change, observe_first: bool) -> Result<StepState> {
        let target = self.components.target(&change.target)?.clone();
        let key = IdempotencyKey::for_step(&self.run, step, phase.key_suffix());
        self.lease.check()?;
        let started = Instant::now();
        let compensation = phase == Phase::Compensation;
        self.emit(EventKind::StepStarted { step: step.clone(), description: change.description.clone(), compensation })
            .await;
        let intent = Entry::Intent { step: step.clone(), phase, change: Box::new(change.clone()), key: key.clone() };
        let seq = self.append(intent, Durability::Sync).await?;
        let crash_at: Option<CrashPoint> = self.engine.settings.crash_point();
        let mut state = StepState::Pending.on(StepEvent::RecordIntent)?;
        let mut lease_lost = None;
        let mut notes = crate::progress::Notes::new();
        let result: Result<()> = async {
            if observe_first {
                let observed = target.observe(&change, &key).await?;
                state = state.on(StepEvent::Observe)?;
                tracing::info!(run = %self.run, %step, ?observed, "observed in-flight step");
                match observed {
                    Observed::Done => return Ok(()),
                    Observed::NotStarted => {}
                    Observed::Partial(detail) if target.capabilities().converges_from_partial => {
                        tracing::info!(%step, %detail, "partial state; the target converges, applying again");
                    }
                    Observed::Partial(detail) => {
                        return Err(Error::new(
                            ErrorKind::Diverged,
                            format!("left between internal phases ({detail}); this target does not converge from there, people must finish it"),
                        ));
                    }
                    Observed::Diverged(detail) => {
                        return Err(Error::new(
                            ErrorKind::Diverged,
                            format!("changed by someone else ({detail}); not redone"),
                        ));
                    }
                }
            }
            CrashPoint::maybe_crash(crash_at, seq, CrashWhen::BeforeEffect);
            if let Err(err) = self.lease.check() {
                lease_lost = Some(err);
                return Err(Error::new(ErrorKind::Locked, "lease lost before the effect"));
            }
            state = state.on(StepEvent::BeginApply)?;
            let (applied, noted) = self.with_progress(step, target.apply(&change, &key)).await;
            notes = noted;
            applied?;
            CrashPoint::maybe_crash(crash_at, seq, CrashWhen::AfterEffect);
            let observed = target.observe(&change, &key).await?;
            state = state.on(StepEvent::Observe)?;
            if observed != Observed::Done {
                return Err(Error::new(
                    ErrorKind::Backend,
                    format!("apply returned but the backend shows {observed:?}"),
                ));
            }
            Ok(())
        }
        .await;
        if let Some(err) = lease_lost {
            return Err(err);
        }
        let (state, error) = match result {
            Ok(()) => (state.on(StepEvent::Confirm)?, None),
            Err(err) => {
                let err = err.with_context("target", &change.target).with_context("step", step);
                tracing::warn!(run = %self.run, %step, error = %err, "step failed");
                (state.on(StepEvent::Fail).unwrap_or(StepState::Failed), Some(err))
            }
        };
        let detail = if notes.is_empty() { serde_json::Value::Null } else { serde_json::Value::Object(notes) };
        self.outcome(step, phase, state, error, started, detail).await
    }

    /// Journals and announces how a step ended.
    async fn outcome(
        &self,
        step: &StepId,
        phase: Phase,
        state: StepState,
        error: Option<Error>,
        started: Instant,
        detail: serde_json::Value,
    ) -> Result<StepState> {
        let duration = started.elapsed();
        let error = error.as_ref().map(Error::to_record);
        let entry = Entry::Outcome { step: step.clone(), phase, state, error: error.clone(), duration, detail };
        self.append(entry, Durability::Buffered).await?;
        let compensation = phase == Phase::Compensation;
        self.emit(EventKind::StepFinished { step: step.clone(), state, duration, error, compensation }).await;
        Ok(state)
    }

    /// A step without a journaled change (verify, snapshot, restore): started, run, outcome.
    ///
    /// The start is journaled durably, like an intent: after a crash the journal shows
    /// which snapshot, verification or restore was in flight (resume runs it again —
    /// capture must be idempotent; a restore is skipped when its snapshotter observes it
    /// finished, see [`crate::Snapshot::restored`]), and the crash hook can kill before
    /// and after its work like at any effect.
    async fn simple_step(
        &self,
        step: &StepId,
        phase: Phase,
        description: String,
        work: impl std::future::Future<Output = (Result<()>, serde_json::Value)>,
    ) -> Result<StepState> {
        self.lease.check()?;
        let started = Instant::now();
        let compensation = phase == Phase::Compensation;
        self.emit(EventKind::StepStarted { step: step.clone(), description, compensation }).await;
        let seq = self.append(Entry::StepStarted { step: step.clone(), phase }, Durability::Sync).await?;
        let crash_at: Option<CrashPoint> = self.engine.settings.crash_point();
        let state = StepState::Pending.on(StepEvent::RecordIntent)?.on(StepEvent::BeginApply)?;
        CrashPoint::maybe_crash(crash_at, seq, CrashWhen::BeforeEffect);
        let ((result, mut detail), notes) = self.with_progress(step, work).await;
        if !notes.is_empty() {
            match &mut detail {
                serde_json::Value::Object(map) => map.extend(notes),
                serde_json::Value::Null => detail = serde_json::Value::Object(notes),
                _ => {}
            }
        }
        CrashPoint::maybe_crash(crash_at, seq, CrashWhen::AfterEffect);
        let state = state.on(StepEvent::Observe)?;
        let (state, error) = match result {
            Ok(()) => (state.on(StepEvent::Confirm)?, None),
            Err(err) => (state.on(StepEvent::Fail)?, Some(err.with_context("step", step))),
        };
        self.outcome(step, phase, state, error, started, detail).await
    }

    /// Runs a step's work, turning its backend's progress reports into events; returns
    /// the work's output and what it noted for the report.
    async fn with_progress<T>(
        &self,
        step: &StepId,
        work: impl std::future::Future<Output = T>,
    ) -> (T, crate::progress::Notes) {
        crate::progress::watch(work, |p| {
            self.emit(EventKind::Progress { step: step.clone(), done: p.done, total: p.total, unit: p.unit })
        })
        .await
    }

    async fn skip(&self, step: &StepId, why: &str) -> Result<StepState> {
        let state = StepState::Pending.on(StepEvent::Skip)?;
        self.outcome(step, Phase::Forward, state, None, Instant::now(), serde_json::json!({ "skipped": why })).await
    }

    /// Applies the inverse of an earlier step's journaled change.
    async fn revert(&self, step: &Step, earlier: &StepId, prior: Option<StepLog>) -> Result<StepState> {
        if let Some(change) = prior.as_ref().and_then(|p| p.change.clone()) {
            return self.effect(&step.id, Phase::Forward, change, true).await;
        }
        let (undone, done) = self.with_log(|log| {
            (
                log.step(earlier, Phase::Compensation).is_some_and(|s| s.state == StepState::Done),
                log.step(earlier, Phase::Forward).filter(|s| s.state == StepState::Done).and_then(|s| s.change.clone()),
            )
        });
        if undone {
            return self.skip(&step.id, "already undone by compensation").await;
        }
        let Some(done) = done else {
            return self.skip(&step.id, "nothing to revert: the step did not complete").await;
        };
        match self.components.target(&done.target)?.inverse(&done) {
            Ok(change) => self.effect(&step.id, Phase::Forward, change, false).await,
            Err(err) => {
                let state = StepState::Pending.on(StepEvent::Skip)?;
                tracing::warn!(error = %err, "revert impossible");
                let detail = serde_json::json!({ "skipped": format!("cannot invert: {err}") });
                self.outcome(&step.id, Phase::Forward, state, Some(err), Instant::now(), detail).await
            }
        }
    }

    /// Waits for an approval that arrives through the journal.
    async fn gate(
        &self,
        step: &StepId,
        prompt: &str,
        timeout: Option<std::time::Duration>,
        prior: Option<StepLog>,
    ) -> Result<StepState> {
        let started = Instant::now();
        // The timeout counts from the request, which survives a resume.
        let requested_at = prior.as_ref().filter(|p| p.state == StepState::AwaitingApproval).map(|p| p.started_at);
        let mut state = StepState::Pending.on(StepEvent::AwaitApproval)?;
        if prior.is_none_or(|p| p.state != StepState::AwaitingApproval) {
            let entry = Entry::ApprovalRequested { step: step.clone(), prompt: prompt.to_owned() };
            self.append(entry, Durability::Sync).await?;
            self.emit(EventKind::ApprovalRequested { step: step.clone(), prompt: prompt.to_owned() }).await;
        }
        let decision = loop {
            if let Some(decision) = self.with_log(|log| log.approvals.get(step).cloned()) {
                break decision;
            }
            if self.cancel.is_cancelled() {
                return Ok(state);
            }
            if self.no_wait {
                tracing::info!(run = %self.run, %step, "no decision at the gate; stopping there (no_wait)");
                self.cancel.cancel();
                return Ok(state);
            }
            if let Some(timeout) = timeout {
                let waited =
                    requested_at.map_or(started.elapsed(), |at| (chrono::Utc::now() - at).to_std().unwrap_or_default());
                if waited >= timeout {
                    state = state.on(StepEvent::Reject)?;
                    let err = Error::new(ErrorKind::Timeout, format!("no approval within {timeout:?}"));
                    return self
                        .outcome(step, Phase::Forward, state, Some(err), started, serde_json::Value::Null)
                        .await;
                }
            }
            self.lease.check()?;
            self.engine.journal.wait_for_records(&self.run, self.approval_poll()).await;
            let records = self.engine.journal.read(&self.run).await?;
            self.note_cancel_request(&records);
            if let Some(found) =
                records.iter().find(|r| matches!(&r.entry, Entry::Approval { step: s, .. } if s == step))
            {
                self.fold_foreign(found)?;
            }
        };
        let (approved, by) = decision;
        let error = (!approved).then(|| Error::new(ErrorKind::Cancelled, format!("rejected by {by}")));
        state = state.on(if approved { StepEvent::Approve } else { StepEvent::Reject })?;
        self.outcome(step, Phase::Forward, state, error, started, serde_json::json!({ "by": by })).await
    }

    /// Undoes completed steps through their declared undo, newest first. `Some(reason)` if it failed.
    async fn compensate(&self) -> Result<Option<String>> {
        let span = tracing::info_span!("compensation");
        self.compensate_inner().instrument(span).await
    }

    async fn compensate_inner(&self) -> Result<Option<String>> {
        let done: Vec<StepLog> = self.with_log(|log| {
            log.steps.iter().filter(|s| s.phase == Phase::Forward && s.state == StepState::Done).cloned().collect()
        });
        for s in done.iter().rev() {
            let (undo, comp) = self.with_log(|log| {
                (log.prepared(&s.step).map(|p| p.undo.clone()), log.step(&s.step, Phase::Compensation).cloned())
            });
            if comp.as_ref().is_some_and(|c| c.state == StepState::Done) {
                continue;
            }
            let state = match undo {
                None | Some(Undo::None) => continue,
                Some(Undo::Inverse) => {
                    let Some(change) = &s.change else { continue };
                    let inverse = match comp.as_ref().and_then(|c| c.change.clone()) {
                        Some(journaled) => journaled,
                        None => match self.components.target(&change.target)?.inverse(change) {
                            Ok(inverse) => inverse,
                            Err(err) => return Ok(Some(format!("cannot invert {}: {err}", s.step))),
                        },
                    };
                    self.effect(&s.step, Phase::Compensation, inverse, comp.is_some()).await?
                }
                Some(Undo::RestoreFrom(snapshot_step)) => self.restore(&s.step, &snapshot_step).await?,
            };
            if state != StepState::Done {
                return Ok(Some(format!("undo of step {} failed", s.step)));
            }
        }
        Ok(None)
    }

    async fn restore(&self, step: &StepId, snapshot_step: &StepId) -> Result<StepState> {
        let name = self.plan.steps().find_map(|s| match &s.op {
            StepOp::Snapshot { snapshot } if &s.id == snapshot_step => Some(snapshot.clone()),
            _ => None,
        });
        let reference = self.with_log(|log| {
            log.step(snapshot_step, Phase::Forward)
                .filter(|s| s.state == StepState::Done)
                .and_then(|s| serde_json::from_value::<SnapshotRef>(s.detail.clone()).ok())
        });
        let snapshotter = name.and_then(|n| self.components.snapshots.get(&n).cloned());
        let store = self.engine.store.clone();
        let key = IdempotencyKey::for_step(&self.run, step, Phase::Compensation.key_suffix());
        let description = format!("restore from snapshot step {snapshot_step}");
        self.simple_step(step, Phase::Compensation, description, async move {
            match (snapshotter, reference) {
                // A restore that finished before a crash is not run again.
                (Some(snapshotter), Some(reference)) => match snapshotter.restored(&reference, &key).await {
                    Ok(Some(true)) => (Ok(()), serde_json::json!({ "observed": "already restored" })),
                    Ok(_) => {
                        (snapshotter.restore_keyed(&reference, store.as_ref(), &key).await, serde_json::Value::Null)
                    }
                    Err(err) => (Err(err), serde_json::Value::Null),
                },
                _ => (Err(Error::not_found("the snapshot to restore from was not captured")), serde_json::Value::Null),
            }
        })
        .await
    }
}
