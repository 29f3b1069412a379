//! Fresh backend state for one kill point, and the ONE plan that touches every backend.
//!
//! Every name carries the point's tag, so points never share a container, database,
//! bucket, key prefix, namespace or directory.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use rollback_core::spec::SecretRef;
use rollback_core::{Plan, Selector, Spec, Step, StepOp};
use rollback_docker::testkit::{docker, docker_quiet};
use rollback_k8s::rollout::{RolloutStatus, rollout_status};

use super::{S3_KEY, S3_SECRET, Shared};

/// Config files restored from a backup (`config-file`).
pub const CONFIGS: usize = 10;
/// Release directories switched back (`release-dir`).
pub const RELEASES: usize = 3;
/// Databases migrated down two steps (`sqlx-migrations` on PostgreSQL).
pub const DATABASES: [&str; 2] = ["orders", "billing"];
/// The migrations of each database, oldest first.
pub const MIGRATIONS: [i64; 3] = [20251001, 20251005, 20251010];
/// Kubernetes Deployments rolled back one revision (`k8s-deployment`): name, replicas.
pub const UNDONE: [(&str, i32); 2] = [("web", 2), ("admin", 1)];
/// The Deployment scaled to zero and back (`k8s-scale`), and its replicas.
pub const SCALED: (&str, i32) = ("worker", 3);
/// Keys per Redis pattern.
pub const CACHE_KEYS: usize = 40;
/// Redis patterns invalidated: step target name, key infix.
pub const CACHES: [(&str, &str); 2] = [("sessions", "sess"), ("pages", "page")];
/// Containers recreated on the previous image (`docker-container`).
pub const RECREATED: [&str; 2] = ["api", "worker"];
/// S3 prefixes restored to a point in time (`s3-restore`): target name, prefix.
pub const PREFIXES: [(&str, &str); 2] = [("avatars", "avatars/"), ("docs", "docs/")];

/// Every effect step of the plan (each one journals one intent).
pub const EFFECT_STEPS: usize = 2 + RECREATED.len() + UNDONE.len() + RELEASES + CONFIGS + DATABASES.len() + 4 + 2;

/// One point's backend state.
pub struct Fixture {
    pub tag: String,
    pub dir: PathBuf,
    pub home: PathBuf,
    pub plan_file: PathBuf,
    /// Container name by role (`api`, `worker`, `front`).
    pub containers: BTreeMap<String, String>,
    /// The front container's ID (stopped and started, never recreated).
    pub front_id: String,
    pub namespace: String,
    pub bucket: String,
    /// The S3 restore point.
    pub t: DateTime<Utc>,
    /// Versions plus delete markers per key before the run.
    pub s3_before: BTreeMap<String, usize>,
    /// Database name by target name.
    pub databases: BTreeMap<String, String>,
    /// Secrets for the runner processes (database URLs with the password).
    pub env: Vec<(String, String)>,
    /// `docker events` of containers, streamed into `events_file` from before the run:
    /// the engine keeps only its last 256 events for later queries, and healthchecks
    /// (ours and other tests') push a create out of that window within seconds.
    pub events: Option<std::process::Child>,
    pub events_file: PathBuf,
    /// Where this point's requests start in the double's log.
    pub requests_from: usize,
}

/// The containers' command: idle until SIGTERM, then exit at once.
const IDLE: &str = "trap 'exit 0' TERM; sleep 1000000 & wait";

fn unique_tag(n: usize) -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    // The pid keeps the two kill-point tests (run in parallel by nextest) apart; the
    // clock keeps a rerun with a recycled pid apart. (An XOR of the two collided.)
    format!("k{n}x{:x}t{:03x}", std::process::id() & 0xfffff, secs & 0xfff)
}

/// The URL of `db` on the server of `admin` (same credentials).
pub fn db_url(admin: &str, db: &str) -> String {
    format!("{}/{db}", admin.rsplit_once('/').unwrap().0)
}

