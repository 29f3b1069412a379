//! Two runner hosts sharing one PostgreSQL journal: separate `rollback` processes,
//! each with its own home and `--host` id. Host A is SIGKILLed inside a step (a
//! down migration held on an advisory lock the test owns); host B's resume is
//! refused while A's lease lasts, naming A, and finishes the run once the lease
//! expired — each down script committed once, as the database itself shows. And a
//! `rollback cancel` on host B stops the run waiting on host A (exit 130). And host
//! A SIGSTOPped at a gate, taken over by B meanwhile, does nothing once continued:
//! its lease ran out, so it issues no effect and its journal writes are refused.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[allow(dead_code)] // each test binary uses some of the helpers
mod common;
use common::{BIN, Out, out};
use rollback_db::testing::{HELD_DOWN_LOCK, MIGRATIONS, applied, await_lock_waiter, down_log, held_migrations};

/// A fresh database `name` on the server at `admin`; its URL.
fn database(admin: &str, name: &str) -> String {
    for sql in [format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"), format!("CREATE DATABASE {name}")] {
        let made = Command::new("psql").args(["-X", "-q", "-d", admin, "-c", &sql]).output().unwrap();
        assert!(made.status.success(), "{sql}: {}", String::from_utf8_lossy(&made.stderr));
    }
    format!("{}/{name}", admin.rsplit_once('/').unwrap().0)
}

/// Two or more hosts' shared setup: a journal database and a schema database of the
/// test's own, the held migrations applied, and `plan` written.
struct Hosts {
    dir: tempfile::TempDir,
    journal_url: String,
    schema_url: String,
    migrations: std::path::PathBuf,
    plan: std::path::PathBuf,
}

impl Hosts {
    async fn new(tag: &str, plan: &str) -> Option<Hosts> {
        let admin = rollback_core::testkit::server_env("ROLLBACK_TEST_POSTGRES_URL", "PostgreSQL")?;
        let pid = std::process::id();
        let journal_url = database(&admin, &format!("rb_{tag}_journal_{pid}"));
        let schema_url = database(&admin, &format!("rb_{tag}_schema_{pid}"));
        let dir = tempfile::tempdir().unwrap();
        let migrations = dir.path().join("migrations");
        held_migrations(&schema_url, &migrations).await;
        let file = dir.path().join("plan.toml");
        std::fs::write(&file, plan).unwrap();
        Some(Hosts { dir, journal_url, schema_url, migrations, plan: file })
    }

