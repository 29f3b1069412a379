//! Connecting to a cluster, and the optimistic-concurrency patch every target uses.

use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Config};
use serde::Deserialize;
use std::path::PathBuf;

use crate::error::err;
use rollback_core::{Error, Result};

/// Annotation holding the idempotency key of the last rollback (`Deployment` template undo).
pub const UNDO_KEY_ANNOTATION: &str = "rollback.dev/undo-key";
/// Annotation with the revision and time at which an undo re-deployed a ReplicaSet
/// (`"REV RFC3339"`), copied by the deployment controller onto that ReplicaSet.
pub const DEPLOYED_AT_ANNOTATION: &str = "rollback.dev/deployed-at";
/// Annotation holding the idempotency key of the last Service selector change.
pub const SELECTOR_KEY_ANNOTATION: &str = "rollback.dev/selector-key";
/// The field manager named in every write.
pub const FIELD_MANAGER: &str = "rollback";

/// Where the cluster is: in plan files, `cluster = { kubeconfig = "...", context = "..." }`,
/// or `cluster = { url = "http://127.0.0.1:PORT" }` (the API double, or `kubectl proxy`).
/// Nothing set: the usual inference (`KUBECONFIG`, `~/.kube/config`, in-cluster).
/// Credentials stay in the kubeconfig; none are ever part of a spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// A kubeconfig file.
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: its current context).
    #[serde(default)]
    pub context: Option<String>,
    /// An API server URL reached without credentials (`kubectl proxy`, the API double).
    #[serde(default)]
    pub url: Option<String>,
}

/// A connected client with the label identities use for the cluster (its URL).
#[derive(Clone)]
pub struct Cluster {
    /// The kube client.
    pub client: Client,
    /// The API server URL, for identities and messages.
    pub label: String,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("label", &self.label).finish()
    }
}

impl Cluster {
    /// A cluster from an existing client; `label` names it in identities (its URL).
    pub fn new(client: Client, label: impl Into<String>) -> Self {
        Cluster { client, label: label.into() }
    }

    /// Connects as `config` says.
    pub async fn connect(config: &ClusterConfig) -> Result<Self> {
        let kube_config = match (&config.url, &config.kubeconfig) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid_input("cluster: give either url or kubeconfig, not both"));
            }
            (Some(url), None) => {
                let uri =
                    url.parse().map_err(|e| Error::invalid_input(format!("cluster url {url:?} is not a URL: {e}")))?;
                Config::new(uri)
            }
            (None, Some(path)) => {
                let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|e| {
                    Error::invalid_input(format!("kubeconfig {}: {e}", path.display())).with_operation("connect")
                })?;
                let options = kube::config::KubeConfigOptions { context: config.context.clone(), ..Default::default() };
                Config::from_custom_kubeconfig(kubeconfig, &options).await.map_err(|e| {
                    Error::invalid_input(format!("kubeconfig {}: {e}", path.display())).with_operation("connect")
                })?
            }
            (None, None) => {
                let options = kube::config::KubeConfigOptions { context: config.context.clone(), ..Default::default() };
                match Config::from_kubeconfig(&options).await {
                    Ok(c) => c,
                    Err(kube_err) => Config::incluster().map_err(|e| {
                        Error::invalid_input(format!(
                            "no cluster configured: kubeconfig ({kube_err}) and in-cluster ({e}) both failed"
                        ))
                    })?,
                }
            }
        };
        let label = kube_config.cluster_url.to_string();
        let client = Client::try_from(kube_config).map_err(err("connect"))?;
        Ok(Cluster { client, label })
    }

    /// A typed API in `namespace`.
    pub fn api<K>(&self, namespace: &str) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), namespace)
    }
}

/// PATCHes `name` with a JSON patch that first tests `metadata.resourceVersion`, so a
/// concurrent change is refused (`Conflict`) rather than overwritten.
pub(crate) async fn patch_if_unchanged<K>(
    api: &Api<K>,
    name: &str,
    resource_version: &str,
    mut ops: Vec<serde_json::Value>,
    operation: &'static str,
) -> Result<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    ops.insert(0, serde_json::json!({"op": "test", "path": "/metadata/resourceVersion", "value": resource_version}));
    let patch: json_patch::Patch = serde_json::from_value(serde_json::Value::Array(ops))
        .map_err(|e| Error::internal(format!("building a JSON patch: {e}")))?;
    api.patch(
        name,
        &PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() },
        &Patch::Json::<()>(patch),
    )
    .await
    .map_err(err(operation))
    .map_err(|e| e.with_context("object", name))
}

/// A JSON-patch op setting one annotation (creating the map if there is none).
pub(crate) fn set_annotation_ops(
    annotations: Option<&std::collections::BTreeMap<String, String>>,
    key: &str,
    value: &str,
) -> serde_json::Value {
    match annotations {
        Some(_) => {
            serde_json::json!({"op": "add", "path": format!("/metadata/annotations/{}", escape_pointer(key)), "value": value})
        }
        None => serde_json::json!({"op": "add", "path": "/metadata/annotations", "value": {key: value}}),
    }
}

/// Escapes a JSON-pointer token (`~` → `~0`, `/` → `~1`).
pub(crate) fn escape_pointer(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Checks a Kubernetes object name (DNS-1123 subdomain) before it reaches a URL.
pub(crate) fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_input(format!("{what} {name:?} is not a valid Kubernetes name (lower-case DNS-1123)")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_pointers() {
        check_name("deployment", "web-1.v2").unwrap();
        for bad in ["", "Web", "-web", "web/..", "a_b"] {
            assert!(check_name("deployment", bad).is_err(), "{bad}");
        }
        assert_eq!(escape_pointer("rollback.dev/undo-key"), "rollback.dev~1undo-key");
    }
}
