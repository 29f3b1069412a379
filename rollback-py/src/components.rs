//! Targets, verifiers and notifiers written in Python, run by the Rust engine.
//!
//! Python methods are called on the runtime's blocking threads, taking the GIL there
//! (the calling Python thread released it), so a slow deploy script never stalls the
//! engine's lease heartbeat. A method may be `async def`: driven by an `AsyncEngine`,
//! its coroutine runs on the caller's event loop (`run_coroutine_threadsafe`, the
//! blocking thread waiting with the GIL released); driven by the blocking `Engine`,
//! whose caller's loop (if any) is blocked, it runs with `asyncio.run` on that
//! thread.

use async_trait::async_trait;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple};
use rollback_core::{
    Capabilities, Category, Change, Check, Error, ErrorKind, Event, IdempotencyKey, Identity, Notifier, Observed,
    Outcome, Registry, Request, Result, Revision, Spec, Target, TargetId, Verifier, Version, prepare_versioned,
};
use serde_json::{Value, json};
use std::sync::Arc;

use crate::convert::{json_to_py, py_to_json, type_name};
use crate::errors::{from_pyerr, invalid_input};
use crate::secrets::PySecrets;

/// Calls `f` with the object on a blocking thread holding the GIL; a Python
/// exception becomes a core error (see [`from_pyerr`]).
pub(crate) async fn call<R: Send + 'static>(
    obj: &Arc<Py<PyAny>>,
    operation: &'static str,
    f: impl for<'py> FnOnce(&Bound<'py, PyAny>) -> PyResult<R> + Send + 'static,
) -> Result<R> {
    let obj = obj.clone();
    // `rollback.progress(...)` from inside the method reports for the running step.
    let reporter = rollback_core::progress::reporter();
    let caller_loop = crate::aio::caller_loop();
    tokio::task::spawn_blocking(move || {
        let previous = CALLER_LOOP.with(|c| c.replace(caller_loop));
        let out = crate::progress::with_reporter(reporter, || {
            Python::attach(|py| f(obj.bind(py)).map_err(|e| from_pyerr(py, e, operation)))
        });
        CALLER_LOOP.with(|c| *c.borrow_mut() = previous);
        out
    })
    .await
    .map_err(|e| Error::internal(format!("Python {operation} did not finish: {e}")))?
}

/// Calls `obj.method(*args)` and converts the result to JSON, running a coroutine
/// result with `asyncio.run`.
async fn call_method(obj: &Arc<Py<PyAny>>, method: &'static str, args: Vec<Value>) -> Result<Value> {
    call(obj, method, move |obj| {
        let py = obj.py();
        let args = args.iter().map(|a| json_to_py(py, a)).collect::<PyResult<Vec<_>>>()?;
        let result = finish(obj.call_method1(method, PyTuple::new(py, args)?)?)?;
        py_to_json(&result)
    })
    .await
}

std::thread_local! {
    /// The asyncio caller's loop of the call running on this blocking thread.
    static CALLER_LOOP: std::cell::RefCell<Option<Arc<Py<PyAny>>>> = const { std::cell::RefCell::new(None) };
}

/// Runs a coroutine to completion: on the asyncio caller's loop while it runs, else
/// with `asyncio.run` on this thread (which has no running loop).
pub(crate) fn finish<'py>(value: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = value.py();
    if !value.hasattr("__await__")? {
        return Ok(value);
    }
    let asyncio = py.import("asyncio")?;
    let caller = CALLER_LOOP.with(|c| c.borrow().as_ref().map(|l| l.clone_ref(py)));
    if let Some(event_loop) = caller.map(|l| l.into_bound(py))
        && event_loop.call_method0("is_running")?.is_truthy()?
    {
        // This thread waits with the GIL released while the loop runs it.
        let done = asyncio.call_method1("run_coroutine_threadsafe", (value, event_loop))?;
        return done.call_method0("result");
    }
    asyncio.call_method1("run", (value,))
}

fn attr<'py>(obj: &Bound<'py, PyAny>, name: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
    if obj.hasattr(name)? {
        let value = obj.getattr(name)?;
        if !value.is_none() {
            return Ok(Some(value));
        }
    }
    Ok(None)
}

