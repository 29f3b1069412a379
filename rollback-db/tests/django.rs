//! Real Django migrations (`manage.py`) on a real SQLite database.
//!
//! Needs `ROLLBACK_TEST_DJANGO_PYTHON` (a python with Django; `scripts/test.sh`
//! installs it in `.venv`). Under `CI=true` a missing Django fails the tests.

use std::path::Path;
use std::sync::Arc;

use rollback_core::testkit::conformance;
use rollback_core::{IdempotencyKey, Observed, Request, Selector, Target};
use rollback_db::{Django, DjangoConfig};

fn python() -> Option<String> {
    rollback_core::testkit::server_env("ROLLBACK_TEST_DJANGO_PYTHON", "Django")
}

/// `startproject`, `startapp`, three model changes with `makemigrations`, `migrate`.
fn project(python: &str, root: &Path) {
    std::fs::create_dir_all(root).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(python).args(args).current_dir(root).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["-m", "django", "startproject", "shop", "."]);
    run(&["manage.py", "startapp", "orders"]);
    let settings = root.join("shop/settings.py");
    let text = std::fs::read_to_string(&settings).unwrap();
    std::fs::write(&settings, text.replacen("INSTALLED_APPS = [", "INSTALLED_APPS = [\n    'orders',", 1)).unwrap();
    let models = root.join("orders/models.py");
    let mut body =
        String::from("from django.db import models\n\nclass Order(models.Model):\n    total = models.IntegerField()\n");
    for (name, field) in [
        ("create_order", None),
        ("add_coupon", Some("    coupon = models.CharField(max_length=20, null=True)\n")),
        ("add_note", Some("    note = models.TextField(null=True)\n")),
    ] {
        if let Some(field) = field {
            body.push_str(field);
        }
        std::fs::write(&models, &body).unwrap();
        run(&["manage.py", "makemigrations", "orders", "-n", name]);
    }
    run(&["manage.py", "migrate", "orders"]);
}

fn target(python: &str, root: &Path) -> Django {
    let config = DjangoConfig {
        command: vec![python.to_owned(), "manage.py".into()],
        project: root.into(),
        app: "orders".into(),
        timeout: std::time::Duration::from_secs(120),
    };
    Django::new("orders-schema", config).unwrap()
}

#[tokio::test]
async fn django_conforms() {
    let Some(python) = python() else { return };
    let base = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    conformance::target_suite(|| {
        let root = base.path().join(format!("p{}", n.fetch_add(1, std::sync::atomic::Ordering::SeqCst)));
        project(&python, &root);
        let python = python.clone();
        async move { Arc::new(target(&python, &root)) as Arc<dyn Target> }
    })
    .await;
}

#[tokio::test]
async fn migrate_app_down_with_sqlmigrate_backwards_preview() {
    let Some(python) = python() else { return };
    let root = tempfile::tempdir().unwrap();
    project(&python, root.path());
    let schema = target(&python, root.path());
    assert_eq!(schema.current().await.unwrap().id, "0003_add_note");
    let history: Vec<String> = schema.history().await.unwrap().into_iter().map(|r| r.version.id).collect();
    assert_eq!(history, ["0003_add_note", "0002_add_coupon", "0001_create_order", "zero"]);
    let change = schema.prepare(&Request::To(Selector::Exact("0001_create_order".into()))).await.unwrap();
    let preview = change.preview.as_deref().unwrap();
    assert!(preview.contains("DROP COLUMN \"note\"") && preview.contains("DROP COLUMN \"coupon\""), "{preview}");
    let key = IdempotencyKey::new("r/orders-schema/fwd");
    schema.apply(&change, &key).await.unwrap();
    assert_eq!(schema.current().await.unwrap().id, "0001_create_order");
    assert_eq!(schema.observe(&change, &key).await.unwrap(), Observed::Done);
}
