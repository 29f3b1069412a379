//! The Prometheus verifier, `SignalQueries::gather`, `should_rollback` and the
//! `prometheus` snapshot against a real Prometheus (a private one per test, scraping
//! the lab service every second), with the runbooks' PromQL at test scale
//! (`rate(...[1m])` for their 5-minute windows). Needs `ROLLBACK_TEST_PROMETHEUS` or
//! Debian's `/usr/bin/prometheus`; without it a test fails under `CI=true`, and
//! otherwise skips, saying so.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rollback_core::decision::{Action, DecisionPolicy, SignalQueries, should_rollback};
use rollback_core::testkit::TestPrometheus;
use rollback_core::verify::lab::{LabService, Schedule};
use rollback_core::verify::{PrometheusClient, PrometheusVerifier, Threshold};
use rollback_core::{
    ArtifactStore, IdempotencyKey, LocalDirStore, Outcome, ProbePolicy, Registry, SecretRef, Snapshot, Spec,
};
use rollback_core::{Verifier, probe};

/// How long a `rate` over the scrapes may take to have a value.
const DATA: Duration = Duration::from_secs(20);

async fn lab(schedule: &str) -> LabService {
    LabService::start("127.0.0.1:0".parse().unwrap(), Schedule::parse(schedule).unwrap()).await.unwrap()
}

/// A private Prometheus scraping `targets`; `None` when skipped (never under CI).
async fn prometheus(targets: &[SocketAddr]) -> Option<TestPrometheus> {
    let binary = TestPrometheus::binary()?;
    Some(TestPrometheus::start(&binary, targets).await.unwrap_or_else(|e| panic!("{e}")))
}

/// Requests to `/health` from `concurrency` loops until dropped, so rates have data.
struct Traffic(Arc<AtomicBool>, Vec<tokio::task::JoinHandle<()>>);

