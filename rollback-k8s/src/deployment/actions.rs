//! The Deployment's actions besides undo, from runbook 004's "partial failure":
//!
//! - `restart`: `kubectl rollout restart` — the template annotation
//!   `kubectl.kubernetes.io/restartedAt`, fixed at prepare, so the change's `to` is the
//!   absolute template it makes; compare-and-swap on the template's content and the
//!   resourceVersion; then the rollout wait.
//! - `delete-failing-pods`: the Deployment's pods in `CrashLoopBackOff` (or another
//!   container back-off), failed, or not ready for longer than `not_ready_for`, listed
//!   once at prepare by name and uid and deleted with a uid precondition (a pod that
//!   replaced one is never deleted); their ReplicaSets start new ones. Every pod
//!   failing is refused unless `all = true`: that is a bad release, for `undo`.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Preconditions};
use serde::{Deserialize, Serialize};

use super::DeploymentTarget;
use crate::cluster::{UNDO_KEY_ANNOTATION, escape_pointer, patch_if_unchanged};
use crate::error::err;
use crate::rollout::{RolloutStatus, rollout_status, template_id};
use rollback_core::{Change, Error, ErrorKind, IdempotencyKey, Observed, Result, Reversibility, Version};

/// The annotation `kubectl rollout restart` sets on the pod template.
pub(crate) const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// Container waiting reasons that mean the pod will not recover by itself.
const BACK_OFF: &[&str] =
    &["CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError", "RunContainerError"];

pub(super) const RESTART: &str = "restart";
pub(super) const DELETE_PODS: &str = "delete-pods";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RestartParams {}

#[derive(Debug, Serialize, Deserialize)]
struct RestartPayload {
    uid: String,
    restarted_at: String,
}

fn no_params<T: serde::de::DeserializeOwned>(action: &str, params: &serde_json::Value) -> Result<T> {
    let params = if params.is_null() { serde_json::json!({}) } else { params.clone() };
    serde_json::from_value(params).map_err(|e| Error::invalid_input(format!("action {action:?}: {e}")))
}

fn payload_of<T: serde::de::DeserializeOwned>(change: &Change) -> Result<T> {
    serde_json::from_value(change.payload.clone())
        .map_err(|e| Error::invalid_input(format!("not a k8s-deployment {} change: {e}", change.kind)))
}

impl DeploymentTarget {
    pub(super) async fn prepare_restart(&self, params: &serde_json::Value) -> Result<Change> {
        let _: RestartParams = no_params(RESTART, params)?;
        let (d, rses) = self.load().await?;
        self.refuse_paused(&d)?;
        let restarted_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mut template = d.spec.template.clone();
        template
            .metadata
            .get_or_insert_default()
            .annotations
            .get_or_insert_default()
            .insert(RESTARTED_AT.into(), restarted_at.clone());
        let from = super::live_version(&d, &rses);
        let to = Version::labeled(template_id(&template), format!("restarted at {restarted_at}"));
        let payload = RestartPayload { uid: d.metadata.uid.clone().unwrap_or_default(), restarted_at };
        Ok(Change::new(self.name.clone(), RESTART, Some(from), to)
            .describe(format!(
                "{}: restart {} (kubectl rollout restart: new pods, same template)",
                self.name,
                self.what()
            ))
            .with_payload(serde_json::to_value(&payload).map_err(|e| Error::internal(e.to_string()))?)
            .with_reversibility(Reversibility::Irreversible))
    }

