//! Kubernetes fidelity: scaling through `/scale` with a HorizontalPodAutoscaler on the
//! Deployment (refused, or its bounds adjusted and restored), `rollout restart`, and
//! deleting the failing pods of a partial failure. Runs on the API double, or on a
//! real cluster with `ROLLBACK_TEST_KUBECONFIG` (the pod-crash test needs the double
//! to make one pod crash, and says so on a real cluster).

mod common;

use common::{IMAGES, TestCluster};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, PostParams};
use rollback_core::{ErrorKind, IdempotencyKey, Observed, Request, Target};
use rollback_k8s::{HpaPolicy, ScaleConfig, ScaleTarget};

fn action(name: &str, params: serde_json::Value) -> Request {
    Request::Action { action: name.into(), params }
}

async fn hpa(tc: &TestCluster, deployment: &str, min: i32, max: i32) -> Api<HorizontalPodAutoscaler> {
    let api: Api<HorizontalPodAutoscaler> = tc.cluster.api(&tc.namespace);
    let hpa: HorizontalPodAutoscaler = serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("{deployment}-hpa")},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
                 "minReplicas": min, "maxReplicas": max,
                 "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                              "target": {"type": "Utilization", "averageUtilization": 80}}}]}
    }))
    .unwrap();
    api.create(&PostParams::default(), &hpa).await.unwrap();
    api
}

fn bounds(h: &HorizontalPodAutoscaler) -> (i32, i32) {
    (h.spec.min_replicas.unwrap_or(1), h.spec.max_replicas)
}

