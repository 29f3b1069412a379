//! `Plan`, `Report`, `DryRun`, `Cancel`, and the two engines: `Engine` (blocking
//! methods that release the GIL) and `AsyncEngine` (the same methods as awaitables).

use chrono::{DateTime, Utc};
use pyo3::BoundObject;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use rollback_core::{CancelHandle, HistoryQuery, Plan, RunId, RunOptions, Settings, StepId, TargetId};
use std::sync::Arc;
use std::time::Duration;

use crate::components::{
    PyNotifier, PyTarget, PyVerifier, base_registry, register_target_class, register_verifier_class,
};
use crate::convert::{Json, from_py, py_to_json, to_py, type_name};
use crate::errors::{IntoPy, invalid_input};

/// A rollback plan: stages of steps, targets and verifiers as specs, a budget.
#[pyclass(name = "Plan", module = "rollback", frozen)]
#[derive(Clone)]
pub struct PyPlan {
    pub(crate) plan: Plan,
}

fn validated(plan: Plan) -> PyResult<PyPlan> {
    plan.validate().py_err()?;
    Ok(PyPlan { plan })
}

#[pymethods]
impl PyPlan {
    /// A plan from a dict (the TOML/JSON shape), TOML text, or another `Plan`.
    #[new]
    fn new(source: &Bound<'_, PyAny>) -> PyResult<Self> {
        plan_arg(source).map(|plan| PyPlan { plan })
    }

    /// A plan from a dict.
    #[staticmethod]
    fn from_dict(data: &Bound<'_, PyAny>) -> PyResult<Self> {
        validated(from_py(data, "plan")?)
    }

    /// A plan from TOML text.
    #[staticmethod]
    fn from_toml(text: &str) -> PyResult<Self> {
        Plan::from_toml_str(text).py_err().map(|plan| PyPlan { plan })
    }

    /// A plan from JSON text.
    #[staticmethod]
    fn from_json(text: &str) -> PyResult<Self> {
        Plan::from_json_str(text).py_err().map(|plan| PyPlan { plan })
    }

    /// A plan from a `.toml` or `.json` file.
    #[staticmethod]
    fn load(path: &Bound<'_, PyAny>) -> PyResult<Self> {
        let path: std::path::PathBuf = from_py(path, "plan path")?;
        let text = std::fs::read_to_string(&path)
            .map_err(|e| invalid_input(format!("cannot read plan {}: {e}", path.display())))?;
        if path.extension().is_some_and(|e| e == "json") { Self::from_json(&text) } else { Self::from_toml(&text) }
    }

    /// The plan's name.
    #[getter]
    fn name(&self) -> &str {
        &self.plan.name
    }

    /// The time budget, in seconds.
    #[getter]
    fn budget(&self) -> f64 {
        self.plan.budget.as_secs_f64()
    }

    /// Every step id, in order (stages, then `finally`).
    #[getter]
    fn step_ids(&self) -> Vec<String> {
        self.plan.steps().map(|s| s.id.to_string()).collect()
    }

    /// The plan as a dict (the TOML/JSON shape).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.plan)
    }

    /// The plan as TOML.
    fn to_toml(&self) -> PyResult<String> {
        self.plan.to_toml_string().py_err()
    }

    /// The plan as JSON.
    fn to_json(&self) -> PyResult<String> {
        self.plan.to_json_string().py_err()
    }

    fn __repr__(&self) -> String {
        format!("Plan(name={:?}, steps={})", self.plan.name, self.plan.steps().count())
    }
}

/// A plan from a `Plan`, a dict or TOML text.
pub fn plan_arg(obj: &Bound<'_, PyAny>) -> PyResult<Plan> {
    if let Ok(plan) = obj.cast::<PyPlan>() {
        return Ok(plan.get().plan.clone());
    }
    if let Ok(text) = obj.cast::<PyString>() {
        return Plan::from_toml_str(&text.to_cow()?).py_err();
    }
    if obj.is_instance_of::<PyDict>() {
        return validated(from_py(obj, "plan")?).map(|p| p.plan);
    }
    Err(invalid_input(format!("a plan must be a Plan, a dict or TOML text, not {}", type_name(obj))))
}

/// What a run did: its state, timeline, what was left and what resume would do.
#[pyclass(name = "Report", module = "rollback", frozen)]
pub struct PyReport {
    report: rollback_core::Report,
}

