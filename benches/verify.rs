//! Verification side by side with the tools runbooks use, in one run:
//!
//! (a) detection delay: a local service turns healthy at a random moment; how long
//!     until the probe passes — ours at I = 50 ms against `until curl -sf URL; do
//!     sleep 0.05; done`, and the runbooks' 5 s loop for scale;
//! (b) probe throughput: concurrent HTTP checks across many local endpoints on
//!     2 cores, against a bash curl loop and against `wrk` (the ceiling) on the same server;
//! (c) detection delay through the public harness (`verify::bench::detection`)
//!     against the lab service in its own process, switched over HTTP, against the
//!     same curl loop on the same service;
//! (d) metric-based detection: the Prometheus verifier on the lab's `healthy`
//!     gauge through a real Prometheus scraping every second, against polling the
//!     service directly at the same interval — what reaction time metric-based
//!     verification costs.
//!
//! ```text
//! cargo bench -p rollback-benches --bench verify           # full
//! cargo bench -p rollback-benches --bench verify -- --test # quick smoke
//! ```

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rollback_core::testkit::TestHttpServer;
use rollback_core::verify::{HttpCheck, HttpVerifier};
use rollback_core::{ProbePolicy, Verifier, probe};

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Time from the service turning healthy to our probe's pass, in ms.
async fn ours_once(server: &TestHttpServer, interval: Duration) -> f64 {
    server.respond(503, "starting");
    let verifier = HttpVerifier::new("health", HttpCheck::get(&server.url("/health"))).unwrap();
    let policy = ProbePolicy { interval, passes: 1, deadline: Duration::from_secs(30), ..Default::default() };
    let flip_after = Duration::from_millis(100 + rand::random::<u64>() % 200);
    let flipped_at = Arc::new(std::sync::Mutex::new(None));
    let (f, url_server) = (flipped_at.clone(), server);
    let flip = async move {
        tokio::time::sleep(flip_after).await;
        url_server.respond(200, "ok");
        *f.lock().unwrap() = Some(Instant::now());
        std::future::pending::<()>().await
    };
    let verdict = tokio::select! { v = probe(&verifier, &policy, |_| {}) => v, _ = flip => unreachable!() };
    let passed_at = Instant::now();
    assert!(verdict.passed);
    let flipped = flipped_at.lock().unwrap().expect("flipped");
    passed_at.duration_since(flipped).as_secs_f64() * 1000.0
}

/// The same with a bash curl loop.
async fn curl_once(server: &TestHttpServer, sleep: &str) -> f64 {
    server.respond(503, "starting");
    let script = format!("until curl -sf -o /dev/null {}; do sleep {sleep}; done", server.url("/health"));
    let mut child = tokio::process::Command::new("bash").args(["-c", &script]).spawn().unwrap();
    tokio::time::sleep(Duration::from_millis(100 + rand::random::<u64>() % 200)).await;
    server.respond(200, "ok");
    let flipped = Instant::now();
    child.wait().await.unwrap();
    flipped.elapsed().as_secs_f64() * 1000.0
}

/// The lab service in its own process (`rollback-bench-lab`), killed on drop.
struct LabProcess {
    child: std::process::Child,
    base: String,
}

