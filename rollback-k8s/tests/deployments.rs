//! Deployments, traffic, config and locks against a Kubernetes API: the API double by
//! default, a real cluster with `ROLLBACK_TEST_KUBECONFIG=/path/to/kubeconfig`.
//! Assertions read what the API shows (ReplicaSets, annotations, statuses, objects).

mod common;

use std::sync::Arc;

use common::{BROKEN, IMAGES, TestCluster};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use rollback_core::testkit::conformance;
use rollback_core::{
    ArtifactStore, Engine, ErrorKind, IdempotencyKey, LocalDirStore, MemoryJournal, MemoryLock, Observed, Plan,
    Registry, Request, RunState, Selector, Snapshot, Step, StepOp, Target,
};
use rollback_k8s::rollout::{REVISION, REVISION_HISTORY, RolloutStatus, rollout_status, template_id};
use rollback_k8s::{
    CanaryConfig, CanaryTarget, DeploymentSnapshot, DeploymentSnapshotConfig, LeaseLock, LeaseLockConfig, ScaleConfig,
    ScaleTarget, ServiceSelectorConfig, ServiceSelectorTarget, UNDO_KEY_ANNOTATION,
};

async fn replica_sets(tc: &TestCluster, app: &str) -> Vec<ReplicaSet> {
    let api: Api<ReplicaSet> = tc.cluster.api(&tc.namespace);
    api.list(&ListParams::default().labels(&format!("app={app}"))).await.unwrap().items
}

fn annotation(rs: &ReplicaSet, key: &str) -> Option<String> {
    rs.metadata.annotations.as_ref()?.get(key).cloned()
}

