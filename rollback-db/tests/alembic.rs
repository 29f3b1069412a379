//! The real `alembic` CLI on a real SQLite database.
//!
//! Needs `ROLLBACK_TEST_ALEMBIC` (the alembic program; `scripts/test.sh` installs it
//! in `.venv`). Under `CI=true` a missing Alembic fails the tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rollback_core::testkit::conformance;
use rollback_core::{IdempotencyKey, Observed, Request, Reversibility, Selector, Target};
use rollback_db::{Alembic, AlembicConfig};

fn alembic_program() -> Option<String> {
    rollback_core::testkit::server_env("ROLLBACK_TEST_ALEMBIC", "Alembic")
}

/// `alembic init`, three revisions, `alembic upgrade head` — all with the real CLI.
fn project(program: &str, root: &Path) -> PathBuf {
    std::fs::create_dir_all(root).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(program).args(args).current_dir(root).output().unwrap();
        assert!(out.status.success(), "alembic {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["init", "migrations"]);
    let ini = root.join("alembic.ini");
    let text = std::fs::read_to_string(&ini).unwrap();
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("sqlalchemy.url") {
                "sqlalchemy.url = sqlite:///app.db".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&ini, text).unwrap();
    for (i, table) in [(1, "users"), (2, "orders"), (3, "coupons")] {
        let down = if i == 1 { "None".to_string() } else { format!("'000{}'", i - 1) };
        std::fs::write(
            root.join(format!("migrations/versions/000{i}_{table}.py")),
            format!(
                "\"\"\"create {table}\"\"\"\nfrom alembic import op\nrevision = '000{i}'\ndown_revision = {down}\n\
                 branch_labels = None\ndepends_on = None\n\ndef upgrade():\n    op.execute(\"CREATE TABLE {table} (id INTEGER PRIMARY KEY)\")\n\n\
                 def downgrade():\n    op.execute(\"DROP TABLE {table}\")\n"
            ),
        )
        .unwrap();
    }
    run(&["-c", "alembic.ini", "upgrade", "head"]);
    ini
}

fn target(program: &str, ini: PathBuf) -> Alembic {
    Alembic::new(
        "schema",
        AlembicConfig { command: vec![program.to_owned()], config: ini, timeout: std::time::Duration::from_secs(60) },
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
    let preview = change.payload["sql_preview"].as_str().unwrap();
    assert!(preview.contains("DROP TABLE coupons;") && preview.contains("DROP TABLE orders;"), "{preview}");
    assert!(change.description.contains("4 statements"), "{}", change.description);
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
