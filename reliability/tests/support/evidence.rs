//! The final state every point must reach, and exactly-once effects, read from what
//! each backend shows: container labels, image IDs and `docker events`; migration
//! rows, a log row written in each down migration's transaction and the marker row;
//! S3 version counts per key; Redis keys and the marker; ReplicaSet revisions and the
//! double's request log; file contents, markers and command logs.

use std::collections::BTreeMap;

use redis::aio::MultiplexedConnection;
use rollback_core::RunId;
use rollback_docker::testkit::docker;
use rollback_k8s::double::LoggedRequest;
use sqlx::Row;

use super::Shared;
use super::fixture::{
    CACHE_KEYS, CACHES, CONFIGS, DATABASES, Fixture, MIGRATIONS, PREFIXES, RECREATED, RELEASES, SCALED, UNDONE, db_url,
};

fn key(run: &RunId, step: &str) -> String {
    format!("{run}/{step}/fwd")
}

/// Keys matching `pattern`, by SCAN.
pub async fn scan(conn: &mut MultiplexedConnection, pattern: &str) -> Vec<String> {
    let mut cursor: u64 = 0;
    let mut keys = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .unwrap();
        keys.extend(batch);
        cursor = next;
        if cursor == 0 {
            keys.sort();
            return keys;
        }
    }
}

/// Versions plus delete markers per key, by ListObjectVersions.
pub async fn version_counts(shared: &Shared, bucket: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    let mut key_marker: Option<String> = None;
    let mut version_marker: Option<String> = None;
    loop {
        let out = shared
            .s3
            .client()
            .list_object_versions()
            .bucket(bucket)
            .set_key_marker(key_marker.clone())
            .set_version_id_marker(version_marker.clone())
            .send()
            .await
            .unwrap();
        for v in out.versions() {
            *counts.entry(v.key().unwrap_or_default().to_string()).or_insert(0) += 1;
        }
        for m in out.delete_markers() {
            *counts.entry(m.key().unwrap_or_default().to_string()).or_insert(0) += 1;
        }
        if out.is_truncated() != Some(true) {
            return counts;
        }
        key_marker = out.next_key_marker().map(str::to_string);
        version_marker = out.next_version_id_marker().map(str::to_string);
    }
}

/// Asserts the final state of every backend and that each effect happened once.
pub async fn assert_final_state(shared: &Shared, f: &Fixture, run: &RunId) {
    docker_state(shared, f, run).await;
    files_state(f, run);
    postgres_state(shared, f, run).await;
    s3_state(shared, f, run).await;
    redis_state(shared, f, run).await;
    kubernetes_state(shared, f, run).await;
}

/// `docker inspect` of one container.
pub fn inspect(host: &str, name: &str) -> serde_json::Value {
    serde_json::from_str::<serde_json::Value>(&docker(host, &["inspect", name])).unwrap()[0].clone()
}

/// Container events since the fixture was made: (action, container ID, run key label).
pub async fn events(f: &Fixture) -> Vec<(String, String, String)> {
    // Let the stream catch up with the last effects.
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    std::fs::read_to_string(&f.events_file)
        .unwrap()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .map(|e| {
            let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
            (text(&e["Action"]), text(&e["Actor"]["ID"]), text(&e["Actor"]["Attributes"]["io.rollback.key"]))
        })
        .collect()
}

async fn docker_state(shared: &Shared, f: &Fixture, run: &RunId) {
    let seen = events(f).await;
    let host = &shared.servers.docker;
    let ids = &shared.images.ids;
    for role in RECREATED {
        let name = &f.containers[role];
        let key = key(run, &format!("{role}-back"));
        let label = format!("label=io.rollback.key={key}");
        let carrying = docker(host, &["ps", "-aq", "--no-trunc", "--filter", &label]);
        let carrying: Vec<&str> = carrying.lines().collect();
        assert_eq!(carrying.len(), 1, "{name}: exactly one container carries {key}: {carrying:?}");
        let now = inspect(host, name);
        assert_eq!(now["Id"], carrying[0], "{name}: the replacement holds the name");
        assert_eq!(now["Image"], ids[0].as_str(), "{name}: on v1's image ID");
        assert_eq!(now["State"]["Running"], true, "{name}: running");
        let all =
            docker(host, &["ps", "-a", "--format", "{{.Image}} {{.Names}}", "--filter", &format!("name=^/{name}")]);
        let mut all: Vec<&str> = all.lines().collect();
        all.sort();
        assert_eq!(all.len(), 2, "{name}: the replacement and the retained old container, nothing more: {all:?}");
        let old =
            all.iter().find(|l| l.contains("_rb_old_")).unwrap_or_else(|| panic!("{name}: retained old: {all:?}"));
        let old_name = old.split(' ').nth(1).unwrap();
        assert_eq!(inspect(host, old_name)["Image"], ids[1].as_str(), "{old_name}: the old one ran v2");
        let created: Vec<_> = seen.iter().filter(|(a, _, k)| a == "create" && *k == key).collect();
        assert_eq!(created.len(), 1, "{name}: one replacement created in docker events: {created:?}");
    }
    let front = &f.containers["front"];
    let now = inspect(host, front);
    assert_eq!(now["Id"], f.front_id.as_str(), "{front}: stopped and started, never recreated");
    assert_eq!(now["State"]["Running"], true, "{front}: traffic back on");
    let front_events: Vec<&str> =
        seen.iter().filter(|(_, id, _)| *id == f.front_id).map(|(a, ..)| a.as_str()).collect();
    let count = |action: &str| front_events.iter().filter(|a| **a == action).count();
    assert_eq!((count("stop"), count("start")), (1, 1), "{front}: stopped once, started once: {front_events:?}");
}

