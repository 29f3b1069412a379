//! Traffic by replicas: scale a Deployment to zero and back to the recorded count.

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v1::{Scale, ScaleSpec};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::Api;
use kube::api::PostParams;
use serde::Deserialize;

use crate::cluster::{Cluster, ClusterConfig, FIELD_MANAGER, check_name};
use crate::deployment::WaitConfig;
use crate::error::err;
use crate::hpa::{self, HpaChange, HpaPolicy, HpaState};
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
    /// What to do when a HorizontalPodAutoscaler keeps the Deployment within bounds
    /// that exclude the count (`refuse`, the default, or `adjust`).
    #[serde(default)]
    pub hpa: HpaPolicy,
    /// Waiting for the replicas.
    #[serde(default, flatten)]
    pub wait: WaitConfig,
}

/// One Deployment's replica count, scaled with optimistic concurrency.
#[derive(Clone)]
pub(crate) struct Replicas {
    pub(crate) api: Api<Deployment>,
    pub(crate) hpas: Api<HorizontalPodAutoscaler>,
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

    pub(crate) fn what(&self) -> String {
        format!("deployment {}/{}", self.namespace, self.deployment)
    }

    /// Sets replicas from `from` to `to` through the `/scale` subresource (what an
    /// RBAC role with `deployments/scale` may do), compare-and-swap on the
    /// Deployment's resourceVersion: a no-op when already `to`, a conflict when
    /// neither.
    pub(crate) async fn scale(&self, from: i32, to: i32) -> Result<()> {
        let scale = self.api.get_scale(&self.deployment).await.map_err(err("get scale"))?;
        let live = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        if live == to {
            return Ok(());
        }
        if live != from {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("{} has {live} replicas, expected {from} (someone else scaled it)", self.what()),
            ));
        }
        let wanted = Scale { metadata: scale.metadata, spec: Some(ScaleSpec { replicas: Some(to) }), status: None };
        let params = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
        self.api
            .replace_scale(&self.deployment, &params, &wanted)
            .await
            .map_err(err("scale deployment"))
            .map_err(|e| e.with_context("deployment", self.what()))?;
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

/// Scale a Deployment through its `/scale` subresource: the actions `scale-to-zero`
/// (stop traffic) and `scale` with `{ "replicas": N }`. The change records the count
/// it found, so the inverse (the plan's `revert` or compensation) scales back to
/// exactly that. A HorizontalPodAutoscaler on the Deployment is found at prepare: a
/// count outside its bounds is refused, or the bounds widened for the step and put
/// back by the inverse (`hpa = "adjust"`).
pub struct ScaleTarget {
    name: TargetId,
    cluster_label: String,
    replicas: Replicas,
    hpa: HpaPolicy,
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

/// A k8s-scale change's payload.
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
struct ScalePayload {
    from: i32,
    to: i32,
    /// The HPA bounds changed for the step, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hpa: Option<HpaChange>,
}

fn payload(change: &Change) -> Result<ScalePayload> {
    serde_json::from_value(change.payload.clone())
        .map_err(|e| Error::invalid_input(format!("not a k8s-scale change (payload needs from and to): {e}")))
}

fn scale_change(name: &TargetId, what: &str, p: &ScalePayload, note: Option<&str>) -> Change {
    let (from, to) = (p.from, p.to);
    let note = note.map(|n| format!("; {n}")).unwrap_or_default();
    Change::new(name.clone(), "scale", Some(Version::new(from.to_string())), Version::new(to.to_string()))
        .describe(format!("{name}: scale {what} from {from} to {to} replicas{note}"))
        .with_payload(serde_json::to_value(p).unwrap_or_default())
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
                hpas: cluster.api(&config.namespace),
                namespace: config.namespace,
                deployment: config.deployment,
                wait: config.wait,
            },
            hpa: config.hpa,
        })
    }

    /// Connects as `config.cluster` says.
    pub async fn connect(name: &str, config: ScaleConfig) -> Result<Self> {
        let cluster = Cluster::connect(&config.cluster).await?;
        Self::new(name, cluster, config)
    }

    fn what(&self) -> String {
        self.replicas.what()
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
        let plan = hpa::plan(&self.replicas.hpas, &self.what(), &self.replicas.deployment, to, self.hpa).await?;
        let p = ScalePayload { from, to, hpa: plan.change };
        Ok(scale_change(&self.name, &self.what(), &p, plan.note.as_deref()))
    }

    async fn apply(&self, change: &Change, _key: &IdempotencyKey) -> Result<()> {
        let p = payload(change)?;
        // Bounds are widened before the count moves out of them, and narrowed after it
        // is back inside (else the HPA moves the count in between).
        let widening = p.hpa.as_ref().filter(|h| h.widens());
        if let Some(bounds) = widening {
            hpa::apply(&self.replicas.hpas, bounds).await?;
        }
        if p.from != p.to {
            self.replicas.scale(p.from, p.to).await?;
        }
        if let Some(bounds) = p.hpa.as_ref().filter(|h| !h.widens()) {
            hpa::apply(&self.replicas.hpas, bounds).await?;
        }
        self.replicas.wait().await
    }

    async fn observe(&self, change: &Change, _key: &IdempotencyKey) -> Result<Observed> {
        let p = payload(change)?;
        let hpa = match &p.hpa {
            Some(bounds) => hpa::observe(&self.replicas.hpas, bounds).await?,
            None => HpaState::After,
        };
        let d = self.replicas.get().await?;
        let live = Replicas::count(&d);
        let adjusted = p.hpa.is_some();
        Ok(match hpa {
            HpaState::Elsewhere(why) => Observed::Diverged(why),
            HpaState::After if live == p.to => match (self.replicas.wait.wait, rollout_status(&d)) {
                (false, _) | (true, RolloutStatus::Complete) => Observed::Done,
                (true, RolloutStatus::Waiting(m) | RolloutStatus::Failed(m)) => {
                    Observed::Partial(format!("scaled, not settled: {m}"))
                }
            },
            HpaState::Before if adjusted && live == p.to => {
                Observed::Partial("scaled; the HorizontalPodAutoscaler's bounds are not set yet".into())
            }
            HpaState::After if adjusted && live == p.from => {
                Observed::Partial("the HorizontalPodAutoscaler's bounds are set; not scaled yet".into())
            }
            _ if live == p.from => Observed::NotStarted,
            _ => Observed::Diverged(format!("{} has {live} replicas", self.what())),
        })
    }

    fn inverse(&self, change: &Change) -> Result<Change> {
        let p = payload(change)?;
        let back = ScalePayload { from: p.to, to: p.from, hpa: p.hpa.as_ref().map(HpaChange::inverse) };
        Ok(scale_change(&self.name, &self.what(), &back, None))
    }
}
