use async_trait::async_trait;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Check, Outcome, Verifier};
use crate::{Error, Result};

/// A JSON field to match: `{ pointer = "/status", equals = "ok" }`.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
pub struct JsonMatch {
    /// A JSON pointer (RFC 6901).
    pub pointer: String,
    /// The expected value.
    pub equals: serde_json::Value,
}

fn default_method() -> String {
    "GET".into()
}

/// What an [`HttpVerifier`] requests and accepts.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpCheck {
    /// Method (GET).
    #[serde(default = "default_method")]
    pub method: String,
    /// URL; credentials in it are redacted from every detail and error. In a plan file
    /// a URL with a password goes under `secrets.url` instead (config is journaled).
    #[serde(default)]
    pub url: String,
    /// Accepted statuses (any 2xx when empty).
    #[serde(default)]
    pub statuses: Vec<u16>,
    /// A substring the body must contain.
    #[serde(default)]
    pub body_contains: Option<String>,
    /// A JSON field the body must have.
    #[serde(default)]
    pub json: Option<JsonMatch>,
    /// Slower responses fail.
    #[serde(default, with = "humantime_serde::option")]
    #[schemars(with = "Option<String>")]
    pub max_latency: Option<Duration>,
    /// Headers whose values come from environment variables (`Authorization` →
    /// `HEALTH_TOKEN`); the values are never logged or reported.
    #[serde(default)]
    pub headers_from_env: BTreeMap<String, String>,
    /// A PEM file of CA certificates to trust **instead of** the system's roots (like
    /// curl's `--cacert`): an internal CA's endpoint is verified against exactly this
    /// bundle. Read when the verifier is built; a missing file or one without a PEM
    /// certificate is refused then.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub ca_file: Option<PathBuf>,
}

impl HttpCheck {
    /// A GET of `url` accepting any 2xx.
    pub fn get(url: &str) -> Self {
        HttpCheck {
            method: default_method(),
            url: url.to_owned(),
            statuses: Vec::new(),
            body_contains: None,
            json: None,
            max_latency: None,
            headers_from_env: BTreeMap::new(),
            ca_file: None,
        }
    }
}

/// An HTTP health check — the runbooks' `curl -f /health` — over one reused
/// connection pool, TLS verified against the system's roots (or only against
/// [`HttpCheck::ca_file`]). A certificate that does not verify fails the check with
/// a detail that says so.
///
/// ```
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// use rollback_core::testkit::TestHttpServer;
/// use rollback_core::verify::{HttpCheck, HttpVerifier, JsonMatch};
/// use rollback_core::{Outcome, Verifier};
/// let server = TestHttpServer::start().await;
/// server.respond(200, r#"{"status":"ok"}"#);
/// let mut check = HttpCheck::get(&server.url("/health"));
/// check.json = Some(JsonMatch { pointer: "/status".into(), equals: "ok".into() });
/// let v = HttpVerifier::new("health", check).unwrap();
/// assert_eq!(v.check().await.unwrap().outcome, Outcome::Pass);
/// server.respond(503, "down");
/// assert_eq!(v.check().await.unwrap().outcome, Outcome::Fail);
/// # });
/// ```
pub struct HttpVerifier {
    name: String,
    check: HttpCheck,
    method: reqwest::Method,
    url: reqwest::Url,
    shown: String,
    headers: reqwest::header::HeaderMap,
    client: reqwest::Client,
}

impl std::fmt::Debug for HttpVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpVerifier")
            .field("name", &self.name)
            .field("method", &self.method)
            .field("url", &self.shown)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A URL as it may be shown: user and password replaced.
pub(crate) fn redact_url(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    if !shown.username().is_empty() {
        let _ = shown.set_username("***");
    }
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    shown.to_string()
}

/// Parses a URL, never echoing it (it may hold credentials) in the error.
pub(crate) fn parse_url(name: &str, url: &str) -> Result<reqwest::Url> {
    reqwest::Url::parse(url).map_err(|e| Error::invalid_input(format!("{name:?}: bad URL ({e})")))
}