fn scale_target(tc: &TestCluster, policy: HpaPolicy) -> ScaleTarget {
    let config = ScaleConfig {
        cluster: Default::default(),
        namespace: tc.namespace.clone(),
        deployment: "web".into(),
        hpa: policy,
        wait: tc.wait(),
    };
    ScaleTarget::new("traffic", tc.cluster.clone(), config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_goes_through_the_scale_subresource_and_respects_an_hpa() {
    let tc = TestCluster::new().await;
    tc.create("web", IMAGES[0], 3, serde_json::json!({})).await;
    tc.rolled_out("web").await;
    let hpas = hpa(&tc, "web", 2, 5).await;

    // Out of the HPA's bounds: refused by default, naming it, nothing changed.
    let refusing = scale_target(&tc, HpaPolicy::Refuse);
    let err = refusing.prepare(&action("scale", serde_json::json!({"replicas": 8}))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidState, "{err}");
    assert!(err.to_string().contains("web-hpa") && err.to_string().contains("2..5"), "{err}");
    // To zero is allowed: the HPA stops on a target with no replicas.
    let off = refusing.prepare(&action("scale-to-zero", serde_json::Value::Null)).await.unwrap();
    assert!(off.description.contains("stops while"), "{}", off.description);
    if let Some(double) = &tc.double {
        double.clear_requests();
    }
    refusing.apply(&off, &IdempotencyKey::new("r/off/fwd")).await.unwrap();
    assert_eq!(tc.get("web").await.spec.replicas, Some(0));
    if let Some(double) = &tc.double {
        let requests = double.requests();
        let path = format!("/apis/apps/v1/namespaces/{}/deployments/web", tc.namespace);
        assert!(requests.iter().any(|r| r.method == "PUT" && r.path == format!("{path}/scale")), "{requests:?}");
        assert!(!requests.iter().any(|r| r.method == "PATCH" && r.path == path), "the Deployment is never patched");
    }
    refusing.apply(&refusing.inverse(&off).unwrap(), &IdempotencyKey::new("r/off/undo")).await.unwrap();
    assert_eq!(tc.get("web").await.spec.replicas, Some(3));

    // adjust: the bounds widened for the step, the count set, both put back by the inverse.
    let adjusting = scale_target(&tc, HpaPolicy::Adjust);
    let up = adjusting.prepare(&action("scale", serde_json::json!({"replicas": 8}))).await.unwrap();
    assert!(up.description.contains("2..5 -> 2..8"), "{}", up.description);
    let key = IdempotencyKey::new("r/up/fwd");
    assert_eq!(adjusting.observe(&up, &key).await.unwrap(), Observed::NotStarted);
    adjusting.apply(&up, &key).await.unwrap();
    assert_eq!(bounds(&hpas.get("web-hpa").await.unwrap()), (2, 8));
    assert_eq!(tc.get("web").await.spec.replicas, Some(8));
    assert_eq!(adjusting.observe(&up, &key).await.unwrap(), Observed::Done);
    adjusting.apply(&up, &key).await.expect("applying a done change again is a no-op");
    let back = adjusting.inverse(&up).unwrap();
    adjusting.apply(&back, &IdempotencyKey::new("r/up/undo")).await.unwrap();
    assert_eq!(tc.get("web").await.spec.replicas, Some(3));
    assert_eq!(bounds(&hpas.get("web-hpa").await.unwrap()), (2, 5), "the HPA's bounds are restored");

    // Someone else moved the HPA meanwhile: the change is Diverged and refused.
    let stale = adjusting.prepare(&action("scale", serde_json::json!({"replicas": 9}))).await.unwrap();
    let mut h = hpas.get("web-hpa").await.unwrap();
    h.spec.max_replicas = 6;
    hpas.replace("web-hpa", &PostParams::default(), &h).await.unwrap();
    let key = IdempotencyKey::new("r/stale/fwd");
    assert!(matches!(adjusting.observe(&stale, &key).await.unwrap(), Observed::Diverged(_)));
    let err = adjusting.apply(&stale, &key).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert_eq!(tc.get("web").await.spec.replicas, Some(3), "a refused step scaled nothing");
    tc.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_restart_makes_new_pods_of_the_same_template_once() {
    let tc = TestCluster::new().await;
    tc.create("web", IMAGES[0], 2, serde_json::json!({})).await;
    tc.rolled_out("web").await;
    let target = tc.target("web");
    let pods: Api<Pod> = tc.cluster.api(&tc.namespace);
    let names = || async {
        let mut names: Vec<String> = pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        names.sort();
        names
    };
    let before = names().await;
    let change = target.prepare(&action("restart", serde_json::json!({}))).await.unwrap();
    let key = IdempotencyKey::new("r/restart/fwd");
    assert_eq!(target.observe(&change, &key).await.unwrap(), Observed::NotStarted);
    target.apply(&change, &key).await.unwrap();
    assert_eq!(target.observe(&change, &key).await.unwrap(), Observed::Done);
    let d = tc.get("web").await;
    let annotations = d.spec.template.metadata.unwrap().annotations.unwrap();
    assert!(annotations.contains_key("kubectl.kubernetes.io/restartedAt"), "{annotations:?}");
    let image = tc.get("web").await.spec.template.spec.unwrap().containers[0].image.clone();
    assert_eq!(image.as_deref(), Some(IMAGES[0]), "the same template otherwise");
    if tc.double.is_some() {
        let after = names().await;
        assert_eq!(after.len(), 2);
        assert!(after.iter().all(|n| !before.contains(n)), "every pod is new: {before:?} -> {after:?}");
    }
    let writes = tc.writes();
    target.apply(&change, &key).await.expect("a done restart applied again is a no-op");
    if let (Some(before), Some(after)) = (writes, tc.writes()) {
        assert_eq!(before, after, "no write for a done restart");
    }
    // Prepared, then someone deploys: the restart is refused, not stacked on their change.
    let stale = target.prepare(&action("restart", serde_json::Value::Null)).await.unwrap();
    tc.deploy("web", IMAGES[1]).await;
    let err = target.apply(&stale, &IdempotencyKey::new("r/restart2/fwd")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    let bad = target.prepare(&action("restart", serde_json::json!({"now": true}))).await.unwrap_err();
    assert_eq!(bad.kind(), ErrorKind::InvalidInput, "{bad}");
    assert!(bad.to_string().contains("now"), "{bad}");
    tc.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failing_pods_of_a_partial_failure_are_deleted_and_replaced() {
    let tc = TestCluster::new().await;
    let Some(double) = tc.double.as_ref() else {
        eprintln!("\n*** NOT RUN on a real cluster: making one pod crash needs the API double ***\n");
        return;
    };
    tc.create("web", IMAGES[0], 3, serde_json::json!({})).await;
    tc.rolled_out("web").await;
    let target = tc.target("web");
    let nothing = target.prepare(&action("delete-failing-pods", serde_json::Value::Null)).await.unwrap_err();
    assert_eq!(nothing.kind(), ErrorKind::AlreadyDone, "{nothing}");

    let pods: Api<Pod> = tc.cluster.api(&tc.namespace);
    let listed = || async { pods.list(&ListParams::default().labels("app=web")).await.unwrap().items };
    let victim = listed().await[0].clone();
    let (name, uid) = (victim.metadata.name.clone().unwrap(), victim.metadata.uid.clone().unwrap());
    double.crash_pod(&tc.namespace, &name);
    double.ticks(2);
    let change = target.prepare(&action("delete-failing-pods", serde_json::json!({}))).await.unwrap();
    assert!(
        change.description.contains(&name) && change.description.contains("CrashLoopBackOff"),
        "{}",
        change.description
    );
    let key = IdempotencyKey::new("r/pods/fwd");
    assert_eq!(target.observe(&change, &key).await.unwrap(), Observed::NotStarted);
    target.apply(&change, &key).await.unwrap();
    let now = listed().await;
    assert!(now.iter().all(|p| p.metadata.uid.as_deref() != Some(uid.as_str())), "the crashing pod is gone");
    assert_eq!(now.len(), 3, "its ReplicaSet replaced it");
    assert_eq!(target.observe(&change, &key).await.unwrap(), Observed::Done);
    target.apply(&change, &key).await.expect("applying it again deletes nothing");
    assert_eq!(listed().await.len(), 3);

    // Every pod failing is the release, not a partial failure: refused unless all = true.
    for p in listed().await {
        double.crash_pod(&tc.namespace, p.metadata.name.as_deref().unwrap());
    }
    double.ticks(2);
    let err = target.prepare(&action("delete-failing-pods", serde_json::Value::Null)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidState, "{err}");
    assert!(err.to_string().contains("every pod"), "{err}");
    let all = target.prepare(&action("delete-failing-pods", serde_json::json!({"all": true}))).await.unwrap();
    assert_eq!(all.from.unwrap().id, "pods:3");
    let typo =
        target.prepare(&action("delete-failing-pods", serde_json::json!({"not_ready": "5s"}))).await.unwrap_err();
    assert_eq!(typo.kind(), ErrorKind::InvalidInput, "{typo}");
    tc.cleanup().await;
}

/// A ReplicaSet re-used by our undo says when: the history gives it the undo's time
/// (so `before = T` can choose it); one re-used by someone else gets no time rather
/// than its creation time, which would be wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_set_reused_by_an_undo_keeps_a_usable_time() {
    let tc = TestCluster::new().await;
    tc.with_revisions("web", &IMAGES[..3]).await;
    let target = tc.target("web");
    let started = chrono::Utc::now() - chrono::Duration::seconds(1);
    let undo = target.prepare(&Request::To(rollback_core::Selector::Exact("1".into()))).await.unwrap();
    target.apply(&undo, &IdempotencyKey::new("r/undo/fwd")).await.unwrap();
    let history = target.history().await.unwrap();
    let newest = &history[0];
    assert_eq!(newest.version.label.as_deref(), Some("4"), "revision 1 re-used as 4");
    let at = newest.created.expect("the re-used ReplicaSet has the undo's time");
    // The stamp is the runner's clock, the clock a `before = T` is written in (the
    // double's virtual clock runs ahead of it, so creation times are not compared).
    assert!(at >= started && at <= chrono::Utc::now(), "{at} is the undo's time, not revision 1's creation");

    // Someone else re-uses revision 2's ReplicaSet (as kubectl rollout undo would):
    // no stamp for its new revision, so no time.
    tc.deploy("web", IMAGES[1]).await;
    tc.rolled_out("web").await;
    let history = target.history().await.unwrap();
    assert_eq!(history[0].version.label.as_deref(), Some("5"));
    assert_eq!(history[0].created, None, "a re-use we did not make has no known time");
    tc.cleanup().await;
}
