//! The compensation plan over the kill-point fixture: snapshots first (a `pg-dump` of
//! the `orders` database, an `s3-version-manifest` of `avatars/`), then four backends
//! rolled back (the `api` container recreated on the previous image, `cfg-0` restored
//! from its backup, `orders` migrated two steps down, `avatars/` restored to a point in
//! time), then a verification that fails (HTTP on a port nothing listens on), so the
//! engine compensates: the container and the config file by their inverse, the
//! database and the prefix from their snapshots, newest first. The run must end
//! `compensated` with every backend as it was before the plan.
//!
//! The fixture is the forward test's ([`Fixture::create`]); the other targets it
//! makes stay untouched by this plan.

use std::path::PathBuf;

use rollback_core::spec::SecretRef;
use rollback_core::{FailurePolicy, Plan, ProbePolicy, RunId, Selector, Spec, Step, StepOp, Undo};
use rollback_docker::testkit::docker;
use sqlx::Row;

use super::evidence::{events, inspect, version_counts};
use super::fixture::{Fixture, MIGRATIONS, db_url};
use super::{S3_KEY, S3_SECRET, Shared};

/// The database this plan migrates down and restores.
pub const DATABASE: &str = "orders";
/// The container recreated, then recreated back.
pub const CONTAINER: &str = "api";
/// The config file restored, then put back.
pub const CONFIG: usize = 0;
/// The S3 prefix restored to a point in time, then back from its manifest.
pub const PREFIX: (&str, &str) = ("avatars", "avatars/");

/// The idempotency key of `step` in `phase` (`fwd` or `undo`).
pub fn key(run: &RunId, step: &str, phase: &str) -> String {
    format!("{run}/{step}/{phase}")
}

/// Program wrappers for the `pg-dump` snapshot: the dump leaves out `down_log` and its
/// id sequence (the down migrations' own log survives the restore, so forward
/// exactly-once stays visible), and every `psql` run — the one that applies a
/// restore's script — appends a line to [`restores_log`].
fn pg_tools(f: &Fixture) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dump = f.dir.join("pg_dump-wrapper.sh");
    let psql = f.dir.join("psql-wrapper.sh");
    std::fs::write(&dump, "#!/bin/sh\nexec pg_dump '--exclude-table=down_log*' \"$@\"\n").unwrap();
    let log = restores_log(f);
    std::fs::write(&psql, format!("#!/bin/sh\necho restore >> '{}'\nexec psql \"$@\"\n", log.display())).unwrap();
    for path in [&dump, &psql] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    (dump, psql)
}

/// One line per restore applied (`psql` run) at this point.
pub fn restores_log(f: &Fixture) -> PathBuf {
    f.dir.join("pg-restores.log")
}

/// A port nothing listens on: bound, then released.
fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Writes the compensation plan over the forward plan's file.
pub fn write_plan(f: &Fixture, shared: &Shared) {
    std::fs::write(&f.plan_file, plan(f, shared).to_json_string().unwrap()).unwrap();
}

