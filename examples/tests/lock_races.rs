//! 100 separate processes held at a barrier, released together to lock the same
//! resource: under every lock kind exactly one proceeds and the other 99 get a
//! "locked" error naming the winner.
//!
//! Needs `ROLLBACK_TEST_POSTGRES_URL` and `ROLLBACK_TEST_REDIS_URL` for those kinds
//! (`scripts/test.sh` starts the servers); the Lease lock runs on the Kubernetes API
//! double, the file lock on a temporary directory.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CONTENDERS: usize = 100;

fn race(kind: &str, location: &str, dir: &Path) {
    let barrier = dir.join(format!("go-{kind}"));
    let resource = format!("race-{kind}-{}", std::process::id());
    let children: Vec<_> = (0..CONTENDERS)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_lock-contender"))
                // The winner holds on until every other contender has decided.
                .args([kind, &resource, barrier.to_str().unwrap(), "15000", location])
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn a contender")
        })
        .collect();
    let ready = |dir: &Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("go-{kind}.ready.")))
            .count()
    };
    let started = Instant::now();
    while ready(dir) < CONTENDERS && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(ready(dir), CONTENDERS, "every contender is connected and waiting");
    std::fs::write(&barrier, b"go").unwrap();
    let outcomes: Vec<serde_json::Value> = children
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().unwrap();
            serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stdout)))
        })
        .collect();
    let winners: Vec<&serde_json::Value> = outcomes.iter().filter(|o| o["outcome"] == "acquired").collect();
    let errors: Vec<&serde_json::Value> = outcomes.iter().filter(|o| o["outcome"] == "error").collect();
    assert!(errors.is_empty(), "{kind}: contenders failed otherwise: {errors:?}");
    assert_eq!(winners.len(), 1, "{kind}: exactly one proceeds: {winners:?}");
    let winner_pid = winners[0]["pid"].as_u64().unwrap();
    for loser in outcomes.iter().filter(|o| o["outcome"] == "locked") {
        let error = loser["error"].as_str().unwrap();
        assert!(error.contains(&format!("pid {winner_pid}")), "{kind}: the error names the holder: {error}");
    }
    assert_eq!(outcomes.iter().filter(|o| o["outcome"] == "locked").count(), CONTENDERS - 1);
    eprintln!("{kind}: 1 acquired, {} locked", CONTENDERS - 1);
}

#[test]
fn file_lock_race() {
    let dir = tempfile::tempdir().unwrap();
    let locks = dir.path().join("locks");
    std::fs::create_dir_all(&locks).unwrap();
    race("file", locks.to_str().unwrap(), dir.path());
}

#[test]
fn postgres_lock_race() {
    let Some(url) = rollback_core::testkit::server_env("ROLLBACK_TEST_POSTGRES_URL", "PostgreSQL") else { return };
    let dir = tempfile::tempdir().unwrap();
    race("postgres", &url, dir.path());
}

#[test]
fn redis_lock_race() {
    let Some(url) = rollback_core::testkit::server_env("ROLLBACK_TEST_REDIS_URL", "Redis") else { return };
    let dir = tempfile::tempdir().unwrap();
    race("redis", &url, dir.path());
}

#[test]
fn lease_lock_race_on_the_api_double() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let double = runtime.block_on(rollback_k8s::double::ApiDouble::start());
    let dir = tempfile::tempdir().unwrap();
    race("lease", double.url(), dir.path());
    drop(double);
}

/// One `lock-contender hold` process, with its stdout read line by line.
struct HoldingProcess {
    child: std::process::Child,
    out: std::io::BufReader<std::process::ChildStdout>,
}

