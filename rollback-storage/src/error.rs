//! The one place Redis and S3 (aws-sdk) errors become `rollback_core::Error`s.
//!
//! Throttling (`SlowDown`, HTTP 503, `RequestTimeout`, 500) and connection errors are
//! retryable; missing buckets/keys are `NotFound`; `AccessDenied` is
//! `PermissionDenied`; a failed copy precondition (412) is a `Conflict`. Messages
//! never hold URLs with credentials, access keys or request signatures.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use rollback_core::{Error, ErrorKind};

/// Maps a redis error, naming the operation. Connection URLs never appear.
pub(crate) fn redis(operation: &'static str, err: redis::RedisError) -> Error {
    use redis::ErrorKind as K;
    let (kind, retryable) = if err.is_timeout() {
        (ErrorKind::Timeout, true)
    } else if err.is_io_error() || err.is_connection_refusal() || err.is_connection_dropped() {
        (ErrorKind::Backend, true)
    } else {
        match err.kind() {
            K::AuthenticationFailed => (ErrorKind::PermissionDenied, false),
            K::InvalidClientConfig => (ErrorKind::InvalidInput, false),
            K::Server(redis::ServerErrorKind::BusyLoading | redis::ServerErrorKind::TryAgain) => {
                (ErrorKind::Backend, true)
            }
            K::Server(redis::ServerErrorKind::NoPerm) => (ErrorKind::PermissionDenied, false),
            _ => (ErrorKind::Backend, false),
        }
    };
    let message = match err.kind() {
        // The client's config errors may quote the URL (with its password): never show them.
        K::InvalidClientConfig => "bad Redis configuration (URL not shown)".to_owned(),
        _ => format!("redis error: {}", truncate(&err.to_string())),
    };
    Error::new(kind, message).with_operation(operation).set_retryable(retryable)
}

