//! One run's context: its components, lease, journal view and event plumbing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::lease::LeaseGuard;
use super::preflight::{Components, prepare_step};
use super::{Inner, RunOptions};
use crate::journal::{Durability, Entry, Record, RunLog};
use crate::{
    CancelHandle, Error, ErrorKind, Event, EventKind, Identity, Plan, Report, Result, RunEvent, RunId, RunState,
    Severity, TargetId,
};

pub(crate) struct RunCtx {
    pub(crate) engine: Arc<Inner>,
    pub(crate) run: RunId,
    pub(crate) plan: Plan,
    pub(crate) components: Components,
    identities: BTreeMap<TargetId, Identity>,
    pub(crate) lease: LeaseGuard,
    log: Mutex<RunLog>,
    /// Buffered entries not yet written: they go out with the next durable append
    /// (a step's outcome with the next step's intent), so a step costs one write and
    /// one fsync. If they are lost in a crash, resume observes the backend instead.
    pending: Mutex<Vec<Entry>>,
    pub(crate) cancel: CancelHandle,
    /// Stop at a gate without a decision instead of waiting ([`RunOptions::no_wait`]).
    pub(crate) no_wait: bool,
    pub(crate) budget_exceeded: AtomicBool,
    budget_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    status_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    cancel_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Cancel requests journaled after this sequence number stop the run (older ones
    /// were made before this process took it over).
    cancel_since: u64,
}

impl RunCtx {
    /// Locks the targets and journals the start of a new run.
    pub(crate) async fn start(
        engine: Arc<Inner>,
        run: RunId,
        plan: Plan,
        components: Components,
        identities: &BTreeMap<TargetId, Identity>,
        options: RunOptions,
    ) -> Result<Arc<RunCtx>> {
        if engine.journal.read(&run).await.is_ok() {
            return Err(Error::invalid_input(format!("run {run} already exists; resume it instead")));
        }
        let holder = engine.holder(&run);
        let resources = lock_resources(&run, identities);
        let lease = engine.lock.acquire(&resources, &holder, engine.settings.lease_ttl).await?;
        let lease = LeaseGuard::start(engine.lock.clone(), lease, engine.settings.lease_ttl);
        let entry = Entry::RunStarted {
            plan: Box::new(plan.clone()),
            holder: holder.to_string(),
            reason: options.reason,
            host: Some(holder.host.clone()),
        };
        let seq = engine.journal.append(&run, Some(lease.fence()), entry.clone(), Durability::Buffered).await?;
        let first = Record { seq, run: run.clone(), token: lease.fence().token(), at: chrono::Utc::now(), entry };
        let log = RunLog::from_records(&[first])?;
        let ctx = Arc::new(RunCtx {
            engine,
            run,
            plan,
            components,
            identities: identities.clone(),
            lease,
            log: Mutex::new(log),
            pending: Mutex::new(Vec::new()),
            cancel: options.cancel.unwrap_or_default(),
            no_wait: options.no_wait,
            budget_exceeded: AtomicBool::new(false),
            budget_task: Mutex::new(None),
            status_task: Mutex::new(None),
            cancel_task: Mutex::new(None),
            cancel_since: 0,
        });
        let steps = ctx.plan.steps().count();
        let reason = ctx.with_log(|log| log.reason.clone());
        let budget = ctx.plan.budget;
        ctx.emit(EventKind::RunStarted {
            plan: ctx.plan.name.clone(),
            steps,
            undoes: ctx.plan.undoes.clone(),
            reason,
            budget,
        })
        .await;
        ctx.transition(RunEvent::LockAcquired, None).await?;
        ctx.start_budget_watch();
        ctx.start_status_updates();
        ctx.start_cancel_watch();
        Ok(ctx)
    }

