//! The embedded default's targets: no server needed.
//!
//! - [`ReleaseDir`]: Capistrano-style `releases/<name>` with a `current` symlink
//!   switched atomically, then an optional restart command;
//! - [`ConfigFile`]: a config file restored from timestamped backups
//!   (`.env.production.2025-10-16-180000`), validated by a command before it is put in
//!   place (`nginx -t`), replaced atomically, then reloaded; the replaced file is kept
//!   as evidence;
//! - [`GitRelease`]: a deploy checkout moved to an older tag or commit, or chosen
//!   commits reverted (a partial rollback), then built and deployed;
//! - [`HttpFlag`] (feature `http`): a feature flag behind an HTTP API, turned off
//!   with a PATCH and restored to its previous value.
//!
//! - [`FilesEvidence`]: files copied into the artifact store before a rollback, with
//!   secret-looking `.env` values redacted;
//! - [`PrometheusEvidence`] (feature `http`): named Prometheus queries, instant and
//!   over the incident window, kept as one JSON artifact.
//!
//! Register them for plan files with [`register_local_kinds`].

mod config_file;
mod evidence;
mod git_release;
#[cfg(feature = "http")]
mod http_flag;
mod marker;
#[cfg(feature = "http")]
mod metrics_evidence;
mod release_dir;

use std::path::Path;
use std::time::Duration;

pub use config_file::{ConfigFile, ConfigFileConfig};
pub(crate) use evidence::has_url_password;
pub use evidence::{FilesEvidence, FilesEvidenceConfig, redact_args, redact_args_json, redact_env};
pub use git_release::{GitHistory, GitRelease, GitReleaseConfig};
#[cfg(feature = "http")]
pub use http_flag::{HttpFlag, HttpFlagConfig};
#[cfg(feature = "http")]
pub use metrics_evidence::{PrometheusEvidence, PrometheusEvidenceConfig, RangeWindow};
pub use release_dir::{ReleaseDir, ReleaseDirConfig};

use crate::{Error, Registry, Result};

/// Registers the targets `release-dir`, `git-release`, `config-file` and (feature `http`)
/// `http-flag`, and the snapshots `files` and (feature `http`) `prometheus`.
pub fn register_local_kinds(registry: &mut Registry) {
    registry.snapshot_kind::<FilesEvidence>();
    registry.target_kind::<ReleaseDir>().target_kind::<GitRelease>().target_kind::<ConfigFile>();
    #[cfg(feature = "http")]
    registry.target_kind::<HttpFlag>().snapshot_kind::<PrometheusEvidence>();
}

crate::impl_kind!(FilesEvidence, "files", FilesEvidenceConfig, new);
crate::impl_kind!(ReleaseDir, "release-dir", ReleaseDirConfig, new);
crate::impl_kind!(GitRelease, "git-release", GitReleaseConfig, new);
crate::impl_kind!(ConfigFile, "config-file", ConfigFileConfig, new);
#[cfg(feature = "http")]
crate::impl_kind!(HttpFlag, "http-flag", HttpFlagConfig, new);

#[cfg(feature = "http")]
impl crate::kind::Kind for PrometheusEvidence {
    const KIND: &'static str = "prometheus";
    type Config = PrometheusEvidenceConfig;
    async fn build(spec: crate::Spec, config: PrometheusEvidenceConfig) -> Result<Self> {
        let client = crate::verify::PrometheusClient::new(spec.url(&config.url)?.expose(), &config.headers_from_env)?;
        PrometheusEvidence::new(&spec.name, client, config)
    }
    fn check(config: &PrometheusEvidenceConfig) -> std::result::Result<(), String> {
        config.check()
    }
}

/// Runs a target's command (`restart`, `validate`, `reload`, `build`) to completion.
pub(crate) async fn run_command(what: &str, argv: &[String], dir: Option<&Path>, timeout: Duration) -> Result<()> {
    let program = argv.first().map(String::as_str).unwrap_or_default();
    let what = format!("{what} command {program:?}");
    crate::process::run(crate::process::Invocation { what: &what, argv, dir, env: &[], timeout }).await.map(drop)
}

/// `dev:inode` of a path, for identities.
pub(crate) fn file_identity(path: &Path) -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|e| Error::from(e).with_context("path", path.display()))?;
    Ok(format!("{}@{}:{}", path.display(), meta.dev(), meta.ino()))
}

fn default_timeout() -> Duration {
    Duration::from_secs(120)
}
