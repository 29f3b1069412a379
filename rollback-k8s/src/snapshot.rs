//! The Deployment snapshot: evidence (the Deployment, its ReplicaSets, events, recent
//! pod logs) into the artifact store, and the configuration the pod template uses —
//! ConfigMaps into the store, Secrets as copies inside the cluster — restored together
//! with the template.

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{ListParams, LogParams, PostParams};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

use crate::cluster::{Cluster, ClusterConfig, check_name};
use crate::deployment::{DeploymentConfig, DeploymentTarget, WaitConfig};
use crate::error::err;
use crate::rollout::{ConfigRefs, controlled_by, template_id};
use rollback_core::{ArtifactStore, Error, ErrorKind, IdempotencyKey, Result, Snapshot, SnapshotRef};

fn default_tail() -> i64 {
    200
}

fn default_pods() -> usize {
    5
}

fn default_true() -> bool {
    true
}

/// Configuration of a [`DeploymentSnapshot`] (`kind = "k8s-deployment"` snapshot).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentSnapshotConfig {
    /// Where the cluster is.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// The namespace.
    pub namespace: String,
    /// The Deployment's name.
    pub deployment: String,
    /// Log lines per pod (default 200).
    #[serde(default = "default_tail")]
    pub tail_lines: i64,
    /// Pods whose logs are kept (default 5, newest first).
    #[serde(default = "default_pods")]
    pub max_pods: usize,
    /// Also keep the ConfigMaps and Secrets the pod template uses, for restore (default true).
    #[serde(default = "default_true")]
    pub config: bool,
    /// How long the in-cluster Secret copies are kept (default 7 days): each capture
    /// deletes this Deployment's copies whose time is up, as an artifact store's
    /// lifecycle rule would the evidence.
    #[serde(default = "default_retention", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub retention: std::time::Duration,
}

fn default_retention() -> std::time::Duration {
    std::time::Duration::from_secs(7 * 24 * 3600)
}

/// The `copy-for` label value of a Deployment: its name, or a digest when longer than
/// a label value may be (63 characters).
fn copy_for(deployment: &str) -> String {
    if deployment.len() <= 63 {
        deployment.to_owned()
    } else {
        format!("rb-{}", crate::rollout::short_digest(deployment))
    }
}

/// Annotation on a Secret copy: when it may be deleted (RFC 3339).
const EXPIRES_AT: &str = "rollback.dev/expires-at";
/// Label on a Secret copy: the Secret it copies.
const COPY_OF: &str = "rollback.dev/copy-of";
/// Label on a Secret copy: the Deployment whose snapshot made it.
const COPY_FOR: &str = "rollback.dev/copy-for";

/// One Secret kept as a copy in the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SecretCopy {
    /// The Secret the template uses.
    pub name: String,
    /// Its copy, in the same namespace.
    pub copy: String,
    /// Its keys (names only, never values).
    pub keys: Vec<String>,
    /// When the copy may be deleted (absent in snapshots from before retention).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// What a capture recorded for restore (the snapshot's metadata; no secret values).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Captured {
    namespace: String,
    deployment: String,
    uid: String,
    template: String,
    replica_set: Option<String>,
    config_maps: Vec<String>,
    secrets: Vec<SecretCopy>,
}

/// Evidence and a restore point for a Deployment.
///
/// Writes `<key>/deployment.json`, `replicasets.json`, `events.json`,
/// `logs/<pod>.log` (the newest pods' last lines) and `configmaps/<name>.json`. Env
/// values in templates are redacted in the evidence (they may hold credentials). Secrets
/// the template uses are **copied inside the cluster** as `<name>-rb-<digest>` (labelled
/// `rollback.dev/copy-of`); only their names and key names reach the store.
///
/// `restore` puts the ConfigMaps and Secrets back first (compare-and-swap on each
/// `resourceVersion`), then the template (from its ReplicaSet, as an undo does); if the
/// template already matched but configuration changed, it restarts the pods
/// (`kubectl rollout restart`'s annotation) so they read the restored values.
pub struct DeploymentSnapshot {
    name: String,
    cluster: Cluster,
    config: DeploymentSnapshotConfig,
}

