//! The one place `kube` errors become `rollback_core::Error`s.
//!
//! - 409 (a stale `resourceVersion`, an object that already exists) and a failed
//!   JSON-patch `test` (422 with "test failed", what the API server answers when our
//!   optimistic-concurrency check on `resourceVersion` does not hold) → `Conflict`;
//! - 404 → `NotFound`; 400 and other 422 → `InvalidInput`; 401/403 → `PermissionDenied`;
//! - 429, 5xx, connection and transport failures → `Backend`, retryable;
//! - anything else → `Backend`, permanent.
//!
//! Messages carry the API server's message (never a request body, so never Secret data).

use rollback_core::{Error, ErrorKind};

/// Whether a 422 is a failed JSON-patch `test` operation (the API server's wording,
/// and the API double's).
fn is_failed_test(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("test failed") || (m.contains("testing value") && m.contains("failed"))
}

/// Maps a kube error, naming the operation.
pub(crate) fn map(operation: &'static str, err: kube::Error) -> Error {
    let (kind, retryable, message) = match &err {
        kube::Error::Api(status) => {
            let (kind, retryable) = match status.code {
                409 => (ErrorKind::Conflict, false),
                422 if is_failed_test(&status.message) => (ErrorKind::Conflict, false),
                404 => (ErrorKind::NotFound, false),
                400 | 422 => (ErrorKind::InvalidInput, false),
                401 | 403 => (ErrorKind::PermissionDenied, false),
                408 | 429 => (ErrorKind::Backend, true),
                code if code >= 500 => (ErrorKind::Backend, true),
                _ => (ErrorKind::Backend, false),
            };
            let message = format!(
                "Kubernetes API answered {} {}: {}",
                status.code,
                if status.reason.is_empty() { "-" } else { status.reason.as_str() },
                status.message.chars().take(400).collect::<String>()
            );
            (kind, retryable, message)
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => {
            (ErrorKind::Backend, true, format!("Kubernetes API unreachable: {err}"))
        }
        kube::Error::InferConfig(_) | kube::Error::InferKubeconfig(_) => {
            (ErrorKind::InvalidInput, false, format!("Kubernetes client configuration: {err}"))
        }
        kube::Error::SerdeError(_) => {
            (ErrorKind::Backend, false, format!("unexpected answer from the Kubernetes API: {err}"))
        }
        _ => (ErrorKind::Backend, false, format!("Kubernetes client error: {err}")),
    };
    Error::new(kind, message).with_operation(operation).set_retryable(retryable)
}

/// A closure for `map_err`: `.map_err(err("get deployment"))`.
pub(crate) fn err(operation: &'static str) -> impl FnOnce(kube::Error) -> Error {
    move |e| map(operation, e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api(code: u16, reason: &str, message: &str) -> kube::Error {
        kube::Error::Api(Status::failure(message, reason).with_code(code).boxed())
    }

    #[test]
    fn conflicts() {
        let e = map("patch", api(409, "Conflict", "the object has been modified"));
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert!(!e.is_retryable());
        let e = map("create", api(409, "AlreadyExists", "leases \"x\" already exists"));
        assert_eq!(e.kind(), ErrorKind::Conflict);
        let e = map("patch", api(422, "Invalid", "testing value /metadata/resourceVersion failed: test failed"));
        assert_eq!(e.kind(), ErrorKind::Conflict, "a failed resourceVersion test is a conflict");
        let e = map("patch", api(422, "Invalid", "spec.replicas: Invalid value: -1"));
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn not_found_and_permissions() {
        let e = map("get", api(404, "NotFound", "deployments.apps \"web\" not found"));
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.operation(), Some("get"));
        assert!(e.to_string().contains("404 NotFound"), "{e}");
        assert_eq!(map("get", api(403, "Forbidden", "no")).kind(), ErrorKind::PermissionDenied);
        assert_eq!(map("get", api(400, "BadRequest", "bad")).kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn server_and_transport_failures_are_retryable() {
        for code in [500, 503, 429] {
            let e = map("get", api(code, "InternalError", "etcd timeout"));
            assert_eq!(e.kind(), ErrorKind::Backend);
            assert!(e.is_retryable(), "{code}");
        }
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let e = map("get", kube::Error::Service(Box::new(refused)));
        assert_eq!(e.kind(), ErrorKind::Backend);
        assert!(e.is_retryable());
        let e = map("decode", kube::Error::SerdeError(serde_json::from_str::<u8>("x").unwrap_err()));
        assert!(!e.is_retryable());
    }
}
