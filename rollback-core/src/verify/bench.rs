//! Benchmarking a verification loop: how long a check takes (p50/p90/p99/max), how
//! many checks per second it sustains at a concurrency, how many requests a verdict
//! costs, and the **detection delay** — the time from a state change of the service
//! to the verdict — against a service whose state changes when told
//! ([`lab::LabService`](super::lab::LabService) in-process, or `rollback verify serve`
//! in another process through [`LabControl`]).
//!
//! ```
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! use rollback_core::verify::bench::{detection, latency, Scenario};
//! use rollback_core::verify::lab::{LabService, Mode, Schedule};
//! use rollback_core::verify::TcpVerifier;
//! use rollback_core::ProbePolicy;
//! use std::time::Duration;
//! let lab = LabService::start("127.0.0.1:0".parse().unwrap(), Schedule::parse("0s=healthy").unwrap()).await.unwrap();
//! let verifier = TcpVerifier::new("lab-port", &lab.addr().to_string());
//! let measured = latency(&verifier, 4, 40).await;
//! assert_eq!(measured.checks, 40);
//! assert!(measured.p50 <= measured.p99 && measured.p99 <= measured.max);
//! // A port check cannot see an unhealthy service: it passes before the switch.
//! let policy = ProbePolicy { interval: Duration::from_millis(10), passes: 3, ..Default::default() };
//! let after = Duration::from_millis(100);
//! let scenario = Scenario { from: Mode::Unhealthy, to: Mode::Healthy, after, settle: Duration::ZERO, spread: Duration::ZERO };
//! let report = detection(&verifier, &policy, &lab, &scenario, 1).await.unwrap();
//! assert_eq!(report.early, 1);
//! # });
//! ```

use std::fmt;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use serde::Serialize;

use super::lab::{LabService, Mode};
use super::{Outcome, ProbePolicy, Verifier, probe};
use crate::Result;

/// How one verifier's checks performed back to back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyReport {
    /// Checks taken.
    pub checks: usize,
    /// At most this many at once.
    pub concurrency: usize,
    /// Wall time of all of them.
    #[serde(with = "humantime_serde")]
    pub elapsed: Duration,
    /// Checks per second.
    pub checks_per_sec: f64,
    /// Median latency.
    #[serde(with = "humantime_serde")]
    pub p50: Duration,
    /// 90th percentile.
    #[serde(with = "humantime_serde")]
    pub p90: Duration,
    /// 99th percentile.
    #[serde(with = "humantime_serde")]
    pub p99: Duration,
    /// The slowest.
    #[serde(with = "humantime_serde")]
    pub max: Duration,
    /// Passes, failures, inconclusive (errors count as inconclusive, as in a probe).
    pub outcomes: [usize; 3],
}

