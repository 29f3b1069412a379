//! Should we roll back? [`Signals`] in, a [`Decision`] out: roll back now, consider
//! it (a planned rollback that needs approval), or don't (hotfix, flag off,
//! investigate, monitor) — always with the reasons.
//!
//! Defaults come from the runbooks (`shared/runbooks/000`–`004`). Where they disagree
//! the choice is a setting:
//!
//! | signal | 000/001/002/004 | 003 | setting |
//! |---|---|---|---|
//! | error rate > 5 % | roll back now | consider | [`DecisionPolicy::high_error_rate`] |
//! | degradation > 50 % | roll back now (001) | consider | [`DecisionPolicy::severe_degradation`] |
//! | key feature broken | now (002 "critical functionality", 003) | consider (004) | [`DecisionPolicy::key_feature_broken`] |
//!
//! Error rates between 1 % and 5 % are "consider" only when sustained for the
//! window (004: "> 1 % sustained 5+ minutes"); shorter bursts are "investigate
//! first" (001: "intermittent errors < 5 %").

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// What was observed, each signal optional. Rates and shares are fractions (0.05 = 5 %).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Signals {
    /// The window the rates were measured over (and for how long they held).
    #[serde(with = "humantime_serde::option")]
    pub window: Option<Duration>,
    /// Share of failing requests.
    pub error_rate: Option<f64>,
    /// p99 latency now, in milliseconds.
    pub p99_ms: Option<f64>,
    /// p99 latency before the deploy, in milliseconds (runbook 002: 32 ms).
    pub baseline_p99_ms: Option<f64>,
    /// How much slower than baseline (0.5 = 50 % slower); derived from the p99s when absent.
    pub degradation: Option<f64>,
    /// For how long the service has been down or unresponsive.
    #[serde(with = "humantime_serde::option")]
    pub unavailable_for: Option<Duration>,
    /// Health probes failing after the deploy.
    pub health_checks_failing: bool,
    /// Database connections failing.
    pub database_connection_failures: bool,
    /// Data corruption detected or in progress.
    pub data_corruption: bool,
    /// A security vulnerability introduced or exploited.
    pub security_incident: bool,
    /// A key (critical) feature broken.
    pub key_feature_broken: bool,
    /// A non-critical feature broken.
    pub non_critical_feature_broken: bool,
    /// A new feature behaves unexpectedly (and sits behind a flag).
    pub feature_misbehaving: bool,
    /// Users report critical bugs / multiple customer complaints.
    pub critical_bug_reports: bool,
    /// A workaround or a known fix exists.
    pub workaround_available: bool,
    /// Share of users affected.
    pub users_affected: Option<f64>,
    /// Signals that were asked for but had no data (a query that returned no series),
    /// by name (`error_rate`): the decision says so instead of reading them as fine.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub no_data: Vec<String>,
}

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Roll back immediately, no approval needed.
    RollbackNow,
    /// Consider a planned rollback: needs approval.
    Consider,
    /// Hotfix forward instead (a workaround or known fix exists).
    Hotfix,
    /// Turn the feature flag off instead.
    FeatureFlagOff,
    /// Investigate first.
    Investigate,
    /// Nothing triggers: keep monitoring.
    Monitor,
}

impl Action {
    /// Whether this is a rollback (now or after approval).
    pub fn is_rollback(self) -> bool {
        matches!(self, Action::RollbackNow | Action::Consider)
    }

    fn rank(self) -> u8 {
        match self {
            Action::RollbackNow => 5,
            Action::Consider => 4,
            Action::FeatureFlagOff => 3,
            Action::Hotfix => 2,
            Action::Investigate => 1,
            Action::Monitor => 0,
        }
    }
}

/// The decision and every reason that contributed, strongest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// What to do.
    pub action: Action,
    /// Why, strongest first.
    pub reasons: Vec<String>,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.action, self.reasons.join("; "))
    }
}