fn files_state(f: &Fixture, run: &RunId) {
    for i in 0..CONFIGS {
        let dir = f.config_dir(i);
        let text = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        assert_eq!(text("app.conf"), format!("good {i}\n"), "cfg-{i}: restored from its backup");
        assert_eq!(text("reloads.log"), "reload\n", "cfg-{i}: reloaded exactly once");
        let marker: serde_json::Value = serde_json::from_str(&text(".app.conf.rollback.json")).unwrap();
        assert_eq!(marker["key"], key(run, &format!("cfg-{i}-back")), "cfg-{i}: marker");
        assert_eq!(marker["phase"], "done", "cfg-{i}: marker");
        let replaced: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("app.conf.replaced-"))
            .collect();
        assert_eq!(replaced.len(), 1, "cfg-{i}: the replaced file kept once: {replaced:?}");
        assert_eq!(text(&replaced[0]), format!("bad {i}\n"));
    }
    for i in 0..RELEASES {
        let root = f.release_root(i);
        let current = std::fs::read_link(root.join("current")).unwrap();
        assert_eq!(current, std::path::Path::new("releases/20251015-120000"), "rel-{i}: switched back");
        let restarts = std::fs::read_to_string(root.join("restarts.log")).unwrap_or_default();
        assert_eq!(restarts, "restart\n", "rel-{i}: restarted exactly once");
        let marker: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(root.join(".current.rollback.json")).unwrap()).unwrap();
        assert_eq!(
            (marker["key"].as_str(), marker["phase"].as_str()),
            (Some(key(run, &format!("rel-{i}-back")).as_str()), Some("done"))
        );
    }
}

async fn postgres_state(shared: &Shared, f: &Fixture, run: &RunId) {
    for target in DATABASES {
        let url = db_url(&shared.servers.postgres, &f.databases[target]);
        let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
        let column = |sql: &'static str| super::i64_column(&pool, sql);
        let [first, second, third] = MIGRATIONS;
        assert_eq!(
            column("SELECT version FROM down_log ORDER BY id").await,
            vec![third, second],
            "{target}: each down migration ran exactly once, newest first"
        );
        assert_eq!(column("SELECT version FROM _sqlx_migrations ORDER BY version").await, vec![first], "{target}");
        let tables = column("SELECT count(*) FROM information_schema.tables WHERE table_name = 'items'").await;
        assert_eq!(tables, vec![0], "{target}: the newest migration's table is gone");
        let marker = sqlx::query("SELECT run_key, reached, goal FROM _rollback_marker WHERE target = $1")
            .bind(target)
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(marker.len(), 1, "{target}: one marker row");
        let (k, reached, goal): (String, i64, i64) = (marker[0].get(0), marker[0].get(1), marker[0].get(2));
        assert_eq!((k, reached, goal), (key(run, &format!("{target}-back")), first, first), "{target}: marker");
        pool.close().await;
    }
}

async fn s3_state(shared: &Shared, f: &Fixture, run: &RunId) {
    let after = version_counts(shared, &f.bucket).await;
    // Key → (current content after the restore, versions the restore adds).
    let expected: [(&str, Option<&str>, usize); 7] = [
        ("avatars/a", Some("avatars/a@1"), 1),
        ("avatars/b", Some("avatars/b@1"), 1),
        ("avatars/c", Some("avatars/c@1"), 0),
        ("avatars/d", None, 1),
        ("avatars/e", Some("avatars/e@1"), 1),
        ("docs/x", Some("docs/x@1"), 1),
        ("docs/y", None, 1),
    ];
    for (k, content, added) in expected {
        assert_eq!(
            after.get(k).copied().unwrap_or(0),
            f.s3_before.get(k).copied().unwrap_or(0) + added,
            "s3 {k}: {added} version(s) added, never a duplicate (before {:?}, after {after:?})",
            f.s3_before
        );
        let got = shared.s3.client().get_object().bucket(&f.bucket).key(k).send().await;
        match content {
            Some(content) => {
                let got = got.unwrap_or_else(|e| panic!("s3 {k}: {e:?}"));
                let body = got.body.collect().await.unwrap().into_bytes();
                assert_eq!(String::from_utf8_lossy(&body), content, "s3 {k}: content at the restore point");
                if added == 1 {
                    let step = PREFIXES.iter().find(|(_, p)| k.starts_with(p)).unwrap().0;
                    assert!(
                        carries_stamp(shared, &f.bucket, k, &key(run, &format!("{step}-back"))).await,
                        "s3 {k}: the copy carries this run's stamp of one of the key's versions"
                    );
                }
            }
            None => assert!(got.is_err(), "s3 {k}: deleted (a delete marker) at the restore point"),
        }
    }
}

