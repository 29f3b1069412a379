//! Redis invalidation, lock and verifiers against a real redis-server
//! (ROLLBACK_TEST_REDIS_URL).

use std::sync::Arc;
use std::time::Duration;

use rollback_core::testkit::{conformance, server_env};
use rollback_core::{ErrorKind, IdempotencyKey, Lock, Observed, Outcome, Registry, Request, Spec, Target, Verifier};
use rollback_storage::redis::{
    Invalidation, KeyspaceCheck, RedisConn, RedisInvalidate, RedisInvalidateConfig, RedisKeyspace, RedisLock, RedisPing,
};

fn url() -> Option<String> {
    server_env("ROLLBACK_TEST_REDIS_URL", "Redis")
}

async fn conn_db(url: &str, db: i64) -> redis::aio::MultiplexedConnection {
    RedisConn::open(url, Duration::from_secs(5)).unwrap().connect(Some(db)).await.unwrap()
}

async fn fill(conn: &mut redis::aio::MultiplexedConnection, prefix: &str, n: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.cmd("SET").arg(format!("{prefix}{i}")).arg("v").ignore();
        }
        pipe.query_async::<()>(conn).await.unwrap();
    }
}

async fn count(conn: &mut redis::aio::MultiplexedConnection, pattern: &str) -> usize {
    rollback_storage::redis::count_matching(conn, pattern, 1000).await.unwrap() as usize
}

fn pattern_target(url: &str, db: i64, pattern: &str) -> RedisInvalidate {
    let config = RedisInvalidateConfig {
        conn: Default::default(),
        db: Some(db),
        what: Invalidation::Pattern { pattern: pattern.into() },
        batch: Some(500),
    };
    RedisInvalidate::new("cache", RedisConn::open(url, Duration::from_secs(5)).unwrap(), &config).unwrap()
}

fn invalidate() -> Request {
    Request::Action { action: "invalidate".into(), params: serde_json::json!({}) }
}

#[tokio::test]
async fn pattern_invalidation_unlinks_only_matching_keys() {
    let Some(url) = url() else { return };
    let mut conn = conn_db(&url, 5).await;
    let run = format!("t{}", std::process::id());
    fill(&mut conn, &format!("{run}:sess:"), 5000).await;
    fill(&mut conn, &format!("{run}:keep:"), 100).await;
    let target = pattern_target(&url, 5, &format!("{run}:sess:*"));
    let change = target.prepare(&invalidate()).await.unwrap();
    assert_eq!(change.data_loss.items, Some(5000), "{}", change.data_loss);
    assert_eq!(count(&mut conn, &format!("{run}:sess:*")).await, 5000, "prepare changed nothing");
    assert!(change.description.contains("SCAN + UNLINK"), "{}", change.description);
    let key = IdempotencyKey::new(format!("{run}/invalidate/fwd"));
    assert_eq!(target.observe(&change, &key).await.unwrap(), Observed::NotStarted);
    target.apply(&change, &key).await.unwrap();
    assert_eq!(target.observe(&change, &key).await.unwrap(), Observed::Done);
    assert_eq!(count(&mut conn, &format!("{run}:sess:*")).await, 0);
    assert_eq!(count(&mut conn, &format!("{run}:keep:*")).await, 100, "other keys untouched");
    // Re-applying a done invalidation is a no-op (keys written since stay).
    fill(&mut conn, &format!("{run}:sess:new"), 3).await;
    target.apply(&change, &key).await.unwrap();
    assert_eq!(count(&mut conn, &format!("{run}:sess:*")).await, 3);
}

#[tokio::test]
async fn interrupted_invalidation_is_partial_and_converges() {
    let Some(url) = url() else { return };
    let mut conn = conn_db(&url, 7).await;
    let run = format!("p{}", std::process::id());
    fill(&mut conn, &format!("{run}:x:"), 2000).await;
    let target = pattern_target(&url, 7, &format!("{run}:x:*"));
    let change = target.prepare(&invalidate()).await.unwrap();
    let key = IdempotencyKey::new(format!("{run}/inv/fwd"));
    // What a crash after the first batches leaves: the started marker, half the keys.
    redis::cmd("SET")
        .arg(format!("rollback:invalidate:{key}"))
        .arg("started")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let half: Vec<String> = (0..1000).map(|i| format!("{run}:x:{i}")).collect();
    redis::cmd("UNLINK").arg(&half).query_async::<()>(&mut conn).await.unwrap();
    match target.observe(&change, &key).await.unwrap() {
        Observed::Partial(detail) => assert!(detail.contains("1000 matching keys left of 2000"), "{detail}"),
        other => panic!("expected partial, got {other:?}"),
    }
    assert!(target.capabilities().converges_from_partial);
    target.apply(&change, &key).await.unwrap();
    assert_eq!(target.observe(&change, &key).await.unwrap(), Observed::Done);
    assert_eq!(count(&mut conn, &format!("{run}:x:*")).await, 0);
}