/// Thresholds and choices; every one configurable. `Default` is the runbooks'
/// majority, [`DecisionPolicy::runbook_003`] the variant where high error rates and
/// severe degradation are only "consider".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecisionPolicy {
    /// Error rate above which [`DecisionPolicy::high_error_rate`] applies (0.05).
    pub error_rate_high: f64,
    /// Error rate above which a sustained rate is "consider" (0.01).
    pub error_rate_elevated: f64,
    /// How long an elevated error rate must hold to be "consider" (5 minutes).
    #[serde(with = "humantime_serde")]
    pub elevated_error_window: Duration,
    /// What a high error rate means.
    pub high_error_rate: Action,
    /// p99 above which to roll back now, ms (500).
    pub p99_high_ms: f64,
    /// p99 above which to consider, ms (200).
    pub p99_elevated_ms: f64,
    /// Degradation above which [`DecisionPolicy::severe_degradation`] applies (0.5).
    pub degradation_severe: f64,
    /// What severe degradation means.
    pub severe_degradation: Action,
    /// Degradation above which to consider (0.3, runbook 002).
    pub degradation_significant: f64,
    /// Degradation below which performance alone never triggers (0.2, runbook 003).
    pub degradation_minor: f64,
    /// Unavailability after which to roll back now (1 minute).
    #[serde(with = "humantime_serde")]
    pub unavailable_max: Duration,
    /// What a broken key feature means.
    pub key_feature_broken: Action,
    /// Share of users affected above which to consider (0.10, runbook 003).
    pub users_affected_significant: f64,
}

impl Default for DecisionPolicy {
    fn default() -> Self {
        DecisionPolicy {
            error_rate_high: 0.05,
            error_rate_elevated: 0.01,
            elevated_error_window: Duration::from_secs(5 * 60),
            high_error_rate: Action::RollbackNow,
            p99_high_ms: 500.0,
            p99_elevated_ms: 200.0,
            degradation_severe: 0.5,
            severe_degradation: Action::RollbackNow,
            degradation_significant: 0.3,
            degradation_minor: 0.2,
            unavailable_max: Duration::from_secs(60),
            key_feature_broken: Action::RollbackNow,
            users_affected_significant: 0.10,
        }
    }
}

impl DecisionPolicy {
    /// Runbook 003's reading: error rate > 5 % and degradation > 50 % are "consider".
    pub fn runbook_003() -> Self {
        DecisionPolicy { high_error_rate: Action::Consider, severe_degradation: Action::Consider, ..Self::default() }
    }

