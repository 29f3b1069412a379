//! The Deployment target: history from the ReplicaSets it controls, undo as
//! `kubectl rollout undo` does (but compare-and-swap), wait as `kubectl rollout status`.

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, PodTemplateSpec, Secret};
use kube::Api;
use kube::api::ListParams;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

use crate::cluster::{
    Cluster, ClusterConfig, DEPLOYED_AT_ANNOTATION, UNDO_KEY_ANNOTATION, check_name, patch_if_unchanged,
};
use crate::error::err;
use crate::rollout::{
    ANNOTATIONS_TO_SKIP, CHANGE_CAUSE, ConfigRefs, REVISION_HISTORY, RolloutStatus, controlled_by, images, revision,
    rollout_status, strip_hash, template_id,
};
use rollback_core::{
    Capabilities, Category, Change, Error, ErrorKind, IdempotencyKey, Identity, Observed, Request, Result, Revision,
    Selector, Target, TargetId, Version,
};

mod actions;

fn default_true() -> bool {
    true
}

/// How to wait for a rollout (`kubectl rollout status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitConfig {
    /// Wait for the rollout after changing the Deployment (default true).
    #[serde(default = "default_true")]
    pub wait: bool,
    /// Give up waiting after this long (default 10 minutes); the change stays made.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
    /// Time between status reads when the watch cannot be used (it broke, or the server
    /// refuses watches); the wait watches otherwise (default 2 s).
    #[serde(default = "default_poll", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub poll_interval: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(600)
}

fn default_poll() -> Duration {
    Duration::from_secs(2)
}

impl Default for WaitConfig {
    fn default() -> Self {
        WaitConfig { wait: true, timeout: default_timeout(), poll_interval: default_poll() }
    }
}

/// Configuration of a [`DeploymentTarget`] (`kind = "k8s-deployment"`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    /// Where the cluster is.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// The namespace.
    pub namespace: String,
    /// The Deployment's name.
    pub deployment: String,
    /// Waiting for the rollout.
    #[serde(default, flatten)]
    pub wait: WaitConfig,
}

/// A Deployment rolled back to an earlier revision.
///
/// - **Versions** are pod templates, identified by content ([`template_id`]), labelled
///   with their revision number (which moves when a ReplicaSet is re-used, like a tag);
///   the history is the ReplicaSets the Deployment controls, newest revision first.
///   `exact = "3"` is `kubectl rollout undo --to-revision=3`.
/// - **prepare** refuses a paused Deployment (as kubectl does), checks that the
///   ConfigMaps and Secrets the chosen template needs still exist, and says the step
///   has nothing to do when the template already matches (kubectl's "skipped rollback").
/// - **apply** re-reads the Deployment, checks `from` (compare-and-swap on the template's
///   content), then sends kubectl's JSON patch (`/spec/template` from the ReplicaSet
///   without `pod-template-hash`, annotations copied from the ReplicaSet) preceded by a
///   `test` of the `resourceVersion` it just read, and stamps the run key in the
///   annotation `rollback.dev/undo-key`; then waits like `kubectl rollout status`
///   (`ProgressDeadlineExceeded` is a failure).
/// - **observe**: template and key in place and rolled out → Done; in place but not
///   rolled out → Partial (apply again only waits); `from` still live → NotStarted;
///   anything else → Diverged.
pub struct DeploymentTarget {
    name: TargetId,
    cluster: Cluster,
    namespace: String,
    deployment: String,
    wait: WaitConfig,
}

impl std::fmt::Debug for DeploymentTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeploymentTarget")
            .field("name", &self.name)
            .field("cluster", &self.cluster.label)
            .field("namespace", &self.namespace)
            .field("deployment", &self.deployment)
            .finish()
    }
}

/// Where a change's template comes from (journaled; no template content, so no env values).
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
struct Payload {
    namespace: String,
    deployment: String,
    uid: String,
    /// The ReplicaSet holding the `to` template.
    to_replica_set: String,
    /// The ReplicaSet holding the `from` template (for the inverse).
    from_replica_set: Option<String>,
    /// The template already matched: nothing to do.
    #[serde(default)]
    noop: bool,
    /// The revision the undo gives the re-used ReplicaSet (the highest + 1), stamped
    /// with the time in `rollback.dev/deployed-at` (absent in older journals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next_revision: Option<i64>,
}