fn string_attr(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Option<String>> {
    attr(obj, name)?.map(|v| v.extract::<String>()).transpose()
}

pub(crate) fn required_name(obj: &Bound<'_, PyAny>, role: &str) -> PyResult<String> {
    match string_attr(obj, "name") {
        Ok(Some(name)) if !name.is_empty() => Ok(name),
        _ => Err(invalid_input(format!("a Python {role} ({}) needs a non-empty str attribute `name`", type_name(obj)))),
    }
}

pub(crate) fn callable_attr(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<bool> {
    Ok(attr(obj, name)?.is_some_and(|m| m.is_callable()))
}

fn invalid(what: &str, got: &Value) -> Error {
    Error::invalid_input(format!("{what}, got {got}"))
}

fn version_json(value: Value) -> Value {
    match value {
        Value::String(id) => json!({ "id": id }),
        other => other,
    }
}

fn version_from(value: Value, what: &str) -> Result<Version> {
    serde_json::from_value(version_json(value.clone()))
        .map_err(|_| invalid(&format!("{what} must be a version id (str) or {{\"id\", \"label\"}}"), &value))
}

fn revision_from(value: Value) -> Result<Revision> {
    let shaped = match value.clone() {
        Value::String(id) => json!({ "version": { "id": id }, "description": "", "available": true }),
        Value::Object(mut map) if !map.contains_key("version") => {
            let mut version = serde_json::Map::new();
            for key in ["id", "label"] {
                if let Some(v) = map.remove(key) {
                    version.insert(key.into(), v);
                }
            }
            map.insert("version".into(), Value::Object(version));
            map.entry("available").or_insert(Value::Bool(true));
            map.entry("description").or_insert(Value::String(String::new()));
            Value::Object(map)
        }
        other => other,
    };
    serde_json::from_value(shaped)
        .map_err(|e| invalid(&format!("history() items must be str or revision dicts ({e})"), &value))
}

/// A change returned by a Python `prepare`: a dict with at least `to`; `target`,
/// `kind`, `from`, `description`, `reversibility`, `data_loss` default sensibly.
fn change_from(value: Value, target: &TargetId, kind: &str) -> Result<Change> {
    let mut map = match value.clone() {
        Value::Object(map) => map,
        Value::String(to) => serde_json::Map::from_iter([("to".to_string(), Value::String(to))]),
        other => return Err(invalid("prepare() must return a change dict with at least `to`", &other)),
    };
    let to = map.remove("to").ok_or_else(|| invalid("prepare() must return a change with `to`", &value))?;
    let from = map.remove("from").unwrap_or(Value::Null);
    let mut change = Change::new(
        target.clone(),
        kind,
        if from.is_null() { None } else { Some(version_from(from, "change.from")?) },
        version_from(to, "change.to")?,
    );
    if let Some(t) = map.remove("target")
        && t != Value::String(target.to_string())
    {
        return Err(invalid(&format!("prepare() of {target} returned a change for another target"), &t));
    }
    let mut parse = |key: &str| map.remove(key).filter(|v| !v.is_null());
    if let Some(d) = parse("description") {
        change.description =
            d.as_str().map(str::to_owned).ok_or_else(|| invalid("change.description must be str", &d))?;
    }
    if let Some(p) = parse("payload") {
        change.payload = p;
    }
    if let Some(r) = parse("reversibility") {
        change.reversibility = serde_json::from_value(r.clone())
            .map_err(|_| invalid("change.reversibility must be inverse | needs_snapshot | irreversible", &r))?;
    }
    if let Some(d) = parse("data_loss") {
        change.data_loss = serde_json::from_value(d.clone())
            .map_err(|_| invalid("change.data_loss must be {none, items?, summary}", &d))?;
    }
    if let Some(k) = parse("kind") {
        change.kind = k.as_str().unwrap_or(kind).to_owned();
    }
    parse("schema_version");
    if let Some((key, _)) = map.iter().next() {
        return Err(Error::invalid_input(format!("prepare() of {target} returned an unknown change field {key:?}")));
    }
    Ok(change)
}

fn observed_from(value: Value) -> Result<Observed> {
    let (state, detail) = match &value {
        Value::String(s) => (s.as_str(), String::new()),
        Value::Array(a) if a.len() == 2 => (a[0].as_str().unwrap_or(""), a[1].as_str().unwrap_or("").to_owned()),
        Value::Object(m) => (
            m.get("state").and_then(Value::as_str).unwrap_or(""),
            m.get("detail").and_then(Value::as_str).unwrap_or("").to_owned(),
        ),
        _ => ("", String::new()),
    };
    let detail = |what: &str| if detail.is_empty() { what.to_owned() } else { detail.clone() };
    match state {
        "done" => Ok(Observed::Done),
        "not_started" => Ok(Observed::NotStarted),
        "partial" => Ok(Observed::Partial(detail("partially applied"))),
        "diverged" => Ok(Observed::Diverged(detail("changed by someone else"))),
        _ => Err(invalid("observe() must return done | not_started | partial | diverged (or (state, detail))", &value)),
    }
}

/// A target implemented by a Python object (see the package's `TargetProtocol`).
pub struct PyTarget {
    name: TargetId,
    kind: String,
    category: Category,
    capabilities: Capabilities,
    has_prepare: bool,
    has_identity: bool,
    obj: Arc<Py<PyAny>>,
}

impl std::fmt::Debug for PyTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PyTarget").field("name", &self.name).field("kind", &self.kind).finish()
    }
}

