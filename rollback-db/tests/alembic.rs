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
