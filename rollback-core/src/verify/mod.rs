//! The [`Verifier`] trait (one check), the probe loop that turns checks into a
//! [`Verdict`] under an explicit [`ProbePolicy`], combinators, and the built-in
//! verifiers: HTTP and Prometheus (feature `http`), TCP, command and log scan.

pub mod bench;
mod builtin;
mod combinators;
mod command;
#[cfg(feature = "http")]
mod http;
pub mod lab;
#[cfg(feature = "http")]
pub(crate) mod http_support {
    //! HTTP plumbing shared by verifiers, Prometheus and webhook notifiers.
    pub(crate) use super::http::{client, env_headers, parse_url, redact_url};
}
mod logscan;
#[cfg(feature = "http")]
mod prometheus;
pub mod replay;
mod tcp;

pub use builtin::register_builtin_verifiers;
pub use combinators::{All, Any, Not};
pub use command::{CommandCheck, CommandVerifier};
#[cfg(feature = "http")]
pub use http::{HttpCheck, HttpVerifier, JsonMatch};
pub use logscan::{LogScanCheck, LogScanVerifier, LogSource};
#[cfg(feature = "http")]
pub use prometheus::{PrometheusClient, PrometheusConfig, PrometheusVerifier, Threshold};
pub use tcp::{TcpConfig, TcpVerifier};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

use crate::Result;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Healthy.
    Pass,
    /// Unhealthy.
    Fail,
    /// Could not tell (timeout, connection refused during a restart).
    Inconclusive,
}

/// One check's result with its measurements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// When it was taken.
    pub at: DateTime<Utc>,
    /// How long it took.
    #[serde(with = "humantime_serde")]
    pub latency: Duration,
    /// The outcome.
    pub outcome: Outcome,
    /// What was seen ("HTTP 503", "exit 1").
    pub detail: String,
    /// Named measurements (`status`, `latency_ms`, `error_rate`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub measurements: BTreeMap<String, f64>,
}

impl Check {
    /// A check result taken now.
    pub fn new(outcome: Outcome, detail: impl Into<String>) -> Self {
        Check { at: Utc::now(), latency: Duration::ZERO, outcome, detail: detail.into(), measurements: BTreeMap::new() }
    }

    /// Adds a measurement.
    pub fn measure(mut self, name: impl Into<String>, value: f64) -> Self {
        self.measurements.insert(name.into(), value);
        self
    }
}

/// One health check. Errors from `check` count as [`Outcome::Inconclusive`].
#[async_trait]
pub trait Verifier: Send + Sync + 'static {
    /// The name steps refer to.
    fn name(&self) -> &str;
    /// Runs the check once.
    async fn check(&self) -> Result<Check>;
}

/// How checks become a verdict. Every limit is explicit; there is no hidden timeout.
///
/// A pass needs `passes` consecutive passes **and** no failure inside the last
/// `window`; so a flapping check (pass, fail, pass, …) never passes when `passes` ≥ 2
/// or `window` is longer than the interval.
///
/// In plan files: `policy = { interval = "2s", timeout = "5s", passes = 3, deadline = "2m" }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ProbePolicy {
    /// Pause between checks (the base, before backoff and jitter).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub interval: Duration,
    /// Interval multiplier after each check that did not pass (1.0 = no backoff);
    /// a pass resets the interval to the base.
    pub backoff: f64,
    /// Ceiling of the backed-off interval.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub max_interval: Duration,
    /// Random share taken off each pause (0.0 – 1.0), so many probers do not beat in step.
    pub jitter: f64,
    /// No failure may have been seen within this window before a pass is declared.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub window: Duration,
    /// Per-check timeout (a timed-out check is inconclusive).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
    /// Consecutive passes needed.
    pub passes: u32,
    /// Failures allowed before the verdict is a failure (a failure also resets the pass streak).
    pub max_failures: u32,
    /// Inconclusive checks allowed before the verdict is a failure.
    pub max_inconclusive: u32,
    /// Overall deadline.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub deadline: Duration,
}

impl ProbePolicy {
    /// Checks the policy offline: a deadline and a per-check timeout longer than zero,
    /// at least one pass, backoff at least 1, jitter within 0 – 1. The reason, if not.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.deadline.is_zero() {
            Err("the probe deadline must be longer than zero".into())
        } else if self.timeout.is_zero() {
            Err("the per-check timeout must be longer than zero".into())
        } else if self.passes == 0 {
            Err("passes must be at least 1".into())
        } else if !(self.backoff >= 1.0 && self.backoff.is_finite()) {
            Err(format!("backoff must be at least 1.0 (got {})", self.backoff))
        } else if !(0.0..=1.0).contains(&self.jitter) {
            Err(format!("jitter must be within 0.0 – 1.0 (got {})", self.jitter))
        } else {
            Ok(())
        }
    }
}

