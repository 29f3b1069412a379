//! `rollback verify …`: serve the lab service, run one live probe loop, benchmark a
//! verifier, replay journaled verifications and recorded signals.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rollback_core::decision::{DecisionPolicy, SignalQueries};
use rollback_core::verify::PrometheusClient;
use rollback_core::verify::bench::{self, LabControl, Scenario};
use rollback_core::verify::lab::{LabService, Mode, Schedule};
use rollback_core::verify::replay::{self, Hold, SignalSample};
use rollback_core::{Error, Outcome, ProbePolicy, Result, RunId, Verifier, probe};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::args::{Output, VerifyCommand};
use crate::home::Home;
use crate::{exit, kinds};

/// Runs one `rollback verify` subcommand.
pub async fn run(home: &Home, command: VerifyCommand) -> Result<i32> {
    match command {
        VerifyCommand::Serve { listen, schedule } => serve(listen, &schedule).await,
        VerifyCommand::Run { spec, policy, output } => {
            live(&spec.plan, spec.verifier.as_deref(), &policy, output).await
        }
        VerifyCommand::Bench {
            spec,
            policy,
            checks,
            concurrency,
            lab,
            from,
            to,
            switch_after,
            spread,
            settle,
            trials,
            output,
        } => {
            let verifier = verifier(&spec.plan, spec.verifier.as_deref()).await?;
            let policy = settings::<ProbePolicy>("--policy", &policy)?;
            let scenario = match lab {
                Some(url) => Some((
                    LabControl::new(&url)?,
                    Scenario {
                        from: Mode::parse(&from)?,
                        to: Mode::parse(&to)?,
                        after: duration(&switch_after)?,
                        settle: duration(&settle)?,
                        spread: duration(&spread)?,
                    },
                )),
                None => None,
            };
            bench_verifier(verifier.as_ref(), &policy, checks, concurrency, scenario, trials, output).await
        }
        VerifyCommand::Replay { runs, policy, assume_last_holds, output } => {
            let policy = if policy.is_empty() { None } else { Some(settings::<ProbePolicy>("--policy", &policy)?) };
            let hold = if assume_last_holds { Hold::LastObservation } else { Hold::Record };
            replay_runs(home, &runs, policy.as_ref(), hold, output).await
        }
        VerifyCommand::ReplaySignals {
            file,
            prometheus,
            queries,
            since,
            until,
            step,
            thresholds,
            runbook_003,
            output,
        } => {
            let base = if runbook_003 { DecisionPolicy::runbook_003() } else { DecisionPolicy::default() };
            let policy = settings_over(base, "--threshold", &thresholds)?;
            let series = match (file, prometheus) {
                (Some(file), _) => read_signals(&file)?,
                (None, Some(url)) => {
                    let window = Window::parse(&since, until.as_deref(), &step)?;
                    prometheus_signals(&url, &queries, window).await?
                }
                (None, None) => return Err(Error::invalid_input("give a signals file or --prometheus URL")),
            };
            replay_signals(&series, &policy, output)
        }
    }
}

/// `rollback verify serve`: the lab service in the foreground, until Ctrl-C.
async fn serve(listen: std::net::SocketAddr, schedule: &str) -> Result<i32> {
    let lab = LabService::start(listen, Schedule::parse(schedule)?).await?;
    println!("serving on {} (health: /health, metrics: /metrics, switch: POST /control)", lab.url(""));
    tokio::signal::ctrl_c().await.map_err(|e| Error::internal(format!("waiting for Ctrl-C: {e}")))?;
    Ok(exit::OK)
}

/// The verifier `name` of the plan at `path` (loaded strictly, like `rollback run`),
/// or its only verifier.
async fn verifier(path: &Path, name: Option<&str>) -> Result<Arc<dyn Verifier>> {
    let registry = kinds::registry();
    let plan = rollback_core::load::PlanLoader::new().registry(&registry).load_file(path)?;
    let names: Vec<&str> = plan.verifiers.iter().map(|v| v.name.as_str()).collect();
    let name = match (name, names.as_slice()) {
        (Some(name), _) => name,
        (None, [only]) => only,
        (None, []) => return Err(Error::invalid_input(format!("{} declares no [[verifiers]]", path.display()))),
        (None, many) => {
            return Err(Error::invalid_input(format!(
                "{} declares {} verifiers: choose one with --verifier ({})",
                path.display(),
                many.len(),
                many.join(", ")
            )));
        }
    };
    if !names.contains(&name) {
        let hint = rollback_core::load::closest(name, names.iter().copied())
            .map_or_else(String::new, |c| format!(" (did you mean {c:?}?)"));
        return Err(Error::invalid_input(format!("{} has no verifier {name:?}{hint}", path.display())));
    }
    registry.verifier(name, &plan.verifiers).await
}

