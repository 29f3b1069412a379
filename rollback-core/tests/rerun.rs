//! Running a plan again: an absolute selector already satisfied is "nothing to do"
//! (success, nothing changed); a relative one is refused unless asked `again`; a gate
//! can stop the run instead of waiting (`no_wait`); long steps report progress.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rollback_core::journal::Phase;
use rollback_core::model::{Change, IdempotencyKey, Identity, Revision, TargetId, Version};
use rollback_core::testkit::{MemoryTarget, RecordingNotifier};
use rollback_core::{
    Capabilities, Category, Engine, ErrorKind, EventKind, FileJournal, MemoryLock, Notifier, Observed, Plan, Registry,
    Request, Result, RunOptions, RunState, Selector, Settings, Step, StepOp, StepState, Target,
};

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Fixture { dir: tempfile::tempdir().unwrap() }
    }

    fn engine(&self, target: Arc<dyn Target>, notifiers: Vec<Arc<dyn Notifier>>) -> Engine {
        let mut registry = Registry::new();
        registry.register_target(target);
        let settings = Settings { approval_poll: Duration::from_millis(10), ..Settings::default() };
        let mut builder = Engine::builder(registry)
            .journal(Arc::new(FileJournal::open(self.dir.path().join("journal")).unwrap()))
            .lock(Arc::new(MemoryLock::new()))
            .artifacts_dir(self.dir.path().join("artifacts"))
            .settings(settings);
        for n in notifiers {
            builder = builder.notifier(n);
        }
        builder.build()
    }
}

fn plan(to: Selector) -> Plan {
    Plan::new("web back").stage("app", 1, vec![Step::new("web", StepOp::Rollback { target: "web".into(), to })])
}

#[tokio::test]
async fn rerunning_an_absolute_rollback_is_nothing_to_do() {
    let fx = Fixture::new();
    let web = Arc::new(MemoryTarget::with_versions("web", &["v1", "v2", "v3"]));
    let engine = fx.engine(web.clone(), vec![]);
    let first = engine.run(plan(Selector::Exact("v1".into())), RunOptions::default()).await.unwrap();
    assert_eq!(first.state, RunState::Succeeded, "{first}");
    assert!(!first.nothing_to_do);

    let again = engine.run(plan(Selector::Exact("v1".into())), RunOptions::default()).await.unwrap();
    assert_eq!(again.state, RunState::Succeeded, "{again}");
    assert!(again.nothing_to_do, "{again}");
    assert_eq!(again.already_done.len(), 1);
    assert!(again.already_done[0].contains("web") && again.already_done[0].contains("v1"), "{:?}", again.already_done);
    assert_eq!(again.step("web", Phase::Forward).unwrap().state, StepState::Skipped);
    assert!(again.to_string().contains("nothing to do"), "{again}");
    assert_eq!(web.effects().len(), 1, "the second run changed nothing");
    assert_eq!(web.current().await.unwrap().id, "v1");

    let dry = engine.dry_run(&plan(Selector::Exact("v1".into()))).await.unwrap();
    assert!(dry.steps[0].satisfied.is_some() && dry.steps[0].description.starts_with("nothing to do"), "{dry}");
}

#[tokio::test]
async fn rerunning_a_relative_rollback_is_refused_unless_again() {
    let fx = Fixture::new();
    let web = Arc::new(MemoryTarget::with_versions("web", &["v1", "v2", "v3"]));
    let engine = fx.engine(web.clone(), vec![]);
    let first = engine.run(plan(Selector::Previous), RunOptions::default()).await.unwrap();
    assert_eq!(web.current().await.unwrap().id, "v2");

    let err = engine.run(plan(Selector::Previous), RunOptions::default()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains(first.run.as_str()) && err.to_string().contains("again"), "{err}");
    assert_eq!(web.current().await.unwrap().id, "v2", "a refused run changes nothing");
    assert_eq!(engine.runs().await.unwrap().len(), 1, "and journals nothing");

    let further = engine.run(plan(Selector::Previous), RunOptions { again: true, ..Default::default() }).await.unwrap();
    assert_eq!(further.state, RunState::Succeeded, "{further}");
    assert_eq!(web.current().await.unwrap().id, "v1");
}

