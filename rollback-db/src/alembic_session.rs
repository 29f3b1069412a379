//! The one Alembic process of a target: `alembic_helper.py`, run with the project's
//! interpreter, answering requests (current, the chain, the SQL preview, downgrade)
//! through Alembic's own API as JSON lines. Python and SQLAlchemy are imported once,
//! so a rollback step costs one interpreter start instead of one per call.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use rollback_core::process::{cause, mask};
use rollback_core::{Error, ErrorKind, Result, Secret};

/// The helper's source, run as `python -c`.
const HELPER: &str = include_str!("alembic_helper.py");

/// How many of the helper's last stderr lines are kept for an error when it dies.
const STDERR_LINES: usize = 40;

/// How to start the helper.
#[derive(Debug)]
pub(crate) struct Launch {
    /// The project's interpreter.
    pub python: PathBuf,
    /// The `alembic.ini` (absolute), whose directory the helper runs in.
    pub ini: PathBuf,
    /// `-x` arguments for `env.py`.
    pub x: Vec<String>,
    /// The variable `env.py` reads the URL from; without it the URL is set as
    /// `sqlalchemy.url`.
    pub url_env: Option<String>,
    /// The database URL (the spec's secret).
    pub url: Option<Secret>,
    /// Longest wait for one answer; the helper is killed after it.
    pub timeout: Duration,
}

/// A running helper.
struct Helper {
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

/// The helper of one target, started at its first request and kept for the
/// target's life (killed when the target is dropped, or when a request times out;
/// the next request starts a new one).
#[derive(Debug)]
pub(crate) struct Session {
    launch: Launch,
    helper: tokio::sync::Mutex<Option<Helper>>,
}

impl std::fmt::Debug for Helper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Helper").finish_non_exhaustive()
    }
}

impl Session {
    pub(crate) fn new(launch: Launch) -> Self {
        Session { launch, helper: tokio::sync::Mutex::new(None) }
    }

    /// Sends `request` (`{"op": …}`) and returns the answer's value.
    pub(crate) async fn request(&self, request: Value) -> Result<Value> {
        let op = request["op"].as_str().unwrap_or("?").to_owned();
        let mut slot = self.helper.lock().await;
        let exchange = async {
            if slot.is_none() {
                *slot = Some(self.start().await?);
            }
            let helper = slot.as_mut().expect("started above");
            helper.send(&request).await?;
            helper.answer().await
        };
        match tokio::time::timeout(self.launch.timeout, exchange).await {
            Ok(Ok(answer)) => self.decode(&op, answer),
            Ok(Err(broken)) => {
                *slot = None;
                Err(broken)
            }
            Err(_) => {
                *slot = None;
                Err(Error::new(
                    ErrorKind::Timeout,
                    format!("alembic {op} took over {:?}; its process was killed", self.launch.timeout),
                ))
            }
        }
    }

    async fn start(&self) -> Result<Helper> {
        let Launch { python, ini, x, url_env, url, .. } = &self.launch;
        let mut command = tokio::process::Command::new(python);
        command
            .arg("-c")
            .arg(HELPER)
            .arg(ini)
            .current_dir(ini.parent().unwrap_or(ini))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        if let (Some(var), Some(url)) = (url_env, url) {
            command.env(var, url.expose());
        }
        let mut child = command.spawn().map_err(|e| {
            Error::new(ErrorKind::Backend, format!("cannot start Alembic with {}", python.display())).with_source(e)
        })?;
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(pipe) = child.stderr.take() {
            tokio::spawn(keep_stderr(pipe, stderr.clone(), self.secrets()));
        }
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(Error::internal("alembic helper without pipes"));
        };
        let mut helper = Helper { _child: child, stdin, stdout: BufReader::new(stdout).lines(), stderr };
        // The URL goes over the pipe (never argv) when env.py does not read it itself.
        let url_option = if url_env.is_none() { url.as_ref().map(|u| u.expose().to_owned()) } else { None };
        helper.send(&json!({ "x": x, "url": url_option })).await?;
        let hello = helper.answer().await?;
        let version = self.decode("start", hello)?;
        tracing::debug!(alembic = %version["alembic"], python = %python.display(), "alembic helper started");
        Ok(helper)
    }

    /// The secret values no error or log line may show.
    fn secrets(&self) -> Vec<String> {
        self.launch.url.iter().map(|u| u.expose().to_owned()).collect()
    }

    /// An answer's value, or its error as ours: the traceback's exception, masked.
    fn decode(&self, op: &str, answer: Value) -> Result<Value> {
        let Some(error) = answer.get("error") else {
            return Ok(answer.get("ok").cloned().unwrap_or(Value::Null));
        };
        let text = error["traceback"].as_str().unwrap_or("no detail");
        let secrets = self.secrets();
        let message = mask(&cause(text), secrets.iter().map(String::as_str));
        let kind = match error["kind"].as_str() {
            Some("unsupported") => ErrorKind::Unsupported,
            Some("not_found") => ErrorKind::NotFound,
            _ => ErrorKind::Backend,
        };
        Err(Error::new(kind, format!("alembic {op}: {message}"))
            .set_retryable(error["retryable"].as_bool().unwrap_or(false)))
    }
}

impl Helper {
    async fn send(&mut self, request: &Value) -> Result<()> {
        let mut line = request.to_string();
        line.push('\n');
        let written = async {
            self.stdin.write_all(line.as_bytes()).await?;
            self.stdin.flush().await
        };
        match written.await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.died(Some(e)).await),
        }
    }

    async fn answer(&mut self) -> Result<Value> {
        match self.stdout.next_line().await {
            Ok(Some(line)) => serde_json::from_str(&line)
                .map_err(|e| Error::internal(format!("alembic helper: unreadable answer ({e})"))),
            Ok(None) => Err(self.died(None).await),
            Err(e) => Err(self.died(Some(e)).await),
        }
    }

    /// The helper exited (or its pipes broke): an error with what it last said.
    async fn died(&self, io: Option<std::io::Error>) -> Error {
        // Its stderr reader may still be catching up with the last lines.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let said = self.stderr.lock().map(|lines| lines.iter().cloned().collect::<Vec<_>>().join("\n"));
        let said = said.unwrap_or_default();
        let mut error = Error::new(
            ErrorKind::Backend,
            format!("the alembic process exited: {}", if said.is_empty() { "no output".into() } else { cause(&said) }),
        )
        .set_retryable(true);
        if let Some(io) = io {
            error = error.with_source(io);
        }
        error
    }
}

/// Reads the helper's stderr (Alembic's log, env.py's prints) into tracing and the
/// last [`STDERR_LINES`], masked.
async fn keep_stderr(pipe: tokio::process::ChildStderr, kept: Arc<Mutex<VecDeque<String>>>, secrets: Vec<String>) {
    let mut lines = BufReader::new(pipe).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line = mask(&line, secrets.iter().map(String::as_str));
        tracing::debug!(target: "rollback_db::alembic", "{line}");
        if let Ok(mut kept) = kept.lock() {
            if kept.len() == STDERR_LINES {
                kept.pop_front();
            }
            kept.push_back(line);
        }
    }
}
