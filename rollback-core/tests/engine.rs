//! Engine behaviour against in-memory fakes with fault injection and the real file journal.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rollback_core::journal::{Entry, Phase};
use rollback_core::testkit::{Fault, MemorySnapshot, MemoryTarget, RecordingNotifier, ScriptedVerifier};
use rollback_core::{
    Category, Engine, ErrorKind, EventKind, FailurePolicy, FileJournal, Holder, Journal, Lease, Lock, MemoryLock,
    Notifier, Plan, ProbePolicy, Registry, Result, RunOptions, RunState, SecretRef, Selector, Settings, Severity, Spec,
    Step, StepOp, StepState, Target, Undo,
};

struct Fixture {
    _dir: tempfile::TempDir,
    journal: Arc<FileJournal>,
    lock: Arc<dyn Lock>,
    dir: std::path::PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let journal = Arc::new(FileJournal::open(dir.path().join("journal")).unwrap());
        let path = dir.path().to_path_buf();
        Fixture { _dir: dir, journal, lock: Arc::new(MemoryLock::new()), dir: path }
    }

    fn engine(&self, registry: Registry) -> Engine {
        self.engine_with(registry, Settings::default(), vec![])
    }

    fn engine_with(&self, registry: Registry, settings: Settings, notifiers: Vec<Arc<dyn Notifier>>) -> Engine {
        let mut builder = Engine::builder(registry)
            .journal(self.journal.clone())
            .lock(self.lock.clone())
            .artifacts_dir(self.dir.join("artifacts"))
            .settings(settings);
        for n in notifiers {
            builder = builder.notifier(n);
        }
        builder.build()
    }
}

fn registry(targets: &[&Arc<MemoryTarget>]) -> Registry {
    let mut registry = Registry::new();
    for t in targets {
        registry.register_target((*t).clone());
    }
    registry
}

fn rollback(id: &str, target: &str) -> Step {
    Step::new(id, StepOp::Rollback { target: target.into(), to: Selector::Previous })
}

fn fast_policy() -> ProbePolicy {
    ProbePolicy {
        interval: Duration::from_millis(5),
        passes: 2,
        deadline: Duration::from_secs(5),
        ..Default::default()
    }
}

#[tokio::test]
async fn happy_path_runs_stages_in_order_with_events_and_report() {
    let fx = Fixture::new();
    let web = Arc::new(MemoryTarget::with_versions("web", &["v1", "v2", "v3"]));
    let api = Arc::new(MemoryTarget::with_versions("api", &["a1", "a2"]));
    let mut reg = registry(&[&web, &api]);
    reg.register_verifier(Arc::new(ScriptedVerifier::passing("health")));
    let notifier = Arc::new(RecordingNotifier::new());
    let engine = fx.engine_with(reg, Settings::default(), vec![notifier.clone()]);
    let plan = Plan::new("two apps").stage("apps", 2, vec![rollback("web", "web"), rollback("api", "api")]).stage(
        "verify",
        1,
        vec![Step::new("health", StepOp::Verify { verifier: "health".into(), policy: fast_policy() })],
    );
    let report =
        engine.run(plan, RunOptions { reason: Some("p99 > 500ms".into()), ..Default::default() }).await.unwrap();

    assert_eq!(report.state, RunState::Succeeded, "{report}");
    assert_eq!(web.current().await.unwrap().id, "v2");
    assert_eq!(api.current().await.unwrap().id, "a1");
    assert_eq!(web.effects().len(), 1);
    let step = report.step("web", Phase::Forward).unwrap();
    assert_eq!(step.from.as_ref().unwrap().id, "v3");
    assert_eq!(step.to.as_ref().unwrap().id, "v2");
    assert!(step.duration.is_some());
    let verdict = &report.step("health", Phase::Forward).unwrap().detail;
    assert_eq!(verdict["checks"].as_array().unwrap().len(), 2, "every check is in the report");
    assert_eq!(report.reason.as_deref(), Some("p99 > 500ms"));

    // Journal: every intent is before its outcome, and the intent carries change and key.
    let records = fx.journal.read(&report.run).await.unwrap();
    for id in ["web", "api"] {
        let intent = records.iter().position(|r| matches!(&r.entry, Entry::Intent { step, .. } if step.as_str() == id));
        let outcome =
            records.iter().position(|r| matches!(&r.entry, Entry::Outcome { step, .. } if step.as_str() == id));
        assert!(intent.unwrap() < outcome.unwrap());
    }

    // Events: started, state changes through the machine, verification observations, finished.
    let kinds: Vec<String> = notifier
        .events()
        .iter()
        .map(|e| serde_json::to_value(e).unwrap()["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds.first().map(String::as_str), Some("run_started"));
    assert_eq!(kinds.last().map(String::as_str), Some("run_finished"));
    let states: Vec<RunState> = notifier
        .events()
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::StateChanged { to, .. } => Some(to),
            _ => None,
        })
        .collect();
    assert_eq!(states, [RunState::Locked, RunState::Preflighted, RunState::Running, RunState::Succeeded]);
    assert_eq!(kinds.iter().filter(|k| *k == "step_finished").count(), 3);
}

