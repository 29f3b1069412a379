//! Running tools as child processes, the one way every target does it: argv (never a
//! shell), stdin closed, a timeout after which the child is killed, and the tail of
//! its stderr in the error. Environment values (a `PGPASSWORD`) never appear in errors.

use std::path::Path;
use std::time::Duration;

use crate::{Error, ErrorKind, Result};

/// One run of a tool.
#[derive(Debug, Clone, Copy)]
pub struct Invocation<'a> {
    /// How errors name it (`restart command "systemctl"`, `` `alembic downgrade` ``).
    pub what: &'a str,
    /// Program and arguments.
    pub argv: &'a [String],
    /// Working directory (the caller's when `None`).
    pub dir: Option<&'a Path>,
    /// Extra environment variables.
    pub env: &'a [(&'a str, &'a str)],
    /// Kill it after this long.
    pub timeout: Duration,
}

impl<'a> Invocation<'a> {
    /// `argv` named `what`, in the caller's directory, with `timeout`.
    pub fn new(what: &'a str, argv: &'a [String], timeout: Duration) -> Self {
        Invocation { what, argv, dir: None, env: &[], timeout }
    }
}

/// Runs it to completion and returns its stdout; a non-zero exit is a
/// [`ErrorKind::Backend`] error with the exit code and the cause from stderr (see
/// [`cause`]), with the values of `env` masked.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use rollback_core::process::{run, Invocation};
/// use std::time::Duration;
/// let argv = vec!["echo".to_string(), "a;b".to_string()];
/// assert_eq!(run(Invocation::new("echo", &argv, Duration::from_secs(5))).await.unwrap(), b"a;b\n");
/// let argv = vec!["false".to_string()];
/// let err = run(Invocation::new("check \"false\"", &argv, Duration::from_secs(5))).await.unwrap_err();
/// assert!(err.to_string().contains("check \"false\" exited 1"));
/// // Lines that echo row data (PostgreSQL's DETAIL / CONTEXT) stay out of errors.
/// let script = "echo 'ERROR: duplicate key' >&2; echo 'DETAIL: Key (email)=(ada@example.com) exists.' >&2; exit 1";
/// let argv = vec!["sh".to_string(), "-c".to_string(), script.to_string()];
/// let err = run(Invocation::new("psql", &argv, Duration::from_secs(5))).await.unwrap_err().to_string();
/// assert!(err.contains("duplicate key") && !err.contains("ada@example.com"), "{err}");
/// # });
/// ```
pub async fn run(invocation: Invocation<'_>) -> Result<Vec<u8>> {
    let Invocation { what, argv, dir, env, timeout } = invocation;
    let program =
        argv.first().filter(|p| !p.is_empty()).ok_or_else(|| Error::invalid_input(format!("{what}: empty command")))?;
    let mut command = tokio::process::Command::new(program);
    command.args(&argv[1..]).envs(env.iter().copied()).stdin(std::process::Stdio::null()).kill_on_drop(true);
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let output = tokio::time::timeout(timeout, command.output())
        .await
        .map_err(|_| Error::new(ErrorKind::Timeout, format!("{what} took over {timeout:?} and was killed")))?
        .map_err(|e| Error::new(ErrorKind::Backend, format!("cannot run {what}")).with_source(e))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let text = if stderr.trim().is_empty() { stdout } else { stderr };
        // Values given in the environment (a password, a URL with one) never appear.
        let tail = mask(&cause(&text), env.iter().map(|(_, value)| *value));
        return Err(Error::new(
            ErrorKind::Backend,
            format!("{what} exited {}: {tail}", output.status.code().unwrap_or(-1)),
        )
        .set_retryable(false));
    }
    Ok(output.stdout)
}

/// `text` with each of `values` (a password, or a URL whose password is also
/// masked on its own) replaced by `***`; values under 4 characters are left, as
/// they would mask ordinary words.
///
/// ```
/// let text = "connect postgres://app:s3cret@db/app failed; password s3cret";
/// let masked = rollback_core::process::mask(text, ["postgres://app:s3cret@db/app"]);
/// assert_eq!(masked, "connect *** failed; password ***");
/// ```
pub fn mask<'a>(text: &str, values: impl IntoIterator<Item = &'a str>) -> String {
    let mut masked = text.to_owned();
    for value in values {
        for secret in [Some(value), url_password(value)].into_iter().flatten().filter(|v| v.len() >= 4) {
            masked = masked.replace(secret, "***");
        }
    }
    masked
}

/// The password in a URL's user info (`postgres://app:PASSWORD@host/db`).
fn url_password(value: &str) -> Option<&str> {
    let rest = &value[value.find("://")? + 3..];
    let userinfo = &rest[..rest.find('@')?];
    userinfo.split_once(':').map(|(_, password)| password)
}

/// Most characters of a failed program's output an error carries.
const CAUSE_CHARS: usize = 600;

/// What a failed program said, bounded: a Python traceback's exception (the lines
/// after its last frame), else the last lines; without lines that echo data
/// (PostgreSQL's `DETAIL:` and `CONTEXT:`); cut at the front, so the end — where
/// the cause is — stays.
///
/// ```
/// let out = "Traceback (most recent call last):\n  File \"env.py\", line 9, in <module>\n    run()\n\
///            sqlalchemy.exc.OperationalError: (psycopg2.OperationalError) connection failed: \
///            FATAL:  database \"accdb_nope\" does not exist\n\n(Background on this error at: https://sqlalche.me/e/20/e3q8)\n";
/// let cause = rollback_core::process::cause(out);
/// assert!(cause.starts_with("sqlalchemy.exc.OperationalError") && cause.contains("does not exist"), "{cause}");
/// ```
pub fn cause(text: &str) -> String {
    let lines: Vec<&str> = text
        .trim()
        .lines()
        .filter(|l| !l.trim_start().starts_with("DETAIL:") && !l.trim_start().starts_with("CONTEXT:"))
        .filter(|l| !l.trim().is_empty())
        // Python's markers under the failing expression (`^^^^`, `~~~^~~`).
        .filter(|l| !l.trim().chars().all(|c| c == '^' || c == '~'))
        .collect();
    // A traceback: the frames are `  File "…", line N` followed by their code line.
    let after_frames = lines.iter().rposition(|l| l.starts_with("  File \"")).map(|i| (i + 2).min(lines.len()));
    let picked: Vec<&str> = match after_frames {
        Some(start) if start < lines.len() => lines[start..].to_vec(),
        _ => lines.iter().rev().take(6).rev().copied().collect(),
    };
    let joined = picked.join(" | ");
    let count = joined.chars().count();
    if count <= CAUSE_CHARS {
        return joined;
    }
    let tail: String = joined.chars().skip(count - CAUSE_CHARS).collect();
    format!("…{tail}")
}
