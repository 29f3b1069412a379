//! Canary rollback: the canary Deployment to zero, the stable one up.

use async_trait::async_trait;
use serde::Deserialize;

use crate::cluster::{Cluster, ClusterConfig, check_name};
use crate::deployment::WaitConfig;
use crate::scale::Replicas;
use rollback_core::{
    Capabilities, Category, Change, Error, ErrorKind, IdempotencyKey, Identity, Observed, Request, Result, Target,
    TargetId, Version,
};

/// Configuration of a [`CanaryTarget`] (`kind = "k8s-canary"`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CanaryConfig {
    /// Where the cluster is.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// The namespace of both Deployments.
    pub namespace: String,
    /// The canary Deployment.
    pub canary: String,
    /// The stable Deployment.
    pub stable: String,
    /// Waiting for the stable Deployment's replicas.
    #[serde(default, flatten)]
    pub wait: WaitConfig,
}

/// A canary rollback as one step: the action `rollback` (params `{ "stable_replicas": N }`,
/// default: stable + canary, keeping capacity) scales the canary to 0 first (the bad
/// version stops serving at once), then the stable Deployment up, and waits for it.
/// Both counts are recorded; the inverse restores them. `observe` tells the phase:
/// canary at 0 with stable not yet up is `Partial`, and applying again finishes.
pub struct CanaryTarget {
    name: TargetId,
    cluster_label: String,
    canary: Replicas,
    stable: Replicas,
}

impl std::fmt::Debug for CanaryTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CanaryTarget")
            .field("name", &self.name)
            .field("canary", &self.canary.deployment)
            .field("stable", &self.stable.deployment)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, serde::Serialize, Deserialize)]
struct Counts {
    canary: i32,
    stable: i32,
}

fn payload(change: &Change) -> Result<(Counts, Counts)> {
    let get = |k: &str| change.payload.get(k).cloned().and_then(|v| serde_json::from_value::<Counts>(v).ok());
    match (get("from"), get("to")) {
        (Some(from), Some(to)) => Ok((from, to)),
        _ => Err(Error::invalid_input("not a k8s-canary change (payload needs from and to)")),
    }
}

fn version(c: Counts) -> Version {
    Version::new(format!("canary={},stable={}", c.canary, c.stable))
}

impl CanaryTarget {
    /// A target on a connected cluster.
    pub fn new(name: &str, cluster: Cluster, config: CanaryConfig) -> Result<Self> {
        check_name("namespace", &config.namespace)?;
        check_name("canary deployment", &config.canary)?;
        check_name("stable deployment", &config.stable)?;
        if config.canary == config.stable {
            return Err(Error::invalid_input("the canary and stable Deployments must differ"));
        }
        let replicas = |deployment: String, wait: bool| Replicas {
            api: cluster.api(&config.namespace),
            hpas: cluster.api(&config.namespace),
            namespace: config.namespace.clone(),
            deployment,
            wait: WaitConfig { wait, ..config.wait },
        };
        Ok(CanaryTarget {
            name: TargetId::new(name),
            cluster_label: cluster.label.clone(),
            canary: replicas(config.canary.clone(), false),
            stable: replicas(config.stable.clone(), config.wait.wait),
        })
    }

    /// Connects as `config.cluster` says.
    pub async fn connect(name: &str, config: CanaryConfig) -> Result<Self> {
        let cluster = Cluster::connect(&config.cluster).await?;
        Self::new(name, cluster, config)
    }

    async fn live(&self) -> Result<Counts> {
        let (c, s) = (self.canary.get().await?, self.stable.get().await?);
        Ok(Counts { canary: Replicas::count(&c), stable: Replicas::count(&s) })
    }

    fn change(&self, from: Counts, to: Counts, note: Option<&str>) -> Change {
        let note = note.map(|n| format!("; {n}")).unwrap_or_default();
        Change::new(self.name.clone(), "canary", Some(version(from)), version(to))
            .describe(format!(
                "{}: canary {} {} -> {}, stable {} {} -> {}{note}",
                self.name,
                self.canary.deployment,
                from.canary,
                to.canary,
                self.stable.deployment,
                from.stable,
                to.stable
            ))
            .with_payload(serde_json::json!({"from": from, "to": to}))
    }
}

#[async_trait]
impl Target for CanaryTarget {
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
        let (c, s) = (self.canary.get().await?, self.stable.get().await?);
        Ok(Identity::new(format!(
            "k8s:{}/namespaces/{}/canary/{}@{}+{}@{}",
            self.cluster_label,
            self.canary.namespace,
            self.canary.deployment,
            c.metadata.uid.unwrap_or_default(),
            self.stable.deployment,
            s.metadata.uid.unwrap_or_default()
        )))
    }

    async fn current(&self) -> Result<Version> {
        Ok(version(self.live().await?))
    }

    async fn prepare(&self, request: &Request) -> Result<Change> {
        let Request::Action { action, params } = request else {
            return Err(Error::new(ErrorKind::Unsupported, "k8s-canary does the action rollback"));
        };
        if action != "rollback" {
            return Err(Error::new(ErrorKind::Unsupported, format!("k8s-canary does rollback, not {action}")));
        }
        let from = self.live().await?;
        let stable = match params.get("stable_replicas") {
            None => from.stable + from.canary,
            Some(v) => v
                .as_i64()
                .filter(|n| (0..=i64::from(i32::MAX)).contains(n))
                .map(|n| n as i32)
                .ok_or_else(|| Error::invalid_input("params.stable_replicas must be a number ≥ 0"))?,
        };
        // A HorizontalPodAutoscaler on the stable Deployment that would undo its new
        // count is refused here (the canary's, at zero replicas, stops by itself).
        let plan = crate::hpa::plan(
            &self.stable.hpas,
            &self.stable.what(),
            &self.stable.deployment,
            stable,
            crate::hpa::HpaPolicy::Refuse,
        )
        .await?;
        Ok(self.change(from, Counts { canary: 0, stable }, plan.note.as_deref()))
    }

    async fn apply(&self, change: &Change, key: &IdempotencyKey) -> Result<()> {
        let (from, to) = payload(change)?;
        if let Observed::Diverged(detail) = self.observe(change, key).await? {
            return Err(Error::new(ErrorKind::Conflict, format!("{} changed under us: {detail}", self.name)));
        }
        self.canary.scale(from.canary, to.canary).await?;
        self.stable.scale(from.stable, to.stable).await?;
        self.stable.wait().await
    }

    async fn observe(&self, change: &Change, _key: &IdempotencyKey) -> Result<Observed> {
        let (from, to) = payload(change)?;
        let live = self.live().await?;
        let (canary_done, stable_done) = (live.canary == to.canary, live.stable == to.stable);
        Ok(match (canary_done, stable_done) {
            (true, true) => {
                if self.stable.wait.wait
                    && !matches!(
                        crate::rollout::rollout_status(&self.stable.get().await?),
                        crate::rollout::RolloutStatus::Complete
                    )
                {
                    Observed::Partial("scaled; stable replicas not all available yet".into())
                } else {
                    Observed::Done
                }
            }
            (true, false) if live.stable == from.stable => {
                Observed::Partial(format!("canary at {}, stable still {}", live.canary, live.stable))
            }
            _ if live.canary == from.canary && live.stable == from.stable => Observed::NotStarted,
            _ => Observed::Diverged(format!("live counts are {}", version(live).id)),
        })
    }

    fn inverse(&self, change: &Change) -> Result<Change> {
        let (from, to) = payload(change)?;
        Ok(self.change(to, from, None))
    }
}
