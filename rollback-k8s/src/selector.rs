//! Traffic by Service selector: point a Service at no pods (block) or at other pods
//! (a maintenance Deployment, the stable track), and back.

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use serde::Deserialize;
use std::collections::BTreeMap;

use crate::cluster::{
    Cluster, ClusterConfig, SELECTOR_KEY_ANNOTATION, check_name, patch_if_unchanged, set_annotation_ops,
};
use crate::error::err;
use crate::rollout::canonical;
use rollback_core::{
    Capabilities, Category, Change, Error, ErrorKind, IdempotencyKey, Identity, Observed, Request, Result, Target,
    TargetId, Version,
};

/// The label `block` adds to a selector: no pod carries it, so the Service has no endpoints.
pub const BLOCKED_LABEL: &str = "rollback.dev/traffic";

/// Configuration of a [`ServiceSelectorTarget`] (`kind = "k8s-service-selector"`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceSelectorConfig {
    /// Where the cluster is.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// The namespace.
    pub namespace: String,
    /// The Service's name.
    pub service: String,
}

/// A Service's selector: the actions `block` (adds `rollback.dev/traffic: blocked`, which
/// no pod has: the Service keeps its address but has no endpoints) and `set` with
/// `{ "selector": { … } }`. The change records the selector it found; the inverse puts
/// it back. The run key goes in the annotation `rollback.dev/selector-key`.
pub struct ServiceSelectorTarget {
    name: TargetId,
    cluster_label: String,
    api: Api<Service>,
    namespace: String,
    service: String,
}

impl std::fmt::Debug for ServiceSelectorTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceSelectorTarget")
            .field("name", &self.name)
            .field("namespace", &self.namespace)
            .field("service", &self.service)
            .finish()
    }
}

type Selector = BTreeMap<String, String>;

fn version(selector: &Selector) -> Version {
    Version::new(canonical(&serde_json::to_value(selector).unwrap_or_default()))
}

fn selectors(change: &Change) -> Result<(Selector, Selector)> {
    let get = |k: &str| change.payload.get(k).cloned().and_then(|v| serde_json::from_value::<Selector>(v).ok());
    match (get("from"), get("to")) {
        (Some(from), Some(to)) => Ok((from, to)),
        _ => Err(Error::invalid_input("not a k8s-service-selector change (payload needs from and to)")),
    }
}

impl ServiceSelectorTarget {
    /// A target on a connected cluster.
    pub fn new(name: &str, cluster: Cluster, config: ServiceSelectorConfig) -> Result<Self> {
        check_name("namespace", &config.namespace)?;
        check_name("service", &config.service)?;
        Ok(ServiceSelectorTarget {
            name: TargetId::new(name),
            cluster_label: cluster.label.clone(),
            api: cluster.api(&config.namespace),
            namespace: config.namespace,
            service: config.service,
        })
    }

    /// Connects as `config.cluster` says.
    pub async fn connect(name: &str, config: ServiceSelectorConfig) -> Result<Self> {
        let cluster = Cluster::connect(&config.cluster).await?;
        Self::new(name, cluster, config)
    }

    async fn get(&self) -> Result<Service> {
        self.api
            .get(&self.service)
            .await
            .map_err(err("get service"))
            .map_err(|e| e.with_context("service", format!("{}/{}", self.namespace, self.service)))
    }

    fn live(svc: &Service) -> Selector {
        svc.spec.as_ref().and_then(|s| s.selector.clone()).unwrap_or_default()
    }

    fn stamped(svc: &Service) -> Option<&str> {
        svc.metadata.annotations.as_ref()?.get(SELECTOR_KEY_ANNOTATION).map(String::as_str)
    }

    fn change(&self, from: &Selector, to: &Selector) -> Change {
        let show = |s: &Selector| s.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
        Change::new(self.name.clone(), "selector", Some(version(from)), version(to))
            .describe(format!(
                "{}: service {}/{} selector {{{}}} -> {{{}}}",
                self.name,
                self.namespace,
                self.service,
                show(from),
                show(to)
            ))
            .with_payload(serde_json::json!({"from": from, "to": to}))
    }
}

#[async_trait]
impl Target for ServiceSelectorTarget {
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
        let svc = self.get().await?;
        Ok(Identity::new(format!(
            "k8s:{}/namespaces/{}/services/{}@{}",
            self.cluster_label,
            self.namespace,
            self.service,
            svc.metadata.uid.unwrap_or_default()
        )))
    }

    async fn current(&self) -> Result<Version> {
        Ok(version(&Self::live(&self.get().await?)))
    }

    async fn prepare(&self, request: &Request) -> Result<Change> {
        let from = Self::live(&self.get().await?);
        let to = match request {
            Request::Action { action, .. } if action == "block" => {
                let mut to = from.clone();
                to.insert(BLOCKED_LABEL.into(), "blocked".into());
                to
            }
            Request::Action { action, params } if action == "set" => params
                .get("selector")
                .cloned()
                .and_then(|v| serde_json::from_value::<Selector>(v).ok())
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    Error::invalid_input("action \"set\" needs params.selector, a non-empty map of labels")
                })?,
            other => {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!("k8s-service-selector does block and set {{selector}}, not {other}"),
                ));
            }
        };
        if from.is_empty() {
            return Err(Error::invalid_input(format!(
                "service {}/{} has no selector (an ExternalName or manual-endpoints Service): nothing to switch",
                self.namespace, self.service
            )));
        }
        Ok(self.change(&from, &to))
    }

    async fn apply(&self, change: &Change, key: &IdempotencyKey) -> Result<()> {
        let (_, to) = selectors(change)?;
        let svc = self.get().await?;
        if !self.classify(&svc, change, key).proceed(change)? {
            return Ok(());
        }
        let rv = svc.metadata.resource_version.clone().unwrap_or_default();
        let ops = vec![
            serde_json::json!({"op": "add", "path": "/spec/selector", "value": to}),
            set_annotation_ops(svc.metadata.annotations.as_ref(), SELECTOR_KEY_ANNOTATION, key.as_str()),
        ];
        patch_if_unchanged(&self.api, &self.service, &rv, ops, "patch service").await?;
        Ok(())
    }

    async fn observe(&self, change: &Change, key: &IdempotencyKey) -> Result<Observed> {
        Ok(self.classify(&self.get().await?, change, key))
    }

    fn inverse(&self, change: &Change) -> Result<Change> {
        let (from, to) = selectors(change)?;
        Ok(self
            .change(&to, &from)
            .describe(format!("{}: restore service {}/{} selector", self.name, self.namespace, self.service)))
    }
}

impl ServiceSelectorTarget {
    fn classify(&self, svc: &Service, change: &Change, key: &IdempotencyKey) -> Observed {
        let live = version(&Self::live(svc));
        if live == change.to && Self::stamped(svc) == Some(key.as_str()) {
            Observed::Done
        } else if Some(&live) == change.from.as_ref() {
            Observed::NotStarted
        } else if live == change.to {
            // Someone else set the same selector: the traffic is where we want it.
            Observed::Done
        } else {
            Observed::Diverged(format!("the selector is now {}", live.id))
        }
    }
}
