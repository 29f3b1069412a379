//! Point-in-time recovery on a private cluster with WAL archiving: a base backup,
//! rows, a restore point, more rows (the bad deploy), then recoveries through the
//! engine, checked in the recovered server and on disk: to the restore point, to a
//! time, a second one on the new timeline; the refusals, with nothing changed; a
//! failed verification leaving the live cluster serving.
//!
//! Needs the PostgreSQL server binaries; gated like every server test on
//! `ROLLBACK_TEST_POSTGRES_URL` (which `scripts/test.sh` sets once it installed them).

use std::path::PathBuf;
use std::time::Duration;

use rollback_core::{Engine, Plan, Registry, Report, RunState, Selector, Spec, Step, StepOp};
use rollback_db::testing::PrivatePostgres;

struct Cluster {
    server: PrivatePostgres,
    /// The WAL archive (archive engine), or where the restore points are listed.
    archive: PathBuf,
    backups: PathBuf,
    /// pgBackRest's configuration, when the cluster archives through it.
    pgbackrest: Option<PathBuf>,
    home: tempfile::TempDir,
}

fn cluster() -> Option<Cluster> {
    rollback_core::testkit::server_env("ROLLBACK_TEST_POSTGRES_URL", "PostgreSQL (server binaries)")?;
    let server = PrivatePostgres::init_with(&[
        "wal_level = replica",
        "archive_mode = on",
        "archive_command = 'test ! -f %ROOT%/archive/%f && cp %p %ROOT%/archive/%f'",
    ]);
    let archive = server.dir("archive");
    let backups = server.dir("backups");
    Some(Cluster { server, archive, backups, pgbackrest: None, home: tempfile::tempdir().unwrap() })
}

/// A cluster archiving through pgBackRest (Debian's `pgbackrest`), its stanza `rb`
/// in a repository of its own.
fn pgbackrest_cluster() -> Option<Cluster> {
    rollback_core::testkit::server_env("ROLLBACK_TEST_POSTGRES_URL", "PostgreSQL (server binaries)")?;
    if !std::path::Path::new("/usr/bin/pgbackrest").exists() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("pgbackrest is not installed: scripts/test.sh installs it (apt-get install pgbackrest)");
        }
        eprintln!("\n*** NOT RUN: the pgBackRest engine tests need /usr/bin/pgbackrest ***\n");
        return None;
    }
    let server = PrivatePostgres::init_with(&[
        "wal_level = replica",
        "archive_mode = on",
        "archive_command = 'pgbackrest --config=%ROOT%/pgbackrest.conf --stanza=rb archive-push %p'",
    ]);
    let config = server.pgbackrest_stanza();
    let conf = PathBuf::from(config.trim_start_matches("--config="));
    let points = server.dir("points");
    Some(Cluster {
        archive: points,
        backups: server.root.join("unused"),
        pgbackrest: Some(conf),
        server,
        home: tempfile::tempdir().unwrap(),
    })
}

