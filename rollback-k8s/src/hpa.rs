//! HorizontalPodAutoscalers on a scaled Deployment: found at prepare, then refused
//! or adjusted as the step's configuration says.
//!
//! An HPA keeps its target's replicas between `minReplicas` and `maxReplicas` and
//! moves them by its metrics, so a count set outside those bounds is undone within
//! seconds (argo-rollouts users hit this often). Scaling to zero is left alone: the
//! HPA controller stops acting on a target with zero replicas ("ScalingDisabled") and
//! resumes when it is scaled up again.

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::Api;
use kube::api::ListParams;
use serde::{Deserialize, Serialize};

use crate::cluster::patch_if_unchanged;
use crate::error::err;
use rollback_core::{Error, ErrorKind, Result};

/// What a scale step does when a HorizontalPodAutoscaler manages its Deployment and
/// the count it sets is outside the HPA's bounds.
///
/// ```
/// let policy: rollback_k8s::HpaPolicy = serde_json::from_str("\"adjust\"").unwrap();
/// assert_eq!(policy, rollback_k8s::HpaPolicy::Adjust);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HpaPolicy {
    /// Refuse the step at prepare, naming the HPA and its bounds.
    #[default]
    Refuse,
    /// Widen the HPA's bounds to include the count for the step; the inverse step
    /// puts them back.
    Adjust,
}

/// An HPA's replica bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Bounds {
    pub(crate) min: i32,
    pub(crate) max: i32,
}

impl std::fmt::Display for Bounds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}..{}", self.min, self.max)
    }
}

/// A planned change of one HPA's bounds, journaled in the step's change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HpaChange {
    pub(crate) name: String,
    pub(crate) from: Bounds,
    pub(crate) to: Bounds,
}

impl HpaChange {
    /// Whether the new bounds contain the old ones.
    pub(crate) fn widens(&self) -> bool {
        self.to.min <= self.from.min && self.to.max >= self.from.max
    }

    /// The same HPA put back.
    pub(crate) fn inverse(&self) -> Self {
        HpaChange { name: self.name.clone(), from: self.to, to: self.from }
    }
}

/// What prepare found: nothing to do, a note for the description, or a change.
pub(crate) struct HpaPlan {
    pub(crate) change: Option<HpaChange>,
    pub(crate) note: Option<String>,
}

fn bounds(hpa: &HorizontalPodAutoscaler) -> Bounds {
    Bounds { min: hpa.spec.min_replicas.unwrap_or(1), max: hpa.spec.max_replicas }
}

/// The HPAs of a namespace that scale `deployment` (one list request; a cluster that
/// does not serve `autoscaling/v2` has none).
async fn managing(api: &Api<HorizontalPodAutoscaler>, deployment: &str) -> Result<Vec<HorizontalPodAutoscaler>> {
    let list = match api.list(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(kube::Error::Api(status)) if status.code == 404 => return Ok(Vec::new()),
        Err(e) => return Err(err("list horizontalpodautoscalers")(e)),
    };
    Ok(list
        .into_iter()
        .filter(|h| h.spec.scale_target_ref.kind == "Deployment" && h.spec.scale_target_ref.name == deployment)
        .collect())
}

/// Decides what to do about the HPAs on `deployment` before it is scaled to `to`.
pub(crate) async fn plan(
    api: &Api<HorizontalPodAutoscaler>,
    what: &str,
    deployment: &str,
    to: i32,
    policy: HpaPolicy,
) -> Result<HpaPlan> {
    let hpas = managing(api, deployment).await?;
    let Some(hpa) = hpas.first() else { return Ok(HpaPlan { change: None, note: None }) };
    let name = hpa.metadata.name.clone().unwrap_or_default();
    if hpas.len() > 1 {
        let names: Vec<String> = hpas.iter().filter_map(|h| h.metadata.name.clone()).collect();
        return Err(Error::new(
            ErrorKind::InvalidState,
            format!(
                "{what} is scaled by {} HorizontalPodAutoscalers ({}); Kubernetes refuses to act on it",
                names.len(),
                names.join(", ")
            ),
        ));
    }
    let from = bounds(hpa);
    if to == 0 {
        let note = format!("HorizontalPodAutoscaler {name} ({from}) stops while {what} has 0 replicas");
        return Ok(HpaPlan { change: None, note: Some(note) });
    }
    if (from.min..=from.max).contains(&to) {
        let note = format!("HorizontalPodAutoscaler {name} ({from}) may move the count by its metrics afterwards");
        return Ok(HpaPlan { change: None, note: Some(note) });
    }
    match policy {
        HpaPolicy::Refuse => Err(Error::new(
            ErrorKind::InvalidState,
            format!(
                "{what} is scaled by HorizontalPodAutoscaler {name}, which keeps it within {from} replicas: {to} would \
                 be undone; choose a count inside, or set hpa = \"adjust\" to widen its bounds for the step (the \
                 inverse restores them)"
            ),
        )),
        HpaPolicy::Adjust => {
            let to_bounds = Bounds { min: from.min.min(to), max: from.max.max(to) };
            let note = format!("HorizontalPodAutoscaler {name}: bounds {from} -> {to_bounds} for the step");
            Ok(HpaPlan { change: Some(HpaChange { name, from, to: to_bounds }), note: Some(note) })
        }
    }
}

/// Where the HPA of a planned change stands.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HpaState {
    Before,
    After,
    Elsewhere(String),
}

pub(crate) async fn observe(api: &Api<HorizontalPodAutoscaler>, change: &HpaChange) -> Result<HpaState> {
    let hpa = api.get_opt(&change.name).await.map_err(err("get horizontalpodautoscaler"))?;
    let Some(hpa) = hpa else {
        return Ok(HpaState::Elsewhere(format!("HorizontalPodAutoscaler {} is gone", change.name)));
    };
    let live = bounds(&hpa);
    Ok(if live == change.to {
        HpaState::After
    } else if live == change.from {
        HpaState::Before
    } else {
        HpaState::Elsewhere(format!("HorizontalPodAutoscaler {} has bounds {live}", change.name))
    })
}

/// Sets the bounds, compare-and-swap on the HPA's resourceVersion; a no-op when they
/// are already there, a conflict when they are neither before nor after.
pub(crate) async fn apply(api: &Api<HorizontalPodAutoscaler>, change: &HpaChange) -> Result<()> {
    let hpa = api.get(&change.name).await.map_err(err("get horizontalpodautoscaler"))?;
    let live = bounds(&hpa);
    if live == change.to {
        return Ok(());
    }
    if live != change.from {
        return Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "HorizontalPodAutoscaler {} has bounds {live}, expected {} (someone else changed it)",
                change.name, change.from
            ),
        ));
    }
    let rv = hpa.metadata.resource_version.clone().unwrap_or_default();
    let ops = vec![
        serde_json::json!({"op": "add", "path": "/spec/minReplicas", "value": change.to.min}),
        serde_json::json!({"op": "replace", "path": "/spec/maxReplicas", "value": change.to.max}),
    ];
    patch_if_unchanged(api, &change.name, &rv, ops, "adjust horizontalpodautoscaler").await?;
    tracing::info!(hpa = %change.name, from = %change.from, to = %change.to, "adjusted HPA bounds");
    Ok(())
}