impl Default for ProbePolicy {
    /// The runbooks' health wait: every 2 s, 3 passes in a row, up to 120 s.
    fn default() -> Self {
        ProbePolicy {
            interval: Duration::from_secs(2),
            backoff: 1.0,
            max_interval: Duration::from_secs(30),
            jitter: 0.0,
            window: Duration::ZERO,
            timeout: Duration::from_secs(5),
            passes: 3,
            max_failures: u32::MAX,
            max_inconclusive: u32::MAX,
            deadline: Duration::from_secs(120),
        }
    }
}

/// The result of a probe loop, with every check taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Whether it passed.
    pub passed: bool,
    /// Why, in words.
    pub reason: String,
    /// Every check, in order.
    pub checks: Vec<Check>,
}

/// Runs `verifier` under `policy`, calling `on_check` after each check (the engine
/// turns those into events).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use rollback_core::{probe, testkit::ScriptedVerifier, Outcome, ProbePolicy};
/// use std::time::Duration;
/// let v = ScriptedVerifier::new("health", [Outcome::Fail, Outcome::Pass, Outcome::Pass]);
/// let policy = ProbePolicy { interval: Duration::ZERO, passes: 2, ..ProbePolicy::default() };
/// let verdict = probe(&v, &policy, |_| {}).await;
/// assert!(verdict.passed);
/// assert_eq!(verdict.checks.len(), 3);
/// # });
/// ```
pub async fn probe(verifier: &dyn Verifier, policy: &ProbePolicy, mut on_check: impl FnMut(&Check)) -> Verdict {
    let started = tokio::time::Instant::now();
    let deadline = started + policy.deadline;
    let mut tally = Tally::new(policy);
    let mut checks = Vec::new();
    loop {
        let began = tokio::time::Instant::now();
        let check_deadline = began + policy.timeout.min(deadline.saturating_duration_since(began));
        let mut check = match tokio::time::timeout_at(check_deadline, verifier.check()).await {
            Ok(Ok(check)) => check,
            Ok(Err(err)) => Check::new(Outcome::Inconclusive, format!("check failed to run: {err}")),
            Err(_) => Check::new(Outcome::Inconclusive, format!("check timed out after {:?}", policy.timeout)),
        };
        check.latency = began.elapsed();
        on_check(&check);
        let next = tally.record(check.outcome, began - started, started.elapsed(), rand::random::<f64>());
        checks.push(check);
        match next {
            Next::Verdict { passed, reason } => return Verdict { passed, reason, checks },
            Next::CheckAt(at) => tokio::time::sleep_until(started + at).await,
        }
    }
}

/// What a probe loop does after a check.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Next {
    /// Stop with this verdict.
    Verdict {
        /// Whether it passed.
        passed: bool,
        /// Why.
        reason: String,
    },
    /// Take the next check at this offset from the loop's start.
    CheckAt(Duration),
}

/// The probe loop's bookkeeping, without clocks or I/O: the live [`probe`] and
/// [`replay`](crate::verify::replay) feed it the same way, so a replayed policy
/// decides exactly as a live one would.
#[derive(Debug, Clone)]
pub(crate) struct Tally<'p> {
    policy: &'p ProbePolicy,
    streak: u32,
    failures: u32,
    inconclusive: u32,
    last_failure: Option<Duration>,
    interval: Duration,
}

impl<'p> Tally<'p> {
    pub(crate) fn new(policy: &'p ProbePolicy) -> Self {
        Tally { policy, streak: 0, failures: 0, inconclusive: 0, last_failure: None, interval: policy.interval }
    }