#[tokio::test]
async fn dry_run_changes_nothing_and_shows_every_step() {
    let fx = Fixture::new();
    let web = Arc::new(MemoryTarget::with_versions("web", &["v1", "v2", "v3"]));
    let engine = fx.engine(registry(&[&web]));
    let plan = Plan::new("p").stage("s", 1, vec![rollback("web", "web")]);
    let dry = engine.dry_run(&plan).await.unwrap();
    assert_eq!(dry.steps.len(), 1);
    assert!(dry.steps[0].description.contains("v3") && dry.steps[0].description.contains("v2"), "{dry}");
    assert!(dry.steps[0].data_loss.as_ref().unwrap().none);
    assert!(dry.to_string().contains("nothing was changed"));
    assert_eq!(web.calls("apply"), 0);
    assert_eq!(web.current().await.unwrap().id, "v3");
    assert!(engine.runs().await.unwrap().is_empty(), "dry run journals nothing");
}

#[tokio::test]
async fn bad_input_is_refused_before_anything_is_journaled() {
    let fx = Fixture::new();
    let engine = fx.engine(Registry::new());
    let plan = Plan::new("p").stage("s", 1, vec![rollback("web", "ghost")]);
    let err = engine.run(plan, Default::default()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("\"ghost\""), "{err}");
    assert!(engine.runs().await.unwrap().is_empty());
}

#[tokio::test]
async fn preflight_failure_changes_nothing() {
    let fx = Fixture::new();
    let web = Arc::new(MemoryTarget::with_versions("web", &["v1", "v2", "v3"]));
    let db = Arc::new(MemoryTarget::with_versions("db", &["only"]).category(Category::Schema));
    let engine = fx.engine(registry(&[&web, &db]));
    let plan = Plan::new("p").stage("a", 1, vec![rollback("web", "web")]).stage("b", 1, vec![rollback("db", "db")]);
    let report = engine.run(plan, Default::default()).await.unwrap();
    assert_eq!(report.state, RunState::Failed);
    assert!(report.state_reason.as_deref().unwrap().contains("preflight failed"), "{report}");
    assert!(web.effects().is_empty() && db.effects().is_empty());
    assert_eq!(web.calls("apply"), 0);
    assert!(report.resume_would.contains("nothing was changed"));
}

#[tokio::test]
async fn inverse_undo_over_an_irreversible_change_is_refused_at_preflight() {
    let fx = Fixture::new();
    let web = Arc::new(MemoryTarget::with_versions("web", &["v1", "v2"]));
    let engine = fx.engine(registry(&[&web]));
    let change = web.prepare(&rollback_core::Request::To(Selector::Previous)).await.unwrap();
    let change = change.with_reversibility(rollback_core::Reversibility::Irreversible);
    let plan = Plan::new("p").stage(
        "s",
        1,
        vec![Step::new("x", StepOp::Apply { change: Box::new(change) }).undo(Undo::Inverse)],
    );
    let report = engine.run(plan, Default::default()).await.unwrap();
    assert_eq!(report.state, RunState::Failed);
    assert!(report.state_reason.unwrap().contains("undo = inverse"));
    assert!(web.effects().is_empty());
}

#[tokio::test]
async fn compensation_undoes_in_reverse_order_and_is_journaled() {
    let fx = Fixture::new();
    let lb = Arc::new(MemoryTarget::with_versions("lb", &["off", "on"]).category(Category::Traffic));
    let flag = Arc::new(MemoryTarget::with_versions("flag", &["disabled", "enabled"]).category(Category::Flag));
    let web = Arc::new(MemoryTarget::with_versions("web", &["v1", "v2"]));
    web.inject(Fault::FailOnCall { method: "apply", n: 1 });
    let engine = fx.engine(registry(&[&lb, &flag, &web]));
    let plan = Plan::new("p")
        .stage("traffic", 1, vec![rollback("lb", "lb")])
        .stage("flag", 1, vec![rollback("flag", "flag")])
        .stage("app", 1, vec![rollback("web", "web").on_failure(FailurePolicy::Compensate)]);
    let report = engine.run(plan, Default::default()).await.unwrap();
    assert_eq!(report.state, RunState::Compensated, "{report}");
    assert_eq!(lb.current().await.unwrap().id, "on");
    assert_eq!(flag.current().await.unwrap().id, "enabled");
    let order: Vec<&str> =
        report.steps.iter().filter(|s| s.phase == Phase::Compensation).map(|s| s.step.as_str()).collect();
    assert_eq!(order, ["flag", "lb"], "newest first");
    assert_eq!(lb.effects().len(), 2);
    assert!(lb.effects()[1].ends_with("off -> on") && lb.effects()[1].contains("/lb/undo"));
    let records = fx.journal.read(&report.run).await.unwrap();
    assert!(records.iter().any(|r| matches!(&r.entry, Entry::Intent { phase: Phase::Compensation, .. })));
}