    /// Takes over a journaled run: new lease, identities checked against the journal.
    pub(crate) async fn resume(
        engine: Arc<Inner>,
        log: RunLog,
        components: Components,
        options: RunOptions,
    ) -> Result<Arc<RunCtx>> {
        let run = log.run.clone();
        let identities = components.identities().await?;
        for (name, journaled) in &log.identities {
            match identities.get(name) {
                Some(now) if now == journaled => {}
                now => {
                    return Err(Error::new(
                        ErrorKind::Diverged,
                        format!(
                            "target {name} is not the one this run started on: journaled identity {journaled}, now {}",
                            now.map_or("missing".to_string(), |i| i.to_string())
                        ),
                    )
                    .with_operation("resume")
                    .with_context("run", &run));
                }
            }
        }
        let holder = engine.holder(&run);
        refuse_host_local(&engine, &log, &components, &holder.host)?;
        let resources = lock_resources(&run, if log.identities.is_empty() { &identities } else { &log.identities });
        let lease = engine.lock.acquire(&resources, &holder, engine.settings.lease_ttl).await?;
        let lease = LeaseGuard::start(engine.lock.clone(), lease, engine.settings.lease_ttl);
        let found = log.state;
        let cancel_since = log.last_seq;
        let ctx = Arc::new(RunCtx {
            engine,
            run,
            plan: log.plan.clone(),
            components,
            identities,
            lease,
            budget_exceeded: AtomicBool::new(log.budget_exceeded),
            log: Mutex::new(log),
            pending: Mutex::new(Vec::new()),
            cancel: options.cancel.unwrap_or_default(),
            no_wait: options.no_wait,
            budget_task: Mutex::new(None),
            status_task: Mutex::new(None),
            cancel_task: Mutex::new(None),
            cancel_since,
        });
        ctx.append(Entry::Resumed { holder: holder.to_string() }, Durability::Buffered).await?;
        ctx.emit(EventKind::RunResumed { state: found }).await;
        ctx.start_budget_watch();
        ctx.start_status_updates();
        ctx.start_cancel_watch();
        Ok(ctx)
    }

    /// Prepares every step (nothing is applied) and journals the result durably.
    pub(crate) async fn preflight(&self) -> Result<()> {
        use futures::{StreamExt, TryStreamExt};
        let identities = self.identities.clone();
        // In plan order; the first error in plan order is the one reported.
        let components = &self.components;
        let prepares: Vec<futures::future::BoxFuture<'_, Result<crate::journal::PreparedStep>>> =
            self.plan.steps().map(|step| Box::pin(prepare_step(step, components)) as _).collect();
        let prepared: Vec<_> =
            futures::stream::iter(prepares).buffered(super::preflight::PREFLIGHT_CONCURRENCY).try_collect().await?;
        self.append(Entry::Preflighted { identities, steps: prepared }, Durability::Sync).await?;
        Ok(())
    }

    /// Journals an entry under this run's fence and folds it into the in-process log.
    /// A `Buffered` entry waits for the next `Sync` one (and returns 0); a `Sync` entry
    /// is written with everything buffered before it and returns its sequence number.
    pub(crate) async fn append(&self, entry: Entry, durability: Durability) -> Result<u64> {
        let fence = self.lease.fence();
        let record = Record { seq: 0, run: self.run.clone(), token: fence.token(), at: chrono::Utc::now(), entry };
        self.log.lock().map_err(|_| Error::internal("run log poisoned"))?.apply(&record)?;
        let mut batch = std::mem::take(&mut *self.pending.lock().map_err(|_| Error::internal("pending poisoned"))?);
        batch.push(record.entry);
        if durability == Durability::Buffered {
            *self.pending.lock().map_err(|_| Error::internal("pending poisoned"))? = batch;
            return Ok(0);
        }
        self.write(fence, batch).await
    }

    /// Writes buffered entries durably.
    pub(crate) async fn flush(&self) -> Result<()> {
        let batch = std::mem::take(&mut *self.pending.lock().map_err(|_| Error::internal("pending poisoned"))?);
        if !batch.is_empty() {
            self.write(self.lease.fence(), batch).await?;
        }
        Ok(())
    }

    /// Appends `batch` durably; a failure names what the journal did not get (the
    /// steps and run states of the batch), so the error says where the run stands.
    async fn write(&self, fence: &crate::journal::Fence, batch: Vec<Entry>) -> Result<u64> {
        let unwritten = unjournaled(&batch);
        self.engine.journal.append_batch(&self.run, Some(fence), batch, Durability::Sync).await.map_err(|e| {
            match unwritten {
                Some(what) => e.with_context("not journaled", what),
                None => e,
            }
        })
    }

