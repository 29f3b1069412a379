//! One Python exception class per [`ErrorKind`], all subclasses of `RollbackError`,
//! carrying the error's context: `kind`, `message`, `retryable`, `operation` and
//! `context` (a dict). The one place core errors become Python exceptions and
//! Python exceptions (raised by Python targets, verifiers, notifiers) become core errors.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rollback_core::{Error, ErrorKind};

create_exception!(
    rollback,
    RollbackError,
    PyException,
    "Base of every rollback error: `kind`, `message`, `retryable`, `operation`, `context`."
);
create_exception!(rollback, InvalidInputError, RollbackError, "The input (plan, spec, selector, config) is wrong.");
create_exception!(rollback, NotFoundError, RollbackError, "A version, target or run does not exist.");
create_exception!(rollback, UnsupportedError, RollbackError, "The target or component cannot do this.");
create_exception!(rollback, LockedError, RollbackError, "Someone else holds the lock, or a fencing token is stale.");
create_exception!(rollback, ConflictError, RollbackError, "The state is not the one the change was prepared against.");
create_exception!(rollback, DivergedError, RollbackError, "The target changed in a way this run did not do.");
create_exception!(
    rollback,
    RollbackTimeoutError,
    RollbackError,
    "A deadline passed (not the built-in `TimeoutError`)."
);
create_exception!(rollback, BackendError, RollbackError, "The backend (server, API, subprocess) failed.");
create_exception!(rollback, VerificationFailedError, RollbackError, "A verification did not pass.");
create_exception!(
    rollback,
    RunCancelledError,
    RollbackError,
    "The run was cancelled or a gate rejected (not `asyncio.CancelledError`)."
);
create_exception!(rollback, CorruptError, RollbackError, "The journal is unreadable beyond its recoverable tail.");
create_exception!(rollback, RunStateError, RollbackError, "The operation is not allowed in this state.");
create_exception!(rollback, PermissionDeniedError, RollbackError, "Not allowed (an approver not on the gate's list).");
create_exception!(rollback, InternalError, RollbackError, "A bug or an impossible state.");
create_exception!(
    rollback,
    AlreadyDoneError,
    RollbackError,
    "The target is already where an absolute request points: `prepare` raises it, the step is skipped."
);

/// Every kind, for mapping names back.
pub const KINDS: [ErrorKind; 15] = [
    ErrorKind::InvalidInput,
    ErrorKind::NotFound,
    ErrorKind::Unsupported,
    ErrorKind::Locked,
    ErrorKind::Conflict,
    ErrorKind::Diverged,
    ErrorKind::Timeout,
    ErrorKind::Backend,
    ErrorKind::VerificationFailed,
    ErrorKind::Cancelled,
    ErrorKind::Corrupt,
    ErrorKind::InvalidState,
    ErrorKind::PermissionDenied,
    ErrorKind::Internal,
    ErrorKind::AlreadyDone,
];

/// The exception class of `kind`.
pub fn class_of(py: Python<'_>, kind: ErrorKind) -> Bound<'_, pyo3::types::PyType> {
    use pyo3::PyTypeInfo;
    match kind {
        ErrorKind::InvalidInput => InvalidInputError::type_object(py),
        ErrorKind::NotFound => NotFoundError::type_object(py),
        ErrorKind::Unsupported => UnsupportedError::type_object(py),
        ErrorKind::Locked => LockedError::type_object(py),
        ErrorKind::Conflict => ConflictError::type_object(py),
        ErrorKind::Diverged => DivergedError::type_object(py),
        ErrorKind::Timeout => RollbackTimeoutError::type_object(py),
        ErrorKind::Backend => BackendError::type_object(py),
        ErrorKind::VerificationFailed => VerificationFailedError::type_object(py),
        ErrorKind::Cancelled => RunCancelledError::type_object(py),
        ErrorKind::Corrupt => CorruptError::type_object(py),
        ErrorKind::InvalidState => RunStateError::type_object(py),
        ErrorKind::PermissionDenied => PermissionDeniedError::type_object(py),
        ErrorKind::AlreadyDone => AlreadyDoneError::type_object(py),
        _ => InternalError::type_object(py),
    }
}

/// Adds the exception classes to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("RollbackError", py.get_type::<RollbackError>())?;
    for kind in KINDS {
        let class = class_of(py, kind);
        // Class-level defaults, so `raise rollback.NotFoundError("…")` from a Python
        // target carries its kind back into the engine.
        class.setattr("kind", kind.as_str())?;
        class.setattr("retryable", Error::new(kind, "").is_retryable())?;
        class.setattr("operation", py.None())?;
        class.setattr("context", py.None())?;
        m.add(class.name()?.to_string(), class)?;
    }
    Ok(())
}

/// A core error as the Python exception of its kind, with its context as attributes.
pub fn to_pyerr(err: Error) -> PyErr {
    Python::attach(|py| match build(py, &err) {
        Ok(exc) => exc,
        Err(e) => e,
    })
}

fn build(py: Python<'_>, err: &Error) -> PyResult<PyErr> {
    let value = class_of(py, err.kind()).call1((err.to_string(),))?;
    value.setattr("kind", err.kind().as_str())?;
    value.setattr("message", err.message())?;
    value.setattr("retryable", err.is_retryable())?;
    value.setattr("operation", err.operation())?;
    let context = PyDict::new(py);
    for (k, v) in err.context() {
        context.set_item(*k, v)?;
    }
    value.setattr("context", context)?;
    Ok(PyErr::from_value(value))
}

/// `InvalidInputError(message)` for bad arguments found on the Python side.
pub fn invalid_input(message: impl Into<String>) -> PyErr {
    to_pyerr(Error::invalid_input(message))
}

/// Extension to turn `rollback_core::Result` into `PyResult`.
pub trait IntoPy<T> {
    /// Maps the error to its Python exception.
    fn py_err(self) -> PyResult<T>;
}

impl<T> IntoPy<T> for rollback_core::Result<T> {
    fn py_err(self) -> PyResult<T> {
        self.map_err(to_pyerr)
    }
}

/// A Python exception raised by Python code the engine called (a Python target's
/// `apply`, a verifier's `check`) as a core error. A `RollbackError` keeps its kind,
/// message and retryability; any other exception is a permanent `backend` error
/// naming its Python type (retrying unknown Python code is not known to be safe).
pub fn from_pyerr(py: Python<'_>, err: PyErr, operation: &'static str) -> Error {
    let value = err.value(py);
    let type_name = err.get_type(py).name().map(|n| n.to_string()).unwrap_or_else(|_| "Exception".into());
    let text = value.str().map(|s| s.to_string()).unwrap_or_default();
    let core = if err.is_instance_of::<RollbackError>(py) {
        let kind = value
            .getattr("kind")
            .ok()
            .and_then(|k| k.extract::<String>().ok())
            .and_then(|k| KINDS.iter().copied().find(|x| x.as_str() == k))
            .unwrap_or(ErrorKind::Backend);
        let message = value.getattr("message").ok().and_then(|m| m.extract::<String>().ok()).unwrap_or(text);
        let mut e = Error::new(kind, message);
        if let Some(retryable) = value.getattr("retryable").ok().and_then(|r| r.extract::<bool>().ok()) {
            e = e.set_retryable(retryable);
        }
        e
    } else {
        Error::new(ErrorKind::Backend, format!("{type_name}: {text}")).set_retryable(false)
    };
    core.with_operation(operation).with_context("python_exception", type_name)
}