pub(crate) fn live_version(d: &Deployment, rses: &[ReplicaSet]) -> Version {
    let id = template_id(&d.spec.template);
    let rev = rses
        .iter()
        .find(|rs| rs.spec.template.as_ref().is_some_and(|t| template_id(t) == id))
        .and_then(|rs| revision(&rs.metadata));
    match rev {
        Some(rev) => Version::labeled(id, rev.to_string()),
        None => Version::new(id),
    }
}

/// When our undo deployed a re-used ReplicaSet as revision `rev`, from its
/// `rollback.dev/deployed-at` stamp (`"REV RFC3339"`).
fn redeployed_at(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    rev: i64,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let (stamped_rev, time) = annotation(meta, DEPLOYED_AT_ANNOTATION)?.split_once(' ')?;
    if stamped_rev.parse::<i64>().ok()? != rev {
        return None;
    }
    chrono::DateTime::parse_from_rfc3339(time).ok().map(|t| t.to_utc())
}

/// The Deployment's `matchLabels` as a label selector.
fn selector_of(d: &Deployment) -> String {
    d.spec
        .selector
        .match_labels
        .as_ref()
        .map(|labels| labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

/// "previous" as `kubectl rollout undo` computes it (its revision 0): the revision
/// second-highest by number, whatever the live template is — after an edit the
/// controller has not acted on yet, that is the one before the newest ReplicaSet.
/// `revisions` is newest first.
fn previous_of(revisions: &[Revision]) -> Option<&Revision> {
    revisions.get(1)
}

fn annotation<'a>(meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

impl DeploymentTarget {
    /// A target on a connected cluster.
    pub fn new(name: &str, cluster: Cluster, config: DeploymentConfig) -> Result<Self> {
        check_name("namespace", &config.namespace)?;
        check_name("deployment", &config.deployment)?;
        Ok(DeploymentTarget {
            name: TargetId::new(name),
            cluster,
            namespace: config.namespace,
            deployment: config.deployment,
            wait: config.wait,
        })
    }

    /// Connects as `config.cluster` says.
    pub async fn connect(name: &str, config: DeploymentConfig) -> Result<Self> {
        let cluster = Cluster::connect(&config.cluster).await?;
        Self::new(name, cluster, config)
    }

    fn deployments(&self) -> Api<Deployment> {
        self.cluster.api(&self.namespace)
    }

    fn replica_sets(&self) -> Api<ReplicaSet> {
        self.cluster.api(&self.namespace)
    }

    fn what(&self) -> String {
        format!("deployment {}/{}", self.namespace, self.deployment)
    }

    async fn get(&self) -> Result<Deployment> {
        self.deployments()
            .get(&self.deployment)
            .await
            .map_err(err("get deployment"))
            .map_err(|e| e.with_context("deployment", format!("{}/{}", self.namespace, self.deployment)))
    }

    /// The Deployment and the ReplicaSets it controls (GET + LIST, as kubectl does).
    async fn load(&self) -> Result<(Deployment, Vec<ReplicaSet>)> {
        let d = self.get().await?;
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let selector = selector_of(&d);
        let list = self
            .replica_sets()
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(err("list replicasets"))?;
        let rses = list.items.into_iter().filter(|rs| controlled_by(rs, &uid)).collect();
        Ok((d, rses))
    }

    fn refuse_paused(&self, d: &Deployment) -> Result<()> {
        if d.spec.paused.unwrap_or(false) {
            return Err(Error::new(
                ErrorKind::InvalidState,
                format!(
                    "{} is paused: you cannot roll back a paused deployment; resume it first \
                     (kubectl rollout resume) and try again",
                    self.what()
                ),
            ));
        }
        Ok(())
    }

    fn history_of(rses: &[ReplicaSet]) -> Vec<(Revision, String)> {
        let mut out: Vec<(i64, Revision, String)> = rses
            .iter()
            .filter_map(|rs| {
                let template = rs.spec.template.as_ref()?;
                let rev = revision(&rs.metadata)?;
                let cause = annotation(&rs.metadata, CHANGE_CAUSE).map(|c| format!(" — {c}")).unwrap_or_default();
                let mut r = Revision::new(
                    Version::labeled(template_id(template), rev.to_string()),
                    format!("{}{cause}", images(template).join(",")),
                );
                // A re-used ReplicaSet keeps its creation time but was deployed again later.
                // Kubernetes does not record when; our undo stamps it with the revision it
                // gives (a stamp for another revision is a re-use by someone else). With no
                // stamp, claim no time rather than a wrong one.
                r.created = if annotation(&rs.metadata, REVISION_HISTORY).is_none() {
                    rs.metadata.creation_timestamp.as_ref().map(|t| {
                        chrono::DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond() as u32)
                            .unwrap_or_default()
                    })
                } else {
                    redeployed_at(&rs.metadata, rev)
                };
                Some((rev, r, rs.metadata.name.clone().unwrap_or_default()))
            })
            .collect();
        out.sort_by_key(|r| std::cmp::Reverse(r.0));
        out.into_iter().map(|(_, r, n)| (r, n)).collect()
    }

    /// Checks that the ConfigMaps and Secrets a template needs exist (Secrets by metadata
    /// only: their data is never read here).
    async fn check_config(&self, rs: &ReplicaSet, revision: &Version) -> Result<()> {
        let Some(template) = rs.spec.template.as_ref() else { return Ok(()) };
        let refs = ConfigRefs::of(template);
        let cms: Api<ConfigMap> = self.cluster.api(&self.namespace);
        for (name, _) in refs.config_maps.iter().filter(|(_, optional)| !optional) {
            if cms.get_metadata_opt(name).await.map_err(err("get configmap"))?.is_none() {
                return Err(Error::not_found(format!(
                    "revision {revision} of {} needs ConfigMap {name:?}, which no longer exists",
                    self.what()
                )));
            }
        }
        let secrets: Api<Secret> = self.cluster.api(&self.namespace);
        for (name, _) in refs.secrets.iter().filter(|(_, optional)| !optional) {
            if secrets.get_metadata_opt(name).await.map_err(err("get secret"))?.is_none() {
                return Err(Error::not_found(format!(
                    "revision {revision} of {} needs Secret {name:?}, which no longer exists",
                    self.what()
                )));
            }
        }
        Ok(())
    }

    fn classify(&self, d: &Deployment, change: &Change, key: &IdempotencyKey, payload: &Payload) -> Observed {
        if d.metadata.uid.as_deref() != Some(payload.uid.as_str()) {
            return Observed::Diverged(format!("{} was deleted and re-created", self.what()));
        }
        let live = template_id(&d.spec.template);
        let stamped = annotation(&d.metadata, UNDO_KEY_ANNOTATION);
        if live == change.to.id && (payload.noop || stamped == Some(key.as_str())) {
            if !self.wait.wait || payload.noop {
                return Observed::Done;
            }
            return match rollout_status(d) {
                RolloutStatus::Complete => Observed::Done,
                RolloutStatus::Waiting(m) | RolloutStatus::Failed(m) => {
                    Observed::Partial(format!("template switched, rollout not complete: {m}"))
                }
            };
        }
        if Some(live.as_str()) == change.from.as_ref().map(|f| f.id.as_str()) {
            return Observed::NotStarted;
        }
        Observed::Diverged(format!("the live template is {live}"))
    }

    /// Waits like `kubectl rollout status` (a GET, then a watch; polling only if the
    /// watch breaks): done when rolled out, an error on `ProgressDeadlineExceeded` or
    /// after `timeout`.
    pub async fn wait_for_rollout(&self) -> Result<()> {
        self.wait_from(None).await
    }

    /// The wait, from the Deployment as the PATCH returned it when there is one (no
    /// second GET: the watch starts at its resourceVersion).
    async fn wait_from(&self, patched: Option<Deployment>) -> Result<()> {
        let api = self.deployments();
        let wait = crate::wait::RolloutWait { api: &api, name: &self.deployment, what: self.what(), wait: &self.wait };
        wait.run(patched).await
    }

    /// kubectl's annotations for an undo: the Deployment keeps the skipped ones, takes the
    /// others from the ReplicaSet; plus our key.
    fn undo_annotations(
        d: &Deployment,
        rs: &ReplicaSet,
        key: &IdempotencyKey,
        next_revision: Option<i64>,
    ) -> BTreeMap<String, String> {
        let mut out: BTreeMap<String, String> = d
            .metadata
            .annotations
            .iter()
            .flatten()
            .filter(|(k, _)| ANNOTATIONS_TO_SKIP.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, v) in rs.metadata.annotations.iter().flatten() {
            if !ANNOTATIONS_TO_SKIP.contains(&k.as_str()) {
                out.insert(k.clone(), v.clone());
            }
        }
        out.insert(UNDO_KEY_ANNOTATION.into(), key.to_string());
        // The controller copies the Deployment's annotations onto the ReplicaSet it
        // re-uses, so that ReplicaSet says when it was deployed again (kubectl does not).
        if let Some(rev) = next_revision {
            out.insert(DEPLOYED_AT_ANNOTATION.into(), format!("{rev} {}", chrono::Utc::now().to_rfc3339()));
        }
        out
    }

    /// Switches the template to the one of ReplicaSet `rs_name` (whose content id must be
    /// `to`), testing `resourceVersion` of `d`.
    pub(crate) async fn switch_template(
        &self,
        d: &Deployment,
        rs_name: &str,
        to: &str,
        key: &IdempotencyKey,
        next_revision: Option<i64>,
    ) -> Result<Deployment> {
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let rs = self.replica_sets().get_opt(rs_name).await.map_err(err("get replicaset"))?.ok_or_else(|| {
            Error::not_found(format!(
                "ReplicaSet {rs_name:?} holding template {to} of {} is gone (revisionHistoryLimit?)",
                self.what()
            ))
        })?;
        let template = rs.spec.template.as_ref().map(strip_hash);
        match template {
            Some(t) if controlled_by(&rs, &uid) && template_id(&t) == to => {
                let annotations = Self::undo_annotations(d, &rs, key, next_revision);
                let rv = d.metadata.resource_version.clone().unwrap_or_default();
                let ops = vec![
                    serde_json::json!({"op": "replace", "path": "/spec/template", "value": t}),
                    serde_json::json!({"op": "add", "path": "/metadata/annotations", "value": annotations}),
                ];
                patch_if_unchanged(&self.deployments(), &self.deployment, &rv, ops, "patch deployment").await
            }
            _ => Err(Error::new(
                ErrorKind::Conflict,
                format!("ReplicaSet {rs_name:?} no longer holds template {to} of {}", self.what()),
            )),
        }
    }
}

#[async_trait]
impl Target for DeploymentTarget {
    fn name(&self) -> &TargetId {
        &self.name
    }

    fn kind(&self) -> &str {
        <Self as rollback_core::kind::Kind>::KIND
    }

    fn category(&self) -> Category {
        Category::App
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { versioned: true, converges_from_partial: true }
    }

    async fn identity(&self) -> Result<Identity> {
        let d = self.get().await?;
        Ok(Identity::new(format!(
            "k8s:{}/namespaces/{}/deployments/{}@{}",
            self.cluster.label,
            self.namespace,
            self.deployment,
            d.metadata.uid.unwrap_or_default()
        )))
    }

    async fn current(&self) -> Result<Version> {
        let (d, rses) = self.load().await?;
        Ok(live_version(&d, &rses))
    }

    async fn history(&self) -> Result<Vec<Revision>> {
        let (_, rses) = self.load().await?;
        Ok(Self::history_of(&rses).into_iter().map(|(r, _)| r).collect())
    }

    async fn prepare(&self, request: &Request) -> Result<Change> {
        let selector = match request {
            Request::To(selector) => selector,
            Request::Action { action, params } if action == "restart" => return self.prepare_restart(params).await,
            Request::Action { action, params } if action == "delete-failing-pods" => {
                return self.prepare_delete_pods(params).await;
            }
            Request::Action { action, .. } => {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!("{} has the actions restart and delete-failing-pods, not {action:?}", self.kind()),
                ));
            }
        };
        let (d, rses) = self.load().await?;
        self.refuse_paused(&d)?;
        let current = live_version(&d, &rses);
        let history = Self::history_of(&rses);
        let revisions: Vec<Revision> = history.iter().map(|(r, _)| r.clone()).collect();
        let resolved = match selector {
            Selector::Previous => previous_of(&revisions).ok_or_else(|| {
                Error::not_found(format!("{} has no previous revision", self.what())).with_context("selector", selector)
            })?,
            other => other.resolve(&revisions, &current)?,
        };
        let to_rs = history.iter().find(|(r, _)| r.version.id == resolved.version.id).map(|(_, n)| n.clone());
        let from_rs = history.iter().find(|(r, _)| r.version.id == current.id).map(|(_, n)| n.clone());
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let payload = Payload {
            namespace: self.namespace.clone(),
            deployment: self.deployment.clone(),
            uid,
            to_replica_set: to_rs.unwrap_or_default(),
            from_replica_set: from_rs,
            noop: false,
            next_revision: rses.iter().filter_map(|rs| revision(&rs.metadata)).max().map(|r| r + 1),
        };
        if resolved.version.id == current.id {
            // kubectl's "skipped rollback": the engine reports the step as nothing to do.
            // (Journals from before kept a no-op change, `payload.noop`; apply and
            // observe still finish those.)
            return Err(Error::already_done(format!(
                "skipped rollback ({} already matches revision {})",
                self.what(),
                resolved.version
            )));
        }
        let to_rs = rses.iter().find(|rs| rs.metadata.name.as_deref() == Some(payload.to_replica_set.as_str()));
        let mut preview = None;
        if let Some(rs) = to_rs {
            self.check_config(rs, &resolved.version).await?;
            let to_template = rs.spec.template.as_ref();
            preview = to_template.map(|t| template_diff(&d.spec.template, t));
        }
        let description = format!(
            "{}: roll {} back from revision {} to revision {} [{}] ({selector})",
            self.name,
            self.what(),
            current,
            resolved.version,
            resolved.description
        );
        let change = Change::new(self.name.clone(), "deployment", Some(current), resolved.version.clone())
            .describe(description)
            .with_payload(serde_json::to_value(&payload).map_err(|e| Error::internal(e.to_string()))?);
        Ok(match preview {
            Some(preview) => change.with_preview(preview),
            None => change,
        })
    }

    async fn apply(&self, change: &Change, key: &IdempotencyKey) -> Result<()> {
        match change.kind.as_str() {
            actions::RESTART => return self.apply_restart(change, key).await,
            actions::DELETE_PODS => return self.apply_delete_pods(change).await,
            _ => {}
        }
        let payload: Payload = serde_json::from_value(change.payload.clone())
            .map_err(|e| Error::invalid_input(format!("not a k8s-deployment change: {e}")))?;
        // The resourceVersion test guards the window between our GET and PATCH; the
        // controller's status writes also move the resourceVersion, so on a refused test
        // re-read and try again — but only while `from` (the template's content) holds.
        let mut attempts = 0;
        let mut patched = None;
        loop {
            attempts += 1;
            let d = self.get().await?;
            let observed = self.classify(&d, change, key, &payload);
            let part_way = matches!(observed, Observed::Partial(_));
            if !observed.proceed(change)? {
                return Ok(());
            }
            if part_way {
                break;
            }
            self.refuse_paused(&d)?;
            match self.switch_template(&d, &payload.to_replica_set, &change.to.id, key, payload.next_revision).await {
                Ok(switched) => {
                    tracing::info!(deployment = %self.deployment, to = %change.to, "deployment template switched");
                    patched = Some(switched);
                    break;
                }
                Err(e) if e.kind() == ErrorKind::Conflict && attempts < 5 => {
                    tracing::debug!(deployment = %self.deployment, error = %e, "resourceVersion moved; re-reading");
                }
                Err(e) => return Err(e),
            }
        }
        if self.wait.wait { self.wait_from(patched).await } else { Ok(()) }
    }

    async fn observe(&self, change: &Change, key: &IdempotencyKey) -> Result<Observed> {
        match change.kind.as_str() {
            actions::RESTART => return self.observe_restart(change).await,
            actions::DELETE_PODS => return self.observe_delete_pods(change).await,
            _ => {}
        }
        let payload: Payload = serde_json::from_value(change.payload.clone())
            .map_err(|e| Error::invalid_input(format!("not a k8s-deployment change: {e}")))?;
        Ok(self.classify(&self.get().await?, change, key, &payload))
    }

    fn inverse(&self, change: &Change) -> Result<Change> {
        if matches!(change.kind.as_str(), actions::RESTART | actions::DELETE_PODS) {
            return Err(Error::unsupported("inverse").with_context("reason", format!("{} has no inverse", change.kind)));
        }
        let payload: Payload = serde_json::from_value(change.payload.clone())
            .map_err(|e| Error::invalid_input(format!("not a k8s-deployment change: {e}")))?;
        let (Some(from), Some(from_rs)) = (change.from.clone(), payload.from_replica_set.clone()) else {
            return Err(Error::unsupported("inverse").with_context("reason", "the pre-state's ReplicaSet is unknown"));
        };
        let inverse = Payload {
            to_replica_set: from_rs,
            from_replica_set: Some(payload.to_replica_set.clone()),
            noop: payload.noop,
            next_revision: payload.next_revision.map(|r| r + 1),
            ..payload
        };
        Ok(Change::new(self.name.clone(), "deployment", Some(change.to.clone()), from.clone())
            .describe(format!("{}: undo: {} back to revision {from}", self.name, self.what()))
            .with_payload(serde_json::to_value(&inverse).map_err(|e| Error::internal(e.to_string()))?))
    }
}