    /// Decides.
    ///
    /// ```
    /// use rollback_core::decision::{Action, DecisionPolicy, Signals};
    /// let policy = DecisionPolicy::default();
    /// let signals = Signals { error_rate: Some(0.12), ..Default::default() };
    /// let decision = policy.decide(&signals);
    /// assert_eq!(decision.action, Action::RollbackNow);
    /// assert!(decision.reasons[0].contains("12.0 %"));
    /// ```
    pub fn decide(&self, s: &Signals) -> Decision {
        let mut found: Vec<(Action, String)> = Vec::new();
        let mut add = |action: Action, reason: String| found.push((action, reason));
        if let Some(down) = s.unavailable_for {
            if down > self.unavailable_max {
                add(Action::RollbackNow, format!("unavailable for {down:?} (> {:?})", self.unavailable_max));
            } else if !down.is_zero() {
                add(Action::Investigate, format!("unavailable for {down:?}, not yet {:?}", self.unavailable_max));
            }
        }
        if s.health_checks_failing {
            add(Action::RollbackNow, "health checks failing after the deploy".into());
        }
        if s.data_corruption {
            add(Action::RollbackNow, "data corruption detected".into());
        }
        if s.security_incident {
            add(Action::RollbackNow, "security incident".into());
        }
        if s.database_connection_failures {
            add(Action::RollbackNow, "database connections failing".into());
        }
        if s.key_feature_broken {
            add(self.key_feature_broken, "key feature broken".into());
        }
        if let Some(rate) = s.error_rate {
            let pct = rate * 100.0;
            if rate > self.error_rate_high {
                add(self.high_error_rate, format!("error rate {pct:.1} % (> {:.1} %)", self.error_rate_high * 100.0));
            } else if rate > self.error_rate_elevated {
                match s.window {
                    Some(w) if w >= self.elevated_error_window => add(
                        Action::Consider,
                        format!(
                            "error rate {pct:.1} % sustained for {w:?} (> {:.1} %)",
                            self.error_rate_elevated * 100.0
                        ),
                    ),
                    _ => add(
                        Action::Investigate,
                        format!(
                            "error rate {pct:.1} % not yet sustained for {:?}: investigate first",
                            self.elevated_error_window
                        ),
                    ),
                }
            }
        }
        if let Some(p99) = s.p99_ms {
            let baseline = s.baseline_p99_ms.map(|b| format!(" (baseline {b:.0} ms)")).unwrap_or_default();
            if p99 > self.p99_high_ms {
                add(Action::RollbackNow, format!("p99 {p99:.0} ms{baseline} (> {:.0} ms)", self.p99_high_ms));
            } else if p99 > self.p99_elevated_ms {
                add(Action::Consider, format!("p99 {p99:.0} ms{baseline} (> {:.0} ms)", self.p99_elevated_ms));
            }
        }
        let degradation = s.degradation.or_else(|| match (s.p99_ms, s.baseline_p99_ms) {
            (Some(now), Some(base)) if base > 0.0 => Some(now / base - 1.0),
            _ => None,
        });
        if let Some(d) = degradation {
            let pct = d * 100.0;
            if d > self.degradation_severe {
                add(
                    self.severe_degradation,
                    format!("{pct:.0} % slower than baseline (> {:.0} %)", self.degradation_severe * 100.0),
                );
            } else if d > self.degradation_significant {
                add(
                    Action::Consider,
                    format!("{pct:.0} % slower than baseline (> {:.0} %)", self.degradation_significant * 100.0),
                );
            } else if d > self.degradation_minor {
                add(Action::Monitor, format!("{pct:.0} % slower than baseline: watch it"));
            }
        }
        if let Some(users) = s.users_affected
            && users > self.users_affected_significant
        {
            add(
                Action::Consider,
                format!(
                    "{:.0} % of users affected (> {:.0} %)",
                    users * 100.0,
                    self.users_affected_significant * 100.0
                ),
            );
        }
        if s.non_critical_feature_broken {
            add(Action::Consider, "non-critical feature broken (planned rollback)".into());
        }
        if s.critical_bug_reports {
            add(Action::Consider, "users report critical bugs".into());
        }
        if s.feature_misbehaving {
            add(Action::FeatureFlagOff, "a feature behaves unexpectedly: turn its flag off".into());
        }
        // A signal without data cannot clear the deploy: look before deciding it is fine.
        for name in &s.no_data {
            add(Action::Investigate, format!("{name}: no data (its query returned no series): investigate"));
        }
        let strongest = found.iter().map(|(a, _)| *a).max_by_key(|a| a.rank()).unwrap_or(Action::Monitor);
        // A workaround turns anything short of an immediate rollback into a hotfix.
        let action = if s.workaround_available
            && strongest != Action::RollbackNow
            && strongest.rank() >= Action::Investigate.rank()
        {
            found.push((Action::Hotfix, "a workaround or known fix exists: hotfix rather than roll back".into()));
            Action::Hotfix
        } else if s.workaround_available && strongest == Action::Monitor {
            found.push((Action::Hotfix, "a workaround or known fix exists".into()));
            Action::Hotfix
        } else {
            strongest
        };
        found.sort_by_key(|(a, _)| std::cmp::Reverse(a.rank()));
        let mut reasons: Vec<String> = found.into_iter().map(|(_, r)| r).collect();
        if reasons.is_empty() {
            reasons.push("no rollback trigger: keep monitoring".into());
        }
        Decision { action, reasons }
    }
}