/// `rollback verify run`: one probe loop, each observation printed as it comes.
async fn live(path: &Path, name: Option<&str>, policy: &[String], output: Output) -> Result<i32> {
    let verifier = verifier(path, name).await?;
    let policy = settings::<ProbePolicy>("--policy", policy)?;
    let started = std::time::Instant::now();
    let verdict = probe(verifier.as_ref(), &policy, |check| {
        if output == Output::Text {
            println!(
                "{:>8.2}s  {:<12}  {:>9.2} ms  {}",
                started.elapsed().as_secs_f64(),
                outcome(check.outcome),
                check.latency.as_secs_f64() * 1e3,
                check.detail
            );
        }
    })
    .await;
    match output {
        Output::Text => println!(
            "verdict: {} — {} ({} checks in {:.2} s)",
            if verdict.passed { "PASS" } else { "FAIL" },
            verdict.reason,
            verdict.checks.len(),
            started.elapsed().as_secs_f64()
        ),
        Output::Json => print_json(&verdict)?,
    }
    Ok(if verdict.passed { exit::OK } else { exit::FAILED })
}

fn outcome(o: Outcome) -> &'static str {
    match o {
        Outcome::Pass => "pass",
        Outcome::Fail => "fail",
        Outcome::Inconclusive => "inconclusive",
    }
}

#[derive(Serialize)]
struct BenchOutput {
    latency: bench::LatencyReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    detection: Option<bench::DetectionReport>,
}

/// `rollback verify bench`: latency and throughput, then detection delay when a lab
/// service is given.
async fn bench_verifier(
    verifier: &dyn Verifier,
    policy: &ProbePolicy,
    checks: usize,
    concurrency: usize,
    scenario: Option<(LabControl, Scenario)>,
    trials: usize,
    output: Output,
) -> Result<i32> {
    let latency = bench::latency(verifier, concurrency, checks).await;
    if output == Output::Text {
        println!("{latency}");
    }
    let detection = match scenario {
        Some((control, scenario)) => Some(bench::detection(verifier, policy, &control, &scenario, trials).await?),
        None => None,
    };
    match (&detection, output) {
        (Some(d), Output::Text) => println!("\n{d}"),
        (_, Output::Json) => print_json(&BenchOutput { latency, detection })?,
        (None, Output::Text) => {}
    }
    Ok(exit::OK)
}

/// `rollback verify replay`: each run's verify steps re-decided.
async fn replay_runs(
    home: &Home,
    runs: &[String],
    policy: Option<&ProbePolicy>,
    hold: Hold,
    output: Output,
) -> Result<i32> {
    let ids: Vec<RunId> = runs.iter().map(|r| r.parse()).collect::<Result<_>>()?;
    let engine = home.require(rollback_core::Registry::new(), runs[0].as_str()).await?;
    let mut all = Vec::new();
    for run in &ids {
        let steps = replay::replay_run(engine.journal().as_ref(), run, policy, hold).await?;
        all.push(serde_json::json!({ "run": run, "steps": steps }));
        if output == Output::Text {
            println!("run {run}");
            if steps.is_empty() {
                println!("  no verify step finished in this run");
            }
            for s in &steps {
                let verdict = |p: Option<bool>| match p {
                    Some(true) => "pass",
                    Some(false) => "fail",
                    None => "undetermined",
                };
                println!("  {} ({}): {}", s.step, s.verifier, s.change);
                for (label, r) in [("recorded", &s.recorded), ("replayed", &s.replayed)] {
                    println!(
                        "    {label:<9} {:<10} after {:>8.2} s, {:>4} checks — {}",
                        verdict(r.passed),
                        r.after.as_secs_f64(),
                        r.checks,
                        r.reason
                    );
                }
            }
        }
    }
    if output == Output::Json {
        print_json(&all)?;
    }
    Ok(exit::OK)
}

/// A recorded series of signals: JSON lines, one [`SignalSample`] each.
fn read_signals(file: &Path) -> Result<Vec<SignalSample>> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Error::from(e).with_operation("read signals").with_context("file", file.display()))?;
    let mut series = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let sample: SignalSample = serde_json::from_str(line)
            .map_err(|e| Error::invalid_input(format!("{}:{}:{}: {e}", file.display(), n + 1, e.column())))?;
        series.push(sample);
    }
    Ok(series)
}

/// A past window of range queries.
struct Window {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    step: std::time::Duration,
}

impl Window {
    /// `since` and `until` as RFC 3339 times or how long ago (`2h`); `until` defaults to now.
    fn parse(since: &str, until: Option<&str>, step: &str) -> Result<Window> {
        let now = Utc::now();
        let at = |flag: &str, text: &str| -> Result<DateTime<Utc>> {
            if let Ok(t) = DateTime::parse_from_rfc3339(text) {
                return Ok(t.to_utc());
            }
            let ago = humantime::parse_duration(text).map_err(|_| {
                Error::invalid_input(format!("{flag} {text:?}: expected an RFC 3339 time or a duration ago (2h)"))
            })?;
            chrono::Duration::from_std(ago)
                .ok()
                .and_then(|ago| now.checked_sub_signed(ago))
                .ok_or_else(|| Error::invalid_input(format!("{flag} {text:?} is too far back")))
        };
        let start = at("--since", since)?;
        let end = match until {
            Some(until) => at("--until", until)?,
            None => now,
        };
        if end <= start {
            return Err(Error::invalid_input(format!("--since ({start}) must be before --until ({end})")));
        }
        Ok(Window { start, end, step: duration(step)? })
    }
}

