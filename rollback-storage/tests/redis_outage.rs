//! A Redis outage in the middle of an invalidation: a private redis-server (append-only
//! file, fsync always) is killed with SIGKILL while `SCAN` + `UNLINK` works through
//! the pattern; the run fails with a report naming the step and the retryable cause;
//! `resume` refuses to act while the server is down and, once it is back (restarted
//! from its append-only file), finishes: no matching key left, every other key kept.
//!
//! Runs its own server on its own port, so killing it disturbs no other test. Gated
//! like every Redis test on `ROLLBACK_TEST_REDIS_URL` (`scripts/test.sh` installs
//! `redis-server` and sets it).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rollback_core::testkit::outage::{assert_cut_by_outage, free_port, wait_until};
use rollback_core::{Engine, Plan, Registry, RunState, Spec, Step, StepOp};

/// A redis-server of our own, persisted to an append-only file so a restart after
/// SIGKILL keeps every write it acknowledged.
struct PrivateRedis {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start() -> PrivateRedis {
        let port = free_port();
        let mut server = PrivateRedis { dir: tempfile::tempdir().unwrap(), port, child: None };
        server.restart();
        server
    }

    fn restart(&mut self) {
        let dir: PathBuf = self.dir.path().to_path_buf();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--dir", dir.to_str().unwrap()])
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        assert!(wait_until(Duration::from_secs(20), || self.answers()), "redis-server did not come up");
    }

    fn answers(&self) -> bool {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    async fn count(&self, pattern: &str) -> usize {
        let client = redis::Client::open(self.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        rollback_storage::redis::count_matching(&mut conn, pattern, 1000).await.unwrap() as usize
    }

    fn fill(&self, prefix: &str, n: usize) {
        let mut conn = redis::Client::open(self.url()).unwrap().get_connection().unwrap();
        for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
            let mut pipe = redis::pipe();
            for i in chunk {
                pipe.cmd("SET").arg(format!("{prefix}{i}")).arg("v").ignore();
            }
            pipe.query::<()>(&mut conn).unwrap();
        }
    }

    fn dbsize(&self) -> Option<usize> {
        let mut conn =
            redis::Client::open(self.url()).ok()?.get_connection_with_timeout(Duration::from_secs(1)).ok()?;
        redis::cmd("DBSIZE").query(&mut conn).ok()
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

const SESSIONS: usize = 40_000;
const KEPT: usize = 100;

fn plan(url: &str) -> Plan {
    let mut plan = Plan::new("drop the sessions").stage(
        "cache",
        1,
        vec![Step::new(
            "drop-sessions",
            StepOp::Action { target: "cache".into(), action: "invalidate".into(), params: serde_json::json!({}) },
        )],
    );
    plan.targets.push(Spec::new(
        "redis-invalidate",
        "cache",
        serde_json::json!({ "url": url, "timeout": "2s", "mode": "pattern", "pattern": "sess:*", "batch": 20 }),
    ));
    plan
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_killed_mid_invalidation_is_reported_and_resume_finishes() {
    if rollback_core::testkit::server_env("ROLLBACK_TEST_REDIS_URL", "Redis").is_none() {
        return;
    }
    let mut server = PrivateRedis::start();
    server.fill("sess:", SESSIONS);
    server.fill("keep:", KEPT);
    let work = tempfile::tempdir().unwrap();
    let mut registry = Registry::new();
    rollback_storage::register(&mut registry);
    let engine = Engine::builder(registry).home(work.path().join("home")).try_build().unwrap();

    let run = tokio::spawn({
        let engine = engine.clone();
        let plan = plan(&server.url());
        async move { engine.run(plan, Default::default()).await }
    });
    // Kill the server once the invalidation is under way, well before it ends.
    let started = Instant::now();
    loop {
        let size = server.dbsize().unwrap_or(usize::MAX);
        if size < SESSIONS + KEPT - 2_000 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the invalidation never started");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    server.kill();
    let report = run.await.unwrap().unwrap();

    assert_cut_by_outage(&report, "drop-sessions");
    let text = report.to_string();
    eprintln!("--- the report of the failed run\n{text}");

    let err = engine.resume(&report.run).await.expect_err("resume while the server is down fails before acting");
    assert!(err.is_retryable(), "{err}");

    server.restart();
    let left = server.count("sess:*").await;
    assert!(left > 0 && left < SESSIONS, "the outage cut the invalidation half-way: {left} of {SESSIONS} left");
    let report = engine.resume(&report.run).await.unwrap();
    assert_eq!(report.state, RunState::Succeeded, "{report}");
    assert_eq!(server.count("sess:*").await, 0, "no session key left");
    assert_eq!(server.count("keep:*").await, KEPT, "keys outside the pattern are kept");
    eprintln!("killed with {left} of {SESSIONS} keys left; resume finished them");
}