/// Whether `object`'s current copy is tagged with `run_key`'s stamp of one of its
/// own versions (what an S3 restore's copy carries).
pub async fn carries_stamp(shared: &Shared, bucket: &str, object: &str, run_key: &str) -> bool {
    let run_key = rollback_core::IdempotencyKey::new(run_key);
    let client = shared.s3.client();
    let tags = client.get_object_tagging().bucket(bucket).key(object).send().await.unwrap();
    let Some(stamp) = tags.tag_set().iter().find(|t| t.key() == rollback_storage::s3::TAG_RESTORE) else {
        return false;
    };
    let versions = client.list_object_versions().bucket(bucket).prefix(object).send().await.unwrap();
    versions.versions().iter().filter_map(|v| v.version_id()).any(|v| {
        rollback_storage::s3::restore_stamp(&run_key, &format!("{bucket}/{object}?versionId={v}")) == stamp.value()
    })
}

async fn redis_state(shared: &Shared, f: &Fixture, run: &RunId) {
    let mut conn = shared.redis.get_multiplexed_async_connection().await.unwrap();
    for (name, infix) in CACHES {
        let left = scan(&mut conn, &f.cache_pattern(infix)).await;
        assert!(left.is_empty(), "{name}: {} of {CACHE_KEYS} keys survived: {left:?}", left.len());
        let marker: Option<String> = redis::cmd("GET")
            .arg(format!("rollback:invalidate:{}", key(run, &format!("{name}-drop"))))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(marker.as_deref(), Some("done"), "{name}: marker");
    }
    let keep: Option<String> = redis::cmd("GET").arg(f.keep_key()).query_async(&mut conn).await.unwrap();
    assert_eq!(keep.as_deref(), Some("not matched"), "a key outside the patterns survives");
}

fn annotation<'a>(object: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    object["metadata"]["annotations"][name].as_str()
}

async fn kubernetes_state(shared: &Shared, f: &Fixture, run: &RunId) {
    let double = &shared.double;
    let requests: Vec<LoggedRequest> = double.requests().into_iter().skip(f.requests_from).collect();
    let patches = |name: &str| {
        let path = format!("/apis/apps/v1/namespaces/{}/deployments/{name}", f.namespace);
        requests.iter().filter(|r| r.method == "PATCH" && r.path == path).count()
    };
    for (name, _) in UNDONE {
        let d = double.object("deployments", &f.namespace, name).unwrap();
        let image = d["spec"]["template"]["spec"]["containers"][0]["image"].as_str();
        assert_eq!(image, Some(format!("{name}:1").as_str()), "{name}: back on revision 1's template");
        assert_eq!(annotation(&d, "rollback.dev/undo-key"), Some(key(run, &format!("{name}-back")).as_str()));
        assert_eq!(annotation(&d, "deployment.kubernetes.io/revision"), Some("3"), "{name}: one new revision");
        let sets: Vec<serde_json::Value> = double
            .objects("replicasets", &f.namespace)
            .into_iter()
            .filter(|rs| rs["metadata"]["labels"]["app"] == *name)
            .collect();
        assert_eq!(sets.len(), 2, "{name}: revision 1's ReplicaSet re-used, no new one");
        let old = sets
            .iter()
            .find(|rs| rs["spec"]["template"]["spec"]["containers"][0]["image"] == format!("{name}:1"))
            .unwrap();
        assert_eq!(annotation(old, "deployment.kubernetes.io/revision"), Some("3"), "{name}: revision 1 became 3");
        assert_eq!(annotation(old, "deployment.kubernetes.io/revision-history"), Some("1"), "{name}: undone once");
        assert_eq!(patches(name), 1, "{name}: one PATCH (the undo) in the double's request log");
    }
    let (name, replicas) = SCALED;
    let d = double.object("deployments", &f.namespace, name).unwrap();
    assert_eq!(d["spec"]["replicas"], replicas, "{name}: scaled back");
    let scale = format!("/apis/apps/v1/namespaces/{}/deployments/{name}/scale", f.namespace);
    let scaled = requests.iter().filter(|r| r.method == "PUT" && r.path == scale).count();
    assert_eq!(scaled, 2, "{name}: two PUTs of its scale subresource (to zero, back) in the double's request log");
    assert_eq!(patches(name), 0, "{name}: scaled through /scale only");
}