impl Cluster {
    fn sql(&self, sql: &str) -> String {
        let out = std::process::Command::new(self.server.bin.join("psql"))
            .args(["-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.server.url("postgres"))
            .args(["-c", sql])
            .output()
            .unwrap();
        assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn rows(&self) -> Vec<String> {
        self.sql("SELECT note || ':' || count(*) FROM orders GROUP BY note ORDER BY min(id)")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn insert(&self, note: &str, n: u32) {
        self.sql(&format!("INSERT INTO orders (note) SELECT '{note}' FROM generate_series(1, {n})"));
    }

    fn base_backup(&self, name: &str) {
        match &self.pgbackrest {
            Some(conf) => {
                let config = format!("--config={}", conf.display());
                self.server.ctl(&["/usr/bin/pgbackrest", &config, "--stanza=rb", "--type=full", "backup"]);
            }
            None => self.server.base_backup(&self.backups.join(name)),
        }
    }

    fn timeline(&self) -> u32 {
        u32::from_str_radix(&self.sql("SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)"), 16).unwrap()
    }

    /// The URL as a mounted credential would give it: a file.
    fn url_file(&self) -> PathBuf {
        let path = self.home.path().join("db-url");
        std::fs::write(&path, self.server.url("postgres")).unwrap();
        path
    }

    fn specs(&self, verify: &[&str]) -> Vec<Spec> {
        let path = self.url_file();
        let secret = || {
            let mut s = std::collections::BTreeMap::new();
            s.insert("url".to_string(), rollback_core::SecretRef::File { path: path.clone() });
            s
        };
        let mut config = serde_json::json!({
            "data_dir": self.server.data, "archive": self.archive, "backups": self.backups,
            "spare_port": rollback_core::testkit::outage::free_port(),
            "os_user": if self.server.as_postgres_user { Some("postgres") } else { None },
            "server_options": self.server.options(), "verify": verify, "recovery_timeout": "120s",
            "data_loss": { "changed_columns": { "orders": "at" } },
        });
        if let Some(conf) = &self.pgbackrest {
            let object = config.as_object_mut().unwrap();
            object.remove("backups");
            object.insert("engine".into(), "pgbackrest".into());
            object.insert("stanza".into(), "rb".into());
            object.insert("pgbackrest_config".into(), serde_json::json!(conf));
        }
        let mut pitr = Spec::new("pg-pitr", "db", config);
        pitr.secrets = secret();
        let mut point = Spec::new("pg-restore-point", "points", serde_json::json!({ "archive": self.archive }));
        point.secrets = secret();
        vec![pitr, point]
    }

    fn engine(&self) -> Engine {
        let mut registry = Registry::new();
        rollback_db::register(&mut registry);
        Engine::builder(registry).home(self.home.path()).try_build().unwrap()
    }

    async fn restore_point(&self, name: &str) -> Report {
        let mut plan = Plan::new(format!("restore point {name}"));
        plan.targets = self.specs(&[]);
        let op = StepOp::Action {
            target: "points".into(),
            action: "create".into(),
            params: serde_json::json!({ "name": name }),
        };
        let plan = plan.stage("before deploy", 1, vec![Step::new("point", op)]);
        self.engine().run(plan, Default::default()).await.unwrap()
    }

    fn recovery_plan(&self, to: Selector, verify: &[&str]) -> Plan {
        let mut plan = Plan::new("db back");
        plan.targets = self.specs(verify);
        plan.stage("recover", 1, vec![Step::new("db-back", StepOp::Rollback { target: "db".into(), to })])
    }

    async fn recover(&self, to: Selector, verify: &[&str]) -> Report {
        let options = rollback_core::RunOptions { again: true, ..Default::default() };
        self.engine().run(self.recovery_plan(to, verify), options).await.unwrap()
    }

    fn beside(&self, what: &str) -> Vec<PathBuf> {
        let prefix = format!("data.rb-{what}-");
        std::fs::read_dir(&self.server.root)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(&prefix))
            .collect()
    }
}

/// What PostgreSQL said about where its recovery stopped, from the step's report.
fn recovery_stopped(report: &Report) -> String {
    let step = report.steps.iter().find(|s| s.step.as_str() == "db-back").expect("the recovery step");
    step.detail["recovery_stopped"].as_str().unwrap_or_default().to_owned()
}

fn setup_orders(c: &Cluster) {
    c.sql("CREATE TABLE orders (id serial PRIMARY KEY, note text NOT NULL, at timestamptz NOT NULL DEFAULT now())");
    c.insert("before-backup", 100);
    c.base_backup("b1");
    c.insert("good", 50);
}

#[tokio::test]
async fn recovers_to_a_restore_point_then_again_on_the_new_timeline() {
    let Some(c) = cluster() else { return };
    to_a_restore_point_then_again(c).await;
}

/// The same recoveries with pgBackRest as the engine (its restore, archive-get and
/// archive-push), everything else the same code.
#[tokio::test]
async fn the_pgbackrest_engine_recovers_the_same_way() {
    let Some(c) = pgbackrest_cluster() else { return };
    to_a_restore_point_then_again(c).await;
}

async fn to_a_restore_point_then_again(c: Cluster) {
    setup_orders(&c);
    let made = c.restore_point("rb-pre-deploy-1").await;
    assert_eq!(made.state, RunState::Succeeded, "{made}");
    c.insert("bad-deploy", 30);

    let dry = c.engine().dry_run(&c.recovery_plan(Selector::Exact("rb-pre-deploy-1".into()), &[])).await.unwrap();
    let shown = format!("{dry:?}");
    assert!(shown.contains("30 row(s) changed after") && shown.contains("recovery discards every write"), "{shown}");
    let report = c.recover(Selector::Exact("rb-pre-deploy-1".into()), &["SELECT count(*) = 150 FROM orders"]).await;
    assert_eq!(report.state, RunState::Succeeded, "{report}");
    let stopped = recovery_stopped(&report);
    assert!(stopped.contains("recovery stopping at restore point \"rb-pre-deploy-1\""), "{stopped:?}");
    assert_eq!(c.rows(), ["before-backup:100", "good:50"], "the bad deploy's rows are gone, the rest are there");
    assert_eq!(c.timeline(), 2, "the recovered cluster serves on the original port, on a new timeline");
    assert_eq!(c.beside("damaged").len(), 1, "the damaged data directory is kept");
    if c.pgbackrest.is_none() {
        assert!(c.archive.join("00000002.history").is_file(), "the new timeline's history is in the real archive");
    }

    // A second recovery, to a restore point made on timeline 2.
    c.insert("after-recovery", 10);
    assert_eq!(c.restore_point("rb-pre-deploy-2").await.state, RunState::Succeeded);
    c.insert("bad-again", 5);
    let report = c.recover(Selector::Previous, &[]).await;
    assert_eq!(report.state, RunState::Succeeded, "{report}");
    assert_eq!(c.rows(), ["before-backup:100", "good:50", "after-recovery:10"]);
    assert_eq!(c.timeline(), 3);
    assert_eq!(c.beside("damaged").len(), 2);
}

#[tokio::test]
async fn recovers_to_just_before_a_time() {
    let Some(c) = cluster() else { return };
    to_just_before_a_time(c).await;
}

#[tokio::test]
async fn the_pgbackrest_engine_recovers_to_just_before_a_time() {
    let Some(c) = pgbackrest_cluster() else { return };
    to_just_before_a_time(c).await;
}

async fn to_just_before_a_time(c: Cluster) {
    setup_orders(&c);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before: chrono::DateTime<chrono::Utc> = c.sql("SELECT to_json(clock_timestamp())#>>'{}'").parse().unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    c.insert("bad-deploy", 30);
    let report = c.recover(Selector::Before(before), &[]).await;
    assert_eq!(report.state, RunState::Succeeded, "{report}");
    let stopped = recovery_stopped(&report);
    assert!(stopped.contains("recovery stopping before commit of transaction"), "{stopped:?}");
    assert_eq!(c.rows(), ["before-backup:100", "good:50"]);
}

#[tokio::test]
async fn unreachable_targets_are_refused_naming_why_with_nothing_changed() {
    let Some(c) = cluster() else { return };
    unreachable_refused(c).await;
}

/// The same refusals with pgBackRest, but for the archive gap (its repository's
/// layout is its own).
#[tokio::test]
async fn the_pgbackrest_engine_refuses_unreachable_targets() {
    let Some(c) = pgbackrest_cluster() else { return };
    unreachable_refused(c).await;
}

async fn unreachable_refused(c: Cluster) {
    c.sql("CREATE TABLE orders (id serial PRIMARY KEY, note text NOT NULL, at timestamptz NOT NULL DEFAULT now())");
    assert_eq!(c.restore_point("rb-too-early").await.state, RunState::Succeeded);
    c.insert("before-backup", 10);
    c.base_backup("b1");
    c.insert("good", 5);
    assert_eq!(c.restore_point("rb-ok").await.state, RunState::Succeeded);

    let refused = |report: &Report, words: &[&str]| {
        let text = format!("{report}");
        assert_eq!(report.state, RunState::Failed, "{text}");
        for word in words {
            assert!(text.contains(word), "{word:?} not in: {text}");
        }
    };
    let duplicate = c.restore_point("rb-ok").await;
    refused(&duplicate, &["already exists", "rollback-restore-points.json"]);
    refused(&c.recover(Selector::Exact("rb-nope".into()), &[]).await, &["no restore point", "rb-ok"]);
    refused(&c.recover(Selector::Exact("rb-too-early".into()), &[]).await, &["before the oldest usable base backup"]);
    let future = chrono::Utc::now() + chrono::Duration::hours(1);
    refused(&c.recover(Selector::Before(future), &[]).await, &["not in the past"]);
    if c.pgbackrest.is_none() {
        // A gap: the archived segment the base backup starts in goes missing.
        let label = std::fs::read_to_string(c.backups.join("b1/backup_label")).unwrap();
        let start = label.lines().find_map(|l| l.split("(file ").nth(1)).unwrap().trim_end_matches(')').to_owned();
        let victim = c.archive.join(&start);
        let kept = c.server.root.join("kept-segment");
        std::fs::rename(&victim, &kept).unwrap();
        let gap = c.recover(Selector::Exact("rb-ok".into()), &[]).await;
        std::fs::rename(&kept, &victim).unwrap();
        refused(&gap, &["gap", &victim.file_name().unwrap().to_string_lossy()]);
    }

    assert_eq!(c.timeline(), 1, "nothing was recovered");
    assert_eq!(c.rows(), ["before-backup:10", "good:5"]);
    for what in ["recover", "damaged", "unverified", "recover-tmp"] {
        assert!(c.beside(what).is_empty(), "a refusal left {what} directories");
    }
}

#[tokio::test]
async fn a_failed_verification_leaves_the_live_cluster_serving_untouched() {
    let Some(c) = cluster() else { return };
    failed_verification_changes_nothing(c).await;
}

#[tokio::test]
async fn the_pgbackrest_engine_leaves_the_live_cluster_serving_after_a_failed_verification() {
    let Some(c) = pgbackrest_cluster() else { return };
    failed_verification_changes_nothing(c).await;
}

async fn failed_verification_changes_nothing(c: Cluster) {
    setup_orders(&c);
    assert_eq!(c.restore_point("rb-pre").await.state, RunState::Succeeded);
    c.insert("bad-deploy", 30);
    let report = c.recover(Selector::Exact("rb-pre".into()), &["SELECT count(*) = 999 FROM orders"]).await;
    assert_ne!(report.state, RunState::Succeeded, "{report}");
    assert!(format!("{report}").contains("verification returned false"), "{report}");
    assert_eq!(c.rows(), ["before-backup:100", "good:50", "bad-deploy:30"], "the live cluster is as it was");
    assert_eq!(c.timeline(), 1);
    assert!(c.beside("damaged").is_empty());
    assert_eq!(c.beside("unverified").len(), 1, "the unverified copy is kept for inspection");
}

/// A runner process SIGKILLed right after each phase of a recovery; the run is then
/// resumed by this (another) process: one recovered cluster, the right rows, the
/// recovery done once (timeline 2, one kept data directory, no copy left beside).
#[tokio::test]
async fn a_runner_killed_after_any_phase_is_resumed_by_another_process() {
    killed_after_any_phase_then_resumed(cluster).await;
}

#[tokio::test]
async fn the_pgbackrest_engine_resumes_a_runner_killed_after_any_phase() {
    killed_after_any_phase_then_resumed(pgbackrest_cluster).await;
}

async fn killed_after_any_phase_then_resumed(make: fn() -> Option<Cluster>) {
    for phase in ["Restored", "Promoted", "Verified", "LiveStopped", "LiveKept", "Switched"] {
        let Some(c) = make() else { return };
        setup_orders(&c);
        assert_eq!(c.restore_point("rb-pre").await.state, RunState::Succeeded);
        c.insert("bad-deploy", 30);
        let spec = c.specs(&["SELECT count(*) = 150 FROM orders"]).remove(0);
        let spec_file = c.home.path().join("spec.json");
        std::fs::write(&spec_file, serde_json::to_vec(&spec).unwrap()).unwrap();
        let mut plan = c.recovery_plan(Selector::Exact("rb-pre".into()), &[]);
        plan.targets.clear(); // the runner registers the target itself
        let plan_file = c.home.path().join("plan.json");
        std::fs::write(&plan_file, serde_json::to_vec(&plan).unwrap()).unwrap();
        let run = format!("killed-after-{}", phase.to_lowercase());
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_rollback-db-pitr-child"))
            .arg(&spec_file)
            .arg(c.home.path())
            .arg(&plan_file)
            .arg(&run)
            .arg(phase)
            .output()
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(child.status.signal(), Some(9), "after {phase}: {}", String::from_utf8_lossy(&child.stderr));

        let config = serde_json::from_value(spec.config.clone()).unwrap();
        let target = rollback_db::PgPitr::new("db", &c.server.url("postgres"), config).unwrap();
        let mut registry = Registry::new();
        rollback_db::register(&mut registry);
        registry.register_target(std::sync::Arc::new(target));
        let engine = Engine::builder(registry).home(c.home.path()).try_build().unwrap();
        let report = engine.resume(&run.parse().unwrap()).await.unwrap();
        assert_eq!(report.state, RunState::Succeeded, "resumed after {phase}: {report}");
        assert_eq!(c.rows(), ["before-backup:100", "good:50"], "after {phase}");
        assert_eq!(c.timeline(), 2, "after {phase}: recovered once");
        assert_eq!(c.beside("damaged").len(), 1, "after {phase}");
        assert!(c.beside("recover").is_empty() && c.beside("recover-tmp").is_empty(), "after {phase}");
    }
}

#[tokio::test]
async fn recovers_to_a_wal_location() {
    let Some(c) = cluster() else { return };
    to_a_wal_location(c).await;
}

#[tokio::test]
async fn the_pgbackrest_engine_recovers_to_a_wal_location() {
    let Some(c) = pgbackrest_cluster() else { return };
    to_a_wal_location(c).await;
}

async fn to_a_wal_location(c: Cluster) {
    setup_orders(&c);
    let lsn = c.sql("SELECT pg_current_wal_insert_lsn()");
    c.insert("bad-deploy", 30);
    let report = c.recover(Selector::Exact(format!("lsn:{lsn}")), &[]).await;
    assert_eq!(report.state, RunState::Succeeded, "{report}");
    assert_eq!(c.rows(), ["before-backup:100", "good:50"]);
    assert_eq!(c.timeline(), 2);
}

/// A recovery branches a new timeline at its target: a restore point made after it
/// on the old timeline is not on the new one's history, and is refused.
#[tokio::test]
async fn a_restore_point_left_behind_by_a_recovery_is_refused() {
    let Some(c) = cluster() else { return };
    left_behind_point_refused(c).await;
}

#[tokio::test]
async fn the_pgbackrest_engine_refuses_a_restore_point_left_behind() {
    let Some(c) = pgbackrest_cluster() else { return };
    left_behind_point_refused(c).await;
}

async fn left_behind_point_refused(c: Cluster) {
    setup_orders(&c);
    assert_eq!(c.restore_point("rb-a").await.state, RunState::Succeeded);
    c.insert("between", 5);
    assert_eq!(c.restore_point("rb-b").await.state, RunState::Succeeded);
    assert_eq!(c.recover(Selector::Exact("rb-a".into()), &[]).await.state, RunState::Succeeded);
    let refused = c.recover(Selector::Exact("rb-b".into()), &[]).await;
    let text = format!("{refused}");
    assert_eq!(refused.state, RunState::Failed, "{text}");
    assert!(text.contains("timeline 1, which the live timeline 2 left at"), "{text}");
    assert_eq!(c.rows(), ["before-backup:100", "good:50"], "nothing changed by the refusal");
}

#[tokio::test]
async fn failing_archiving_is_refused() {
    let Some(c) = cluster() else { return };
    failing_archiving_refused(c).await;
}

#[tokio::test]
async fn the_pgbackrest_engine_refuses_while_archiving_fails() {
    let Some(c) = pgbackrest_cluster() else { return };
    failing_archiving_refused(c).await;
}

async fn failing_archiving_refused(c: Cluster) {
    setup_orders(&c);
    assert_eq!(c.restore_point("rb-a").await.state, RunState::Succeeded);
    c.sql("ALTER SYSTEM SET archive_command = 'false'");
    c.sql("SELECT pg_reload_conf()");
    c.insert("unarchived", 1);
    c.sql("SELECT pg_switch_wal()");
    let failing = rollback_core::testkit::outage::wait_until(Duration::from_secs(60), || {
        c.sql("SELECT failed_count FROM pg_stat_archiver") != "0"
    });
    assert!(failing, "the archiver never failed");
    let refused = c.recover(Selector::Exact("rb-a".into()), &[]).await;
    let text = format!("{refused}");
    assert_eq!(refused.state, RunState::Failed, "{text}");
    assert!(text.contains("archiving is failing now"), "{text}");
    assert_eq!(c.timeline(), 1);
}

/// The core target suite's promises that a cluster can keep (the suite itself
/// assumes the current version is one of the history's, and a cluster's current
/// state is a WAL position): an unknown version is NotFound; a done change applied
/// again is a no-op; a change whose `from` no longer holds (the cluster was
/// recovered since it was prepared) is a Conflict that changes nothing, and observe
/// calls it Diverged.
#[tokio::test]
async fn keeps_the_target_contract() {
    let Some(c) = cluster() else { return };
    target_contract(c).await;
}

#[tokio::test]
async fn the_pgbackrest_engine_keeps_the_target_contract() {
    let Some(c) = pgbackrest_cluster() else { return };
    target_contract(c).await;
}

async fn target_contract(c: Cluster) {
    setup_orders(&c);
    assert_eq!(c.restore_point("rb-a").await.state, RunState::Succeeded);
    c.insert("between", 5);
    assert_eq!(c.restore_point("rb-b").await.state, RunState::Succeeded);
    c.insert("bad-deploy", 30);
    let spec = c.specs(&[]).remove(0);
    let config = serde_json::from_value(spec.config.clone()).unwrap();
    let target: std::sync::Arc<dyn rollback_core::Target> =
        std::sync::Arc::new(rollback_db::PgPitr::new("db", &c.server.url("postgres"), config).unwrap());
    rollback_core::testkit::conformance::errors_carry_kinds(target.clone()).await;

    use rollback_core::{ErrorKind, IdempotencyKey, Observed, Request};
    let stale = target.prepare(&Request::To(Selector::Exact("rb-a".into()))).await.unwrap();
    let change = target.prepare(&Request::To(Selector::Exact("rb-b".into()))).await.unwrap();
    let key = IdempotencyKey::new("contract/b/fwd");
    assert_eq!(target.observe(&change, &key).await.unwrap(), Observed::NotStarted);
    target.apply(&change, &key).await.unwrap();
    assert_eq!(target.observe(&change, &key).await.unwrap(), Observed::Done);
    target.apply(&change, &key).await.expect("re-applying a done recovery is a no-op");
    assert_eq!(c.timeline(), 2, "recovered once");
    assert_eq!(c.beside("damaged").len(), 1, "recovered once");
    assert_eq!(c.rows(), ["before-backup:100", "good:50", "between:5"]);

    let stale_key = IdempotencyKey::new("contract/a/fwd");
    let err = target.apply(&stale, &stale_key).await.expect_err("a stale recovery must be refused");
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(err.to_string().contains("timeline 2 now, not 1"), "{err}");
    assert!(matches!(target.observe(&stale, &stale_key).await.unwrap(), Observed::Diverged(_)));
    assert_eq!(c.rows(), ["before-backup:100", "good:50", "between:5"], "the refusal changed nothing");
    assert_eq!(c.beside("damaged").len(), 1);
    assert!(c.beside("recover").is_empty() && c.beside("recover-tmp").is_empty());
}
