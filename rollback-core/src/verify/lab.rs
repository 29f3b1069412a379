//! A controllable service to point verifiers at: healthy, unhealthy, slow, flapping
//! or erroring a chosen fraction of requests, switched by a schedule or by a request
//! to `/control`, with Prometheus metrics of what it answered. It is what
//! `rollback verify serve` runs (in its own process, so a benchmark of a prober does
//! not share the prober's cores with the server), and what tests start in-process.
//!
//! - `GET /health` (and any path but the two below) answers as the current mode says.
//! - `GET /metrics`: `rollback_lab_requests_total{code}`, a latency histogram
//!   `rollback_lab_request_duration_seconds`, and `rollback_lab_healthy` (1 or 0).
//! - `POST /control` with a mode as body (`unhealthy`, `slow:200ms`,
//!   `erroring:0.3`, `flapping:1s`) switches now; `GET /control` shows the mode and
//!   every switch with its time (what a detection-delay measurement compares with).
//!
//! ```
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! use rollback_core::verify::lab::{LabService, Mode, Schedule};
//! let lab = LabService::start("127.0.0.1:0".parse().unwrap(), Schedule::parse("0s=healthy").unwrap()).await.unwrap();
//! lab.set(Mode::parse("erroring:0.5").unwrap());
//! assert_eq!(lab.mode(), Mode::Erroring { fraction: 0.5 });
//! assert!(lab.url("/health").starts_with("http://127.0.0.1:"));
//! # });
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::http1::{self, Request};
use crate::{Error, Result};

/// How the service answers `/health`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Mode {
    /// 200 `ok`.
    Healthy,
    /// 503 `unhealthy`.
    Unhealthy,
    /// 200 after `delay`.
    Slow {
        /// How long each answer waits.
        #[serde(with = "humantime_serde")]
        delay: Duration,
    },
    /// Healthy and unhealthy in turn, each for `period`, from the switch on.
    Flapping {
        /// How long each half lasts.
        #[serde(with = "humantime_serde")]
        period: Duration,
    },
    /// 500 for a `fraction` of requests (spread evenly), 200 for the others.
    Erroring {
        /// Between 0 and 1.
        fraction: f64,
    },
}

impl Mode {
    /// Parses `healthy`, `unhealthy`, `slow:200ms`, `flapping:1s` or `erroring:0.3`.
    pub fn parse(text: &str) -> Result<Mode> {
        let (name, arg) = text.trim().split_once(':').map_or((text.trim(), None), |(n, a)| (n, Some(a.trim())));
        let duration = |what: &str| -> Result<Duration> {
            let arg = arg.ok_or_else(|| Error::invalid_input(format!("{name} needs a {what}: {name}:200ms")))?;
            humantime_serde::re::humantime::parse_duration(arg)
                .map_err(|e| Error::invalid_input(format!("{name}: bad {what} {arg:?}: {e}")))
        };
        match name {
            "healthy" => Ok(Mode::Healthy),
            "unhealthy" => Ok(Mode::Unhealthy),
            "slow" => Ok(Mode::Slow { delay: duration("delay")? }),
            "flapping" => Ok(Mode::Flapping { period: duration("period")?.max(Duration::from_millis(1)) }),
            "erroring" => {
                let fraction: f64 = arg
                    .and_then(|a| a.parse().ok())
                    .filter(|f| (0.0..=1.0).contains(f))
                    .ok_or_else(|| Error::invalid_input("erroring needs a fraction between 0 and 1: erroring:0.3"))?;
                Ok(Mode::Erroring { fraction })
            }
            other => Err(Error::invalid_input(format!(
                "unknown mode {other:?}: one of healthy, unhealthy, slow:DELAY, flapping:PERIOD, erroring:FRACTION"
            ))),
        }
    }
}

impl std::fmt::Display for Mode {
    /// The text [`Mode::parse`] reads back: `slow:200ms`, `erroring:0.3`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let human = |d: &Duration| humantime_serde::re::humantime::format_duration(*d).to_string();
        match self {
            Mode::Healthy => f.write_str("healthy"),
            Mode::Unhealthy => f.write_str("unhealthy"),
            Mode::Slow { delay } => write!(f, "slow:{}", human(delay)),
            Mode::Flapping { period } => write!(f, "flapping:{}", human(period)),
            Mode::Erroring { fraction } => write!(f, "erroring:{fraction}"),
        }
    }
}

/// Modes and when each starts, from the service's start: `0s=healthy,5s=unhealthy,20s=healthy`.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule(Vec<(Duration, Mode)>);