#[pymethods]
impl PyReport {
    /// The run id.
    #[getter]
    fn run(&self) -> &str {
        self.report.run.as_str()
    }

    /// The plan's name.
    #[getter]
    fn plan(&self) -> &str {
        &self.report.plan
    }

    /// The final (or current) state: `succeeded`, `failed`, `compensated`, `escalated`, …
    #[getter]
    fn state(&self) -> &'static str {
        self.report.state.as_str()
    }

    /// Whether the run succeeded.
    #[getter]
    fn succeeded(&self) -> bool {
        self.report.state == rollback_core::RunState::Succeeded
    }

    /// Why it reached that state.
    #[getter]
    fn state_reason(&self) -> Option<&str> {
        self.report.state_reason.as_deref()
    }

    /// Why it ran.
    #[getter]
    fn reason(&self) -> Option<&str> {
        self.report.reason.as_deref()
    }

    /// Start to last record, in seconds.
    #[getter]
    fn duration(&self) -> f64 {
        self.report.duration.as_secs_f64()
    }

    /// Whether the budget was exceeded.
    #[getter]
    fn budget_exceeded(&self) -> bool {
        self.report.budget_exceeded
    }

    /// Every step that started, as dicts (`step`, `phase`, `state`, `change`, …).
    #[getter]
    fn steps<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.report.steps)
    }

    /// Steps that never started.
    #[getter]
    fn not_started(&self) -> Vec<String> {
        self.report.not_started.iter().map(|s| s.to_string()).collect()
    }

    /// Escalations (`severity`, `reason`, …).
    #[getter]
    fn escalations<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.report.escalations)
    }

    /// What the targets were left with, one line each.
    #[getter]
    fn left(&self) -> Vec<String> {
        self.report.left.clone()
    }

    /// What `resume` would do now.
    #[getter]
    fn resume_would(&self) -> &str {
        &self.report.resume_would
    }

    /// Notifications that failed (the run went on).
    #[getter]
    fn notification_failures(&self) -> Vec<String> {
        self.report.notification_failures.clone()
    }

    /// Whether the run changed nothing because every target already was where the
    /// plan points (a re-run of a finished rollback).
    #[getter]
    fn nothing_to_do(&self) -> bool {
        self.report.nothing_to_do
    }

    /// The steps that had nothing to do, with what was checked.
    #[getter]
    fn already_done(&self) -> Vec<String> {
        self.report.already_done.clone()
    }

    /// The whole report as a dict.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.report)
    }

    fn __str__(&self) -> String {
        self.report.to_string()
    }

    fn __repr__(&self) -> String {
        format!("Report(run={:?}, state={:?})", self.report.run.as_str(), self.report.state.as_str())
    }
}

/// The whole plan as it would run now, with nothing changed.
#[pyclass(name = "DryRun", module = "rollback", frozen)]
pub struct PyDryRun {
    dry_run: rollback_core::DryRun,
}

#[pymethods]
impl PyDryRun {
    /// The plan's name.
    #[getter]
    fn plan(&self) -> &str {
        &self.dry_run.plan
    }

    /// Target identities, by target name.
    #[getter]
    fn identities<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.dry_run.identities)
    }

    /// Every step as a dict (`stage`, `step`, `op`, `description`, `change`, …).
    #[getter]
    fn steps<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.dry_run.steps)
    }

    /// The dry run as a dict.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.dry_run)
    }

    fn __str__(&self) -> String {
        self.dry_run.to_string()
    }

    fn __repr__(&self) -> String {
        format!("DryRun(plan={:?}, steps={})", self.dry_run.plan, self.dry_run.steps.len())
    }
}

/// Cancels a run at its next step boundary (never in the middle of an effect).
#[pyclass(name = "Cancel", module = "rollback", frozen)]
#[derive(Default)]
pub struct PyCancel {
    handle: rollback_core::CancelHandle,
}

#[pymethods]
impl PyCancel {
    /// A fresh handle; pass it as `cancel=` to `run` or `resume`.
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// Requests cancellation (from any thread).
    fn cancel(&self) {
        self.handle.cancel()
    }

    /// Whether cancellation was requested.
    #[getter]
    fn cancelled(&self) -> bool {
        self.handle.is_cancelled()
    }
}

fn run_id(run: &str) -> PyResult<RunId> {
    run.parse().py_err()
}

fn seconds(value: Option<f64>, what: &str) -> PyResult<Option<Duration>> {
    value
        .map(|s| Duration::try_from_secs_f64(s).map_err(|_| invalid_input(format!("{what} must be seconds ≥ 0"))))
        .transpose()
}

