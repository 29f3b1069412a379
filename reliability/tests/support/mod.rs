//! Shared state of the kill-point tests: the servers, the test images, the Kubernetes
//! API double, and helpers to run the fault runner in a separate process.
#![allow(dead_code)]

pub mod at_kill;
pub mod compensation;
pub mod evidence;
pub mod fixture;
pub mod points;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;

use rollback_core::testkit::server_env;
use rollback_docker::testkit::TestImages;
use rollback_k8s::double::ApiDouble;
use rollback_storage::s3::{S3, S3ClientConfig, S3Credentials};

/// The fault runner built from this crate.
pub const RUNNER: &str = env!("CARGO_BIN_EXE_rollback-fault-runner");

/// Credentials moto accepts; the runner reads them through secret references.
pub const S3_KEY: (&str, &str) = ("RBF_S3_ACCESS_KEY_ID", "test");
/// The secret half.
pub const S3_SECRET: (&str, &str) = ("RBF_S3_SECRET_ACCESS_KEY", "test");

/// The servers' addresses from the `ROLLBACK_TEST_*` variables.
pub struct Servers {
    pub docker: String,
    pub postgres: String,
    pub redis: String,
    pub s3: String,
}

impl Servers {
    /// Every server this test needs; `None` (test not run, said loudly) when one is
    /// missing locally, a panic under `CI=true`.
    pub fn from_env() -> Option<Servers> {
        // Ask for each one, so the message names every missing server.
        let docker = server_env("ROLLBACK_TEST_DOCKER", "Docker");
        let postgres = server_env("ROLLBACK_TEST_POSTGRES_URL", "PostgreSQL");
        let redis = server_env("ROLLBACK_TEST_REDIS_URL", "Redis");
        let s3 = server_env("ROLLBACK_TEST_S3_ENDPOINT", "S3 (moto_server)");
        Some(Servers { docker: docker?, postgres: postgres?, redis: redis?, s3: s3? })
    }
}

/// What every kill point shares: servers, images, the double (in this process, reached
/// by the runners over HTTP) and clients for the evidence.
pub struct Shared {
    pub servers: Servers,
    pub images: TestImages,
    pub double: ApiDouble,
    pub s3: S3,
    pub redis: redis::Client,
    pub work: tempfile::TempDir,
    /// A shared PostgreSQL journal every runner uses instead of its home's files.
    pub journal: Option<String>,
}

impl Shared {
    /// `images`: the test images' repository, one per test binary — nextest runs the
    /// kill-point tests in parallel, and each removes its image tags when it ends.
    pub async fn start(servers: Servers, images: &str) -> Shared {
        let work = tempfile::tempdir().unwrap();
        let images = TestImages::build(&servers.docker, images, work.path());
        let double = ApiDouble::start().await;
        let config = S3ClientConfig { endpoint: Some(servers.s3.clone()), ..Default::default() };
        let s3 = S3::connect(&config, Some(S3Credentials::new(S3_KEY.1, S3_SECRET.1))).await.unwrap();
        let redis = redis::Client::open(servers.redis.as_str()).unwrap();
        Shared { servers, images, double, s3, redis, work, journal: None }
    }

    /// Every runner journals in a database of its own on the test server (PgJournal)
    /// instead of its home's files.
    pub async fn with_shared_journal(mut self, name: &str) -> Shared {
        let admin =
            sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&self.servers.postgres).await.unwrap();
        for sql in [format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"), format!("CREATE DATABASE {name}")] {
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&admin).await.unwrap();
        }
        admin.close().await;
        self.journal = Some(format!("{}/{name}", self.servers.postgres.rsplit_once('/').unwrap().0));
        self
    }
}

/// What one runner process did.
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// The run id from the first line, `run <id>`.
    pub fn run(&self) -> rollback_core::RunId {
        let first = self.stdout.lines().next().unwrap_or_default();
        first.strip_prefix("run ").unwrap_or_else(|| panic!("no run id in {:?}", self.stdout)).parse().unwrap()
    }

    pub fn killed(&self) -> bool {
        self.status.signal() == Some(9)
    }

    /// For messages: the end of stdout and stderr.
    pub fn tail(&self) -> String {
        let tail = |s: &str| s.chars().rev().take(3000).collect::<Vec<_>>().into_iter().rev().collect::<String>();
        format!("status {:?}\n--- stdout\n{}\n--- stderr\n{}", self.status, tail(&self.stdout), tail(&self.stderr))
    }
}

/// Runs the fault runner with `args`, the secrets the plan references in its
/// environment and, when given, the crash point.
pub async fn runner(args: &[&str], env: &[(String, String)], crash: Option<&str>) -> Outcome {
    let mut cmd = tokio::process::Command::new(RUNNER);
    cmd.args(args).env_remove("ROLLBACK_TEST_CRASH_AT").env("RUST_LOG", "warn");
    cmd.env(S3_KEY.0, S3_KEY.1).env(S3_SECRET.0, S3_SECRET.1);
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(point) = crash {
        cmd.env("ROLLBACK_TEST_CRASH_AT", point);
    }
    let out = cmd.output().await.expect("run rollback-fault-runner");
    Outcome {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `run <home> <plan>`.
pub async fn run_plan(home: &Path, plan: &Path, env: &[(String, String)], crash: Option<&str>) -> Outcome {
    runner(&["run", home.to_str().unwrap(), plan.to_str().unwrap()], env, crash).await
}

/// `resume <home> <run>`.
pub async fn resume(home: &Path, run: &rollback_core::RunId, env: &[(String, String)]) -> Outcome {
    runner(&["resume", home.to_str().unwrap(), run.as_str()], env, None).await
}

/// The first column of `sql`'s rows, as integers.
pub async fn i64_column(pool: &sqlx::PgPool, sql: &str) -> Vec<i64> {
    use sqlx::Row;
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<i64, _>(0))
        .collect()
}