/// Builds headers from environment variables, marked sensitive.
pub(crate) fn env_headers(name: &str, from_env: &BTreeMap<String, String>) -> Result<reqwest::header::HeaderMap> {
    let mut headers = reqwest::header::HeaderMap::new();
    for (header, var) in from_env {
        let value = std::env::var(var).map_err(|_| {
            Error::invalid_input(format!("{name:?}: environment variable {var} (for header {header}) is not set"))
        })?;
        let header = reqwest::header::HeaderName::from_bytes(header.as_bytes())
            .map_err(|_| Error::invalid_input(format!("{name:?}: bad header name {header:?}")))?;
        let mut value = reqwest::header::HeaderValue::from_str(&value)
            .map_err(|_| Error::invalid_input(format!("{name:?}: the value of {var} is not a valid header value")))?;
        value.set_sensitive(true);
        headers.insert(header, value);
    }
    Ok(headers)
}

/// One client per verifier: connections are reused from check to check.
pub(crate) fn client() -> Result<reqwest::Client> {
    client_builder()
        .build()
        .map_err(|e| Error::new(crate::ErrorKind::Backend, "cannot build an HTTP client").with_source(e))
}

fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().pool_idle_timeout(Duration::from_secs(90))
}

/// A client that trusts exactly the CA certificates of the PEM file at `path`
/// (`field` names the setting in errors), not the system's roots.
pub(crate) fn client_trusting(name: &str, field: &str, path: &Path) -> Result<reqwest::Client> {
    let certs = ca_bundle(field, path).map_err(|e| Error::invalid_input(format!("{name:?}: {e}")))?;
    client_builder().tls_certs_only(certs).build().map_err(|e| {
        Error::invalid_input(format!(
            "{name:?}: `{field}` {} is not a usable CA bundle: {}",
            path.display(),
            describe(e)
        ))
    })
}

/// The certificates of the PEM bundle at `path`; why not, naming `field` and the
/// path — checked offline when a plan loads ([`Kind::check`](crate::kind::Kind::check)) and again when the client is built.
pub(crate) fn ca_bundle(field: &str, path: &Path) -> std::result::Result<Vec<reqwest::Certificate>, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("`{field}` {shown} cannot be read: {e}"))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("`{field}` {shown} is not a PEM bundle: {}", describe(e)))?;
    if certs.is_empty() {
        return Err(format!("`{field}` {shown} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
    }
    Ok(certs)
}

/// A reqwest error and every cause under it (`error sending request: client error
/// (Connect): invalid peer certificate: UnknownIssuer`): reqwest's own text hides
/// the cause in `source()`. Without the URL, which may hold credentials.
pub(crate) fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = String::new();
    for inner in causes(&e) {
        let more = inner.to_string();
        // Wrappers often repeat their cause's text: say each thing once.
        if text.is_empty() {
            text = more;
        } else if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
    }
    text
}

/// `e` and its causes, outermost first, including the error inside an `io::Error`
/// (whose `source()` skips it: rustls's errors travel that way).
fn causes<'a>(e: &'a (dyn std::error::Error + 'static)) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut all = vec![e];
    let mut next = e.source();
    while let Some(inner) = next {
        all.push(inner);
        next = match inner.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(wrapped) => Some(wrapped as &(dyn std::error::Error + 'static)),
            None => inner.source(),
        };
    }
    all
}

/// Whether rustls refused the server's certificate somewhere in `e`'s causes
/// (`UnknownIssuer`, `NotValidForName`, `Expired`, …), by type rather than by text.
fn is_certificate_error(e: &reqwest::Error) -> bool {
    causes(e).iter().any(|inner| {
        matches!(
            inner.downcast_ref::<rustls::Error>(),
            Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented)
        )
    })
}