impl Schedule {
    /// Parses `AT=MODE` pairs separated by commas (`AT` as `5s`, `1m30s`, `250ms`).
    pub fn parse(text: &str) -> Result<Schedule> {
        let mut steps = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (at, mode) = part
                .split_once('=')
                .ok_or_else(|| Error::invalid_input(format!("schedule entry {part:?} is not AT=MODE (0s=healthy)")))?;
            let at = humantime_serde::re::humantime::parse_duration(at.trim())
                .map_err(|e| Error::invalid_input(format!("schedule entry {part:?}: bad time: {e}")))?;
            steps.push((at, Mode::parse(mode)?));
        }
        steps.sort_by_key(|(at, _)| *at);
        if steps.first().is_none_or(|(at, _)| !at.is_zero()) {
            steps.insert(0, (Duration::ZERO, Mode::Healthy));
        }
        Ok(Schedule(steps))
    }
}

/// A switch of mode and when it happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Switch {
    /// When (wall clock).
    pub at: chrono::DateTime<chrono::Utc>,
    /// To what.
    pub mode: Mode,
}

struct State {
    mode: Mode,
    since: Instant,
    switches: Vec<Switch>,
}

/// What the service answered, for `/metrics`.
#[derive(Default)]
struct Counters {
    ok: AtomicU64,
    unhealthy: AtomicU64,
    errors: AtomicU64,
    /// Requests answered in at most each of [`BUCKETS`] seconds.
    buckets: [AtomicU64; BUCKETS.len()],
    sum_micros: AtomicU64,
    requests: AtomicU64,
    /// Health requests taken so far: each one's ordinal, for `erroring`'s even spread.
    taken: AtomicU64,
}

const BUCKETS: [f64; 8] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

struct Shared {
    state: Mutex<State>,
    counters: Counters,
}

impl Shared {
    fn set(&self, mode: Mode) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.mode = mode;
        state.since = Instant::now();
        state.switches.push(Switch { at: chrono::Utc::now(), mode });
        tracing::info!(?mode, "lab service switched");
    }

    /// The status of the `n`-th health answer in the current mode, and its delay.
    fn health(&self, n: u64) -> (u16, Duration) {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match state.mode {
            Mode::Healthy => (200, Duration::ZERO),
            Mode::Unhealthy => (503, Duration::ZERO),
            Mode::Slow { delay } => (200, delay),
            Mode::Flapping { period } => {
                let half = state.since.elapsed().as_nanos() / period.as_nanos().max(1);
                (if half.is_multiple_of(2) { 200 } else { 503 }, Duration::ZERO)
            }
            Mode::Erroring { fraction } => {
                // Evenly spread: request n errs when floor(n·f) steps up.
                let errs = ((n + 1) as f64 * fraction).floor() > (n as f64 * fraction).floor();
                (if errs { 500 } else { 200 }, Duration::ZERO)
            }
        }
    }

    fn metrics(&self) -> String {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let healthy = matches!(self.health(0).0, 200);
        let mut out = String::from(
            "# HELP rollback_lab_requests_total Health requests answered, by status code.\n\
             # TYPE rollback_lab_requests_total counter\n",
        );
        for (code, n) in [(200, load(&c.ok)), (500, load(&c.errors)), (503, load(&c.unhealthy))] {
            out.push_str(&format!("rollback_lab_requests_total{{code=\"{code}\"}} {n}\n"));
        }
        out.push_str(
            "# HELP rollback_lab_request_duration_seconds Time to answer a health request.\n\
             # TYPE rollback_lab_request_duration_seconds histogram\n",
        );
        for (le, n) in BUCKETS.iter().zip(&c.buckets) {
            out.push_str(&format!("rollback_lab_request_duration_seconds_bucket{{le=\"{le}\"}} {}\n", load(n)));
        }
        let count = load(&c.requests);
        out.push_str(&format!(
            "rollback_lab_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}\n\
             rollback_lab_request_duration_seconds_sum {}\n\
             rollback_lab_request_duration_seconds_count {count}\n\
             # HELP rollback_lab_healthy Whether the service answers healthy now.\n\
             # TYPE rollback_lab_healthy gauge\n\
             rollback_lab_healthy {}\n",
            load(&c.sum_micros) as f64 / 1e6,
            u8::from(healthy)
        ));
        out
    }

    fn record(&self, status: u16, took: Duration) {
        let c = &self.counters;
        match status {
            200 => &c.ok,
            503 => &c.unhealthy,
            _ => &c.errors,
        }
        .fetch_add(1, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        for (le, n) in BUCKETS.iter().zip(&c.buckets) {
            if secs <= *le {
                n.fetch_add(1, Ordering::Relaxed);
            }
        }
        c.sum_micros.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        c.requests.fetch_add(1, Ordering::Relaxed);
    }
}

/// The running service; stops when dropped.
pub struct LabService {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for LabService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabService").field("addr", &self.addr).field("mode", &self.mode()).finish()
    }
}