fn items<'py>(obj: Option<&Bound<'py, PyAny>>) -> PyResult<Vec<Bound<'py, PyAny>>> {
    match obj {
        None => Ok(Vec::new()),
        Some(o) if o.is_none() => Ok(Vec::new()),
        Some(o) => o.try_iter()?.collect(),
    }
}

fn kinds<'py>(obj: Option<&Bound<'py, PyAny>>) -> PyResult<Vec<(String, Bound<'py, PyAny>)>> {
    match obj {
        None => Ok(Vec::new()),
        Some(o) if o.is_none() => Ok(Vec::new()),
        Some(o) => o
            .cast::<PyDict>()
            .map_err(|_| invalid_input("target_kinds / verifier_kinds must be a dict {kind: class}"))?
            .iter()
            .map(|(k, v)| Ok((k.extract::<String>()?, v)))
            .collect(),
    }
}

/// Everything both engines are built from.
#[allow(clippy::too_many_arguments)]
fn build(
    home: Option<&Bound<'_, PyAny>>,
    journal: Option<&Bound<'_, PyAny>>,
    targets: Option<&Bound<'_, PyAny>>,
    verifiers: Option<&Bound<'_, PyAny>>,
    notifiers: Option<&Bound<'_, PyAny>>,
    target_kinds: Option<&Bound<'_, PyAny>>,
    verifier_kinds: Option<&Bound<'_, PyAny>>,
    snapshots: Option<&Bound<'_, PyAny>>,
    snapshot_kinds: Option<&Bound<'_, PyAny>>,
    on_event: Option<&Bound<'_, PyAny>>,
    lease_ttl: Option<f64>,
    approval_poll: Option<f64>,
    lock: Option<&Bound<'_, PyAny>>,
    host: Option<String>,
) -> PyResult<rollback_core::Engine> {
    let mut registry = base_registry();
    for target in items(targets)? {
        registry.register_target(Arc::new(PyTarget::from_object(&target)?));
    }
    for verifier in items(verifiers)? {
        registry.register_verifier(Arc::new(PyVerifier::from_object(&verifier)?));
    }
    for (kind, cls) in kinds(target_kinds)? {
        register_target_class(&mut registry, &kind, &cls);
    }
    for (kind, cls) in kinds(verifier_kinds)? {
        register_verifier_class(&mut registry, &kind, &cls);
    }
    for snapshot in items(snapshots)? {
        registry.register_snapshot(Arc::new(crate::snapshots::PySnapshot::from_object(&snapshot)?));
    }
    for (kind, cls) in kinds(snapshot_kinds)? {
        crate::snapshots::register_snapshot_class(&mut registry, &kind, &cls);
    }
    let home: std::path::PathBuf = match home {
        Some(h) if !h.is_none() => from_py(h, "home")?,
        _ => ".rollback".into(),
    };
    let mut settings = Settings::default();
    if let Some(ttl) = seconds(lease_ttl, "lease_ttl")? {
        settings.lease_ttl = ttl;
    }
    if let Some(poll) = seconds(approval_poll, "approval_poll")? {
        settings.approval_poll = poll;
    }
    settings.host = host;
    let mut builder = rollback_core::Engine::builder(registry).settings(settings);
    let journal = crate::journals::Journal::of(journal)?;
    let lock = crate::locks::lock_of(lock)?;
    if journal.has_lock() && lock.is_some() {
        return Err(invalid_input(
            "lock=: the postgres journal brings its own lease lock (the token each append is checked against); \
             drop lock=",
        ));
    }
    builder = Python::attach(|py| journal.apply(py, builder, &home))?;
    if let Some(lock) = lock {
        builder = builder.lock(lock);
    }
    for notifier in items(notifiers)? {
        builder = builder.notifier(Arc::new(PyNotifier::from_object(&notifier)?));
    }
    if let Some(callback) = on_event.filter(|c| !c.is_none()) {
        builder = builder.notifier(Arc::new(PyNotifier::from_callable("on_event", callback)?));
    }
    builder.try_build().py_err()
}

fn options(
    reason: Option<String>,
    run: Option<&str>,
    cancel: Option<&Bound<'_, PyCancel>>,
    again: bool,
    no_wait: bool,
) -> PyResult<RunOptions> {
    Ok(RunOptions {
        run_id: run.map(run_id).transpose()?,
        reason,
        // Always one, so that Ctrl-C or a cancelled task can stop the run at a boundary.
        cancel: Some(cancel.map_or_else(CancelHandle::new, |c| c.get().handle.clone())),
        again,
        no_wait,
    })
}

