//! Pure Deployment logic shared by the targets: content ids of pod templates, revisions,
//! the ConfigMaps and Secrets a template refers to, and `kubectl rollout status`'s verdict.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// The label the deployment controller adds to the templates of its ReplicaSets.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// The controller's revision annotation on Deployments and ReplicaSets.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// The revisions a re-used ReplicaSet had before (comma-separated).
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// Why a revision was made (`kubectl annotate … kubernetes.io/change-cause=…`).
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";

/// Annotations `kubectl rollout undo` leaves on the Deployment instead of copying them
/// from the ReplicaSet (kubectl's `annotationsToSkip`).
pub const ANNOTATIONS_TO_SKIP: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

/// A template without the controller's `pod-template-hash` label.
pub fn strip_hash(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut template = template.clone();
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH);
    }
    template
}

/// JSON with object keys sorted at every level.
pub(crate) fn canonical(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", serde_json::Value::String(k.clone()), canonical(&map[k])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        serde_json::Value::Array(items) => format!("[{}]", items.iter().map(canonical).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

/// The content id of a pod template: a digest of its canonical JSON without the
/// `pod-template-hash` label, so a Deployment's template and the ReplicaSet made from it
/// have the same id.
///
/// ```
/// use k8s_openapi::api::core::v1::PodTemplateSpec;
/// use rollback_k8s::rollout::template_id;
/// let a: PodTemplateSpec = serde_json::from_value(serde_json::json!({
///     "metadata": {"labels": {"app": "web"}},
///     "spec": {"containers": [{"name": "web", "image": "web:1"}]}
/// })).unwrap();
/// let b: PodTemplateSpec = serde_json::from_value(serde_json::json!({
///     "metadata": {"labels": {"pod-template-hash": "5d4f8", "app": "web"}},
///     "spec": {"containers": [{"image": "web:1", "name": "web"}]}
/// })).unwrap();
/// assert_eq!(template_id(&a), template_id(&b));
/// ```
pub fn template_id(template: &PodTemplateSpec) -> String {
    let value = serde_json::to_value(strip_hash(template)).unwrap_or_default();
    short_digest(&canonical(&value))
}

/// The first 8 bytes of a SHA-256, in hex: the content ids of this crate.
pub(crate) fn short_digest(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The images of a template's containers, in order.
pub fn images(template: &PodTemplateSpec) -> Vec<String> {
    template.spec.as_ref().map(|s| s.containers.iter().filter_map(|c| c.image.clone()).collect()).unwrap_or_default()
}

/// The revision annotation of an object, if it has a numeric one.
pub fn revision(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<i64> {
    meta.annotations.as_ref()?.get(REVISION)?.parse().ok()
}

/// Whether `rs` is controlled by the Deployment with `uid`.
pub fn controlled_by(rs: &ReplicaSet, uid: &str) -> bool {
    rs.metadata
        .owner_references
        .as_ref()
        .is_some_and(|refs| refs.iter().any(|r| r.controller == Some(true) && r.uid == uid))
}

/// ConfigMaps and Secrets a template needs (volumes, `envFrom`, `env[].valueFrom`,
/// projected volumes, `imagePullSecrets`), by name, each with whether the reference is
/// optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigRefs {
    /// ConfigMaps `(name, optional)`.
    pub config_maps: BTreeSet<(String, bool)>,
    /// Secrets `(name, optional)`.
    pub secrets: BTreeSet<(String, bool)>,
}

impl ConfigRefs {
    /// The references of `template`.
    pub fn of(template: &PodTemplateSpec) -> Self {
        let mut refs = ConfigRefs::default();
        let Some(spec) = &template.spec else { return refs };
        for volume in spec.volumes.iter().flatten() {
            if let Some(cm) = &volume.config_map {
                refs.config_maps.insert((cm.name.clone(), cm.optional.unwrap_or(false)));
            }
            if let Some(secret) = &volume.secret
                && let Some(name) = &secret.secret_name
            {
                refs.secrets.insert((name.clone(), secret.optional.unwrap_or(false)));
            }
            for source in volume.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
                if let Some(cm) = &source.config_map {
                    refs.config_maps.insert((cm.name.clone(), cm.optional.unwrap_or(false)));
                }
                if let Some(secret) = &source.secret {
                    refs.secrets.insert((secret.name.clone(), secret.optional.unwrap_or(false)));
                }
            }
        }
        for container in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
            for from in container.env_from.iter().flatten() {
                if let Some(cm) = &from.config_map_ref {
                    refs.config_maps.insert((cm.name.clone(), cm.optional.unwrap_or(false)));
                }
                if let Some(secret) = &from.secret_ref {
                    refs.secrets.insert((secret.name.clone(), secret.optional.unwrap_or(false)));
                }
            }
            for source in container.env.iter().flatten().filter_map(|e| e.value_from.as_ref()) {
                if let Some(cm) = &source.config_map_key_ref {
                    refs.config_maps.insert((cm.name.clone(), cm.optional.unwrap_or(false)));
                }
                if let Some(secret) = &source.secret_key_ref {
                    refs.secrets.insert((secret.name.clone(), secret.optional.unwrap_or(false)));
                }
            }
        }
        for pull in spec.image_pull_secrets.iter().flatten() {
            refs.secrets.insert((pull.name.clone(), true));
        }
        refs
    }

    /// Names only, optional or not.
    pub fn names(set: &BTreeSet<(String, bool)>) -> BTreeSet<String> {
        set.iter().map(|(n, _)| n.clone()).collect()
    }
}