pub fn stamp(t: DateTime<Utc>) -> String {
    format!("{}.{:09}", t.timestamp(), t.timestamp_subsec_nanos())
}

/// Waits until the wall clock is in a new second (S3 LastModified has 1 s resolution).
async fn next_second() {
    let ms = 1000 - u64::from(Utc::now().timestamp_subsec_millis()) + 50;
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

impl Fixture {
    /// Fresh state for point number `n`.
    pub async fn create(shared: &Shared, n: usize) -> Fixture {
        let tag = unique_tag(n);
        let dir = shared.work.path().join(&tag);
        std::fs::create_dir_all(&dir).unwrap();
        let mut fixture = Fixture {
            home: dir.join("home"),
            plan_file: dir.join("plan.json"),
            containers: BTreeMap::new(),
            front_id: String::new(),
            namespace: format!("rbf-{tag}"),
            bucket: format!("rbf-{tag}"),
            t: Utc::now(),
            s3_before: BTreeMap::new(),
            databases: BTreeMap::new(),
            env: Vec::new(),
            events: None,
            events_file: dir.join("docker-events.jsonl"),
            requests_from: 0,
            dir,
            tag,
        };
        if let Some(url) = &shared.journal {
            fixture.env.push(("ROLLBACK_FAULT_JOURNAL".into(), url.clone()));
            // Where support::points reads the journal from.
            std::fs::write(fixture.dir.join("journal-url"), url).unwrap();
        }
        fixture.docker(shared);
        fixture.files();
        fixture.postgres(shared).await;
        fixture.redis(shared).await;
        fixture.kubernetes(shared).await;
        fixture.s3(shared).await; // last: its restore point needs whole seconds around it
        let plan = fixture.plan(shared);
        std::fs::write(&fixture.plan_file, plan.to_json_string().unwrap()).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        fixture.events = Some(
            std::process::Command::new("docker")
                .env("DOCKER_HOST", &shared.servers.docker)
                .args(["events", "--since", &stamp(Utc::now()), "--filter", "type=container", "--format", "{{json .}}"])
                .stdout(std::fs::File::create(&fixture.events_file).unwrap())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("docker events"),
        );
        fixture.requests_from = shared.double.requests().len();
        fixture
    }

    fn docker(&mut self, shared: &Shared) {
        let host = &shared.servers.docker;
        for (role, tag) in [("api", "v2"), ("worker", "v2"), ("front", "v1")] {
            let name = format!("rbf-{}-{role}", self.tag);
            let image = shared.images.tag(tag);
            // No server: a port taken by someone else would make httpd, and so the
            // container, exit on its own, and the evidence would blame the rollback.
            let args = [
                "run",
                "-d",
                "--name",
                &name,
                "--network",
                "host",
                "--stop-timeout",
                "1",
                &image,
                "/bin/sh",
                "-c",
                IDLE,
            ];
            let id = docker(host, &args);
            if role == "front" {
                self.front_id = id;
            }
            self.containers.insert(role.to_string(), name);
        }
    }

    pub fn config_dir(&self, i: usize) -> PathBuf {
        self.dir.join("files").join(format!("cfg-{i}"))
    }

    pub fn release_root(&self, i: usize) -> PathBuf {
        self.dir.join("files").join(format!("rel-{i}"))
    }

    fn files(&self) {
        for i in 0..CONFIGS {
            let dir = self.config_dir(i);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("app.conf.2025-10-16-180000"), format!("good {i}\n")).unwrap();
            std::fs::write(dir.join("app.conf"), format!("bad {i}\n")).unwrap();
        }
        for i in 0..RELEASES {
            let root = self.release_root(i);
            for release in ["20251015-120000", "20251016-180000"] {
                std::fs::create_dir_all(root.join("releases").join(release)).unwrap();
            }
            std::os::unix::fs::symlink("releases/20251016-180000", root.join("current")).unwrap();
        }
    }

    async fn postgres(&mut self, shared: &Shared) {
        let admin = &shared.servers.postgres;
        let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(admin).await.unwrap();
        for target in DATABASES {
            let db = format!("rbf_{}_{target}", self.tag);
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}"))).execute(&pool).await.unwrap();
            let url = db_url(admin, &db);
            let migrations = self.dir.join(format!("migrations-{target}"));
            std::fs::create_dir_all(&migrations).unwrap();
            let [a, b, c] = MIGRATIONS;
            // Each down script also logs itself, in the migration's own transaction:
            // the exactly-once evidence.
            let log = |v: i64| format!("INSERT INTO down_log (version) VALUES ({v});");
            for (file, sql) in [
                (format!("{a}_base.up.sql"), "CREATE TABLE base (id BIGINT);".to_string()),
                (format!("{a}_base.down.sql"), format!("DROP TABLE base; {}", log(a))),
                (format!("{b}_note.up.sql"), "ALTER TABLE base ADD COLUMN note TEXT;".to_string()),
                (format!("{b}_note.down.sql"), format!("ALTER TABLE base DROP COLUMN note; {}", log(b))),
                (format!("{c}_items.up.sql"), "CREATE TABLE items (id BIGINT);".to_string()),
                (format!("{c}_items.down.sql"), format!("DROP TABLE items; {}", log(c))),
            ] {
                std::fs::write(migrations.join(file), sql).unwrap();
            }
            let db_pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
            sqlx::query("CREATE TABLE down_log (id BIGSERIAL PRIMARY KEY, version BIGINT NOT NULL)")
                .execute(&db_pool)
                .await
                .unwrap();
            sqlx::migrate::Migrator::new(migrations).await.unwrap().run(&db_pool).await.unwrap();
            db_pool.close().await;
            self.env.push((self.url_var(target), url));
            self.databases.insert(target.to_string(), db);
        }
        pool.close().await;
    }

    fn url_var(&self, target: &str) -> String {
        format!("RBF_PG_{}_URL", target.to_uppercase())
    }

    pub fn cache_pattern(&self, infix: &str) -> String {
        format!("rbf:{}:{infix}:*", self.tag)
    }

    pub fn keep_key(&self) -> String {
        format!("rbf:{}:keep", self.tag)
    }

    async fn redis(&self, shared: &Shared) {
        let mut conn = shared.redis.get_multiplexed_async_connection().await.unwrap();
        for (_, infix) in CACHES {
            for i in 0..CACHE_KEYS {
                let key = format!("rbf:{}:{infix}:{i}", self.tag);
                redis::cmd("SET").arg(key).arg("cached").query_async::<()>(&mut conn).await.unwrap();
            }
        }
        redis::cmd("SET").arg(self.keep_key()).arg("not matched").query_async::<()>(&mut conn).await.unwrap();
    }

    pub fn deployments(&self, shared: &Shared) -> Api<Deployment> {
        Api::namespaced(shared.double.client(&self.namespace), &self.namespace)
    }

    async fn rolled_out(&self, shared: &Shared, name: &str) {
        let api = self.deployments(shared);
        for _ in 0..1000 {
            if rollout_status(&api.get(name).await.unwrap()) == RolloutStatus::Complete {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("deployment {}/{name} never rolled out", self.namespace);
    }

    async fn kubernetes(&self, shared: &Shared) {
        let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": self.namespace}})).unwrap();
        Api::<Namespace>::all(shared.double.client("default")).create(&PostParams::default(), &ns).await.unwrap();
        let api = self.deployments(shared);
        let mut all: Vec<(&str, i32)> = UNDONE.to_vec();
        all.push(SCALED);
        for (name, replicas) in all {
            let d: Deployment = serde_json::from_value(serde_json::json!({
                "metadata": {"name": name},
                "spec": {"replicas": replicas, "progressDeadlineSeconds": 600,
                         "selector": {"matchLabels": {"app": name}},
                         "template": {"metadata": {"labels": {"app": name}},
                                      "spec": {"containers": [{"name": "app", "image": format!("{name}:1")}]}}}
            }))
            .unwrap();
            api.create(&PostParams::default(), &d).await.unwrap();
            self.rolled_out(shared, name).await;
        }
        for (name, _) in UNDONE {
            let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": format!("{name}:2")}]}}}});
            api.patch(name, &PatchParams::default(), &Patch::Strategic(patch)).await.unwrap();
            self.rolled_out(shared, name).await;
        }
    }

    async fn s3(&mut self, shared: &Shared) {
        shared.s3.create_versioned_bucket(&self.bucket).await.unwrap();
        for key in ["avatars/a", "avatars/b", "avatars/c", "avatars/e", "docs/x"] {
            self.put(shared, key, &format!("{key}@1")).await;
        }
        next_second().await;
        self.t = Utc::now();
        next_second().await;
        for key in ["avatars/a", "avatars/b", "avatars/d", "docs/x", "docs/y"] {
            self.put(shared, key, &format!("{key}@2")).await;
        }
        shared.s3.client().delete_object().bucket(&self.bucket).key("avatars/e").send().await.unwrap();
        self.s3_before = super::evidence::version_counts(shared, &self.bucket).await;
    }

    async fn put(&self, shared: &Shared, key: &str, body: &str) {
        shared
            .s3
            .client()
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body.as_bytes().to_vec()))
            .send()
            .await
            .unwrap();
    }

    /// The plan: traffic off (a docker container stopped, a Deployment scaled to
    /// zero), apps back (two containers recreated on the previous image, two
    /// Deployments undone, three release dirs switched), ten config files restored,
    /// two schemas migrated down two steps, two S3 prefixes restored to a point in
    /// time, two cache patterns invalidated; traffic back on finally. One step at a
    /// time, so the journal's sequence numbers are the same in every run.
    pub fn plan(&self, shared: &Shared) -> Plan {
        let docker = serde_json::json!({ "host": shared.servers.docker });
        let cluster = serde_json::json!({ "url": shared.double.url() });
        let k8s = |name: &str| {
            serde_json::json!({ "cluster": cluster, "namespace": self.namespace, "deployment": name,
                                "timeout": "60s", "poll_interval": "20ms" })
        };
        let back =
            |id: String, target: &str, to: Selector| Step::new(id, StepOp::Rollback { target: target.into(), to });
        let action = |id: &str, target: &str, action: &str| {
            Step::new(
                id,
                StepOp::Action { target: target.into(), action: action.into(), params: serde_json::json!({}) },
            )
        };
        let mut targets = Vec::new();
        let front = &self.containers["front"];
        targets.push(Spec::new("docker-traffic", "front", serde_json::json!({ "container": front, "docker": docker })));
        targets.push(Spec::new("k8s-scale", SCALED.0, k8s(SCALED.0)));
        let mut apps = Vec::new();
        for role in RECREATED {
            let config = serde_json::json!({ "container": self.containers[role], "docker": docker });
            targets.push(Spec::new("docker-container", format!("{role}-container"), config));
            apps.push(back(format!("{role}-back"), &format!("{role}-container"), Selector::Previous));
        }
        for (name, _) in UNDONE {
            targets.push(Spec::new("k8s-deployment", name, k8s(name)));
            apps.push(back(format!("{name}-back"), name, Selector::Previous));
        }
        for i in 0..RELEASES {
            let root = self.release_root(i);
            let restart = format!("echo restart >> {}", root.join("restarts.log").display());
            let config =
                serde_json::json!({ "root": root, "restart": ["/bin/sh", "-c", restart], "restart_timeout": "30s" });
            targets.push(Spec::new("release-dir", format!("rel-{i}"), config));
            apps.push(back(format!("rel-{i}-back"), &format!("rel-{i}"), Selector::Previous));
        }
        let mut configs = Vec::new();
        for i in 0..CONFIGS {
            let dir = self.config_dir(i);
            let reload = format!("echo reload >> {}", dir.join("reloads.log").display());
            let config = serde_json::json!({ "path": dir.join("app.conf"), "reload": ["/bin/sh", "-c", reload], "timeout": "30s" });
            targets.push(Spec::new("config-file", format!("cfg-{i}"), config));
            configs.push(back(format!("cfg-{i}-back"), &format!("cfg-{i}"), Selector::Previous));
        }
        let mut schemas = Vec::new();
        for target in DATABASES {
            let config = serde_json::json!({ "migrations": self.dir.join(format!("migrations-{target}")) });
            let mut spec = Spec::new("sqlx-migrations", target, config);
            spec.secrets.insert("url".into(), SecretRef::Env { var: self.url_var(target) });
            targets.push(spec);
            schemas.push(back(format!("{target}-back"), target, Selector::Back(2)));
        }
        let mut data = Vec::new();
        for (name, prefix) in PREFIXES {
            let config = serde_json::json!({ "bucket": self.bucket, "prefix": prefix, "concurrency": 4,
                                             "client": { "endpoint": shared.servers.s3 } });
            let mut spec = Spec::new("s3-restore", name, config);
            spec.secrets.insert("access_key_id".into(), SecretRef::Env { var: S3_KEY.0.into() });
            spec.secrets.insert("secret_access_key".into(), SecretRef::Env { var: S3_SECRET.0.into() });
            targets.push(spec);
            data.push(back(format!("{name}-back"), name, Selector::Before(self.t)));
        }
        for (name, infix) in CACHES {
            let config = serde_json::json!({ "url": shared.servers.redis, "mode": "pattern",
                                             "pattern": self.cache_pattern(infix), "batch": 7 });
            targets.push(Spec::new("redis-invalidate", name, config));
            data.push(action(&format!("{name}-drop"), name, "invalidate"));
        }
        let mut plan = Plan::new(format!("every backend back ({})", self.tag))
            .stage(
                "traffic off",
                1,
                vec![action("front-off", "front", "stop"), action("worker-down", SCALED.0, "scale-to-zero")],
            )
            .stage("apps", 1, apps)
            .stage("config", 1, configs)
            .stage("schema", 1, schemas)
            .stage("data", 1, data);
        plan.finally.push(Step::new("front-on", StepOp::Revert { step: "front-off".into() }));
        plan.finally.push(Step::new("worker-up", StepOp::Revert { step: "worker-down".into() }));
        plan.targets = targets;
        plan
    }

    /// Removes what this point made on shared servers (the double and moto are
    /// in-memory and go with the test; their objects are left).
    pub async fn cleanup(&self, shared: &Shared, runs: &[rollback_core::RunId]) {
        let host = &shared.servers.docker;
        if let Ok(out) = std::process::Command::new("docker")
            .env("DOCKER_HOST", host)
            .args(["ps", "-aq", "--filter", &format!("name=^/rbf-{}-", self.tag)])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                docker_quiet(host, &["rm", "-f", "-v", id]);
            }
        }
        if let Ok(pool) =
            sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&shared.servers.postgres).await
        {
            for db in self.databases.values() {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")))
                    .execute(&pool)
                    .await;
            }
            pool.close().await;
        }
        if let Ok(mut conn) = shared.redis.get_multiplexed_async_connection().await {
            let mut keys = super::evidence::scan(&mut conn, &format!("rbf:{}:*", self.tag)).await;
            for run in runs {
                keys.extend(super::evidence::scan(&mut conn, &format!("rollback:invalidate:{run}/*")).await);
            }
            for key in keys {
                let _ = redis::cmd("UNLINK").arg(key).query_async::<()>(&mut conn).await;
            }
        }
        let _ = Api::<Namespace>::all(shared.double.client("default"))
            .delete(&self.namespace, &DeleteParams::default())
            .await;
    }
}

impl Drop for Fixture {
    /// Stops the `docker events` stream this fixture started.
    fn drop(&mut self) {
        if let Some(mut events) = self.events.take() {
            let _ = events.kill();
            let _ = events.wait();
        }
    }
}
