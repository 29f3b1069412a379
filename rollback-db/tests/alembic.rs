//! The real `alembic` CLI on a real SQLite database, and on PostgreSQL with the URL
//! given as a secret.
//!
//! Needs `ROLLBACK_TEST_ALEMBIC` (the alembic program; `scripts/test.sh` installs it
//! in `.venv` with psycopg2) and, for the PostgreSQL test, `ROLLBACK_TEST_POSTGRES_URL`.
//! Under `CI=true` a missing one fails the tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rollback_core::testkit::conformance;
use rollback_core::{IdempotencyKey, Observed, Request, Reversibility, Selector, Target};
use rollback_db::{Alembic, AlembicConfig};

fn alembic_program() -> Option<String> {
    rollback_core::testkit::server_env("ROLLBACK_TEST_ALEMBIC", "Alembic")
}

/// The shared three-revision project, brought to `head` with the real CLI.
fn project(program: &str, root: &Path) -> PathBuf {
    let ini = rollback_db::testing::alembic_project(program, root);
    let out = std::process::Command::new(program)
        .args(["-c", "alembic.ini", "upgrade", "head"])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(out.status.success(), "alembic upgrade head: {}", String::from_utf8_lossy(&out.stderr));
    ini
}

fn target(program: &str, ini: PathBuf) -> Alembic {
    Alembic::new(
        "schema",
        AlembicConfig {
            command: vec![program.to_owned()],
            config: ini,
            python: None,
            timeout: std::time::Duration::from_secs(60),
            url_env: None,
            x: Vec::new(),
        },
    )
    .unwrap()
}

#[tokio::test]
async fn alembic_conforms() {
    let Some(program) = alembic_program() else { return };
    let base = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    conformance::target_suite(|| {
        let root = base.path().join(format!("p{}", n.fetch_add(1, std::sync::atomic::Ordering::SeqCst)));
        let ini = project(&program, &root);
        let program = program.clone();
        async move { Arc::new(target(&program, ini)) as Arc<dyn Target> }
    })
    .await;
}

#[tokio::test]
async fn downgrade_with_sql_preview_and_observation() {
    let Some(program) = alembic_program() else { return };
    let root = tempfile::tempdir().unwrap();
    let schema = target(&program, project(&program, root.path()));
    assert_eq!(schema.current().await.unwrap().id, "0003");
    let history = schema.history().await.unwrap();
    let revs: Vec<&str> = history.iter().map(|r| r.version.id.as_str()).collect();
    assert_eq!(revs, ["0003", "0002", "0001", "base"]);
    let change = schema.prepare(&Request::To(Selector::Exact("0001".into()))).await.unwrap();
    assert_eq!(change.reversibility, Reversibility::NeedsSnapshot);
    let preview = change.preview.as_deref().unwrap();
    assert!(preview.contains("DROP TABLE coupons;") && preview.contains("DROP TABLE orders;"), "{preview}");
    assert!(change.description.contains("4 SQL statements"), "{}", change.description);
    assert_eq!(schema.current().await.unwrap().id, "0003", "the preview changed nothing");
    let key = IdempotencyKey::new("r/schema/fwd");
    schema.apply(&change, &key).await.unwrap();
    assert_eq!(schema.current().await.unwrap().id, "0001");
    assert_eq!(schema.observe(&change, &key).await.unwrap(), Observed::Done);
    // Half-way (someone ran one step of it): partial, and apply finishes it.
    let up = std::process::Command::new(&program)
        .args(["-c", "alembic.ini", "upgrade", "0002"])
        .current_dir(root.path())
        .output()
        .unwrap();
    assert!(up.status.success());
    let back_to_base = schema.prepare(&Request::To(Selector::Exact("base".into()))).await.unwrap();
    let step = std::process::Command::new(&program)
        .args(["-c", "alembic.ini", "downgrade", "0001"])
        .current_dir(root.path())
        .output()
        .unwrap();
    assert!(step.status.success());
    assert!(matches!(schema.observe(&back_to_base, &key).await.unwrap(), Observed::Partial(_)));
    schema.apply(&back_to_base, &key).await.unwrap();
    assert_eq!(schema.current().await.unwrap().id, "base");
}

