//! The one place Docker API errors become `rollback_core::Error`s.

use bollard::errors::Error as DockerError;
use rollback_core::{Error, ErrorKind};

/// Maps a bollard error, naming the operation and what it acted on.
pub(crate) fn map(operation: &'static str, subject: &str, err: DockerError) -> Error {
    let (kind, retryable, message) = match &err {
        DockerError::DockerResponseServerError { status_code, message } => {
            let kind = match status_code {
                400 => ErrorKind::InvalidInput,
                404 => ErrorKind::NotFound,
                409 => ErrorKind::Conflict,
                _ => ErrorKind::Backend,
            };
            (kind, *status_code >= 500, format!("docker engine answered {status_code}: {message}"))
        }
        DockerError::SocketNotFoundError(path) => {
            (ErrorKind::Backend, true, format!("the docker socket {path} does not exist (is dockerd running?)"))
        }
        DockerError::IOError { .. }
        | DockerError::HyperResponseError { .. }
        | DockerError::HttpClientError { .. }
        | DockerError::HyperLegacyError { .. }
        | DockerError::RequestTimeoutError => {
            (ErrorKind::Backend, true, format!("cannot reach the docker engine: {err}"))
        }
        other => (ErrorKind::Backend, false, format!("docker error: {other}")),
    };
    Error::new(kind, message).with_operation(operation).with_context("docker", subject).set_retryable(retryable)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(status_code: u16) -> DockerError {
        DockerError::DockerResponseServerError { status_code, message: "boom".into() }
    }

    #[test]
    fn status_codes_become_kinds() {
        assert_eq!(map("inspect", "web", server(404)).kind(), ErrorKind::NotFound);
        assert_eq!(map("rename", "web", server(409)).kind(), ErrorKind::Conflict);
        assert_eq!(map("create", "web", server(400)).kind(), ErrorKind::InvalidInput);
        let e = map("start", "web", server(500));
        assert!(e.kind() == ErrorKind::Backend && e.is_retryable());
        assert!(!map("create", "web", server(409)).is_retryable());
    }

    #[test]
    fn a_stopped_daemon_is_retryable_and_says_so() {
        let e = map("inspect", "web", DockerError::SocketNotFoundError("/var/run/docker.sock".into()));
        assert!(e.is_retryable());
        assert!(e.to_string().contains("dockerd"), "{e}");
        assert_eq!(e.context_value("docker"), Some("web"));
    }
}