    /// Folds a record written by another process (an approval) into the in-process log.
    pub(crate) fn fold_foreign(&self, record: &Record) -> Result<()> {
        self.log.lock().map_err(|_| Error::internal("run log poisoned"))?.apply(record)
    }

    /// Reads the in-process log.
    pub(crate) fn with_log<T>(&self, f: impl FnOnce(&RunLog) -> T) -> T {
        match self.log.lock() {
            Ok(log) => f(&log),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    pub(crate) fn state(&self) -> RunState {
        self.with_log(|log| log.state)
    }

    /// Moves the run through its state machine, journaled and announced.
    pub(crate) async fn transition(&self, event: RunEvent, reason: Option<String>) -> Result<RunState> {
        let from = self.state();
        let to = from.on(event)?;
        let durability =
            if to.is_terminal() || to == RunState::Escalated { Durability::Sync } else { Durability::Buffered };
        self.append(Entry::StateChanged { from, to, reason }, durability).await?;
        tracing::info!(run = %self.run, %from, %to, "run state");
        self.emit(EventKind::StateChanged { from, to }).await;
        Ok(to)
    }

    /// Records an escalation and announces it (no state change).
    pub(crate) async fn escalation(&self, severity: Severity, reason: String) -> Result<()> {
        self.append(Entry::Escalated { severity, reason: reason.clone() }, Durability::Sync).await?;
        tracing::error!(run = %self.run, ?severity, %reason, "escalated");
        self.emit(EventKind::Escalated { severity, reason }).await;
        Ok(())
    }

    /// Sends an event to subscribers and notifiers; a failing notifier is logged only.
    pub(crate) async fn emit(&self, kind: EventKind) {
        let event = Event { run: self.run.clone(), at: chrono::Utc::now(), kind };
        let _ = self.engine.events.send(event.clone());
        for notifier in &self.engine.notifiers {
            if let Err(err) = notifier.notify(&event).await {
                tracing::warn!(notifier = notifier.name(), error = %err, "notifier failed");
                let kind = serde_json::to_value(&event).ok().and_then(|v| v["event"].as_str().map(str::to_owned));
                let entry = Entry::NotifierFailed {
                    notifier: notifier.name().to_owned(),
                    event: kind.unwrap_or_default(),
                    error: err.to_string(),
                };
                if let Err(e) = self.append(entry, Durability::Buffered).await {
                    tracing::warn!(error = %e, "could not journal a notifier failure");
                }
            }
        }
    }

    /// Sends an event to subscribers only (no await: used from probe callbacks).
    pub(crate) fn emit_now(&self, kind: EventKind) {
        let _ = self.engine.events.send(Event { run: self.run.clone(), at: chrono::Utc::now(), kind });
    }

    pub(crate) fn report(&self) -> Report {
        self.with_log(Report::from_log)
    }

    fn start_budget_watch(self: &Arc<Self>) {
        if self.budget_exceeded.load(Ordering::SeqCst) {
            return;
        }
        let started = self.with_log(|log| log.started_at);
        let elapsed = (chrono::Utc::now() - started).to_std().unwrap_or_default();
        let remaining = self.plan.budget.saturating_sub(elapsed);
        let weak = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            tokio::time::sleep(remaining).await;
            let Some(ctx) = weak.upgrade() else { return };
            ctx.budget_exceeded.store(true, Ordering::SeqCst);
            let elapsed = (chrono::Utc::now() - started).to_std().unwrap_or_default();
            let budget = ctx.plan.budget;
            let outcome = async {
                ctx.append(Entry::BudgetExceeded { elapsed, budget }, Durability::Sync).await?;
                ctx.emit(EventKind::BudgetExceeded { elapsed, budget }).await;
                let action = if ctx.plan.abort_on_budget { "stopping at the next step boundary" } else { "continuing" };
                ctx.escalation(Severity::S3, format!("rollback exceeded its {budget:?} budget; {action}")).await
            };
            if let Err(err) = outcome.await {
                tracing::error!(error = %err, "could not journal the budget escalation");
            }
        });
        if let Ok(mut slot) = self.budget_task.lock() {
            *slot = Some(task);
        }
    }

