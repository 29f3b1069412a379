//! The sample plans `examples/plans/k8s-*.toml` build from their specs through
//! `rollback_k8s::register` and dry-run against the API double without a write.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use rollback_core::{Engine, MemoryJournal, MemoryLock, Plan, Registry};
use rollback_k8s::double::ApiDouble;

const PLANS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/plans");

async fn deployment(double: &ApiDouble, name: &str, replicas: i32) {
    let api: Api<Deployment> = Api::namespaced(double.client("shop"), "shop");
    let d: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": "app:1"}]}}}
    }))
    .unwrap();
    api.create(&PostParams::default(), &d).await.unwrap();
    double.ticks(5);
    let patch =
        serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}}});
    api.patch(name, &PatchParams::default(), &Patch::Strategic(patch)).await.unwrap();
    double.ticks(20);
}

fn load(file: &str, double: &ApiDouble) -> Plan {
    let text = std::fs::read_to_string(format!("{PLANS}/{file}"))
        .unwrap()
        .replace(
            "namespace = \"${K8S_NAMESPACE}\"",
            &format!("cluster = {{ url = \"{}\" }}, namespace = \"shop\"", double.url()),
        )
        .replace("${K8S_DEPLOYMENT}", "web")
        .replace("${K8S_SERVICE}", "web");
    Plan::from_toml_str(&text).unwrap()
}

fn engine(dir: &std::path::Path) -> Engine {
    let mut registry = Registry::new();
    rollback_k8s::register(&mut registry);
    Engine::builder(registry)
        .journal(Arc::new(MemoryJournal::new()))
        .lock(Arc::new(MemoryLock::new()))
        .artifacts_dir(dir)
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_plans_dry_run_on_the_double_without_writes() {
    let double =
        ApiDouble::start_with(rollback_k8s::double::DoubleOptions { background: None, ..Default::default() }).await;
    deployment(&double, "web", 2).await;
    deployment(&double, "web-canary", 1).await;
    deployment(&double, "web-stable", 3).await;
    let svc: Service =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}}}))
            .unwrap();
    Api::<Service>::namespaced(double.client("shop"), "shop").create(&PostParams::default(), &svc).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let writes = double.writes().len();
    let dry = engine(dir.path()).dry_run(&load("k8s-deployment.toml", &double)).await.unwrap().to_string();
    assert!(dry.contains("roll deployment shop/web back from revision") && dry.contains("selector"), "{dry}");
    let dry = engine(dir.path()).dry_run(&load("k8s-canary.toml", &double)).await.unwrap().to_string();
    assert!(dry.contains("web-canary 1 -> 0") && dry.contains("web-stable 3 -> 10"), "{dry}");
    assert_eq!(double.writes().len(), writes, "dry runs made no write call");
}