impl PyTarget {
    /// Checks the object's shape: `name`, `apply`, `observe`, and `current` +
    /// `history` (versioned) or `prepare` (actions).
    pub fn from_object(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        let name = required_name(obj, "target")?;
        let kind = string_attr(obj, "kind")?.unwrap_or_else(|| "python".into());
        let category: Category = match attr(obj, "category")? {
            Some(c) => crate::convert::from_py(&c, &format!("target {name:?}: category"))?,
            None => Category::Other,
        };
        let has_history = callable_attr(obj, "current")? && callable_attr(obj, "history")?;
        let versioned = match attr(obj, "versioned")? {
            Some(v) => v.is_truthy()?,
            None => has_history,
        };
        let converges_from_partial = attr(obj, "converges_from_partial")?.map(|v| v.is_truthy()).transpose()?;
        let has_prepare = callable_attr(obj, "prepare")?;
        for method in ["apply", "observe"] {
            if !callable_attr(obj, method)? {
                return Err(invalid_input(format!("Python target {name:?} has no method {method}(change, key)")));
            }
        }
        if versioned && !has_history {
            return Err(invalid_input(format!(
                "Python target {name:?} is versioned but lacks current() and history()"
            )));
        }
        if !versioned && !has_prepare {
            return Err(invalid_input(format!(
                "Python target {name:?} needs current() and history() (versioned) or prepare(request) (actions)"
            )));
        }
        Ok(PyTarget {
            name: TargetId::new(name),
            kind,
            category,
            capabilities: Capabilities { versioned, converges_from_partial: converges_from_partial.unwrap_or(false) },
            has_prepare,
            has_identity: callable_attr(obj, "identity")?,
            obj: Arc::new(obj.clone().unbind()),
        })
    }
}

#[async_trait]
impl Target for PyTarget {
    fn name(&self) -> &TargetId {
        &self.name
    }

    fn kind(&self) -> &str {
        &self.kind
    }

