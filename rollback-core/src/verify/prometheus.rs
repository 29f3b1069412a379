use async_trait::async_trait;
use serde::Deserialize;
use std::collections::BTreeMap;

use super::http::{client, env_headers, parse_url, redact_url};
use super::{Check, Outcome, Verifier};
use crate::{Error, ErrorKind, Result};

/// A Prometheus HTTP API client for instant queries (`/api/v1/query`).
///
/// ```no_run
/// # async fn demo() -> rollback_core::Result<()> {
/// use rollback_core::verify::PrometheusClient;
/// let prom = PrometheusClient::new("http://127.0.0.1:9090", &Default::default())?;
/// let rate = prom.query(r#"sum(rate(http_requests_total{code=~"5.."}[5m])) / sum(rate(http_requests_total[5m]))"#).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PrometheusClient {
    base: reqwest::Url,
    shown: String,
    headers: reqwest::header::HeaderMap,
    client: reqwest::Client,
}

impl std::fmt::Debug for PrometheusClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusClient").field("base", &self.shown).finish()
    }
}

#[derive(Deserialize)]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum ApiData {
    Vector(Vec<Sample>),
    Scalar((f64, String)),
    Matrix(serde::de::IgnoredAny),
    String(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct Sample {
    value: (f64, String),
}

impl PrometheusClient {
    /// A client of the server at `base_url`, with headers taken from environment
    /// variables (header name → variable), e.g. a bearer token.
    pub fn new(base_url: &str, headers_from_env: &BTreeMap<String, String>) -> Result<Self> {
        let base = parse_url("prometheus", base_url)?;
        Ok(PrometheusClient {
            shown: redact_url(&base),
            headers: env_headers("prometheus", headers_from_env)?,
            base,
            client: client()?,
        })
    }

    /// Runs an instant query; the first sample's value, or `None` when the result is
    /// empty or not a number.
    pub async fn query(&self, query: &str) -> Result<Option<f64>> {
        let mut url = self.base.join("api/v1/query").map_err(|e| Error::invalid_input(e.to_string()))?;
        url.query_pairs_mut().append_pair("query", query);
        let backend = |msg: String| {
            Error::new(ErrorKind::Backend, msg).with_context("prometheus", &self.shown).with_context("query", query)
        };
        let response = self
            .client
            .get(url)
            .headers(self.headers.clone())
            .send()
            .await
            .map_err(|e| backend(format!("query failed: {}", e.without_url())))?;
        let status = response.status();
        let body: ApiResponse = response
            .json()
            .await
            .map_err(|e| backend(format!("HTTP {status}, unreadable answer: {}", e.without_url())))?;
        if body.status != "success" {
            return Err(backend(format!("query error: {}", body.error.unwrap_or_default())).set_retryable(false));
        }
        let value = match body.data {
            Some(ApiData::Vector(samples)) => samples.first().map(|s| s.value.1.clone()),
            Some(ApiData::Scalar((_, v))) => Some(v),
            Some(ApiData::Matrix(_) | ApiData::String(_)) => {
                return Err(backend("expected an instant vector or scalar".into()).set_retryable(false));
            }
            None => None,
        };
        Ok(value.and_then(|v| v.parse::<f64>().ok()).filter(|v| v.is_finite()))
    }
}

/// A Prometheus instant query against a threshold (`url` or `secrets.url`).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
pub struct PrometheusConfig {
    /// The server (`http://127.0.0.1:9090`); or the secret `url` when it has credentials.
    #[serde(default)]
    pub url: String,
    /// The PromQL query; its value is compared with the threshold.
    pub query: String,
    /// The threshold.
    #[serde(flatten)]
    pub threshold: Threshold,
    /// Request headers read from environment variables (header name → variable).
    #[serde(default)]
    pub headers_from_env: BTreeMap<String, String>,
}

/// Where a value must be to pass.
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize, schemars::JsonSchema)]
pub struct Threshold {
    /// Pass only below this.
    #[serde(default)]
    pub below: Option<f64>,
    /// Pass only above this.
    #[serde(default)]
    pub above: Option<f64>,
}

impl Threshold {
    /// Whether `value` passes.
    pub fn passes(&self, value: f64) -> bool {
        self.below.is_none_or(|b| value < b) && self.above.is_none_or(|a| value > a)
    }
}

/// An instant query against a threshold: error rate below 0.1 %, p99 below 100 ms.
/// No data is inconclusive.
#[derive(Debug)]
pub struct PrometheusVerifier {
    name: String,
    client: PrometheusClient,
    query: String,
    threshold: Threshold,
}

impl PrometheusVerifier {
    /// A verifier of `query` against `threshold`.
    pub fn new(name: &str, client: PrometheusClient, query: &str, threshold: Threshold) -> Result<Self> {
        if threshold.below.is_none() && threshold.above.is_none() {
            return Err(Error::invalid_input(format!("prometheus verifier {name:?} needs `below` or `above`")));
        }
        Ok(PrometheusVerifier { name: name.to_owned(), client, query: query.to_owned(), threshold })
    }
}

#[async_trait]
impl Verifier for PrometheusVerifier {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self) -> Result<Check> {
        Ok(match self.client.query(&self.query).await? {
            None => Check::new(Outcome::Inconclusive, format!("no data for {}", self.query)),
            Some(value) => {
                let outcome = if self.threshold.passes(value) { Outcome::Pass } else { Outcome::Fail };
                Check::new(outcome, format!("{} = {value} ({:?})", self.query, self.threshold)).measure("value", value)
            }
        })
    }
}