    pub(super) async fn apply_restart(&self, change: &Change, key: &IdempotencyKey) -> Result<()> {
        let payload: RestartPayload = payload_of(change)?;
        let d = self.get().await?;
        let patched = match self.restart_state(&d, change, &payload) {
            Observed::NotStarted => {
                self.refuse_paused(&d)?;
                let rv = d.metadata.resource_version.clone().unwrap_or_default();
                let template_annotations = d.spec.template.metadata.as_ref().and_then(|m| m.annotations.as_ref());
                let restart = match template_annotations {
                    Some(_) => serde_json::json!({"op": "add",
                        "path": format!("/spec/template/metadata/annotations/{}", escape_pointer(RESTARTED_AT)),
                        "value": payload.restarted_at}),
                    None => serde_json::json!({"op": "add", "path": "/spec/template/metadata/annotations",
                        "value": {RESTARTED_AT: payload.restarted_at}}),
                };
                let stamp = crate::cluster::set_annotation_ops(
                    d.metadata.annotations.as_ref(),
                    UNDO_KEY_ANNOTATION,
                    key.as_str(),
                );
                let ops = vec![restart, stamp];
                let patched =
                    patch_if_unchanged(&self.deployments(), &self.deployment, &rv, ops, "restart deployment").await?;
                tracing::info!(deployment = %self.deployment, "deployment restarted");
                Some(patched)
            }
            Observed::Diverged(why) => return Err(Error::new(ErrorKind::Conflict, why)),
            Observed::Done | Observed::Partial(_) => None,
        };
        if self.wait.wait { self.wait_from(patched).await } else { Ok(()) }
    }

    fn restart_state(&self, d: &Deployment, change: &Change, payload: &RestartPayload) -> Observed {
        if d.metadata.uid.as_deref() != Some(payload.uid.as_str()) {
            return Observed::Diverged(format!("{} was deleted and re-created", self.what()));
        }
        let live = template_id(&d.spec.template);
        if live == change.to.id {
            return match (self.wait.wait, rollout_status(d)) {
                (false, _) | (true, RolloutStatus::Complete) => Observed::Done,
                (true, RolloutStatus::Waiting(m) | RolloutStatus::Failed(m)) => {
                    Observed::Partial(format!("restarted, rollout not complete: {m}"))
                }
            };
        }
        if Some(live.as_str()) == change.from.as_ref().map(|f| f.id.as_str()) {
            return Observed::NotStarted;
        }
        Observed::Diverged(format!("the live template is {live}, neither before nor after the restart"))
    }

    pub(super) async fn observe_restart(&self, change: &Change) -> Result<Observed> {
        let payload: RestartPayload = payload_of(change)?;
        Ok(self.restart_state(&self.get().await?, change, &payload))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeletePodsParams {
    /// A pod not ready for longer than this counts as failing (default 60 s).
    #[serde(default = "default_not_ready_for", with = "humantime_serde")]
    not_ready_for: Duration,
    /// Delete even when every pod is failing (default false: that is a bad release).
    #[serde(default)]
    all: bool,
}

fn default_not_ready_for() -> Duration {
    Duration::from_secs(60)
}

/// One pod to delete, as listed at prepare.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Doomed {
    name: String,
    uid: String,
    why: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct DeletePodsPayload {
    pods: Vec<Doomed>,
}

/// Why a pod is failing, if it is.
fn failing(pod: &Pod, now: chrono::DateTime<chrono::Utc>, not_ready_for: Duration) -> Option<String> {
    let status = pod.status.as_ref()?;
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    if status.phase.as_deref() == Some("Failed") {
        return Some("phase Failed".into());
    }
    for c in status.container_statuses.iter().flatten() {
        if let Some(reason) = c.state.as_ref().and_then(|s| s.waiting.as_ref()).and_then(|w| w.reason.as_deref())
            && BACK_OFF.contains(&reason)
        {
            return Some(format!("container {} in {reason} ({} restarts)", c.name, c.restart_count));
        }
    }
    let ready = status.conditions.iter().flatten().find(|c| c.type_ == "Ready")?;
    let since = ready
        .last_transition_time
        .as_ref()
        .map(|t| t.0.as_second())
        .or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0.as_second()))?;
    let for_secs = now.timestamp() - since;
    (ready.status == "False" && for_secs >= not_ready_for.as_secs() as i64)
        .then(|| format!("not ready for {for_secs} s"))
}