impl Traffic {
    fn drive(lab: &LabService, concurrency: usize) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let client = reqwest::Client::new();
        let tasks = (0..concurrency)
            .map(|_| {
                let (stop, client, url) = (stop.clone(), client.clone(), lab.url("/health"));
                tokio::spawn(async move {
                    // Bounded: at most a minute of requests, 10 ms apart.
                    for _ in 0..6000 {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        if let Ok(response) = client.get(&url).send().await {
                            // Read to the end, so the connection is reused.
                            let _ = response.bytes().await;
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                })
            })
            .collect();
        Traffic(stop, tasks)
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        self.1.iter().for_each(tokio::task::JoinHandle::abort);
    }
}

/// Runbook 002's error rate at test scale, for one lab instance.
fn error_rate(lab: &LabService) -> String {
    let i = lab.addr();
    format!(
        r#"sum(rate(rollback_lab_requests_total{{code=~"5..",instance="{i}"}}[1m])) / sum(rate(rollback_lab_requests_total{{instance="{i}"}}[1m]))"#
    )
}

/// Runbook 002's p99 in milliseconds at test scale, for one lab instance.
fn p99_ms(lab: &LabService) -> String {
    let i = lab.addr();
    format!(
        r#"histogram_quantile(0.99, sum by (le) (rate(rollback_lab_request_duration_seconds_bucket{{instance="{i}"}}[1m]))) * 1000"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_rate_above_the_high_threshold_rolls_back_and_a_healthy_service_does_not() {
    let (sick, well) = (lab("0s=erroring:0.3").await, lab("0s=healthy").await);
    let Some(prom) = prometheus(&[sick.addr(), well.addr()]).await else { return };
    let _traffic = (Traffic::drive(&sick, 2), Traffic::drive(&well, 2));
    let (sick_rate, well_rate) = (error_rate(&sick), error_rate(&well));
    let seen = prom.wait_for_value(&sick_rate, DATA).await.unwrap();
    assert!((0.2..=0.4).contains(&seen), "the lab errs on 30 % of requests: {seen}");
    prom.wait_for_value(&well_rate, DATA).await.unwrap();

    // The verifier: error rate below 5 % passes, 30 % fails with the value measured.
    let below = Threshold { below: Some(0.05), above: None };
    let verifier = PrometheusVerifier::new("errors", prom.client(), &sick_rate, below).unwrap();
    let check = verifier.check().await.unwrap();
    assert_eq!(check.outcome, Outcome::Fail, "{}", check.detail);
    assert!((0.2..=0.4).contains(&check.measurements["value"]), "{check:?}");
    let healthy = PrometheusVerifier::new("errors", prom.client(), &well_rate, below).unwrap();
    let check = healthy.check().await.unwrap();
    assert_eq!(check.outcome, Outcome::Pass, "{}", check.detail);
    assert_eq!(check.measurements["value"], 0.0);

    // The decision: above the policy's high threshold (5 %) is an immediate rollback.
    let policy = DecisionPolicy::default();
    let queries = |rate: String| SignalQueries {
        error_rate: Some(rate),
        window: Some(Duration::from_secs(60)),
        ..SignalQueries::default()
    };
    let decision = should_rollback(&prom.client(), &queries(sick_rate), &policy).await.unwrap();
    assert_eq!(decision.action, Action::RollbackNow, "{decision}");
    assert!(decision.reasons[0].starts_with("error rate ") && decision.reasons[0].contains("(> 5.0 %)"), "{decision}");
    let signals = queries(well_rate.clone()).gather(&prom.client()).await.unwrap();
    assert_eq!(signals.error_rate, Some(0.0));
    assert!(signals.no_data.is_empty(), "{signals:?}");
    let decision = should_rollback(&prom.client(), &queries(well_rate), &policy).await.unwrap();
    assert_eq!(decision.action, Action::Monitor, "{decision}");
    assert!(!decision.action.is_rollback());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p99_from_the_histogram_follows_a_slow_service() {
    let (slow, fast) = (lab("0s=slow:200ms").await, lab("0s=healthy").await);
    let Some(prom) = prometheus(&[slow.addr(), fast.addr()]).await else { return };
    let _traffic = (Traffic::drive(&slow, 4), Traffic::drive(&fast, 2));
    // 200 ms answers land in the (0.1, 0.5] bucket: histogram_quantile interpolates
    // p99 to about 496 ms — above runbook 002's 200 ms, under its 500 ms.
    let p99 = prom.wait_for_value(&p99_ms(&slow), DATA).await.unwrap();
    assert!((200.0..=500.0).contains(&p99), "p99 {p99} ms");
    let quick = prom.wait_for_value(&p99_ms(&fast), DATA).await.unwrap();
    // Instant answers fill the first buckets (about 1 ms); a loaded CI machine may
    // push some further, but nowhere near the policy's 200 ms.
    assert!(quick < 100.0, "an instant answer's p99: {quick} ms");

    let verifier =
        PrometheusVerifier::new("p99", prom.client(), &p99_ms(&slow), Threshold { below: Some(100.0), above: None })
            .unwrap();
    assert_eq!(verifier.check().await.unwrap().outcome, Outcome::Fail);

    let policy = DecisionPolicy::default();
    let queries = |q: String| SignalQueries { p99_ms: Some(q), ..SignalQueries::default() };
    let decision = should_rollback(&prom.client(), &queries(p99_ms(&slow)), &policy).await.unwrap();
    assert_eq!(decision.action, Action::Consider, "p99 200-500 ms is a planned rollback: {decision}");
    assert!(decision.reasons[0].contains("(> 200 ms)"), "{decision}");
    let decision = should_rollback(&prom.client(), &queries(p99_ms(&fast)), &policy).await.unwrap();
    assert_eq!(decision.action, Action::Monitor, "{decision}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_that_is_down_is_inconclusive_never_a_pass() {
    let service = lab("0s=healthy").await;
    let Some(mut prom) = prometheus(&[service.addr()]).await else { return };
    let up = Threshold { below: None, above: Some(0.5) };
    let verifier = PrometheusVerifier::new("up", prom.client(), "up", up).unwrap();
    assert_eq!(verifier.check().await.unwrap().outcome, Outcome::Pass, "up while the server runs");

    prom.stop();
    let err = verifier.check().await.unwrap_err();
    assert!(err.to_string().contains("query failed") && err.is_retryable(), "{err}");
    assert!(err.to_string().contains("onnect"), "the cause is said: {err}");
    let policy = ProbePolicy {
        interval: Duration::from_millis(50),
        max_inconclusive: 2,
        deadline: Duration::from_secs(10),
        ..ProbePolicy::default()
    };
    let verdict = probe(&verifier, &policy, |_| {}).await;
    assert!(!verdict.passed, "{}", verdict.reason);
    assert!(verdict.checks.iter().all(|c| c.outcome == Outcome::Inconclusive), "{verdict:?}");
    assert!(verdict.reason.contains("inconclusive"), "{}", verdict.reason);
    let queries = SignalQueries { error_rate: Some(error_rate(&service)), ..SignalQueries::default() };
    let err = should_rollback(&prom.client(), &queries, &DecisionPolicy::default()).await.unwrap_err();
    assert!(err.to_string().contains("query failed"), "no decision without Prometheus: {err}");

    // A port nothing listens on: the same.
    let closed = PrometheusClient::new(
        &format!("http://127.0.0.1:{}", rollback_core::testkit::outage::free_port()),
        &Default::default(),
    )
    .unwrap();
    let verifier = PrometheusVerifier::new("up", closed, "up", up).unwrap();
    let verdict = probe(&verifier, &policy, |_| {}).await;
    assert!(!verdict.passed && verdict.checks[0].outcome == Outcome::Inconclusive, "{verdict:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_without_series_is_inconclusive_and_the_decision_says_no_data() {
    let service = lab("0s=healthy").await;
    let Some(prom) = prometheus(&[service.addr()]).await else { return };
    let missing = r#"sum(rate(rollback_lab_no_such_metric_total{code=~"5.."}[1m]))"#;
    let below = Threshold { below: Some(0.05), above: None };
    let verifier = PrometheusVerifier::new("errors", prom.client(), missing, below).unwrap();
    let check = verifier.check().await.unwrap();
    assert_eq!(check.outcome, Outcome::Inconclusive);
    assert!(check.detail.contains("no data"), "{}", check.detail);
    let policy = ProbePolicy { interval: Duration::from_millis(50), max_inconclusive: 1, ..ProbePolicy::default() };
    assert!(!probe(&verifier, &policy, |_| {}).await.passed);

    let queries = SignalQueries {
        error_rate: Some(missing.into()),
        p99_ms: Some(p99_ms(&service).replace("rollback_lab_request", "rollback_lab_nothing")),
        ..SignalQueries::default()
    };
    let signals = queries.gather(&prom.client()).await.unwrap();
    assert_eq!(signals.no_data, ["error_rate", "p99_ms"]);
    let decision = should_rollback(&prom.client(), &queries, &DecisionPolicy::default()).await.unwrap();
    assert_eq!(decision.action, Action::Investigate, "no data is not a clean bill of health: {decision}");
    assert!(decision.reasons.iter().any(|r| r.starts_with("error_rate: no data")), "{decision}");
    assert!(decision.reasons.iter().any(|r| r.starts_with("p99_ms: no data")), "{decision}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prometheus_snapshot_keeps_the_up_series_and_the_incident_window() {
    let service = lab("0s=healthy").await;
    let Some(prom) = prometheus(&[service.addr()]).await else { return };
    let mut registry = Registry::new();
    rollback_core::local::register_local_kinds(&mut registry);
    let config = serde_json::json!({
        "url": prom.url(),
        "queries": { "up": "up", "healthy": "rollback_lab_healthy" },
        "range": { "window": "1m", "step": "1s" },
    });
    let snapshot = registry.snapshot("metrics", &[Spec::new("prometheus", "metrics", config)]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = LocalDirStore::new(dir.path());
    let key = IdempotencyKey::new("run-1/metrics");
    let taken = snapshot.capture(&store, &key).await.unwrap();
    assert_eq!(taken.artifacts.len(), 1, "{taken:?}");
    assert!(taken.artifacts[0].ends_with("metrics/metrics-snapshot.json"), "{taken:?}");
    assert_eq!(taken.metadata["series"]["up"], 1, "{taken:?}");

    let doc: serde_json::Value = serde_json::from_slice(&store.get(&taken.artifacts[0]).await.unwrap()).unwrap();
    let up = &doc["queries"]["up"];
    assert_eq!(up["query"], "up");
    assert_eq!(up["instant"]["resultType"], "vector");
    let series = &up["instant"]["result"][0];
    assert_eq!(series["metric"]["instance"], service.addr().to_string(), "{doc:#}");
    assert_eq!(series["metric"]["job"], "lab");
    assert_eq!(series["value"][1], "1");
    assert_eq!(up["range"]["resultType"], "matrix");
    assert!(!up["range"]["result"][0]["values"].as_array().unwrap().is_empty(), "{doc:#}");
    assert_eq!(doc["queries"]["healthy"]["instant"]["result"][0]["value"][1], "1");
    assert_eq!(doc["range"]["window"], "1m");
    assert!(doc["took_ms"].as_f64().unwrap() >= 0.0 && doc["taken_at"].is_string(), "{doc:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_snapshot_query_names_the_query_and_never_the_password() {
    let service = lab("0s=healthy").await;
    let Some(prom) = prometheus(&[service.addr()]).await else { return };
    // A URL with a password goes under `secrets.url` (here a file); Prometheus
    // ignores credentials it does not ask for, so the URL still works.
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("prometheus-url");
    std::fs::write(&secret, prom.url().replace("http://", "http://ops:hunter2@")).unwrap();
    let spec = |queries: serde_json::Value| {
        let mut spec = Spec::new("prometheus", "metrics", serde_json::json!({ "queries": queries }));
        spec.secrets.insert("url".into(), SecretRef::File { path: secret.clone() });
        spec
    };
    let mut registry = Registry::new();
    rollback_core::local::register_local_kinds(&mut registry);
    let store_dir = tempfile::tempdir().unwrap();
    let store = LocalDirStore::new(store_dir.path());

    let broken = spec(serde_json::json!({ "up": "up", "broken_rate": "rate(" }));
    let snapshot: Arc<dyn Snapshot> = registry.snapshot("metrics", &[broken]).await.unwrap();
    let err = snapshot.capture(&store, &IdempotencyKey::new("run-2/metrics")).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("metrics query \"broken_rate\" failed"), "{text}");
    assert!(text.contains("parse error"), "the server's reason is kept: {text}");
    assert!(!text.contains("hunter2") && !format!("{err:?}").contains("hunter2"), "{text}");
    assert!(store.list("").await.unwrap().is_empty(), "no half evidence is written");

    // The same server through the secret URL works, and the artifact shows it redacted.
    let good = registry.snapshot("metrics", &[spec(serde_json::json!({ "up": "up" }))]).await.unwrap();
    let taken = good.capture(&store, &IdempotencyKey::new("run-3/metrics")).await.unwrap();
    let text = rollback_core::testkit::text_under(store_dir.path());
    assert!(text.contains("http://***:***@127.0.0.1") && !text.contains("hunter2"), "{text}");
    assert!(!format!("{taken:?}").contains("hunter2"));
}

/// Signals over a past window from range queries, replayed through the decision
/// policy: healthy at first (monitor), then the error rate crosses 5 % after the lab
/// started erroring — never before it did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_from_a_range_query_replay_when_the_threshold_fired() {
    let sick = lab("0s=healthy").await;
    let Some(prom) = prometheus(&[sick.addr()]).await else { return };
    let _traffic = Traffic::drive(&sick, 2);
    let rate = error_rate(&sick);
    prom.wait_for_value(&rate, DATA).await.unwrap();
    let start = chrono::Utc::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    sick.set(rollback_core::verify::lab::Mode::Erroring { fraction: 0.5 });
    let switched = sick.switches().last().unwrap().at;
    // Until the rate over the scrapes is well past 5 %.
    let deadline = std::time::Instant::now() + DATA;
    while prom.client().query(&rate).await.unwrap().unwrap_or(0.0) < 0.1 {
        assert!(std::time::Instant::now() < deadline, "the error rate never rose");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let end = chrono::Utc::now();

    let queries = SignalQueries { error_rate: Some(rate.clone()), ..SignalQueries::default() };
    let series = queries.gather_range(&prom.client(), start, end, Duration::from_secs(1)).await.unwrap();
    assert!(series.len() >= 4, "a point a second over the window: {series:?}");
    assert!(series.windows(2).all(|w| w[0].at < w[1].at), "in time order");
    assert_eq!(series[0].signals.error_rate, Some(0.0), "{:?}", series[0]);
    let changes = rollback_core::verify::replay::replay_signals(&series, &DecisionPolicy::default());
    assert_eq!(changes[0].decision.action, Action::Monitor, "{changes:?}");
    let fired = changes.iter().find(|c| c.decision.action == Action::RollbackNow).expect("the threshold fired");
    // Prometheus stamps a scrape when it starts: a point after the switch may still
    // hold one scrape from before it, never a rollback before the switch.
    assert!(fired.at >= switched - chrono::Duration::seconds(1), "fired {} before the switch {switched}", fired.at);
    assert!(fired.fired.iter().any(|r| r.starts_with("error rate ")), "{fired:?}");

    // A query with no series over the window gives no moments; a bad query is an error naming it.
    let none = SignalQueries { error_rate: Some("absent_metric_xyz".into()), ..SignalQueries::default() };
    assert!(none.gather_range(&prom.client(), start, end, Duration::from_secs(1)).await.unwrap().is_empty());
    let bad = SignalQueries { error_rate: Some("rate(".into()), ..SignalQueries::default() };
    let err = bad.gather_range(&prom.client(), start, end, Duration::from_secs(1)).await.unwrap_err().to_string();
    assert!(err.contains("rate("), "{err}");
}
