use async_trait::async_trait;
use serde::Deserialize;
use std::collections::BTreeMap;

use crate::target::{Capabilities, Observed, Request};
use crate::verify::http_support::{client, env_headers, parse_url, redact_url};
use crate::{Category, Change, Error, ErrorKind, IdempotencyKey, Identity, Result, Target, TargetId, Version};

fn default_field() -> String {
    "enabled".into()
}

/// Configuration of an [`HttpFlag`].
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpFlagConfig {
    /// The flag's URL: GET returns JSON with the field, PATCH sets it.
    pub url: String,
    /// The JSON field (`enabled`).
    #[serde(default = "default_field")]
    pub field: String,
    /// Headers from environment variables (an API token).
    #[serde(default)]
    pub headers_from_env: BTreeMap<String, String>,
}

/// A feature flag behind an HTTP API (runbook 002: `PATCH {"enabled": false}`). An
/// action target: `disable`, `enable`, or `set` with `{"value": …}`; the inverse
/// restores the previous value. A flag cannot hold our idempotency key, so `observe`
/// goes by value: setting a flag to the value it has is a no-op either way.
pub struct HttpFlag {
    name: TargetId,
    url: reqwest::Url,
    shown: String,
    field: String,
    headers: reqwest::header::HeaderMap,
    client: reqwest::Client,
}

impl std::fmt::Debug for HttpFlag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpFlag")
            .field("name", &self.name)
            .field("url", &self.shown)
            .field("field", &self.field)
            .finish()
    }
}

impl HttpFlag {
    /// Checks the configuration and resolves headers from the environment.
    pub fn new(name: &str, config: HttpFlagConfig) -> Result<Self> {
        let url = parse_url(name, &config.url)?;
        Ok(HttpFlag {
            name: TargetId::new(name),
            shown: redact_url(&url),
            url,
            field: config.field,
            headers: env_headers(name, &config.headers_from_env)?,
            client: client()?,
        })
    }

    fn failed(&self, msg: String) -> Error {
        Error::new(ErrorKind::Backend, msg).with_context("flag", &self.shown)
    }

    async fn value(&self) -> Result<serde_json::Value> {
        let response = self
            .client
            .get(self.url.clone())
            .headers(self.headers.clone())
            .send()
            .await
            .map_err(|e| self.failed(format!("GET failed: {}", e.without_url())))?;
        if !response.status().is_success() {
            return Err(self.failed(format!("GET answered HTTP {}", response.status().as_u16())));
        }
        let body: serde_json::Value =
            response.json().await.map_err(|e| self.failed(format!("GET returned no JSON: {}", e.without_url())))?;
        body.get(&self.field).cloned().ok_or_else(|| self.failed(format!("the flag has no field {:?}", self.field)))
    }

    fn version(value: &serde_json::Value) -> Version {
        Version::new(value.to_string())
    }
}

#[async_trait]
impl Target for HttpFlag {
    fn name(&self) -> &TargetId {
        &self.name
    }

    fn kind(&self) -> &str {
        <Self as crate::kind::Kind>::KIND
    }

    fn category(&self) -> Category {
        Category::Flag
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { versioned: false, converges_from_partial: true }
    }

    async fn identity(&self) -> Result<Identity> {
        Ok(Identity::new(format!("http-flag:{}#{}", self.shown, self.field)))
    }

    async fn current(&self) -> Result<Version> {
        Ok(Self::version(&self.value().await?))
    }

    async fn prepare(&self, request: &Request) -> Result<Change> {
        let to = match request {
            Request::Action { action, .. } if action == "disable" => serde_json::Value::Bool(false),
            Request::Action { action, .. } if action == "enable" => serde_json::Value::Bool(true),
            Request::Action { action, params } if action == "set" => params
                .get("value")
                .cloned()
                .ok_or_else(|| Error::invalid_input("flag action \"set\" needs params.value"))?,
            other => return Err(Error::new(ErrorKind::Unsupported, format!("http flag cannot do {other}"))),
        };
        let from = self.value().await?;
        let description = format!("{}: set {} from {from} to {to} ({})", self.name, self.field, self.shown);
        Ok(Change::new(self.name.clone(), "flag", Some(Self::version(&from)), Self::version(&to))
            .describe(description)
            .with_payload(serde_json::json!({ "from": from, "to": to })))
    }

    async fn apply(&self, change: &Change, _key: &IdempotencyKey) -> Result<()> {
        let live = Self::version(&self.value().await?);
        if live == change.to {
            return Ok(());
        }
        if Some(&live) != change.from.as_ref() {
            return Err(Error::new(ErrorKind::Conflict, format!("expected {:?} but the flag is {live}", change.from)));
        }
        let to =
            change.payload.get("to").cloned().ok_or_else(|| Error::invalid_input("flag change has no payload.to"))?;
        let body = serde_json::json!({ self.field.clone(): to });
        let response = self
            .client
            .patch(self.url.clone())
            .headers(self.headers.clone())
            .json(&body)
            .send()
            .await
            .map_err(|e| self.failed(format!("PATCH failed: {}", e.without_url())))?;
        if !response.status().is_success() {
            return Err(self.failed(format!("PATCH answered HTTP {}", response.status().as_u16())));
        }
        Ok(())
    }

    async fn observe(&self, change: &Change, _key: &IdempotencyKey) -> Result<Observed> {
        let live = Self::version(&self.value().await?);
        Ok(if live == change.to {
            Observed::Done
        } else if Some(&live) == change.from.as_ref() {
            Observed::NotStarted
        } else {
            Observed::Diverged(format!("the flag is {live}"))
        })
    }

    fn inverse(&self, change: &Change) -> Result<Change> {
        let from = change.payload.get("from").cloned().ok_or_else(|| Error::unsupported("inverse"))?;
        let to = change.payload.get("to").cloned().unwrap_or_default();
        let description = format!("{}: restore {} to {from}", self.name, self.field);
        Ok(Change::new(self.name.clone(), "flag", Some(change.to.clone()), Self::version(&from))
            .describe(description)
            .with_payload(serde_json::json!({ "from": to, "to": from })))
    }
}
