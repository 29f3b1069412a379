//! A [`Lock`] on `coordination.k8s.io/v1` Leases: one Lease per resource, a fencing
//! counter shared by all of them, every write compare-and-swap on `resourceVersion`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::{Lease as K8sLease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::{DeleteParams, PostParams, Preconditions};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::Duration;

use crate::cluster::{Cluster, ClusterConfig, check_name};
use crate::error::err;
use rollback_core::{Error, ErrorKind, Holder, Lease, Lock, Result};

const TOKEN: &str = "rollback.dev/fencing-token";
const EXPIRES: &str = "rollback.dev/expires-at";
const HOLDER: &str = "rollback.dev/holder";

/// Configuration of a [`LeaseLock`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseLockConfig {
    /// Where the cluster is.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// The namespace holding the Leases.
    pub namespace: String,
    /// Prefix of the Lease names (default `rollback`).
    #[serde(default = "default_prefix")]
    pub prefix: String,
}

fn default_prefix() -> String {
    "rollback".into()
}

/// Locks as Kubernetes Leases (`coordination.k8s.io/v1`).
///
/// Each resource is a Lease `<prefix>-<name>-<hash>`; `spec.holderIdentity`,
/// `leaseDurationSeconds` and `renewTime` are filled for people and other tools, and
/// the exact expiry, the holder and the fencing token live in annotations. Tokens come
/// from a counter Lease (`<prefix>-fencing-counter`) incremented with compare-and-swap,
/// so they grow across every resource in the namespace. Acquiring is all or nothing:
/// a Lease taken before a refusal is deleted again. Expiry is judged on the client's
/// clock (like client-go's leader election); keep clocks in sync or the TTL generous.
pub struct LeaseLock {
    api: Api<K8sLease>,
    namespace: String,
    prefix: String,
}

impl std::fmt::Debug for LeaseLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseLock").field("namespace", &self.namespace).field("prefix", &self.prefix).finish()
    }
}

/// What a Lease says about its holder.
struct Held {
    token: u64,
    expires_at: DateTime<Utc>,
    holder: Option<Holder>,
}

fn held(lease: &K8sLease) -> Option<Held> {
    let a = lease.metadata.annotations.as_ref()?;
    Some(Held {
        token: a.get(TOKEN)?.parse().ok()?,
        expires_at: DateTime::parse_from_rfc3339(a.get(EXPIRES)?).ok()?.with_timezone(&Utc),
        holder: a.get(HOLDER).and_then(|h| serde_json::from_str(h).ok()),
    })
}

fn now_micro() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

impl LeaseLock {
    /// A lock on a connected cluster.
    pub fn new(cluster: &Cluster, config: LeaseLockConfig) -> Result<Self> {
        check_name("namespace", &config.namespace)?;
        check_name("lease prefix", &config.prefix)?;
        if config.prefix.len() > 30 {
            return Err(Error::invalid_input("lease prefix must be at most 30 characters"));
        }
        Ok(LeaseLock { api: cluster.api(&config.namespace), namespace: config.namespace, prefix: config.prefix })
    }

    /// Connects as `config.cluster` says.
    pub async fn connect(config: LeaseLockConfig) -> Result<Self> {
        let cluster = Cluster::connect(&config.cluster).await?;
        Self::new(&cluster, config)
    }

    /// The Lease name for a resource: readable part plus a digest (names are DNS-1123,
    /// resources are free text).
    pub fn lease_name(&self, resource: &str) -> String {
        let readable: String = resource
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(20)
            .collect();
        let readable = readable.trim_matches('-');
        let digest: String = Sha256::digest(resource.as_bytes()).iter().take(5).map(|b| format!("{b:02x}")).collect();
        if readable.is_empty() {
            format!("{}-{digest}", self.prefix)
        } else {
            format!("{}-{readable}-{digest}", self.prefix)
        }
    }