    /// Watches the journal for a cancel request from another process or host
    /// ([`Engine::request_cancel`](crate::Engine::request_cancel)) and, once one
    /// arrives, stops the run at its next step boundary as a local cancel does. On a
    /// journal that notifies (PostgreSQL) it wakes at once, re-reading at least every
    /// 5 s besides; otherwise every `approval_poll`.
    fn start_cancel_watch(self: &Arc<Self>) {
        let (journal, run) = (self.engine.journal.clone(), self.run.clone());
        // A journal that notifies wakes the watch itself: its timer is only a backstop.
        let poll = if journal.notifies() { self.approval_poll().max(WATCH_BACKSTOP) } else { self.approval_poll() };
        let weak = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            loop {
                if weak.strong_count() == 0 {
                    return;
                }
                journal.wait_for_records(&run, poll).await;
                let records = match journal.read(&run).await {
                    Ok(records) => records,
                    Err(err) => {
                        tracing::debug!(run = %run, error = %err, "cancel watch: cannot read the journal now");
                        continue;
                    }
                };
                let Some(ctx) = weak.upgrade() else { return };
                if ctx.note_cancel_request(&records) || ctx.state().is_terminal() {
                    return;
                }
            }
        });
        if let Ok(mut slot) = self.cancel_task.lock() {
            *slot = Some(task);
        }
    }

    /// Whether `records` hold a cancel request made since this process took the run;
    /// if so, the run is marked to stop at its next boundary.
    pub(crate) fn note_cancel_request(&self, records: &[Record]) -> bool {
        let request = records
            .iter()
            .rev()
            .take_while(|r| r.seq > self.cancel_since)
            .find(|r| matches!(r.entry, Entry::CancelRequested { .. }));
        let Some(record) = request else { return false };
        if !self.cancel.is_cancelled() {
            // Folded into the run's log, which then names who asked (its report, its reason).
            if let Err(err) = self.fold_foreign(record) {
                tracing::warn!(run = %self.run, error = %err, "could not fold a cancel request into the run's log");
            }
            tracing::warn!(run = %self.run, "cancel requested through the journal: stopping at the next step boundary");
            self.cancel.cancel();
        }
        true
    }

    /// Why the run is being cancelled, for its journal.
    pub(crate) fn cancel_reason(&self) -> String {
        match self.with_log(|log| log.cancel_requested_by.clone()) {
            Some(by) => format!("cancelled at a step boundary, as {by} asked"),
            None => "cancelled at a step boundary".into(),
        }
    }

    /// Sends a status update at each configured offset not sent yet (journaled, so a
    /// resumed run does not send it again).
    fn start_status_updates(self: &Arc<Self>) {
        let offsets = self.engine.settings.status_updates.clone();
        if offsets.is_empty() {
            return;
        }
        let started = self.with_log(|log| log.started_at);
        let weak = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            for offset in offsets {
                let sent =
                    weak.upgrade().is_none_or(|ctx| ctx.with_log(|log| log.status_updates_sent.contains(&offset)));
                if sent {
                    continue;
                }
                let elapsed = (chrono::Utc::now() - started).to_std().unwrap_or_default();
                tokio::time::sleep(offset.saturating_sub(elapsed)).await;
                let Some(ctx) = weak.upgrade() else { return };
                let (state, steps_done) = ctx.with_log(|log| {
                    (
                        log.state,
                        log.steps
                            .iter()
                            .filter(|s| s.phase == crate::journal::Phase::Forward && s.state.is_final())
                            .count(),
                    )
                });
                if state.is_terminal() {
                    return;
                }
                if let Err(err) = ctx.append(Entry::StatusUpdateSent { offset }, Durability::Buffered).await {
                    tracing::warn!(error = %err, "could not journal a status update");
                    return;
                }
                let elapsed = (chrono::Utc::now() - started).to_std().unwrap_or_default();
                let steps_total = ctx.plan.steps().count();
                ctx.emit(EventKind::StatusUpdate { elapsed, state, steps_done, steps_total }).await;
            }
        });
        if let Ok(mut slot) = self.status_task.lock() {
            *slot = Some(task);
        }
    }

    /// Stops background work and releases the lease.
    pub(crate) async fn finish(self: Arc<Self>) {
        for slot in [&self.budget_task, &self.status_task, &self.cancel_task] {
            if let Ok(mut slot) = slot.lock()
                && let Some(task) = slot.take()
            {
                task.abort();
            }
        }
        let state = self.state();
        let (duration, restored, escalation) = self.with_log(|log| {
            let report = Report::from_log(log);
            let restored = report
                .steps
                .iter()
                .filter(|s| s.phase == crate::journal::Phase::Forward && s.state == crate::StepState::Done)
                .filter_map(|s| Some(format!("{}: {} (was {})", s.target.as_ref()?, s.to.as_ref()?, s.from.as_ref()?)))
                .collect();
            let escalation = report.escalations.iter().map(|e| e.severity).min();
            ((chrono::Utc::now() - log.started_at).to_std().unwrap_or_default(), restored, escalation)
        });
        self.emit(EventKind::RunFinished { state, duration, restored, escalation }).await;
        if let Err(err) = self.flush().await {
            tracing::warn!(error = %err, "could not journal the last notifier failures");
        }
        match Arc::try_unwrap(self) {
            Ok(ctx) => ctx.lease.release().await,
            Err(_) => tracing::warn!("run context still shared at finish; its lease will expire"),
        }
    }

    /// How long a gate should wait between journal reads.
    pub(crate) fn approval_poll(&self) -> Duration {
        self.engine.settings.approval_poll
    }
}