#[tokio::test]
async fn failed_compensation_escalates_and_resume_finishes_it() {
    let fx = Fixture::new();
    let lb = Arc::new(MemoryTarget::with_versions("lb", &["off", "on"]).category(Category::Traffic));
    let web = Arc::new(MemoryTarget::with_versions("web", &["v1", "v2"]));
    web.inject(Fault::FailOnCall { method: "apply", n: 1 });
    lb.inject(Fault::FailOnCall { method: "apply", n: 2 }); // the undo
    let engine = fx.engine(registry(&[&lb, &web]));
    let plan = Plan::new("p").stage("traffic", 1, vec![rollback("lb", "lb")]).stage(
        "app",
        1,
        vec![rollback("web", "web").on_failure(FailurePolicy::Compensate)],
    );
    let report = engine.run(plan, Default::default()).await.unwrap();
    assert_eq!(report.state, RunState::Escalated, "{report}");
    assert!(report.escalations.iter().any(|e| e.severity == Severity::S1));
    assert_eq!(lb.current().await.unwrap().id, "off", "left with traffic off");
    assert!(report.left.iter().any(|l| l.contains("lb")), "{:?}", report.left);
    assert!(report.resume_would.contains("retry"));

    let resumed = engine.resume(&report.run).await.unwrap();
    assert_eq!(resumed.state, RunState::Compensated, "{resumed}");
    assert_eq!(lb.current().await.unwrap().id, "on");
    assert_eq!(web.effects().len(), 0, "the failed app step is not retried during compensation");
}

/// A failed rollback is not followed by the rest of its stage (its checks, the next
/// target): those steps stay pending, in the report's not-started list.
#[tokio::test]
async fn a_failed_step_stops_its_stage_from_starting_more_steps() {
    let fx = Fixture::new();
    let web = Arc::new(MemoryTarget::with_versions("web", &["v1", "v2"]));
    let api = Arc::new(MemoryTarget::with_versions("api", &["v1", "v2"]));
    web.inject(Fault::FailOnCall { method: "apply", n: 1 });
    let engine = fx.engine(registry(&[&web, &api]));
    let plan = Plan::new("p").stage("app", 1, vec![rollback("web", "web"), rollback("api", "api")]);
    let report = engine.run(plan, Default::default()).await.unwrap();
    assert_eq!(report.state, RunState::Escalated, "{report}");
    assert_eq!(api.current().await.unwrap().id, "v2", "api was not rolled back after web failed");
    assert!(report.not_started.iter().any(|s| s.as_str() == "api"), "{report}");
}

#[tokio::test]
async fn halt_escalates_but_finally_steps_still_run() {
    let fx = Fixture::new();
    let lb = Arc::new(MemoryTarget::with_versions("lb", &["off", "on"]).category(Category::Traffic));
    let web = Arc::new(MemoryTarget::with_versions("web", &["v1", "v2"]));
    web.inject(Fault::FailOnCall { method: "apply", n: 1 });
    let engine = fx.engine(registry(&[&lb, &web]));
    let mut plan = Plan::new("p").stage("traffic", 1, vec![rollback("lb-off", "lb")]).stage(
        "app",
        1,
        vec![rollback("web", "web")],
    );
    plan.finally.push(Step::new("lb-on", StepOp::Revert { step: "lb-off".into() }));
    let report = engine.run(plan, Default::default()).await.unwrap();
    assert_eq!(report.state, RunState::Escalated, "{report}");
    assert_eq!(lb.current().await.unwrap().id, "on", "finally restored traffic");
    assert_eq!(report.step("lb-on", Phase::Forward).unwrap().state, StepState::Done);
    let web_step = report.step("web", Phase::Forward).unwrap();
    assert_eq!(web_step.error.as_ref().unwrap().kind, ErrorKind::Backend);
}

#[tokio::test]
async fn resume_never_re_resolves_previous() {
    let fx = Fixture::new();
    let web = Arc::new(MemoryTarget::with_versions("web", &["v1", "v2", "v3"]));
    let db = Arc::new(MemoryTarget::with_versions("db", &["s1", "s2"]).category(Category::Schema));
    db.inject(Fault::FailOnCall { method: "apply", n: 1 });
    let engine = fx.engine(registry(&[&web, &db]));
    let plan = Plan::new("p").stage("app", 1, vec![rollback("web", "web")]).stage("db", 1, vec![rollback("db", "db")]);
    let report = engine.run(plan, Default::default()).await.unwrap();
    assert_eq!(report.state, RunState::Escalated);
    assert_eq!(web.current().await.unwrap().id, "v2");
    let prepares = web.calls("prepare");

    let resumed = engine.resume(&report.run).await.unwrap();
    assert_eq!(resumed.state, RunState::Succeeded, "{resumed}");
    assert_eq!(web.current().await.unwrap().id, "v2", "'previous' was not re-resolved to v1");
    assert_eq!(web.calls("prepare"), prepares, "resume never re-prepares");
    assert_eq!(web.effects().len(), 1);
    assert_eq!(db.current().await.unwrap().id, "s1");
}

