//! What-if on past verifications: re-decide journaled checks under another
//! [`ProbePolicy`], and a recorded series of [`Signals`] under another
//! [`DecisionPolicy`].
//!
//! A verify step's verdict, with every check it took, is journaled in the step's
//! outcome. [`replay`] runs the probe loop's own bookkeeping (the code the live
//! [`probe`](super::probe) uses) over those observations: a replayed check starting
//! at time *t* sees what the recorded check that started nearest to *t* saw (the
//! record's resolution is its interval; under the run's own policy each replayed
//! check meets the check it replays, so the verdict and its checks are reproduced
//! exactly). A recorded check slower than the replayed policy's timeout counts as
//! the timeout the live probe would have hit (inconclusive). The record says
//! nothing past its last check plus one recorded interval, nor between its checks:
//! a policy that needs longer, or that checks more often than the record so that
//! one recorded check would stand for two, ends *undetermined*, said so, rather
//! than guessing — unless asked to assume the last observation held past the
//! record's end ([`Hold::LastObservation`]: a verification that ended in a pass was
//! followed by a healthy service, as far as anyone knows). Jitter is not drawn
//! (replays are deterministic).
//!
//! ```
//! use rollback_core::verify::replay::{replay, Hold};
//! use rollback_core::{Check, Outcome, ProbePolicy};
//! use std::time::Duration;
//! let start = chrono::Utc::now();
//! // Recorded every second: down for 3 s, then up.
//! let record: Vec<Check> = (0..8)
//!     .map(|s| Check { at: start + chrono::Duration::seconds(s), ..Check::new(if s < 3 { Outcome::Fail } else { Outcome::Pass }, "") })
//!     .collect();
//! let strict = ProbePolicy { interval: Duration::from_secs(1), passes: 3, deadline: Duration::from_secs(60), ..Default::default() };
//! let verdict = replay(&record, &strict, Hold::Record);
//! assert_eq!(verdict.passed, Some(true));
//! assert_eq!(verdict.after, Duration::from_secs(5)); // passes at 3, 4, 5 s
//! let impatient = ProbePolicy { max_failures: 1, ..strict };
//! assert_eq!(replay(&record, &impatient, Hold::Record).passed, Some(false));
//! ```

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Check, Next, Outcome, ProbePolicy, Tally, Verdict};
use crate::decision::{Action, Decision, DecisionPolicy, Signals};
use crate::journal::{Entry, Journal, Phase};
use crate::model::{RunId, StepOp};
use crate::{Error, Result};

/// What a policy would have decided on a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replayed {
    /// Pass or fail; `None` (undetermined) when the record ended before the policy decided.
    pub passed: Option<bool>,
    /// Why, in words.
    pub reason: String,
    /// When the verdict came, from the first recorded check.
    #[serde(with = "humantime_serde")]
    pub after: Duration,
    /// The checks (requests) it would have cost.
    pub checks: usize,
    /// Each replayed check: its offset from the start and what it saw.
    pub observations: Vec<(f64, Outcome)>,
}

/// How far a record is taken to describe the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hold {
    /// Up to the last recorded check and one recorded interval after it; a policy
    /// needing longer is undetermined.
    #[default]
    Record,
    /// The last observation holds until the policy's deadline.
    LastObservation,
}