/// How an S3 error code and HTTP status classify: the kind and whether retrying may help.
pub(crate) fn classify_s3(code: Option<&str>, status: Option<u16>) -> (ErrorKind, bool) {
    match (code, status) {
        (Some("SlowDown" | "Throttling" | "ThrottlingException" | "RequestTimeout" | "InternalError"), _)
        | (Some("ServiceUnavailable" | "RequestTimeTooSkewed"), _) => (ErrorKind::Backend, true),
        (Some("NoSuchBucket" | "NoSuchKey" | "NoSuchVersion" | "NotFound"), _) | (_, Some(404)) => {
            (ErrorKind::NotFound, false)
        }
        (Some("AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "Forbidden"), _) | (_, Some(403)) => {
            (ErrorKind::PermissionDenied, false)
        }
        (Some("PreconditionFailed"), _) | (_, Some(412)) => (ErrorKind::Conflict, false),
        (Some("InvalidArgument" | "InvalidRequest" | "InvalidBucketName"), _) | (_, Some(400)) => {
            (ErrorKind::InvalidInput, false)
        }
        (_, Some(429 | 500 | 502 | 503 | 504)) => (ErrorKind::Backend, true),
        _ => (ErrorKind::Backend, false),
    }
}

/// Maps an aws-sdk error, naming the operation.
pub(crate) fn s3<E, R>(operation: &'static str, err: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + HasStatus,
{
    match &err {
        SdkError::TimeoutError(_) => {
            Error::new(ErrorKind::Timeout, "S3 request timed out").with_operation(operation).set_retryable(true)
        }
        SdkError::DispatchFailure(d) => {
            let kind = if d.is_timeout() { ErrorKind::Timeout } else { ErrorKind::Backend };
            let what = if d.is_timeout() {
                "timed out"
            } else if d.is_io() {
                "connection failed"
            } else {
                "could not be sent"
            };
            Error::new(kind, format!("S3 request {what} (server unreachable or stopped?)"))
                .with_operation(operation)
                .set_retryable(true)
        }
        SdkError::ResponseError(r) => {
            Error::new(ErrorKind::Backend, format!("S3 response could not be read (HTTP {})", r.raw().status_code()))
                .with_operation(operation)
                .set_retryable(true)
        }
        SdkError::ServiceError(se) => {
            let status = se.raw().status_code();
            let code = se.err().code();
            let (kind, retryable) = classify_s3(code, Some(status));
            let message = format!(
                "S3 {} (HTTP {status}){}",
                code.unwrap_or("error"),
                se.err().message().map(|m| format!(": {}", truncate(m))).unwrap_or_default()
            );
            Error::new(kind, message).with_operation(operation).set_retryable(retryable)
        }
        SdkError::ConstructionFailure(_) => {
            Error::new(ErrorKind::InvalidInput, "S3 request could not be built (bad bucket, key or configuration)")
                .with_operation(operation)
                .set_retryable(false)
        }
        _ => Error::new(ErrorKind::Backend, "S3 request failed").with_operation(operation).set_retryable(false),
    }
}

/// The HTTP status of a raw response (implemented for the SDK's response type).
pub(crate) trait HasStatus {
    /// The status code.
    fn status_code(&self) -> u16;
}

impl HasStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::config::http::HttpResponse;
    use aws_sdk_s3::error::ErrorMetadata;
    use aws_sdk_s3::operation::head_object::HeadObjectError;
    use aws_smithy_types::body::SdkBody;

    fn service(code: &str, status: u16) -> Error {
        let meta = ErrorMetadata::builder().code(code).message("m").build();
        let raw = HttpResponse::new(status.try_into().unwrap(), SdkBody::empty());
        s3("head", SdkError::service_error(HeadObjectError::generic(meta), raw))
    }

    #[test]
    fn s3_throttling_is_retryable() {
        for (code, status) in [("SlowDown", 503), ("ServiceUnavailable", 503), ("InternalError", 500), ("X", 503)] {
            let e = service(code, status);
            assert_eq!(e.kind(), ErrorKind::Backend, "{code}");
            assert!(e.is_retryable(), "{code} must be retryable");
        }
    }

    #[test]
    fn s3_permanent_kinds() {
        let e = service("NoSuchBucket", 404);
        assert_eq!((e.kind(), e.is_retryable()), (ErrorKind::NotFound, false));
        assert!(e.to_string().contains("NoSuchBucket") && e.to_string().contains("operation: head"));
        assert_eq!(service("AccessDenied", 403).kind(), ErrorKind::PermissionDenied);
        assert_eq!(service("PreconditionFailed", 412).kind(), ErrorKind::Conflict);
        assert_eq!(service("InvalidArgument", 400).kind(), ErrorKind::InvalidInput);
        assert!(!service("InvalidArgument", 400).is_retryable());
    }

    #[test]
    fn s3_transport_errors() {
        let e = s3::<HeadObjectError, HttpResponse>("copy", SdkError::timeout_error("slow"));
        assert_eq!((e.kind(), e.is_retryable()), (ErrorKind::Timeout, true));
        let conn = aws_sdk_s3::error::ConnectorError::io("refused".into());
        let e = s3::<HeadObjectError, HttpResponse>("copy", SdkError::dispatch_failure(conn));
        assert_eq!((e.kind(), e.is_retryable()), (ErrorKind::Backend, true));
        assert!(e.to_string().contains("connection failed"), "{e}");
        let conn = aws_sdk_s3::error::ConnectorError::timeout("slow".into());
        let e = s3::<HeadObjectError, HttpResponse>("copy", SdkError::dispatch_failure(conn));
        assert_eq!(e.kind(), ErrorKind::Timeout);
        let e = s3::<HeadObjectError, HttpResponse>("copy", SdkError::construction_failure("bad"));
        assert_eq!((e.kind(), e.is_retryable()), (ErrorKind::InvalidInput, false));
    }

    #[test]
    fn redis_kinds() {
        let io = redis::RedisError::from(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused"));
        let e = redis("ping", io);
        assert_eq!(e.kind(), ErrorKind::Backend);
        assert!(e.is_retryable());
        let cfg = redis::RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "bad url",
            "redis://:hunter2@host".to_owned(),
        ));
        let e = redis("connect", cfg);
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let auth = redis::RedisError::from((redis::ErrorKind::AuthenticationFailed, "denied"));
        assert_eq!(redis("auth", auth).kind(), ErrorKind::PermissionDenied);
    }
}