/// Takes `checks` checks of `verifier`, `concurrency` at a time, and measures them.
pub async fn latency(verifier: &dyn Verifier, concurrency: usize, checks: usize) -> LatencyReport {
    let concurrency = concurrency.max(1);
    let started = Instant::now();
    let mut taken: Vec<(Duration, Outcome)> = futures::stream::iter(0..checks)
        .map(|_| async {
            let began = Instant::now();
            let outcome = verifier.check().await.map_or(Outcome::Inconclusive, |c| c.outcome);
            (began.elapsed(), outcome)
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let elapsed = started.elapsed();
    taken.sort_unstable_by_key(|(d, _)| *d);
    let sorted: Vec<Duration> = taken.iter().map(|t| t.0).collect();
    let at = |q: f64| percentile(&sorted, q).unwrap_or_default();
    let count = |o: Outcome| taken.iter().filter(|t| t.1 == o).count();
    LatencyReport {
        checks,
        concurrency,
        elapsed,
        checks_per_sec: checks as f64 / elapsed.as_secs_f64().max(1e-9),
        p50: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
        max: sorted.last().copied().unwrap_or_default(),
        outcomes: [count(Outcome::Pass), count(Outcome::Fail), count(Outcome::Inconclusive)],
    }
}

/// The nearest-rank `q` quantile of `sorted` (ascending); `None` when empty.
fn percentile(sorted: &[Duration], q: f64) -> Option<Duration> {
    sorted.get(((sorted.len() as f64 * q).ceil() as usize).saturating_sub(1)).copied()
}

/// Something whose state a benchmark can change: the lab service in-process, or a
/// `rollback verify serve` elsewhere ([`LabControl`]).
#[async_trait]
pub trait Switch: Send + Sync {
    /// Puts the service into `mode`; returns once it answers that way.
    async fn switch(&self, mode: Mode) -> Result<()>;
}

#[async_trait]
impl Switch for LabService {
    async fn switch(&self, mode: Mode) -> Result<()> {
        self.set(mode);
        Ok(())
    }
}

/// A lab service in another process, switched through `POST /control`.
///
/// ```
/// use rollback_core::verify::bench::LabControl;
/// let control = LabControl::new("http://127.0.0.1:8080").unwrap();
/// assert!(LabControl::new("not a url").is_err());
/// ```
#[cfg(feature = "http")]
#[derive(Debug, Clone)]
pub struct LabControl {
    url: reqwest::Url,
    client: reqwest::Client,
}

#[cfg(feature = "http")]
impl LabControl {
    /// The service at `base_url` (what `rollback verify serve --listen` printed).
    pub fn new(base_url: &str) -> Result<Self> {
        let base = super::http_support::parse_url("lab", base_url)?;
        let url = base.join("/control").map_err(|e| crate::Error::invalid_input(format!("lab URL: {e}")))?;
        Ok(LabControl { url, client: super::http_support::client()? })
    }
}

#[cfg(feature = "http")]
#[async_trait]
impl Switch for LabControl {
    async fn switch(&self, mode: Mode) -> Result<()> {
        let fail = |msg: String| {
            crate::Error::new(crate::ErrorKind::Backend, msg)
                .with_context("lab", super::http_support::redact_url(&self.url))
        };
        let response = self
            .client
            .post(self.url.clone())
            .body(mode.to_string())
            .send()
            .await
            .map_err(|e| fail(format!("switching the lab service failed: {}", e.without_url())))?;
        if !response.status().is_success() {
            return Err(fail(format!("the lab service refused the switch to {mode}: HTTP {}", response.status())));
        }
        Ok(())
    }
}

/// A state change to detect: the service is `from` when the probe starts and
/// switches to `to` after `after`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scenario {
    /// The mode while the probe starts.
    pub from: Mode,
    /// The mode it switches to.
    pub to: Mode,
    /// When, from the probe's start.
    #[serde(with = "humantime_serde")]
    pub after: Duration,
    /// How long the service stays `from` before the probe starts: a verifier that
    /// reads a scraped metric sees a switch only after the next scrape, so give it at
    /// least the scrape interval (zero for a verifier that asks the service itself).
    #[serde(with = "humantime_serde", default)]
    pub settle: Duration,
    /// The switch comes at a uniformly random moment in `after .. after + spread`:
    /// give the probe's interval (or the scrape interval) so the switch does not land
    /// at the same phase of the probe's checks in every trial.
    #[serde(with = "humantime_serde", default)]
    pub spread: Duration,
}

/// One probe run through a [`Scenario`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trial {
    /// The verdict.
    pub passed: bool,
    /// Why.
    pub reason: String,
    /// From the switch to the verdict; `None` when the verdict came before the switch.
    #[serde(with = "humantime_serde::option")]
    pub delay: Option<Duration>,
    /// Checks (requests) the verdict cost.
    pub checks: usize,
}

/// Detection delay over several trials.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DetectionReport {
    /// What was detected.
    pub scenario: Scenario,
    /// The policy.
    pub policy: ProbePolicy,
    /// Each trial.
    pub trials: Vec<Trial>,
    /// Median delay from the switch to the verdict, over trials decided after it.
    #[serde(with = "humantime_serde::option")]
    pub p50_delay: Option<Duration>,
    /// 90th percentile of those delays (nearest rank).
    #[serde(with = "humantime_serde::option")]
    pub p90_delay: Option<Duration>,
    /// 99th percentile of those delays (nearest rank: the slowest below 100 trials).
    #[serde(with = "humantime_serde::option")]
    pub p99_delay: Option<Duration>,
    /// The longest such delay.
    #[serde(with = "humantime_serde::option")]
    pub max_delay: Option<Duration>,
    /// Mean checks per verdict.
    pub checks_per_verdict: f64,
    /// Trials whose verdict came before the switch (a pass or fail the service's
    /// state did not justify yet: the verifier does not see the change, or the
    /// policy decides too soon).
    pub early: usize,
}

/// Runs `trials` probes of `verifier` under `policy` through `scenario`, switching
/// the service with `switch`, and measures when each verdict came.
pub async fn detection(
    verifier: &dyn Verifier,
    policy: &ProbePolicy,
    switch: &dyn Switch,
    scenario: &Scenario,
    trials: usize,
) -> Result<DetectionReport> {
    let mut runs = Vec::with_capacity(trials);
    for _ in 0..trials {
        switch.switch(scenario.from).await?;
        tokio::time::sleep(scenario.settle).await;
        let switched_at = std::sync::OnceLock::new();
        let at = scenario.after + scenario.spread.mul_f64(rand::random::<f64>());
        let switcher = async {
            tokio::time::sleep(at).await;
            switch.switch(scenario.to).await?;
            let _ = switched_at.set(Instant::now());
            std::future::pending::<Result<()>>().await
        };
        let verdict = tokio::select! {
            verdict = probe(verifier, policy, |_| {}) => verdict,
            failed = switcher => return Err(failed.expect_err("the switcher only returns errors")),
        };
        let decided = Instant::now();
        runs.push(Trial {
            passed: verdict.passed,
            reason: verdict.reason,
            delay: switched_at.get().map(|at| decided.saturating_duration_since(*at)),
            checks: verdict.checks.len(),
        });
    }
    Ok(summarise(scenario, policy, runs))
}