/// Replays `record` (checks in time order) under `policy`; see the module doc.
pub fn replay(record: &[Check], policy: &ProbePolicy, hold: Hold) -> Replayed {
    let Some(first) = record.first() else {
        return Replayed {
            passed: None,
            reason: "nothing recorded".into(),
            after: Duration::ZERO,
            checks: 0,
            observations: Vec::new(),
        };
    };
    let began = |c: &Check| c.at - chrono::Duration::from_std(c.latency).unwrap_or_default();
    let offsets: Vec<Duration> =
        record.iter().map(|c| (began(c) - began(first)).to_std().unwrap_or_default()).collect();
    let known_until = match hold {
        Hold::Record => offsets.last().copied().unwrap_or_default() + median_gap(&offsets),
        Hold::LastObservation => Duration::MAX,
    };
    let mut tally = Tally::new(policy);
    let mut observations = Vec::new();
    let mut at = Duration::ZERO;
    let mut used = None;
    loop {
        let index = nearest(&offsets, at);
        let past_the_record = at > offsets[offsets.len() - 1];
        let repeats = used == Some(index);
        if at > known_until || (repeats && past_the_record && hold == Hold::Record) {
            let last = offsets[offsets.len() - 1];
            let reason =
                format!("the record ends with a check at {last:?} and this policy would check again at {at:?}");
            return undetermined(reason, at, observations);
        }
        if repeats && !past_the_record {
            let reason = format!(
                "this policy checks again at {at:?}, nearest the recorded check at {:?} it already replayed: the \
                 record is too sparse for it",
                offsets[index]
            );
            return undetermined(reason, at, observations);
        }
        used = Some(index);
        let seen = &record[index];
        // A recorded check slower than this policy's timeout would have timed out
        // (1 % slack: a live check's latency is read just after it returned).
        let outcome =
            if seen.latency > policy.timeout + policy.timeout / 100 { Outcome::Inconclusive } else { seen.outcome };
        observations.push((at.as_secs_f64(), outcome));
        let done = at + seen.latency.min(policy.timeout);
        match tally.record(outcome, at, done, 0.0) {
            Next::Verdict { passed, reason } => {
                return Replayed {
                    passed: Some(passed),
                    reason,
                    after: done,
                    checks: observations.len(),
                    observations,
                };
            }
            Next::CheckAt(next) => at = next,
        }
    }
}

/// A replay the record cannot decide, and why.
fn undetermined(why: String, at: Duration, observations: Vec<(f64, Outcome)>) -> Replayed {
    Replayed {
        passed: None,
        reason: format!("undetermined: {why}"),
        after: at,
        checks: observations.len(),
        observations,
    }
}

/// The index of the offset nearest to `at` (`offsets` sorted, not empty).
fn nearest(offsets: &[Duration], at: Duration) -> usize {
    let after = offsets.partition_point(|o| *o <= at);
    match (after.checked_sub(1), offsets.get(after)) {
        (Some(before), Some(next)) if next.saturating_sub(at) < at.saturating_sub(offsets[before]) => after,
        (Some(before), _) => before,
        (None, _) => 0,
    }
}

/// The typical pause between recorded checks (zero for fewer than two).
fn median_gap(offsets: &[Duration]) -> Duration {
    let mut gaps: Vec<Duration> = offsets.windows(2).map(|w| w[1].saturating_sub(w[0])).collect();
    gaps.sort_unstable();
    gaps.get(gaps.len() / 2).copied().unwrap_or_default()
}

/// One journaled verify step replayed: what happened, and what would have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReplay {
    /// The step.
    pub step: String,
    /// The verifier it ran.
    pub verifier: String,
    /// What the run decided.
    pub recorded: Replayed,
    /// What `policy` would have decided on the same observations.
    pub replayed: Replayed,
    /// The difference in words: "same verdict, 2 checks fewer, 4.0 s sooner".
    pub change: String,
}

/// Replays every verify step journaled for `run` under `policy` (`None`: the step's
/// own policy, which reproduces the run's verdicts — a check of the replay itself).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use rollback_core::{MemoryJournal, model::RunId};
/// use rollback_core::verify::replay::{replay_run, Hold};
/// let journal = MemoryJournal::new();
/// let missing = replay_run(&journal, &RunId::generate(), None, Hold::Record).await.unwrap_err();
/// assert_eq!(missing.kind(), rollback_core::ErrorKind::NotFound, "{missing}");
/// # });
/// ```
pub async fn replay_run(
    journal: &dyn Journal,
    run: &RunId,
    policy: Option<&ProbePolicy>,
    hold: Hold,
) -> Result<Vec<StepReplay>> {
    let records = journal.read(run).await?;
    let plan = records
        .iter()
        .find_map(|r| match &r.entry {
            Entry::RunStarted { plan, .. } => Some(plan),
            _ => None,
        })
        .ok_or_else(|| Error::not_found(format!("no run {run} in this journal")))?;
    let mut out = Vec::new();
    for record in &records {
        let Entry::Outcome { step, phase: Phase::Forward, detail, .. } = &record.entry else { continue };
        let Some(planned) = plan.steps().find(|s| &s.id == step) else { continue };
        let StepOp::Verify { verifier, policy: own } = &planned.op else { continue };
        let Ok(verdict) = serde_json::from_value::<Verdict>(detail.clone()) else { continue };
        let recorded = as_replayed(&verdict);
        let replayed = replay(&verdict.checks, policy.unwrap_or(own), hold);
        out.push(StepReplay {
            step: step.to_string(),
            verifier: verifier.clone(),
            change: compare(&recorded, &replayed),
            recorded,
            replayed,
        });
    }
    Ok(out)
}