    fn category(&self) -> Category {
        self.category
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    async fn identity(&self) -> Result<Identity> {
        if !self.has_identity {
            return Ok(Identity::new(format!("python:{}:{}", self.kind, self.name)));
        }
        match call_method(&self.obj, "identity", vec![]).await? {
            Value::String(s) => Ok(Identity::new(s)),
            other => Err(invalid("identity() must return str", &other)),
        }
    }

    async fn current(&self) -> Result<Version> {
        if !self.capabilities.versioned {
            return Err(Error::unsupported("current"));
        }
        version_from(call_method(&self.obj, "current", vec![]).await?, "current()")
    }

    async fn history(&self) -> Result<Vec<Revision>> {
        if !self.capabilities.versioned {
            return Err(Error::unsupported("history"));
        }
        match call_method(&self.obj, "history", vec![]).await? {
            Value::Array(items) => items.into_iter().map(revision_from).collect(),
            other => Err(invalid("history() must return a list, newest first", &other)),
        }
    }

    async fn prepare(&self, request: &Request) -> Result<Change> {
        if !self.has_prepare {
            return match request {
                Request::To(selector) => prepare_versioned(self, selector).await,
                Request::Action { action, .. } => Err(Error::new(
                    ErrorKind::Unsupported,
                    format!("Python target {} has no prepare() for action {action:?}", self.name),
                )),
            };
        }
        let request = serde_json::to_value(request).map_err(|e| Error::internal(e.to_string()))?;
        change_from(call_method(&self.obj, "prepare", vec![request]).await?, &self.name, &self.kind)
    }

    /// The compare-and-swap gate runs here, before the Python `apply`: `observe`
    /// first, so Python code only runs when the target is still at `change.from`
    /// (or part-way there).
    async fn apply(&self, change: &Change, key: &IdempotencyKey) -> Result<()> {
        if !self.observe(change, key).await?.proceed(change)? {
            return Ok(());
        }
        let args = vec![serde_json::to_value(change).unwrap_or_default(), Value::String(key.to_string())];
        call_method(&self.obj, "apply", args).await.map(drop).map_err(|e| e.with_context("target", &self.name))
    }

    async fn observe(&self, change: &Change, key: &IdempotencyKey) -> Result<Observed> {
        let args = vec![serde_json::to_value(change).unwrap_or_default(), Value::String(key.to_string())];
        observed_from(call_method(&self.obj, "observe", args).await?)
    }
}

/// A verifier implemented by a Python object with `name` and `check()` returning a
/// bool, `"pass" | "fail" | "inconclusive"`, `(outcome, detail)`, or a dict
/// `{outcome, detail?, measurements?}`; `None` is inconclusive.
pub struct PyVerifier {
    name: String,
    obj: Arc<Py<PyAny>>,
}

impl PyVerifier {
    /// Checks the object's shape.
    pub fn from_object(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        let name = required_name(obj, "verifier")?;
        if !callable_attr(obj, "check")? {
            return Err(invalid_input(format!("Python verifier {name:?} has no method check()")));
        }
        Ok(PyVerifier { name, obj: Arc::new(obj.clone().unbind()) })
    }
}

fn check_from(value: Value) -> Result<Check> {
    let outcome = |s: &str| match s {
        "pass" => Some(Outcome::Pass),
        "fail" => Some(Outcome::Fail),
        "inconclusive" => Some(Outcome::Inconclusive),
        _ => None,
    };
    let bad =
        || invalid("check() must return bool, \"pass\"|\"fail\"|\"inconclusive\", (outcome, detail) or a dict", &value);
    Ok(match &value {
        Value::Null => Check::new(Outcome::Inconclusive, "check() returned None"),
        Value::Bool(true) => Check::new(Outcome::Pass, "check() returned True"),
        Value::Bool(false) => Check::new(Outcome::Fail, "check() returned False"),
        Value::String(s) => Check::new(outcome(s).ok_or_else(bad)?, format!("check() returned {s:?}")),
        Value::Array(a) if a.len() == 2 => Check::new(
            a[0].as_str().and_then(outcome).ok_or_else(bad)?,
            a[1].as_str().map(str::to_owned).unwrap_or_else(|| a[1].to_string()),
        ),
        Value::Object(m) => {
            let o = m.get("outcome").and_then(Value::as_str).and_then(outcome).ok_or_else(bad)?;
            let mut check = Check::new(o, m.get("detail").and_then(Value::as_str).unwrap_or_default());
            if let Some(Value::Object(ms)) = m.get("measurements") {
                for (k, v) in ms {
                    check = check.measure(k, v.as_f64().ok_or_else(bad)?);
                }
            }
            check
        }
        _ => return Err(bad()),
    })
}

#[async_trait]
impl Verifier for PyVerifier {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self) -> Result<Check> {
        check_from(call_method(&self.obj, "check", vec![]).await?)
    }
}

/// A notifier implemented by a Python object with `name` and `notify(event)`, or a
/// plain callable (the engine's `on_event`), called with each event as a dict.
/// Exceptions are journaled as notifier failures; the run goes on.
pub struct PyNotifier {
    name: String,
    callable: bool,
    obj: Arc<Py<PyAny>>,
}

impl PyNotifier {
    /// A notifier object (`name`, `notify(event)`).
    pub fn from_object(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        let name = required_name(obj, "notifier")?;
        if !callable_attr(obj, "notify")? {
            return Err(invalid_input(format!("Python notifier {name:?} has no method notify(event)")));
        }
        Ok(PyNotifier { name, callable: false, obj: Arc::new(obj.clone().unbind()) })
    }

    /// A callable taking the event dict.
    pub fn from_callable(name: &str, obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        if !obj.is_callable() {
            return Err(invalid_input(format!("{name} must be callable, not {}", type_name(obj))));
        }
        Ok(PyNotifier { name: name.into(), callable: true, obj: Arc::new(obj.clone().unbind()) })
    }
}