/// One PromQL query per signal, so a deploy tool can ask "should I roll back?" in
/// one call ([`should_rollback`]). Each query must return an instant vector or scalar.
///
/// ```toml
/// error_rate = 'sum(rate(http_requests_total{code=~"5.."}[5m])) / sum(rate(http_requests_total[5m]))'
/// p99_ms = 'histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m]))) * 1000'
/// baseline_p99_ms = 'histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m] offset 1d))) * 1000'
/// window = "5m"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignalQueries {
    /// Share of failing requests.
    pub error_rate: Option<String>,
    /// p99 latency in ms.
    pub p99_ms: Option<String>,
    /// Baseline p99 latency in ms.
    pub baseline_p99_ms: Option<String>,
    /// Seconds the service has been down.
    pub unavailable_seconds: Option<String>,
    /// Share of users affected.
    pub users_affected: Option<String>,
    /// The window the queries' rates cover (how long the rates held).
    #[serde(with = "humantime_serde::option")]
    pub window: Option<Duration>,
}

#[cfg(feature = "http")]
impl SignalQueries {
    /// Runs every query (concurrently) and fills [`Signals`]; a query with no data
    /// leaves its signal empty and is named in [`Signals::no_data`], so the decision
    /// says it could not see that signal.
    pub async fn gather(&self, prometheus: &crate::verify::PrometheusClient) -> crate::Result<Signals> {
        let ask = |q: &Option<String>| {
            let q = q.clone();
            async move {
                match q {
                    Some(q) => prometheus.query(&q).await,
                    None => Ok(None),
                }
            }
        };
        let values = futures::try_join!(
            ask(&self.error_rate),
            ask(&self.p99_ms),
            ask(&self.baseline_p99_ms),
            ask(&self.unavailable_seconds),
            ask(&self.users_affected),
        )?;
        let signals = self.signals(values.into());
        if !signals.no_data.is_empty() {
            tracing::warn!(signals = ?signals.no_data, "Prometheus returned no data for some signals");
        }
        Ok(signals)
    }

    /// Runs every query over a past window (`query_range` from `start` to `end`, a
    /// point every `step`) and returns the signals at each point, for
    /// [`replay_signals`](crate::verify::replay::replay_signals): what each runbook
    /// threshold would have said during an incident. A point where a query had no
    /// data names that signal in [`Signals::no_data`].
    ///
    /// ```no_run
    /// # async fn demo() -> rollback_core::Result<()> {
    /// use rollback_core::decision::{DecisionPolicy, SignalQueries};
    /// use rollback_core::verify::{replay::replay_signals, PrometheusClient};
    /// let prometheus = PrometheusClient::new("http://127.0.0.1:9090", &Default::default())?;
    /// let queries = SignalQueries { error_rate: Some("job:errors:ratio1m".into()), ..Default::default() };
    /// let end = chrono::Utc::now();
    /// let series = queries.gather_range(&prometheus, end - chrono::Duration::minutes(30), end, std::time::Duration::from_secs(15)).await?;
    /// for change in replay_signals(&series, &DecisionPolicy::default()) {
    ///     println!("{}: {}", change.at, change.decision);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn gather_range(
        &self,
        prometheus: &crate::verify::PrometheusClient,
        start: chrono::DateTime<chrono::Utc>,
        end: chrono::DateTime<chrono::Utc>,
        step: Duration,
    ) -> crate::Result<Vec<crate::verify::replay::SignalSample>> {
        use std::collections::BTreeMap;
        let ask = |q: &Option<String>| {
            let q = q.clone();
            async move {
                match q {
                    Some(q) => prometheus.query_series(&q, start, end, step).await.map(|s| s.into_iter().collect()),
                    None => Ok(BTreeMap::new()),
                }
            }
        };
        let series: [BTreeMap<chrono::DateTime<chrono::Utc>, f64>; 5] = futures::try_join!(
            ask(&self.error_rate),
            ask(&self.p99_ms),
            ask(&self.baseline_p99_ms),
            ask(&self.unavailable_seconds),
            ask(&self.users_affected),
        )?
        .into();
        // Prometheus evaluates a range query at start + k × step: every series has its
        // points on the same grid, so a moment is a key of any of them.
        let mut moments: Vec<_> = series.iter().flat_map(|s| s.keys().copied()).collect();
        moments.sort_unstable();
        moments.dedup();
        Ok(moments
            .into_iter()
            .map(|at| crate::verify::replay::SignalSample {
                at,
                signals: self.signals(std::array::from_fn(|i| series[i].get(&at).copied())),
            })
            .collect())
    }

    /// Signals from the five queries' values (in field order); a query asked for that
    /// gave nothing is named in `no_data`.
    fn signals(&self, [error_rate, p99_ms, baseline_p99_ms, unavailable, users_affected]: [Option<f64>; 5]) -> Signals {
        let asked = [
            ("error_rate", &self.error_rate, error_rate),
            ("p99_ms", &self.p99_ms, p99_ms),
            ("baseline_p99_ms", &self.baseline_p99_ms, baseline_p99_ms),
            ("unavailable_seconds", &self.unavailable_seconds, unavailable),
            ("users_affected", &self.users_affected, users_affected),
        ];
        let no_data = asked
            .iter()
            .filter(|(_, query, value)| query.is_some() && value.is_none())
            .map(|(name, _, _)| name.to_string())
            .collect();
        Signals {
            window: self.window,
            error_rate,
            p99_ms,
            baseline_p99_ms,
            unavailable_for: unavailable.filter(|s| *s > 0.0).map(Duration::from_secs_f64),
            users_affected,
            no_data,
            ..Signals::default()
        }
    }
}

