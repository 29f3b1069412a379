use async_trait::async_trait;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use crate::alembic_session::{Launch, Session};
use crate::cli::{MigrationTool, Migrations};
use rollback_core::{Error, Result, Secret};

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
    /// The project's Alembic program (`["alembic"]`, `[".venv/bin/alembic"]`,
    /// `["python", "-m", "alembic"]`): its interpreter (the script's `#!` line, or
    /// the `python` of `python -m alembic`) runs the step's one Alembic process,
    /// unless `python` is given.
    #[serde(default = "default_command")]
    pub command: Vec<String>,
    /// The interpreter with the project's Alembic installed (`.venv/bin/python`);
    /// found from `command` when absent.
    #[serde(default)]
    pub python: Option<PathBuf>,
    /// The project's `alembic.ini` (Alembic runs in its directory).
    pub config: PathBuf,
    /// Longest wait for one Alembic operation (the downgrade, the SQL preview).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
    /// The environment variable the project's `env.py` reads the database URL from
    /// (`DATABASE_URL`); its value is the spec's secret `url`. Without it, the secret
    /// is set as the ini's `sqlalchemy.url` through Alembic's API (for an `env.py`
    /// that reads the ini). Either way never on a command line, in the journal or in
    /// errors.
    #[serde(default)]
    pub url_env: Option<String>,
    /// `-x` arguments for the project's `env.py` (`["tenant=acme"]`,
    /// `context.get_x_argument()`); not for secrets (they are in the plan).
    #[serde(default)]
    pub x: Vec<String>,
}

impl AlembicConfig {
    /// The project at `config` (its `alembic.ini`) with the defaults: `alembic` found
    /// on `PATH`, a 10-minute timeout, the URL as the project gives it.
    ///
    /// ```
    /// let config = rollback_db::AlembicConfig::new("/srv/app/alembic.ini");
    /// assert_eq!(config.command, ["alembic"]);
    /// ```
    pub fn new(config: impl Into<PathBuf>) -> Self {
        AlembicConfig {
            command: default_command(),
            python: None,
            config: config.into(),
            timeout: default_timeout(),
            url_env: None,
            x: Vec::new(),
        }
    }
}

/// Alembic driven through its own API by one helper process per target (see
/// [`MigrationTool`]): `current`, the script directory's chain, the SQL preview
/// (`downgrade CUR:TARGET --sql`) shown by dry-run, and `downgrade REV`. Python and
/// SQLAlchemy start once, so a one-revision rollback costs about what
/// `alembic downgrade -1` does. Branched histories (several heads, branch or merge
/// points) are refused, naming the heads.
#[derive(Debug)]
pub struct AlembicTool {
    ini: PathBuf,
    session: Session,
}

/// Schema revisions managed by Alembic.
pub type Alembic = Migrations<AlembicTool>;

impl Migrations<AlembicTool> {
    /// Checks the configuration (a project whose `env.py` finds its own URL).
    pub fn new(name: &str, config: AlembicConfig) -> Result<Self> {
        Self::with_url(name, config, None)
    }

    /// Checks the configuration; `url` (the spec's secret) goes to Alembic in the
    /// variable named by `url_env`, or as `sqlalchemy.url` without one.
    pub fn with_url(name: &str, config: AlembicConfig, url: Option<Secret>) -> Result<Self> {
        if let Some(var) = &config.url_env {
            if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(Error::invalid_input(format!("alembic {name:?}: url_env {var:?} is not a variable name")));
            }
            if url.is_none() {
                return Err(Error::invalid_input(format!(
                    "alembic {name:?}: url_env = {var:?} needs the secret `url` (secrets = {{ url = {{ from = \"env\", \
                     var = \"…\" }} }})"
                )));
            }
        }
        let ini = std::fs::canonicalize(&config.config)
            .map_err(|e| Error::invalid_input(format!("alembic {name:?}: {}: {e}", config.config.display())))?;
        let python = match &config.python {
            Some(python) => python.clone(),
            None => interpreter(&config.command).map_err(|why| {
                Error::invalid_input(format!("alembic {name:?}: {why}; set python = \"…/bin/python\""))
            })?,
        };
        let launch =
            Launch { python, ini: ini.clone(), x: config.x, url_env: config.url_env, url, timeout: config.timeout };
        Ok(Migrations::with_tool(name, AlembicTool { ini, session: Session::new(launch) }))
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

/// The interpreter of an Alembic `command`: the `python` of `python -m alembic`,
/// else the `#!` line of the `alembic` script (pip's `#!/bin/sh` + `exec` form for
/// long paths included).
fn interpreter(command: &[String]) -> std::result::Result<PathBuf, String> {
    match command {
        [python, m, module, ..] if m == "-m" && module == "alembic" => Ok(PathBuf::from(python)),
        [program] => {
            let path = find_program(program).ok_or_else(|| format!("{program:?} is not found on PATH"))?;
            let text = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let head = String::from_utf8_lossy(&text[..text.len().min(1024)]).into_owned();
            let mut lines = head.lines();
            let first = lines.next().unwrap_or_default().strip_prefix("#!").map(str::trim);
            let words: Vec<&str> = first.map(|f| f.split_whitespace().collect()).unwrap_or_default();
            match words.as_slice() {
                ["/bin/sh", ..] => lines
                    .next()
                    .and_then(|l| l.strip_prefix("'''exec' "))
                    .and_then(|l| l.split('"').nth(1))
                    .map(PathBuf::from)
                    .ok_or_else(|| format!("{}: no interpreter in its exec line", path.display())),
                [env, python, ..] if env.ends_with("/env") => {
                    find_program(python).ok_or_else(|| format!("{python} is not found on PATH"))
                }
                [python, ..] => Ok(PathBuf::from(python)),
                [] => Err(format!("{} is not a Python script", path.display())),
            }
        }
        _ => Err(format!("cannot tell the Python interpreter of command {command:?}")),
    }
}

/// `program` as a path: itself when it has a `/`, else the first match on `PATH`.
fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(program)).find(|p| p.is_file())
}

#[async_trait]
impl MigrationTool for AlembicTool {
    fn kind(&self) -> &'static str {
        "alembic"
    }

    fn identity(&self) -> String {
        format!("alembic:{}", self.ini.display())
    }

    async fn chain(&self) -> Result<Vec<(String, String)>> {
        let answer = self.session.request(json!({ "op": "chain" })).await?;
        serde_json::from_value(answer).map_err(|e| Error::internal(format!("alembic chain: {e}")))
    }

    async fn live(&self) -> Result<String> {
        let answer = self.session.request(json!({ "op": "current" })).await?;
        Ok(answer.as_str().unwrap_or("base").to_owned())
    }

    async fn preview(&self, _chain: &[(String, String)], from: &str, to: &str) -> Result<String> {
        let answer = self.session.request(json!({ "op": "preview", "from": from, "to": to })).await?;
        Ok(answer.as_str().unwrap_or_default().to_owned())
    }

    async fn downgrade(&self, to: &str) -> Result<()> {
        self.session.request(json!({ "op": "downgrade", "to": to })).await.map(drop)
    }
}