/// A whole journaled rollback through the engine (prepare with its SQL preview,
/// apply, confirm) and a dry run each start one Python process, counted by a
/// wrapper around the project's interpreter.
#[tokio::test]
async fn one_rollback_step_starts_one_python_process() {
    let Some(program) = alembic_program() else { return };
    let root = tempfile::tempdir().unwrap();
    let ini = project(&program, &root.path().join("project"));
    let count = root.path().join("pythons");
    let python = rollback_db::testing::interpreter_of(&program);
    let wrapper = rollback_db::testing::counting_python(&root.path().join("python"), &python, &count);
    let started = || std::fs::read_to_string(&count).unwrap_or_default().lines().count();
    let plan = || {
        let mut plan = rollback_core::Plan::new("schema down");
        plan.targets.push(rollback_core::Spec::new(
            "alembic",
            "schema",
            serde_json::json!({ "command": [&program], "python": wrapper, "config": ini }),
        ));
        let op = rollback_core::StepOp::Rollback { target: "schema".into(), to: Selector::Previous };
        plan.stage("schema", 1, vec![rollback_core::Step::new("schema", op)])
    };
    let mut registry = rollback_core::Registry::new();
    rollback_db::register(&mut registry);
    let engine = rollback_core::Engine::builder(registry).home(root.path().join("home")).try_build().unwrap();

    let preview = engine.dry_run(&plan()).await.unwrap();
    assert!(format!("{preview:?}").contains("DROP TABLE coupons"), "the dry run shows the SQL");
    assert_eq!(started(), 1, "the dry run started one Python process");
    let report = engine.run(plan(), Default::default()).await.unwrap();
    assert_eq!(report.state, rollback_core::RunState::Succeeded, "{report}");
    assert_eq!(started(), 2, "the rollback started one more Python process, for all of its calls");
    let current = std::process::Command::new(&program)
        .args(["-c", "alembic.ini", "current"])
        .current_dir(ini.parent().unwrap())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&current.stdout).starts_with("0002"), "the CLI shows the downgrade");
}

/// Two heads: refused at prepare, naming both, before anything runs.
#[tokio::test]
async fn branched_histories_are_refused_naming_the_heads() {
    let Some(program) = alembic_program() else { return };
    let root = tempfile::tempdir().unwrap();
    let ini = project(&program, root.path());
    std::fs::write(
        root.path().join("migrations/versions/0004_fork.py"),
        "\"\"\"fork\"\"\"\nrevision = '0004'\ndown_revision = '0002'\nbranch_labels = None\ndepends_on = None\n\
         def upgrade():\n    pass\ndef downgrade():\n    pass\n",
    )
    .unwrap();
    let schema = target(&program, ini);
    let err = schema.prepare(&Request::To(Selector::Exact("0001".into()))).await.unwrap_err();
    assert_eq!(err.kind(), rollback_core::ErrorKind::Unsupported, "{err}");
    let message = err.to_string();
    assert!(message.contains("0003") && message.contains("0004") && message.contains("branched"), "{message}");
}