/// The pod template's change as a line diff of its JSON (keys sorted, without the
/// controller's `pod-template-hash`), live template first: what `kubectl rollout undo`
/// would switch. Inline `env` values are masked: a template may carry credentials,
/// and the preview is printed and journaled.
fn template_diff(live: &PodTemplateSpec, to: &PodTemplateSpec) -> String {
    let text = |t: &PodTemplateSpec| {
        let mut value = serde_json::to_value(crate::rollout::strip_hash(t)).unwrap_or_default();
        for list in ["containers", "initContainers", "ephemeralContainers"] {
            let containers = value.pointer_mut(&format!("/spec/{list}")).and_then(|c| c.as_array_mut());
            for container in containers.into_iter().flatten() {
                let env = container.get_mut("env").and_then(|e| e.as_array_mut());
                for var in env.into_iter().flatten().filter_map(|v| v.as_object_mut()) {
                    if let Some(v) = var.get_mut("value") {
                        *v = serde_json::Value::String("<not shown>".into());
                    }
                }
            }
        }
        serde_json::to_string_pretty(&value).unwrap_or_default()
    };
    let diff = rollback_core::preview::line_diff(&text(live), &text(to));
    format!("pod template, live (-) -> revision (+); env values not shown:\n{diff}")
}

#[cfg(test)]
mod preview_tests {
    use super::*;

