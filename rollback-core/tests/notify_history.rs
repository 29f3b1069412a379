//! Notifications, status updates, approvals with authority and timeout, escalation
//! flags, history, and "should I roll back?" from Prometheus — against real local
//! HTTP servers.

use std::sync::Arc;
use std::time::Duration;

use rollback_core::decision::{Action, DecisionPolicy, SignalQueries, should_rollback};
use rollback_core::notify::{WebhookFormat, WebhookNotifier};
use rollback_core::testkit::{MemoryTarget, RecordingNotifier, ScriptedVerifier, TestHttpServer};
use rollback_core::verify::PrometheusClient;
use rollback_core::{
    CancelHandle, Engine, ErrorKind, EventKind, HistoryQuery, MemoryJournal, MemoryLock, Notifier, Outcome, Plan,
    ProbePolicy, Registry, RunOptions, RunState, Selector, Settings, Severity, Step, StepOp,
};

fn rollback(id: &str, target: &str) -> Step {
    Step::new(id, StepOp::Rollback { target: target.into(), to: Selector::Previous })
}

fn gate(prompt: &str, timeout: Option<Duration>, approvers: &[&str]) -> Step {
    let approvers = approvers.iter().map(|a| a.to_string()).collect();
    Step::new("go", StepOp::Approval { prompt: prompt.into(), timeout, approvers })
}

