//! Building an S3 client for any S3-compatible store (AWS, MinIO, moto).

use aws_sdk_s3::config::{BehaviorVersion, Region};
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use rollback_core::{Error, Result, Spec};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Connection settings for an S3-compatible store. Credentials come from the spec's
/// secrets `access_key_id` and `secret_access_key` (and optional `session_token`) as
/// references, else from the default AWS chain (environment, profile, IMDS); they are
/// never printed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct S3ClientConfig {
    /// Endpoint URL for S3-compatible stores (`http://127.0.0.1:9000`); AWS when absent.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Region (default `us-east-1` when an endpoint is given, else the AWS chain's).
    #[serde(default)]
    pub region: Option<String>,
    /// Path-style addressing (default: true when an endpoint is given).
    #[serde(default)]
    pub path_style: Option<bool>,
    /// Per-attempt timeout of one request (default 30 s).
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Option<Duration>,
    /// Attempts per request, with the SDK's backoff on throttling (default 5).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// How restores keep from overwriting a concurrent writer: `auto` (default: the
    /// first overwrite finds out), `conditional` (the server honours `If-Match` on
    /// CopyObject, as S3 does) or `relist` (it does not: each page of keys is listed
    /// before and after it is written). See [`crate::s3::WriteGuard`].
    #[serde(default)]
    pub write_guard: Option<super::WriteGuard>,
}

/// Static credentials, resolved from secret references.
#[derive(Clone)]
pub struct S3Credentials {
    access_key_id: rollback_core::Secret,
    secret_access_key: rollback_core::Secret,
    session_token: Option<rollback_core::Secret>,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("S3Credentials(***)")
    }
}

impl S3Credentials {
    /// Credentials from values (pass them straight from a secret store).
    pub fn new(access_key_id: &str, secret_access_key: &str) -> Self {
        S3Credentials {
            access_key_id: rollback_core::Secret::new(access_key_id),
            secret_access_key: rollback_core::Secret::new(secret_access_key),
            session_token: None,
        }
    }

    /// From a spec's secrets, if it declares `access_key_id`; `None` means the default chain.
    pub fn from_spec(spec: &Spec) -> Result<Option<Self>> {
        if !spec.secrets.contains_key("access_key_id") {
            return Ok(None);
        }
        Ok(Some(S3Credentials {
            access_key_id: spec.secret("access_key_id")?,
            secret_access_key: spec.secret("secret_access_key")?,
            session_token: if spec.secrets.contains_key("session_token") {
                Some(spec.secret("session_token")?)
            } else {
                None
            },
        }))
    }
}

/// An S3 client and the endpoint it talks to (for identities and messages).
#[derive(Clone, Debug)]
pub struct S3 {
    client: aws_sdk_s3::Client,
    endpoint: String,
}

impl S3 {
    /// Builds a client. Nothing is sent yet.
    pub async fn connect(config: &S3ClientConfig, credentials: Option<S3Credentials>) -> Result<Self> {
        if let Some(endpoint) = &config.endpoint
            && endpoint.contains('@')
        {
            return Err(Error::invalid_input("the S3 endpoint must not hold credentials; use secrets"));
        }
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        let region = config.region.clone().or_else(|| config.endpoint.as_ref().map(|_| "us-east-1".to_owned()));
        if let Some(region) = region {
            loader = loader.region(Region::new(region));
        }
        if let Some(c) = credentials {
            loader = loader.credentials_provider(aws_credential_types::Credentials::new(
                c.access_key_id.expose(),
                c.secret_access_key.expose(),
                c.session_token.as_ref().map(|t| t.expose().to_owned()),
                None,
                "rollback-spec",
            ));
        }
        let shared = loader.load().await;
        let mut builder = aws_sdk_s3::config::Builder::from(&shared)
            .retry_config(RetryConfig::standard().with_max_attempts(config.max_attempts.unwrap_or(5).max(1)))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(config.timeout.unwrap_or(Duration::from_secs(30)))
                    .build(),
            );
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        builder = builder.force_path_style(config.path_style.unwrap_or(config.endpoint.is_some()));
        let endpoint = config.endpoint.clone().unwrap_or_else(|| "aws".to_owned());
        Ok(S3 { client: aws_sdk_s3::Client::from_conf(builder.build()), endpoint })
    }

    /// From a spec's `client` config and secrets.
    pub async fn from_spec(spec: &Spec, config: &S3ClientConfig) -> Result<Self> {
        Self::connect(config, S3Credentials::from_spec(spec)?).await
    }

    /// The SDK client.
    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    /// Creates `bucket` and turns versioning on (what point-in-time restores and
    /// mirror destinations need).
    pub async fn create_versioned_bucket(&self, bucket: &str) -> Result<()> {
        self.client
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| crate::error::s3("create bucket", e).with_context("bucket", bucket))?;
        self.client
            .put_bucket_versioning()
            .bucket(bucket)
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| crate::error::s3("put bucket versioning", e).with_context("bucket", bucket))?;
        Ok(())
    }

    /// Whether `bucket` has versioning enabled (a suspended or never-enabled bucket is not).
    pub async fn versioning_enabled(&self, bucket: &str) -> Result<bool> {
        match self.client.get_bucket_versioning().bucket(bucket).send().await {
            Ok(out) => Ok(out.status().map(|s| s.as_str()) == Some("Enabled")),
            Err(aws_sdk_s3::error::SdkError::ServiceError(se))
                if se.raw().status().as_u16() == 200 && se.raw().body().bytes().is_some() =>
            {
                // A 200 the SDK could not parse: moto (5.2) names the root element
                // `GetBucketVersioningResponse` instead of `VersioningConfiguration`.
                // Read the one field we need from the body.
                let body = String::from_utf8_lossy(se.raw().body().bytes().unwrap_or_default()).into_owned();
                Ok(versioning_status(&body) == Some("Enabled"))
            }
            Err(e) => Err(crate::error::s3("get bucket versioning", e).with_context("bucket", bucket)),
        }
    }

    /// The endpoint (or `aws`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

/// The `<Status>` of a GetBucketVersioning body, whatever its root element is called.
fn versioning_status(body: &str) -> Option<&str> {
    let start = body.find("<Status>")? + "<Status>".len();
    let end = body[start..].find("</Status>")?;
    Some(body[start..start + end].trim())
}

/// Percent-encodes a key for `x-amz-copy-source` (keeps `/` and unreserved characters).
pub(crate) fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Strips the quotes S3 puts around ETags.
pub(crate) fn etag(raw: Option<&str>) -> Option<String> {
    raw.map(|e| e.trim_matches('"').to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn encodes_copy_source_keys() {
        assert_eq!(super::encode_key("a b/ü?x=1"), "a%20b/%C3%BC%3Fx%3D1");
        assert_eq!(super::etag(Some("\"abc\"")).as_deref(), Some("abc"));
    }

    #[test]
    fn versioning_status_from_any_root() {
        let moto = r#"<?xml version="1.0"?><GetBucketVersioningResponse xmlns="x"><Status>Enabled</Status></GetBucketVersioningResponse>"#;
        assert_eq!(super::versioning_status(moto), Some("Enabled"));
        assert_eq!(super::versioning_status("<VersioningConfiguration/>"), None);
    }
}