fn image_of(rs: &ReplicaSet) -> String {
    rs.spec.template.as_ref().unwrap().spec.as_ref().unwrap().containers[0].image.clone().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_target_passes_the_core_conformance_suite() {
    let tc = TestCluster::new().await;
    let n = std::sync::atomic::AtomicUsize::new(0);
    conformance::target_suite(|| {
        let name = format!("conf-{}", n.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
        let tc = &tc;
        async move {
            tc.with_revisions(&name, &IMAGES[..3]).await;
            Arc::new(tc.target(&name)) as Arc<dyn Target>
        }
    })
    .await;
    tc.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_reuses_the_replica_set_with_revision_history_like_kubectl() {
    let tc = TestCluster::new().await;
    tc.with_revisions("web", &IMAGES[..3]).await;
    let target = tc.target("web");
    let history = target.history().await.unwrap();
    assert_eq!(history.iter().map(|r| r.version.label.clone().unwrap()).collect::<Vec<_>>(), ["3", "2", "1"]);
    assert!(history[1].description.contains(IMAGES[1]) && history[1].description.contains("deploy"), "{history:?}");

    let change = target.prepare(&Request::To(Selector::Previous)).await.unwrap();
    assert_eq!(change.to.label.as_deref(), Some("2"));
    let preview = change.preview.as_deref().expect("a template diff");
    let image = |i: usize| format!("\"image\": \"{}\"", IMAGES[i]);
    assert!(preview.lines().any(|l| l.starts_with('-') && l.contains(&image(2))), "{preview}");
    assert!(preview.lines().any(|l| l.starts_with('+') && l.contains(&image(1))), "{preview}");
    assert!(!preview.contains("pod-template-hash"), "{preview}");
    let key = IdempotencyKey::new("run-1/web/fwd");
    target.apply(&change, &key).await.unwrap();
    assert_eq!(target.observe(&change, &key).await.unwrap(), Observed::Done);

    let rses = replica_sets(&tc, "web").await;
    assert_eq!(rses.len(), 3, "the ReplicaSet of revision 2 was re-used, none created");
    let reused = rses.iter().find(|rs| image_of(rs) == IMAGES[1]).unwrap();
    assert_eq!(annotation(reused, REVISION).as_deref(), Some("4"), "re-used ReplicaSet gets max+1");
    assert_eq!(annotation(reused, REVISION_HISTORY).as_deref(), Some("2"));
    assert_eq!(reused.spec.replicas, Some(2));
    let old = rses.iter().find(|rs| image_of(rs) == IMAGES[2]).unwrap();
    assert_eq!(old.spec.replicas, Some(0), "the bad revision is scaled down");
    let d = tc.get("web").await;
    assert_eq!(d.metadata.annotations.as_ref().unwrap()[UNDO_KEY_ANNOTATION], key.as_str());
    assert_eq!(d.metadata.annotations.as_ref().unwrap()["kubernetes.io/change-cause"], format!("deploy {}", IMAGES[1]));
    assert_eq!(rollout_status(&d), RolloutStatus::Complete);

    // --to-revision=1: exact by revision number.
    let change = target.prepare(&Request::To(Selector::Exact("1".into()))).await.unwrap();
    target.apply(&change, &IdempotencyKey::new("run-2/web/fwd")).await.unwrap();
    let rses = replica_sets(&tc, "web").await;
    let first = rses.iter().find(|rs| image_of(rs) == IMAGES[0]).unwrap();
    assert_eq!(annotation(first, REVISION).as_deref(), Some("5"));
    assert_eq!(annotation(first, REVISION_HISTORY).as_deref(), Some("1"));
    // Re-applying the first, overtaken change is refused, not redone.
    let first_change_again = target.prepare(&Request::To(Selector::Exact("4".into()))).await.unwrap();
    assert_eq!(first_change_again.to.id, template_id(reused.spec.template.as_ref().unwrap()));
    tc.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_deployment_is_refused_before_anything_changes() {
    let tc = TestCluster::new().await;
    tc.with_revisions("web", &IMAGES[..2]).await;
    let target = tc.target("web");
    let prepared = target.prepare(&Request::To(Selector::Previous)).await.unwrap();
    let pause = serde_json::json!({"spec": {"paused": true}});
    tc.deployments().patch("web", &PatchParams::default(), &Patch::Merge(pause)).await.unwrap();
    let before = tc.get("web").await;

    let err = target.prepare(&Request::To(Selector::Previous)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidState);
    assert!(err.to_string().contains("paused") && err.to_string().contains("rollout resume"), "{err}");
    let err = target.apply(&prepared, &IdempotencyKey::new("r/web/fwd")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidState, "{err}");
    let after = tc.get("web").await;
    assert_eq!(template_id(&after.spec.template), template_id(&before.spec.template), "nothing changed");
    assert_eq!(after.metadata.generation, before.metadata.generation, "no spec write");
    tc.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_already_matching_is_nothing_to_do() {
    let tc = TestCluster::new().await;
    tc.with_revisions("web", &IMAGES[..2]).await;
    let target = tc.target("web");
    let spec_and_meta = |d: Deployment| (d.metadata.generation, d.metadata.annotations, d.spec.replicas);
    let before = spec_and_meta(tc.get("web").await);
    let writes = tc.writes();
    let err = target.prepare(&Request::To(Selector::Exact("2".into()))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyDone, "{err}");
    assert!(err.to_string().contains("skipped rollback"), "kubectl's words: {err}");
    assert_eq!(spec_and_meta(tc.get("web").await), before, "nothing written");
    assert_eq!(tc.writes(), writes, "no write call");
    tc.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_resource_versions_conflict_and_concurrent_changes_are_not_overwritten() {
    let tc = TestCluster::new().await;
    tc.with_revisions("web", &IMAGES[..2]).await;
    let api = tc.deployments();
    let stale = tc.get("web").await;
    let touch = serde_json::json!({"metadata": {"annotations": {"touched": "yes"}}});
    api.patch("web", &PatchParams::default(), &Patch::Merge(touch)).await.unwrap();

    // PUT with the old resourceVersion: 409.
    let err = api.replace("web", &PostParams::default(), &stale).await.unwrap_err();
    assert!(matches!(&err, kube::Error::Api(s) if s.code == 409), "{err}");
    // A merge patch carrying the old resourceVersion: 409.
    let with_rv =
        serde_json::json!({"metadata": {"resourceVersion": stale.metadata.resource_version, "labels": {"x": "y"}}});
    let err = api.patch("web", &PatchParams::default(), &Patch::Merge(with_rv)).await.unwrap_err();
    assert!(matches!(&err, kube::Error::Api(s) if s.code == 409), "{err}");
    // A JSON patch testing the old resourceVersion: refused (422, as the API server does).
    let ops: json_patch::Patch = serde_json::from_value(serde_json::json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": stale.metadata.resource_version},
        {"op": "add", "path": "/metadata/labels", "value": {"x": "y"}}
    ]))
    .unwrap();
    let err = api.patch("web", &PatchParams::default(), &Patch::Json::<()>(ops)).await.unwrap_err();
    assert!(matches!(&err, kube::Error::Api(s) if s.code == 422 && s.message.contains("test")), "{err}");
    assert!(!tc.get("web").await.metadata.labels.unwrap_or_default().contains_key("x"));

    // Someone deploys between prepare and apply: the rollback is a conflict, their deploy stays.
    let target = tc.target("web");
    let change = target.prepare(&Request::To(Selector::Previous)).await.unwrap();
    tc.deploy("web", IMAGES[2]).await;
    let err = target.apply(&change, &IdempotencyKey::new("r/web/fwd")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    let d = tc.get("web").await;
    assert_eq!(d.spec.template.spec.as_ref().unwrap().containers[0].image.as_deref(), Some(IMAGES[2]));
    assert!(matches!(target.observe(&change, &IdempotencyKey::new("r/web/fwd")).await.unwrap(), Observed::Diverged(_)));
    tc.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_deadline_exceeded_fails_the_wait_and_undo_recovers() {
    let tc = TestCluster::new().await;
    tc.create("web", IMAGES[0], 3, serde_json::json!({"spec": {"progressDeadlineSeconds": 10}})).await;
    tc.rolled_out("web").await;
    tc.deploy("web", BROKEN).await;
    let target = tc.target("web");
    let err = target.wait_for_rollout().await.unwrap_err();
    assert!(err.to_string().contains("exceeded its progress deadline"), "{err}");
    let d = tc.get("web").await;
    let cond =
        d.status.unwrap().conditions.unwrap().into_iter().find(|c| c.type_.as_deref() == Some("Progressing")).unwrap();
    assert_eq!(cond.reason.as_deref(), Some("ProgressDeadlineExceeded"));
    assert_eq!(cond.status.as_deref(), Some("False"));

    let change = target.prepare(&Request::To(Selector::Previous)).await.unwrap();
    let key = IdempotencyKey::new("r/web/fwd");
    target.apply(&change, &key).await.unwrap();
    assert_eq!(target.observe(&change, &key).await.unwrap(), Observed::Done);
    let broken = replica_sets(&tc, "web").await.into_iter().find(|rs| image_of(rs) == BROKEN).unwrap();
    assert_eq!(broken.spec.replicas, Some(0), "the broken ReplicaSet is scaled to zero");
    let pods: Api<Pod> = tc.cluster.api(&tc.namespace);
    let ready = pods.list(&ListParams::default().labels("app=web")).await.unwrap().items;
    assert!(ready.iter().all(|p| p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some(IMAGES[0])));
    tc.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_of_a_plan_makes_no_write_calls() {
    let tc = TestCluster::new().await;
    tc.with_revisions("web", &IMAGES[..2]).await;
    let mut registry = Registry::new();
    registry.register_target(Arc::new(tc.target("web")));
    let scale = ScaleConfig {
        cluster: Default::default(),
        hpa: Default::default(),
        namespace: tc.namespace.clone(),
        deployment: "web".into(),
        wait: tc.wait(),
    };
    registry.register_target(Arc::new(ScaleTarget::new("web-traffic", tc.cluster.clone(), scale).unwrap()));
    let plan = Plan::new("k8s dry run")
        .stage(
            "traffic",
            1,
            vec![Step::new(
                "off",
                StepOp::Action {
                    target: "web-traffic".into(),
                    action: "scale-to-zero".into(),
                    params: Default::default(),
                },
            )],
        )
        .stage("app", 1, vec![Step::new("back", StepOp::Rollback { target: "web".into(), to: Selector::Previous })]);
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::builder(registry)
        .journal(Arc::new(MemoryJournal::new()))
        .lock(Arc::new(MemoryLock::new()))
        .artifacts_dir(dir.path())
        .build();
    let spec_and_meta = |d: Deployment| (d.metadata.generation, d.metadata.annotations, d.spec.replicas);
    let before = spec_and_meta(tc.get("web").await);
    let writes = tc.writes();
    let dry = engine.dry_run(&plan).await.unwrap();
    let text = dry.to_string();
    assert!(text.contains("scale deployment") && text.contains("roll deployment"), "{text}");
    assert_eq!(tc.writes(), writes, "dry run made no write call");
    if let Some(double) = &tc.double {
        assert!(double.requests().iter().any(|r| r.method == "GET"), "it did read");
    }
    assert_eq!(spec_and_meta(tc.get("web").await), before, "nothing written");
    tc.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_runs_traffic_off_rollback_and_traffic_back() {
    let tc = TestCluster::new().await;
    tc.with_revisions("web", &IMAGES[..2]).await;
    let mut registry = Registry::new();
    registry.register_target(Arc::new(tc.target("web")));
    let scale = ScaleConfig {
        cluster: Default::default(),
        hpa: Default::default(),
        namespace: tc.namespace.clone(),
        deployment: "web".into(),
        wait: tc.wait(),
    };
    registry.register_target(Arc::new(ScaleTarget::new("web-traffic", tc.cluster.clone(), scale).unwrap()));
    let mut plan = Plan::new("k8s run")
        .stage(
            "traffic",
            1,
            vec![Step::new(
                "off",
                StepOp::Action {
                    target: "web-traffic".into(),
                    action: "scale-to-zero".into(),
                    params: Default::default(),
                },
            )],
        )
        .stage("app", 1, vec![Step::new("back", StepOp::Rollback { target: "web".into(), to: Selector::Previous })]);
    plan.finally.push(Step::new("on", StepOp::Revert { step: "off".into() }));
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::builder(registry)
        .journal(Arc::new(MemoryJournal::new()))
        .lock(Arc::new(MemoryLock::new()))
        .artifacts_dir(dir.path())
        .build();
    let report = engine.run(plan, Default::default()).await.unwrap();
    assert_eq!(report.state, RunState::Succeeded, "{report}");
    let d = tc.get("web").await;
    assert_eq!(d.spec.replicas, Some(2), "traffic restored to the recorded count");
    assert_eq!(d.spec.template.spec.as_ref().unwrap().containers[0].image.as_deref(), Some(IMAGES[0]));
    assert_eq!(rollout_status(&d), RolloutStatus::Complete);
    tc.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_to_zero_and_back_to_the_recorded_count() {
    let tc = TestCluster::new().await;
    tc.create("web", IMAGES[0], 3, serde_json::json!({})).await;
    tc.rolled_out("web").await;
    let config = ScaleConfig {
        cluster: Default::default(),
        hpa: Default::default(),
        namespace: tc.namespace.clone(),
        deployment: "web".into(),
        wait: tc.wait(),
    };
    let target = ScaleTarget::new("traffic", tc.cluster.clone(), config).unwrap();
    let change =
        target.prepare(&Request::Action { action: "scale-to-zero".into(), params: Default::default() }).await.unwrap();
    let key = IdempotencyKey::new("r/off/fwd");
    assert_eq!(target.observe(&change, &key).await.unwrap(), Observed::NotStarted);
    target.apply(&change, &key).await.unwrap();
    assert_eq!(target.observe(&change, &key).await.unwrap(), Observed::Done);
    let pods: Api<Pod> = tc.cluster.api(&tc.namespace);
    assert!(pods.list(&ListParams::default().labels("app=web")).await.unwrap().items.is_empty(), "no pods serve");
    let back = target.inverse(&change).unwrap();
    target.apply(&back, &IdempotencyKey::new("r/off/undo")).await.unwrap();
    let d = tc.get("web").await;
    assert_eq!(d.spec.replicas, Some(3));
    assert_eq!(d.status.unwrap().available_replicas, Some(3));
    let err = target
        .prepare(&Request::Action { action: "scale".into(), params: serde_json::json!({"replicas": -1}) })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    tc.cleanup().await;
}

/// A Service `web` selecting `app=web`, and a selector target's config for it.
async fn web_service(tc: &TestCluster) -> (Api<Service>, ServiceSelectorConfig) {
    let services: Api<Service> = tc.cluster.api(&tc.namespace);
    let svc: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}
    }))
    .unwrap();
    services.create(&PostParams::default(), &svc).await.unwrap();
    let config =
        ServiceSelectorConfig { cluster: Default::default(), namespace: tc.namespace.clone(), service: "web".into() };
    (services, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_selector_blocks_and_restores_traffic() {
    let tc = TestCluster::new().await;
    tc.create("web", IMAGES[0], 2, serde_json::json!({})).await;
    tc.rolled_out("web").await;
    let (services, config) = web_service(&tc).await;
    let target = ServiceSelectorTarget::new("web-svc", tc.cluster.clone(), config).unwrap();
    let change = target.prepare(&Request::Action { action: "block".into(), params: Default::default() }).await.unwrap();
    let key = IdempotencyKey::new("r/block/fwd");
    target.apply(&change, &key).await.unwrap();
    let selector = services.get("web").await.unwrap().spec.unwrap().selector.unwrap();
    let pods: Api<Pod> = tc.cluster.api(&tc.namespace);
    let as_labels = selector.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
    assert!(pods.list(&ListParams::default().labels(&as_labels)).await.unwrap().items.is_empty(), "no pod matches");
    assert_eq!(target.observe(&change, &key).await.unwrap(), Observed::Done);
    target.apply(&target.inverse(&change).unwrap(), &IdempotencyKey::new("r/block/undo")).await.unwrap();
    let selector = services.get("web").await.unwrap().spec.unwrap().selector.unwrap();
    assert_eq!(selector.into_iter().collect::<Vec<_>>(), [("app".to_string(), "web".to_string())]);
    tc.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_rollback_scales_the_canary_to_zero_and_stable_up() {
    let tc = TestCluster::new().await;
    tc.create("stable", IMAGES[0], 3, serde_json::json!({})).await;
    tc.create("canary", IMAGES[1], 1, serde_json::json!({})).await;
    tc.rolled_out("stable").await;
    tc.rolled_out("canary").await;
    let config = CanaryConfig {
        cluster: Default::default(),
        namespace: tc.namespace.clone(),
        canary: "canary".into(),
        stable: "stable".into(),
        wait: tc.wait(),
    };
    let target = CanaryTarget::new("canary", tc.cluster.clone(), config).unwrap();
    let change =
        target.prepare(&Request::Action { action: "rollback".into(), params: Default::default() }).await.unwrap();
    assert_eq!(change.to.id, "canary=0,stable=4");
    let key = IdempotencyKey::new("r/canary/fwd");
    target.apply(&change, &key).await.unwrap();
    assert_eq!(target.observe(&change, &key).await.unwrap(), Observed::Done);
    assert_eq!(tc.get("canary").await.spec.replicas, Some(0));
    let stable = tc.get("stable").await;
    assert_eq!((stable.spec.replicas, stable.status.unwrap().available_replicas), (Some(4), Some(4)));
    target.apply(&target.inverse(&change).unwrap(), &IdempotencyKey::new("r/canary/undo")).await.unwrap();
    assert_eq!(tc.get("canary").await.spec.replicas, Some(1));
    assert_eq!(tc.get("stable").await.spec.replicas, Some(3));
    tc.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_keeps_evidence_and_restores_config_with_the_workload() {
    const PASSWORD: &str = "hunter2-very-secret";
    let tc = TestCluster::new().await;
    let cms: Api<ConfigMap> = tc.cluster.api(&tc.namespace);
    let secrets: Api<Secret> = tc.cluster.api(&tc.namespace);
    let cm: ConfigMap =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "web-config"}, "data": {"MODE": "good"}}))
            .unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let secret: Secret = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "web-secret"}, "stringData": {"PASSWORD": PASSWORD}}),
    )
    .unwrap();
    secrets.create(&PostParams::default(), &secret).await.unwrap();
    let env = serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": IMAGES[0],
        "envFrom": [{"configMapRef": {"name": "web-config"}}, {"secretRef": {"name": "web-secret"}}],
        "env": [{"name": "INLINE_TOKEN", "value": "inline-value-42"}],
        "args": ["--api-token", "arg-secret-77", "--port", "80"]}]}}}});
    tc.create("web", IMAGES[0], 2, env).await;
    let applied = serde_json::json!({"metadata": {"annotations": {
        "kubectl.kubernetes.io/last-applied-configuration": "{\"env\":[{\"name\":\"INLINE_TOKEN\",\"value\":\"inline-value-42\"}]}"}}});
    tc.deployments().patch("web", &PatchParams::default(), &Patch::Merge(applied)).await.unwrap();
    tc.rolled_out("web").await;

    let dir = tempfile::tempdir().unwrap();
    let store = LocalDirStore::new(dir.path());
    let snapshotter = DeploymentSnapshot::new("web-snap", tc.cluster.clone(), snapshotter_config(&tc)).unwrap();
    let snap = snapshotter.capture(&store, &IdempotencyKey::new("run-1/evidence/fwd")).await.unwrap();
    for file in ["deployment.json", "replicasets.json", "events.json", "configmaps/web-config.json", "secrets.json"] {
        assert!(snap.artifacts.contains(&format!("run-1/evidence/fwd/{file}")), "{file} in {:?}", snap.artifacts);
    }
    assert!(snap.artifacts.iter().any(|a| a.contains("/logs/web-")), "{:?}", snap.artifacts);
    let encoded = serde_json::to_value(k8s_openapi::ByteString(PASSWORD.as_bytes().to_vec())).unwrap();
    for key in store.list("").await.unwrap() {
        let text = String::from_utf8_lossy(&store.get(&key).await.unwrap()).into_owned();
        assert!(!text.contains(PASSWORD) && !text.contains(encoded.as_str().unwrap()), "secret value in {key}");
        assert!(!text.contains("inline-value-42"), "env value not redacted in {key}");
        assert!(!text.contains("arg-secret-77"), "command-line secret not redacted in {key}");
    }
    assert!(!serde_json::to_string(&snap).unwrap().contains(encoded.as_str().unwrap()));
    let copies = secrets.list(&ListParams::default().labels("rollback.dev/copy-of=web-secret")).await.unwrap().items;
    assert_eq!(copies.len(), 1, "the Secret is copied inside the cluster");
    assert_eq!(copies[0].data, secrets.get("web-secret").await.unwrap().data);

    // A bad release: new config, new secret, new image.
    let bad_cm = serde_json::json!({"data": {"MODE": "bad"}});
    cms.patch("web-config", &PatchParams::default(), &Patch::Merge(bad_cm)).await.unwrap();
    let bad_secret = serde_json::json!({"stringData": {"PASSWORD": "rotated-wrongly"}});
    secrets.patch("web-secret", &PatchParams::default(), &Patch::Merge(bad_secret)).await.unwrap();
    tc.deploy("web", IMAGES[1]).await;
    tc.rolled_out("web").await;

    snapshotter.restore(&snap, &store).await.unwrap();
    assert_eq!(cms.get("web-config").await.unwrap().data.unwrap()["MODE"], "good");
    assert_eq!(secrets.get("web-secret").await.unwrap().data, copies[0].data);
    tc.rolled_out("web").await;
    let d: Deployment = tc.get("web").await;
    assert_eq!(d.spec.template.spec.as_ref().unwrap().containers[0].image.as_deref(), Some(IMAGES[0]));

    // Retention: a capture deletes this Deployment's copies whose time is up, and a
    // restore from an expired snapshot says so.
    let short = DeploymentSnapshotConfig { retention: std::time::Duration::from_secs(1), ..snapshotter_config(&tc) };
    let brief = DeploymentSnapshot::new("web-snap", tc.cluster.clone(), short).unwrap();
    let old = brief.capture(&store, &IdempotencyKey::new("run-2/evidence/fwd")).await.unwrap();
    let copies = || async {
        let listed = secrets.list(&ListParams::default().labels("rollback.dev/copy-of=web-secret")).await.unwrap();
        let mut names: Vec<String> = listed.items.into_iter().filter_map(|s| s.metadata.name).collect();
        names.sort();
        names
    };
    assert_eq!(copies().await.len(), 2, "run-1's copy (7 days) and run-2's (1 s)");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    brief.capture(&store, &IdempotencyKey::new("run-3/evidence/fwd")).await.unwrap();
    let kept = copies().await;
    assert_eq!(kept.len(), 2, "run-2's copy expired: {kept:?}");
    let run2 = serde_json::from_value::<Vec<rollback_k8s::SecretCopy>>(old.metadata["secrets"].clone()).unwrap();
    assert!(!kept.contains(&run2[0].copy), "{kept:?}");
    let err = brief.restore(&old, &store).await.unwrap_err();
    assert_eq!(err.kind(), rollback_core::ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("retention ended"), "{err}");
    tc.cleanup().await;
}