/// The plan (see the module docs). One step at a time, so the journal's sequence
/// numbers are the same in every run.
pub fn plan(f: &Fixture, shared: &Shared) -> Plan {
    let docker = serde_json::json!({ "host": shared.servers.docker });
    let s3_secrets = |spec: &mut Spec| {
        spec.secrets.insert("access_key_id".into(), SecretRef::Env { var: S3_KEY.0.into() });
        spec.secrets.insert("secret_access_key".into(), SecretRef::Env { var: S3_SECRET.0.into() });
    };
    let url_var = format!("RBF_PG_{}_URL", DATABASE.to_uppercase());
    let back = |id: &str, target: &str, to: Selector, undo: Undo| {
        Step::new(id, StepOp::Rollback { target: target.into(), to }).on_failure(FailurePolicy::Compensate).undo(undo)
    };
    let mut plan = Plan::new(format!("compensated ({})", f.tag));

    let (pg_dump, psql) = pg_tools(f);
    let mut dump = Spec::new("pg-dump", "orders-dump", serde_json::json!({ "pg_dump": pg_dump, "psql": psql }));
    dump.secrets.insert("url".into(), SecretRef::Env { var: url_var.clone() });
    plan.snapshots.push(dump);
    let (prefix_name, prefix) = PREFIX;
    let mut manifest = Spec::new(
        "s3-version-manifest",
        "avatars-manifest",
        serde_json::json!({ "bucket": f.bucket, "prefix": prefix, "concurrency": 4,
                            "client": { "endpoint": shared.servers.s3 } }),
    );
    s3_secrets(&mut manifest);
    plan.snapshots.push(manifest);

    let container = serde_json::json!({ "container": f.containers[CONTAINER], "docker": docker });
    plan.targets.push(Spec::new("docker-container", format!("{CONTAINER}-container"), container));
    let dir = f.config_dir(CONFIG);
    let reload = format!("echo reload >> {}", dir.join("reloads.log").display());
    let config =
        serde_json::json!({ "path": dir.join("app.conf"), "reload": ["/bin/sh", "-c", reload], "timeout": "30s" });
    plan.targets.push(Spec::new("config-file", format!("cfg-{CONFIG}"), config));
    let mut schema = Spec::new(
        "sqlx-migrations",
        DATABASE,
        serde_json::json!({ "migrations": f.dir.join(format!("migrations-{DATABASE}")) }),
    );
    schema.secrets.insert("url".into(), SecretRef::Env { var: url_var });
    plan.targets.push(schema);
    let mut data = Spec::new(
        "s3-restore",
        prefix_name,
        serde_json::json!({ "bucket": f.bucket, "prefix": prefix, "concurrency": 4,
                            "client": { "endpoint": shared.servers.s3 } }),
    );
    s3_secrets(&mut data);
    plan.targets.push(data);

    let port = dead_port();
    plan.verifiers.push(Spec::new(
        "http",
        "healthy",
        serde_json::json!({ "url": format!("http://127.0.0.1:{port}/health") }),
    ));
    let policy: ProbePolicy = serde_json::from_value(serde_json::json!({
        "interval": "100ms", "timeout": "500ms", "passes": 1, "deadline": "1s"
    }))
    .unwrap();

    let snap = |id: &str, snapshot: &str| Step::new(id, StepOp::Snapshot { snapshot: snapshot.into() });
    plan.stages = Plan::new("")
        .stage("snapshots", 1, vec![snap("orders-snap", "orders-dump"), snap("avatars-snap", "avatars-manifest")])
        .stage(
            "apps",
            1,
            vec![back(
                &format!("{CONTAINER}-back"),
                &format!("{CONTAINER}-container"),
                Selector::Previous,
                Undo::Inverse,
            )],
        )
        .stage(
            "config",
            1,
            vec![back(&format!("cfg-{CONFIG}-back"), &format!("cfg-{CONFIG}"), Selector::Previous, Undo::Inverse)],
        )
        .stage(
            "schema",
            1,
            vec![back(
                &format!("{DATABASE}-back"),
                DATABASE,
                Selector::Back(2),
                Undo::RestoreFrom("orders-snap".into()),
            )],
        )
        .stage(
            "data",
            1,
            vec![back(
                &format!("{prefix_name}-back"),
                prefix_name,
                Selector::Before(f.t),
                Undo::RestoreFrom("avatars-snap".into()),
            )],
        )
        .stage(
            "verify",
            1,
            vec![
                Step::new("healthy", StepOp::Verify { verifier: "healthy".into(), policy })
                    .on_failure(FailurePolicy::Compensate),
            ],
        )
        .stages;
    plan
}

/// Whether the dump's keyed restore committed (its key is in `_rollback_restores`).
async fn restore_recorded(shared: &Shared, f: &Fixture) -> bool {
    let url = db_url(&shared.servers.postgres, &f.databases[DATABASE]);
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
    let table: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('public._rollback_restores')::text").fetch_one(&pool).await.unwrap();
    let rows: i64 = match table {
        Some(_) => sqlx::query_scalar("SELECT count(*) FROM _rollback_restores").fetch_one(&pool).await.unwrap(),
        None => 0,
    };
    pool.close().await;
    rows > 0
}

fn pg_restores(f: &Fixture) -> usize {
    std::fs::read_to_string(restores_log(f)).unwrap_or_default().lines().count()
}

fn container_with_label(shared: &Shared, key: &str) -> Vec<String> {
    let label = format!("label=io.rollback.key={key}");
    docker(&shared.servers.docker, &["ps", "-aq", "--no-trunc", "--filter", &label])
        .lines()
        .map(str::to_string)
        .collect()
}

