use async_trait::async_trait;
use serde::Deserialize;
use std::process::Stdio;
use std::time::Duration;

use super::{Check, Outcome, Verifier};
use crate::{Error, Result};

/// What a [`CommandVerifier`] runs and expects. `argv` is executed directly, never
/// through a shell.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandCheck {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Expected exit code (0).
    #[serde(default)]
    pub exit_code: i32,
    /// A regular expression stdout must match, if any.
    #[serde(default)]
    pub stdout_matches: Option<String>,
    /// Kill the child after this long (a killed check is inconclusive).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Runs a command as a check (`pg_isready`, `redis-cli ping`, a smoke-test script).
/// On timeout the child is killed and reaped before the check returns.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use rollback_core::verify::{CommandCheck, CommandVerifier};
/// use rollback_core::{Outcome, Verifier};
/// let check = CommandCheck {
///     argv: vec!["echo".into(), "PONG".into()],
///     exit_code: 0,
///     stdout_matches: Some("^PONG$".into()),
///     timeout: std::time::Duration::from_secs(5),
/// };
/// let v = CommandVerifier::new("ping", check).unwrap();
/// assert_eq!(v.check().await.unwrap().outcome, Outcome::Pass);
/// # });
/// ```
#[derive(Debug)]
pub struct CommandVerifier {
    name: String,
    check: CommandCheck,
    pattern: Option<regex::Regex>,
}

impl CommandVerifier {
    /// Validates the argv and the pattern.
    pub fn new(name: &str, check: CommandCheck) -> Result<Self> {
        if check.argv.first().is_none_or(|p| p.is_empty()) {
            return Err(Error::invalid_input(format!("command verifier {name:?} needs a non-empty argv")));
        }
        let pattern = check
            .stdout_matches
            .as_deref()
            .map(|p| regex::RegexBuilder::new(p).multi_line(true).build())
            .transpose()
            .map_err(|e| Error::invalid_input(format!("command verifier {name:?}: bad stdout pattern: {e}")))?;
        Ok(CommandVerifier { name: name.to_owned(), check, pattern })
    }
}

#[async_trait]
impl Verifier for CommandVerifier {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self) -> Result<Check> {
        let program = &self.check.argv[0];
        let mut child = tokio::process::Command::new(program)
            .args(&self.check.argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Error::invalid_input(format!("cannot run {program:?}")).with_source(e))?;
        let pid = child.id().unwrap_or_default();
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let read_all = async {
            use tokio::io::AsyncReadExt;
            let (mut out, mut err) = (Vec::new(), Vec::new());
            if let Some(s) = stdout.as_mut() {
                let _ = s.read_to_end(&mut out).await;
            }
            if let Some(s) = stderr.as_mut() {
                let _ = s.read_to_end(&mut err).await;
            }
            (out, err)
        };
        let waited = tokio::time::timeout(self.check.timeout, async {
            let (out, err) = read_all.await;
            (child.wait().await, out, err)
        })
        .await;
        let (status, out, err) = match waited {
            Ok(result) => result,
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Ok(Check::new(
                    Outcome::Inconclusive,
                    format!("{program} (pid {pid}) killed after {:?}", self.check.timeout),
                ));
            }
        };
        let status = status?;
        let out = String::from_utf8_lossy(&out);
        let code = status.code().unwrap_or(-1);
        let tail = |s: &str| s.trim().chars().rev().take(200).collect::<Vec<_>>().into_iter().rev().collect::<String>();
        if code != self.check.exit_code {
            let detail = format!(
                "{program} exited {code} (want {}): {}",
                self.check.exit_code,
                tail(&String::from_utf8_lossy(&err))
            );
            return Ok(Check::new(Outcome::Fail, detail).measure("exit_code", code as f64));
        }
        if let Some(pattern) = &self.pattern
            && !pattern.is_match(&out)
        {
            let detail = format!("{program} output does not match {:?}: {}", pattern.as_str(), tail(&out));
            return Ok(Check::new(Outcome::Fail, detail).measure("exit_code", code as f64));
        }
        Ok(Check::new(Outcome::Pass, format!("{program} exited {code}")).measure("exit_code", code as f64))
    }
}
