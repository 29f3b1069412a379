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

/// The double's watches, as the real API server's: events after a resourceVersion,
/// filtered by field selector, bookmarks, the server's timeout, and 410 for a version
/// older than its watch cache.
#[tokio::test]
async fn watches_stream_changes_after_a_version_with_bookmarks_and_expire() {
    use futures::StreamExt;
    use kube::api::{WatchEvent, WatchParams};
    let options = DoubleOptions { bookmark_interval: Duration::from_millis(50), watch_cache: 50, ..manual() };
    let double = ApiDouble::start_with(options).await;
    let api: Api<Deployment> = Api::namespaced(double.client("ns"), "ns");
    create(&api, "web", "app:1", 1).await;
    create(&api, "other", "app:1", 1).await;
    let rv = api.get("web").await.unwrap().metadata.resource_version.unwrap();

    let params = WatchParams::default().fields("metadata.name=web").timeout(2);
    let stream = api.watch(&params, &rv).await.unwrap();
    futures::pin_mut!(stream);
    set_image(&api, "other", "app:2").await; // filtered out by the field selector
    set_image(&api, "web", "app:2").await;
    let mut modified = None;
    let mut bookmarks = 0;
    while let Some(event) = tokio::time::timeout(Duration::from_secs(5), stream.next()).await.unwrap() {
        match event.unwrap() {
            WatchEvent::Modified(d) => {
                assert_eq!(d.metadata.name.as_deref(), Some("web"), "only the selected object");
                modified.get_or_insert(d);
            }
            WatchEvent::Bookmark(b) => {
                assert!(b.metadata.resource_version.parse::<u64>().unwrap() >= rv.parse::<u64>().unwrap());
                bookmarks += 1;
            }
            WatchEvent::Added(d) => panic!("a watch from a version sends no ADDED for existing {:?}", d.metadata.name),
            other => panic!("unexpected {other:?}"),
        }
    }
    let modified = modified.expect("the image change of web arrived");
    let image = modified.spec.template.spec.unwrap().containers[0].image.clone();
    assert_eq!(image.as_deref(), Some("app:2"));
    assert!(bookmarks >= 2, "bookmarks every 50 ms over the 2 s watch: {bookmarks}");
    let log = double.requests();
    assert_eq!(log.iter().filter(|r| r.query.contains("watch=true")).count(), 1, "one watch request");

    // From version 0: the current objects first, as ADDED.
    let all = api.watch(&WatchParams::default().timeout(1), "0").await.unwrap();
    let added: Vec<String> = all
        .filter_map(|e| async move {
            match e.unwrap() {
                WatchEvent::Added(d) => d.metadata.name,
                _ => None,
            }
        })
        .collect()
        .await;
    assert_eq!(added, ["other", "web"]);

    // Older than the watch cache (50 changes): 410 Expired.
    for i in 0..30 {
        set_image(&api, "other", &format!("app:{}", i + 3)).await;
        double.tick();
    }
    let stale = api.watch(&WatchParams::default().timeout(1), &rv).await.unwrap();
    futures::pin_mut!(stale);
    match stale.next().await.unwrap().unwrap() {
        WatchEvent::Error(status) => assert_eq!((status.code, status.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410, got {other:?}"),
    }
}

/// The rollout wait watches: its requests do not grow with the rollout's length.
#[tokio::test]
async fn the_rollout_wait_watches_instead_of_polling() {
    let double = ApiDouble::start_with(manual()).await;
    let api: Api<Deployment> = Api::namespaced(double.client("ns"), "ns");
    create(&api, "web", "app:1", 2).await;
    double.ticks(10);
    set_image(&api, "web", "app:2").await;
    let wait = WaitConfig { poll_interval: Duration::from_millis(5), ..Default::default() };
    let config =
        DeploymentConfig { cluster: Default::default(), namespace: "ns".into(), deployment: "web".into(), wait };
    let target = DeploymentTarget::new("web", double.cluster(), config).unwrap();
    double.clear_requests();
    let wait = tokio::spawn(async move { target.wait_for_rollout().await });
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(20)).await; // 800 ms: 160 polls' worth
        double.tick();
    }
    wait.await.unwrap().unwrap();
    let log = double.requests();
    let paths: Vec<String> = log.iter().map(|r| format!("{} {}?{}", r.method, r.path, r.query)).collect();
    assert_eq!(log.len(), 2, "one GET and one WATCH: {paths:?}");
    assert!(log[1].query.contains("watch=true") && log[1].query.contains("metadata.name%3Dweb"), "{paths:?}");
}

/// Where watches are refused, the wait polls: it still finishes.
#[tokio::test]
async fn the_rollout_wait_polls_when_watches_are_refused() {
    let double = ApiDouble::start_with(DoubleOptions { watches: false, ..manual() }).await;
    let api: Api<Deployment> = Api::namespaced(double.client("ns"), "ns");
    create(&api, "web", "app:1", 2).await;
    double.ticks(10);
    set_image(&api, "web", "app:2").await;
    let wait = WaitConfig { poll_interval: Duration::from_millis(20), ..Default::default() };
    let config =
        DeploymentConfig { cluster: Default::default(), namespace: "ns".into(), deployment: "web".into(), wait };
    let target = DeploymentTarget::new("web", double.cluster(), config).unwrap();
    double.clear_requests();
    let wait = tokio::spawn(async move { target.wait_for_rollout().await });
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        double.tick();
    }
    wait.await.unwrap().unwrap();
    let log = double.requests();
    assert_eq!(log.iter().filter(|r| r.query.contains("watch=true")).count(), 1, "one refused watch");
    assert!(log.len() > 3, "then GETs every 20 ms: {} requests", log.len());
}