#[tokio::test]
async fn resume_refuses_a_target_whose_identity_changed() {
    let fx = Fixture::new();
    let web = Arc::new(MemoryTarget::with_versions("web", &["v1", "v2", "v3"]));
    let db = Arc::new(MemoryTarget::with_versions("db", &["s1", "s2"]));
    db.inject(Fault::FailOnCall { method: "apply", n: 1 });
    let engine = fx.engine(registry(&[&web, &db]));
    let plan = Plan::new("p").stage("app", 1, vec![rollback("web", "web")]).stage("db", 1, vec![rollback("db", "db")]);
    let report = engine.run(plan, Default::default()).await.unwrap();
    db.set_identity("memory:some-other-db");
    let err = engine.resume(&report.run).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Diverged);
    assert!(err.to_string().contains("some-other-db"), "{err}");
    assert_eq!(db.effects().len(), 0);
}

#[tokio::test]
async fn observe_decides_in_flight_steps_partial_and_diverged() {
    // Partial on a target that does not converge: escalate, never re-apply.
    let fx = Fixture::new();
    let web = Arc::new(MemoryTarget::with_versions("web", &["v1", "v2"]).not_converging());
    web.inject(Fault::StopBetweenPhases);
    let engine = fx.engine(registry(&[&web]));
    let report =
        engine.run(Plan::new("p").stage("s", 1, vec![rollback("web", "web")]), Default::default()).await.unwrap();
    assert_eq!(report.state, RunState::Escalated);
    web.clear_faults();
    let resumed = engine.resume(&report.run).await.unwrap();
    assert_eq!(resumed.state, RunState::Escalated);
    let error = &resumed.step("web", Phase::Forward).unwrap().error;
    assert_eq!(error.as_ref().unwrap().kind, ErrorKind::Diverged, "{resumed}");
    assert!(web.effects().is_empty());

    // Partial on a converging target: resume finishes it, once.
    let web = Arc::new(MemoryTarget::with_versions("web", &["v1", "v2"]));
    web.inject(Fault::StopBetweenPhases);
    let engine = fx.engine(registry(&[&web]));
    let report =
        engine.run(Plan::new("p").stage("s", 1, vec![rollback("web", "web")]), Default::default()).await.unwrap();
    web.clear_faults();
    assert_eq!(engine.resume(&report.run).await.unwrap().state, RunState::Succeeded);
    assert_eq!(web.effects().len(), 1);

    // Someone else changed it meanwhile: a conflict, never redone.
    let web = Arc::new(MemoryTarget::with_versions("web", &["v1", "v2", "v3"]));
    web.inject(Fault::FailOnCall { method: "apply", n: 1 });
    let engine = fx.engine(registry(&[&web]));
    let report =
        engine.run(Plan::new("p").stage("s", 1, vec![rollback("web", "web")]), Default::default()).await.unwrap();
    web.set_current("v1");
    let resumed = engine.resume(&report.run).await.unwrap();
    assert_eq!(resumed.state, RunState::Escalated);
    assert_eq!(resumed.step("web", Phase::Forward).unwrap().error.as_ref().unwrap().kind, ErrorKind::Diverged);
    assert_eq!(web.current().await.unwrap().id, "v1");
    assert!(web.effects().is_empty());
}

/// A 30 s budget and a verification that takes three minutes, then the web step.
fn over_budget_plan() -> Plan {
    let slow = ProbePolicy {
        interval: Duration::from_secs(60),
        passes: 3,
        deadline: Duration::from_secs(600),
        ..Default::default()
    };
    let mut plan = Plan::new("p")
        .stage("verify", 1, vec![Step::new("health", StepOp::Verify { verifier: "slow".into(), policy: slow })])
        .stage("app", 1, vec![rollback("web", "web")]);
    plan.budget = Duration::from_secs(30);
    plan
}

#[tokio::test(start_paused = true)]
async fn budget_escalates_and_notifies_without_aborting() {
    let fx = Fixture::new();
    let web = Arc::new(MemoryTarget::with_versions("web", &["v1", "v2"]));
    let mut reg = registry(&[&web]);
    reg.register_verifier(Arc::new(ScriptedVerifier::passing("slow")));
    let notifier = Arc::new(RecordingNotifier::new());
    let engine = fx.engine_with(reg, Settings::default(), vec![notifier.clone()]);
    let plan = over_budget_plan();
    let report = engine.run(plan, Default::default()).await.unwrap();
    assert_eq!(report.state, RunState::Succeeded, "not aborted: {report}");
    assert!(report.budget_exceeded);
    assert!(report.escalations.iter().any(|e| e.severity == Severity::S3));
    assert!(notifier.events().iter().any(|e| matches!(e.kind, EventKind::BudgetExceeded { .. })));
    assert_eq!(web.current().await.unwrap().id, "v1");
}