fn history_query(
    target: Option<String>,
    since: Option<&Bound<'_, PyAny>>,
    until: Option<&Bound<'_, PyAny>>,
) -> PyResult<HistoryQuery> {
    let time = |t: Option<&Bound<'_, PyAny>>, what: &str| -> PyResult<Option<DateTime<Utc>>> {
        t.filter(|t| !t.is_none()).map(|t| from_py(t, what)).transpose()
    };
    Ok(HistoryQuery { target: target.map(TargetId::new), since: time(since, "since")?, until: time(until, "until")? })
}

/// The operations both engines share, as futures that hold no Python object.
mod ops {
    use super::*;
    use rollback_core::{Engine, Result};

    /// The core's dry-run future is not `Send` (an iterator held across awaits), so
    /// it runs on a blocking thread of the runtime.
    pub async fn dry_run(engine: Engine, plan: Plan) -> Result<PyDryRun> {
        tokio::task::spawn_blocking(move || crate::runtime::runtime().block_on(engine.dry_run(&plan)))
            .await
            .map_err(|e| rollback_core::Error::internal(format!("dry run did not finish: {e}")))?
            .map(|dry_run| PyDryRun { dry_run })
    }

    pub async fn run(engine: Engine, plan: Plan, options: RunOptions) -> Result<PyReport> {
        engine.run(plan, options).await.map(|report| PyReport { report })
    }

    pub async fn resume(engine: Engine, run: RunId, options: RunOptions) -> Result<PyReport> {
        engine.resume_with(&run, options).await.map(|report| PyReport { report })
    }

    pub async fn report(engine: Engine, run: RunId) -> Result<PyReport> {
        engine.report(&run).await.map(|report| PyReport { report })
    }

    pub async fn approve(engine: Engine, run: RunId, step: StepId, approved: bool, by: String) -> Result<()> {
        engine.approve(&run, &step, approved, &by).await
    }

    pub async fn request_cancel(engine: Engine, run: RunId, by: String) -> Result<()> {
        engine.request_cancel(&run, &by).await
    }

    pub async fn runs(engine: Engine) -> Result<Json> {
        let runs = engine.runs().await?;
        Json::of(&runs).map_err(|e| rollback_core::Error::internal(e.to_string()))
    }

    pub async fn history(engine: Engine, query: HistoryQuery) -> Result<Json> {
        let records = engine.history(&query).await?;
        Json::of(&records).map_err(|e| rollback_core::Error::internal(e.to_string()))
    }

    pub async fn annotate(
        engine: Engine,
        run: RunId,
        root_cause: Option<String>,
        postmortem: Option<String>,
        by: String,
    ) -> Result<()> {
        engine.annotate(&run, root_cause.as_deref(), postmortem.as_deref(), &by).await
    }

    pub async fn replay(
        engine: Engine,
        run: RunId,
        policy: Option<rollback_core::ProbePolicy>,
        hold: rollback_core::verify::replay::Hold,
    ) -> Result<Json> {
        let steps =
            rollback_core::verify::replay::replay_run(engine.journal().as_ref(), &run, policy.as_ref(), hold).await?;
        Json::of(&steps).map_err(|e| rollback_core::Error::internal(e.to_string()))
    }

    pub async fn plan_undo(engine: Engine, run: RunId) -> Result<PyPlan> {
        engine.plan_undo(&run).await.map(|plan| PyPlan { plan })
    }
}

