//! `rollback.verify`: benchmark a verifier (latency, throughput, detection delay),
//! the controllable lab service to measure against, and what-if replays of
//! journaled verifications and recorded signals — the core's
//! [`verify::bench`](rollback_core::verify::bench) and
//! [`verify::replay`](rollback_core::verify::replay), with the GIL released.

use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use rollback_core::decision::SignalQueries;
use rollback_core::verify::PrometheusClient;
use rollback_core::verify::bench::{self, LabControl, Scenario, Switch};
use rollback_core::verify::lab::{LabService, Mode, Schedule};
use rollback_core::verify::replay::{self, Hold, SignalSample};
use rollback_core::{Check, Verifier};

use crate::convert::{from_py, to_py};
use crate::errors::{IntoPy, invalid_input};
use crate::handles::{PyVerifierHandle, decision_policy, policy_arg};
use crate::runtime::block_on;

/// The controllable HTTP service (`/health`, `/metrics`, `POST /control`), served
/// from this process on the module's runtime: healthy, unhealthy, `slow:200ms`,
/// `flapping:0.3`, `erroring:0.1`, by schedule or `set()`. For a service in its own
/// process, run `rollback verify serve` and pass its URL instead.
#[pyclass(name = "LabService", module = "rollback.verify", frozen)]
pub struct PyLabService {
    lab: Arc<LabService>,
}

#[pymethods]
impl PyLabService {
    /// Starts serving on `listen` (a free port by default) with `schedule`
    /// (`"0s=healthy,5s=unhealthy"`).
    #[new]
    #[pyo3(signature = (schedule="0s=healthy", *, listen="127.0.0.1:0"))]
    fn new(py: Python<'_>, schedule: &str, listen: &str) -> PyResult<Self> {
        let schedule = Schedule::parse(schedule).py_err()?;
        let bind = listen.parse().map_err(|e| invalid_input(format!("listen {listen:?}: {e}")))?;
        let lab = block_on(py, LabService::start(bind, schedule))?;
        Ok(PyLabService { lab: Arc::new(lab) })
    }

    /// The base URL (`http://127.0.0.1:PORT`).
    #[getter]
    fn url(&self) -> String {
        self.lab.url("")
    }

    /// The mode now, as text (`"erroring:0.1"`).
    #[getter]
    fn mode(&self) -> String {
        self.lab.mode().to_string()
    }

    /// Switches to `mode` (`"unhealthy"`, `"slow:200ms"`, …).
    fn set(&self, mode: &str) -> PyResult<()> {
        self.lab.set(Mode::parse(mode).py_err()?);
        Ok(())
    }

    /// Health requests answered so far.
    #[getter]
    fn requests(&self) -> u64 {
        self.lab.requests()
    }

    /// Every switch so far: `[{"at": RFC 3339, "mode": …}]`.
    fn switches<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let switches: Vec<serde_json::Value> =
            self.lab.switches().iter().map(|s| serde_json::json!({ "at": s.at, "mode": s.mode.to_string() })).collect();
        to_py(py, &switches)
    }

    fn __repr__(&self) -> String {
        format!("LabService(url={:?}, mode={:?})", self.url(), self.mode())
    }
}

/// A verifier argument: a `rollback.Verifier`, a spec dict, or a Python verifier object.
fn verifier_arg(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<Arc<dyn Verifier>> {
    if let Ok(handle) = obj.cast::<PyVerifierHandle>() {
        return Ok(handle.get().inner());
    }
    Ok(PyVerifierHandle::build(py, obj)?.inner())
}

/// Seconds (a number), a `timedelta` or a humantime string (`"500ms"`).
fn duration_arg(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Duration> {
    if let Ok(seconds) = obj.extract::<f64>() {
        return Duration::try_from_secs_f64(seconds).map_err(|e| invalid_input(format!("{what}: {e}")));
    }
    let value: humantime_serde::Serde<Duration> = from_py(obj, what)?;
    Ok(value.into_inner())
}

/// Takes `checks` checks of `verifier`, `concurrency` at a time: `checks_per_sec`,
/// `p50`/`p90`/`p99`/`max` latency, `outcomes` (pass, fail, inconclusive).
#[pyfunction]
#[pyo3(signature = (verifier, *, concurrency=8, checks=200))]
pub fn bench_latency<'py>(
    py: Python<'py>,
    verifier: &Bound<'py, PyAny>,
    concurrency: usize,
    checks: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let verifier = verifier_arg(py, verifier)?;
    let report = block_on(py, async move { Ok(bench::latency(verifier.as_ref(), concurrency, checks).await) })?;
    to_py(py, &report)
}

/// The lab to switch: a `LabService` here, or the URL of a `rollback verify serve`.
fn switch_arg(lab: &Bound<'_, PyAny>) -> PyResult<Arc<dyn Switch>> {
    if let Ok(service) = lab.cast::<PyLabService>() {
        let lab: Arc<dyn Switch> = service.get().lab.clone();
        return Ok(lab);
    }
    let url: String =
        lab.extract().map_err(|_| invalid_input("lab: a LabService or the URL of `rollback verify serve`"))?;
    Ok(Arc::new(LabControl::new(&url).py_err()?))
}

/// Detection delay: `trials` probes of `verifier` under `policy` while the lab
/// switches from `switch_from` to `switch_to` after `after` (seconds, `timedelta` or
/// `"500ms"`; `spread`: the switch comes at a random moment up to this much later;
/// `settle`: how long it is `switch_from` before each probe starts — at
/// least the scrape interval for a verifier that reads a scraped metric). Returns `p50_delay`, `max_delay`, `checks_per_verdict`, `early`
/// (verdicts before the switch) and each trial.
#[pyfunction]
#[pyo3(signature = (verifier, *, lab, switch_from="unhealthy", switch_to="healthy", after=None, spread=None, settle=None, policy=None, trials=3))]
#[allow(clippy::too_many_arguments)]
pub fn bench_detection<'py>(
    py: Python<'py>,
    verifier: &Bound<'py, PyAny>,
    lab: &Bound<'py, PyAny>,
    switch_from: &str,
    switch_to: &str,
    after: Option<&Bound<'py, PyAny>>,
    spread: Option<&Bound<'py, PyAny>>,
    settle: Option<&Bound<'py, PyAny>>,
    policy: Option<&Bound<'py, PyAny>>,
    trials: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let verifier = verifier_arg(py, verifier)?;
    let switch = switch_arg(lab)?;
    let policy = policy_arg(policy)?;
    let after = match after {
        Some(a) if !a.is_none() => duration_arg(a, "after")?,
        _ => Duration::from_millis(500),
    };
    let optional = |value: Option<&Bound<'py, PyAny>>, what: &str| match value {
        Some(v) if !v.is_none() => duration_arg(v, what),
        _ => Ok(Duration::ZERO),
    };
    let (spread, settle) = (optional(spread, "spread")?, optional(settle, "settle")?);
    let (from, to) = (Mode::parse(switch_from).py_err()?, Mode::parse(switch_to).py_err()?);
    let scenario = Scenario { from, to, after, settle, spread };
    let report =
        block_on(
            py,
            async move { bench::detection(verifier.as_ref(), &policy, switch.as_ref(), &scenario, trials).await },
        )?;
    to_py(py, &report)
}