/// A journaled verdict in the replay's terms.
fn as_replayed(verdict: &Verdict) -> Replayed {
    let start = verdict.checks.first().map(|c| c.at);
    let offset = |c: &Check| start.map_or(Duration::ZERO, |s| (c.at - s).to_std().unwrap_or_default());
    Replayed {
        passed: Some(verdict.passed),
        reason: verdict.reason.clone(),
        after: verdict.checks.last().map(|c| offset(c) + c.latency).unwrap_or_default(),
        checks: verdict.checks.len(),
        observations: verdict.checks.iter().map(|c| (offset(c).as_secs_f64(), c.outcome)).collect(),
    }
}

/// "same verdict, 2 checks fewer, 4.0 s sooner", or which way the verdict flips and
/// what that would have meant.
fn compare(recorded: &Replayed, replayed: &Replayed) -> String {
    let verdict = match (recorded.passed, replayed.passed) {
        (_, None) => "undetermined within the record".to_owned(),
        (a, b) if a == b => "same verdict".to_owned(),
        (Some(true), Some(false)) => {
            "would have FAILED where the run passed (a false alarm if the run was right)".into()
        }
        (Some(false), Some(true)) => {
            "would have PASSED where the run failed (a missed regression if the run was right)".into()
        }
        _ => "different verdict".to_owned(),
    };
    let checks = match replayed.checks as i64 - recorded.checks as i64 {
        0 => "as many checks".to_owned(),
        n if n < 0 => format!("{} checks fewer", -n),
        n => format!("{n} checks more"),
    };
    let (a, b) = (recorded.after.as_secs_f64(), replayed.after.as_secs_f64());
    let when = if (a - b).abs() < 0.05 {
        "at the same time".to_owned()
    } else if b < a {
        format!("{:.1} s sooner", a - b)
    } else {
        format!("{:.1} s later", b - a)
    };
    format!("{verdict}, {checks}, {when}")
}

/// A recorded moment of signals (one line of a JSON-lines file:
/// `{"at": "2025-10-16T18:05:00Z", "signals": {"error_rate": 0.02}}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalSample {
    /// When.
    pub at: DateTime<Utc>,
    /// What was observed.
    pub signals: Signals,
}

/// A moment the decision changed while replaying a series of signals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionChange {
    /// When.
    pub at: DateTime<Utc>,
    /// The decision from then on.
    pub decision: Decision,
    /// The reasons (runbook thresholds) that fired at this moment and not just before.
    pub fired: Vec<String>,
}

