use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

use super::http::{client, describe, env_headers, parse_url, redact_url};
use super::{Check, Outcome, Verifier};
use crate::{Error, ErrorKind, Result};

/// A Prometheus HTTP API client for instant (`/api/v1/query`) and range
/// (`/api/v1/query_range`) queries.
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
    data: Option<serde_json::Value>,
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

fn unix_seconds(at: DateTime<Utc>) -> String {
    format!("{:.3}", at.timestamp_millis() as f64 / 1000.0)
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

    /// The server's URL as it may be shown (credentials redacted).
    pub fn shown_url(&self) -> &str {
        &self.shown
    }

    /// Runs an instant query; the first sample's value, or `None` when the result is
    /// empty or not a number.
    pub async fn query(&self, query: &str) -> Result<Option<f64>> {
        let data = self.query_raw(query).await?;
        let backend = |msg: &str| self.error(msg.to_owned(), query).set_retryable(false);
        let data = if data.is_null() {
            None
        } else {
            Some(serde_json::from_value::<ApiData>(data).map_err(|e| backend(&format!("unreadable result: {e}")))?)
        };
        let value = match data {
            Some(ApiData::Vector(samples)) => samples.first().map(|s| s.value.1.clone()),
            Some(ApiData::Scalar((_, v))) => Some(v),
            Some(ApiData::Matrix(_) | ApiData::String(_)) => {
                return Err(backend("expected an instant vector or scalar"));
            }
            None => None,
        };
        Ok(value.and_then(|v| v.parse::<f64>().ok()).filter(|v| v.is_finite()))
    }

    /// Runs an instant query and returns the API's `data` as it came
    /// (`{"resultType": "vector", "result": [...]}`), every series with its labels:
    /// what evidence keeps.
    pub async fn query_raw(&self, query: &str) -> Result<serde_json::Value> {
        self.api("api/v1/query", &[("query", query.to_owned())], query).await
    }

    /// Runs a range query (`/api/v1/query_range`: `query` from `start` to `end`, a
    /// point every `step`) and returns the API's `data` as it came
    /// (`{"resultType": "matrix", "result": [...]}`).
    ///
    /// ```no_run
    /// # async fn demo() -> rollback_core::Result<()> {
    /// use rollback_core::verify::PrometheusClient;
    /// use std::time::Duration;
    /// let prom = PrometheusClient::new("http://127.0.0.1:9090", &Default::default())?;
    /// let end = chrono::Utc::now();
    /// let start = end - chrono::Duration::minutes(30);
    /// let matrix = prom.query_range("up", start, end, Duration::from_secs(15)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn query_range(
        &self,
        query: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> Result<serde_json::Value> {
        if step.is_zero() || end < start {
            return Err(Error::invalid_input("a range query needs a step longer than zero and end ≥ start")
                .with_context("query", query));
        }
        let params = [
            ("query", query.to_owned()),
            ("start", unix_seconds(start)),
            ("end", unix_seconds(end)),
            ("step", format!("{:.3}", step.as_secs_f64())),
        ];
        self.api("api/v1/query_range", &params, query).await
    }

    /// Runs a range query and returns its first series' points, oldest first (what a
    /// signal over an incident window is); empty when it returned no series.
    pub async fn query_series(
        &self,
        query: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> Result<Vec<(DateTime<Utc>, f64)>> {
        #[derive(Deserialize)]
        struct Series {
            values: Vec<(f64, String)>,
        }
        let data = self.query_range(query, start, end, step).await?;
        let unreadable = |msg: String| self.error(msg, query).set_retryable(false);
        if data.is_null() {
            return Ok(Vec::new());
        }
        if data.get("resultType").and_then(|t| t.as_str()) != Some("matrix") {
            return Err(unreadable("expected a range vector (matrix)".into()));
        }
        let series: Vec<Series> = serde_json::from_value(data.get("result").cloned().unwrap_or_default())
            .map_err(|e| unreadable(format!("unreadable result: {e}")))?;
        let Some(first) = series.into_iter().next() else { return Ok(Vec::new()) };
        Ok(first
            .values
            .into_iter()
            .filter_map(|(at, v)| {
                let value = v.parse::<f64>().ok().filter(|v| v.is_finite())?;
                Some((DateTime::from_timestamp_millis((at * 1000.0).round() as i64)?, value))
            })
            .collect())
    }

    fn error(&self, msg: String, query: &str) -> Error {
        Error::new(ErrorKind::Backend, msg).with_context("prometheus", &self.shown).with_context("query", query)
    }

    /// One GET of the HTTP API; the `data` of a `success` answer (null when absent).
    async fn api(&self, endpoint: &str, params: &[(&str, String)], query: &str) -> Result<serde_json::Value> {
        let mut url = self.base.join(endpoint).map_err(|e| Error::invalid_input(e.to_string()))?;
        url.query_pairs_mut().extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())));
        let response = self
            .client
            .get(url)
            .headers(self.headers.clone())
            .send()
            .await
            .map_err(|e| self.error(format!("query failed: {}", describe(e)), query))?;
        let status = response.status();
        let body: ApiResponse = response
            .json()
            .await
            .map_err(|e| self.error(format!("HTTP {status}, unreadable answer: {}", describe(e)), query))?;
        if body.status != "success" {
            let msg = format!("query error: {}", body.error.unwrap_or_default());
            return Err(self.error(msg, query).set_retryable(false));
        }
        Ok(body.data.unwrap_or(serde_json::Value::Null))
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
            None => Check::new(
                Outcome::Inconclusive,
                format!("no data for {}: no series, or not a number (a rate of no requests)", self.query),
            ),
            Some(value) => {
                let outcome = if self.threshold.passes(value) { Outcome::Pass } else { Outcome::Fail };
                Check::new(outcome, format!("{} = {value} ({:?})", self.query, self.threshold)).measure("value", value)
            }
        })
    }
}
