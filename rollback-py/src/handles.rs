//! `Target` and `Verifier` handles: one component built from a spec dict (any
//! registered kind: `alembic`, `docker-container`, `http`, …) or wrapping a Python
//! object, with its operations callable directly — the Alembic tooling and deploy
//! scripts use these outside of plans. Also `should_rollback` and the benchmark hooks.

use pyo3::prelude::*;
use pyo3::types::PyDict;
use rollback_core::decision::{Decision, DecisionPolicy, Signals};
use rollback_core::{Change, IdempotencyKey, ProbePolicy, Registry, Request, Selector, Spec, Target, Verifier};
use std::sync::{Arc, OnceLock};

use crate::components::{NoopVerifier, PyTarget, PyVerifier, base_registry};
use crate::convert::{Json, from_py, py_to_json, to_py};
use crate::engine::merge_kwargs;
use crate::errors::{IntoPy, invalid_input};
use crate::runtime::block_on;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(base_registry)
}

fn spec_arg(obj: &Bound<'_, PyAny>) -> PyResult<Option<Spec>> {
    if obj.is_instance_of::<PyDict>() { from_py(obj, "spec").map(Some) } else { Ok(None) }
}

fn awaitable<'py, T>(
    py: Python<'py>,
    fut: impl std::future::Future<Output = rollback_core::Result<T>> + Send + 'static,
) -> PyResult<Bound<'py, PyAny>>
where
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    crate::aio::awaitable_on_loop(py, fut)
}

/// One verifier: from a spec dict (`{"kind": "http", "name": …, "config": {…}}`) or a
/// Python object with `name` and `check()`.
#[pyclass(name = "Verifier", module = "rollback", frozen)]
pub struct PyVerifierHandle {
    inner: Arc<dyn Verifier>,
}

async fn verdict(verifier: Arc<dyn Verifier>, policy: ProbePolicy) -> rollback_core::Result<Json> {
    let verdict = rollback_core::probe(verifier.as_ref(), &policy, |_| {}).await;
    Json::of(&verdict).map_err(|e| rollback_core::Error::internal(e.to_string()))
}

pub(crate) fn policy_arg(policy: Option<&Bound<'_, PyAny>>) -> PyResult<ProbePolicy> {
    match policy {
        Some(p) if !p.is_none() => from_py(p, "probe policy"),
        _ => Ok(ProbePolicy::default()),
    }
}

impl PyVerifierHandle {
    /// The verifier of a spec dict, or a Python verifier object wrapped.
    pub(crate) fn build(py: Python<'_>, source: &Bound<'_, PyAny>) -> PyResult<Self> {
        let inner: Arc<dyn Verifier> = match spec_arg(source)? {
            Some(spec) => block_on(py, registry().verifier(&spec.name.clone(), std::slice::from_ref(&spec)))?,
            None => Arc::new(PyVerifier::from_object(source)?),
        };
        Ok(PyVerifierHandle { inner })
    }

    /// The verifier.
    pub(crate) fn inner(&self) -> Arc<dyn Verifier> {
        self.inner.clone()
    }
}

#[pymethods]
impl PyVerifierHandle {
    /// Builds the verifier from a spec dict, or wraps a Python verifier object.
    #[new]
    fn new(py: Python<'_>, source: &Bound<'_, PyAny>) -> PyResult<Self> {
        Self::build(py, source)
    }

    /// A verifier that always passes at once (the benchmark's baseline).
    #[staticmethod]
    #[pyo3(signature = (name="noop"))]
    fn noop(name: &str) -> Self {
        PyVerifierHandle { inner: Arc::new(NoopVerifier::new(name)) }
    }