async fn object(shared: &Shared, f: &Fixture, key: &str) -> Option<String> {
    let got = shared.s3.client().get_object().bucket(&f.bucket).key(key).send().await.ok()?;
    Some(String::from_utf8_lossy(&got.body.collect().await.unwrap().into_bytes()).into_owned())
}

/// Whether the work of `step` in `phase` (`fwd`/`undo`) is visible at its backend now.
/// `None` for a verification (no effect to see).
pub async fn effect_visible(shared: &Shared, f: &Fixture, run: &RunId, step: &str, undo: bool) -> Option<bool> {
    let phase = if undo { "undo" } else { "fwd" };
    let artifacts = rollback_core::testkit::files_under(&f.home.join("artifacts"));
    let has_artifact = |what: &str| artifacts.iter().any(|p| p.to_string_lossy().contains(what));
    Some(match (step, undo) {
        ("orders-snap", false) => has_artifact("orders-snap") && has_artifact(".dump"),
        ("avatars-snap", false) => has_artifact("avatars-snap") && has_artifact("manifest.jsonl"),
        ("healthy", false) => return None,
        ("api-back", _) => !container_with_label(shared, &key(run, step, phase)).is_empty(),
        ("cfg-0-back", _) => {
            let text = std::fs::read_to_string(f.config_dir(CONFIG).join("app.conf")).unwrap();
            if undo { text.starts_with("bad") } else { text.starts_with("good") }
        }
        ("orders-back", false) => super::at_kill::effect_visible(shared, f, run, step).await,
        ("orders-back", true) => restore_recorded(shared, f).await,
        ("avatars-back", false) => super::at_kill::effect_visible(shared, f, run, step).await,
        // The manifest restore brings a@2 back (the forward restore left a@1).
        ("avatars-back", true) => object(shared, f, "avatars/a").await.as_deref() == Some("avatars/a@2"),
        (other, _) => panic!("no backend check for step {other} (undo: {undo})"),
    })
}

/// Asserts every backend is back where it was before the plan, each forward effect
/// and each compensation effect done once — the dump's restore too: a restore killed
/// after it committed is observed by its key and not run again.
pub async fn assert_compensated(shared: &Shared, f: &Fixture, run: &RunId) {
    docker_state(shared, f, run).await;
    files_state(f, run);
    postgres_state(shared, f, run).await;
    s3_state(shared, f, run).await;
}

async fn docker_state(shared: &Shared, f: &Fixture, run: &RunId) {
    let seen = events(f).await;
    let host = &shared.servers.docker;
    let ids = &shared.images.ids;
    let name = &f.containers[CONTAINER];
    let step = format!("{CONTAINER}-back");
    let (fwd, undo) = (key(run, &step, "fwd"), key(run, &step, "undo"));
    let forward = container_with_label(shared, &fwd);
    let back = container_with_label(shared, &undo);
    assert_eq!(forward.len(), 1, "{name}: exactly one container carries {fwd}: {forward:?}");
    assert_eq!(back.len(), 1, "{name}: exactly one container carries {undo}: {back:?}");
    let now = inspect(host, name);
    assert_eq!(now["Id"], back[0].as_str(), "{name}: the compensation's replacement holds the name");
    assert_eq!(now["Image"], ids[1].as_str(), "{name}: back on v2's image ID, as before the plan");
    assert_eq!(now["State"]["Running"], true, "{name}: running");
    assert_eq!(inspect(host, &forward[0])["Image"], ids[0].as_str(), "{name}: the forward replacement ran v1");
    assert_eq!(inspect(host, &forward[0])["State"]["Running"], false, "{name}: the forward replacement is stopped");
    let all = docker(host, &["ps", "-aq", "--no-trunc", "--filter", &format!("name=^/{name}")]);
    let all: Vec<&str> = all.lines().collect();
    assert_eq!(all.len(), 3, "{name}: the original, the forward replacement and the compensation's: {all:?}");
    for k in [&fwd, &undo] {
        let created: Vec<_> = seen.iter().filter(|(a, _, l)| a == "create" && l == k).collect();
        assert_eq!(created.len(), 1, "{name}: one create with {k} in docker events: {created:?}");
    }
}