macro_rules! engine_class {
    ($class:ident, $pyname:literal, $doc:literal, $ret:ty, $wrap:ident) => {
        #[doc = $doc]
        #[pyclass(name = $pyname, module = "rollback", frozen)]
        pub struct $class {
            engine: rollback_core::Engine,
        }

        #[pymethods]
        impl $class {
            /// An engine over the built-in kinds (local targets, verifiers, compiled
            /// backends) plus Python targets, verifiers, notifiers and kinds.
            /// `journal`: `"file"` (default, in `home`), `"memory"`, or the journal
            /// every runner host shares, `{"kind": "postgres", "url": SECRET_REF}`
            /// (with its own lease lock); `host`: this runner's host id (default the
            /// hostname), recorded with its runs and leases.
            #[new]
            #[pyo3(signature = (home=None, *, journal=None, targets=None, verifiers=None, notifiers=None,
                        target_kinds=None, verifier_kinds=None, snapshots=None, snapshot_kinds=None, on_event=None,
                        lease_ttl=None, approval_poll=None, lock=None, host=None))]
            #[allow(clippy::too_many_arguments)]
            fn new(
                home: Option<&Bound<'_, PyAny>>,
                journal: Option<&Bound<'_, PyAny>>,
                targets: Option<&Bound<'_, PyAny>>,
                verifiers: Option<&Bound<'_, PyAny>>,
                notifiers: Option<&Bound<'_, PyAny>>,
                target_kinds: Option<&Bound<'_, PyAny>>,
                verifier_kinds: Option<&Bound<'_, PyAny>>,
                snapshots: Option<&Bound<'_, PyAny>>,
                snapshot_kinds: Option<&Bound<'_, PyAny>>,
                on_event: Option<&Bound<'_, PyAny>>,
                lease_ttl: Option<f64>,
                approval_poll: Option<f64>,
                lock: Option<&Bound<'_, PyAny>>,
                host: Option<String>,
            ) -> PyResult<Self> {
                let engine = build(
                    home,
                    journal,
                    targets,
                    verifiers,
                    notifiers,
                    target_kinds,
                    verifier_kinds,
                    snapshots,
                    snapshot_kinds,
                    on_event,
                    lease_ttl,
                    approval_poll,
                    lock,
                    host,
                )?;
                Ok($class { engine })
            }

            /// Prepares every step and changes nothing (no lock, no journal, no effect).
            fn dry_run<'py>(&self, py: Python<'py>, plan: &Bound<'py, PyAny>) -> PyResult<$ret> {
                let plan = plan_arg(plan)?;
                $wrap(py, None, ops::dry_run(self.engine.clone(), plan))
            }

            /// Runs a plan; the outcome (success, compensation, escalation) is in the report.
            /// `again`: run a `previous`/`back` plan although its last run already moved
            /// the target; `no_wait`: stop at an approval gate (state `cancelled`).
            #[pyo3(signature = (plan, *, reason=None, run_id=None, cancel=None, again=false, no_wait=false))]
            #[allow(clippy::too_many_arguments)]
            fn run<'py>(
                &self,
                py: Python<'py>,
                plan: &Bound<'py, PyAny>,
                reason: Option<String>,
                run_id: Option<&str>,
                cancel: Option<&Bound<'py, PyCancel>>,
                again: bool,
                no_wait: bool,
            ) -> PyResult<$ret> {
                let plan = plan_arg(plan)?;
                let options = options(reason, run_id, cancel, again, no_wait)?;
                $wrap(py, options.cancel.clone(), ops::run(self.engine.clone(), plan, options))
            }

            /// Finishes a run after a crash, deciding in-flight steps with `observe`.
            #[pyo3(signature = (run, *, cancel=None))]
            fn resume<'py>(&self, py: Python<'py>, run: &str, cancel: Option<&Bound<'py, PyCancel>>) -> PyResult<$ret> {
                let options = options(None, None, cancel, false, false)?;
                $wrap(py, options.cancel.clone(), ops::resume(self.engine.clone(), run_id(run)?, options))
            }

            /// The report of a journaled run.
            fn report<'py>(&self, py: Python<'py>, run: &str) -> PyResult<$ret> {
                $wrap(py, None, ops::report(self.engine.clone(), run_id(run)?))
            }

            /// Approves (or, with `approved=False`, rejects) a gate, from any process.
            #[pyo3(signature = (run, step, *, by, approved=true))]
            fn approve<'py>(
                &self,
                py: Python<'py>,
                run: &str,
                step: &str,
                by: String,
                approved: bool,
            ) -> PyResult<$ret> {
                $wrap(py, None, ops::approve(self.engine.clone(), run_id(run)?, StepId::new(step), approved, by))
            }

            /// Asks a running run to stop at its next step boundary, from any process or
            /// host sharing its journal; it ends `cancelled` and `resume` continues it.
            #[pyo3(signature = (run, *, by))]
            fn request_cancel<'py>(&self, py: Python<'py>, run: &str, by: String) -> PyResult<$ret> {
                $wrap(py, None, ops::request_cancel(self.engine.clone(), run_id(run)?, by))
            }

            /// Every journaled run (`run`, `plan`, `started_at`), oldest first.
            fn runs<'py>(&self, py: Python<'py>) -> PyResult<$ret> {
                $wrap(py, None, ops::runs(self.engine.clone()))
            }

            /// The rollback history, oldest first, filtered by target and time.
            #[pyo3(signature = (*, target=None, since=None, until=None))]
            fn history<'py>(
                &self,
                py: Python<'py>,
                target: Option<String>,
                since: Option<&Bound<'py, PyAny>>,
                until: Option<&Bound<'py, PyAny>>,
            ) -> PyResult<$ret> {
                let query = history_query(target, since, until)?;
                $wrap(py, None, ops::history(self.engine.clone(), query))
            }

            /// Adds the root cause and post-mortem link to a run's history.
            #[pyo3(signature = (run, *, by, root_cause=None, postmortem=None))]
            fn annotate<'py>(
                &self,
                py: Python<'py>,
                run: &str,
                by: String,
                root_cause: Option<String>,
                postmortem: Option<String>,
            ) -> PyResult<$ret> {
                $wrap(py, None, ops::annotate(self.engine.clone(), run_id(run)?, root_cause, postmortem, by))
            }

            /// Re-decides each journaled verify step of `run` under `policy` (default:
            /// the step's own, which reproduces the run): per step `recorded`,
            /// `replayed` (`passed` is `None` when the record is too short to tell)
            /// and `change` in words ("would have FAILED where the run passed …").
            #[pyo3(signature = (run, policy=None, *, assume_last_holds=false))]
            fn replay<'py>(
                &self,
                py: Python<'py>,
                run: &str,
                policy: Option<&Bound<'py, PyAny>>,
                assume_last_holds: bool,
            ) -> PyResult<$ret> {
                let policy = match policy {
                    Some(p) if !p.is_none() => Some(crate::handles::policy_arg(Some(p))?),
                    _ => None,
                };
                let hold = crate::verify::hold(assume_last_holds);
                $wrap(py, None, ops::replay(self.engine.clone(), run_id(run)?, policy, hold))
            }

            /// Plans the undo of a finished run (running it is a new run).
            fn plan_undo<'py>(&self, py: Python<'py>, run: &str) -> PyResult<$ret> {
                $wrap(py, None, ops::plan_undo(self.engine.clone(), run_id(run)?))
            }

            fn __repr__(&self) -> String {
                format!("{}({:?})", $pyname, self.engine)
            }
        }
    };
}

