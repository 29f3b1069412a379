//! The example plans through `rollback` as a user runs them: a separate process, real
//! files, a real health endpoint, a real SQLite database, the loader's bad-input corpus.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use rollback_core::Plan;
use rollback_core::testkit::TestHttpServer;

#[allow(dead_code)] // each test binary uses some of the helpers
mod common;

use common::{BIN as RUNNER, PLANS, layout};

fn runner(args: &[&str], root: &Path, health: &str) -> Command {
    let mut cmd = Command::new(RUNNER);
    cmd.args(args)
        .arg("--home")
        .arg(root.join(".rollback"))
        .env("DEPLOY_ROOT", root)
        .env("HEALTH_URL", health)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn output(cmd: &mut Command) -> (i32, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_run_drill_and_history_from_a_toml_plan() {
    let server = TestHttpServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("app");
    layout(&root);
    let plan = format!("{PLANS}/local.toml");
    let health = server.url("/health");

    let (code, text) = output(&mut runner(&["dry-run", &plan], &root, &health));
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("switch current from releases/20251016-180000 to releases/20251015-120000"), "{text}");
    assert_eq!(
        std::fs::read_link(root.join("current")).unwrap().to_str(),
        Some("releases/20251016-180000"),
        "dry run changed nothing"
    );

    let (code, text) = output(&mut runner(&["run", &plan, "--reason", "p99 900 ms"], &root, &health));
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("ROLLBACK IN PROGRESS") && text.contains("ROLLBACK COMPLETE"), "{text}");
    assert!(text.contains("→ app-back"), "progress lines: {text}");
    assert_eq!(std::fs::read_link(root.join("current")).unwrap().to_str(), Some("releases/20251015-120000"));
    assert_eq!(std::fs::read_to_string(root.join("shared/.env.production")).unwrap(), "A=1\n");

    let (code, text) = output(&mut runner(&["history", "--target", "app"], &root, &health));
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("succeeded")
            && text.contains("app 20251016-180000 -> 20251015-120000")
            && text.contains("p99 900 ms"),
        "{text}"
    );

    // A drill of the same plan: nothing older to go back to for the config → it fails
    // in preflight, changes nothing, and says so.
    let (code, text) = output(&mut runner(&["drill", &plan], &root, &health));
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("preflight failed") && text.contains("drill took"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_from_another_process_with_authority() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("app");
    layout(&root);
    let plan = format!("{PLANS}/planned-with-approval.json");
    let mut child = runner(&["run", &plan], &root, "unused").spawn().unwrap();
    // The live view (with the notifier messages) is on stderr.
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let run = loop {
        let line = lines.next().expect("the runner printed the run id").unwrap();
        if let Some(id) = line.split("Run: ").nth(1) {
            break id.trim().to_string();
        }
    };
    let (code, text) = output(&mut runner(&["approve", &run, "approve", "--by", "intern"], &root, "unused"));
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("may not decide") && text.contains("tech-lead"), "{text}");
    let (code, text) = output(&mut runner(&["approve", &run, "approve", "--by", "tech-lead"], &root, "unused"));
    assert_eq!(code, 0, "{text}");
    assert!(child.wait().unwrap().success());
    assert_eq!(std::fs::read_link(root.join("current")).unwrap().to_str(), Some("releases/20251015-120000"));
}

#[test]
fn bad_plan_files_get_errors_with_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "name = \"x\"\n[[stages]\nname = 1\n").unwrap();
    let (code, text) = output(&mut runner(&["dry-run", bad.to_str().unwrap()], dir.path(), "unused"));
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("bad.toml:2:"), "{text}");
    let json = dir.path().join("bad.json");
    std::fs::write(&json, "{\"name\": \"x\",\n \"stages\": [}\n").unwrap();
    let (code, text) = output(&mut runner(&["dry-run", json.to_str().unwrap()], dir.path(), "unused"));
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("bad.json:2:"), "{text}");
    let (code, text) =
        output(Command::new(RUNNER).args(["dry-run", &format!("{PLANS}/local.toml")]).env_remove("DEPLOY_ROOT"));
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("DEPLOY_ROOT is not set") && text.contains("local.toml:"), "{text}");
}

