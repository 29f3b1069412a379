use std::sync::Arc;

use super::{CommandCheck, CommandVerifier, LogScanCheck, LogScanVerifier, TcpVerifier, Verifier};
use crate::{Registry, Spec};

/// Registers the built-in verifier kinds, so plan files can declare them:
/// `tcp` (`{addr}`), `command` ([`CommandCheck`]), `log-scan` ([`LogScanCheck`]),
/// and with the `http` feature `http` ([`super::HttpCheck`]) and `prometheus`
/// (`{url, query, below?, above?, headers_from_env?}`).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use rollback_core::verify::register_builtin_verifiers;
/// use rollback_core::{Registry, Spec};
/// let mut registry = Registry::new();
/// register_builtin_verifiers(&mut registry);
/// let spec = Spec::new("tcp", "db-port", serde_json::json!({"addr": "127.0.0.1:5432"}));
/// assert!(registry.verifier("db-port", &[spec]).await.is_ok());
/// let bad = Spec::new("command", "x", serde_json::json!({"argv": []}));
/// assert!(registry.verifier("x", &[bad]).await.is_err());
/// # });
/// ```
pub fn register_builtin_verifiers(registry: &mut Registry) {
    registry.register_verifier_kind("tcp", |spec: Spec| async move {
        let config: super::tcp::TcpConfig = spec.config_as()?;
        Ok(Arc::new(TcpVerifier::new(&spec.name, &config.addr)) as Arc<dyn Verifier>)
    });
    registry.register_verifier_kind("command", |spec: Spec| async move {
        let check: CommandCheck = spec.config_as()?;
        Ok(Arc::new(CommandVerifier::new(&spec.name, check)?) as Arc<dyn Verifier>)
    });
    registry.register_verifier_kind("log-scan", |spec: Spec| async move {
        let check: LogScanCheck = spec.config_as()?;
        Ok(Arc::new(LogScanVerifier::new(&spec.name, check)?) as Arc<dyn Verifier>)
    });
    #[cfg(feature = "http")]
    {
        registry.register_verifier_kind("http", |spec: Spec| async move {
            let mut check: super::HttpCheck = spec.config_as()?;
            check.url = url_of(&spec, &check.url)?;
            Ok(Arc::new(super::HttpVerifier::new(&spec.name, check)?) as Arc<dyn Verifier>)
        });
        registry.register_verifier_kind("prometheus", |spec: Spec| async move {
            #[derive(serde::Deserialize)]
            struct Config {
                #[serde(default)]
                url: String,
                query: String,
                #[serde(flatten)]
                threshold: super::Threshold,
                #[serde(default)]
                headers_from_env: std::collections::BTreeMap<String, String>,
            }
            let config: Config = spec.config_as()?;
            let client = super::PrometheusClient::new(&url_of(&spec, &config.url)?, &config.headers_from_env)?;
            let verifier = super::PrometheusVerifier::new(&spec.name, client, &config.query, config.threshold)?;
            Ok(Arc::new(verifier) as Arc<dyn Verifier>)
        });
    }
}

/// The URL of an HTTP-based verifier: config `url`, or the secret `url` (for a URL
/// with credentials, which config must not hold).
#[cfg(feature = "http")]
fn url_of(spec: &Spec, config_url: &str) -> crate::Result<String> {
    match (config_url.is_empty(), spec.secrets.contains_key("url")) {
        (false, false) => Ok(config_url.to_owned()),
        (true, true) => Ok(spec.secret("url")?.expose().to_owned()),
        (false, true) => Err(crate::Error::invalid_input("give the URL as config `url` or as `secrets.url`, not both")
            .with_context("spec", &spec.name)),
        (true, false) => {
            Err(crate::Error::invalid_input("needs a `url` (config) or `secrets.url`").with_context("spec", &spec.name))
        }
    }
}
