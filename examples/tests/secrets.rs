//! Secrets never leak: one plan touches every backend with credentials and tokens set
//! to a marker — a PostgreSQL password (good and wrong), a Redis password, S3 keys,
//! a container's environment, a `.env` file — and the marker
//! must appear nowhere: not in the journal, reports, artifacts, errors, Debug output
//! or the logs (every `rollback*` event at TRACE).
//!
//! Needs `ROLLBACK_TEST_POSTGRES_URL`, `ROLLBACK_TEST_REDIS_URL`,
//! `ROLLBACK_TEST_S3_ENDPOINT` and `ROLLBACK_TEST_DOCKER` (`scripts/test.sh`).

use std::io::Write;
use std::sync::{Arc, Mutex};

use rollback_core::testkit::server_env;
use rollback_core::{Engine, FailurePolicy, Plan, ProbePolicy, SecretRef, Selector, Spec, Step, StepOp};

const MARKER: &str = "mk7f3a9eSECRET";

#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn keep_going(step: Step) -> Step {
    step.on_failure(FailurePolicy::Continue)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_marker_secret_reaches_no_journal_report_artifact_error_or_log() {
    let (Some(pg), Some(redis), Some(s3), Some(docker)) = (
        server_env("ROLLBACK_TEST_POSTGRES_URL", "PostgreSQL"),
        server_env("ROLLBACK_TEST_REDIS_URL", "Redis"),
        server_env("ROLLBACK_TEST_S3_ENDPOINT", "S3"),
        server_env("ROLLBACK_TEST_DOCKER", "Docker"),
    ) else {
        return;
    };
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("info,rollback_core=trace,rollback_db=trace,rollback_docker=trace,rollback_storage=trace")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    // PostgreSQL: a role whose password is the marker, owning a database.
    let admin = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&pg).await.unwrap();
    let role = "rb_secret_marker";
    for sql in [
        format!("DROP DATABASE IF EXISTS {role}_db"),
        format!("DROP ROLE IF EXISTS {role}"),
        format!("CREATE ROLE {role} LOGIN PASSWORD '{MARKER}'"),
        format!("CREATE DATABASE {role}_db OWNER {role}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&admin).await.unwrap();
    }
    let base = pg.rsplit_once('@').unwrap().1.rsplit_once('/').unwrap().0.to_string();
    // Secrets by reference, from private files (as a secret store would mount them).
    let secret = |name: &str, value: String| {
        let path = dir.path().join(format!("secret-{name}"));
        std::fs::write(&path, value).unwrap();
        SecretRef::File { path }
    };
    let pg_url = secret("pg", format!("postgres://{role}:{MARKER}@{base}/{role}_db"));
    let pg_bad_url = secret("pg-bad", format!("postgres://{role}:wrong-{MARKER}@{base}/{role}_db"));
    let redis_url = secret("redis", redis.replace("redis://", &format!("redis://:{MARKER}@")));
    let s3_key = secret("s3-key", format!("AKIA{MARKER}"));
    let s3_secret = secret("s3-secret", MARKER.to_string());
    // A container whose environment holds the marker, on the test images.
    let images = rollback_docker::testkit::TestImages::build(&docker, "rbtest-secrets", dir.path());
    let name = "rbt-secrets";
    rollback_docker::testkit::docker_quiet(&docker, &["rm", "-f", name]);
    rollback_docker::testkit::docker(
        &docker,
        &[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "host",
            "-e",
            &format!("API_TOKEN={MARKER}"),
            "-e",
            "PORT=1",
            &images.tag("v2"),
        ],
    );
    // A .env file with the marker as a password and inside a URL.
    let env_file = dir.path().join(".env.production");
    std::fs::write(&env_file, format!("DB_PASSWORD={MARKER}\nDATABASE_URL=postgres://app:{MARKER}@db/app\n")).unwrap();

    let mut plan = Plan::new("secrets everywhere");
    let mut files = Spec::new("files", "env-evidence", serde_json::json!({ "paths": [env_file] }));
    files.config["redact_env"] = serde_json::json!(true);
    plan.snapshots.push(files);
    let mut dump = Spec::new("pg-dump", "pg-dump", serde_json::json!({}));
    dump.secrets.insert("url".into(), pg_url);
    plan.snapshots.push(dump);
    let mut bad_dump = Spec::new("pg-dump", "pg-dump-bad", serde_json::json!({}));
    bad_dump.secrets.insert("url".into(), pg_bad_url);
    plan.snapshots.push(bad_dump);
    let docker_cfg = serde_json::json!({ "container": name, "docker": { "host": docker } });
    plan.snapshots.push(Spec::new("docker-evidence", "container-evidence", docker_cfg.clone()));
    plan.targets.push(Spec::new("docker-container", "api", docker_cfg));
    let mut redis_ping = Spec::new("redis-ping", "redis-auth", serde_json::Value::Null);
    redis_ping.secrets.insert("url".into(), redis_url);
    plan.verifiers.push(redis_ping);
    let mut bucket = Spec::new(
        "s3-bucket",
        "bucket",
        serde_json::json!({ "bucket": "rb-secrets-missing", "client": { "endpoint": s3 } }),
    );
    bucket.secrets.insert("access_key_id".into(), s3_key);
    bucket.secrets.insert("secret_access_key".into(), s3_secret);
    plan.verifiers.push(bucket);
    let quick = ProbePolicy {
        interval: std::time::Duration::from_millis(50),
        passes: 1,
        max_failures: 1,
        deadline: std::time::Duration::from_secs(5),
        ..Default::default()
    };
    let verify = |id: &str, verifier: &str| {
        keep_going(Step::new(id, StepOp::Verify { verifier: verifier.into(), policy: quick.clone() }))
    };
    plan = plan
        .stage(
            "evidence",
            1,
            vec![
                keep_going(Step::new("files", StepOp::Snapshot { snapshot: "env-evidence".into() })),
                keep_going(Step::new("dump", StepOp::Snapshot { snapshot: "pg-dump".into() })),
                keep_going(Step::new("dump-bad", StepOp::Snapshot { snapshot: "pg-dump-bad".into() })),
                keep_going(Step::new("container", StepOp::Snapshot { snapshot: "container-evidence".into() })),
            ],
        )
        .stage(
            "act",
            1,
            vec![keep_going(Step::new(
                "rollback-api",
                StepOp::Rollback { target: "api".into(), to: Selector::Exact(images.tag("v1")) },
            ))],
        )
        .stage("checks", 1, vec![verify("redis", "redis-auth"), verify("s3", "bucket")]);

    let registry = rollback_cli::registry();
    let registry_debug = format!("{registry:?}");
    let home = dir.path().join("home");
    let engine = Engine::builder(registry).home(&home).try_build().unwrap();
    let dry = engine.dry_run(&plan).await.unwrap();
    let report = engine.run(plan.clone(), Default::default()).await.unwrap();

    // The credentials were really used: the good dump ran, the wrong password and the
    // Redis password were refused, the S3 keys signed requests.
    let state = |id: &str| report.steps.iter().find(|s| s.step.as_str() == id).map(|s| (s.state, s.error.clone()));
    assert_eq!(state("dump").unwrap().0, rollback_core::StepState::Done, "{report}");
    assert!(state("dump-bad").unwrap().1.is_some(), "{report}");
    assert!(state("redis").unwrap().0 == rollback_core::StepState::Failed, "{report}");
    assert_eq!(state("rollback-api").unwrap().0, rollback_core::StepState::Done, "{report}");

    let mut haystacks = vec![
        ("journal, reports and artifacts", rollback_core::testkit::text_under(&home)),
        ("report", format!("{report}\n{report:?}")),
        ("dry-run", format!("{dry:?}")),
        ("plan", format!("{plan:?}")),
        ("registry", registry_debug),
        ("logs", String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned()),
    ];
    let errors: String =
        report.steps.iter().filter_map(|s| s.error.as_ref()).map(|e| format!("{e:?} {}", e.message)).collect();
    haystacks.push(("errors", errors));
    assert!(haystacks[0].1.len() > 10_000, "the home holds the journal and artifacts");
    assert!(haystacks[0].1.contains("API_TOKEN=***"), "the container's evidence is there, redacted");
    assert!(haystacks[0].1.contains("DB_PASSWORD=***"), "the .env evidence is there, redacted");
    assert!(haystacks[0].1.contains("postgres://app:***@db/app"), "URL passwords are redacted, the rest kept");
    assert!(haystacks[5].1.contains("rollback_core"), "the logs were captured");
    for (what, text) in &haystacks {
        let hits = text.matches(MARKER).count();
        assert_eq!(hits, 0, "the marker appears {hits} time(s) in the {what}: …{}…", {
            let at = text.find(MARKER).unwrap_or(0);
            &text[at.saturating_sub(200)..(at + 50).min(text.len())]
        });
    }
    rollback_docker::testkit::docker_quiet(&docker, &["rm", "-f", name]);
    for sql in [format!("DROP DATABASE IF EXISTS {role}_db"), format!("DROP ROLE IF EXISTS {role}")] {
        let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&admin).await;
    }
}
