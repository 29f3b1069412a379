use async_trait::async_trait;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{CliMigrations, MigrationTool, run};
use rollback_core::{Error, ErrorKind, Result, Secret};

fn default_command() -> Vec<String> {
    vec!["alembic".into()]
}

pub(crate) fn default_timeout() -> Duration {
    Duration::from_secs(600)
}

/// Configuration of an [`Alembic`] target.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlembicConfig {
    /// How to run Alembic (argv prefix, never a shell): `["alembic"]`,
    /// `[".venv/bin/alembic"]`, `["python", "-m", "alembic"]`.
    #[serde(default = "default_command")]
    pub command: Vec<String>,
    /// The project's `alembic.ini` (passed as `-c`; Alembic runs in its directory).
    pub config: PathBuf,
    /// Timeout of each Alembic call.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
    /// The environment variable the project's `env.py` reads the database URL from
    /// (`DATABASE_URL`). Its value is the spec's secret `url`, set only in Alembic's
    /// environment: never on its command line, in the journal or in errors.
    #[serde(default)]
    pub url_env: Option<String>,
    /// `-x` arguments for the project's `env.py` (`["tenant=acme"]`); not for secrets
    /// (they are on the command line).
    #[serde(default)]
    pub x: Vec<String>,
}

/// The real `alembic` CLI: `current`, `history`, `downgrade REV`, and the SQL
/// preview (`downgrade CUR:TARGET --sql`) shown by dry-run.
#[derive(Debug)]
pub struct AlembicCli {
    config: AlembicConfig,
    dir: PathBuf,
    /// The database URL, for the variable `config.url_env`.
    url: Option<Secret>,
}

/// Schema revisions managed by Alembic.
pub type Alembic = CliMigrations<AlembicCli>;

impl CliMigrations<AlembicCli> {
    /// Checks the configuration (a project whose `env.py` finds its own URL).
    pub fn new(name: &str, config: AlembicConfig) -> Result<Self> {
        Self::with_url(name, config, None)
    }

    /// Checks the configuration; `url` (the spec's secret) goes to Alembic in the
    /// variable named by `url_env`, and each needs the other.
    pub fn with_url(name: &str, config: AlembicConfig, url: Option<Secret>) -> Result<Self> {
        if config.command.first().is_none_or(|p| p.is_empty()) {
            return Err(Error::invalid_input(format!("alembic {name:?}: empty command")));
        }
        match (&config.url_env, &url) {
            (Some(var), _) if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                return Err(Error::invalid_input(format!("alembic {name:?}: url_env {var:?} is not a variable name")));
            }
            (Some(var), None) => {
                return Err(Error::invalid_input(format!(
                    "alembic {name:?}: url_env = {var:?} needs the secret `url` (secrets = {{ url = {{ from = \"env\", \
                     var = \"…\" }} }})"
                )));
            }
            (None, Some(_)) => {
                return Err(Error::invalid_input(format!(
                    "alembic {name:?}: a secret `url` needs url_env, the variable your env.py reads it from \
                     (url_env = \"DATABASE_URL\")"
                )));
            }
            _ => {}
        }
        let ini = std::fs::canonicalize(&config.config)
            .map_err(|e| Error::invalid_input(format!("alembic {name:?}: {}: {e}", config.config.display())))?;
        let dir = ini.parent().map(PathBuf::from).unwrap_or_default();
        Ok(CliMigrations::with_tool(name, AlembicCli { config: AlembicConfig { config: ini, ..config }, dir, url }))
    }
}

impl rollback_core::kind::Kind for Alembic {
    const KIND: &'static str = "alembic";
    type Config = AlembicConfig;
    async fn build(spec: rollback_core::Spec, config: AlembicConfig) -> Result<Self> {
        let url = if spec.secrets.contains_key("url") { Some(spec.secret("url")?) } else { None };
        Self::with_url(&spec.name, config, url)
    }
}

impl AlembicCli {
    async fn alembic(&self, args: &[&str]) -> Result<String> {
        let ini = self.config.config.display().to_string();
        let mut all = vec!["-c", ini.as_str()];
        for x in &self.config.x {
            all.extend(["-x", x.as_str()]);
        }
        all.extend_from_slice(args);
        let env: Vec<(&str, &str)> = match (&self.config.url_env, &self.url) {
            (Some(var), Some(url)) => vec![(var.as_str(), url.expose())],
            _ => Vec::new(),
        };
        run(&self.config.command, &all, &self.dir, &env, self.config.timeout).await
    }
}

#[async_trait]
impl MigrationTool for AlembicCli {
    fn kind(&self) -> &'static str {
        "alembic"
    }

    fn identity(&self) -> String {
        format!("alembic:{}", self.config.config.display())
    }

    async fn chain(&self) -> Result<Vec<(String, String)>> {
        let text = self.alembic(&["history"]).await?;
        let mut chain = Vec::new();
        for line in text.lines().filter(|l| l.contains(" -> ")) {
            if line.contains("(branchpoint)") || line.contains("(mergepoint)") || line.contains("(effective head)") {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!("branched Alembic histories are not supported yet: {line}"),
                ));
            }
            let (_, rest) = line.split_once(" -> ").unwrap_or_default();
            let (rev, message) = rest.split_once(", ").unwrap_or((rest, ""));
            chain.push((rev.split_whitespace().next().unwrap_or_default().to_owned(), message.to_owned()));
        }
        chain.push(("base".into(), "before the first revision".into()));
        Ok(chain)
    }

    async fn live(&self) -> Result<String> {
        Ok(self.alembic(&["current"]).await?.split_whitespace().next().unwrap_or("base").to_owned())
    }

    async fn preview(&self, _chain: &[(String, String)], from: &str, to: &str) -> Result<String> {
        self.alembic(&["downgrade", &format!("{from}:{to}"), "--sql"]).await
    }

    async fn downgrade(&self, to: &str) -> Result<()> {
        self.alembic(&["downgrade", to]).await.map(drop)
    }
}
