//! The cluster the integration suite runs against: the API double by default, a real
//! cluster when `ROLLBACK_TEST_KUBECONFIG` names a kubeconfig (each test then works in
//! its own namespace `rb-test-*`, deleted at the end). The tests are the same for both.

#![allow(dead_code)]

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use rollback_k8s::double::ApiDouble;
use rollback_k8s::{Cluster, ClusterConfig, DeploymentConfig, DeploymentTarget, WaitConfig};

/// Real images, so the same deployments run on a real cluster.
pub const IMAGES: [&str; 4] = [
    "registry.k8s.io/pause:3.8",
    "registry.k8s.io/pause:3.9",
    "registry.k8s.io/pause:3.10",
    "registry.k8s.io/pause:3.7",
];
/// An image that never pulls (on the double: its name contains "broken").
pub const BROKEN: &str = "registry.invalid/broken:1";

pub struct TestCluster {
    pub cluster: Cluster,
    pub double: Option<ApiDouble>,
    pub namespace: String,
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{}-{:x}-{}", std::process::id(), nanos, N.fetch_add(1, Ordering::SeqCst))
}

impl TestCluster {
    pub async fn new() -> Self {
        let (cluster, double) = match std::env::var("ROLLBACK_TEST_KUBECONFIG") {
            Ok(path) if !path.is_empty() => {
                let config = ClusterConfig { kubeconfig: Some(path.into()), ..Default::default() };
                (Cluster::connect(&config).await.expect("connect to the ROLLBACK_TEST_KUBECONFIG cluster"), None)
            }
            _ => {
                let double = ApiDouble::start().await;
                (double.cluster(), Some(double))
            }
        };
        let namespace = format!("rb-test-{}", unique());
        let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": namespace}})).unwrap();
        Api::<Namespace>::all(cluster.client.clone()).create(&PostParams::default(), &ns).await.unwrap();
        TestCluster { cluster, double, namespace }
    }

    pub fn is_real(&self) -> bool {
        self.double.is_none()
    }

    pub fn wait(&self) -> WaitConfig {
        WaitConfig {
            wait: true,
            timeout: Duration::from_secs(if self.is_real() { 300 } else { 60 }),
            poll_interval: Duration::from_millis(if self.is_real() { 1000 } else { 20 }),
        }
    }

    pub fn deployments(&self) -> Api<Deployment> {
        self.cluster.api(&self.namespace)
    }

    pub fn target(&self, name: &str) -> DeploymentTarget {
        DeploymentTarget::new(
            name,
            self.cluster.clone(),
            DeploymentConfig {
                cluster: Default::default(),
                namespace: self.namespace.clone(),
                deployment: name.into(),
                wait: self.wait(),
            },
        )
        .unwrap()
    }

    /// Creates a Deployment of `replicas` pods of `image` (label `app=<name>`).
    pub async fn create(&self, name: &str, image: &str, replicas: i32, extra_spec: serde_json::Value) {
        let mut d = serde_json::json!({
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "progressDeadlineSeconds": 600,
                "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}},
                             "spec": {"containers": [{"name": "app", "image": image}]}}
            }
        });
        json_patch::merge(&mut d, &extra_spec);
        let d: Deployment = serde_json::from_value(d).unwrap();
        self.deployments().create(&PostParams::default(), &d).await.unwrap();
    }

    /// A deploy: a new image, with a change-cause, as `kubectl set image` + annotate would.
    pub async fn deploy(&self, name: &str, image: &str) {
        let patch = serde_json::json!({
            "metadata": {"annotations": {"kubernetes.io/change-cause": format!("deploy {image}")}},
            "spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}
        });
        self.deployments().patch(name, &PatchParams::default(), &Patch::Strategic(patch)).await.unwrap();
    }

    pub async fn rolled_out(&self, name: &str) {
        self.target(name).wait_for_rollout().await.unwrap();
    }

    /// A Deployment with one revision per image, the last one live and rolled out.
    pub async fn with_revisions(&self, name: &str, images: &[&str]) {
        self.create(name, images[0], 2, serde_json::json!({})).await;
        self.rolled_out(name).await;
        for image in &images[1..] {
            self.deploy(name, image).await;
            self.rolled_out(name).await;
        }
    }

    pub async fn get(&self, name: &str) -> Deployment {
        self.deployments().get(name).await.unwrap()
    }

    /// Number of write requests the double saw (None on a real cluster).
    pub fn writes(&self) -> Option<usize> {
        self.double.as_ref().map(|d| d.writes().len())
    }

    pub async fn cleanup(self) {
        let _ =
            Api::<Namespace>::all(self.cluster.client.clone()).delete(&self.namespace, &DeleteParams::default()).await;
    }
}