impl std::fmt::Debug for DeploymentSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeploymentSnapshot")
            .field("name", &self.name)
            .field("namespace", &self.config.namespace)
            .field("deployment", &self.config.deployment)
            .finish()
    }
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Replaces `env[].value` in every container of a JSON object tree (and the
/// `last-applied-configuration` annotation) by `"<redacted>"`, and secrets in
/// `command` / `args` as core's `redact_args_json` does.
fn redact_env(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if k == LAST_APPLIED {
                    // `kubectl apply` keeps the whole spec, env values included, as a string.
                    *v = serde_json::Value::String("<redacted>".into());
                } else if k == "command" || k == "args" {
                    rollback_core::local::redact_args_json(v);
                } else if k == "env"
                    && let serde_json::Value::Array(items) = v
                {
                    for item in items.iter_mut() {
                        if let Some(val) = item.get_mut("value") {
                            *val = serde_json::Value::String("<redacted>".into());
                        }
                    }
                } else {
                    redact_env(v);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_env),
        _ => {}
    }
}

fn json<T: Serialize>(value: &T, redact: bool) -> Result<Vec<u8>> {
    let mut v = serde_json::to_value(value).map_err(|e| Error::internal(e.to_string()))?;
    if redact {
        redact_env(&mut v);
    }
    serde_json::to_vec_pretty(&v).map_err(|e| Error::internal(e.to_string()))
}

impl DeploymentSnapshot {
    /// A snapshotter on a connected cluster.
    pub fn new(name: &str, cluster: Cluster, config: DeploymentSnapshotConfig) -> Result<Self> {
        check_name("namespace", &config.namespace)?;
        check_name("deployment", &config.deployment)?;
        Ok(DeploymentSnapshot { name: name.into(), cluster, config })
    }

    /// Connects as `config.cluster` says.
    pub async fn connect(name: &str, config: DeploymentSnapshotConfig) -> Result<Self> {
        let cluster = Cluster::connect(&config.cluster).await?;
        Self::new(name, cluster, config)
    }

    fn ns(&self) -> &str {
        &self.config.namespace
    }

    fn copy_name(secret: &str, key: &IdempotencyKey) -> String {
        let digest: String =
            Sha256::digest(key.as_str().as_bytes()).iter().take(4).map(|b| format!("{b:02x}")).collect();
        let base: String = secret.chars().take(240).collect();
        format!("{base}-rb-{digest}")
    }

    async fn copy_secret(&self, secrets: &Api<Secret>, name: &str, key: &IdempotencyKey) -> Result<Option<SecretCopy>> {
        let Some(secret) = secrets.get_opt(name).await.map_err(err("get secret"))? else { return Ok(None) };
        let copy_name = Self::copy_name(name, key);
        let keys = secret.data.iter().flatten().map(|(k, _)| k.clone()).collect();
        let expires_at = chrono::Duration::from_std(self.config.retention)
            .ok()
            .and_then(|d| chrono::Utc::now().checked_add_signed(d))
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
        let copy = Secret {
            metadata: ObjectMeta {
                name: Some(copy_name.clone()),
                labels: Some(BTreeMap::from([
                    (COPY_OF.to_string(), name.to_string()),
                    (COPY_FOR.to_string(), copy_for(&self.config.deployment)),
                ])),
                annotations: Some(BTreeMap::from([
                    ("rollback.dev/snapshot-key".to_string(), key.to_string()),
                    (EXPIRES_AT.to_string(), expires_at.to_rfc3339()),
                ])),
                ..Default::default()
            },
            data: secret.data.clone(),
            type_: secret.type_.clone(),
            ..Default::default()
        };
        match secrets.get_opt(&copy_name).await.map_err(err("get secret copy"))? {
            Some(existing) => {
                let mut replacement = copy;
                replacement.metadata.resource_version = existing.metadata.resource_version;
                secrets
                    .replace(&copy_name, &PostParams::default(), &replacement)
                    .await
                    .map_err(err("replace secret copy"))?;
            }
            None => {
                secrets.create(&PostParams::default(), &copy).await.map_err(err("create secret copy"))?;
            }
        }
        Ok(Some(SecretCopy { name: name.into(), copy: copy_name, keys, expires_at: Some(expires_at) }))
    }

