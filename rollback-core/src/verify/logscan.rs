use async_trait::async_trait;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

use super::{Check, Outcome, Verifier};
use crate::{Error, Result};

/// Where a [`LogScanVerifier`] reads lines.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogSource {
    /// A log file.
    File(PathBuf),
    /// A command's stdout (`docker logs --since 5m web`, `journalctl -u app --since -5min`),
    /// run directly, never through a shell.
    Command(Vec<String>),
}

/// What a [`LogScanVerifier`] counts.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogScanCheck {
    /// Where the lines come from.
    pub source: LogSource,
    /// A regular expression (`ERROR|FATAL|panic`).
    pub pattern: String,
    /// Pass while at most this many lines match.
    #[serde(default)]
    pub max_matches: u64,
    /// Only the last N lines (all when absent).
    #[serde(default)]
    pub last_lines: Option<usize>,
}

/// Counts lines matching a pattern — the runbooks' `grep -c ERROR` — against a threshold.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use rollback_core::verify::{LogScanCheck, LogScanVerifier, LogSource};
/// use rollback_core::{Outcome, Verifier};
/// let dir = tempfile::tempdir().unwrap();
/// let log = dir.path().join("app.log");
/// std::fs::write(&log, "INFO up\nERROR db down\nINFO ok\n").unwrap();
/// let check = LogScanCheck { source: LogSource::File(log), pattern: "ERROR".into(), max_matches: 0, last_lines: None };
/// let v = LogScanVerifier::new("errors", check).unwrap();
/// let result = v.check().await.unwrap();
/// assert_eq!(result.outcome, Outcome::Fail);
/// assert_eq!(result.measurements["matches"], 1.0);
/// # });
/// ```
#[derive(Debug)]
pub struct LogScanVerifier {
    name: String,
    check: LogScanCheck,
    pattern: regex::Regex,
}

impl LogScanVerifier {
    /// Validates the pattern.
    pub fn new(name: &str, check: LogScanCheck) -> Result<Self> {
        let pattern = regex::Regex::new(&check.pattern)
            .map_err(|e| Error::invalid_input(format!("log scan {name:?}: bad pattern: {e}")))?;
        Ok(LogScanVerifier { name: name.to_owned(), check, pattern })
    }

    async fn text(&self) -> Result<String> {
        match &self.check.source {
            LogSource::File(path) => tokio::fs::read(path)
                .await
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .map_err(|e| Error::from(e).with_context("log", path.display())),
            LogSource::Command(argv) => {
                let program = argv.first().ok_or_else(|| Error::invalid_input("log scan command is empty"))?;
                let output = tokio::time::timeout(
                    Duration::from_secs(30),
                    tokio::process::Command::new(program).args(&argv[1..]).kill_on_drop(true).output(),
                )
                .await
                .map_err(|_| Error::new(crate::ErrorKind::Timeout, format!("{program} took over 30s")))??;
                Ok(String::from_utf8_lossy(&output.stdout).into_owned())
            }
        }
    }
}

#[async_trait]
impl Verifier for LogScanVerifier {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self) -> Result<Check> {
        let text = self.text().await?;
        let lines: Vec<&str> = text.lines().collect();
        let from = self.check.last_lines.map_or(0, |n| lines.len().saturating_sub(n));
        let matches = lines[from..].iter().filter(|l| self.pattern.is_match(l)).count() as u64;
        let outcome = if matches <= self.check.max_matches { Outcome::Pass } else { Outcome::Fail };
        let detail = format!("{matches} line(s) match {:?} (max {})", self.pattern.as_str(), self.check.max_matches);
        Ok(Check::new(outcome, detail).measure("matches", matches as f64))
    }
}