    #[test]
    fn previous_is_the_second_highest_revision_as_kubectl_computes_it() {
        let rs = |name: &str, rev: i64, image: &str| -> ReplicaSet {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "annotations": {"deployment.kubernetes.io/revision": rev.to_string()}},
                "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "web", "image": image}]}}}
            }))
            .unwrap()
        };
        // Listed in any order; the live template (web:4) has no ReplicaSet yet.
        let history = DeploymentTarget::history_of(&[rs("b", 2, "web:2"), rs("c", 3, "web:3"), rs("a", 1, "web:1")]);
        let revisions: Vec<Revision> = history.into_iter().map(|(r, _)| r).collect();
        assert_eq!(previous_of(&revisions).unwrap().version.label.as_deref(), Some("2"), "kubectl's revision 0");
        assert!(previous_of(&revisions[..1]).is_none(), "one revision has no previous");
    }

    #[test]
    fn the_template_diff_shows_the_image_and_never_an_inline_env_value() {
        let template = |image: &str, token: &str| -> PodTemplateSpec {
            serde_json::from_value(serde_json::json!({
                "metadata": {"labels": {"app": "web", "pod-template-hash": "abc"}},
                "spec": {"containers": [{"name": "web", "image": image,
                    "env": [{"name": "TOKEN", "value": token}]}]}
            }))
            .unwrap()
        };
        let diff = template_diff(&template("web:2", "s3cr3t-live"), &template("web:1", "s3cr3t-old"));
        let changed = |sign: char, image: &str| diff.lines().any(|l| l.starts_with(sign) && l.contains(image));
        assert!(changed('-', "\"web:2\"") && changed('+', "\"web:1\""), "{diff}");
        assert!(!diff.contains("s3cr3t") && !diff.contains("pod-template-hash"), "{diff}");
    }
}