struct Setup {
    journal: Arc<MemoryJournal>,
    lock: Arc<MemoryLock>,
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        Setup {
            journal: Arc::new(MemoryJournal::new()),
            lock: Arc::new(MemoryLock::new()),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn engine(&self, registry: Registry, settings: Settings, notifiers: Vec<Arc<dyn Notifier>>) -> Engine {
        let mut b = Engine::builder(registry)
            .journal(self.journal.clone())
            .lock(self.lock.clone())
            .artifacts_dir(self.dir.path())
            .settings(Settings { approval_poll: Duration::from_millis(10), ..settings });
        for n in notifiers {
            b = b.notifier(n);
        }
        b.build()
    }
}

fn registry_with(targets: &[&Arc<MemoryTarget>]) -> Registry {
    let mut r = Registry::new();
    for t in targets {
        r.register_target((*t).clone());
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_receive_runbook_messages_and_failures_never_fail_the_run() {
    let receiver = TestHttpServer::start().await;
    let broken = TestHttpServer::start().await;
    broken.respond(500, "down");
    let web = Arc::new(MemoryTarget::with_versions("web", &["v1.2.3", "v1.3.0"]));
    let json = WebhookNotifier::new("json", &receiver.url("/hook"), WebhookFormat::Json).unwrap();
    let slack = WebhookNotifier::new("slack", &receiver.url("/slack"), WebhookFormat::Slack).unwrap();
    let failing = WebhookNotifier::new("status-page", &broken.url("/hook"), WebhookFormat::Json).unwrap();
    let setup = Setup::new();
    let engine = setup.engine(
        registry_with(&[&web]),
        Settings::default(),
        vec![Arc::new(json), Arc::new(slack), Arc::new(failing)],
    );
    let plan = Plan::new("web back").stage("app", 1, vec![rollback("web", "web")]);
    let options = RunOptions { reason: Some("error rate 12 %".into()), ..Default::default() };
    let report = engine.run(plan, options).await.unwrap();
    assert_eq!(report.state, RunState::Succeeded);

    let posted = receiver.captured();
    let texts: Vec<serde_json::Value> = posted.iter().map(|r| serde_json::from_str(&r.body).unwrap()).collect();
    let json_posts: Vec<&serde_json::Value> =
        posted.iter().zip(&texts).filter(|(r, _)| r.path == "/hook").map(|(_, t)| t).collect();
    let first = json_posts.first().unwrap();
    assert!(first["text"].as_str().unwrap().starts_with("🔄 ROLLBACK IN PROGRESS"), "{first}");
    assert!(first["text"].as_str().unwrap().contains("error rate 12 %"));
    assert_eq!(first["event"]["event"], "run_started");
    let last = json_posts.last().unwrap()["text"].as_str().unwrap().to_string();
    assert!(last.starts_with("✅ ROLLBACK COMPLETE") && last.contains("web: v1.2.3 (was v1.3.0)"), "{last}");
    let slack_posts: Vec<&serde_json::Value> =
        posted.iter().zip(&texts).filter(|(r, _)| r.path == "/slack").map(|(_, t)| t).collect();
    assert!(
        slack_posts.iter().all(|p| p.as_object().unwrap().keys().collect::<Vec<_>>() == ["text"]),
        "Slack gets only text"
    );
    assert_eq!(
        posted.iter().filter(|r| r.headers.get("content-type").is_some_and(|c| c.contains("json"))).count(),
        posted.len()
    );

    // The broken status page: the run succeeded and the journal-derived report says so.
    let journaled = engine.report(&report.run).await.unwrap();
    assert!(!journaled.notification_failures.is_empty());
    assert!(journaled.notification_failures.iter().all(|f| f.starts_with("status-page: ") && f.contains("HTTP 500")));
    assert!(!journaled.notification_failures.iter().any(|f| f.contains(&broken.url("/hook"))), "the URL is not shown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_updates_go_out_at_offsets_and_are_not_resent_on_resume() {
    let web = Arc::new(MemoryTarget::with_versions("web", &["v1", "v2"]));
    let setup = Setup::new();
    let settings = Settings {
        status_updates: vec![Duration::from_millis(50), Duration::from_millis(100), Duration::from_secs(3600)],
        ..Settings::default()
    };
    let first = Arc::new(RecordingNotifier::new());
    let engine = setup.engine(registry_with(&[&web]), settings.clone(), vec![first.clone()]);
    let cancel = CancelHandle::new();
    let plan =
        Plan::new("p").stage("gate", 1, vec![gate("go?", None, &[])]).stage("app", 1, vec![rollback("web", "web")]);
    let running = tokio::spawn({
        let (engine, cancel) = (engine.clone(), cancel.clone());
        async move { engine.run(plan, RunOptions { cancel: Some(cancel), ..Default::default() }).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    cancel.cancel();
    let report = running.await.unwrap().unwrap();
    assert_eq!(report.state, RunState::Cancelled);
    let updates =
        |n: &RecordingNotifier| n.events().iter().filter(|e| matches!(e.kind, EventKind::StatusUpdate { .. })).count();
    assert_eq!(updates(&first), 2, "T+50ms and T+100ms");

    let second = Arc::new(RecordingNotifier::new());
    let resumer = setup.engine(registry_with(&[&web]), settings, vec![second.clone()]);
    engine.approve(&report.run, &"go".into(), true, "alice").await.unwrap();
    let resumed = resumer.resume(&report.run).await.unwrap();
    assert_eq!(resumed.state, RunState::Succeeded);
    assert_eq!(updates(&second), 0, "already sent; the hour-mark one is not due");
    assert!(!second.events().iter().any(|e| matches!(e.kind, EventKind::RunStarted { .. })), "not re-sent");
    assert!(second.events().iter().any(|e| matches!(e.kind, EventKind::RunResumed { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_respect_authority_are_recorded_and_time_out() {
    let web = Arc::new(MemoryTarget::with_versions("web", &["v1", "v2"]));
    let setup = Setup::new();
    let engine = setup.engine(registry_with(&[&web]), Settings::default(), vec![]);
    let mut events = engine.subscribe();
    let plan = Plan::new("planned")
        .stage("gate", 1, vec![gate("planned rollback of web", None, &["tech-lead", "product-owner"])])
        .stage("app", 1, vec![rollback("web", "web")]);
    let running = tokio::spawn({
        let engine = engine.clone();
        async move { engine.run(plan, Default::default()).await }
    });
    let run = loop {
        let e = events.recv().await.unwrap();
        if matches!(e.kind, EventKind::ApprovalRequested { .. }) {
            break e.run;
        }
    };
    let err = engine.approve(&run, &"go".into(), true, "intern").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert!(err.to_string().contains("tech-lead"), "{err}");
    engine.approve(&run, &"go".into(), true, "tech-lead").await.unwrap();
    let report = running.await.unwrap().unwrap();
    assert_eq!(report.state, RunState::Succeeded);
    assert_eq!(report.step("go", rollback_core::journal::Phase::Forward).unwrap().detail["by"], "tech-lead");

    let api = Arc::new(MemoryTarget::with_versions("api", &["a1", "a2"]));
    let engine = setup.engine(registry_with(&[&api]), Settings::default(), vec![]);
    let plan = Plan::new("timeout").stage("gate", 1, vec![gate("?", Some(Duration::from_millis(100)), &[])]).stage(
        "app",
        1,
        vec![rollback("api", "api")],
    );
    let report = engine.run(plan, Default::default()).await.unwrap();
    assert_eq!(report.state, RunState::Escalated);
    let gate = report.step("go", rollback_core::journal::Phase::Forward).unwrap();
    assert_eq!(gate.error.as_ref().unwrap().kind, ErrorKind::Timeout);
    assert!(api.effects().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_flags_and_history_with_annotations() {
    let web = Arc::new(MemoryTarget::with_versions("web", &["v1", "v2", "v3"]));
    let db = Arc::new(MemoryTarget::with_versions("db", &["s1", "s2"]));
    db.inject(rollback_core::testkit::Fault::FailOnCall { method: "apply", n: 1 });
    let mut registry = registry_with(&[&web, &db]);
    registry.register_verifier(Arc::new(ScriptedVerifier::new("still-broken", [Outcome::Fail].repeat(100))));
    let setup = Setup::new();
    let engine = setup.engine(registry, Settings::default(), vec![]);
    let policy = ProbePolicy { interval: Duration::from_millis(1), max_failures: 2, ..Default::default() };

    // S2: the rollback went through but the service is still unhealthy.
    let plan = Plan::new("web back").stage("app", 1, vec![rollback("web", "web")]).stage(
        "verify",
        1,
        vec![Step::new("health", StepOp::Verify { verifier: "still-broken".into(), policy })],
    );
    let persists =
        engine.run(plan, RunOptions { reason: Some("p99 900 ms".into()), ..Default::default() }).await.unwrap();
    assert_eq!(persists.state, RunState::Escalated);
    assert_eq!(persists.escalations[0].severity, Severity::S2, "{persists}");

    // S1: the rollback itself failed.
    let plan = Plan::new("db back").stage("db", 1, vec![rollback("db", "db")]);
    let failed = engine.run(plan, Default::default()).await.unwrap();
    assert_eq!(failed.escalations[0].severity, Severity::S1);

    let all = engine.history(&HistoryQuery::default()).await.unwrap();
    assert_eq!(all.len(), 2);
    let web_only = engine.history(&HistoryQuery { target: Some("web".into()), ..Default::default() }).await.unwrap();
    assert_eq!(web_only.len(), 1);
    let record = &web_only[0];
    assert_eq!(record.reason.as_deref(), Some("p99 900 ms"));
    assert_eq!(record.changes[0].from.as_ref().unwrap().id, "v3");
    assert_eq!(record.changes[0].to.id, "v2");
    assert_eq!(record.escalation, Some(Severity::S2));
    let later = engine
        .history(&HistoryQuery { since: Some(chrono::Utc::now() + chrono::TimeDelta::hours(1)), ..Default::default() })
        .await
        .unwrap();
    assert!(later.is_empty());

    engine
        .annotate(&persists.run, Some("cache key change"), Some("https://wiki.example/pm/42"), "alice")
        .await
        .unwrap();
    let record = &engine.history(&HistoryQuery { target: Some("web".into()), ..Default::default() }).await.unwrap()[0];
    assert_eq!(record.root_cause.as_deref(), Some("cache key change"));
    assert_eq!(record.postmortem.as_deref(), Some("https://wiki.example/pm/42"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn should_i_roll_back_asks_prometheus_once_per_signal() {
    let prometheus = TestHttpServer::start().await;
    prometheus.handler(|request| {
        let answer = |v: &str| {
            format!(r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{}},"value":[1,"{v}"]}}]}}}}"#)
        };
        let query = request.path.split_once("query=")?.1.to_string();
        Some((200, answer(if query.starts_with("errors") { "0.021" } else if query.starts_with("p99") { "140" } else { "32" })))
    });
    let client = PrometheusClient::new(&prometheus.url("/"), &Default::default()).unwrap();
    let queries: SignalQueries = toml::from_str(
        r#"
        error_rate = "errors_ratio"
        p99_ms = "p99_ms"
        baseline_p99_ms = "baseline_p99_ms"
        window = "10m"
        "#,
    )
    .unwrap();
    let signals = queries.gather(&client).await.unwrap();
    assert_eq!(signals.error_rate, Some(0.021));
    assert_eq!((signals.p99_ms, signals.baseline_p99_ms), (Some(140.0), Some(32.0)));
    let decision = should_rollback(&client, &queries, &DecisionPolicy::default()).await.unwrap();
    assert_eq!(decision.action, Action::RollbackNow, "p99 is 338 % over baseline: {decision}");
    assert_eq!(prometheus.hits(), 6, "three queries per call");
    let lenient =
        DecisionPolicy { degradation_severe: 10.0, degradation_significant: 10.0, ..DecisionPolicy::default() };
    let decision = should_rollback(&client, &queries, &lenient).await.unwrap();
    assert_eq!(decision.action, Action::Consider, "2.1 % errors sustained 10 minutes: {decision}");
}