fn files_state(f: &Fixture, run: &RunId) {
    let dir = f.config_dir(CONFIG);
    let text = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    assert_eq!(text("app.conf"), format!("bad {CONFIG}\n"), "cfg-{CONFIG}: the file from before the plan is back");
    assert_eq!(text("reloads.log"), "reload\nreload\n", "cfg-{CONFIG}: reloaded once forward, once on undo");
    let marker: serde_json::Value = serde_json::from_str(&text(".app.conf.rollback.json")).unwrap();
    assert_eq!(marker["key"], key(run, &format!("cfg-{CONFIG}-back"), "undo"), "cfg-{CONFIG}: marker");
    assert_eq!(marker["phase"], "done", "cfg-{CONFIG}: marker");
    let mut replaced: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("app.conf.replaced-"))
        .map(|n| text(&n))
        .collect();
    replaced.sort();
    assert_eq!(
        replaced,
        vec![format!("bad {CONFIG}\n"), format!("good {CONFIG}\n")],
        "cfg-{CONFIG}: each replaced file kept once (forward: bad, undo: good)"
    );
}

async fn postgres_state(shared: &Shared, f: &Fixture, run: &RunId) {
    let url = db_url(&shared.servers.postgres, &f.databases[DATABASE]);
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
    let column = |sql: &'static str| super::i64_column(&pool, sql);
    let [first, second, third] = MIGRATIONS;
    assert_eq!(
        column("SELECT version FROM down_log ORDER BY id").await,
        vec![third, second],
        "{DATABASE}: each down migration ran exactly once (down_log is outside the dump)"
    );
    assert_eq!(
        column("SELECT version FROM _sqlx_migrations ORDER BY version").await,
        vec![first, second, third],
        "{DATABASE}: every migration applied again, as before the plan"
    );
    let tables = column("SELECT count(*) FROM information_schema.tables WHERE table_name = 'items'").await;
    assert_eq!(tables, vec![1], "{DATABASE}: the newest migration's table is back");
    let notes =
        column("SELECT count(*) FROM information_schema.columns WHERE table_name = 'base' AND column_name = 'note'")
            .await;
    assert_eq!(notes, vec![1], "{DATABASE}: the second migration's column is back");
    let marker = sqlx::query("SELECT run_key FROM _rollback_marker WHERE target = $1")
        .bind(DATABASE)
        .fetch_all(&pool)
        .await
        .unwrap();
    let keys: Vec<String> = marker.iter().map(|r| r.get(0)).collect();
    // The marker table is made by the forward apply, after the dump: the restore leaves
    // it (stale, harmless: observe also asks `_sqlx_migrations`, now at the old head).
    assert_eq!(keys, vec![key(run, &format!("{DATABASE}-back"), "fwd")], "{DATABASE}: one marker row, the forward one");
    let restored = sqlx::query("SELECT key FROM _rollback_restores").fetch_all(&pool).await.unwrap();
    let keys: Vec<String> = restored.iter().map(|r| r.get(0)).collect();
    assert_eq!(keys, vec![key(run, &format!("{DATABASE}-back"), "undo")], "{DATABASE}: the restore's key, once");
    pool.close().await;
    // A kill after the restore committed: resume observes its key and does not restore again.
    assert_eq!(pg_restores(f), 1, "{DATABASE}: restores applied (psql runs)");
}

async fn s3_state(shared: &Shared, f: &Fixture, _run: &RunId) {
    let after = version_counts(shared, &f.bucket).await;
    // Key → (content before the plan, versions forward + undo add).
    let expected: [(&str, Option<&str>, usize); 7] = [
        ("avatars/a", Some("avatars/a@2"), 2),
        ("avatars/b", Some("avatars/b@2"), 2),
        ("avatars/c", Some("avatars/c@1"), 0),
        ("avatars/d", Some("avatars/d@2"), 2),
        ("avatars/e", None, 2),
        ("docs/x", Some("docs/x@2"), 0),
        ("docs/y", Some("docs/y@2"), 0),
    ];
    for (k, content, added) in expected {
        assert_eq!(
            after.get(k).copied().unwrap_or(0),
            f.s3_before.get(k).copied().unwrap_or(0) + added,
            "s3 {k}: {added} version(s) added (forward restore, then its undo), never a duplicate \
             (before {:?}, after {after:?})",
            f.s3_before
        );
        assert_eq!(object(shared, f, k).await.as_deref(), content, "s3 {k}: as before the plan");
    }
}
