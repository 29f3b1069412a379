//! A private, real Prometheus for tests (feature `http` too): its own port, its own
//! data directory, a config scraping the given targets every second; killed on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::verify::PrometheusClient;
use crate::{Error, ErrorKind, Result};

/// Where `scripts/test.sh` points the tests at the binary.
const ENV: &str = "ROLLBACK_TEST_PROMETHEUS";
/// Debian's `prometheus` package, used when the variable is not set.
const DEBIAN: &str = "/usr/bin/prometheus";
/// How long the server may take to start and to scrape its targets once.
const STARTUP: Duration = Duration::from_secs(30);

/// A Prometheus process of the test's own, scraping `targets` every second as job
/// `lab` (each target's `instance` label is its address). Dropping it kills the
/// process and removes its data directory.
///
/// ```no_run
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// use rollback_core::testkit::TestPrometheus;
/// use rollback_core::verify::lab::{LabService, Schedule};
/// let lab = LabService::start("127.0.0.1:0".parse().unwrap(), Schedule::parse("0s=healthy").unwrap()).await.unwrap();
/// let Some(binary) = TestPrometheus::binary() else { return }; // skipped, loudly
/// let prometheus = TestPrometheus::start(&binary, &[lab.addr()]).await.unwrap();
/// assert_eq!(prometheus.client().query("up").await.unwrap(), Some(1.0));
/// # });
/// ```
#[derive(Debug)]
pub struct TestPrometheus {
    child: Option<Child>,
    url: String,
    dir: PathBuf,
}

impl TestPrometheus {
    /// The binary: `$ROLLBACK_TEST_PROMETHEUS`, else Debian's `/usr/bin/prometheus`
    /// when it is installed. Neither: under `CI=true` this panics (a missing server
    /// fails CI); locally it prints a loud `*** NOT RUN` line and returns `None`.
    pub fn binary() -> Option<PathBuf> {
        match std::env::var(ENV) {
            Ok(path) if !path.is_empty() => Some(PathBuf::from(path)),
            _ if Path::new(DEBIAN).exists() => Some(PathBuf::from(DEBIAN)),
            _ => super::server_env(ENV, "Prometheus (Debian package `prometheus`)").map(PathBuf::from),
        }
    }

    /// Starts `binary` on a free port of 127.0.0.1 and waits until it is ready and
    /// has scraped every target once (`up` is 1 for each): queries may follow at once.
    /// The error says why it did not start, with the tail of its log.
    pub async fn start(binary: &Path, targets: &[SocketAddr]) -> Result<TestPrometheus> {
        let mut last = None;
        // A free port may be taken between the probe and the bind: try a few.
        for _ in 0..3 {
            match Self::start_once(binary, targets).await {
                Ok(server) => return Ok(server),
                Err(e) if e.message().contains("address already in use") => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::internal("no attempt was made")))
    }

    async fn start_once(binary: &Path, targets: &[SocketAddr]) -> Result<TestPrometheus> {
        let port = super::outage::free_port();
        let dir = private_dir(port)?;
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, scrape_config(targets))?;
        let log = std::fs::File::create(dir.join("prometheus.log"))?;
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| {
                let _ = std::fs::remove_dir_all(&dir);
                Error::new(ErrorKind::Backend, format!("cannot start {}: {e}", binary.display()))
            })?;
        tracing::info!(port, pid = child.id(), "test Prometheus started");
        let mut server = TestPrometheus { child: Some(child), url: format!("http://127.0.0.1:{port}"), dir };
        server.wait_ready().await?;
        // No series until every target is up.
        let all_up = format!("count(up == 1) >= {}", targets.len());
        match server.wait_for_value(&all_up, STARTUP).await {
            Ok(_) => Ok(server),
            Err(e) => Err(server.failed(&format!("did not scrape every target: {e}"))),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A client of this server.
    pub fn client(&self) -> PrometheusClient {
        PrometheusClient::new(&self.url, &Default::default()).expect("a valid loopback URL")
    }

    /// Kills the server now: from here on its port is closed (a Prometheus that is down).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Polls `query` every 200 ms until it has a value (a `rate` needs two scrapes);
    /// a [`ErrorKind::Timeout`] error naming the query after `timeout`.
    pub async fn wait_for_value(&self, query: &str, timeout: Duration) -> Result<f64> {
        let client = self.client();
        let started = Instant::now();
        loop {
            let last = match client.query(query).await {
                Ok(Some(value)) => return Ok(value),
                Ok(None) => "no data".to_string(),
                Err(e) => e.to_string(),
            };
            if started.elapsed() > timeout {
                return Err(Error::new(ErrorKind::Timeout, format!("no value after {timeout:?}: {last}"))
                    .with_context("query", query));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits for `/-/ready`; an error with the log's tail if the process exits first.
    async fn wait_ready(&mut self) -> Result<()> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| Error::new(ErrorKind::Backend, "cannot build an HTTP client").with_source(e))?;
        let ready = format!("{}/-/ready", self.url);
        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(self.failed(&format!("exited before it was ready ({status})")));
            }
            if http.get(&ready).send().await.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if started.elapsed() > STARTUP {
                return Err(self.failed(&format!("not ready after {STARTUP:?}")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A start failure, with the last lines of the server's log (it also stops it).
    fn failed(&mut self, what: &str) -> Error {
        self.stop();
        let log = std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(8)..].join("\n");
        Error::new(ErrorKind::Backend, format!("test Prometheus at {} {what}; its log ends:\n{tail}", self.url))
    }
}

impl Drop for TestPrometheus {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Scrapes every target every second, as job `lab`.
fn scrape_config(targets: &[SocketAddr]) -> String {
    let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
    format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: lab\n    scrape_interval: 1s\n    static_configs:\n      - targets: [{}]\n",
        targets.join(", ")
    )
}

/// A new directory of this server's own under the system's temporary directory.
fn private_dir(port: u16) -> Result<PathBuf> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let dir = std::env::temp_dir().join(format!("rollback-prometheus-{}-{port}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::from(e).with_context("path", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_scrapes_every_target_every_second() {
        let config = scrape_config(&["127.0.0.1:1".parse().unwrap(), "127.0.0.1:2".parse().unwrap()]);
        assert!(config.contains("scrape_interval: 1s"), "{config}");
        assert!(config.contains("targets: ['127.0.0.1:1', '127.0.0.1:2']"), "{config}");
    }
}