/// `kubectl rollout status`'s verdict on a Deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutStatus {
    /// Rolled out: every replica updated and available, no old ones left.
    Complete,
    /// Still going, with kubectl's waiting message.
    Waiting(String),
    /// The controller gave up: `ProgressDeadlineExceeded`.
    Failed(String),
}

/// Decides as `kubectl rollout status` does: the spec change must be observed
/// (`observedGeneration ≥ generation`); `ProgressDeadlineExceeded` is a failure; then
/// updated = spec replicas, no old replicas pending termination, available = updated.
pub fn rollout_status(deployment: &Deployment) -> RolloutStatus {
    let name = deployment.metadata.name.as_deref().unwrap_or("?");
    let generation = deployment.metadata.generation.unwrap_or(0);
    let Some(status) = &deployment.status else {
        return RolloutStatus::Waiting("waiting for deployment spec update to be observed...".into());
    };
    if status.observed_generation.unwrap_or(0) < generation {
        return RolloutStatus::Waiting("waiting for deployment spec update to be observed...".into());
    }
    let progressing = status.conditions.iter().flatten().find(|c| c.type_.as_deref() == Some("Progressing"));
    if let Some(cond) = progressing
        && cond.reason.as_deref() == Some("ProgressDeadlineExceeded")
    {
        return RolloutStatus::Failed(format!(
            "deployment {name:?} exceeded its progress deadline{}",
            cond.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
        ));
    }
    let want = deployment.spec.replicas.unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated < want {
        return RolloutStatus::Waiting(format!("{updated} out of {want} new replicas have been updated..."));
    }
    if replicas > updated {
        return RolloutStatus::Waiting(format!("{} old replicas are pending termination...", replicas - updated));
    }
    if available < updated {
        return RolloutStatus::Waiting(format!("{available} of {updated} updated replicas are available..."));
    }
    RolloutStatus::Complete
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(generation: i64, status: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "generation": generation},
            "spec": {"replicas": 3, "selector": {}, "template": {}},
            "status": status
        }))
        .unwrap()
    }

    #[test]
    fn status_like_kubectl() {
        let d = deployment(
            2,
            json!({"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}),
        );
        assert!(matches!(rollout_status(&d), RolloutStatus::Waiting(m) if m.contains("observed")));
        let d = deployment(
            2,
            json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 1, "availableReplicas": 3}),
        );
        assert!(matches!(rollout_status(&d), RolloutStatus::Waiting(m) if m.contains("1 out of 3")));
        let d = deployment(
            2,
            json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 3, "availableReplicas": 3}),
        );
        assert!(matches!(rollout_status(&d), RolloutStatus::Waiting(m) if m.contains("1 old replicas")));
        let d = deployment(
            2,
            json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 2}),
        );
        assert!(matches!(rollout_status(&d), RolloutStatus::Waiting(m) if m.contains("2 of 3")));
        let d = deployment(
            2,
            json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}),
        );
        assert_eq!(rollout_status(&d), RolloutStatus::Complete);
        let d = deployment(
            2,
            json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 1, "availableReplicas": 3,
                   "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                                   "message": "ReplicaSet \"web-x\" has timed out progressing."}]}),
        );
        assert!(matches!(rollout_status(&d), RolloutStatus::Failed(m) if m.contains("timed out")));
    }

    #[test]
    fn refs_of_a_template() {
        let t: PodTemplateSpec = serde_json::from_value(json!({
            "spec": {
                "containers": [{"name": "a", "envFrom": [{"configMapRef": {"name": "env"}}],
                                "env": [{"name": "P", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}]}],
                "volumes": [{"name": "v", "configMap": {"name": "files", "optional": true}},
                            {"name": "s", "secret": {"secretName": "tls"}}],
                "imagePullSecrets": [{"name": "regcred"}]
            }
        }))
        .unwrap();
        let refs = ConfigRefs::of(&t);
        assert_eq!(ConfigRefs::names(&refs.config_maps), ["env", "files"].map(String::from).into());
        assert!(refs.config_maps.contains(&("files".into(), true)));
        assert_eq!(ConfigRefs::names(&refs.secrets), ["db", "regcred", "tls"].map(String::from).into());
    }

    #[test]
    fn canonical_sorts_keys() {
        assert_eq!(canonical(&json!({"b": 1, "a": [{"d": 1, "c": 2}]})), r#"{"a":[{"c":2,"d":1}],"b":1}"#);
    }
}