impl Drop for LabService {
    fn drop(&mut self) {
        self.tasks.iter().for_each(tokio::task::JoinHandle::abort);
    }
}

impl LabService {
    /// Listens on `bind` (port 0: any free port) and follows `schedule` from now.
    pub async fn start(bind: SocketAddr, schedule: Schedule) -> Result<LabService> {
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .map_err(|e| Error::from(e).with_operation("lab service bind").with_context("address", bind))?;
        let addr = listener.local_addr()?;
        let mut steps = schedule.0.into_iter();
        let first = steps.next().map_or(Mode::Healthy, |(_, mode)| mode);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                mode: first,
                since: Instant::now(),
                switches: vec![Switch { at: chrono::Utc::now(), mode: first }],
            }),
            counters: Counters::default(),
        });
        let started = tokio::time::Instant::now();
        let timed = shared.clone();
        let schedule_task = tokio::spawn(async move {
            for (at, mode) in steps {
                tokio::time::sleep_until(started + at).await;
                timed.set(mode);
            }
        });
        let served = shared.clone();
        let accept_task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else { continue };
                let _ = socket.set_nodelay(true);
                tokio::spawn(serve(socket, served.clone()));
            }
        });
        Ok(LabService { addr, shared, tasks: vec![schedule_task, accept_task] })
    }

    /// `http://ADDR<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switches now.
    pub fn set(&self, mode: Mode) {
        self.shared.set(mode);
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner()).mode
    }

    /// Every switch so far, the start included.
    pub fn switches(&self) -> Vec<Switch> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner()).switches.clone()
    }

    /// Health requests answered so far.
    pub fn requests(&self) -> u64 {
        self.shared.counters.requests.load(Ordering::Relaxed)
    }
}

async fn serve(mut socket: tokio::net::TcpStream, shared: Arc<Shared>) {
    let mut buf = Vec::with_capacity(4096);
    while let Some(request) = http1::read_request(&mut socket, &mut buf).await {
        let close = request.wants_close();
        let (status, content_type, body) = answer(&shared, &request).await;
        if !http1::respond(&mut socket, status, content_type, &body, close).await || close {
            return;
        }
    }
}

async fn answer(shared: &Shared, request: &Request) -> (u16, &'static str, String) {
    match (request.method.as_str(), request.route()) {
        ("GET", "/metrics") => (200, "text/plain; version=0.0.4", shared.metrics()),
        ("POST", "/control") => match Mode::parse(&request.body) {
            Ok(mode) => {
                shared.set(mode);
                (204, "text/plain", String::new())
            }
            Err(e) => (400, "text/plain", e.to_string()),
        },
        ("GET", "/control") => {
            let state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            let body = serde_json::json!({ "mode": state.mode, "switches": state.switches });
            (200, "application/json", body.to_string())
        }
        _ => {
            let started = Instant::now();
            let n = shared.counters.taken.fetch_add(1, Ordering::Relaxed);
            let (status, delay) = shared.health(n);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            shared.record(status, started.elapsed());
            let body = if status == 200 {
                "ok"
            } else if status == 503 {
                "unhealthy"
            } else {
                "error"
            };
            (status, "text/plain", body.to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_schedules_parse_and_bad_ones_say_why() {
        assert_eq!(Mode::parse("slow:250ms").unwrap(), Mode::Slow { delay: Duration::from_millis(250) });
        assert_eq!(Mode::parse(" unhealthy ").unwrap(), Mode::Unhealthy);
        assert!(Mode::parse("erroring:2").unwrap_err().to_string().contains("between 0 and 1"));
        assert!(Mode::parse("sick").unwrap_err().to_string().contains("one of healthy"));
        assert!(Mode::parse("slow").unwrap_err().to_string().contains("slow:200ms"));
        for text in ["healthy", "unhealthy", "slow:250ms", "flapping:1s", "erroring:0.3"] {
            assert_eq!(Mode::parse(text).unwrap().to_string(), text, "Display reads back");
        }
        let s = Schedule::parse("5s=unhealthy, 10s=flapping:1s").unwrap();
        assert_eq!(s.0[0], (Duration::ZERO, Mode::Healthy), "healthy until the first entry");
        assert_eq!(s.0.len(), 3);
        assert!(Schedule::parse("5s").unwrap_err().to_string().contains("AT=MODE"));
    }

    #[test]
    fn erroring_spreads_its_errors_evenly() {
        let shared = Shared {
            state: Mutex::new(State {
                mode: Mode::Erroring { fraction: 0.25 },
                since: Instant::now(),
                switches: vec![],
            }),
            counters: Counters::default(),
        };
        let errors = (0..400).filter(|&n| shared.health(n).0 == 500).count();
        assert_eq!(errors, 100);
    }
}