#[test]
fn sample_plans_round_trip() {
    for entry in std::fs::read_dir(PLANS).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("${DEPLOY_ROOT}", "/srv/app")
            .replace("${HEALTH_URL}", "http://127.0.0.1:1/health")
            .replace("${DB_PATH}", "/srv/app/app.db")
            .replace("${MIGRATIONS}", "/srv/app/migrations");
        let plan =
            if path.extension().unwrap() == "json" { Plan::from_json_str(&text) } else { Plan::from_toml_str(&text) }
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(Plan::from_toml_str(&plan.to_toml_string().unwrap()).unwrap(), plan);
        assert_eq!(Plan::from_json_str(&plan.to_json_string().unwrap()).unwrap(), plan);
    }
}

/// Every sample plan passes `rollback validate` (every kind, field and reference
/// checked offline against the full registry), with its variables set.
#[test]
fn every_sample_plan_validates() {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(PLANS).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut cmd = runner(&["validate", path.to_str().unwrap()], dir.path(), "http://127.0.0.1:1/health");
        for var in text.split("${").skip(1).filter_map(|rest| rest.split_once('}').map(|(name, _)| name)) {
            cmd.env(var, format!("http://127.0.0.1:1/{}", var.to_lowercase()));
        }
        let (code, out) = output(&mut cmd);
        assert_eq!(code, 0, "{}: {out}", path.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_sample_plan_dry_runs_against_a_real_database() {
    let dir = tempfile::tempdir().unwrap();
    let migrations = dir.path().join("migrations");
    std::fs::create_dir_all(&migrations).unwrap();
    for (file, sql) in [
        ("1_users.up.sql", "CREATE TABLE users (id INTEGER PRIMARY KEY);"),
        ("1_users.down.sql", "DROP TABLE users;"),
        ("2_orders.up.sql", "CREATE TABLE orders (id INTEGER PRIMARY KEY);"),
        ("2_orders.down.sql", "DROP TABLE orders;"),
    ] {
        std::fs::write(migrations.join(file), sql).unwrap();
    }
    let db = dir.path().join("app.db");
    let pool =
        sqlx::sqlite::SqlitePoolOptions::new().connect(&format!("sqlite://{}?mode=rwc", db.display())).await.unwrap();
    sqlx::migrate::Migrator::new(migrations.clone()).await.unwrap().run(&pool).await.unwrap();
    pool.close().await;
    let mut cmd = runner(&["dry-run", &format!("{PLANS}/sqlite-schema.toml")], dir.path(), "unused");
    cmd.env("DB_PATH", &db).env("MIGRATIONS", &migrations);
    let (code, text) = output(&mut cmd);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("migrate down 2 -> 1 (undo 2 orders)"), "{text}");
}

/// The loader's bad-input corpus (rollback-core/tests/plans/bad) through the binary:
/// exit 2, the located error, nothing created outside the home.
#[test]
fn the_bad_input_corpus_exits_2_with_located_errors_and_creates_nothing() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rollback-core/tests/plans/bad");
    let corpus = corpus.canonicalize().unwrap();
    let expectations = std::fs::read_to_string(corpus.join("expect.txt")).unwrap();
    let cwd = tempfile::tempdir().unwrap();
    for line in expectations.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (file, expect) = line.split_once(": ").unwrap();
        let out = Command::new(RUNNER)
            .args(["dry-run", corpus.join(file).to_str().unwrap(), "--home", cwd.path().join("home").to_str().unwrap()])
            .current_dir(cwd.path())
            .env_remove("ROLLBACK_CORPUS_UNSET")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).replace(&format!("{}/", corpus.display()), "");
        assert_eq!(out.status.code(), Some(2), "{file}: {text}");
        assert!(text.contains(expect), "{file}: expected {expect:?} in {text}");
        assert!(!text.contains("panicked"), "{file}: {text}");
    }
    let left: Vec<String> =
        std::fs::read_dir(cwd.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(left.iter().all(|name| name == "home"), "created outside the home: {left:?}");
}