#[tokio::test(start_paused = true)]
async fn budget_abort_stops_at_the_next_step_boundary_when_configured() {
    let fx = Fixture::new();
    let web = Arc::new(MemoryTarget::with_versions("web", &["v1", "v2"]));
    let mut reg = registry(&[&web]);
    reg.register_verifier(Arc::new(ScriptedVerifier::passing("slow")));
    let engine = fx.engine(reg);
    let mut plan = over_budget_plan();
    plan.abort_on_budget = true;
    let report = engine.run(plan, Default::default()).await.unwrap();
    assert_eq!(report.step("health", Phase::Forward).unwrap().state, StepState::Done, "the running step finished");
    assert_eq!(report.state, RunState::Escalated, "{report}");
    assert!(report.not_started.iter().any(|s| s.as_str() == "web"));
    assert!(web.effects().is_empty());
}

/// A cancel asked for by another process (its own `FileJournal` on the same
/// directory) while a verification runs: that step finishes, the run stops at the
/// boundary after it, journaled `cancelled` with who asked, and resume finishes it
/// without the old request stopping it again.
#[tokio::test]
async fn a_cancel_requested_through_the_journal_stops_the_run_at_the_next_boundary() {
    let fx = Fixture::new();
    let web = Arc::new(MemoryTarget::with_versions("web", &["v1", "v2"]));
    let mut reg = registry(&[&web]);
    reg.register_verifier(Arc::new(ScriptedVerifier::passing("health")));
    let settings = Settings { approval_poll: Duration::from_millis(20), ..Default::default() };
    let engine = fx.engine_with(reg, settings, vec![]);
    let policy = ProbePolicy { interval: Duration::from_millis(150), passes: 4, ..Default::default() };
    let plan = Plan::new("p")
        .stage("verify", 1, vec![Step::new("health", StepOp::Verify { verifier: "health".into(), policy })])
        .stage("app", 1, vec![rollback("web", "web")]);
    let mut events = engine.subscribe();
    let running = tokio::spawn({
        let engine = engine.clone();
        async move { engine.run(plan, Default::default()).await }
    });
    let run = loop {
        let event = events.recv().await.unwrap();
        if let EventKind::StepStarted { .. } = event.kind {
            break event.run;
        }
    };
    let elsewhere = Engine::builder(Registry::new())
        .journal(Arc::new(FileJournal::open(fx.dir.join("journal")).unwrap()))
        .lock(fx.lock.clone())
        .artifacts_dir(fx.dir.join("artifacts"))
        .build();
    elsewhere.request_cancel(&run, "oncall").await.unwrap();
    let report = running.await.unwrap().unwrap();
    assert_eq!(report.state, RunState::Cancelled, "{report}");
    assert_eq!(report.step("health", Phase::Forward).unwrap().state, StepState::Done, "the running step finished");
    assert!(report.step("web", Phase::Forward).is_none(), "nothing after the boundary ran: {report}");
    assert!(report.to_string().contains("as oncall asked"), "{report}");
    assert!(web.effects().is_empty());
    let stopped = elsewhere.request_cancel(&run, "oncall").await.unwrap_err();
    assert!(stopped.to_string().contains("not running"), "a stopped run: {stopped}");

    let resumed = engine.resume(&run).await.unwrap();
    assert_eq!(resumed.state, RunState::Succeeded, "{resumed}");
    assert_eq!(resumed.cancel_requested_by, None, "the request was before the resume");
    assert_eq!(web.current().await.unwrap().id, "v1");
    let late = elsewhere.request_cancel(&run, "oncall").await.unwrap_err();
    assert_eq!(late.kind(), ErrorKind::InvalidState, "{late}");
}

/// Starts `plan` in the background and waits until its gate asks for approval.
async fn start_until_gate(
    engine: &Engine,
    plan: Plan,
) -> (tokio::task::JoinHandle<Result<rollback_core::Report>>, rollback_core::RunId) {
    let mut events = engine.subscribe();
    let running = tokio::spawn({
        let engine = engine.clone();
        async move { engine.run(plan, Default::default()).await }
    });
    loop {
        let event = events.recv().await.unwrap();
        if let EventKind::ApprovalRequested { .. } = event.kind {
            return (running, event.run);
        }
    }
}

/// Cancels the run when a given step finishes.
struct CancelAfter(String, rollback_core::CancelHandle);

#[async_trait]
impl Notifier for CancelAfter {
    fn name(&self) -> &str {
        "cancel-after"
    }
    async fn notify(&self, event: &rollback_core::Event) -> Result<()> {
        if matches!(&event.kind, EventKind::StepFinished { step, .. } if step.as_str() == self.0) {
            self.1.cancel();
        }
        Ok(())
    }
}