    /// Deletes this Deployment's Secret copies whose retention is up (one list; each
    /// delete with a uid precondition), returning how many.
    async fn expire_copies(&self, secrets: &Api<Secret>) -> Result<usize> {
        let selector = format!("{COPY_FOR}={}", copy_for(&self.config.deployment));
        let copies =
            secrets.list_metadata(&ListParams::default().labels(&selector)).await.map_err(err("list secret copies"))?;
        let now = chrono::Utc::now();
        let mut expired = 0;
        for copy in copies.items {
            let due = copy
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(EXPIRES_AT))
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .is_some_and(|t| t <= now);
            let (Some(name), Some(uid)) = (copy.metadata.name.as_ref(), copy.metadata.uid.clone()) else { continue };
            if !due {
                continue;
            }
            let params = kube::api::DeleteParams {
                preconditions: Some(kube::api::Preconditions { uid: Some(uid), resource_version: None }),
                ..Default::default()
            };
            match secrets.delete(name, &params).await {
                Ok(_) => expired += 1,
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => return Err(err("delete expired secret copy")(e).with_context("secret", name)),
            }
        }
        if expired > 0 {
            tracing::info!(deployment = %self.config.deployment, expired, "deleted Secret copies past their retention");
        }
        Ok(expired)
    }
}

#[async_trait]
impl Snapshot for DeploymentSnapshot {
    fn name(&self) -> &str {
        &self.name
    }