impl HttpVerifier {
    /// Validates the check and resolves its headers from the environment.
    pub fn new(name: &str, check: HttpCheck) -> Result<Self> {
        let url = parse_url(name, &check.url)?;
        let method = reqwest::Method::from_bytes(check.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| Error::invalid_input(format!("{name:?}: bad HTTP method {:?}", check.method)))?;
        if let Some(json) = &check.json
            && !json.pointer.is_empty()
            && !json.pointer.starts_with('/')
        {
            return Err(Error::invalid_input(format!("{name:?}: JSON pointer {:?} must start with '/'", json.pointer)));
        }
        let headers = env_headers(name, &check.headers_from_env)?;
        let client = match &check.ca_file {
            Some(path) => client_trusting(name, "ca_file", path)?,
            None => client()?,
        };
        Ok(HttpVerifier { name: name.to_owned(), shown: redact_url(&url), method, url, headers, check, client })
    }

    /// The check when no response came: a certificate that does not verify and a
    /// refused connection fail, a timeout or anything else is inconclusive; the
    /// detail names the cause.
    fn unanswered(&self, e: reqwest::Error) -> Check {
        let (connect, timeout, certificate) = (e.is_connect(), e.is_timeout(), is_certificate_error(&e));
        let cause = describe(e);
        let trust = if self.check.ca_file.is_some() { "the CA file" } else { "the system's roots" };
        if certificate {
            let detail = format!("TLS certificate of {} does not verify against {trust}: {cause}", self.shown);
            Check::new(Outcome::Fail, detail)
        } else if connect {
            Check::new(Outcome::Fail, format!("cannot connect to {}: {cause}", self.shown))
        } else if timeout {
            Check::new(Outcome::Inconclusive, format!("{} timed out", self.shown))
        } else {
            Check::new(Outcome::Inconclusive, format!("request to {} failed: {cause}", self.shown))
        }
    }

    fn verdict(&self, status: u16, latency: Duration, body: Option<&str>) -> (Outcome, String) {
        let accepted = if self.check.statuses.is_empty() {
            (200..300).contains(&status)
        } else {
            self.check.statuses.contains(&status)
        };
        let ms = latency.as_secs_f64() * 1000.0;
        if !accepted {
            return (Outcome::Fail, format!("HTTP {status} from {} in {ms:.0} ms", self.shown));
        }
        if let Some(max) = self.check.max_latency
            && latency > max
        {
            return (Outcome::Fail, format!("HTTP {status} but {ms:.0} ms > {max:?}"));
        }
        if let (Some(needle), Some(body)) = (&self.check.body_contains, body)
            && !body.contains(needle.as_str())
        {
            return (Outcome::Fail, format!("HTTP {status}, body lacks {needle:?}"));
        }
        if let (Some(json), Some(body)) = (&self.check.json, body) {
            let found =
                serde_json::from_str::<serde_json::Value>(body).ok().and_then(|v| v.pointer(&json.pointer).cloned());
            if found.as_ref() != Some(&json.equals) {
                return (Outcome::Fail, format!("HTTP {status}, {} is {found:?}, want {}", json.pointer, json.equals));
            }
        }
        (Outcome::Pass, format!("HTTP {status} in {ms:.0} ms"))
    }
}

#[async_trait]
impl Verifier for HttpVerifier {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self) -> Result<Check> {
        let started = Instant::now();
        let request = self.client.request(self.method.clone(), self.url.clone()).headers(self.headers.clone());
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => return Ok(self.unanswered(e)),
        };
        let status = response.status().as_u16();
        // Always read the body to its end: a response dropped half-read takes its
        // connection with it, and the next check would open a new one.
        let bytes = response.bytes().await.unwrap_or_default();
        let wants_body = self.check.body_contains.is_some() || self.check.json.is_some();
        let body = wants_body.then(|| String::from_utf8_lossy(&bytes).into_owned());
        let latency = started.elapsed();
        let (outcome, detail) = self.verdict(status, latency, body.as_deref());
        Ok(Check::new(outcome, detail)
            .measure("status", status as f64)
            .measure("latency_ms", latency.as_secs_f64() * 1000.0))
    }
}