impl DeploymentTarget {
    /// The Deployment and the pods its ReplicaSets control (one list by its selector;
    /// `load` keeps only the ReplicaSets the Deployment controls).
    async fn pods(&self) -> Result<(Deployment, Vec<Pod>)> {
        let (d, rses) = self.load().await?;
        let owned: Vec<String> = rses.iter().filter_map(|rs| rs.metadata.uid.clone()).collect();
        let selector = super::selector_of(&d);
        let api: Api<Pod> = self.cluster.api(&self.namespace);
        let list = api.list(&ListParams::default().labels(&selector)).await.map_err(err("list pods"))?;
        let pods = list
            .items
            .into_iter()
            .filter(|p| {
                p.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.controller == Some(true) && owned.contains(&o.uid))
            })
            .collect();
        Ok((d, pods))
    }

    pub(super) async fn prepare_delete_pods(&self, params: &serde_json::Value) -> Result<Change> {
        let params: DeletePodsParams = no_params("delete-failing-pods", params)?;
        let (_, pods) = self.pods().await?;
        let now = chrono::Utc::now();
        let doomed: Vec<Doomed> = pods
            .iter()
            .filter_map(|p| {
                let why = failing(p, now, params.not_ready_for)?;
                Some(Doomed { name: p.metadata.name.clone()?, uid: p.metadata.uid.clone()?, why })
            })
            .collect();
        if doomed.is_empty() {
            return Err(Error::already_done(format!("{} has no failing pods (of {})", self.what(), pods.len())));
        }
        let live = pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).count();
        if doomed.len() == live && !params.all {
            return Err(Error::new(
                ErrorKind::InvalidState,
                format!(
                    "every pod of {} is failing ({}): that is the release, not a partial failure; roll it back \
                     (or set all = true)",
                    self.what(),
                    doomed.len()
                ),
            ));
        }
        let listed: Vec<String> = doomed.iter().map(|p| format!("{} ({})", p.name, p.why)).collect();
        let ids: Vec<&str> = doomed.iter().map(|p| p.uid.as_str()).collect();
        let digest = crate::rollout::canonical(&serde_json::json!(ids));
        let from = Version::labeled(format!("pods:{}", doomed.len()), format!("{} failing pods", doomed.len()));
        let to =
            Version::labeled(format!("replaced:{}", crate::rollout::short_digest(&digest)), "failing pods replaced");
        Ok(Change::new(self.name.clone(), DELETE_PODS, Some(from), to)
            .describe(format!(
                "{}: delete {} failing pod(s) of {}: {}",
                self.name,
                doomed.len(),
                self.what(),
                listed.join(", ")
            ))
            .with_payload(
                serde_json::to_value(DeletePodsPayload { pods: doomed }).map_err(|e| Error::internal(e.to_string()))?,
            )
            .with_reversibility(Reversibility::Irreversible))
    }

    pub(super) async fn apply_delete_pods(&self, change: &Change) -> Result<()> {
        let payload: DeletePodsPayload = payload_of(change)?;
        let api: Api<Pod> = self.cluster.api(&self.namespace);
        for pod in &payload.pods {
            let params = DeleteParams {
                preconditions: Some(Preconditions { uid: Some(pod.uid.clone()), resource_version: None }),
                ..Default::default()
            };
            match api.delete(&pod.name, &params).await {
                Ok(_) => tracing::info!(pod = %pod.name, why = %pod.why, "deleted failing pod"),
                // Gone already, or the name now belongs to another pod: nothing of ours to delete.
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => return Err(err("delete pod")(e).with_context("pod", &pod.name)),
            }
        }
        if self.wait.wait { self.wait_from(None).await } else { Ok(()) }
    }

    pub(super) async fn observe_delete_pods(&self, change: &Change) -> Result<Observed> {
        let payload: DeletePodsPayload = payload_of(change)?;
        let (d, pods) = self.pods().await?;
        let live = |uid: &str| {
            pods.iter().any(|p| p.metadata.uid.as_deref() == Some(uid) && p.metadata.deletion_timestamp.is_none())
        };
        let left = payload.pods.iter().filter(|p| live(&p.uid)).count();
        Ok(if left == payload.pods.len() {
            Observed::NotStarted
        } else if left > 0 {
            Observed::Partial(format!("{left} of {} failing pods not deleted yet", payload.pods.len()))
        } else if self.wait.wait && !matches!(rollout_status(&d), RolloutStatus::Complete) {
            Observed::Partial("failing pods deleted; replacements not all available yet".into())
        } else {
            Observed::Done
        })
    }
}
