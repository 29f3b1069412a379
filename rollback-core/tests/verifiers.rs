//! Built-in verifiers against real local servers and real subprocesses.

use std::sync::Arc;
use std::time::Duration;

use rollback_core::testkit::TestHttpServer;
use rollback_core::verify::{
    All, CommandCheck, CommandVerifier, HttpCheck, HttpVerifier, JsonMatch, LogScanCheck, LogScanVerifier, LogSource,
    Not, PrometheusClient, PrometheusVerifier, TcpVerifier, Threshold,
};
use rollback_core::{Outcome, ProbePolicy, Verifier, probe};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_statuses_bodies_json_and_latency() {
    let server = TestHttpServer::start().await;
    server.respond(200, r#"{"status":"ok","db":{"up":true}}"#);
    let mut check = HttpCheck::get(&server.url("/health"));
    check.body_contains = Some("status".into());
    check.json = Some(JsonMatch { pointer: "/db/up".into(), equals: serde_json::json!(true) });
    let v = HttpVerifier::new("health", check.clone()).unwrap();
    let result = v.check().await.unwrap();
    assert_eq!(result.outcome, Outcome::Pass, "{}", result.detail);
    assert_eq!(result.measurements["status"], 200.0);

    server.respond(200, r#"{"status":"ok","db":{"up":false}}"#);
    let result = v.check().await.unwrap();
    assert_eq!(result.outcome, Outcome::Fail);
    assert!(result.detail.contains("/db/up"), "{}", result.detail);

    server.respond(503, "{}");
    assert_eq!(v.check().await.unwrap().outcome, Outcome::Fail);
    let mut accept_503 = HttpCheck::get(&server.url("/health"));
    accept_503.statuses = vec![503];
    assert_eq!(HttpVerifier::new("x", accept_503).unwrap().check().await.unwrap().outcome, Outcome::Pass);

    server.respond(200, "{}");
    server.delay(Duration::from_millis(120));
    let mut slow = HttpCheck::get(&server.url("/health"));
    slow.max_latency = Some(Duration::from_millis(50));
    let result = HttpVerifier::new("slow", slow).unwrap().check().await.unwrap();
    assert_eq!(result.outcome, Outcome::Fail);
    assert!(result.detail.contains("ms >"), "{}", result.detail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_reuses_connections_and_hides_credentials() {
    let server = TestHttpServer::start().await;
    let home = std::env::var("HOME").unwrap_or_default();
    assert!(!home.is_empty(), "the test uses $HOME as a stand-in secret");
    let url = server.url("/health").replace("http://", "http://deployer:hunter2@");
    let mut check = HttpCheck::get(&url);
    check.headers_from_env.insert("x-health-token".into(), "HOME".into());
    let v = HttpVerifier::new("health", check).unwrap();
    for _ in 0..5 {
        let result = v.check().await.unwrap();
        assert!(!result.detail.contains("hunter2"));
        // A probe interval: hyper returns a connection to its pool just after the body
        // ends, so back-to-back requests may race it; probes never run back to back.
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(server.connections(), 1, "five checks over one kept-alive connection");
    let captured = server.captured();
    assert_eq!(captured[0].headers.get("x-health-token"), Some(&home), "the header is sent");
    assert!(!format!("{v:?}").contains("hunter2") && !format!("{v:?}").contains(&home), "{v:?}");
    // A refused connection names the redacted URL only.
    let dead = HttpVerifier::new("dead", HttpCheck::get("http://u:hunter2@127.0.0.1:9/health")).unwrap();
    let result = dead.check().await.unwrap();
    assert_eq!(result.outcome, Outcome::Fail);
    assert!(result.detail.contains("***") && !result.detail.contains("hunter2"), "{}", result.detail);
    let err = HttpVerifier::new("bad", HttpCheck::get("::not a url hunter2")).unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[tokio::test]
async fn tcp_pass_and_refused() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    assert_eq!(TcpVerifier::new("up", &addr).check().await.unwrap().outcome, Outcome::Pass);
    drop(listener);
    assert_eq!(TcpVerifier::new("down", &addr).check().await.unwrap().outcome, Outcome::Fail);
}

fn command(argv: &[&str], timeout_ms: u64) -> CommandCheck {
    CommandCheck {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        exit_code: 0,
        stdout_matches: None,
        timeout: Duration::from_millis(timeout_ms),
    }
}

#[tokio::test]
async fn command_exit_codes_output_and_timeouts_kill_the_child() {
    let ok = CommandVerifier::new("ok", command(&["true"], 5000)).unwrap();
    assert_eq!(ok.check().await.unwrap().outcome, Outcome::Pass);
    let failing = CommandVerifier::new("no", command(&["false"], 5000)).unwrap();
    let result = failing.check().await.unwrap();
    assert_eq!(result.outcome, Outcome::Fail);
    assert_eq!(result.measurements["exit_code"], 1.0);
    let mut matching = command(&["echo", "PONG"], 5000);
    matching.stdout_matches = Some("^PING$".into());
    assert_eq!(CommandVerifier::new("m", matching).unwrap().check().await.unwrap().outcome, Outcome::Fail);
    // No shell: metacharacters are plain arguments.
    let mut literal = command(&["echo", "a;b|c"], 5000);
    literal.stdout_matches = Some(r"^a;b\|c$".into());
    assert_eq!(CommandVerifier::new("l", literal).unwrap().check().await.unwrap().outcome, Outcome::Pass);

    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let script = format!("echo $$ > {}; exec sleep 30", pidfile.display());
    let hang = CommandVerifier::new("hang", command(&["sh", "-c", &script], 300)).unwrap();
    let started = std::time::Instant::now();
    let result = hang.check().await.unwrap();
    assert_eq!(result.outcome, Outcome::Inconclusive);
    assert!(result.detail.contains("killed"), "{}", result.detail);
    assert!(started.elapsed() < Duration::from_secs(5));
    let pid = std::fs::read_to_string(&pidfile).unwrap().trim().to_string();
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "the child {pid} was killed and reaped");
    assert!(CommandVerifier::new("empty", command(&[], 1)).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_instant_queries_against_thresholds() {
    let server = TestHttpServer::start().await;
    let vector = |v: &str| {
        format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{}},"value":[1700000000.1,"{v}"]}}]}}}}"#
        )
    };
    server.route("/api/v1/query", 200, &vector("0.0004"));
    let client = PrometheusClient::new(&server.url("/"), &Default::default()).unwrap();
    let below = Threshold { below: Some(0.001), above: None };
    let v = PrometheusVerifier::new("errors", client.clone(), "rate(errors[5m])", below).unwrap();
    assert_eq!(v.check().await.unwrap().outcome, Outcome::Pass);
    server.route("/api/v1/query", 200, &vector("0.02"));
    let result = v.check().await.unwrap();
    assert_eq!(result.outcome, Outcome::Fail);
    assert_eq!(result.measurements["value"], 0.02);
    server.route("/api/v1/query", 200, r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#);
    assert_eq!(v.check().await.unwrap().outcome, Outcome::Inconclusive);
    server.route("/api/v1/query", 200, r#"{"status":"success","data":{"resultType":"scalar","result":[1,"7"]}}"#);
    assert_eq!(client.query("7").await.unwrap(), Some(7.0));
    server.route("/api/v1/query", 400, r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#);
    let err = client.query("rate(").await.unwrap_err();
    assert!(err.to_string().contains("parse error"), "{err}");
    let query = server.captured().last().unwrap().path.clone();
    assert!(query.starts_with("/api/v1/query?query=rate%28"), "{query}");
}

#[tokio::test]
async fn log_scan_counts_matches_in_files_and_command_output() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    std::fs::write(&log, "ERROR old\nINFO a\nINFO b\nERROR new\n").unwrap();
    let check =
        |source, max, last| LogScanCheck { source, pattern: "ERROR".into(), max_matches: max, last_lines: last };
    let v = LogScanVerifier::new("f", check(LogSource::File(log.clone()), 1, None)).unwrap();
    let result = v.check().await.unwrap();
    assert_eq!((result.outcome, result.measurements["matches"]), (Outcome::Fail, 2.0));
    let v = LogScanVerifier::new("f", check(LogSource::File(log.clone()), 1, Some(2))).unwrap();
    assert_eq!(v.check().await.unwrap().outcome, Outcome::Pass, "only the last two lines");
    let cmd = LogSource::Command(vec!["cat".into(), log.display().to_string()]);
    assert_eq!(LogScanVerifier::new("c", check(cmd, 2, None)).unwrap().check().await.unwrap().outcome, Outcome::Pass);
    assert!(
        LogScanVerifier::new(
            "bad",
            LogScanCheck { source: LogSource::File(log), pattern: "(".into(), max_matches: 0, last_lines: None }
        )
        .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_waits_for_a_service_that_turns_healthy_and_combinators_compose() {
    let server = TestHttpServer::start().await;
    server.respond(503, "starting");
    let health: Arc<dyn Verifier> =
        Arc::new(HttpVerifier::new("health", HttpCheck::get(&server.url("/health"))).unwrap());
    let old: Arc<dyn Verifier> = Arc::new(HttpVerifier::new("old", HttpCheck::get(&server.url("/old-only"))).unwrap());
    server.route("/old-only", 404, "gone");
    let all: Arc<dyn Verifier> =
        Arc::new(All::new("healthy-and-old-gone", vec![health, Arc::new(Not::new("old-gone", old))]));
    let policy = ProbePolicy {
        interval: Duration::from_millis(20),
        passes: 3,
        deadline: Duration::from_secs(10),
        ..Default::default()
    };
    let flip = tokio::spawn({
        let url = server.url("/");
        async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            url
        }
    });
    let verdict = {
        let server = &server;
        let probing = probe(all.as_ref(), &policy, |_| {});
        tokio::pin!(probing);
        tokio::select! {
            v = &mut probing => v,
            _ = async { flip.await.unwrap(); server.respond(200, "ok"); std::future::pending::<()>().await } => unreachable!(),
        }
    };
    assert!(verdict.passed, "{}", verdict.reason);
    assert!(verdict.checks.iter().any(|c| c.outcome == Outcome::Fail), "it saw the service starting");
    let passes_at_end = verdict.checks.iter().rev().take(3).all(|c| c.outcome == Outcome::Pass);
    assert!(passes_at_end);
}