/// The signals over `window` from `--query SIGNAL=PROMQL` range queries.
async fn prometheus_signals(url: &str, queries: &[String], window: Window) -> Result<Vec<SignalSample>> {
    let queries: SignalQueries = settings_over(SignalQueries::default(), "--query", queries)?;
    if queries == (SignalQueries { window: queries.window, ..SignalQueries::default() }) {
        return Err(Error::invalid_input("--prometheus needs at least one --query SIGNAL=PROMQL (error_rate=…)"));
    }
    let client = PrometheusClient::new(url, &Default::default())?;
    queries.gather_range(&client, window.start, window.end, window.step).await
}

/// `rollback verify replay-signals`: when each threshold would have fired.
fn replay_signals(series: &[SignalSample], policy: &DecisionPolicy, output: Output) -> Result<i32> {
    let changes = replay::replay_signals(series, policy);
    match output {
        Output::Text => {
            println!("{} samples, {} changes", series.len(), changes.len());
            for c in &changes {
                println!("{}  {:?}", c.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), c.decision.action);
                for reason in &c.fired {
                    println!("    fired: {reason}");
                }
            }
        }
        Output::Json => print_json(&changes)?,
    }
    Ok(exit::OK)
}

fn duration(text: &str) -> Result<std::time::Duration> {
    humantime::parse_duration(text).map_err(|e| Error::invalid_input(format!("bad duration {text:?}: {e}")))
}

/// `KEY=VALUE` settings over `T`'s defaults.
fn settings<T: Serialize + DeserializeOwned + Default>(flag: &str, pairs: &[String]) -> Result<T> {
    settings_over(T::default(), flag, pairs)
}

/// `KEY=VALUE` settings (`interval=1s`, `passes=3`) over `base`: a value that reads
/// as a number or boolean is one, anything else is a string; an unknown key is
/// refused with the closest valid one. Values are data, never parsed as a document.
fn settings_over<T: Serialize + DeserializeOwned>(base: T, flag: &str, pairs: &[String]) -> Result<T> {
    let serde_json::Value::Object(mut fields) =
        serde_json::to_value(&base).map_err(|e| Error::internal(e.to_string()))?
    else {
        return Err(Error::internal(format!("{flag} settings are not a table")));
    };
    for pair in pairs {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| Error::invalid_input(format!("{flag} {pair:?}: expected KEY=VALUE (interval=1s)")))?;
        let key = key.trim();
        if !fields.contains_key(key) {
            let hint = rollback_core::load::closest(key, fields.keys().map(String::as_str))
                .map_or_else(String::new, |c| format!(" (did you mean {c:?}?)"));
            let mut valid: Vec<&str> = fields.keys().map(String::as_str).collect();
            valid.sort_unstable();
            return Err(Error::invalid_input(format!(
                "{flag}: unknown key {key:?}{hint}; valid keys: {}",
                valid.join(", ")
            )));
        }
        let value = value.trim();
        let parsed = match value {
            "true" => serde_json::Value::Bool(true),
            "false" => serde_json::Value::Bool(false),
            _ => value
                .parse::<i64>()
                .map(Into::into)
                .or_else(|_| value.parse::<f64>().map(Into::into))
                .unwrap_or_else(|_| value.into()),
        };
        fields.insert(key.to_owned(), parsed);
    }
    serde_json::from_value(serde_json::Value::Object(fields)).map_err(|e| Error::invalid_input(format!("{flag}: {e}")))
}

fn print_json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::internal(e.to_string()))?;
    println!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_take_typed_values_and_refuse_typos_with_the_closest_key() {
        let p: ProbePolicy = settings("--policy", &["interval=250ms".into(), "passes=5".into()]).unwrap();
        assert_eq!((p.interval, p.passes), (std::time::Duration::from_millis(250), 5));
        let err = settings::<ProbePolicy>("--policy", &["pases=5".into()]).unwrap_err().to_string();
        assert!(err.contains("did you mean \"passes\""), "{err}");
        let err = settings::<ProbePolicy>("--policy", &["passes".into()]).unwrap_err().to_string();
        assert!(err.contains("KEY=VALUE"), "{err}");
        let d = settings_over(DecisionPolicy::runbook_003(), "--threshold", &["error_rate_high=0.2".into()]).unwrap();
        assert_eq!(d.error_rate_high, 0.2);
        // A value is data: braces and quotes stay a string (and fail as one here).
        let err = settings::<ProbePolicy>("--policy", &["interval={ passes = 1 }".into()]).unwrap_err().to_string();
        assert!(err.contains("--policy"), "{err}");
    }
}