/// Replays `series` (in time order) under `policy`: every moment the action changed,
/// or a new threshold fired.
///
/// ```
/// use rollback_core::decision::{Action, DecisionPolicy, Signals};
/// use rollback_core::verify::replay::{replay_signals, SignalSample};
/// let at = |m: i64| chrono::DateTime::parse_from_rfc3339("2025-10-16T18:00:00Z").unwrap().to_utc() + chrono::Duration::minutes(m);
/// let series = vec![
///     SignalSample { at: at(0), signals: Signals { error_rate: Some(0.001), ..Default::default() } },
///     SignalSample { at: at(5), signals: Signals { error_rate: Some(0.2), ..Default::default() } },
/// ];
/// let changes = replay_signals(&series, &DecisionPolicy::default());
/// assert_eq!(changes.last().unwrap().decision.action, Action::RollbackNow);
/// assert_eq!(changes.last().unwrap().at, at(5));
/// ```
pub fn replay_signals(series: &[SignalSample], policy: &DecisionPolicy) -> Vec<DecisionChange> {
    let mut out: Vec<DecisionChange> = Vec::new();
    let mut last: Option<Decision> = None;
    for sample in series {
        let decision = policy.decide(&sample.signals);
        let before = last.as_ref();
        let fired: Vec<String> =
            decision.reasons.iter().filter(|r| before.is_none_or(|b| !b.reasons.contains(r))).cloned().collect();
        let action_changed = before.is_none_or(|b| b.action != decision.action);
        if action_changed || (!fired.is_empty() && decision.action != Action::Monitor) {
            out.push(DecisionChange { at: sample.at, decision: decision.clone(), fired });
        }
        last = Some(decision);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(outcomes: &[Outcome], every: Duration) -> Vec<Check> {
        let start = Utc::now();
        outcomes
            .iter()
            .enumerate()
            .map(|(i, o)| Check {
                at: start + chrono::Duration::from_std(every * i as u32).unwrap(),
                ..Check::new(*o, "")
            })
            .collect()
    }

    #[test]
    fn a_slower_policy_costs_fewer_checks_and_decides_later() {
        let mut outcomes = vec![Outcome::Fail; 10];
        outcomes.extend([Outcome::Pass; 20]);
        let rec = record(&outcomes, Duration::from_secs(1));
        let fast = ProbePolicy { interval: Duration::from_secs(1), passes: 3, ..Default::default() };
        let slow = ProbePolicy { interval: Duration::from_secs(4), passes: 3, ..Default::default() };
        let (f, s) = (replay(&rec, &fast, Hold::Record), replay(&rec, &slow, Hold::Record));
        assert_eq!((f.passed, f.after, f.checks), (Some(true), Duration::from_secs(12), 13));
        // Checks at 0, 4, 8 see failures; 12, 16, 20 pass.
        assert_eq!((s.passed, s.after, s.checks), (Some(true), Duration::from_secs(20), 6));
    }

    #[test]
    fn a_policy_that_needs_more_than_the_record_is_undetermined() {
        let rec = record(&[Outcome::Pass; 3], Duration::from_secs(1));
        let needy = ProbePolicy { interval: Duration::from_secs(1), passes: 10, ..Default::default() };
        let r = replay(&rec, &needy, Hold::Record);
        assert_eq!(r.passed, None);
        assert!(r.reason.contains("undetermined"), "{}", r.reason);
        assert_eq!(replay(&[], &needy, Hold::Record).reason, "nothing recorded");
        let held = replay(&rec, &needy, Hold::LastObservation);
        assert_eq!((held.passed, held.checks), (Some(true), 10));
    }

    #[test]
    fn a_policy_checking_more_often_than_the_record_is_undetermined() {
        let rec = record(&[Outcome::Fail, Outcome::Pass, Outcome::Pass, Outcome::Pass], Duration::from_secs(2));
        let eager = ProbePolicy { interval: Duration::from_millis(500), passes: 2, ..Default::default() };
        let r = replay(&rec, &eager, Hold::Record);
        assert_eq!(r.passed, None, "{r:?}");
        assert!(r.reason.contains("too sparse"), "{}", r.reason);
        // Past the record's end, holding the last observation may repeat it.
        let rec = record(&[Outcome::Pass], Duration::from_secs(1));
        let held = replay(&rec, &eager, Hold::LastObservation);
        assert_eq!((held.passed, held.checks), (Some(true), 2));
    }

    #[test]
    fn a_recorded_check_slower_than_the_timeout_counts_as_timed_out() {
        let mut rec = record(&[Outcome::Pass; 4], Duration::from_secs(1));
        for check in &mut rec {
            check.latency = Duration::from_millis(800);
        }
        let patient = ProbePolicy { interval: Duration::from_secs(1), passes: 2, ..Default::default() };
        assert_eq!(replay(&rec, &patient, Hold::Record).passed, Some(true));
        let hasty = ProbePolicy { timeout: Duration::from_millis(500), max_inconclusive: 1, ..patient };
        let r = replay(&rec, &hasty, Hold::Record);
        assert_eq!(r.passed, Some(false), "{r:?}");
        assert!(r.observations.iter().all(|(_, o)| *o == Outcome::Inconclusive), "{r:?}");
    }

    #[test]
    fn the_window_and_limits_behave_as_live() {
        let rec = record(&[Outcome::Fail, Outcome::Pass, Outcome::Pass, Outcome::Pass], Duration::from_secs(1));
        let windowed = ProbePolicy {
            interval: Duration::from_secs(1),
            passes: 2,
            window: Duration::from_secs(3),
            ..Default::default()
        };
        assert_eq!(replay(&rec, &windowed, Hold::Record).after, Duration::from_secs(3));
        let strict = ProbePolicy { max_failures: 0, ..windowed };
        let r = replay(&rec, &strict, Hold::Record);
        assert_eq!((r.passed, r.checks), (Some(false), 1));
    }

    /// Random records: a policy needing more passes never passes sooner, and one
    /// allowing fewer failures never fails later.
    #[test]
    fn stricter_policies_pass_no_earlier_and_fail_no_later() {
        let every = Duration::from_millis(100);
        for seed in 0..200u64 {
            let outcomes: Vec<Outcome> = (0..60u64)
                .map(|i| {
                    let x = (seed.wrapping_mul(6364136223846793005).wrapping_add(i.wrapping_mul(1442695040888963407))
                        >> 33)
                        % 10;
                    if x < 3 {
                        Outcome::Fail
                    } else if x < 4 {
                        Outcome::Inconclusive
                    } else {
                        Outcome::Pass
                    }
                })
                .collect();
            let rec = record(&outcomes, every);
            let base = ProbePolicy { interval: every, passes: 2, ..Default::default() };
            let (loose, strict) = (
                replay(&rec, &base, Hold::Record),
                replay(&rec, &ProbePolicy { passes: 4, ..base.clone() }, Hold::Record),
            );
            if let (Some(true), Some(true)) = (loose.passed, strict.passed) {
                assert!(strict.after >= loose.after, "seed {seed}: {loose:?} {strict:?}");
            }
            let limited = ProbePolicy { max_failures: 5, passes: 100, ..base.clone() };
            let tighter = ProbePolicy { max_failures: 2, ..limited.clone() };
            let (a, b) = (replay(&rec, &limited, Hold::Record), replay(&rec, &tighter, Hold::Record));
            if a.passed == Some(false) {
                assert_eq!(b.passed, Some(false), "seed {seed}");
                assert!(b.after <= a.after, "seed {seed}: {a:?} {b:?}");
            }
        }
    }

    #[test]
    fn comparison_names_a_flip() {
        let at = |passed, checks, secs| Replayed {
            passed,
            reason: String::new(),
            after: Duration::from_secs(secs),
            checks,
            observations: vec![],
        };
        assert_eq!(
            compare(&at(Some(true), 5, 10), &at(Some(true), 3, 6)),
            "same verdict, 2 checks fewer, 4.0 s sooner"
        );
        assert!(compare(&at(Some(true), 5, 10), &at(Some(false), 2, 3)).contains("false alarm"));
        assert!(compare(&at(Some(false), 5, 10), &at(Some(true), 5, 10)).contains("missed regression"));
    }

    #[test]
    fn signals_replay_reports_each_change_once() {
        let t0 = Utc::now();
        let s = |m: i64, e: f64| SignalSample {
            at: t0 + chrono::Duration::minutes(m),
            signals: Signals { error_rate: Some(e), ..Default::default() },
        };
        let series = vec![s(0, 0.0), s(1, 0.0), s(2, 0.3), s(3, 0.3), s(4, 0.0)];
        let changes = replay_signals(&series, &DecisionPolicy::default());
        let actions: Vec<Action> = changes.iter().map(|c| c.decision.action).collect();
        assert_eq!(actions.first(), Some(&Action::Monitor));
        assert!(actions.contains(&Action::RollbackNow), "{changes:?}");
        assert_eq!(changes.len(), 3, "start, the rise, the fall: {changes:?}");
        assert!(!changes[1].fired.is_empty());
    }
}
