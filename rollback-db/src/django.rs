use async_trait::async_trait;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

use crate::alembic::default_timeout;
use crate::cli::{MigrationTool, Migrations, run};
use rollback_core::{Error, Result};

fn default_command() -> Vec<String> {
    vec!["python".into(), "manage.py".into()]
}

/// Configuration of a [`Django`] target.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DjangoConfig {
    /// How to run manage.py (argv, never a shell): `["python", "manage.py"]`,
    /// `[".venv/bin/python", "manage.py"]`.
    #[serde(default = "default_command")]
    pub command: Vec<String>,
    /// The project directory (where manage.py is).
    pub project: PathBuf,
    /// The app whose migrations are rolled back (runbook 000: `migrate APP TARGET`).
    pub app: String,
    /// Timeout of each call.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
}

/// Django migrations of one app: `showmigrations APP` for current and history,
/// `migrate APP TARGET` to go down (`zero` is the empty schema), and `sqlmigrate APP
/// NAME --backwards` for each migration undone as the SQL preview.
#[derive(Debug)]
pub struct DjangoCli {
    config: DjangoConfig,
}

/// An app's schema managed by Django migrations.
pub type Django = Migrations<DjangoCli>;

impl Migrations<DjangoCli> {
    /// Checks the configuration.
    pub fn new(name: &str, config: DjangoConfig) -> Result<Self> {
        if config.command.first().is_none_or(|p| p.is_empty()) {
            return Err(Error::invalid_input(format!("django {name:?}: empty command")));
        }
        if !config.project.is_dir() {
            return Err(Error::invalid_input(format!(
                "django {name:?}: {} is not a directory",
                config.project.display()
            )));
        }
        if config.app.is_empty() || !config.app.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Error::invalid_input(format!("django {name:?}: bad app label {:?}", config.app)));
        }
        Ok(Migrations::with_tool(name, DjangoCli { config }))
    }
}

impl DjangoCli {
    async fn manage(&self, args: &[&str]) -> Result<String> {
        run(&self.config.command, args, &self.config.project, &[], self.config.timeout).await
    }

    /// (name, applied) in the order Django lists them (oldest first).
    async fn migrations(&self) -> Result<Vec<(String, bool)>> {
        let text = self.manage(&["showmigrations", &self.config.app]).await?;
        Ok(text
            .lines()
            .filter_map(|l| {
                let l = l.trim();
                let applied = l.starts_with("[X]");
                let name = l.strip_prefix("[X]").or_else(|| l.strip_prefix("[ ]"))?.trim();
                Some((name.split_whitespace().next()?.to_owned(), applied))
            })
            .collect())
    }
}

#[async_trait]
impl MigrationTool for DjangoCli {
    fn kind(&self) -> &'static str {
        "django"
    }

    fn identity(&self) -> String {
        let project = std::fs::canonicalize(&self.config.project).unwrap_or_else(|_| self.config.project.clone());
        format!("django:{}#{}", project.display(), self.config.app)
    }

    /// Applied migrations newest first, then `zero`.
    async fn chain(&self) -> Result<Vec<(String, String)>> {
        let mut chain: Vec<(String, String)> = self
            .migrations()
            .await?
            .into_iter()
            .filter(|(_, applied)| *applied)
            .map(|(name, _)| (name.clone(), name.split_once('_').map_or(name.clone(), |(_, d)| d.replace('_', " "))))
            .collect();
        chain.reverse();
        chain.push(("zero".into(), "before the first migration".into()));
        Ok(chain)
    }

    async fn live(&self) -> Result<String> {
        let applied = self.migrations().await?;
        Ok(applied.into_iter().rev().find(|(_, a)| *a).map_or_else(|| "zero".to_owned(), |(n, _)| n))
    }

    async fn preview(&self, chain: &[(String, String)], from: &str, to: &str) -> Result<String> {
        let start = chain.iter().position(|(r, _)| r == from).unwrap_or(0);
        let mut sql = String::new();
        for (name, _) in chain[start..].iter().take_while(|(r, _)| r != to) {
            sql.push_str(&format!("-- {} {name} backwards\n", self.config.app));
            sql.push_str(&self.manage(&["sqlmigrate", &self.config.app, name, "--backwards"]).await?);
        }
        Ok(sql)
    }

    async fn downgrade(&self, to: &str) -> Result<()> {
        self.manage(&["migrate", &self.config.app, to]).await.map(drop)
    }
}