fn summarise(scenario: &Scenario, policy: &ProbePolicy, trials: Vec<Trial>) -> DetectionReport {
    let mut delays: Vec<Duration> = trials.iter().filter_map(|t| t.delay).collect();
    delays.sort_unstable();
    DetectionReport {
        scenario: scenario.clone(),
        policy: policy.clone(),
        p50_delay: percentile(&delays, 0.5),
        p90_delay: percentile(&delays, 0.9),
        p99_delay: percentile(&delays, 0.99),
        max_delay: delays.last().copied(),
        checks_per_verdict: trials.iter().map(|t| t.checks).sum::<usize>() as f64 / trials.len().max(1) as f64,
        early: trials.iter().filter(|t| t.delay.is_none()).count(),
        trials,
    }
}

/// Milliseconds with two decimals, the unit every row of the tables uses.
fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

impl fmt::Display for LatencyReport {
    /// A table: one row per measure.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [pass, fail, inconclusive] = self.outcomes;
        writeln!(f, "{:<22}{}", "checks", self.checks)?;
        writeln!(f, "{:<22}{}", "concurrency", self.concurrency)?;
        writeln!(f, "{:<22}{:.1}", "checks/s", self.checks_per_sec)?;
        for (name, value) in [("p50", self.p50), ("p90", self.p90), ("p99", self.p99), ("max", self.max)] {
            writeln!(f, "{:<22}{}", format!("latency {name}"), ms(value))?;
        }
        write!(f, "{:<22}{pass} pass / {fail} fail / {inconclusive} inconclusive", "outcomes")
    }
}

