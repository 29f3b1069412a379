//! Plans with Docker targets run by the engine against a real engine: health
//! verification with compensation, a dry-run that leaves `docker events` empty, and
//! an engine outage in the middle of a recreate, finished by `resume`.
//!
//! Needs `ROLLBACK_TEST_DOCKER` (`scripts/test.sh` starts dockerd and sets it).

mod support;

use rollback_core::verify::register_builtin_verifiers;
use rollback_core::{
    Engine, ErrorKind, FailurePolicy, Plan, ProbePolicy, Registry, RunState, Selector, Spec, Step, StepOp, Undo,
};
use support::*;

fn engine(home: &std::path::Path) -> Engine {
    let mut registry = Registry::new();
    register_builtin_verifiers(&mut registry);
    rollback_docker::register(&mut registry);
    Engine::builder(registry).home(home).try_build().unwrap()
}

fn policy(passes: u32, deadline: &str) -> ProbePolicy {
    serde_json::from_value(serde_json::json!({ "interval": "250ms", "passes": passes, "deadline": deadline })).unwrap()
}

/// Rollback of `container` to `to`, then the container's health and `/version` on `port`.
fn plan(host: &str, container: &str, to: Selector, port: u16, expect_version: &str) -> Plan {
    let mut plan = Plan::new("docker-app").stage(
        "app",
        1,
        vec![
            Step::new("rollback-api", StepOp::Rollback { target: "api".into(), to })
                .on_failure(FailurePolicy::Compensate)
                .undo(Undo::Inverse),
            Step::new("healthy", StepOp::Verify { verifier: "api-health".into(), policy: policy(2, "20s") })
                .on_failure(FailurePolicy::Compensate),
            Step::new("serves", StepOp::Verify { verifier: "api-version".into(), policy: policy(1, "10s") })
                .on_failure(FailurePolicy::Compensate),
        ],
    );
    let docker = serde_json::json!({ "host": host });
    plan.targets.push(Spec::new(
        "docker-container",
        "api",
        serde_json::json!({ "container": container, "docker": docker }),
    ));
    plan.verifiers.push(Spec::new(
        "docker-health",
        "api-health",
        serde_json::json!({ "container": container, "docker": docker }),
    ));
    plan.verifiers.push(Spec::new(
        "http",
        "api-version",
        serde_json::json!({ "url": format!("http://127.0.0.1:{port}/version"), "body_contains": expect_version }),
    ));
    plan
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollback_onto_an_unhealthy_image_is_compensated() {
    let Some(host) = docker_host() else { return };
    let dir = tempfile::tempdir().unwrap();
    let images = Images::build(&host, "rbtest-compensate", dir.path());
    let _containers = Containers::new(&host, "rbt-compensate");
    let (name, port) = ("rbt-compensate", free_port());
    run(&host, name, &images.tag("v3"), port, &["-e", "API_TOKEN=s3cr3t-token"]);
    let before = user_config(&inspect(&host, name));

    let engine = engine(&dir.path().join("home"));
    let report = engine.run(plan(&host, name, Selector::Previous, port, "v2"), Default::default()).await.unwrap();
    assert_eq!(report.state, RunState::Compensated, "{report}");
    let now = inspect(&host, name);
    assert_eq!(now["Image"], images.ids[2], "back on v3");
    assert_eq!(now["State"]["Running"], true);
    assert_eq!(user_config(&now), before, "configuration kept through rollback and compensation");
    assert_eq!(version_served(port).await, "v3");
    let home = rollback_core::testkit::text_under(&dir.path().join("home"));
    assert!(home.len() > 1000, "the journal is there");
    assert!(!home.contains("s3cr3t-token"), "a container's environment never reaches the journal or reports");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_good_rollback_succeeds_and_a_dry_run_leaves_docker_events_empty() {
    let Some(host) = docker_host() else { return };
    let dir = tempfile::tempdir().unwrap();
    let images = Images::build(&host, "rbtest-good", dir.path());
    let _containers = Containers::new(&host, "rbt-good");
    let (name, port) = ("rbt-good", free_port());
    run(&host, name, &images.tag("v2"), port, &[]);
    let engine = engine(&dir.path().join("home"));
    let plan = plan(&host, name, Selector::Previous, port, "v1");

    let stamp = |t: chrono::DateTime<chrono::Utc>| format!("{}.{:09}", t.timestamp(), t.timestamp_subsec_nanos());
    let start = stamp(chrono::Utc::now());
    let dry = engine.dry_run(&plan).await.unwrap();
    assert!(dry.steps.iter().any(|s| s.description.contains("v1")), "{dry:?}");
    let until = stamp(chrono::Utc::now());
    let events = docker(
        &host,
        &[
            "events",
            "--since",
            &start,
            "--until",
            &until,
            "--format",
            "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}",
        ],
    );
    let ours: Vec<&str> = events.lines().filter(|l| l.contains("rbt-good") || l.contains("rbtest-good")).collect();
    assert!(ours.is_empty(), "dry-run made docker events: {ours:?}");

    let report = engine.run(plan, Default::default()).await.unwrap();
    assert_eq!(report.state, RunState::Succeeded, "{report}");
    assert_eq!(inspect(&host, name)["Image"], images.ids[0]);
    assert_eq!(version_served(port).await, "v1");
}

/// The engine goes away right after the old container was stopped (the rename never
/// reaches it): the run fails saying what it left; once the engine is back, `resume`
/// observes "old container stopped" and finishes the same recreate — one replacement.
#[tokio::test(flavor = "multi_thread")]
async fn an_engine_outage_mid_recreate_is_reported_and_resume_finishes() {
    let Some(host) = docker_host() else { return };
    let _ = tracing_subscriber::fmt().with_env_filter("info").with_test_writer().try_init();
    let dir = tempfile::tempdir().unwrap();
    let images = Images::build(&host, "rbtest-outage", dir.path());
    let _containers = Containers::new(&host, "rbt-outage");
    let (name, port) = ("rbt-outage", free_port());
    run(&host, name, &images.tag("v2"), port, &[]);
    let old_id = inspect(&host, name)["Id"].as_str().unwrap().to_string();
    let proxy = EngineProxy::start(&host, dir.path());
    let engine = engine(&dir.path().join("home"));

    proxy.trip_on("/rename");
    let mut plan = plan(&proxy.host(), name, Selector::Previous, port, "v1");
    plan.stages[0].steps[0].on_failure = None; // the default for an app step: halt and escalate
    let report = engine.run(plan, Default::default()).await.unwrap();
    assert!(proxy.is_down(), "the outage happened");
    assert!(matches!(report.state, RunState::Failed | RunState::Escalated), "{report}");
    let step = report.steps.iter().find(|s| s.step.as_str() == "rollback-api").unwrap();
    let error = step.error.as_ref().expect("the failed step says why");
    assert_eq!(error.kind, ErrorKind::Backend, "{error:?}");
    assert!(error.retryable, "an engine outage is retryable: {error:?}");
    let text = report.to_string();
    assert!(text.contains("rollback-api") && text.contains("cannot reach the docker engine"), "{text}");
    assert!(report.not_started.iter().any(|s| s.as_str() == "healthy"), "no checks after a failed rollback: {text}");
    let old = inspect(&host, name);
    assert_eq!(old["Id"], old_id.as_str(), "the old container is still under its name");
    assert_eq!(old["State"]["Running"], false, "and stopped: the outage came after the stop");

    let err = engine.resume(&report.run).await.expect_err("resume while the engine is down fails before acting");
    assert!(err.is_retryable(), "{err}");

    proxy.up();
    let report = engine.resume(&report.run).await.unwrap();
    assert_eq!(report.state, RunState::Succeeded, "{report}");
    let now = inspect(&host, name);
    assert_eq!(now["Image"], images.ids[0]);
    assert_eq!(version_served(port).await, "v1");
    let replacements = docker(&host, &["ps", "-aq", "--filter", "label=io.rollback.key"]);
    let ours: Vec<&str> = replacements.lines().filter(|id| now["Id"].as_str().unwrap().starts_with(id)).collect();
    assert_eq!(ours.len(), 1);
    let all = docker(&host, &["ps", "-a", "--format", "{{.Names}}", "--filter", "name=^/rbt-outage"]);
    assert_eq!(all.lines().count(), 2, "the replacement and the retained old container: {all}");
}
