//! The quickstart: a throw-away deployment of a small demo HTTP service (releases v1
//! and v2, a SQLite database with sqlx migrations, a config file with timestamped
//! backups), a broken deploy of v2, signals, a decision, the standard strategy
//! (evidence, release switch, config restore, schema down, verification), a report.

use std::path::{Path, PathBuf};

use std::time::Duration;

use rollback_core::decision::{Decision, DecisionPolicy, Signals};
use rollback_core::local::register_local_kinds;
use rollback_core::strategy::{RollbackRequest, Standard};
use rollback_core::testkit::TestHttpServer;
use rollback_core::verify::register_builtin_verifiers;
use rollback_core::{DryRun, Engine, Registry, Report, RunOptions, Selector, Spec, Strategy};

/// What the quickstart did.
#[derive(Debug)]
pub struct Outcome {
    /// The decision taken from the signals.
    pub decision: Decision,
    /// The dry run shown before running.
    pub dry_run: DryRun,
    /// The run's report.
    pub report: Report,
    /// `/health` status before and after.
    pub health: (u16, u16),
    /// The deployment's directory.
    pub dir: PathBuf,
    /// The run's journal file.
    pub journal: PathBuf,
    /// Evidence artifacts kept.
    pub evidence: Vec<PathBuf>,
}

const GOOD_ENV: &str = "ORDERS_API=http://orders.internal\nDB_PASSWORD=s3cr3t-quickstart\n";
const BROKEN_ENV: &str = "ORDERS_API=http://orders.internall\nDB_PASSWORD=s3cr3t-quickstart\n";

fn write(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text)
}

/// The demo's migrations: v1's schema, and v2's migration that v2 needs.
const MIGRATIONS: &[(&str, &str)] = &[
    ("20251001_create_orders.up.sql", "CREATE TABLE orders (id INTEGER PRIMARY KEY, total_cents INTEGER NOT NULL);"),
    ("20251001_create_orders.down.sql", "DROP TABLE orders;"),
    ("20251016_add_coupon.up.sql", "ALTER TABLE orders ADD COLUMN coupon TEXT;"),
    ("20251016_add_coupon.down.sql", "ALTER TABLE orders DROP COLUMN coupon;"),
];

/// Runs sqlx's own migrator over the migrations whose version is at most `upto`.
async fn migrate(dir: &Path, upto: &str) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let staged = dir.join("app/shared/migrations");
    std::fs::create_dir_all(&staged)?;
    for (name, sql) in MIGRATIONS.iter().filter(|(n, _)| n[..8] <= upto[..8]) {
        write(&staged.join(name), sql)?;
    }
    let url = format!("sqlite://{}?mode=rwc", dir.join("app/shared/app.db").display());
    let pool = sqlx::sqlite::SqlitePoolOptions::new().connect(&url).await?;
    sqlx::migrate::Migrator::new(staged).await?.run(&pool).await?;
    pool.close().await;
    Ok(())
}