#[async_trait]
impl Notifier for PyNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    async fn notify(&self, event: &Event) -> Result<()> {
        let event = serde_json::to_value(event).map_err(|e| Error::internal(e.to_string()))?;
        let callable = self.callable;
        call(&self.obj, "notify", move |obj| {
            let arg = json_to_py(obj.py(), &event)?;
            let result = if callable { obj.call1((arg,))? } else { obj.call_method1("notify", (arg,))? };
            finish(result).map(drop)
        })
        .await
    }
}

/// A verifier that always passes at once: the baseline of the overhead benchmark
/// (verifier kind `noop`).
#[derive(Debug)]
pub struct NoopVerifier {
    name: String,
}

impl NoopVerifier {
    /// A no-op verifier called `name`.
    pub fn new(name: &str) -> Self {
        NoopVerifier { name: name.into() }
    }
}

#[async_trait]
impl Verifier for NoopVerifier {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self) -> Result<Check> {
        Ok(Check::new(Outcome::Pass, "no-op"))
    }
}

/// Registers a Python class as a target kind: plans (and resumes in a fresh process)
/// build it as `cls(name, config)`, with `secrets=` when its spec declares secrets.
pub fn register_target_class(registry: &mut Registry, kind: &str, cls: &Bound<'_, PyAny>) {
    let cls = Arc::new(cls.clone().unbind());
    registry.register_target_kind(kind, move |spec: Spec| {
        let cls = cls.clone();
        async move {
            let secrets = PySecrets::of(&spec)?;
            let target =
                call(&cls, "build target", move |cls| PyTarget::from_object(&construct(cls, &spec, secrets)?)).await?;
            Ok(Arc::new(target) as Arc<dyn Target>)
        }
    });
}

/// `cls(name, config)`, plus `secrets=` (a [`PySecrets`]) when the spec declares any.
pub(crate) fn construct<'py>(cls: &Bound<'py, PyAny>, spec: &Spec, secrets: PySecrets) -> PyResult<Bound<'py, PyAny>> {
    let py = cls.py();
    let args = (PyString::new(py, &spec.name), json_to_py(py, &spec.config)?);
    if spec.secrets.is_empty() {
        return cls.call1(args);
    }
    let kwargs = pyo3::types::PyDict::new(py);
    kwargs.set_item("secrets", Bound::new(py, secrets)?)?;
    cls.call(args, Some(&kwargs))
}

/// Registers a Python class as a verifier kind, built as `cls(name, config)` (with
/// `secrets=` when its spec declares secrets).
pub fn register_verifier_class(registry: &mut Registry, kind: &str, cls: &Bound<'_, PyAny>) {
    let cls = Arc::new(cls.clone().unbind());
    registry.register_verifier_kind(kind, move |spec: Spec| {
        let cls = cls.clone();
        async move {
            let secrets = PySecrets::of(&spec)?;
            let verifier =
                call(&cls, "build verifier", move |cls| PyVerifier::from_object(&construct(cls, &spec, secrets)?))
                    .await?;
            Ok(Arc::new(verifier) as Arc<dyn Verifier>)
        }
    });
}

/// The registry every engine and handle starts from: built-in verifiers (plus
/// `noop`), local targets, and the backends compiled in.
pub fn base_registry() -> Registry {
    let mut registry = Registry::new();
    rollback_core::verify::register_builtin_verifiers(&mut registry);
    rollback_core::local::register_local_kinds(&mut registry);
    registry.register_verifier_kind("noop", |spec: Spec| async move {
        Ok(Arc::new(NoopVerifier::new(&spec.name)) as Arc<dyn Verifier>)
    });
    #[cfg(feature = "db")]
    rollback_db::register(&mut registry);
    #[cfg(feature = "docker")]
    rollback_docker::register(&mut registry);
    #[cfg(feature = "k8s")]
    rollback_k8s::register(&mut registry);
    #[cfg(feature = "storage")]
    rollback_storage::register(&mut registry);
    registry
}

/// The backends compiled into this build.
pub fn backends() -> Vec<&'static str> {
    let mut backends = vec!["core"];
    if cfg!(feature = "db") {
        backends.push("db");
    }
    if cfg!(feature = "docker") {
        backends.push("docker");
    }
    if cfg!(feature = "k8s") {
        backends.push("k8s");
    }
    if cfg!(feature = "storage") {
        backends.push("storage");
    }
    backends
}
