//! `rollback verify run | bench | replay | replay-signals` against `rollback verify
//! serve` in its own process: what an on-call engineer runs to see what the rollback
//! will see, how fast a policy notices a recovery, and what another policy would
//! have decided on a journaled run.

#[allow(dead_code)] // the sample plans are not used here
mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{BIN, Out, layout, out};

/// `rollback verify serve` on a free port; killed on drop.
struct Lab {
    child: Child,
    base: String,
}

impl Lab {
    fn start(schedule: &str) -> Lab {
        let mut child = Command::new(BIN)
            .args(["verify", "serve", "--listen", "127.0.0.1:0", "--schedule", schedule])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let base = line.split_whitespace().nth(2).expect("serving on URL").to_owned();
        Lab { child, base }
    }

    fn switch(&self, mode: &str) {
        let out = Command::new("curl")
            .args(["-sf", "--data-binary", mode, &format!("{}/control", self.base)])
            .output()
            .unwrap();
        assert!(out.status.success(), "switch to {mode}");
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rollback(dir: &Path, lab: &Lab, args: &[&str]) -> Out {
    let o = Command::new(BIN)
        .args(args)
        .env("ROLLBACK_HOME", dir.join("home"))
        .env("DEPLOY_ROOT", dir.join("app"))
        .env("HEALTH_URL", format!("{}/health", lab.base))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    out(o)
}

/// A release-dir rollback verified by an HTTP check of the lab.
fn plan(dir: &Path) -> PathBuf {
    let path = dir.join("plan.toml");
    std::fs::write(
        &path,
        "name = \"app back\"\n[[targets]]\nkind = \"release-dir\"\nname = \"app\"\n\
         config = { root = \"${DEPLOY_ROOT}\" }\n[[verifiers]]\nkind = \"http\"\nname = \"health\"\n\
         config = { url = \"${HEALTH_URL}\" }\n[[stages]]\nname = \"app\"\nsteps = [{ id = \"app-back\", op = \
         \"rollback\", target = \"app\", to = \"previous\" }]\n[[stages]]\nname = \"verify\"\n\
         steps = [{ id = \"health\", op = \"verify\", verifier = \"health\", policy = { interval = \"50ms\", \
         passes = 3, deadline = \"10s\" } }]\n",
    )
    .unwrap();
    path
}

#[test]
fn verify_run_prints_each_observation_and_exits_by_the_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::start("0s=healthy");
    let plan = plan(dir.path());
    let plan = plan.to_str().unwrap();
    let o = rollback(dir.path(), &lab, &["verify", "run", plan, "--policy", "interval=20ms,passes=3"]);
    assert_eq!(o.code, 0, "{o}");
    assert_eq!(o.stdout.lines().filter(|l| l.contains("  pass  ")).count(), 3, "{o}");
    assert!(o.stdout.contains("HTTP 200") && o.stdout.contains("verdict: PASS — 3 consecutive passes"), "{o}");

    lab.switch("unhealthy");
    let o = rollback(dir.path(), &lab, &["verify", "run", plan, "--policy", "interval=20ms,max_failures=1"]);
    assert_eq!(o.code, 1, "{o}");
    assert!(o.stdout.contains("HTTP 503") && o.stdout.contains("verdict: FAIL — 2 failures (limit 1)"), "{o}");

    let o = rollback(dir.path(), &lab, &["verify", "run", plan, "--policy", "pases=3"]);
    assert_eq!(o.code, 2, "{o}");
    assert!(o.stderr.contains("did you mean \"passes\""), "{o}");
    let o = rollback(dir.path(), &lab, &["verify", "run", plan, "--verifier", "helth"]);
    assert_eq!(o.code, 2, "{o}");
    assert!(o.stderr.contains("did you mean \"health\""), "{o}");
}

#[test]
fn verify_bench_measures_latency_and_detection_against_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::start("0s=healthy");
    let plan = plan(dir.path());
    let args = [
        "verify",
        "bench",
        plan.to_str().unwrap(),
        "--checks",
        "100",
        "--concurrency",
        "4",
        "--lab",
        &lab.base,
        "--switch-after",
        "300ms",
        "--trials",
        "2",
        "--policy",
        "interval=25ms,passes=3",
        "--output",
        "json",
    ];
    let o = rollback(dir.path(), &lab, &args);
    assert_eq!(o.code, 0, "{o}");
    let bench: serde_json::Value = serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("{e}: {o}"));
    assert_eq!(bench["latency"]["checks"], 100);
    assert_eq!(bench["latency"]["outcomes"], serde_json::json!([100, 0, 0]), "healthy at first: {bench}");
    let detection = &bench["detection"];
    assert_eq!(detection["early"], 0, "no verdict before the recovery: {detection}");
    assert_eq!(detection["trials"].as_array().map(Vec::len), Some(2));
    let delay = humantime::parse_duration(detection["max_delay"].as_str().unwrap()).unwrap();
    // Three passes 25 ms apart after the switch.
    assert!(delay >= Duration::from_millis(50) && delay < Duration::from_secs(2), "{detection}");
    assert!(detection["checks_per_verdict"].as_f64().unwrap() >= 10.0, "300 ms at 25 ms, then 3: {detection}");

    let text = rollback(dir.path(), &lab, &["verify", "bench", plan.to_str().unwrap(), "--checks", "20"]);
    assert_eq!(text.code, 0, "{text}");
    assert!(text.stdout.contains("latency p99") && text.stdout.contains("checks/s"), "{text}");
}

