//! Traffic by replicas: scale a Deployment to zero and back to the recorded count.

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use serde::Deserialize;

use crate::cluster::{
    Cluster, ClusterConfig, SCALE_KEY_ANNOTATION, check_name, patch_if_unchanged, set_annotation_ops,
};
use crate::deployment::WaitConfig;
use crate::error::err;
use crate::rollout::{RolloutStatus, rollout_status};
use rollback_core::{
    Capabilities, Category, Change, Error, ErrorKind, IdempotencyKey, Identity, Observed, Request, Result, Target,
    TargetId, Version,
};

/// Configuration of a [`ScaleTarget`] (`kind = "k8s-scale"`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScaleConfig {
    /// Where the cluster is.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// The namespace.
    pub namespace: String,
    /// The Deployment's name.
    pub deployment: String,
    /// Waiting for the replicas.
    #[serde(default, flatten)]
    pub wait: WaitConfig,
}

/// One Deployment's replica count, scaled with optimistic concurrency.
#[derive(Clone)]
pub(crate) struct Replicas {
    pub(crate) api: Api<Deployment>,
    pub(crate) namespace: String,
    pub(crate) deployment: String,
    pub(crate) wait: WaitConfig,
}

impl Replicas {
    pub(crate) async fn get(&self) -> Result<Deployment> {
        self.api
            .get(&self.deployment)
            .await
            .map_err(err("get deployment"))
            .map_err(|e| e.with_context("deployment", format!("{}/{}", self.namespace, self.deployment)))
    }

    pub(crate) fn count(d: &Deployment) -> i32 {
        d.spec.replicas.unwrap_or(1)
    }

    pub(crate) fn stamped(d: &Deployment) -> Option<&str> {
        d.metadata.annotations.as_ref()?.get(SCALE_KEY_ANNOTATION).map(String::as_str)
    }

    /// Sets replicas from `from` to `to` (a no-op when already `to` with this key; a
    /// conflict when neither), stamping `key`.
    pub(crate) async fn scale(&self, from: i32, to: i32, key: &IdempotencyKey) -> Result<()> {
        let d = self.get().await?;
        let live = Self::count(&d);
        if live == to && Self::stamped(&d) == Some(key.as_str()) {
            return Ok(());
        }
        if live != from && live != to {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "deployment {}/{} has {live} replicas, expected {from} (someone else scaled it)",
                    self.namespace, self.deployment
                ),
            ));
        }
        let rv = d.metadata.resource_version.clone().unwrap_or_default();
        let ops = vec![
            serde_json::json!({"op": "replace", "path": "/spec/replicas", "value": to}),
            set_annotation_ops(d.metadata.annotations.as_ref(), SCALE_KEY_ANNOTATION, key.as_str()),
        ];
        patch_if_unchanged(&self.api, &self.deployment, &rv, ops, "scale deployment").await?;
        tracing::info!(deployment = %self.deployment, from, to, "scaled");
        Ok(())
    }

    /// Waits until the Deployment has exactly its replicas, all updated and available.
    pub(crate) async fn wait(&self) -> Result<()> {
        if !self.wait.wait {
            return Ok(());
        }
        let started = std::time::Instant::now();
        loop {
            match rollout_status(&self.get().await?) {
                RolloutStatus::Complete => return Ok(()),
                RolloutStatus::Failed(m) => {
                    return Err(Error::new(ErrorKind::Backend, format!("scaling failed: {m}")).set_retryable(false));
                }
                RolloutStatus::Waiting(m) if started.elapsed() >= self.wait.timeout => {
                    return Err(Error::new(
                        ErrorKind::Timeout,
                        format!(
                            "deployment {}/{} not scaled after {:?}: {m}",
                            self.namespace, self.deployment, self.wait.timeout
                        ),
                    ));
                }
                RolloutStatus::Waiting(_) => tokio::time::sleep(self.wait.poll_interval).await,
            }
        }
    }
}

/// Scale a Deployment: the actions `scale-to-zero` (stop traffic) and `scale` with
/// `{ "replicas": N }`. The change records the count it found, so the inverse (the
/// plan's `revert` or compensation) scales back to exactly that. The run key goes in
/// the annotation `rollback.dev/scale-key`.
pub struct ScaleTarget {
    name: TargetId,
    cluster_label: String,
    replicas: Replicas,
}

impl std::fmt::Debug for ScaleTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScaleTarget")
            .field("name", &self.name)
            .field("namespace", &self.replicas.namespace)
            .field("deployment", &self.replicas.deployment)
            .finish()
    }
}