fn snapshotter_config(tc: &TestCluster) -> DeploymentSnapshotConfig {
    DeploymentSnapshotConfig {
        cluster: Default::default(),
        namespace: tc.namespace.clone(),
        deployment: "web".into(),
        tail_lines: 50,
        max_pods: 5,
        config: true,
        retention: std::time::Duration::from_secs(7 * 24 * 3600),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_lock_passes_the_core_lock_suite() {
    let tc = TestCluster::new().await;
    let n = std::sync::atomic::AtomicUsize::new(0);
    conformance::lock_suite(|| {
        let prefix = format!("lk{}", n.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
        let config = LeaseLockConfig { cluster: Default::default(), namespace: tc.namespace.clone(), prefix };
        let lock = LeaseLock::new(&tc.cluster, config).unwrap();
        async move { Arc::new(lock) as Arc<dyn rollback_core::Lock> }
    })
    .await;
    tc.cleanup().await;
}

/// Scale, Service selector and canary through the core action-target suite, the
/// state read back from the cluster (replicas, selector).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn action_targets_pass_the_core_action_suite() {
    let tc = TestCluster::new().await;
    tc.create("web", IMAGES[0], 2, serde_json::json!({})).await;
    tc.create("canary", IMAGES[1], 1, serde_json::json!({})).await;
    tc.rolled_out("web").await;
    tc.rolled_out("canary").await;
    let replicas = |name: &'static str| {
        let tc = &tc;
        move || async move {
            let d = tc.get(name).await;
            format!("{name} replicas={:?}", d.spec.replicas)
        }
    };
    let scale = ScaleConfig {
        cluster: Default::default(),
        hpa: Default::default(),
        namespace: tc.namespace.clone(),
        deployment: "web".into(),
        wait: tc.wait(),
    };
    let target = Arc::new(ScaleTarget::new("traffic", tc.cluster.clone(), scale).unwrap());
    let off = Request::Action { action: "scale-to-zero".into(), params: Default::default() };
    conformance::action_suite(target, off, replicas("web")).await;

    let (services, config) = web_service(&tc).await;
    let target = Arc::new(ServiceSelectorTarget::new("web-svc", tc.cluster.clone(), config).unwrap());
    let selector = || async {
        let spec = services.get("web").await.unwrap().spec.unwrap();
        format!("{:?}", spec.selector)
    };
    let block = Request::Action { action: "block".into(), params: Default::default() };
    conformance::action_suite(target, block, selector).await;

    let config = CanaryConfig {
        cluster: Default::default(),
        namespace: tc.namespace.clone(),
        canary: "canary".into(),
        stable: "web".into(),
        wait: tc.wait(),
    };
    let target = Arc::new(CanaryTarget::new("canary", tc.cluster.clone(), config).unwrap());
    let both = || async {
        let (c, s) = (tc.get("canary").await, tc.get("web").await);
        format!("canary={:?} stable={:?}", c.spec.replicas, s.spec.replicas)
    };
    let rollback = Request::Action { action: "rollback".into(), params: Default::default() };
    conformance::action_suite(target, rollback, both).await;
    tc.cleanup().await;
}