    async fn capture(&self, store: &dyn ArtifactStore, key: &IdempotencyKey) -> Result<SnapshotRef> {
        let deployments: Api<Deployment> = self.cluster.api(self.ns());
        let d = deployments.get(&self.config.deployment).await.map_err(err("get deployment"))?;
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let template = d.spec.template.clone();
        let template_hash = template_id(&template);
        let selector = d
            .spec
            .selector
            .match_labels
            .as_ref()
            .map(|l| l.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","))
            .unwrap_or_default();
        let rses: Vec<ReplicaSet> = self
            .cluster
            .api::<ReplicaSet>(self.ns())
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(err("list replicasets"))?
            .items
            .into_iter()
            .filter(|rs| controlled_by(rs, &uid))
            .collect();
        let replica_set = rses
            .iter()
            .find(|rs| rs.spec.template.as_ref().is_some_and(|t| template_id(t) == template_hash))
            .and_then(|rs| rs.metadata.name.clone());
        let mut names: Vec<String> = vec![self.config.deployment.clone()];
        names.extend(rses.iter().filter_map(|rs| rs.metadata.name.clone()));
        let pods = self
            .cluster
            .api::<Pod>(self.ns())
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(err("list pods"))?
            .items;
        names.extend(pods.iter().filter_map(|p| p.metadata.name.clone()));
        let events: Vec<Event> = self
            .cluster
            .api::<Event>(self.ns())
            .list(&ListParams::default())
            .await
            .map_err(err("list events"))?
            .items
            .into_iter()
            .filter(|e| e.involved_object.name.as_ref().is_some_and(|n| names.contains(n)))
            .collect();
        let prefix = key.as_str();
        let mut artifacts = Vec::new();
        let mut put = async |file: String, bytes: Vec<u8>| -> Result<()> {
            let k = format!("{prefix}/{file}");
            store.put(&k, bytes).await?;
            artifacts.push(k);
            Ok(())
        };
        put("deployment.json".into(), json(&d, true)?).await?;
        put("replicasets.json".into(), json(&rses, true)?).await?;
        put("events.json".into(), json(&events, false)?).await?;
        let mut newest = pods.clone();
        newest.sort_by(|a, b| b.metadata.creation_timestamp.cmp(&a.metadata.creation_timestamp));
        let pods_api: Api<Pod> = self.cluster.api(self.ns());
        for pod in newest.iter().take(self.config.max_pods) {
            let Some(pod_name) = pod.metadata.name.as_deref() else { continue };
            let params = LogParams { tail_lines: Some(self.config.tail_lines), ..Default::default() };
            let text = match pods_api.logs(pod_name, &params).await {
                Ok(text) => text,
                Err(e) => format!("(logs unavailable: {})", crate::error::map("pod logs", e)),
            };
            put(format!("logs/{pod_name}.log"), text.into_bytes()).await?;
        }
        let mut captured = Captured {
            namespace: self.ns().into(),
            deployment: self.config.deployment.clone(),
            uid,
            template: template_hash.clone(),
            replica_set,
            config_maps: Vec::new(),
            secrets: Vec::new(),
        };
        if self.config.config {
            let refs = ConfigRefs::of(&template);
            let cms: Api<ConfigMap> = self.cluster.api(self.ns());
            for name in ConfigRefs::names(&refs.config_maps) {
                if let Some(cm) = cms.get_opt(&name).await.map_err(err("get configmap"))? {
                    put(format!("configmaps/{name}.json"), json(&cm, false)?).await?;
                    captured.config_maps.push(name);
                }
            }
            let secrets: Api<Secret> = self.cluster.api(self.ns());
            // Cleaning up is not the capture: a failure (no list/delete right on
            // Secrets) is a warning, and the copies stay until a capture can.
            if let Err(e) = self.expire_copies(&secrets).await {
                tracing::warn!(error = %e, "could not delete expired Secret copies");
            }
            for name in ConfigRefs::names(&refs.secrets) {
                if let Some(copy) = self.copy_secret(&secrets, &name, key).await? {
                    captured.secrets.push(copy);
                }
            }
            put("secrets.json".into(), json(&captured.secrets, false)?).await?;
        }
        let description = format!(
            "deployment {}/{} at template {template_hash}: {} ReplicaSets, {} events, logs of {} pods, {} ConfigMaps, {} Secrets copied in-cluster",
            self.ns(),
            self.config.deployment,
            rses.len(),
            events.len(),
            newest.len().min(self.config.max_pods),
            captured.config_maps.len(),
            captured.secrets.len()
        );
        Ok(SnapshotRef {
            snapshot: self.name.clone(),
            artifacts,
            taken_at: chrono::Utc::now(),
            description,
            metadata: serde_json::to_value(&captured).map_err(|e| Error::internal(e.to_string()))?,
        })
    }

    async fn restore(&self, snapshot: &SnapshotRef, store: &dyn ArtifactStore) -> Result<()> {
        let captured: Captured = serde_json::from_value(snapshot.metadata.clone())
            .map_err(|e| Error::invalid_input(format!("not a k8s-deployment snapshot: {e}")))?;
        if captured.namespace != self.config.namespace || captured.deployment != self.config.deployment {
            return Err(Error::invalid_input(format!(
                "snapshot is of {}/{}, this snapshotter restores {}/{}",
                captured.namespace, captured.deployment, self.config.namespace, self.config.deployment
            )));
        }
        let mut config_changed = false;
        let cms: Api<ConfigMap> = self.cluster.api(self.ns());
        let prefix =
            snapshot.artifacts.first().and_then(|a| a.rsplit_once("/deployment.json")).map(|(p, _)| p.to_owned());
        for name in &captured.config_maps {
            let key = snapshot
                .artifacts
                .iter()
                .find(|a| a.ends_with(&format!("/configmaps/{name}.json")))
                .cloned()
                .or_else(|| prefix.as_ref().map(|p| format!("{p}/configmaps/{name}.json")))
                .ok_or_else(|| Error::not_found(format!("no artifact for ConfigMap {name:?}")))?;
            let saved: ConfigMap = serde_json::from_slice(&store.get(&key).await?)
                .map_err(|e| Error::new(ErrorKind::Corrupt, format!("{key}: {e}")))?;
            match cms.get_opt(name).await.map_err(err("get configmap"))? {
                Some(live) if live.data == saved.data && live.binary_data == saved.binary_data => {}
                Some(mut live) => {
                    live.data = saved.data;
                    live.binary_data = saved.binary_data;
                    cms.replace(name, &PostParams::default(), &live).await.map_err(err("replace configmap"))?;
                    config_changed = true;
                }
                None => {
                    let fresh = ConfigMap {
                        metadata: ObjectMeta {
                            name: Some(name.clone()),
                            labels: saved.metadata.labels,
                            ..Default::default()
                        },
                        data: saved.data,
                        binary_data: saved.binary_data,
                        ..Default::default()
                    };
                    cms.create(&PostParams::default(), &fresh).await.map_err(err("create configmap"))?;
                    config_changed = true;
                }
            }
        }
        let secrets: Api<Secret> = self.cluster.api(self.ns());
        for copy in &captured.secrets {
            let saved = secrets.get_opt(&copy.copy).await.map_err(err("get secret copy"))?.ok_or_else(|| {
                let expired = match copy.expires_at {
                    Some(t) if t <= chrono::Utc::now() => format!(" (its retention ended at {})", t.to_rfc3339()),
                    _ => String::new(),
                };
                Error::not_found(format!(
                    "the in-cluster copy {:?} of Secret {:?} is gone{expired}",
                    copy.copy, copy.name
                ))
            })?;
            match secrets.get_opt(&copy.name).await.map_err(err("get secret"))? {
                Some(live) if live.data == saved.data => {}
                Some(mut live) => {
                    live.data = saved.data;
                    live.string_data = None;
                    secrets.replace(&copy.name, &PostParams::default(), &live).await.map_err(err("replace secret"))?;
                    config_changed = true;
                }
                None => {
                    let fresh = Secret {
                        metadata: ObjectMeta { name: Some(copy.name.clone()), ..Default::default() },
                        data: saved.data,
                        type_: saved.type_,
                        ..Default::default()
                    };
                    secrets.create(&PostParams::default(), &fresh).await.map_err(err("create secret"))?;
                    config_changed = true;
                }
            }
        }
        let target = DeploymentTarget::new(
            &self.name,
            self.cluster.clone(),
            DeploymentConfig {
                cluster: self.config.cluster.clone(),
                namespace: self.config.namespace.clone(),
                deployment: self.config.deployment.clone(),
                wait: WaitConfig { wait: false, ..Default::default() },
            },
        )?;
        let deployments: Api<Deployment> = self.cluster.api(self.ns());
        let d = deployments.get(&self.config.deployment).await.map_err(err("get deployment"))?;
        if d.metadata.uid.as_deref() != Some(captured.uid.as_str()) {
            return Err(Error::new(
                ErrorKind::Diverged,
                format!("deployment {}/{} was re-created since the snapshot", self.ns(), self.config.deployment),
            ));
        }
        let live = template_id(&d.spec.template);
        let restore_key = IdempotencyKey::new(format!("restore/{}", snapshot.snapshot));
        if live != captured.template {
            let rs = captured.replica_set.as_deref().ok_or_else(|| {
                Error::not_found("the snapshot recorded no ReplicaSet for its template: cannot restore it")
            })?;
            target.switch_template(&d, rs, &captured.template, &restore_key, None).await?;
        } else if config_changed {
            let rv = d.metadata.resource_version.clone().unwrap_or_default();
            let restart = serde_json::json!({"op": "add", "path": "/spec/template/metadata/annotations",
                "value": {"kubectl.kubernetes.io/restartedAt": chrono::Utc::now().to_rfc3339()}});
            let mut template_annotations =
                d.spec.template.metadata.as_ref().and_then(|m| m.annotations.clone()).unwrap_or_default();
            template_annotations.insert("kubectl.kubernetes.io/restartedAt".into(), chrono::Utc::now().to_rfc3339());
            let has_meta = d.spec.template.metadata.is_some();
            let op = if has_meta {
                serde_json::json!({"op": "add", "path": "/spec/template/metadata/annotations", "value": template_annotations})
            } else {
                serde_json::json!({"op": "add", "path": "/spec/template/metadata", "value": {"annotations": restart["value"]}})
            };
            crate::cluster::patch_if_unchanged(
                &deployments,
                &self.config.deployment,
                &rv,
                vec![op],
                "restart deployment",
            )
            .await?;
        }
        Ok(())
    }
}
