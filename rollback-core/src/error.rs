//! The one error type of the library: a kind, retryable or permanent, the
//! operation that failed, context pairs and an optional source.
//!
//! Backends map their own errors into [`Error`] in one place each, so callers
//! (and the engine's retry and escalation logic) only ever look at [`ErrorKind`].

use std::fmt;

/// What went wrong, in terms a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input (a plan, a spec, a selector, a config value) is wrong.
    InvalidInput,
    /// The thing asked for does not exist (a version, a target, a run).
    NotFound,
    /// The target or component cannot do this.
    Unsupported,
    /// Someone else holds the lock, or a fencing token is stale.
    Locked,
    /// The state is not the one the operation was prepared against
    /// (compare-and-swap failed).
    Conflict,
    /// The target changed in a way this run did not do (observe found a third state),
    /// or its identity is not the journaled one.
    Diverged,
    /// A deadline passed.
    Timeout,
    /// The backend (server, API, subprocess) failed.
    Backend,
    /// A verification did not pass.
    VerificationFailed,
    /// The run was cancelled.
    Cancelled,
    /// The journal is unreadable beyond its recoverable tail.
    Corrupt,
    /// An operation was asked in a state that does not allow it.
    InvalidState,
    /// Not allowed (an approver not on the gate's list).
    PermissionDenied,
    /// A bug or an impossible state.
    Internal,
    /// The target is already where an absolute request points (`exact`, `before`, a
    /// restore already in place): not a failure — the step has nothing to do.
    AlreadyDone,
}

impl ErrorKind {
    /// A stable, lower-case name (`"invalid_input"`, `"locked"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Locked => "locked",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Diverged => "diverged",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Backend => "backend",
            ErrorKind::VerificationFailed => "verification_failed",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::InvalidState => "invalid_state",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::Internal => "internal",
            ErrorKind::AlreadyDone => "already_done",
        }
    }

    /// Whether errors of this kind are retryable unless said otherwise.
    fn default_retryable(self) -> bool {
        matches!(self, ErrorKind::Timeout | ErrorKind::Backend)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The library's error.
///
/// ```
/// use rollback_core::{Error, ErrorKind};
/// let err = Error::new(ErrorKind::NotFound, "version not in history")
///     .with_operation("prepare")
///     .with_context("target", "web")
///     .with_context("selector", "exact:v9");
/// assert_eq!(err.kind(), ErrorKind::NotFound);
/// assert!(!err.is_retryable());
/// assert_eq!(
///     err.to_string(),
///     "not_found: version not in history (operation: prepare; target=web, selector=exact:v9)"
/// );
/// ```
pub struct Error {
    kind: ErrorKind,
    message: String,
    retryable: bool,
    operation: Option<&'static str>,
    context: Vec<(&'static str, String)>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// Shorthand for `Result<T, rollback_core::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` with a message. Retryable by default only for
    /// [`ErrorKind::Timeout`] and [`ErrorKind::Backend`].
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            retryable: kind.default_retryable(),
            operation: None,
            context: Vec::new(),
            source: None,
        }
    }

    /// Shorthand for [`ErrorKind::InvalidInput`].
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// Shorthand for [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// Shorthand for [`ErrorKind::Unsupported`]: what optional capabilities return by default.
    pub fn unsupported(operation: &'static str) -> Self {
        Self::new(ErrorKind::Unsupported, format!("{operation} is not supported by this component"))
            .with_operation(operation)
    }

    /// Shorthand for [`ErrorKind::AlreadyDone`]: what `prepare` returns when an
    /// absolute request is already satisfied; the engine skips the step, saying why.
    pub fn already_done(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::AlreadyDone, message)
    }

    /// Shorthand for [`ErrorKind::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without context.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether retrying the same idempotent call may succeed.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// The operation that failed, if recorded.
    pub fn operation(&self) -> Option<&'static str> {
        self.operation
    }

    /// Context pairs, in the order they were added.
    pub fn context(&self) -> &[(&'static str, String)] {
        &self.context
    }

    /// The value of a context key, if present.
    pub fn context_value(&self, key: &str) -> Option<&str> {
        self.context.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str())
    }

    /// Marks the error retryable or permanent.
    pub fn set_retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// Records the operation that failed (kept if already set).
    pub fn with_operation(mut self, operation: &'static str) -> Self {
        self.operation.get_or_insert(operation);
        self
    }

    /// Adds a context pair (once: the same pair again is ignored). Never put a secret here.
    ///
    /// ```
    /// use rollback_core::Error;
    /// let err = Error::invalid_input("bad").with_context("target", "api").with_context("target", "api");
    /// assert_eq!(err.to_string(), "invalid_input: bad (target=api)");
    /// ```
    pub fn with_context(mut self, key: &'static str, value: impl fmt::Display) -> Self {
        let value = value.to_string();
        // A backend and the engine may both name the target: say it once.
        if !self.context.iter().any(|(k, v)| *k == key && *v == value) {
            self.context.push((key, value));
        }
        self
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// A serializable, secret-free summary for reports and journals.
    pub fn to_record(&self) -> ErrorRecord {
        ErrorRecord { kind: self.kind, message: self.to_string(), retryable: self.retryable }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)?;
        if self.operation.is_some() || !self.context.is_empty() {
            f.write_str(" (")?;
            if let Some(op) = self.operation {
                write!(f, "operation: {op}")?;
                if !self.context.is_empty() {
                    f.write_str("; ")?;
                }
            }
            for (i, (k, v)) in self.context.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{k}={v}")?;
            }
            f.write_str(")")?;
        }
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message).field("retryable", &self.retryable);
        if let Some(op) = self.operation {
            d.field("operation", &op);
        }
        if !self.context.is_empty() {
            d.field("context", &self.context);
        }
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|s| s.as_ref() as _)
    }
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        use std::io::ErrorKind as Io;
        let kind = match err.kind() {
            Io::NotFound => ErrorKind::NotFound,
            Io::InvalidInput | Io::InvalidData => ErrorKind::InvalidInput,
            Io::TimedOut => ErrorKind::Timeout,
            Io::Unsupported => ErrorKind::Unsupported,
            _ => ErrorKind::Backend,
        };
        Error::new(kind, "i/o error").with_source(err)
    }
}

/// A serializable error summary, as journaled and reported.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErrorRecord {
    /// The error's kind.
    pub kind: ErrorKind,
    /// The rendered error, with context.
    pub message: String,
    /// Whether it was retryable.
    pub retryable: bool,
}

impl From<&Error> for ErrorRecord {
    fn from(err: &Error) -> Self {
        err.to_record()
    }
}

impl fmt::Display for ErrorRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_map_to_kinds() {
        let e: Error = std::io::Error::from(std::io::ErrorKind::NotFound).into();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        let e: Error = std::io::Error::other("boom").into();
        assert_eq!(e.kind(), ErrorKind::Backend);
        assert!(e.is_retryable());
    }

    #[test]
    fn operation_is_kept_once_set() {
        let e = Error::invalid_input("x").with_operation("a").with_operation("b");
        assert_eq!(e.operation(), Some("a"));
    }

    #[test]
    fn record_carries_context() {
        let e = Error::new(ErrorKind::Locked, "held").with_context("holder", "run-1");
        let r = e.to_record();
        assert_eq!(r.kind, ErrorKind::Locked);
        assert!(r.message.contains("holder=run-1"));
    }
}