impl HoldingProcess {
    fn start(kind: &str, resource: &str, ttl_ms: u64, location: &str, journal: &Path) -> HoldingProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lock-contender"))
            .args(["hold", kind, resource, &ttl_ms.to_string(), location, journal.to_str().unwrap()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn a holder");
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        HoldingProcess { child, out }
    }

    fn line(&mut self) -> String {
        use std::io::BufRead;
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        line.trim_end().to_string()
    }

    /// Lets the holder make its second append and returns what it said.
    fn append_again(&mut self) -> String {
        use std::io::Write;
        self.child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
        let verdict = self.line();
        assert!(self.child.wait().unwrap().success());
        verdict
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }
}

impl Drop for HoldingProcess {
    /// A failed assertion must not leave a stopped holder behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A holds a short lease and is stopped (SIGSTOP) past it; B is refused while the
/// lease lasts, then takes over with a larger token; A, continued, is refused its
/// next journal append, and B's goes through.
fn stopped_holder_is_fenced_off(kind: &str, location: &str) {
    // Long enough for a second process to start and be refused on a loaded machine.
    const TTL_MS: u64 = 4_000;
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let resource = format!("fence-{kind}-{}", std::process::id());
    // A's lease starts after this instant, so it cannot end before it + TTL.
    let a_started = Instant::now();
    let mut a = HoldingProcess::start(kind, &resource, TTL_MS, location, &journal);
    let a_held = a.line();
    assert!(a_held.starts_with("held "), "{kind}: A holds the lease: {a_held}");
    a.signal(nix::sys::signal::Signal::SIGSTOP);
    let stopped_at = Instant::now();

    let mut early = HoldingProcess::start(kind, &resource, TTL_MS, location, &journal);
    let refused = early.line();
    assert!(refused.starts_with("locked "), "{kind}: A's lease still holds: {refused}");
    assert!(refused.contains(&format!("pid {}", a.child.id())), "{kind}: the refusal names A: {refused}");
    drop(early);

    let mut b = loop {
        std::thread::sleep(Duration::from_millis(250));
        let mut b = HoldingProcess::start(kind, &resource, 60_000, location, &journal);
        let said = b.line();
        if said.starts_with("held ") {
            assert!(a_started.elapsed() >= Duration::from_millis(TTL_MS), "{kind}: B got in only after A's lease");
            let tokens: Vec<u64> =
                [&a_held, &said].iter().map(|l| l.trim_start_matches("held ").parse().unwrap()).collect();
            assert!(tokens[1] > tokens[0], "{kind}: B's token is larger: {tokens:?}");
            break b;
        }
        assert!(said.starts_with("locked "), "{kind}: {said}");
        drop(b);
        assert!(stopped_at.elapsed() < Duration::from_secs(30), "{kind}: A's lease never expired");
    };

    a.signal(nix::sys::signal::Signal::SIGCONT);
    let verdict = a.append_again();
    assert!(verdict.starts_with("rejected ") && verdict.contains("stale fencing token"), "{kind}: {verdict}");
    assert_eq!(b.append_again(), "appended", "{kind}: the new holder writes on");
    eprintln!("{kind}: stopped holder fenced off after {:?}", stopped_at.elapsed());
}

#[test]
fn file_lock_stopped_holder_is_fenced_off() {
    let dir = tempfile::tempdir().unwrap();
    stopped_holder_is_fenced_off("file", dir.path().to_str().unwrap());
}

#[test]
fn postgres_lock_stopped_holder_is_fenced_off() {
    let Some(url) = rollback_core::testkit::server_env("ROLLBACK_TEST_POSTGRES_URL", "PostgreSQL") else { return };
    stopped_holder_is_fenced_off("postgres", &url);
}

#[test]
fn redis_lock_stopped_holder_is_fenced_off() {
    let Some(url) = rollback_core::testkit::server_env("ROLLBACK_TEST_REDIS_URL", "Redis") else { return };
    stopped_holder_is_fenced_off("redis", &url);
}

#[test]
fn lease_lock_stopped_holder_is_fenced_off() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let double = runtime.block_on(rollback_k8s::double::ApiDouble::start());
    stopped_holder_is_fenced_off("lease", double.url());
    drop(double);
}