    /// The next fencing token: the counter Lease's annotation plus one, written with CAS.
    async fn next_token(&self) -> Result<u64> {
        let name = format!("{}-fencing-counter", self.prefix);
        for attempt in 0u32..200 {
            if attempt > 0 {
                // Many contenders CAS one counter: back off with jitter instead of
                // retrying in lock step (100 processes exhausted 50 immediate retries).
                let spread = u64::from(std::process::id() ^ attempt.wrapping_mul(2_654_435_761)) % 16;
                let ceiling = 2u64.saturating_pow(attempt.min(6)).min(64);
                tokio::time::sleep(Duration::from_millis(1 + (ceiling * (8 + spread)) / 16)).await;
            }
            let current = self.api.get_opt(&name).await.map_err(err("get lease"))?;
            let outcome = match current {
                None => {
                    let lease = K8sLease {
                        metadata: ObjectMeta {
                            name: Some(name.clone()),
                            annotations: Some(BTreeMap::from([(TOKEN.to_string(), "1".to_string())])),
                            ..Default::default()
                        },
                        spec: Some(LeaseSpec::default()),
                    };
                    self.api.create(&PostParams::default(), &lease).await.map(|_| 1)
                }
                Some(mut lease) => {
                    let last: u64 = lease
                        .metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(TOKEN))
                        .and_then(|t| t.parse().ok())
                        .unwrap_or(0);
                    lease.metadata.annotations.get_or_insert_default().insert(TOKEN.into(), (last + 1).to_string());
                    self.api.replace(&name, &PostParams::default(), &lease).await.map(|_| last + 1)
                }
            };
            match outcome {
                Ok(token) => return Ok(token),
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(crate::error::map("fencing counter", e)),
            }
        }
        Err(Error::new(ErrorKind::Backend, "fencing counter: too much contention").set_retryable(true))
    }

    fn locked(resource: &str, held: &Held) -> Error {
        let by = held.holder.as_ref().map_or_else(|| "an unknown holder".to_string(), |h| h.to_string());
        Error::new(ErrorKind::Locked, format!("{resource:?} is locked by {by} until {}", held.expires_at.to_rfc3339()))
            .with_context("resource", resource)
            .with_context("holder", by)
            .set_retryable(true)
    }

    fn free(held: Option<&Held>) -> bool {
        held.is_none_or(|h| h.expires_at <= Utc::now() || h.holder.as_ref().is_some_and(Holder::is_dead_local_process))
    }

    fn body(
        &self,
        name: &str,
        resource: &str,
        holder: &Holder,
        token: u64,
        ttl: Duration,
        base: Option<K8sLease>,
    ) -> Result<K8sLease> {
        let expires =
            Utc::now() + chrono::TimeDelta::from_std(ttl).map_err(|_| Error::invalid_input("lease ttl is too long"))?;
        let mut lease = base.unwrap_or_else(|| K8sLease {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            spec: Some(LeaseSpec::default()),
        });
        let annotations = lease.metadata.annotations.get_or_insert_default();
        annotations.insert(TOKEN.into(), token.to_string());
        annotations.insert(EXPIRES.into(), expires.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
        annotations.insert(HOLDER.into(), serde_json::to_string(holder).map_err(|e| Error::internal(e.to_string()))?);
        annotations.insert("rollback.dev/resource".into(), resource.into());
        let spec = lease.spec.get_or_insert_default();
        let transitions = spec.lease_transitions.unwrap_or(0);
        if spec.holder_identity.as_deref() != Some(holder.to_string().as_str()) {
            spec.lease_transitions = Some(transitions + i32::from(spec.holder_identity.is_some()));
            spec.acquire_time = Some(now_micro());
        }
        spec.holder_identity = Some(holder.to_string());
        spec.lease_duration_seconds = Some(i32::try_from(ttl.as_secs().max(1)).unwrap_or(i32::MAX));
        spec.renew_time = Some(now_micro());
        Ok(lease)
    }

    async fn delete_if(&self, name: &str, token: u64) -> Result<()> {
        let Some(lease) = self.api.get_opt(name).await.map_err(err("get lease"))? else { return Ok(()) };
        if held(&lease).is_none_or(|h| h.token != token) {
            return Ok(());
        }
        let params = DeleteParams {
            preconditions: Some(Preconditions { resource_version: lease.metadata.resource_version.clone(), uid: None }),
            ..Default::default()
        };
        match self.api.delete(name, &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(crate::error::map("delete lease", e)),
        }
    }
}