    /// Its name.
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    /// One check (`outcome`, `detail`, `latency`, `measurements`, `at`); the GIL is
    /// released while it runs.
    fn check<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let check = block_on(py, self.inner.check())?;
        to_py(py, &check)
    }

    /// Probes until the policy's verdict (`passed`, `reason`, `checks`); the GIL is
    /// released for the whole loop. Policy keys: `interval`, `backoff`,
    /// `max_interval`, `jitter`, `window`, `timeout`, `passes`, `max_failures`,
    /// `max_inconclusive`, `deadline` (durations as `timedelta` or `"2s"`).
    ///
    /// `on_check` is called with each check as it comes (what `rollback verify run`
    /// prints); an exception it raises ends the probe and is raised here.
    #[pyo3(signature = (policy=None, *, on_check=None))]
    fn probe<'py>(
        &self,
        py: Python<'py>,
        policy: Option<&Bound<'py, PyAny>>,
        on_check: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let policy = policy_arg(policy)?;
        let Some(on_check) = on_check.filter(|f| !f.is_none(py)) else {
            return block_on(py, verdict(self.inner.clone(), policy))?.into_pyobject(py);
        };
        let failed: std::sync::Mutex<Option<PyErr>> = std::sync::Mutex::new(None);
        let inner = self.inner.clone();
        let probing = async {
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let tell = |check: &rollback_core::Check| {
                let called = Python::attach(|py| on_check.call1(py, (to_py(py, check)?,)).map(drop));
                if let Err(e) = called {
                    failed.lock().expect("not poisoned").get_or_insert(e);
                    let _ = stop.send(true);
                }
            };
            let mut stopped = stopped;
            tokio::select! {
                verdict = rollback_core::probe(inner.as_ref(), &policy, tell) => Json::of(&verdict).map_err(|e| rollback_core::Error::internal(e.to_string())),
                _ = stopped.wait_for(|s| *s) => Err(rollback_core::Error::internal("on_check raised")),
            }
        };
        let outcome = block_on(py, probing);
        if let Some(e) = failed.into_inner().expect("not poisoned") {
            return Err(e);
        }
        outcome?.into_pyobject(py)
    }

    /// `check()` as an awaitable.
    fn check_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        awaitable(py, async move {
            let check = inner.check().await?;
            Json::of(&check).map_err(|e| rollback_core::Error::internal(e.to_string()))
        })
    }

    /// `probe()` as an awaitable.
    #[pyo3(signature = (policy=None))]
    fn probe_async<'py>(&self, py: Python<'py>, policy: Option<&Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyAny>> {
        let policy = policy_arg(policy)?;
        awaitable(py, verdict(self.inner.clone(), policy))
    }

    fn __repr__(&self) -> String {
        format!("Verifier(name={:?})", self.inner.name())
    }
}

/// One target: from a spec dict (`{"kind": "alembic", "name": "schema", "config":
/// {…}}`) or a Python target object. Its operations are the `Target` trait's:
/// `prepare` resolves and changes nothing; `apply` is compare-and-swap on
/// `change["from"]`; `observe` tells `done | not_started | partial | diverged`.
#[pyclass(name = "Target", module = "rollback", frozen)]
pub struct PyTargetHandle {
    inner: Arc<dyn Target>,
}

fn request_arg(to: &Bound<'_, PyAny>) -> PyResult<Request> {
    if let Ok(dict) = to.cast::<PyDict>()
        && let Some(action) = dict.get_item("action")?
    {
        let params = match dict.get_item("params")? {
            Some(p) => py_to_json(&p)?,
            None => serde_json::Value::Null,
        };
        return Ok(Request::Action { action: action.extract()?, params });
    }
    Ok(Request::To(from_py::<Selector>(to, "selector (\"previous\", {\"exact\": v}, {\"back\": n}, {\"before\": t})")?))
}

#[pymethods]
impl PyTargetHandle {
    /// Builds the target from a spec dict, or wraps a Python target object.
    #[new]
    fn new(py: Python<'_>, source: &Bound<'_, PyAny>) -> PyResult<Self> {
        let inner: Arc<dyn Target> = match spec_arg(source)? {
            Some(spec) => block_on(py, registry().target(&spec.name.clone(), std::slice::from_ref(&spec)))?,
            None => Arc::new(PyTarget::from_object(source)?),
        };
        Ok(PyTargetHandle { inner })
    }

    /// Its name.
    #[getter]
    fn name(&self) -> &str {
        self.inner.name().as_str()
    }

    /// Its kind.
    #[getter]
    fn kind(&self) -> &str {
        self.inner.kind()
    }

    /// What it is (`"app.docker:…"`, `"alembic:/srv/app/alembic.ini"`).
    fn identity(&self, py: Python<'_>) -> PyResult<String> {
        block_on(py, self.inner.identity()).map(|i| i.to_string())
    }

    /// The version now (`{"id", "label"?}`).
    fn current<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &block_on(py, self.inner.current())?)
    }

    /// Revisions, newest first (`version`, `created`, `description`, `available`).
    fn history<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &block_on(py, self.inner.history())?)
    }

    /// Resolves `to` (`"previous"`, `{"exact": "v1"}`, `{"back": 2}`, `{"before": datetime}`,
    /// or `{"action": name, "params": {...}}`) into an absolute change; changes nothing.
    #[pyo3(signature = (to=None))]
    fn prepare<'py>(&self, py: Python<'py>, to: Option<&Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyAny>> {
        let request = match to {
            Some(to) if !to.is_none() => request_arg(to)?,
            _ => Request::To(Selector::Previous),
        };
        to_py(py, &block_on(py, self.inner.prepare(&request))?)
    }

    /// Applies a prepared change with an idempotency key (compare-and-swap on `from`).
    fn apply(&self, py: Python<'_>, change: &Bound<'_, PyAny>, key: &str) -> PyResult<()> {
        let change: Change = from_py(change, "change")?;
        block_on(py, self.inner.apply(&change, &IdempotencyKey::new(key)))
    }

    /// Where the change stands: `{"state": "done" | "not_started" | "partial" | "diverged", "detail"?}`.
    fn observe<'py>(&self, py: Python<'py>, change: &Bound<'py, PyAny>, key: &str) -> PyResult<Bound<'py, PyAny>> {
        let change: Change = from_py(change, "change")?;
        to_py(py, &block_on(py, self.inner.observe(&change, &IdempotencyKey::new(key)))?)
    }

    fn __repr__(&self) -> String {
        format!("Target(name={:?}, kind={:?})", self.inner.name().as_str(), self.inner.kind())
    }
}

