//! The one place sqlx errors become `rollback_core::Error`s.

use rollback_core::{Error, ErrorKind};

/// Maps a sqlx error, naming the operation. Connection strings never appear.
pub(crate) fn map(operation: &'static str, err: sqlx::Error) -> Error {
    let (kind, retryable) = match &err {
        sqlx::Error::Configuration(_) => (ErrorKind::InvalidInput, false),
        sqlx::Error::Database(db) if db.message().contains("no such table") => (ErrorKind::NotFound, false),
        sqlx::Error::Database(_) => (ErrorKind::Backend, false),
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
            (ErrorKind::Backend, true)
        }
        sqlx::Error::RowNotFound => (ErrorKind::NotFound, false),
        _ => (ErrorKind::Backend, false),
    };
    let message = match &err {
        sqlx::Error::Database(db) => format!("database error: {}", db.message()),
        sqlx::Error::Configuration(_) => "bad database configuration (connection string not shown)".to_owned(),
        other => format!("database error: {}", other.to_string().chars().take(300).collect::<String>()),
    };
    Error::new(kind, message).with_operation(operation).set_retryable(retryable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(map("x", sqlx::Error::RowNotFound).kind(), ErrorKind::NotFound);
        let e = map("x", sqlx::Error::PoolTimedOut);
        assert!(e.is_retryable() && e.kind() == ErrorKind::Backend);
        let e = map("connect", sqlx::Error::Configuration("postgres://u:hunter2@h/db is bad".into()));
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(!e.to_string().contains("hunter2"));
    }
}
