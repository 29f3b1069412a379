use async_trait::async_trait;
use chrono::Utc;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::verify::PrometheusClient;
use crate::{ArtifactStore, Error, IdempotencyKey, Result, Snapshot, SnapshotRef};

/// Named Prometheus queries kept as evidence before a rollback (runbook 002's
/// `curl …/api/v1/query?query=up > metrics-snapshot.json`): instant queries, and
/// optionally each over the incident window ending now. `url` or `secrets.url`.
///
/// ```toml
/// config = { url = "http://127.0.0.1:9090", queries = { up = "up", error_rate = 'sum(rate(http_requests_total{code=~"5.."}[5m])) / sum(rate(http_requests_total[5m]))' }, range = { window = "30m", step = "15s" } }
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrometheusEvidenceConfig {
    /// The server (`http://127.0.0.1:9090`); or the secret `url` when it has credentials.
    #[serde(default)]
    pub url: String,
    /// PromQL queries by name (`up = "up"`); the name keys the answer in the artifact
    /// and names the query in errors.
    pub queries: BTreeMap<String, String>,
    /// Also capture each query as a range over the incident window ending now.
    #[serde(default)]
    pub range: Option<RangeWindow>,
    /// Request headers read from environment variables (header name → variable).
    #[serde(default)]
    pub headers_from_env: BTreeMap<String, String>,
}

/// The incident window a range capture covers: `{ window = "30m", step = "15s" }`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RangeWindow {
    /// How far back from now.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub window: Duration,
    /// Between points (15 s by default).
    #[serde(default = "default_step", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub step: Duration,
}

fn default_step() -> Duration {
    Duration::from_secs(15)
}

/// Prometheus refuses a range of more points than this per series.
const MAX_POINTS: u128 = 11_000;

impl PrometheusEvidenceConfig {
    /// What is wrong with it offline: no query, an empty one, or a range Prometheus
    /// would refuse.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.queries.is_empty() {
            return Err("`queries` lists no query: give at least one, like `{ up = \"up\" }`".into());
        }
        if let Some((name, _)) = self.queries.iter().find(|(_, q)| q.trim().is_empty()) {
            return Err(format!("query {name:?} is empty"));
        }
        if let Some(range) = self.range {
            if range.window.is_zero() || range.step.is_zero() {
                return Err("`range.window` and `range.step` must be longer than zero".into());
            }
            let points = range.window.as_millis() / range.step.as_millis().max(1);
            if points > MAX_POINTS {
                return Err(format!(
                    "`range` asks for {points} points per series; Prometheus answers at most {MAX_POINTS}: \
                     take a longer step"
                ));
            }
        }
        Ok(())
    }
}

/// Metrics evidence: runs the named queries (concurrently) and keeps the API's raw
/// answers in one JSON artifact, `metrics-snapshot.json`, with when and how long it
/// took. A query that fails fails the capture, naming the query (never a URL
/// password). Nothing to restore: it is evidence.
pub struct PrometheusEvidence {
    name: String,
    client: PrometheusClient,
    config: PrometheusEvidenceConfig,
}

impl std::fmt::Debug for PrometheusEvidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client shows its URL redacted; the config's `url` is not shown.
        f.debug_struct("PrometheusEvidence")
            .field("name", &self.name)
            .field("client", &self.client)
            .field("queries", &self.config.queries)
            .field("range", &self.config.range)
            .finish()
    }
}

impl PrometheusEvidence {
    /// Metrics evidence of `config.queries` from `client`'s server.
    pub fn new(name: &str, client: PrometheusClient, config: PrometheusEvidenceConfig) -> Result<Self> {
        config.check().map_err(|why| Error::invalid_input(format!("metrics evidence {name:?}: {why}")))?;
        Ok(PrometheusEvidence { name: name.to_owned(), client, config })
    }