#[tokio::test]
async fn flush_mode_uses_flushdb_async() {
    let Some(url) = url() else { return };
    let mut conn = conn_db(&url, 9).await;
    fill(&mut conn, "f:", 300).await;
    let config =
        RedisInvalidateConfig { conn: Default::default(), db: Some(9), what: Invalidation::Flush, batch: None };
    let target =
        RedisInvalidate::new("cache", RedisConn::open(&url, Duration::from_secs(5)).unwrap(), &config).unwrap();
    let change = target.prepare(&invalidate()).await.unwrap();
    assert!(change.description.contains("FLUSHDB ASYNC"));
    assert!(change.data_loss.items.unwrap() >= 300);
    let key = IdempotencyKey::new(format!("flush-{}", std::process::id()));
    target.apply(&change, &key).await.unwrap();
    let size: u64 = redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap();
    assert_eq!(size, 1, "only the run's marker is left");
    assert_eq!(target.observe(&change, &key).await.unwrap(), Observed::Done);
    let keyspace = RedisKeyspace::new(
        "ks",
        RedisConn::open(&url, Duration::from_secs(5)).unwrap(),
        KeyspaceCheck { db: 9, max_keys: Some(1), min_keys: None },
    );
    assert_eq!(keyspace.check().await.unwrap().outcome, Outcome::Pass);
    fill(&mut conn, "f:", 5).await;
    assert_eq!(keyspace.check().await.unwrap().outcome, Outcome::Fail);
    // Not an action it knows: refused before anything changes.
    let err = target.prepare(&Request::To(rollback_core::Selector::Previous)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[tokio::test]
async fn lock_conformance_and_fencing() {
    let Some(url) = url() else { return };
    let prefix = format!("rollback-test-lock-{}", std::process::id());
    let u = url.clone();
    conformance::lock_suite(|| {
        let (u, prefix) = (u.clone(), prefix.clone());
        async move {
            Arc::new(RedisLock::with_prefix(RedisConn::open(&u, Duration::from_secs(5)).unwrap(), &prefix))
                as Arc<dyn Lock>
        }
    })
    .await;
    // A holder whose lease expired cannot release the new holder's lease.
    let lock = RedisLock::with_prefix(RedisConn::open(&url, Duration::from_secs(5)).unwrap(), &prefix);
    let a = rollback_core::Holder { run: rollback_core::RunId::generate(), pid: 1, host: "a".into() };
    let b = rollback_core::Holder { run: rollback_core::RunId::generate(), pid: 2, host: "b".into() };
    let old = lock.acquire(&["r".into()], &a, Duration::from_millis(100)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let new = lock.acquire(&["r".into()], &b, Duration::from_secs(30)).await.unwrap();
    assert!(new.token > old.token);
    lock.release(&old).await.unwrap();
    let err = lock.acquire(&["r".into()], &a, Duration::from_secs(30)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked, "the stale release must not free the new lease");
    lock.release(&new).await.unwrap();
}

#[tokio::test]
async fn verifiers_and_registry() {
    let Some(url) = url() else { return };
    let ping = RedisPing::new("ping", RedisConn::open(&url, Duration::from_secs(5)).unwrap());
    let check = ping.check().await.unwrap();
    assert_eq!(check.outcome, Outcome::Pass, "{}", check.detail);
    assert!(check.measurements.contains_key("latency_ms"));
    let down = RedisPing::new("down", RedisConn::open("redis://127.0.0.1:1/", Duration::from_secs(1)).unwrap());
    assert_eq!(down.check().await.unwrap().outcome, Outcome::Fail);

    let mut registry = Registry::new();
    rollback_storage::register(&mut registry);
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("redis-url");
    std::fs::write(&secret, format!("{url}\n")).unwrap();
    let mut spec = Spec::new("redis-ping", "cache-up", serde_json::Value::Null);
    spec.secrets.insert("url".into(), rollback_core::SecretRef::File { path: secret.clone() });
    let v = registry.verifier("cache-up", &[spec]).await.unwrap();
    assert_eq!(v.check().await.unwrap().outcome, Outcome::Pass);
    let mut spec =
        Spec::new("redis-invalidate", "cache", serde_json::json!({"db": 3, "mode": "pattern", "pattern": "x:*"}));
    spec.secrets.insert("url".into(), rollback_core::SecretRef::File { path: secret.clone() });
    let t = registry.target("cache", &[spec]).await.unwrap();
    assert_eq!(t.kind(), "redis-invalidate");
    let id = t.identity().await.unwrap();
    assert!(id.to_string().contains("db 3"), "{id}");
    let bad =
        Spec::new("redis-invalidate", "c2", serde_json::json!({"url": "redis://:pw@127.0.0.1:6390/", "mode": "flush"}));
    let err = registry.target("c2", &[bad]).await.err().expect("credentials in config are refused");
    assert!(!err.to_string().contains(":pw@"), "{err}");
}

#[tokio::test]
async fn invalidation_conforms_as_an_action_target_and_ping_as_a_verifier() {
    let Some(url) = url() else { return };
    let run = format!("conf{}", std::process::id());
    let mut conn = conn_db(&url, 6).await;
    fill(&mut conn, &format!("{run}:sess:"), 250).await;
    let target = Arc::new(pattern_target(&url, 6, &format!("{run}:sess:*")));
    let pattern = format!("{run}:sess:*");
    let state = || {
        let (url, pattern) = (url.clone(), pattern.clone());
        async move { format!("{} keys", count(&mut conn_db(&url, 6).await, &pattern).await) }
    };
    conformance::action_suite(target, invalidate(), state).await;
    assert_eq!(count(&mut conn, &pattern).await, 0, "the suite's apply unlinked the keys at the server");

    let up = RedisPing::new("ping", RedisConn::open(&url, Duration::from_secs(5)).unwrap());
    let down = RedisPing::new("down", RedisConn::open("redis://127.0.0.1:1/", Duration::from_secs(1)).unwrap());
    conformance::verifier_suite(&up, &down, Duration::from_secs(10)).await;
}
