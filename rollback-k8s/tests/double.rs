//! The API double itself, with its clock driven by hand: status converges over ticks,
//! not instantly; a target interrupted between its phases is seen as such.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use rollback_core::testkit::conformance;
use rollback_core::{IdempotencyKey, Target};
use rollback_k8s::double::{ApiDouble, DoubleOptions};
use rollback_k8s::rollout::{RolloutStatus, rollout_status};
use rollback_k8s::{DeploymentConfig, DeploymentTarget, UNDO_KEY_ANNOTATION, WaitConfig};

fn manual() -> DoubleOptions {
    DoubleOptions { background: None, ..Default::default() }
}

async fn create(api: &Api<Deployment>, name: &str, image: &str, replicas: i32) {
    let d: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": image}]}}}
    }))
    .unwrap();
    api.create(&PostParams::default(), &d).await.unwrap();
}

async fn set_image(api: &Api<Deployment>, name: &str, image: &str) {
    let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}});
    api.patch(name, &PatchParams::default(), &Patch::Strategic(patch)).await.unwrap();
}

#[tokio::test]
async fn status_converges_over_ticks_of_the_virtual_clock() {
    let double = ApiDouble::start_with(manual()).await;
    let api: Api<Deployment> = Api::namespaced(double.client("ns"), "ns");
    create(&api, "web", "app:1", 3).await;
    let d = api.get("web").await.unwrap();
    assert_eq!(d.metadata.generation, Some(1));
    assert!(matches!(rollout_status(&d), RolloutStatus::Waiting(_)), "nothing happens without a tick");
    assert!(double.objects("replicasets", "ns").is_empty());

    let t0 = double.now();
    double.tick();
    assert_eq!(double.now() - t0, chrono::TimeDelta::seconds(1));
    let d = api.get("web").await.unwrap();
    let status = d.status.clone().unwrap();
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(status.available_replicas, Some(0), "pods need ready_after (2 s) to be ready");
    let rs = &double.objects("replicasets", "ns")[0];
    let hash = rs["metadata"]["labels"]["pod-template-hash"].as_str().unwrap().to_owned();
    assert_eq!(rs["metadata"]["name"], format!("web-{hash}"));
    assert_eq!(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "1");

    let mut ticks = 0;
    while rollout_status(&api.get("web").await.unwrap()) != RolloutStatus::Complete {
        double.tick();
        ticks += 1;
        assert!(ticks < 20, "did not converge");
    }
    assert!(ticks >= 2, "readiness takes virtual time");

    // A new template: generation 2, observed only after a tick; a rolling update takes
    // several ticks (maxSurge 1, maxUnavailable 0 for 3 replicas).
    set_image(&api, "web", "app:2").await;
    let d = api.get("web").await.unwrap();
    assert_eq!(d.metadata.generation, Some(2));
    assert!(matches!(rollout_status(&d), RolloutStatus::Waiting(m) if m.contains("observed")));
    let mut max_pods = 0;
    let mut ticks = 0;
    while rollout_status(&api.get("web").await.unwrap()) != RolloutStatus::Complete {
        double.tick();
        ticks += 1;
        max_pods = max_pods.max(double.objects("pods", "ns").len());
        assert!(ticks < 40, "did not converge");
    }
    assert!(ticks >= 6, "a rolling update of 3 replicas one at a time took {ticks} ticks");
    assert_eq!(max_pods, 4, "never more than replicas + maxSurge pods");
    let events = double.objects("events", "ns");
    assert!(events.iter().any(|e| e["reason"] == "ScalingReplicaSet"), "{events:?}");
}

#[tokio::test]
async fn a_broken_image_exceeds_the_progress_deadline_in_virtual_time() {
    let double = ApiDouble::start_with(manual()).await;
    let api: Api<Deployment> = Api::namespaced(double.client("ns"), "ns");
    create(&api, "web", "app:1", 2).await;
    double.ticks(10);
    let deadline = serde_json::json!({"spec": {"progressDeadlineSeconds": 30}});
    api.patch("web", &PatchParams::default(), &Patch::Merge(deadline)).await.unwrap();
    set_image(&api, "web", "app:broken").await;
    double.ticks(25);
    assert!(matches!(rollout_status(&api.get("web").await.unwrap()), RolloutStatus::Waiting(_)), "not yet at 25 s");
    double.ticks(10);
    assert!(matches!(rollout_status(&api.get("web").await.unwrap()), RolloutStatus::Failed(_)), "past 30 s");
    let logs: Vec<_> = double
        .objects("pods", "ns")
        .into_iter()
        .filter(|p| p["spec"]["containers"][0]["image"] == "app:broken")
        .collect();
    assert_eq!(logs[0]["status"]["containerStatuses"][0]["state"]["waiting"]["reason"], "ImagePullBackOff");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_tells_a_switched_template_from_a_finished_rollout() {
    let double = Arc::new(ApiDouble::start_with(manual()).await);
    let api: Api<Deployment> = Api::namespaced(double.client("ns"), "ns");
    create(&api, "web", "app:1", 2).await;
    double.ticks(6);
    for image in ["app:2", "app:3"] {
        set_image(&api, "web", image).await;
        double.ticks(12);
    }
    let wait = WaitConfig { wait: true, timeout: Duration::from_secs(30), poll_interval: Duration::from_millis(5) };
    let config =
        DeploymentConfig { cluster: Default::default(), namespace: "ns".into(), deployment: "web".into(), wait };
    let target: Arc<dyn Target> = Arc::new(DeploymentTarget::new("web", double.cluster(), config).unwrap());
    // The process dies right after its PATCH: template and key in place, nothing rolled out.
    let for_partial = double.clone();
    let leave_partial = |change: rollback_core::Change, key: IdempotencyKey| {
        let api = api.clone();
        let double = for_partial;
        async move {
            let d = api.get("web").await.unwrap();
            let rs = double
                .objects("replicasets", "ns")
                .into_iter()
                .find(|rs| {
                    rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                        == change.to.label.clone().unwrap()
                })
                .unwrap();
            let mut template = rs["spec"]["template"].clone();
            template["metadata"]["labels"].as_object_mut().unwrap().remove("pod-template-hash");
            let ops: json_patch::Patch = serde_json::from_value(serde_json::json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": d.metadata.resource_version},
                {"op": "replace", "path": "/spec/template", "value": template},
                {"op": "add", "path": format!("/metadata/annotations/{}", UNDO_KEY_ANNOTATION.replace('/', "~1")), "value": key.as_str()},
            ]))
            .unwrap();
            api.patch("web", &PatchParams::default(), &Patch::Json::<()>(ops)).await.unwrap();
        }
    };
    // Ticks run while apply waits, so the resumed apply can finish the rollout.
    let ticker = {
        let double = double.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            loop {
                double.tick();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    conformance::observe_between_phases(target, leave_partial).await;
    ticker.abort();
    let patches = double.requests().into_iter().filter(|r| r.method == "PATCH").count();
    assert_eq!(patches, 3, "the resumed apply only waited: no second template PATCH");
}