fn counts(change: &Change) -> Result<(i32, i32)> {
    let get = |k: &str| change.payload.get(k).and_then(|v| v.as_i64()).and_then(|v| i32::try_from(v).ok());
    match (get("from"), get("to")) {
        (Some(from), Some(to)) => Ok((from, to)),
        _ => Err(Error::invalid_input("not a k8s-scale change (payload needs from and to)")),
    }
}

fn scale_change(name: &TargetId, what: &str, from: i32, to: i32) -> Change {
    Change::new(name.clone(), "scale", Some(Version::new(from.to_string())), Version::new(to.to_string()))
        .describe(format!("{name}: scale {what} from {from} to {to} replicas"))
        .with_payload(serde_json::json!({"from": from, "to": to}))
}

impl ScaleTarget {
    /// A target on a connected cluster.
    pub fn new(name: &str, cluster: Cluster, config: ScaleConfig) -> Result<Self> {
        check_name("namespace", &config.namespace)?;
        check_name("deployment", &config.deployment)?;
        Ok(ScaleTarget {
            name: TargetId::new(name),
            cluster_label: cluster.label.clone(),
            replicas: Replicas {
                api: cluster.api(&config.namespace),
                namespace: config.namespace,
                deployment: config.deployment,
                wait: config.wait,
            },
        })
    }

    /// Connects as `config.cluster` says.
    pub async fn connect(name: &str, config: ScaleConfig) -> Result<Self> {
        let cluster = Cluster::connect(&config.cluster).await?;
        Self::new(name, cluster, config)
    }

    fn what(&self) -> String {
        format!("deployment {}/{}", self.replicas.namespace, self.replicas.deployment)
    }
}

#[async_trait]
impl Target for ScaleTarget {
    fn name(&self) -> &TargetId {
        &self.name
    }

    fn kind(&self) -> &str {
        <Self as rollback_core::kind::Kind>::KIND
    }

    fn category(&self) -> Category {
        Category::Traffic
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { versioned: false, converges_from_partial: true }
    }

    async fn identity(&self) -> Result<Identity> {
        let d = self.replicas.get().await?;
        Ok(Identity::new(format!(
            "k8s:{}/namespaces/{}/deployments/{}@{}",
            self.cluster_label,
            self.replicas.namespace,
            self.replicas.deployment,
            d.metadata.uid.unwrap_or_default()
        )))
    }

    async fn current(&self) -> Result<Version> {
        Ok(Version::new(Replicas::count(&self.replicas.get().await?).to_string()))
    }

    async fn prepare(&self, request: &Request) -> Result<Change> {
        let to = match request {
            Request::Action { action, .. } if action == "scale-to-zero" => 0,
            Request::Action { action, params } if action == "scale" => params
                .get("replicas")
                .and_then(|v| v.as_i64())
                .filter(|n| (0..=i64::from(i32::MAX)).contains(n))
                .map(|n| n as i32)
                .ok_or_else(|| Error::invalid_input("action \"scale\" needs params.replicas, a number ≥ 0"))?,
            other => {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!("k8s-scale does scale-to-zero and scale {{replicas}}, not {other}"),
                ));
            }
        };
        let from = Replicas::count(&self.replicas.get().await?);
        Ok(scale_change(&self.name, &self.what(), from, to))
    }

    async fn apply(&self, change: &Change, key: &IdempotencyKey) -> Result<()> {
        let (from, to) = counts(change)?;
        if from != to {
            self.replicas.scale(from, to, key).await?;
        }
        self.replicas.wait().await
    }

    async fn observe(&self, change: &Change, key: &IdempotencyKey) -> Result<Observed> {
        let (from, to) = counts(change)?;
        let d = self.replicas.get().await?;
        let live = Replicas::count(&d);
        Ok(if live == to && (from == to || Replicas::stamped(&d) == Some(key.as_str())) {
            match (self.replicas.wait.wait, rollout_status(&d)) {
                (false, _) | (true, RolloutStatus::Complete) => Observed::Done,
                (true, RolloutStatus::Waiting(m) | RolloutStatus::Failed(m)) => {
                    Observed::Partial(format!("scaled, not settled: {m}"))
                }
            }
        } else if live == from {
            Observed::NotStarted
        } else {
            Observed::Diverged(format!("{} has {live} replicas", self.what()))
        })
    }

    fn inverse(&self, change: &Change) -> Result<Change> {
        let (from, to) = counts(change)?;
        Ok(scale_change(&self.name, &self.what(), to, from))
    }
}