#[tokio::test]
async fn cancel_takes_effect_at_a_step_boundary_and_resume_continues() {
    let fx = Fixture::new();
    let web = Arc::new(MemoryTarget::with_versions("web", &["v1", "v2"]));
    let api = Arc::new(MemoryTarget::with_versions("api", &["a1", "a2"]));
    let cancel = rollback_core::CancelHandle::new();
    let engine = fx.engine_with(
        registry(&[&web, &api]),
        Settings::default(),
        vec![Arc::new(CancelAfter("web".into(), cancel.clone()))],
    );
    let plan = Plan::new("p").stage("a", 1, vec![rollback("web", "web")]).stage("b", 1, vec![rollback("api", "api")]);
    let report = engine.run(plan, RunOptions { cancel: Some(cancel), ..Default::default() }).await.unwrap();
    assert_eq!(report.state, RunState::Cancelled);
    assert_eq!(web.effects().len(), 1, "the running step finished");
    assert!(api.effects().is_empty());
    let resumed = engine.resume(&report.run).await.unwrap();
    assert_eq!(resumed.state, RunState::Succeeded);
    assert_eq!((web.effects().len(), api.effects().len()), (1, 1));
}

#[tokio::test]
async fn approval_travels_through_the_journal_from_another_engine() {
    let fx = Fixture::new();
    let web = Arc::new(MemoryTarget::with_versions("web", &["v1", "v2"]));
    let settings = Settings { approval_poll: Duration::from_millis(10), ..Settings::default() };
    let engine = fx.engine_with(registry(&[&web]), settings, vec![]);
    let plan = Plan::new("p")
        .stage(
            "gate",
            1,
            vec![Step::new(
                "go",
                StepOp::Approval { prompt: "roll web back?".into(), timeout: None, approvers: vec![] },
            )],
        )
        .stage("app", 1, vec![rollback("web", "web")]);
    let (running, run) = start_until_gate(&engine, plan).await;
    assert!(web.effects().is_empty(), "nothing happens before approval");
    // Another process: its own journal handle on the same directory.
    let other = Engine::builder(Registry::new())
        .journal(Arc::new(FileJournal::open(fx.dir.join("journal")).unwrap()))
        .lock(Arc::new(MemoryLock::new()))
        .artifacts_dir(fx.dir.join("artifacts"))
        .build();
    let err = other.approve(&run, &"app".into(), true, "alice").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "only gates can be approved");
    other.approve(&run, &"go".into(), true, "alice").await.unwrap();
    let report = running.await.unwrap().unwrap();
    assert_eq!(report.state, RunState::Succeeded, "{report}");
    assert_eq!(report.step("go", Phase::Forward).unwrap().detail["by"], "alice");
    assert_eq!(web.current().await.unwrap().id, "v1");
    // The journal stays gapless although two writers appended.
    let records = fx.journal.read(&run).await.unwrap();
    assert!(records.iter().enumerate().all(|(i, r)| r.seq == i as u64 + 1));
}

#[tokio::test]
async fn rejection_halts_the_run() {
    let fx = Fixture::new();
    let web = Arc::new(MemoryTarget::with_versions("web", &["v1", "v2"]));
    let settings = Settings { approval_poll: Duration::from_millis(10), ..Settings::default() };
    let engine = fx.engine_with(registry(&[&web]), settings, vec![]);
    let plan = Plan::new("p")
        .stage(
            "gate",
            1,
            vec![Step::new("go", StepOp::Approval { prompt: "?".into(), timeout: None, approvers: vec![] })],
        )
        .stage("app", 1, vec![rollback("web", "web")]);
    let (running, run) = start_until_gate(&engine, plan).await;
    engine.approve(&run, &"go".into(), false, "bob").await.unwrap();
    let report = running.await.unwrap().unwrap();
    assert_eq!(report.state, RunState::Escalated);
    assert!(report.step("go", Phase::Forward).unwrap().error.as_ref().unwrap().message.contains("bob"));
    assert!(web.effects().is_empty());
}

/// A lock whose renewals fail once `stolen` is set, as if another holder took over.
struct StealableLock {
    inner: MemoryLock,
    stolen: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl Lock for StealableLock {
    async fn acquire(&self, resources: &[String], holder: &Holder, ttl: Duration) -> Result<Lease> {
        self.inner.acquire(resources, holder, ttl).await
    }
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease> {
        if self.stolen.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(rollback_core::Error::new(ErrorKind::Locked, "taken by another holder"));
        }
        self.inner.renew(lease, ttl).await
    }
    async fn release(&self, lease: &Lease) -> Result<()> {
        self.inner.release(lease).await
    }
}