#[test]
fn verify_replay_re_decides_a_journaled_run_and_signals_replay_says_when_thresholds_fire() {
    let dir = tempfile::tempdir().unwrap();
    layout(&dir.path().join("app"));
    let lab = Lab::start("0s=unhealthy,500ms=healthy");
    let plan = plan(dir.path());
    let o = rollback(dir.path(), &lab, &["run", plan.to_str().unwrap(), "--yes", "--output", "json"]);
    assert_eq!(o.code, 0, "{o}");
    let report: serde_json::Value = serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("{e}: {o}"));
    let run = report["run"].as_str().unwrap().to_owned();

    let same = rollback(dir.path(), &lab, &["verify", "replay", &run]);
    assert_eq!(same.code, 0, "{same}");
    assert!(same.stdout.contains("health (health): same verdict"), "{same}");
    let alarm = rollback(dir.path(), &lab, &["verify", "replay", &run, "--policy", "interval=50ms,max_failures=2"]);
    assert!(alarm.stdout.contains("would have FAILED where the run passed"), "{alarm}");
    let json = rollback(dir.path(), &lab, &["verify", "replay", &run, "--output", "json"]);
    let parsed: serde_json::Value = serde_json::from_str(&json.stdout).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(parsed[0]["steps"][0]["replayed"]["passed"], true, "{parsed}");

    let signals = dir.path().join("signals.jsonl");
    std::fs::write(
        &signals,
        "{\"at\": \"2025-10-16T18:00:00Z\", \"signals\": {\"error_rate\": 0.001}}\n\
         {\"at\": \"2025-10-16T18:05:00Z\", \"signals\": {\"error_rate\": 0.08}}\n\
         {\"at\": \"2025-10-16T18:10:00Z\", \"signals\": {\"error_rate\": 0.002}}\n",
    )
    .unwrap();
    let o = rollback(dir.path(), &lab, &["verify", "replay-signals", signals.to_str().unwrap()]);
    assert_eq!(o.code, 0, "{o}");
    assert!(o.stdout.contains("2025-10-16T18:05:00Z  RollbackNow"), "{o}");
    assert!(o.stdout.contains("fired:"), "{o}");
    let o = rollback(
        dir.path(),
        &lab,
        &["verify", "replay-signals", signals.to_str().unwrap(), "--threshold", "error_rate_high=0.1"],
    );
    assert!(!o.stdout.contains("RollbackNow"), "8 % is below a 10 % threshold: {o}");
    std::fs::write(&signals, "{\"at\": \"2025-10-16T18:00:00Z\", \"signals\": {\"eror_rate\": 0.001}}\n").unwrap();
    let o = rollback(dir.path(), &lab, &["verify", "replay-signals", signals.to_str().unwrap()]);
    assert_eq!(o.code, 2, "{o}");
    assert!(o.stderr.contains("signals.jsonl:1:") && o.stderr.contains("eror_rate"), "{o}");
}

/// Requests to the lab's `/health` from a thread until dropped, so rates have data.
struct Traffic(std::sync::Arc<std::sync::atomic::AtomicBool>, Option<std::thread::JoinHandle<()>>);

impl Traffic {
    fn drive(lab: &Lab) -> Traffic {
        use std::io::{Read, Write};
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let addr = lab.base.trim_start_matches("http://").trim_end_matches('/').to_owned();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
                    let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n");
                    let _ = s.read_to_end(&mut Vec::new());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Traffic(stop, Some(thread))
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.1.take() {
            let _ = t.join();
        }
    }
}

/// `replay-signals --prometheus`: the runbook's error rate over a past window, read
/// with range queries from a real Prometheus scraping `rollback verify serve`.
#[test]
fn replay_signals_reads_a_window_from_a_real_prometheus() {
    use rollback_core::testkit::TestPrometheus;
    let Some(binary) = TestPrometheus::binary() else { return };
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::start("0s=erroring:0.5");
    let addr: std::net::SocketAddr = lab.base.trim_start_matches("http://").trim_end_matches('/').parse().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let prom = runtime.block_on(TestPrometheus::start(&binary, &[addr])).unwrap_or_else(|e| panic!("{e}"));
    let _traffic = Traffic::drive(&lab);
    let rate = format!(
        r#"sum(rate(rollback_lab_requests_total{{code=~"5..",instance="{addr}"}}[1m])) / sum(rate(rollback_lab_requests_total{{instance="{addr}"}}[1m]))"#
    );
    runtime.block_on(prom.wait_for_value(&rate, Duration::from_secs(20))).unwrap();
    let query = format!("error_rate={rate}");
    let args =
        ["verify", "replay-signals", "--prometheus", prom.url(), "--query", &query, "--since", "30s", "--step", "1s"];
    let o = rollback(dir.path(), &lab, &args);
    assert_eq!(o.code, 0, "{o}");
    assert!(o.stdout.contains("RollbackNow") && o.stdout.contains("fired: error rate"), "{o}");
    let json = rollback(dir.path(), &lab, &[&args[..], &["--output", "json"]].concat());
    let changes: serde_json::Value = serde_json::from_str(&json.stdout).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(changes[0]["decision"]["action"], "rollback_now", "{changes}");

    // Bad input is refused before Prometheus is asked.
    let o = rollback(
        dir.path(),
        &lab,
        &["verify", "replay-signals", "--prometheus", prom.url(), "--query", "eror_rate=up"],
    );
    assert_eq!(o.code, 2, "{o}");
    assert!(o.stderr.contains("did you mean \"error_rate\""), "{o}");
    let o = rollback(dir.path(), &lab, &["verify", "replay-signals", "--prometheus", prom.url()]);
    assert!(o.code == 2 && o.stderr.contains("at least one --query"), "{o}");
    let o = rollback(
        dir.path(),
        &lab,
        &["verify", "replay-signals", "--prometheus", prom.url(), "--query", "error_rate=up", "--since", "yesterday"],
    );
    assert!(o.code == 2 && o.stderr.contains("--since \"yesterday\""), "{o}");
}