#[async_trait]
impl Lock for LeaseLock {
    async fn acquire(&self, resources: &[String], holder: &Holder, ttl: Duration) -> Result<Lease> {
        let mut sorted = resources.to_vec();
        sorted.sort();
        sorted.dedup();
        if sorted.is_empty() {
            return Err(Error::invalid_input("nothing to lock"));
        }
        let mut existing = Vec::new();
        for resource in &sorted {
            let name = self.lease_name(resource);
            let lease = self.api.get_opt(&name).await.map_err(err("get lease"))?;
            if let Some(h) = lease.as_ref().and_then(held)
                && !Self::free(Some(&h))
            {
                return Err(Self::locked(resource, &h));
            }
            existing.push((resource.clone(), name, lease));
        }
        let token = self.next_token().await?;
        let mut taken: Vec<String> = Vec::new();
        let mut failure = None;
        for (resource, name, lease) in existing {
            let result = match lease {
                None => {
                    let body = self.body(&name, &resource, holder, token, ttl, None)?;
                    self.api.create(&PostParams::default(), &body).await
                }
                Some(lease) => {
                    let body = self.body(&name, &resource, holder, token, ttl, Some(lease))?;
                    self.api.replace(&name, &PostParams::default(), &body).await
                }
            };
            match result {
                Ok(_) => taken.push(name),
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    // Someone created or renewed it between our read and our write: name them.
                    let now = self.api.get_opt(&name).await.map_err(err("get lease"))?;
                    failure = Some(match now.as_ref().and_then(held) {
                        Some(h) => Self::locked(&resource, &h),
                        None => Error::new(
                            ErrorKind::Locked,
                            format!("{resource:?} was taken by another holder while locking"),
                        )
                        .with_context("resource", &resource)
                        .set_retryable(true),
                    });
                    break;
                }
                Err(e) => {
                    failure = Some(crate::error::map("write lease", e));
                    break;
                }
            }
        }
        if let Some(failure) = failure {
            for name in &taken {
                if let Err(e) = self.delete_if(name, token).await {
                    tracing::warn!(lease = %name, error = %e, "could not undo a partial acquire");
                }
            }
            return Err(failure);
        }
        let expires_at = Utc::now() + chrono::TimeDelta::from_std(ttl).unwrap_or_default();
        Ok(Lease { resources: sorted, token, holder: holder.clone(), expires_at })
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease> {
        for resource in &lease.resources {
            let name = self.lease_name(resource);
            let mut attempts = 0;
            loop {
                attempts += 1;
                let current = self.api.get_opt(&name).await.map_err(err("get lease"))?;
                let h = current.as_ref().and_then(held);
                if h.as_ref().is_none_or(|h| h.token != lease.token) {
                    let by = h.and_then(|h| h.holder).map_or_else(|| "nobody".to_string(), |h| h.to_string());
                    return Err(Error::new(
                        ErrorKind::Locked,
                        format!("lease on {resource:?} (token {}) was lost; now held by {by}", lease.token),
                    )
                    .set_retryable(false));
                }
                let body = self.body(&name, resource, &lease.holder, lease.token, ttl, current)?;
                match self.api.replace(&name, &PostParams::default(), &body).await {
                    Ok(_) => break,
                    Err(kube::Error::Api(s)) if s.code == 409 && attempts < 5 => continue,
                    Err(e) => return Err(crate::error::map("renew lease", e)),
                }
            }
        }
        let expires_at = Utc::now() + chrono::TimeDelta::from_std(ttl).unwrap_or_default();
        Ok(Lease { expires_at, ..lease.clone() })
    }

    async fn release(&self, lease: &Lease) -> Result<()> {
        for resource in &lease.resources {
            self.delete_if(&self.lease_name(resource), lease.token).await?;
        }
        Ok(())
    }
}