    /// One query's answers: `{query, instant, range?}`.
    async fn capture_one(&self, query_name: &str, query: &str) -> Result<serde_json::Value> {
        let named = |e: Error| {
            Error::new(e.kind(), format!("metrics query {query_name:?} failed"))
                .set_retryable(e.is_retryable())
                .with_context("snapshot", &self.name)
                .with_source(e)
        };
        let instant = self.client.query_raw(query).await.map_err(named)?;
        let mut answer = serde_json::json!({ "query": query, "instant": instant });
        if let Some(range) = self.config.range {
            let end = Utc::now();
            let start = end - chrono::Duration::from_std(range.window).unwrap_or(chrono::Duration::zero());
            answer["range"] = self.client.query_range(query, start, end, range.step).await.map_err(named)?;
        }
        Ok(answer)
    }
}

/// How many series an API `data` holds.
fn series(data: &serde_json::Value) -> usize {
    data.get("result").and_then(serde_json::Value::as_array).map_or(0, Vec::len)
}

#[async_trait]
impl Snapshot for PrometheusEvidence {
    fn name(&self) -> &str {
        &self.name
    }

    async fn capture(&self, store: &dyn ArtifactStore, key: &IdempotencyKey) -> Result<SnapshotRef> {
        let started = Instant::now();
        let taken_at = Utc::now();
        let answers =
            futures::future::try_join_all(self.config.queries.iter().map(|(name, query)| async move {
                Ok::<_, Error>((name.clone(), self.capture_one(name, query).await?))
            }))
            .await?;
        let took = started.elapsed();
        let counts: BTreeMap<String, usize> =
            answers.iter().map(|(name, answer)| (name.clone(), series(&answer["instant"]))).collect();
        let range = self.config.range.map(|r| {
            serde_json::json!({
                "window": humantime_serde::re::humantime::format_duration(r.window).to_string(),
                "step": humantime_serde::re::humantime::format_duration(r.step).to_string(),
            })
        });
        let document = serde_json::json!({
            "prometheus": self.client.shown_url(),
            "taken_at": taken_at,
            "took_ms": took.as_secs_f64() * 1000.0,
            "range": range,
            "queries": answers.into_iter().collect::<serde_json::Map<_, _>>(),
        });
        let bytes = serde_json::to_vec_pretty(&document)
            .map_err(|e| Error::internal(format!("metrics evidence cannot be written: {e}")))?;
        let artifact = format!("{}/{}/metrics-snapshot.json", key.as_str().replace('/', "_"), self.name);
        store.put(&artifact, bytes).await?;
        let total: usize = counts.values().sum();
        tracing::info!(snapshot = %self.name, queries = counts.len(), series = total, ?took, "metrics evidence kept");
        Ok(SnapshotRef {
            snapshot: self.name.clone(),
            description: format!(
                "{} Prometheus quer{} kept as evidence ({total} series now{})",
                counts.len(),
                if counts.len() == 1 { "y" } else { "ies" },
                if self.config.range.is_some() { ", and over the incident window" } else { "" }
            ),
            artifacts: vec![artifact],
            taken_at,
            metadata: serde_json::json!({ "series": counts }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml: &str) -> PrometheusEvidenceConfig {
        toml::from_str(toml).unwrap()
    }

    #[test]
    fn configs_are_checked_offline() {
        assert!(config("queries = { up = 'up' }").check().is_ok());
        assert!(config("queries = {}").check().unwrap_err().contains("no query"));
        assert!(config("queries = { up = ' ' }").check().unwrap_err().contains("\"up\" is empty"));
        let fine = config("queries = { up = 'up' }\nrange = { window = '30m' }");
        assert_eq!(fine.range.unwrap().step, Duration::from_secs(15));
        let dense = config("queries = { up = 'up' }\nrange = { window = '7d', step = '1s' }");
        assert!(dense.check().unwrap_err().contains("longer step"));
        let typo = toml::from_str::<PrometheusEvidenceConfig>("queries = { up = 'up' }\nrange = { windw = '1m' }");
        assert!(typo.unwrap_err().to_string().contains("unknown field `windw`"));
    }
}