/// A resume on another host than the one that started the run needs everything the
/// run touches to be reachable from here: refused, naming why, when a target or the
/// artifact store (with snapshots in the plan) is local to the starting host.
fn refuse_host_local(engine: &Inner, log: &RunLog, components: &Components, here: &str) -> Result<()> {
    let Some(started_on) = log.host.as_deref().filter(|host| *host != here) else { return Ok(()) };
    let refuse = |what: String| {
        Err(Error::new(
            ErrorKind::InvalidState,
            format!(
                "run {} started on host {started_on:?}, this is {here:?}: {what}; resume it on {started_on:?}",
                log.run
            ),
        )
        .with_operation("resume")
        .with_context("run", &log.run))
    };
    if let Some((name, _)) = components.targets.iter().find(|(_, t)| t.host_local()) {
        return refuse(format!("target {name} is local to that host (its identity is a path or daemon there)"));
    }
    let snapshots = log.plan.steps().any(|s| matches!(s.op, crate::StepOp::Snapshot { .. }));
    if snapshots && engine.store.host_local() {
        return refuse(format!(
            "its snapshots are in a directory on that host ({}); use a shared artifact store (S3)",
            engine.store.location("")
        ));
    }
    Ok(())
}

fn lock_resources(run: &RunId, identities: &BTreeMap<TargetId, Identity>) -> Vec<String> {
    let mut resources: Vec<String> = identities.values().map(|i| i.to_string()).collect();
    resources.sort();
    resources.dedup();
    if resources.is_empty() {
        // A plan with only verifications and gates still runs under a lease of its own.
        resources.push(format!("rollback:run:{run}"));
    }
    resources
}

/// How often the cancel watch re-reads a journal that notifies, at the least.
const WATCH_BACKSTOP: Duration = Duration::from_secs(5);

/// The steps and run states `batch` records, in words (`schema-down done, run
/// succeeded`); `None` when it records neither.
fn unjournaled(batch: &[Entry]) -> Option<String> {
    let said: Vec<String> = batch
        .iter()
        .filter_map(|entry| match entry {
            Entry::Intent { step, .. } => Some(format!("intent of {step}")),
            Entry::StepStarted { step, .. } => Some(format!("start of {step}")),
            Entry::Outcome { step, state, .. } => Some(format!("{step} {state}")),
            Entry::StateChanged { to, .. } => Some(format!("run {to}")),
            _ => None,
        })
        .collect();
    (!said.is_empty()).then(|| said.join(", "))
}