#[tokio::test]
async fn no_wait_stops_at_the_gate_and_resume_goes_on_after_approval() {
    let fx = Fixture::new();
    let web = Arc::new(MemoryTarget::with_versions("web", &["v1", "v2"]));
    let engine = fx.engine(web.clone(), vec![]);
    let gate = Step::new("go", StepOp::Approval { prompt: "roll back?".into(), timeout: None, approvers: vec![] });
    let plan = Plan::new("gated").stage("gate", 1, vec![gate]).stage(
        "app",
        1,
        vec![Step::new("web", StepOp::Rollback { target: "web".into(), to: Selector::Previous })],
    );
    let stopped = engine.run(plan, RunOptions { no_wait: true, ..Default::default() }).await.unwrap();
    assert_eq!(stopped.state, RunState::Cancelled, "{stopped}");
    assert_eq!(stopped.step("go", Phase::Forward).unwrap().state, StepState::AwaitingApproval);
    assert!(web.effects().is_empty());

    engine.approve(&stopped.run, &"go".into(), true, "alice").await.unwrap();
    let done = engine.resume(&stopped.run).await.unwrap();
    assert_eq!(done.state, RunState::Succeeded, "{done}");
    assert_eq!(web.current().await.unwrap().id, "v1");
}

/// A target whose apply does counted work, reporting it as a backend does.
struct Counting {
    inner: MemoryTarget,
    units: u64,
}

#[async_trait]
impl Target for Counting {
    fn name(&self) -> &TargetId {
        self.inner.name()
    }
    fn kind(&self) -> &str {
        "counting"
    }
    fn category(&self) -> Category {
        Target::category(&self.inner)
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn identity(&self) -> Result<Identity> {
        self.inner.identity().await
    }
    async fn current(&self) -> Result<Version> {
        self.inner.current().await
    }
    async fn history(&self) -> Result<Vec<Revision>> {
        self.inner.history().await
    }
    async fn prepare(&self, request: &Request) -> Result<Change> {
        self.inner.prepare(request).await
    }
    async fn apply(&self, change: &Change, key: &IdempotencyKey) -> Result<()> {
        for done in 1..=self.units {
            rollback_core::progress::report(done, Some(self.units), "keys");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        self.inner.apply(change, key).await
    }
    async fn observe(&self, change: &Change, key: &IdempotencyKey) -> Result<Observed> {
        self.inner.observe(change, key).await
    }
}

#[tokio::test]
async fn progress_reports_reach_notifiers_throttled_and_finishing() {
    let fx = Fixture::new();
    let web = Arc::new(Counting { inner: MemoryTarget::with_versions("web", &["v1", "v2"]), units: 200 });
    let notifier = Arc::new(RecordingNotifier::new());
    let engine = fx.engine(web, vec![notifier.clone()]);
    let report = engine.run(plan(Selector::Previous), RunOptions::default()).await.unwrap();
    assert_eq!(report.state, RunState::Succeeded, "{report}");
    let progress: Vec<(u64, Option<u64>)> = notifier
        .events()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Progress { step, done, total, unit } if step.as_str() == "web" && unit == "keys" => {
                Some((*done, *total))
            }
            _ => None,
        })
        .collect();
    assert!(progress.len() >= 2, "several reports over ~400 ms: {progress:?}");
    assert!(progress.len() < 50, "throttled to one per 100 ms: {} reports", progress.len());
    assert_eq!(progress.last(), Some(&(200, Some(200))), "the finishing report arrives");
    assert!(progress.windows(2).all(|w| w[0].0 <= w[1].0), "in order: {progress:?}");
}