impl fmt::Display for DetectionReport {
    /// A table: the summary, then one row per trial.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.scenario;
        writeln!(
            f,
            "{:<22}{} -> {} after {} + up to {} (settled {})",
            "scenario",
            s.from,
            s.to,
            ms(s.after),
            ms(s.spread),
            ms(s.settle)
        )?;
        let delay = |d: Option<Duration>| d.map_or_else(|| "-".to_owned(), ms);
        for (name, value) in
            [("p50", self.p50_delay), ("p90", self.p90_delay), ("p99", self.p99_delay), ("max", self.max_delay)]
        {
            writeln!(f, "{:<22}{}", format!("detection delay {name}"), delay(value))?;
        }
        writeln!(f, "{:<22}{:.1}", "requests per verdict", self.checks_per_verdict)?;
        writeln!(f, "{:<22}{} of {}", "verdicts before switch", self.early, self.trials.len())?;
        write!(f, "{:<7}{:<9}{:>12}{:>8}  reason", "trial", "verdict", "delay", "checks")?;
        for (i, t) in self.trials.iter().enumerate() {
            let verdict = if t.passed { "pass" } else { "fail" };
            write!(f, "\n{:<7}{verdict:<9}{:>12}{:>8}  {}", i + 1, delay(t.delay), t.checks, t.reason)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::lab::Schedule;
    use crate::verify::{Check, Verifier};

    /// Sees the lab's mode without the network: passes while healthy.
    struct Peek(std::sync::Arc<LabService>);

    #[async_trait]
    impl Verifier for Peek {
        fn name(&self) -> &str {
            "peek"
        }
        async fn check(&self) -> Result<Check> {
            let healthy = self.0.mode() == Mode::Healthy;
            Ok(Check::new(if healthy { Outcome::Pass } else { Outcome::Fail }, format!("{}", self.0.mode())))
        }
    }

    #[tokio::test]
    async fn a_recovery_is_detected_after_the_switch_within_the_policy() {
        let lab = std::sync::Arc::new(
            LabService::start("127.0.0.1:0".parse().unwrap(), Schedule::parse("0s=healthy").unwrap()).await.unwrap(),
        );
        let policy = ProbePolicy {
            interval: Duration::from_millis(20),
            passes: 3,
            deadline: Duration::from_secs(5),
            ..Default::default()
        };
        let scenario = Scenario {
            from: Mode::Unhealthy,
            to: Mode::Healthy,
            after: Duration::from_millis(150),
            settle: Duration::ZERO,
            spread: Duration::from_millis(20),
        };
        let report = detection(&Peek(lab.clone()), &policy, lab.as_ref(), &scenario, 3).await.unwrap();
        assert_eq!(report.early, 0, "{report}");
        assert!(report.trials.iter().all(|t| t.passed), "{report}");
        // No verdict before the switch; after it, within passes × (interval + timeout)
        // plus the window — and at least the two pauses between the three passes.
        let bound = (policy.interval + policy.timeout) * policy.passes + policy.window;
        for trial in &report.trials {
            let delay = trial.delay.expect("decided after the switch");
            assert!(delay >= policy.interval * (policy.passes - 1) && delay <= bound, "{report}");
        }
        assert!(report.max_delay.unwrap() < Duration::from_secs(1), "{report}");
        assert!(report.checks_per_verdict >= 10.0, "about 150 ms of failures at 20 ms, then 3 passes: {report}");
        let table = report.to_string();
        assert!(table.contains("unhealthy -> healthy") && table.contains("requests per verdict"), "{table}");
    }

    #[tokio::test]
    async fn a_window_holds_the_pass_back_by_its_length_after_the_switch() {
        let lab = std::sync::Arc::new(
            LabService::start("127.0.0.1:0".parse().unwrap(), Schedule::parse("0s=healthy").unwrap()).await.unwrap(),
        );
        let policy = ProbePolicy {
            interval: Duration::from_millis(20),
            passes: 2,
            window: Duration::from_millis(200),
            deadline: Duration::from_secs(5),
            ..Default::default()
        };
        let scenario = Scenario {
            from: Mode::Unhealthy,
            to: Mode::Healthy,
            after: Duration::from_millis(100),
            settle: Duration::ZERO,
            spread: Duration::from_millis(20),
        };
        let report = detection(&Peek(lab.clone()), &policy, lab.as_ref(), &scenario, 3).await.unwrap();
        assert_eq!(report.early, 0, "{report}");
        // The last failure was seen at most one interval before the switch, and no
        // pass comes sooner than the window after it.
        let bound = (policy.interval + policy.timeout) * policy.passes + policy.window;
        for trial in &report.trials {
            let delay = trial.delay.expect("decided after the switch");
            assert!(trial.passed && delay >= policy.window - policy.interval && delay <= bound, "{report}");
        }
        assert!(report.p50_delay <= report.p90_delay && report.p90_delay <= report.p99_delay);
        assert_eq!(report.p99_delay, report.max_delay, "nearest rank over 3 trials is the slowest");
    }

    #[tokio::test]
    async fn a_regression_fails_the_probe_after_the_switch_within_its_failure_limit() {
        let lab = std::sync::Arc::new(
            LabService::start("127.0.0.1:0".parse().unwrap(), Schedule::parse("0s=healthy").unwrap()).await.unwrap(),
        );
        // Never enough passes to pass: the probe watches until it sees 3 failures.
        let policy = ProbePolicy {
            interval: Duration::from_millis(20),
            passes: u32::MAX,
            max_failures: 2,
            deadline: Duration::from_secs(5),
            ..Default::default()
        };
        let scenario = Scenario {
            from: Mode::Healthy,
            to: Mode::Unhealthy,
            after: Duration::from_millis(120),
            settle: Duration::ZERO,
            spread: Duration::from_millis(20),
        };
        let report = detection(&Peek(lab.clone()), &policy, lab.as_ref(), &scenario, 3).await.unwrap();
        assert_eq!(report.early, 0, "{report}");
        let failures = policy.max_failures + 1;
        let bound = (policy.interval + policy.timeout) * failures;
        for trial in &report.trials {
            let delay = trial.delay.expect("decided after the switch");
            assert!(!trial.passed && trial.reason.contains("3 failures"), "{report}");
            assert!(delay >= policy.interval * (failures - 1) && delay <= bound, "{report}");
        }
        assert!(report.max_delay.unwrap() < Duration::from_secs(1), "{report}");
        assert!(report.to_string().contains("detection delay p90"), "{report}");
    }

    #[tokio::test]
    async fn latency_percentiles_are_ordered_and_outcomes_counted() {
        let lab = std::sync::Arc::new(
            LabService::start("127.0.0.1:0".parse().unwrap(), Schedule::parse("0s=unhealthy").unwrap()).await.unwrap(),
        );
        let report = latency(&Peek(lab), 8, 100).await;
        assert_eq!(report.outcomes, [0, 100, 0]);
        assert!(report.p50 <= report.p90 && report.p90 <= report.p99 && report.p99 <= report.max);
        assert!(report.to_string().contains("0 pass / 100 fail"));
    }
}