/// Gathers signals from Prometheus and decides, in one call.
///
/// ```no_run
/// # async fn demo() -> rollback_core::Result<()> {
/// use rollback_core::decision::{should_rollback, DecisionPolicy, SignalQueries};
/// use rollback_core::verify::PrometheusClient;
/// let prometheus = PrometheusClient::new("http://127.0.0.1:9090", &Default::default())?;
/// let queries: SignalQueries = toml::from_str(r#"error_rate = 'job:errors:ratio5m{job="web"}'"#).unwrap();
/// let decision = should_rollback(&prometheus, &queries, &DecisionPolicy::default()).await?;
/// if decision.action.is_rollback() { /* start the rollback */ }
/// # Ok(()) }
/// ```
#[cfg(feature = "http")]
pub async fn should_rollback(
    prometheus: &crate::verify::PrometheusClient,
    queries: &SignalQueries,
    policy: &DecisionPolicy,
) -> crate::Result<Decision> {
    Ok(policy.decide(&queries.gather(prometheus).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Option<Duration> {
        Some(Duration::from_secs(s))
    }

    /// Every row of the runbooks' decision tables.
    #[test]
    fn runbook_rows() {
        let d = DecisionPolicy::default();
        let r3 = DecisionPolicy::runbook_003();
        let r4 = DecisionPolicy { key_feature_broken: Action::Consider, ..DecisionPolicy::default() };
        let none = Signals::default();
        let rows: Vec<(&str, &DecisionPolicy, Signals, Action)> = vec![
            // 000: decision criteria
            (
                "000 critical bug in core functionality",
                &d,
                Signals { key_feature_broken: true, ..none.clone() },
                Action::RollbackNow,
            ),
            ("000 data integrity issue", &d, Signals { data_corruption: true, ..none.clone() }, Action::RollbackNow),
            (
                "000 security vulnerability",
                &d,
                Signals { security_incident: true, ..none.clone() },
                Action::RollbackNow,
            ),
            ("000 performance beyond SLA", &d, Signals { p99_ms: Some(800.0), ..none.clone() }, Action::RollbackNow),
            (
                "000 migration failure prevents startup",
                &d,
                Signals { health_checks_failing: true, ..none.clone() },
                Action::RollbackNow,
            ),
            (
                "000 >5 % of requests failing",
                &d,
                Signals { error_rate: Some(0.06), ..none.clone() },
                Action::RollbackNow,
            ),
            // 001: rollback vs hotfix
            ("001 completely down", &d, Signals { unavailable_for: secs(120), ..none.clone() }, Action::RollbackNow),
            (
                "001 data corruption in progress",
                &d,
                Signals { data_corruption: true, ..none.clone() },
                Action::RollbackNow,
            ),
            (
                "001 performance degraded >50 %",
                &d,
                Signals { degradation: Some(0.6), ..none.clone() },
                Action::RollbackNow,
            ),
            (
                "001 minor bug, workaround exists",
                &d,
                Signals { non_critical_feature_broken: true, workaround_available: true, ..none.clone() },
                Action::Hotfix,
            ),
            (
                "001 feature behaves unexpectedly",
                &d,
                Signals { feature_misbehaving: true, ..none.clone() },
                Action::FeatureFlagOff,
            ),
            (
                "001 intermittent errors <5 %",
                &d,
                Signals { error_rate: Some(0.03), window: secs(60), ..none.clone() },
                Action::Investigate,
            ),
            // 002: immediate triggers
            ("002 error rate >5 %", &d, Signals { error_rate: Some(0.051), ..none.clone() }, Action::RollbackNow),
            (
                "002 p99 >500 ms (baseline 32 ms)",
                &d,
                Signals { p99_ms: Some(510.0), baseline_p99_ms: Some(32.0), ..none.clone() },
                Action::RollbackNow,
            ),
            (
                "002 database connection failures",
                &d,
                Signals { database_connection_failures: true, ..none.clone() },
                Action::RollbackNow,
            ),
            (
                "002 unavailable >1 minute",
                &d,
                Signals { unavailable_for: secs(61), ..none.clone() },
                Action::RollbackNow,
            ),
            ("002 corruption", &d, Signals { data_corruption: true, ..none.clone() }, Action::RollbackNow),
            ("002 security breach", &d, Signals { security_incident: true, ..none.clone() }, Action::RollbackNow),
            (
                "002 critical functionality broken",
                &d,
                Signals { key_feature_broken: true, ..none.clone() },
                Action::RollbackNow,
            ),
            // 002: planned triggers
            (
                "002 error rate 1-5 % (sustained)",
                &d,
                Signals { error_rate: Some(0.02), window: secs(600), ..none.clone() },
                Action::Consider,
            ),
            ("002 p99 200-500 ms", &d, Signals { p99_ms: Some(300.0), ..none.clone() }, Action::Consider),
            (
                "002 >30 % slower than baseline",
                &d,
                Signals { degradation: Some(0.35), ..none.clone() },
                Action::Consider,
            ),
            (
                "002 non-critical functionality broken",
                &d,
                Signals { non_critical_feature_broken: true, ..none.clone() },
                Action::Consider,
            ),
            (
                "002 user-reported critical bugs",
                &d,
                Signals { critical_bug_reports: true, ..none.clone() },
                Action::Consider,
            ),
            // 003: its own reading
            ("003 completely down", &r3, Signals { unavailable_for: secs(300), ..none.clone() }, Action::RollbackNow),
            ("003 data corruption", &r3, Signals { data_corruption: true, ..none.clone() }, Action::RollbackNow),
            (
                "003 critical security vulnerability",
                &r3,
                Signals { security_incident: true, ..none.clone() },
                Action::RollbackNow,
            ),
            (
                "003 major feature completely broken",
                &r3,
                Signals { key_feature_broken: true, ..none.clone() },
                Action::RollbackNow,
            ),
            (
                "003 degradation >50 % is consider",
                &r3,
                Signals { degradation: Some(0.55), ..none.clone() },
                Action::Consider,
            ),
            (
                "003 error rate >5 % is consider",
                &r3,
                Signals { error_rate: Some(0.07), ..none.clone() },
                Action::Consider,
            ),
            (
                "003 >10 % of users affected",
                &r3,
                Signals { users_affected: Some(0.15), ..none.clone() },
                Action::Consider,
            ),
            ("003 minor UI issue", &r3, Signals { ..none.clone() }, Action::Monitor),
            ("003 performance issue <20 %", &r3, Signals { degradation: Some(0.15), ..none.clone() }, Action::Monitor),
            (
                "003 issue with a known fix",
                &r3,
                Signals { critical_bug_reports: true, workaround_available: true, ..none.clone() },
                Action::Hotfix,
            ),
            // 004
            (
                "004 health probes failing",
                &d,
                Signals { health_checks_failing: true, ..none.clone() },
                Action::RollbackNow,
            ),
            ("004 error rate >5 %", &d, Signals { error_rate: Some(0.08), ..none.clone() }, Action::RollbackNow),
            ("004 security exploited", &d, Signals { security_incident: true, ..none.clone() }, Action::RollbackNow),
            (
                "004 completely unresponsive",
                &d,
                Signals { unavailable_for: secs(90), ..none.clone() },
                Action::RollbackNow,
            ),
            (
                "004 >1 % sustained 5+ minutes",
                &d,
                Signals { error_rate: Some(0.015), window: secs(300), ..none.clone() },
                Action::Consider,
            ),
            (
                "004 >1 % for 2 minutes only",
                &d,
                Signals { error_rate: Some(0.015), window: secs(120), ..none.clone() },
                Action::Investigate,
            ),
            (
                "004 key feature broken (004 reading)",
                &r4,
                Signals { key_feature_broken: true, ..none.clone() },
                Action::Consider,
            ),
            ("004 significant degradation", &d, Signals { degradation: Some(0.4), ..none.clone() }, Action::Consider),
            (
                "004 multiple customer complaints",
                &d,
                Signals { critical_bug_reports: true, ..none.clone() },
                Action::Consider,
            ),
            (
                "004 non-critical feature degraded",
                &d,
                Signals { degradation: Some(0.1), ..none.clone() },
                Action::Monitor,
            ),
            (
                "004 <1 % of requests",
                &d,
                Signals { error_rate: Some(0.005), window: secs(600), ..none.clone() },
                Action::Monitor,
            ),
            (
                "004 workaround available",
                &d,
                Signals { error_rate: Some(0.005), workaround_available: true, ..none.clone() },
                Action::Hotfix,
            ),
            (
                "runbook: <1 % with a workaround: don't",
                &d,
                Signals {
                    error_rate: Some(0.009),
                    users_affected: Some(0.02),
                    workaround_available: true,
                    ..none.clone()
                },
                Action::Hotfix,
            ),
        ];
        for (row, policy, signals, want) in rows {
            let decision = policy.decide(&signals);
            assert_eq!(decision.action, want, "{row}: {decision}");
            assert!(!decision.reasons.is_empty(), "{row}");
        }
    }

    #[test]
    fn an_immediate_trigger_beats_a_workaround_and_reasons_are_ordered() {
        let s =
            Signals { data_corruption: true, workaround_available: true, p99_ms: Some(300.0), ..Default::default() };
        let decision = DecisionPolicy::default().decide(&s);
        assert_eq!(decision.action, Action::RollbackNow);
        assert_eq!(decision.reasons[0], "data corruption detected");
        assert!(decision.reasons[1].contains("p99 300 ms"));
    }

    #[test]
    fn degradation_is_derived_from_p99_and_baseline() {
        let s = Signals { p99_ms: Some(60.0), baseline_p99_ms: Some(32.0), ..Default::default() };
        let decision = DecisionPolicy::default().decide(&s);
        assert_eq!(decision.action, Action::RollbackNow, "{decision}");
        assert!(decision.reasons.iter().any(|r| r.contains("88 % slower")), "{decision}");
    }

    #[test]
    fn a_signal_without_data_is_named_and_never_reads_as_fine() {
        let s = Signals { no_data: vec!["error_rate".into()], ..Default::default() };
        let decision = DecisionPolicy::default().decide(&s);
        assert_eq!(decision.action, Action::Investigate, "{decision}");
        assert_eq!(decision.reasons, ["error_rate: no data (its query returned no series): investigate"]);
        // A trigger that has data still decides.
        let s = Signals { error_rate: Some(0.2), no_data: vec!["p99_ms".into()], ..Default::default() };
        let decision = DecisionPolicy::default().decide(&s);
        assert_eq!(decision.action, Action::RollbackNow, "{decision}");
        assert!(decision.reasons[1].starts_with("p99_ms: no data"), "{decision}");
    }

    #[test]
    fn policies_round_trip_through_toml() {
        let policy = DecisionPolicy::runbook_003();
        let text = toml::to_string(&policy).unwrap();
        assert_eq!(toml::from_str::<DecisionPolicy>(&text).unwrap(), policy);
        let partial: DecisionPolicy = toml::from_str("error_rate_high = 0.1\nelevated_error_window = \"10m\"").unwrap();
        assert_eq!(partial.error_rate_high, 0.1);
        assert_eq!(partial.p99_high_ms, 500.0);
    }
}