#[tokio::test]
async fn a_holder_that_lost_its_lease_stops_issuing_effects() {
    let fx = Fixture::new();
    let web = Arc::new(MemoryTarget::with_versions("web", &["v1", "v2"]));
    let lock = Arc::new(StealableLock { inner: MemoryLock::new(), stolen: false.into() });
    let settings = Settings {
        lease_ttl: Duration::from_millis(90),
        approval_poll: Duration::from_millis(10),
        ..Settings::default()
    };
    let engine = Engine::builder(registry(&[&web]))
        .journal(fx.journal.clone())
        .lock(lock.clone())
        .artifacts_dir(fx.dir.join("artifacts"))
        .settings(settings)
        .build();
    let plan = Plan::new("p")
        .stage(
            "gate",
            1,
            vec![Step::new("go", StepOp::Approval { prompt: "?".into(), timeout: None, approvers: vec![] })],
        )
        .stage("app", 1, vec![rollback("web", "web")]);
    let (running, run) = start_until_gate(&engine, plan).await;
    lock.stolen.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    engine.approve(&run, &"go".into(), true, "alice").await.unwrap();
    let err = running.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked, "{err}");
    assert!(web.effects().is_empty(), "no effect after the lease was lost");
    assert_eq!(web.calls("apply"), 0);
}

#[tokio::test]
async fn a_second_run_on_the_same_target_is_refused_naming_the_holder() {
    let fx = Fixture::new();
    let web = Arc::new(MemoryTarget::with_versions("web", &["v1", "v2", "v3"]));
    let settings = Settings { approval_poll: Duration::from_millis(10), ..Settings::default() };
    let engine = fx.engine_with(registry(&[&web]), settings, vec![]);
    let gated = Plan::new("first")
        .stage(
            "gate",
            1,
            vec![Step::new("go", StepOp::Approval { prompt: "?".into(), timeout: None, approvers: vec![] })],
        )
        .stage("app", 1, vec![rollback("web", "web")]);
    let (first, run) = start_until_gate(&engine, gated).await;
    let second = Plan::new("second").stage("app", 1, vec![rollback("web", "web")]);
    let err = engine.run(second, Default::default()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked);
    assert!(err.to_string().contains(run.as_str()), "names the holder: {err}");
    engine.approve(&run, &"go".into(), true, "alice").await.unwrap();
    assert_eq!(first.await.unwrap().unwrap().state, RunState::Succeeded);
    assert_eq!(web.effects().len(), 1);
}

#[tokio::test]
async fn a_failing_notifier_does_not_fail_the_run() {
    let fx = Fixture::new();
    let web = Arc::new(MemoryTarget::with_versions("web", &["v1", "v2"]));
    let notifier = Arc::new(RecordingNotifier::failing());
    let engine = fx.engine_with(registry(&[&web]), Settings::default(), vec![notifier.clone()]);
    let report =
        engine.run(Plan::new("p").stage("s", 1, vec![rollback("web", "web")]), Default::default()).await.unwrap();
    assert_eq!(report.state, RunState::Succeeded);
    assert!(notifier.events().len() > 3);
}

#[tokio::test]
async fn restore_from_snapshot_is_the_undo_of_a_schema_step() {
    let fx = Fixture::new();
    let db = Arc::new(MemoryTarget::with_versions("db", &["s1", "s2"]).category(Category::Schema));
    let web = Arc::new(MemoryTarget::with_versions("web", &["v1", "v2"]));
    web.inject(Fault::FailOnCall { method: "apply", n: 1 });
    let snapshot = Arc::new(MemorySnapshot::new("dump"));
    let mut reg = registry(&[&db, &web]);
    reg.register_snapshot(snapshot.clone());
    let engine = fx.engine(reg);
    let plan = Plan::new("p")
        .stage("evidence", 1, vec![Step::new("dump", StepOp::Snapshot { snapshot: "dump".into() })])
        .stage("schema", 1, vec![rollback("db", "db").undo(Undo::RestoreFrom("dump".into()))])
        .stage("app", 1, vec![rollback("web", "web").on_failure(FailurePolicy::Compensate)]);
    let report = engine.run(plan, Default::default()).await.unwrap();
    assert_eq!(report.state, RunState::Compensated, "{report}");
    assert_eq!(snapshot.restores().len(), 1);
    let artifacts = engine.store().list("").await.unwrap();
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
}

#[tokio::test]
async fn undo_of_a_finished_run_is_a_new_run_from_journaled_pre_states() {
    let fx = Fixture::new();
    let web = Arc::new(MemoryTarget::with_versions("web", &["v1", "v2", "v3"]));
    let engine = fx.engine(registry(&[&web]));
    let report =
        engine.run(Plan::new("p").stage("s", 1, vec![rollback("web", "web")]), Default::default()).await.unwrap();
    let undo = engine.plan_undo(&report.run).await.unwrap();
    assert_eq!(undo.undoes.as_ref(), Some(&report.run));
    assert!(matches!(&undo.stages[0].steps[0].op, StepOp::Rollback { to: Selector::Exact(v), .. } if v == "v3"));
    let undone = engine.run(undo, Default::default()).await.unwrap();
    assert_eq!(undone.state, RunState::Succeeded);
    assert_eq!(undone.undoes.as_ref(), Some(&report.run));
    assert_eq!(web.current().await.unwrap().id, "v3");
}