/// The decision policy's answer: `action`, `reasons`, and whether it is a rollback.
#[pyclass(name = "Decision", module = "rollback", frozen)]
pub struct PyDecision {
    decision: Decision,
}

#[pymethods]
impl PyDecision {
    /// `rollback_now | consider | hotfix | feature_flag_off | investigate | monitor`.
    #[getter]
    fn action(&self) -> PyResult<String> {
        Ok(serde_json::to_value(self.decision.action)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default())
    }

    /// Why, strongest first.
    #[getter]
    fn reasons(&self) -> Vec<String> {
        self.decision.reasons.clone()
    }

    /// Whether the action is to roll back (now, or planned).
    #[getter]
    fn rollback(&self) -> bool {
        self.decision.action.is_rollback()
    }

    fn __bool__(&self) -> bool {
        self.rollback()
    }

    /// As a dict.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.decision)
    }

    fn __str__(&self) -> String {
        self.decision.to_string()
    }

    fn __repr__(&self) -> PyResult<String> {
        Ok(format!("Decision(action={:?}, reasons={:?})", self.action()?, self.decision.reasons))
    }
}

pub(crate) fn decision_policy(policy: Option<&Bound<'_, PyAny>>) -> PyResult<DecisionPolicy> {
    match policy {
        None => Ok(DecisionPolicy::default()),
        Some(p) if p.is_none() => Ok(DecisionPolicy::default()),
        Some(p) => match p.extract::<String>() {
            Ok(name) if name == "runbook_003" => Ok(DecisionPolicy::runbook_003()),
            Ok(name) if name == "default" => Ok(DecisionPolicy::default()),
            Ok(name) => Err(invalid_input(format!("unknown policy {name:?} (default, runbook_003, or a dict)"))),
            Err(_) => from_py(p, "decision policy"),
        },
    }
}

/// Reads the signals (a dict and/or keywords: `error_rate=0.07`, `p99_ms=640`,
/// `health_checks_failing=True`, `unavailable_for="90s"`, …) with the runbooks'
/// decision policy (or `policy="runbook_003"`, or a dict of thresholds).
#[pyfunction]
#[pyo3(signature = (signals=None, *, policy=None, **kwargs))]
pub fn should_rollback(
    signals: Option<&Bound<'_, PyAny>>,
    policy: Option<&Bound<'_, PyAny>>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<PyDecision> {
    let value = merge_kwargs(signals, kwargs)?;
    let signals: Signals = serde_json::from_value(value).map_err(|e| invalid_input(format!("signals: {e}")))?;
    Ok(PyDecision { decision: decision_policy(policy)?.decide(&signals) })
}

/// Gathers signals from Prometheus (`queries`: `error_rate`, `p99_ms`,
/// `baseline_p99_ms`, `unavailable_seconds`, `users_affected`, `window`), for
/// `should_rollback`. Blocking, GIL released.
#[pyfunction]
#[pyo3(signature = (prometheus_url, queries, *, headers_from_env=None))]
pub fn gather_signals<'py>(
    py: Python<'py>,
    prometheus_url: &str,
    queries: &Bound<'py, PyAny>,
    headers_from_env: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let queries: rollback_core::decision::SignalQueries = from_py(queries, "signal queries")?;
    let headers = match headers_from_env {
        Some(h) if !h.is_none() => from_py(h, "headers_from_env")?,
        _ => Default::default(),
    };
    let client = rollback_core::verify::PrometheusClient::new(prometheus_url, &headers).py_err()?;
    let signals = block_on(py, queries.gather(&client))?;
    to_py(py, &signals)
}

/// Every kind a spec dict can name in this build: `[{role, kind, about, schema}]`,
/// by role then name (the same list `rollback kinds` prints).
#[pyfunction]
pub fn kinds(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    to_py(py, &base_registry().kinds())
}