/// Release v1 (healthy), release v2 (broken), `current -> v1`, and the good config.
fn set_up(dir: &Path) -> std::io::Result<()> {
    for (version, healthy) in [("v1", true), ("v2", false)] {
        let release = dir.join("app/releases").join(version);
        write(&release.join("release.json"), &format!(r#"{{"version":"{version}","healthy":{healthy}}}"#))?;
        write(&release.join("REVISION"), &format!("demo service {version}"))?;
    }
    std::os::unix::fs::symlink("releases/v1", dir.join("app/current"))?;
    write(&dir.join("app/shared/.env.production"), GOOD_ENV)
}

/// Deploys v2 the way the runbooks' deploy scripts do: back up the config with a
/// timestamp, write the new one, switch `current`.
fn deploy_v2(dir: &Path) -> std::io::Result<()> {
    let env = dir.join("app/shared/.env.production");
    let stamp = (chrono::Utc::now() - chrono::TimeDelta::minutes(5)).format("%Y-%m-%d-%H%M%S");
    std::fs::copy(&env, dir.join(format!("app/shared/.env.production.{stamp}")))?;
    write(&env, BROKEN_ENV)?;
    let tmp = dir.join("app/.current.deploy");
    std::os::unix::fs::symlink("releases/v2", &tmp)?;
    std::fs::rename(tmp, dir.join("app/current"))
}

/// The demo service: answers from whatever `current` and the config say, per request.
async fn demo_service(dir: &Path) -> TestHttpServer {
    let server = TestHttpServer::start().await;
    let dir = dir.to_path_buf();
    server.handler(move |request| {
        let release: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("app/current/release.json")).ok()?).ok()?;
        let env = std::fs::read_to_string(dir.join("app/shared/.env.production")).unwrap_or_default();
        let healthy = release["healthy"] == true && env.contains("ORDERS_API=http://orders.internal\n");
        let version = release["version"].as_str().unwrap_or("?").to_string();
        let (status, body) = match (request.path.as_str(), healthy) {
            ("/health", true) => (200, format!(r#"{{"status":"ok","version":"{version}"}}"#)),
            ("/health", false) => (503, format!(r#"{{"status":"degraded","version":"{version}"}}"#)),
            (_, true) => (200, r#"{"orders":[]}"#.to_string()),
            (_, false) => (500, r#"{"error":"orders backend unreachable"}"#.to_string()),
        };
        Some((status, body))
    });
    server
}

/// Error rate over `n` requests and whether `/health` fails: the signals a deploy
/// tool would read from its metrics.
async fn gather_signals(server: &TestHttpServer, n: usize) -> Result<(Signals, u16), reqwest::Error> {
    let client = reqwest::Client::new();
    let mut errors = 0;
    for _ in 0..n {
        if client.get(server.url("/api/orders")).send().await?.status().is_server_error() {
            errors += 1;
        }
    }
    let health = client.get(server.url("/health")).send().await?.status().as_u16();
    let signals = Signals {
        error_rate: Some(errors as f64 / n as f64),
        health_checks_failing: health != 200,
        window: Some(Duration::from_secs(60)),
        ..Signals::default()
    };
    Ok((signals, health))
}

/// Runs the whole quickstart in `dir` (which must be empty).
pub async fn run(dir: &Path) -> Result<Outcome, Box<dyn std::error::Error + Send + Sync>> {
    set_up(dir)?;
    migrate(dir, "20251001").await?;
    let server = demo_service(dir).await;
    deploy_v2(dir)?;
    migrate(dir, "20251016").await?;
    let (signals, health_before) = gather_signals(&server, 40).await?;
    let decision = DecisionPolicy::default().decide(&signals);
    if !decision.action.is_rollback() {
        return Err(format!("the decision policy says {decision}; nothing to do").into());
    }

    let mut registry = Registry::new();
    register_local_kinds(&mut registry);
    register_builtin_verifiers(&mut registry);
    rollback_db::register(&mut registry);
    let app = dir.join("app");
    let targets = vec![
        Spec::new("release-dir", "app", serde_json::json!({ "root": app })),
        Spec::new(
            "config-file",
            "env",
            serde_json::json!({
                "path": app.join("shared/.env.production"),
                "validate": ["grep", "-q", "^ORDERS_API=http://", "{}"],
            }),
        ),
        Spec::new(
            "sqlx-migrations",
            "schema",
            serde_json::json!({
                "url": format!("sqlite://{}", app.join("shared/app.db").display()),
                "migrations": app.join("shared/migrations"),
            }),
        ),
    ];
    let mut request = RollbackRequest::new(
        &decision.reasons.join("; "),
        Selector::Previous,
        serde_json::json!({
            "evidence": ["deploy-files"],
            "app": ["app"],
            "config": ["env"],
            "schema": ["schema"],
            "order": "app-first",
            "verify": ["health"],
            "verify_policy": { "interval": "50ms", "passes": 3, "deadline": "10s" },
        }),
    );
    request.snapshots.push(Spec::new(
        "files",
        "deploy-files",
        serde_json::json!({
            "paths": [app.join("shared/.env.production"), app.join("current/release.json")],
        }),
    ));
    request.verifiers.push(Spec::new(
        "http",
        "health",
        serde_json::json!({ "url": server.url("/health"), "json": { "pointer": "/status", "equals": "ok" } }),
    ));
    let plan = Standard.plan(&targets, &request)?;

    let home = dir.join(".rollback");
    let engine = Engine::builder(registry).home(&home).try_build()?;
    let dry_run = engine.dry_run(&plan).await?;
    let report = engine.run(plan, RunOptions { reason: Some(request.reason.clone()), ..Default::default() }).await?;
    let health_after = reqwest::get(server.url("/health")).await?.status().as_u16();
    let journal = home.join("journal/runs").join(format!("{}.jsonl", report.run));
    let evidence =
        engine.store().list("").await?.into_iter().map(|k| PathBuf::from(engine.store().location(&k))).collect();
    Ok(Outcome {
        decision,
        dry_run,
        report,
        health: (health_before, health_after),
        dir: dir.to_path_buf(),
        journal,
        evidence,
    })
}
