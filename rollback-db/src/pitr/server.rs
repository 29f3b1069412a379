//! The PostgreSQL server tools of one installation, run as the cluster's OS user
//! (through `runuser` when the runner is root: PostgreSQL refuses to run as root),
//! and SQL sessions on a given port.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rollback_core::process::{Invocation, run};
use rollback_core::{Error, ErrorKind, Result};

use crate::PgUrl;
use crate::error::map;

/// `pg_ctl` and friends.
#[derive(Debug, Clone)]
pub struct Tools {
    /// The directory of `pg_ctl`, `postgres`, `pg_controldata`.
    pub bin: PathBuf,
    /// Run them as this user (`None`: as the runner).
    pub os_user: Option<String>,
    /// Extra server options for `pg_ctl -o` (`-c listen_addresses=127.0.0.1`).
    pub options: String,
}

impl Tools {
    fn argv(&self, program: &str, args: &[&str]) -> Vec<String> {
        let mut argv = Vec::new();
        if let Some(user) = &self.os_user {
            argv.extend(["runuser".to_owned(), "-u".to_owned(), user.clone(), "--".to_owned()]);
        }
        // A bare name is a server tool; an absolute path (`/bin/cp`) runs as it is.
        argv.push(if program.starts_with('/') {
            program.to_owned()
        } else {
            self.bin.join(program).display().to_string()
        });
        argv.extend(args.iter().map(|a| a.to_string()));
        argv
    }

    /// Runs `program args…`; its stdout.
    pub async fn run(&self, program: &str, args: &[&str], timeout: Duration) -> Result<String> {
        let argv = self.argv(program, args);
        let what = format!("`{program} {}`", args.first().copied().unwrap_or_default());
        let invocation = Invocation { what: &what, argv: &argv, dir: Some(Path::new("/")), env: &[], timeout };
        Ok(String::from_utf8_lossy(&run(invocation).await?).into_owned())
    }

    /// Gives `path` (recursively) to the tools' user, when there is one.
    pub fn own(&self, path: &Path) -> Result<()> {
        let Some(user) = &self.os_user else { return Ok(()) };
        let status = std::process::Command::new("chown").arg("-R").arg(format!("{user}:")).arg(path).status();
        match status {
            Ok(s) if s.success() => Ok(()),
            _ => Err(Error::new(ErrorKind::PermissionDenied, format!("cannot give {} to {user}", path.display()))),
        }
    }

    /// Whether a server runs from `data` (`pg_ctl status`).
    pub async fn running(&self, data: &Path) -> bool {
        self.run("pg_ctl", &["status", "-D", &data.display().to_string()], Duration::from_secs(30)).await.is_ok()
    }

    /// Starts a server from `data` on `port`, logging to `log`; returns once it runs
    /// (not once it accepts connections: a recovering server may take long).
    pub async fn start(&self, data: &Path, port: u16, log: &Path) -> Result<()> {
        if self.running(data).await {
            return Ok(());
        }
        let options = format!("-p {port} {}", self.options);
        let (data, log) = (data.display().to_string(), log.display().to_string());
        self.run("pg_ctl", &["start", "-D", &data, "-l", &log, "-o", &options, "-W"], Duration::from_secs(60)).await?;
        // `-W` returns before the postmaster has written its pid file.
        let started = std::time::Instant::now();
        while !self.running(Path::new(&data)).await {
            if started.elapsed() > Duration::from_secs(15) {
                return Err(Error::new(ErrorKind::Backend, format!("the server of {data} did not start (see {log})")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Stops the server of `data` (fast: sessions end, a checkpoint is written).
    pub async fn stop(&self, data: &Path) -> Result<()> {
        if !self.running(data).await {
            return Ok(());
        }
        let data = data.display().to_string();
        self.run("pg_ctl", &["stop", "-D", &data, "-m", "fast", "-w", "-t", "300"], Duration::from_secs(330)).await?;
        Ok(())
    }
}

/// Waits until PostgreSQL's archiver reports `segment` archived — what
/// `archive_command` succeeded with, whatever the archive is (a directory,
/// pgBackRest). `Err(last archived)` after `timeout`.
pub async fn wait_archived(
    conn: &mut sqlx::PgConnection,
    segment: &str,
    timeout: Duration,
) -> Result<std::result::Result<(), String>> {
    let started = std::time::Instant::now();
    loop {
        let last: Option<String> = sqlx::query_scalar("SELECT last_archived_wal FROM pg_stat_archiver")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| map("read pg_stat_archiver", e))?;
        // Names of one timeline sort as their segments (a `.backup` or `.partial` suffix after them).
        if last.as_deref().is_some_and(|last| last >= segment) {
            return Ok(Ok(()));
        }
        if started.elapsed() > timeout {
            return Ok(Err(last.unwrap_or_else(|| "none".into())));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How to reach the cluster's servers over SQL: the URL's user, password and
/// database, on a given port.
#[derive(Debug, Clone)]
pub struct Sessions {
    url: PgUrl,
}

impl Sessions {
    pub fn new(url: PgUrl) -> Self {
        Sessions { url }
    }

    /// The port of the live cluster.
    pub fn port(&self) -> u16 {
        self.url.port
    }

    /// One connection to the server on `port`.
    pub async fn connect(&self, port: u16) -> Result<sqlx::PgConnection> {
        use sqlx::ConnectOptions;
        let mut options = sqlx::postgres::PgConnectOptions::new()
            .host(&self.url.host)
            .port(port)
            .username(&self.url.user)
            .database(&self.url.database);
        if let Some(password) = &self.url.password {
            options = options.password(password.expose());
        }
        options.connect().await.map_err(|e| map("connect", e).with_context("port", port))
    }

    /// Waits until the server on `port` accepts connections and is out of recovery
    /// (promoted), failing early when `alive` says it died.
    pub async fn wait_promoted<F, Fut>(&self, port: u16, timeout: Duration, alive: F) -> Result<()>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let started = std::time::Instant::now();
        loop {
            if let Ok(mut conn) = self.connect(port).await {
                let recovering: std::result::Result<bool, _> =
                    sqlx::query_scalar("SELECT pg_is_in_recovery()").fetch_one(&mut conn).await;
                if let Ok(false) = recovering {
                    return Ok(());
                }
            }
            if !alive().await {
                return Err(Error::new(ErrorKind::Backend, "the recovering server stopped before it promoted"));
            }
            if started.elapsed() > timeout {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!("the server on port {port} did not promote in {timeout:?}"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
