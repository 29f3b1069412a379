//! The [`Verifier`] trait (one check) and the probe loop that turns checks into a
//! [`Verdict`] under an explicit [`ProbePolicy`].

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
/// In plan files: `policy = { interval = "2s", timeout = "5s", passes = 3, deadline = "2m" }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProbePolicy {
    /// Pause between checks.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Per-check timeout (a timed-out check is inconclusive).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Consecutive passes needed.
    pub passes: u32,
    /// Failures allowed before the verdict is a failure (a failure also resets the pass streak).
    pub max_failures: u32,
    /// Inconclusive checks allowed before the verdict is a failure.
    pub max_inconclusive: u32,
    /// Overall deadline.
    #[serde(with = "humantime_serde")]
    pub deadline: Duration,
}

impl Default for ProbePolicy {
    /// The runbooks' health wait: every 2 s, 3 passes in a row, up to 120 s.
    fn default() -> Self {
        ProbePolicy {
            interval: Duration::from_secs(2),
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
    let mut checks = Vec::new();
    let (mut streak, mut failures, mut inconclusive) = (0u32, 0u32, 0u32);
    let required = policy.passes.max(1);
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
        match check.outcome {
            Outcome::Pass => streak += 1,
            Outcome::Fail => {
                streak = 0;
                failures += 1;
            }
            Outcome::Inconclusive => {
                streak = 0;
                inconclusive += 1;
            }
        }
        checks.push(check);
        let verdict = |passed: bool, reason: String, checks: Vec<Check>| Verdict { passed, reason, checks };
        if streak >= required {
            return verdict(true, format!("{streak} consecutive passes"), checks);
        }
        if policy.max_failures != u32::MAX && failures > policy.max_failures {
            return verdict(false, format!("{failures} failures (limit {})", policy.max_failures), checks);
        }
        if policy.max_inconclusive != u32::MAX && inconclusive > policy.max_inconclusive {
            return verdict(
                false,
                format!("{inconclusive} inconclusive checks (limit {})", policy.max_inconclusive),
                checks,
            );
        }
        let next = tokio::time::Instant::now() + policy.interval;
        if next >= deadline {
            return verdict(
                false,
                format!(
                    "deadline {:?} reached with {streak}/{required} consecutive passes ({failures} failures, {inconclusive} inconclusive)",
                    policy.deadline
                ),
                checks,
            );
        }
        tokio::time::sleep_until(next).await;
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
    async fn hanging_check_is_inconclusive() {
        let v = ScriptedVerifier::new("hang", []).hang_after(0);
        let policy = ProbePolicy { timeout: Duration::from_secs(1), max_inconclusive: 1, ..fast(1) };
        let verdict = probe(&v, &policy, |_| {}).await;
        assert!(!verdict.passed);
        assert_eq!(verdict.checks[0].outcome, Outcome::Inconclusive);
        assert!(verdict.checks[0].detail.contains("timed out"));
    }
}
