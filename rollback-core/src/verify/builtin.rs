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
    /// A `ca_file` must be a readable PEM bundle with a certificate, before any run.
    fn check(config: &super::HttpCheck) -> std::result::Result<(), String> {
        match &config.ca_file {
            Some(path) => super::http::ca_bundle("ca_file", path).map(drop),
            None => Ok(()),
        }
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

#[cfg(all(test, feature = "http"))]
mod tests {
    use crate::load::{Format, PlanLoader};
    use crate::{Registry, verify::register_builtin_verifiers};

    fn plan(ca_file: &str) -> String {
        format!(
            "name = \"p\"\n[[verifiers]]\nkind = \"http\"\nname = \"health\"\n\
             config = {{ url = \"https://127.0.0.1:1/health\", ca_file = \"{ca_file}\" }}\n\
             [[stages]]\nname = \"s\"\nsteps = [{{ id = \"v\", op = \"verify\", verifier = \"health\" }}]\n"
        )
    }

    /// A CA file that is missing or holds no certificate is refused when the plan
    /// loads, at its line and column, before any request.
    #[test]
    fn a_bad_ca_file_is_refused_at_load_with_where_it_is() {
        let mut registry = Registry::new();
        register_builtin_verifiers(&mut registry);
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing-ca.pem");
        let err = PlanLoader::new().registry(&registry).check_str(
            &plan(missing.to_str().unwrap()),
            Format::Toml,
            "plan.toml",
        );
        let err = err.unwrap_err().into_error().to_string();
        assert!(err.contains("ca_file") && err.contains("cannot be read") && err.contains("plan.toml:5:"), "{err}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err =
            PlanLoader::new().registry(&registry).check_str(&plan(empty.to_str().unwrap()), Format::Toml, "plan.toml");
        assert!(err.unwrap_err().into_error().to_string().contains("holds no PEM certificate"));
    }
}
