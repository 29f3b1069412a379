use super::tcp::TcpConfig;
use super::{CommandCheck, CommandVerifier, LogScanCheck, LogScanVerifier, TcpVerifier};
use crate::kind::Kind;
use crate::{Registry, Result, Spec};

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
    registry.verifier_kind::<TcpVerifier>().verifier_kind::<CommandVerifier>().verifier_kind::<LogScanVerifier>();
    #[cfg(feature = "http")]
    registry.verifier_kind::<super::HttpVerifier>().verifier_kind::<super::PrometheusVerifier>();
}

impl Kind for TcpVerifier {
    const KIND: &'static str = "tcp";
    type Config = TcpConfig;
    async fn build(spec: Spec, config: TcpConfig) -> Result<Self> {
        Ok(TcpVerifier::new(&spec.name, &config.addr))
    }
}

impl Kind for CommandVerifier {
    const KIND: &'static str = "command";
    type Config = CommandCheck;
    async fn build(spec: Spec, config: CommandCheck) -> Result<Self> {
        CommandVerifier::new(&spec.name, config)
    }
}

impl Kind for LogScanVerifier {
    const KIND: &'static str = "log-scan";
    type Config = LogScanCheck;
    async fn build(spec: Spec, config: LogScanCheck) -> Result<Self> {
        LogScanVerifier::new(&spec.name, config)
    }
}

#[cfg(feature = "http")]
impl Kind for super::HttpVerifier {
    const KIND: &'static str = "http";
    type Config = super::HttpCheck;
    async fn build(spec: Spec, mut config: super::HttpCheck) -> Result<Self> {
        config.url = spec.url(&config.url)?.expose().to_owned();
        super::HttpVerifier::new(&spec.name, config)
    }
}

#[cfg(feature = "http")]
impl Kind for super::PrometheusVerifier {
    const KIND: &'static str = "prometheus";
    type Config = super::PrometheusConfig;
    async fn build(spec: Spec, config: super::PrometheusConfig) -> Result<Self> {
        let client = super::PrometheusClient::new(spec.url(&config.url)?.expose(), &config.headers_from_env)?;
        super::PrometheusVerifier::new(&spec.name, client, &config.query, config.threshold)
    }
}