impl LabProcess {
    fn start() -> LabProcess {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_rollback-bench-lab"))
            .arg("127.0.0.1:0")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the lab service");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let base = line.trim().strip_prefix("serving on ").expect("the lab service's address").to_owned();
        LabProcess { child, base }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for LabProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn our_throughput(lab: &LabProcess, concurrency: usize, duration: Duration) -> f64 {
    let count = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for i in 0..concurrency {
        let url = lab.url(&format!("/health/{i}"));
        let verifier = HttpVerifier::new("t", HttpCheck::get(&url)).unwrap();
        let count = count.clone();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let check = verifier.check().await.unwrap();
                assert_eq!(check.outcome, rollback_core::Outcome::Pass);
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / duration.as_secs_f64()
}

fn curl_loop_throughput(url: &str, duration: Duration) -> f64 {
    let script = format!(
        "n=0; end=$((SECONDS+{})); while [ $SECONDS -lt $end ]; do curl -sf -o /dev/null {url}; n=$((n+1)); done; echo $n",
        duration.as_secs()
    );
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse::<f64>().unwrap_or(0.0) / duration.as_secs_f64()
}

fn wrk_throughput(url: &str, concurrency: usize, duration: Duration) -> Option<f64> {
    let out = Command::new("wrk")
        .args(["-t2", &format!("-c{concurrency}"), &format!("-d{}s", duration.as_secs()), url])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().find(|l| l.starts_with("Requests/sec:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// (c): the public harness against the lab process, and the curl loop against the
/// same process after the same switch; medians in ms.
fn harness_vs_curl(rt: &tokio::runtime::Runtime, lab: &LabProcess, trials: usize, curl_ok: bool) -> (f64, Option<f64>) {
    use rollback_core::verify::bench::{LabControl, Scenario, Switch, detection};
    use rollback_core::verify::lab::Mode;
    let control = LabControl::new(&lab.base).unwrap();
    let verifier = HttpVerifier::new("health", HttpCheck::get(&lab.url("/health"))).unwrap();
    let policy = ProbePolicy {
        interval: Duration::from_millis(50),
        passes: 1,
        deadline: Duration::from_secs(30),
        ..Default::default()
    };
    // The switch at a random phase of the probe's 50 ms checks, as in (a).
    let (after, spread) = (Duration::from_millis(100), Duration::from_millis(200));
    let scenario = Scenario { from: Mode::Unhealthy, to: Mode::Healthy, after, settle: Duration::ZERO, spread };
    let report = rt.block_on(detection(&verifier, &policy, &control, &scenario, trials)).unwrap();
    assert_eq!(report.early, 0, "{report}");
    let ours = report.p50_delay.expect("decided after the switch").as_secs_f64() * 1e3;
    let curl = curl_ok.then(|| {
        let delays: Vec<f64> = (0..trials)
            .map(|_| {
                rt.block_on(async {
                    control.switch(Mode::Unhealthy).await.unwrap();
                    let script = format!("until curl -sf -o /dev/null {}; do sleep 0.05; done", lab.url("/health"));
                    let mut child = tokio::process::Command::new("bash").args(["-c", &script]).spawn().unwrap();
                    tokio::time::sleep(after + spread.mul_f64(rand::random::<f64>())).await;
                    control.switch(Mode::Healthy).await.unwrap();
                    let switched = Instant::now();
                    child.wait().await.unwrap();
                    switched.elapsed().as_secs_f64() * 1e3
                })
            })
            .collect();
        percentile(delays, 0.5)
    });
    println!();
    println!(
        "(c) detection delay through the public harness, lab service in its own process, I = 50 ms ({trials} trials)"
    );
    println!("| prober | median ms | max ms | requests per verdict |");
    println!("|---|---:|---:|---:|");
    let max = report.max_delay.map_or(0.0, |d| d.as_secs_f64() * 1e3);
    println!(
        "| `verify::bench::detection` (HttpVerifier, 1 pass) | {ours:.1} | {max:.1} | {:.1} |",
        report.checks_per_verdict
    );
    match curl {
        Some(c) => {
            println!("| `until curl -sf URL; do sleep 0.05; done` | {c:.1} | | |");
            rollback_benches::summary(
                "verify",
                "detection delay via the public harness, lab in its own process, I = 50 ms vs the curl loop (median)",
                &format!("{ours:.1} ms"),
                &format!("{c:.1} ms"),
                &format!("{:.2}× sooner", c / ours),
                &format!("≤ 30 ms: {}", rollback_benches::met(ours <= 30.0)),
            );
        }
        None => println!("| curl loop | curl not installed | | |"),
    }
    (ours, curl)
}

/// (d): the Prometheus verifier on the lab's `healthy` gauge through a real
/// Prometheus (1 s scrapes) against polling the service directly (`direct_ms`, from (c)).
fn prometheus_detection(rt: &tokio::runtime::Runtime, lab: &LabProcess, trials: usize, direct_ms: f64) {
    use rollback_core::testkit::TestPrometheus;
    use rollback_core::verify::bench::{LabControl, Scenario, detection};
    use rollback_core::verify::lab::Mode;
    use rollback_core::verify::{PrometheusVerifier, Threshold};
    println!();
    println!(
        "(d) metric-based detection: Prometheus (scrape interval 1 s) vs polling the service, I = 50 ms ({trials} trials)"
    );
    let Some(binary) = TestPrometheus::binary() else {
        println!("| Prometheus | not installed | |");
        return;
    };
    let addr: std::net::SocketAddr = lab.base.trim_start_matches("http://").parse().unwrap();
    let prom = rt.block_on(TestPrometheus::start(&binary, &[addr])).unwrap_or_else(|e| panic!("{e}"));
    let query = format!("rollback_lab_healthy{{instance=\"{addr}\"}}");
    let verifier =
        PrometheusVerifier::new("healthy", prom.client(), &query, Threshold { above: Some(0.5), below: None }).unwrap();
    let control = LabControl::new(&lab.base).unwrap();
    let policy = ProbePolicy {
        interval: Duration::from_millis(50),
        passes: 1,
        deadline: Duration::from_secs(30),
        ..Default::default()
    };
    // Unhealthy long enough that the gauge's last scrape says so before the probe starts.
    let settle = Duration::from_millis(2500);
    // At a random phase of the 1 s scrapes.
    let (after, spread) = (Duration::from_millis(500), Duration::from_secs(1));
    let scenario = Scenario { from: Mode::Unhealthy, to: Mode::Healthy, after, settle, spread };
    let report = rt.block_on(detection(&verifier, &policy, &control, &scenario, trials)).unwrap();
    let metric = report.p50_delay.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
    let max = report.max_delay.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
    println!("| prober | median ms | max ms | requests per verdict |");
    println!("|---|---:|---:|---:|");
    println!(
        "| Prometheus verifier on `rollback_lab_healthy` | {metric:.1} | {max:.1} | {:.1} |",
        report.checks_per_verdict
    );
    println!("| HttpVerifier polling the service (c) | {direct_ms:.1} | | |");
    if report.early > 0 {
        println!("({} of {trials} verdicts came before the switch: a stale scrape)", report.early);
    }
    rollback_benches::summary(
        "verify",
        "detection delay via Prometheus (1 s scrapes) vs polling the service directly, I = 50 ms (median)",
        &format!("{metric:.0} ms"),
        &format!("{direct_ms:.1} ms"),
        &format!("{:.0}× slower", metric / direct_ms),
        "reported (expected ≈ half the 1 s scrape interval + I/2 on average, at most 1 s + I)",
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--test") || std::env::var_os("ROLLBACK_BENCH_QUICK").is_some();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let trials = if quick { 5 } else { 120 };
    let interval = Duration::from_millis(50);
    let server = rt.block_on(TestHttpServer::start());

    let mut ours = Vec::new();
    for _ in 0..trials {
        ours.push(rt.block_on(ours_once(&server, interval)));
    }
    let curl_ok = have("curl");
    let mut curl = Vec::new();
    let mut runbook = Vec::new();
    if curl_ok {
        for _ in 0..trials {
            curl.push(rt.block_on(curl_once(&server, "0.05")));
        }
        for _ in 0..if quick { 1 } else { 4 } {
            runbook.push(rt.block_on(curl_once(&server, "5")));
        }
    }
    println!();
    println!("(a) detection delay after the service turns healthy, interval I = 50 ms ({trials} trials each)");
    println!("| prober | median ms | p90 ms | target |");
    println!("|---|---:|---:|---|");
    let (m, p) = (percentile(ours.clone(), 0.5), percentile(ours, 0.9));
    println!(
        "| rollback probe (HttpVerifier, 1 pass) | {m:.1} | {p:.1} | ≤ I/2 + 5 ms = 30 ms: {} |",
        if m <= 30.0 { "met" } else { "NOT met" }
    );
    if curl_ok {
        let theirs = percentile(curl.clone(), 0.5);
        rollback_benches::summary(
            "verify",
            "detection delay at I = 50 ms vs `until curl …; sleep 0.05` (median)",
            &format!("{m:.1} ms"),
            &format!("{theirs:.1} ms"),
            &format!("{:.2}× sooner", theirs / m),
            &format!("≤ 30 ms: {}", rollback_benches::met(m <= 30.0)),
        );
        println!(
            "| `until curl -sf URL; do sleep 0.05; done` | {:.1} | {:.1} | |",
            percentile(curl.clone(), 0.5),
            percentile(curl, 0.9)
        );
        println!(
            "| runbook `until curl -f URL; do sleep 5; done` ({} trials) | {:.0} | {:.0} | |",
            runbook.len(),
            percentile(runbook.clone(), 0.5),
            percentile(runbook, 0.9)
        );
    } else {
        println!("| curl loops | curl not installed | | |");
    }

    server.respond(200, "ok");
    // The probed service runs in a process of its own, for us and for wrk alike.
    let lab = LabProcess::start();
    let duration = Duration::from_secs(if quick { 1 } else { 5 });
    let concurrency = 64;
    let our_rate = rt.block_on(our_throughput(&lab, concurrency, duration));
    let curl_rate = if curl_ok { Some(curl_loop_throughput(&lab.url("/health"), duration)) } else { None };
    let wrk_rate = if have("wrk") { wrk_throughput(&lab.url("/health"), concurrency, duration) } else { None };
    println!();
    println!(
        "(b) probe throughput, {concurrency} concurrent probes over 64 endpoints of the lab service \
         (rollback-bench-lab, its own process), 2 cores, {duration:?}"
    );
    println!("| prober | checks/s | vs wrk |");
    println!("|---|---:|---:|");
    let vs = |r: f64| wrk_rate.map_or("-".into(), |w| format!("{:.0} %", r / w * 100.0));
    println!("| rollback HttpVerifier (reqwest, keep-alive) | {our_rate:.0} | {} |", vs(our_rate));
    match curl_rate {
        Some(r) => println!("| bash `while …; do curl -sf URL; done` | {r:.0} | {} |", vs(r)),
        None => println!("| bash curl loop | curl not installed | |"),
    }
    match wrk_rate {
        Some(w) => {
            println!("| wrk -t2 -c{concurrency} (ceiling) | {w:.0} | 100 % |");
            rollback_benches::summary(
                "verify",
                &format!("probe throughput, {concurrency} concurrent, server in its own process, vs wrk (the ceiling)"),
                &format!("{our_rate:.0} checks/s"),
                &format!("{w:.0} req/s"),
                &format!("{:.0} % of wrk", 100.0 * our_rate / w),
                &format!("≥ 60 %: {}", rollback_benches::met(our_rate / w >= 0.6)),
            );
        }
        None => println!("| wrk | not installed | |"),
    }

    let harness_trials = if quick { 3 } else { 40 };
    let (direct, _) = harness_vs_curl(&rt, &lab, harness_trials, curl_ok);
    prometheus_detection(&rt, &lab, if quick { 2 } else { 10 }, direct);
}