/// A project whose `env.py` reads `DATABASE_URL` (as most do), on PostgreSQL with a
/// password: the URL goes in through the spec's secret, the ini holds a wrong one,
/// and the password is in no description, preview, error or Debug output.
#[tokio::test]
async fn the_database_url_comes_from_a_secret_through_the_variable_env_py_reads() {
    let Some(program) = alembic_program() else { return };
    let Some(admin_url) = rollback_core::testkit::server_env("ROLLBACK_TEST_POSTGRES_URL", "PostgreSQL") else {
        return;
    };
    const PASSWORD: &str = "pw9Secret%x";
    let role = format!("rbalembic{}", std::process::id());
    let admin = sqlx::PgPool::connect(&admin_url).await.unwrap();
    for sql in [
        format!("DROP DATABASE IF EXISTS {role}"),
        format!("DROP ROLE IF EXISTS {role}"),
        format!("CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'"),
        format!("CREATE DATABASE {role} OWNER {role}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&admin).await.unwrap();
    }
    let url = format!("postgresql+psycopg2://{role}:{}@127.0.0.1:5432/{role}", PASSWORD.replace('%', "%25"));
    let root = tempfile::tempdir().unwrap();
    let ini = rollback_db::testing::alembic_project(&program, root.path());
    let text =
        std::fs::read_to_string(&ini).unwrap().replace("sqlite:///app.db", "postgresql://nobody@127.0.0.1:1/wrong");
    std::fs::write(&ini, text).unwrap();
    let env_py = root.path().join("migrations/env.py");
    let text = std::fs::read_to_string(&env_py).unwrap().replacen(
        "config = context.config\n",
        "config = context.config\nimport os\nif 'DATABASE_URL' in os.environ:\n    config.set_main_option('sqlalchemy.url', os.environ['DATABASE_URL'].replace('%', '%%'))\n",
        1,
    );
    std::fs::write(&env_py, text).unwrap();
    let up = std::process::Command::new(&program)
        .args(["-c", "alembic.ini", "upgrade", "head"])
        .env("DATABASE_URL", &url)
        .current_dir(root.path())
        .output()
        .unwrap();
    assert!(up.status.success(), "alembic upgrade head: {}", String::from_utf8_lossy(&up.stderr));

    // The secret comes from a file, as a mounted credential would.
    let secret_file = |name: &str, value: &str| {
        let path = root.path().join(name);
        std::fs::write(&path, value).unwrap();
        rollback_core::SecretRef::File { path }
    };
    let good = secret_file("db-url", &url);
    let spec = |url_env: Option<&str>, secret: &rollback_core::SecretRef| {
        let mut config = serde_json::json!({ "command": [program], "config": ini });
        if let Some(v) = url_env {
            config["url_env"] = v.into();
        }
        let mut spec = rollback_core::Spec::new("alembic", "schema", config);
        spec.secrets.insert("url".into(), secret.clone());
        spec
    };
    // Without url_env the secret is set as the ini's sqlalchemy.url through Alembic's
    // API (the ini's own URL is wrong; `%` in the password survives ConfigParser).
    let through_ini = rollback_core::kind::build::<Alembic>(spec(None, &good)).await.unwrap();
    assert_eq!(through_ini.current().await.unwrap().id, "0003");
    drop(through_ini);

    let schema = rollback_core::kind::build::<Alembic>(spec(Some("DATABASE_URL"), &good)).await.unwrap();
    assert_eq!(schema.current().await.unwrap().id, "0003");
    let change = schema.prepare(&Request::To(Selector::Exact("0001".into()))).await.unwrap();
    assert!(change.preview.as_deref().unwrap().contains("DROP TABLE coupons"));
    schema.apply(&change, &IdempotencyKey::new("r/schema/fwd")).await.unwrap();
    assert_eq!(schema.current().await.unwrap().id, "0001");
    let in_db = sqlx::PgPool::connect(&format!("{}/{role}", admin_url.rsplit_once('/').unwrap().0)).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT tablename::text FROM pg_tables WHERE tableowner = '{role}' ORDER BY 1"
    )))
    .fetch_all(&in_db)
    .await
    .unwrap();
    in_db.close().await;
    assert_eq!(tables, ["alembic_version", "users"], "the database itself shows the downgrade");

    // A failure keeps its cause (the exception line, not a fixed-size head) and
    // masks the URL and its password.
    let bad = secret_file("bad-url", &format!("{}/rbalembic_nope", url.rsplit_once('/').unwrap().0));
    let broken = rollback_core::kind::build::<Alembic>(spec(Some("DATABASE_URL"), &bad)).await.unwrap();
    let err = broken.current().await.unwrap_err().to_string();
    assert!(err.contains("OperationalError") && err.contains("does not exist"), "the cause is kept: {err}");
    let everything = format!("{err}\n{change:?}\n{}\n{schema:?}", serde_json::to_string(&change).unwrap());
    for secret in [PASSWORD, &PASSWORD.replace('%', "%25"), &url] {
        assert!(!everything.contains(secret), "{secret:?} leaked: {everything}");
    }
    for sql in [format!("DROP DATABASE IF EXISTS {role} WITH (FORCE)"), format!("DROP ROLE IF EXISTS {role}")] {
        let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&admin).await;
    }
}