    /// Records a check that began at offset `began` and was counted at `now` (both
    /// from the loop's start); `random` in 0–1 draws the jitter.
    pub(crate) fn record(&mut self, outcome: Outcome, began: Duration, now: Duration, random: f64) -> Next {
        let policy = self.policy;
        let required = policy.passes.max(1);
        match outcome {
            Outcome::Pass => {
                self.streak += 1;
                self.interval = policy.interval;
            }
            Outcome::Fail => {
                self.streak = 0;
                self.failures += 1;
                self.last_failure = Some(now);
            }
            Outcome::Inconclusive => {
                self.streak = 0;
                self.inconclusive += 1;
            }
        }
        if outcome != Outcome::Pass {
            self.interval =
                self.interval.mul_f64(policy.backoff.max(1.0)).min(policy.max_interval.max(policy.interval));
        }
        let (streak, failures, inconclusive) = (self.streak, self.failures, self.inconclusive);
        let quiet = self.last_failure.is_none_or(|at| now.saturating_sub(at) >= policy.window);
        if streak >= required && quiet {
            let window =
                if policy.window.is_zero() { String::new() } else { format!(", no failure in {:?}", policy.window) };
            return Next::Verdict { passed: true, reason: format!("{streak} consecutive passes{window}") };
        }
        if policy.max_failures != u32::MAX && failures > policy.max_failures {
            return Next::Verdict {
                passed: false,
                reason: format!("{failures} failures (limit {})", policy.max_failures),
            };
        }
        if policy.max_inconclusive != u32::MAX && inconclusive > policy.max_inconclusive {
            return Next::Verdict {
                passed: false,
                reason: format!("{inconclusive} inconclusive checks (limit {})", policy.max_inconclusive),
            };
        }
        let pause = if policy.jitter > 0.0 {
            self.interval.mul_f64(1.0 - random.clamp(0.0, 1.0) * policy.jitter.clamp(0.0, 1.0))
        } else {
            self.interval
        };
        // Fixed-rate: the pause counts from the start of the check just taken.
        let next = (began + pause).max(now);
        if next >= policy.deadline {
            return Next::Verdict {
                passed: false,
                reason: format!(
                    "deadline {:?} reached with {streak}/{required} consecutive passes ({failures} failures, {inconclusive} inconclusive)",
                    policy.deadline
                ),
            };
        }
        Next::CheckAt(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::ScriptedVerifier;

    fn fast(passes: u32) -> ProbePolicy {
        ProbePolicy {
            interval: Duration::from_millis(1),
            passes,
            deadline: Duration::from_secs(5),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn flapping_never_passes() {
        let script = [Outcome::Pass, Outcome::Fail].repeat(50);
        let v = ScriptedVerifier::new("flap", script);
        let policy = ProbePolicy { max_failures: 10, ..fast(2) };
        let verdict = probe(&v, &policy, |_| {}).await;
        assert!(!verdict.passed);
        assert!(verdict.reason.contains("failures"), "{}", verdict.reason);
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_is_explicit() {
        let v = ScriptedVerifier::new("down", [Outcome::Fail].repeat(1000));
        let policy = ProbePolicy { interval: Duration::from_secs(1), deadline: Duration::from_secs(10), ..fast(1) };
        let verdict = probe(&v, &policy, |_| {}).await;
        assert!(!verdict.passed);
        assert!(verdict.reason.contains("deadline"));
        assert!(verdict.checks.len() <= 11);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_inside_the_window_holds_the_pass_back() {
        let mut script = vec![Outcome::Fail];
        script.extend([Outcome::Pass].repeat(20));
        let v = ScriptedVerifier::new("w", script);
        let policy = ProbePolicy {
            interval: Duration::from_secs(1),
            window: Duration::from_secs(5),
            deadline: Duration::from_secs(60),
            ..fast(2)
        };
        let verdict = probe(&v, &policy, |_| {}).await;
        assert!(verdict.passed);
        // Two passes came after 2 s, but the failure at 0 s keeps the verdict until 5 s.
        assert_eq!(verdict.checks.len(), 6, "{:?}", verdict.reason);
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_grows_to_its_ceiling_and_resets_on_pass() {
        let script = [Outcome::Fail, Outcome::Fail, Outcome::Fail, Outcome::Fail, Outcome::Pass, Outcome::Pass];
        let v = ScriptedVerifier::new("b", script);
        let policy = ProbePolicy {
            interval: Duration::from_secs(1),
            backoff: 2.0,
            max_interval: Duration::from_secs(4),
            deadline: Duration::from_secs(600),
            ..fast(2)
        };
        let started = tokio::time::Instant::now();
        let verdict = probe(&v, &policy, |_| {}).await;
        assert!(verdict.passed);
        // Pauses: 2, 4, 4 (capped), 4, then 1 after the pass.
        assert_eq!(started.elapsed(), Duration::from_secs(15));
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_only_shortens_pauses() {
        let v = ScriptedVerifier::new("j", [Outcome::Fail].repeat(100));
        let policy = ProbePolicy {
            interval: Duration::from_secs(1),
            jitter: 0.5,
            max_failures: 9,
            deadline: Duration::from_secs(600),
            ..fast(1)
        };
        let started = tokio::time::Instant::now();
        let verdict = probe(&v, &policy, |_| {}).await;
        assert_eq!(verdict.checks.len(), 10);
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(4500) && elapsed <= Duration::from_secs(9), "{elapsed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn hanging_check_is_inconclusive() {
        let v = ScriptedVerifier::new("hang", []).hang_after(0);
        let policy = ProbePolicy { timeout: Duration::from_secs(1), max_inconclusive: 1, ..fast(1) };
        let verdict = probe(&v, &policy, |_| {}).await;
        assert!(!verdict.passed);
        assert_eq!(verdict.checks[0].outcome, Outcome::Inconclusive);
        assert!(verdict.checks[0].detail.contains("timed out"));
    }
}