/// How far a record describes the service: `assume_last_holds` keeps its last observation until the deadline.
pub(crate) fn hold(assume_last_holds: bool) -> Hold {
    if assume_last_holds { Hold::LastObservation } else { Hold::Record }
}

/// Re-decides recorded checks (a verdict's `checks`, oldest first) under `policy`:
/// `passed` (`None` = undetermined within the record), `reason`, `after`, `checks`.
#[pyfunction]
#[pyo3(name = "replay", signature = (checks, policy=None, *, assume_last_holds=false))]
pub fn replay_checks<'py>(
    py: Python<'py>,
    checks: &Bound<'py, PyAny>,
    policy: Option<&Bound<'py, PyAny>>,
    assume_last_holds: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let checks: Vec<Check> = from_py(checks, "checks")?;
    let policy = policy_arg(policy)?;
    to_py(py, &replay::replay(&checks, &policy, hold(assume_last_holds)))
}

/// Replays a series of signals (`[{"at": …, "signals": {...}}]`, oldest first)
/// through the decision policy (default, `"runbook_003"` or a dict of thresholds):
/// every moment the action changed or a threshold fired.
#[pyfunction]
#[pyo3(signature = (series, policy=None))]
pub fn replay_signals<'py>(
    py: Python<'py>,
    series: &Bound<'py, PyAny>,
    policy: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let series: Vec<SignalSample> = from_py(series, "signal series")?;
    to_py(py, &replay::replay_signals(&series, &decision_policy(policy)?))
}

/// The signals over a past window from Prometheus range queries (`queries` as for
/// `gather_signals`), one sample per `step` — the series `replay_signals` takes.
#[pyfunction]
#[pyo3(signature = (prometheus_url, queries, *, start, end, step=None, headers_from_env=None))]
#[allow(clippy::too_many_arguments)]
pub fn gather_signals_range<'py>(
    py: Python<'py>,
    prometheus_url: &str,
    queries: &Bound<'py, PyAny>,
    start: &Bound<'py, PyAny>,
    end: &Bound<'py, PyAny>,
    step: Option<&Bound<'py, PyAny>>,
    headers_from_env: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let queries: SignalQueries = from_py(queries, "signal queries")?;
    let start: chrono::DateTime<chrono::Utc> = from_py(start, "start")?;
    let end: chrono::DateTime<chrono::Utc> = from_py(end, "end")?;
    let step = match step {
        Some(s) if !s.is_none() => duration_arg(s, "step")?,
        _ => Duration::from_secs(15),
    };
    let headers = match headers_from_env {
        Some(h) if !h.is_none() => from_py(h, "headers_from_env")?,
        _ => Default::default(),
    };
    let client = PrometheusClient::new(prometheus_url, &headers).py_err()?;
    let series = block_on(py, async move { queries.gather_range(&client, start, end, step).await })?;
    to_py(py, &series)
}

/// Adds the functions and classes to the extension module (re-exported as `rollback.verify`).
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyLabService>()?;
    m.add_function(wrap_pyfunction!(bench_latency, m)?)?;
    m.add_function(wrap_pyfunction!(bench_detection, m)?)?;
    m.add_function(wrap_pyfunction!(replay_checks, m)?)?;
    m.add_function(wrap_pyfunction!(replay_signals, m)?)?;
    m.add_function(wrap_pyfunction!(gather_signals_range, m)?)?;
    Ok(())
}