    /// `rollback` as host `name`: its own home and id, the journal's URL read from
    /// the environment (`--journal env:JOURNAL_URL`), then `args`.
    fn host(&self, name: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "--home",
            self.dir.path().join(name).to_str().unwrap(),
            "--host",
            name,
            "--journal",
            "env:JOURNAL_URL",
        ])
        .args(args)
        .env("JOURNAL_URL", &self.journal_url)
        .env("SCHEMA_URL", &self.schema_url)
        .env("MIGRATIONS_DIR", &self.migrations)
        .env_remove("ROLLBACK_JOURNAL")
        .env_remove("ROLLBACK_HOME");
        cmd
    }

    /// `host` run to its end.
    fn finished(&self, name: &str, args: &[&str]) -> Out {
        out(self.host(name, args).output().unwrap())
    }

    /// `run` of the plan as host `name`, in the background, its output kept.
    fn start(&self, name: &str, args: &[&str]) -> std::process::Child {
        let mut cmd = self.host(name, args);
        cmd.args(["run", self.plan.to_str().unwrap()]).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.spawn().unwrap()
    }

    /// The run waiting at its gate, as host b lists it.
    fn waiting_run(&self) -> String {
        let started = Instant::now();
        loop {
            let o = self.finished("host-b", &["runs", "--output", "json"]);
            let runs: serde_json::Value = serde_json::from_str(&o.stdout).unwrap_or_default();
            let waiting = runs
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["steps"].as_array().into_iter().flatten().any(|s| s["state"] == "awaiting_approval"));
            if let Some(r) = waiting {
                return r["run"].as_str().unwrap().to_owned();
            }
            assert!(started.elapsed() < Duration::from_secs(60), "the run never reached its gate: {o}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

const PLAN: &str = r#"name = "schema back two"
[[targets]]
kind = "sqlx-migrations"
name = "schema"
config = { migrations = "${MIGRATIONS_DIR}" }
secrets = { url = { from = "env", var = "SCHEMA_URL" } }
[[stages]]
name = "schema"
steps = [{ id = "schema-down", op = "rollback", target = "schema", to = { back = 2 } }]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_host_died_is_resumed_on_another_once_its_lease_expired() {
    let Some(h) = Hosts::new("hosts", PLAN).await else { return };
    // Host A starts; the second down script waits on the test's lock; A is killed there.
    let hold = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&h.schema_url).await.unwrap();
    let mut held = hold.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)").bind(HELD_DOWN_LOCK).execute(&mut *held).await.unwrap();
    let mut a = h.start("host-a", &["--lease-ttl", "6s"]);
    await_lock_waiter(&mut held).await;
    a.kill().unwrap(); // SIGKILL: no clean-up, its lease stays until it expires
    let killed_at = Instant::now();
    assert!(a.wait().unwrap().code().is_none(), "host A died by a signal");
    assert_eq!(down_log(&h.schema_url).await.unwrap(), [MIGRATIONS[2]], "A committed the first down script only");

    let runs = h.finished("host-b", &["runs", "--output", "json"]);
    assert_eq!(runs.code, 0, "{runs}");
    let runs: serde_json::Value = serde_json::from_str(&runs.stdout).unwrap();
    let run = runs[0]["run"].as_str().expect("B sees A's run").to_owned();

    // While A's lease lasts, B is refused, told who holds it.
    let refused = h.finished("host-b", &["resume", &run]);
    assert!(killed_at.elapsed() < Duration::from_secs(5), "the refusal came inside the lease");
    assert_eq!(refused.code, 3, "locked: {refused}");
    assert!(refused.stderr.contains("host-a") && refused.stderr.contains(&a.id().to_string()), "{refused}");
    // A's orphaned session may finish its script now; uncommitted, it is rolled back.
    sqlx::query("SELECT pg_advisory_unlock($1)").bind(HELD_DOWN_LOCK).execute(&mut *held).await.unwrap();
    drop(held);
    hold.close().await;

    // Once the lease expired, B finishes the run: the second script once, the first not again.
    let resumed = loop {
        let o = h.finished("host-b", &["resume", &run, "--output", "json"]);
        if o.code != 3 || killed_at.elapsed() > Duration::from_secs(30) {
            break o;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(resumed.code, 0, "{resumed}");
    assert!(killed_at.elapsed() >= Duration::from_secs(2), "B waited for the lease to run out");
    let report: serde_json::Value = serde_json::from_str(&resumed.stdout).unwrap();
    assert_eq!(report["state"], "succeeded", "{resumed}");
    assert_eq!(down_log(&h.schema_url).await.unwrap(), [MIGRATIONS[2], MIGRATIONS[1]], "each down script once");
    assert_eq!(applied(&h.schema_url).await, [MIGRATIONS[0]]);

    // Host A's home sees the run finished, by B.
    let seen = h.finished("host-a", &["report", &run]);
    assert_eq!(seen.code, 0, "{seen}");
    assert!(seen.stdout.contains("succeeded"), "{seen}");
    for text in [refused.to_string(), resumed.to_string(), seen.to_string()] {
        assert!(!text.contains("rollback-test"), "a password in: {text}");
    }
}

const GATED: &str = r#"name = "schema back two, after a yes"
[[targets]]
kind = "sqlx-migrations"
name = "schema"
config = { migrations = "${MIGRATIONS_DIR}" }
secrets = { url = { from = "env", var = "SCHEMA_URL" } }
[[stages]]
name = "gate"
steps = [{ id = "go", op = "approval", prompt = "take the schema back?" }]
[[stages]]
name = "schema"
steps = [{ id = "schema-down", op = "rollback", target = "schema", to = { back = 2 } }]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_from_another_host_stops_a_waiting_run() {
    let Some(h) = Hosts::new("cancel", GATED).await else { return };
    let a = h.start("host-a", &[]);
    let run = h.waiting_run();
    let asked = h.finished("host-b", &["cancel", &run, "--by", "oncall"]);
    assert_eq!(asked.code, 0, "{asked}");
    let a = out(a.wait_with_output().unwrap());
    assert_eq!(a.code, 130, "a cancel from another host is an interruption: {a}");
    assert!(a.stdout.contains("cancelled") || a.stderr.contains("cancelled"), "{a}");
    assert_eq!(applied(&h.schema_url).await, MIGRATIONS, "nothing past the gate ran");

    let approved = h.finished("host-b", &["approve", &run, "go", "--by", "oncall"]);
    assert_eq!(approved.code, 0, "{approved}");
    let resumed = h.finished("host-b", &["resume", &run]);
    assert_eq!(resumed.code, 0, "{resumed}");
    assert_eq!(applied(&h.schema_url).await, [MIGRATIONS[0]]);
    let late = h.finished("host-b", &["cancel", &run, "--by", "oncall"]);
    assert_eq!(late.code, 1, "a finished run has nothing to cancel: {late}");
    assert!(late.stderr.contains("nothing to cancel"), "{late}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_host_continued_after_a_takeover_does_nothing() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let Some(h) = Hosts::new("stop", GATED).await else { return };
    let a = h.start("host-a", &["--lease-ttl", "3s"]);
    let run = h.waiting_run();
    let a_pid = Pid::from_raw(a.id() as i32);
    kill(a_pid, Signal::SIGSTOP).unwrap();

    // B takes the run over once A's lease ran out, and stops at the gate itself.
    let started = Instant::now();
    let took_over = loop {
        let o = h.finished("host-b", &["resume", &run, "--no-wait"]);
        if o.code != 3 {
            break o;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "A's lease never ran out: {o}");
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(took_over.code, 4, "B stopped at the gate: {took_over}");
    let approved = h.finished("host-b", &["approve", &run, "go", "--by", "oncall"]);
    assert_eq!(approved.code, 0, "{approved}");

    // A, continued, sees the approval but its lease ran out: no effect, no record.
    kill(a_pid, Signal::SIGCONT).unwrap();
    let a = out(a.wait_with_output().unwrap());
    assert_ne!(a.code, 0, "{a}");
    assert!(a.stderr.contains("lease") || a.stdout.contains("lease"), "A says its lease is gone: {a}");
    assert_eq!(down_log(&h.schema_url).await.unwrap(), Vec::<i64>::new(), "A issued no effect");
    assert_eq!(applied(&h.schema_url).await, MIGRATIONS);

    let resumed = h.finished("host-b", &["resume", &run]);
    assert_eq!(resumed.code, 0, "{resumed}");
    assert_eq!(down_log(&h.schema_url).await.unwrap(), [MIGRATIONS[2], MIGRATIONS[1]], "each down script once, by B");
    let report = h.finished("host-b", &["report", &run, "--output", "json"]);
    let report: serde_json::Value = serde_json::from_str(&report.stdout).unwrap();
    assert_eq!(report["state"], "succeeded");
}