#[tokio::test]
async fn secrets_never_reach_the_journal_or_reports() {
    const MARKER: &str = "SECRET-MARKER-7f3a91";
    let fx = Fixture::new();
    let secret_file = fx.dir.join("token");
    std::fs::write(&secret_file, format!("{MARKER}\n")).unwrap();
    let mut reg = Registry::new();
    reg.register_target_kind("memory", |spec: Spec| async move {
        let secret = spec.secret("token")?;
        assert_eq!(secret.expose(), MARKER);
        assert!(!format!("{secret:?} {spec:?}").contains(MARKER));
        Ok(Arc::new(MemoryTarget::with_versions(&spec.name, &["v1", "v2"])) as Arc<dyn Target>)
    });
    let engine = fx.engine(reg);
    let mut spec = Spec::new("memory", "web", serde_json::json!({"url": "https://example.invalid"}));
    spec.secrets.insert("token".into(), SecretRef::File { path: secret_file.clone() });
    let mut plan = Plan::new("p").stage("s", 1, vec![rollback("web", "web")]);
    plan.targets.push(spec);
    let report = engine.run(plan, Default::default()).await.unwrap();
    assert_eq!(report.state, RunState::Succeeded);
    let mut haystack = serde_json::to_string(&report).unwrap() + &report.to_string() + &format!("{report:?}");
    for entry in std::fs::read_dir(fx.dir.join("journal/runs")).unwrap() {
        haystack += &std::fs::read_to_string(entry.unwrap().path()).unwrap();
    }
    assert!(haystack.contains(secret_file.to_str().unwrap()), "the reference is journaled");
    assert!(!haystack.contains(MARKER), "the value never is");
}

#[tokio::test]
async fn the_ladder_stops_at_the_first_level_that_restores_health_and_resume_respects_it() {
    use rollback_core::strategy::{Ladder, RollbackRequest};
    use rollback_core::{Outcome, Strategy};
    let fx = Fixture::new();
    let flag = Arc::new(MemoryTarget::with_versions("checkout-flag", &["off", "on"]).category(Category::Flag));
    let web = Arc::new(MemoryTarget::with_versions("web", &["v1", "v2"]));
    let db = Arc::new(MemoryTarget::with_versions("db", &["s1", "s2"]).category(Category::Schema));
    let mut reg = registry(&[&flag, &web, &db]);
    // Unhealthy after the flag level, healthy after the app level.
    let mut script = vec![Outcome::Fail; 3];
    script.extend([Outcome::Pass; 3]);
    reg.register_verifier(Arc::new(ScriptedVerifier::new("health", script)));
    let engine = fx.engine(reg);
    let options = serde_json::json!({
        "flags": [], "app": ["web"], "schema": ["db"], "verify": ["health"],
        "verify_policy": { "interval": "1ms", "passes": 3, "max_failures": 2, "deadline": "5s" },
    });
    let mut plan = Ladder.plan(&[], &RollbackRequest::new("errors", Selector::Previous, options)).unwrap();
    // Level 1 (the flag) by hand, as a flag step the memory target understands.
    plan.stages.insert(
        0,
        rollback_core::Stage {
            name: "level 0: flag".into(),
            parallelism: 1,
            steps: vec![rollback("flag-back", "checkout-flag")],
        },
    );
    plan.stages.insert(
        1,
        rollback_core::Stage {
            name: "verify level 0".into(),
            parallelism: 1,
            steps: vec![
                Step::new(
                    "verify-health-level-0",
                    StepOp::Verify {
                        verifier: "health".into(),
                        policy: serde_json::from_value(
                            serde_json::json!({"interval": "1ms", "passes": 3, "max_failures": 2, "deadline": "5s"}),
                        )
                        .unwrap(),
                    },
                )
                .stop_if_passes()
                .on_failure(FailurePolicy::Continue),
            ],
        },
    );
    let report = engine.run(plan, Default::default()).await.unwrap();
    assert_eq!(report.state, RunState::Succeeded, "{report}");
    assert_eq!(flag.effects().len(), 1);
    assert_eq!(web.effects().len(), 1, "the app level ran");
    assert!(db.effects().is_empty(), "the schema level was not needed");
    let skipped = report.step("db-back", Phase::Forward).unwrap();
    assert_eq!(skipped.state, StepState::Skipped);
    assert!(skipped.description.contains("health restored"), "{}", skipped.description);
    assert_eq!(report.step("verify-health-level-0", Phase::Forward).unwrap().state, StepState::Failed);
    // Resume of a finished run does nothing, and the skipped level stays skipped.
    let resumed = engine.resume(&report.run).await.unwrap();
    assert_eq!(resumed.state, RunState::Succeeded);
    assert!(db.effects().is_empty());
}