/// Waits on the runtime with the GIL released; Ctrl-C stops a run (one with
/// `cancel`) at its next step boundary, anything else at once.
fn blocking<'py, T, F>(py: Python<'py>, cancel: Option<CancelHandle>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: std::future::Future<Output = rollback_core::Result<T>> + Send,
    T: IntoPyObject<'py> + Send,
{
    let value = crate::runtime::wait(py, cancel.as_ref(), fut)?;
    value.into_pyobject(py).map(|v| v.into_any().into_bound()).map_err(Into::into)
}

/// Returns an awaitable completed on the caller's loop; cancelling it stops a run
/// (one with `cancel`) at its next step boundary, anything else at once.
fn awaitable<'py, T, F>(py: Python<'py>, cancel: Option<CancelHandle>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: std::future::Future<Output = rollback_core::Result<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let on_cancel = cancel.map_or(crate::aio::OnCancel::Abort, crate::aio::OnCancel::Request);
    crate::aio::awaitable(py, on_cancel, fut)
}

engine_class!(
    PyEngine,
    "Engine",
    "Runs plans: blocking methods that release the GIL while the Rust engine works.",
    Bound<'py, PyAny>,
    blocking
);
engine_class!(
    PyAsyncEngine,
    "AsyncEngine",
    "Runs plans: the `Engine` methods as awaitables (asyncio), run on the module's Tokio runtime.",
    Bound<'py, PyAny>,
    awaitable
);

/// Accepts `dict | None` or keyword signals; used by `should_rollback`.
pub fn merge_kwargs(
    base: Option<&Bound<'_, PyAny>>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<serde_json::Value> {
    let mut value = match base {
        Some(b) if !b.is_none() => py_to_json(b)?,
        _ => serde_json::Value::Object(Default::default()),
    };
    if let (Some(kwargs), serde_json::Value::Object(map)) = (kwargs, &mut value) {
        for (k, v) in kwargs.iter() {
            map.insert(k.extract::<String>()?, py_to_json(&v)?);
        }
    }
    Ok(value)
}
