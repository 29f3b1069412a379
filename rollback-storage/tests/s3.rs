//! S3 point-in-time restore against a real S3 server (moto_server from
//! ROLLBACK_TEST_S3_ENDPOINT), checked against an independent boto3 oracle
//! (ROLLBACK_TEST_BOTO3_PYTHON running tests/s3_oracle.py).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use common::*;
use rollback_core::testkit::conformance;
use rollback_core::{ErrorKind, IdempotencyKey, Observed, Request, Target};
use rollback_storage::s3::{S3, S3Restore, S3RestoreConfig, restore_stamp};

fn target(s3: S3, bucket: &str, prefix: &str, concurrency: usize) -> S3Restore {
    S3Restore::new(
        "bucket",
        s3,
        S3RestoreConfig {
            bucket: bucket.into(),
            prefix: prefix.into(),
            concurrency: Some(concurrency),
            attempts: Some(2),
            client: Default::default(),
        },
    )
    .unwrap()
}

/// The fixture of the issue: delete markers, keys created after T, delete-then-recreate,
/// several versions within one second. Returns T (ms).
async fn fixture(s3: &S3, bucket: &str, p: &str) -> i64 {
    next_second().await;
    for k in ["a", "b", "c", "d", "g"] {
        put(s3, bucket, &format!("{p}{k}"), &format!("{k}1")).await;
    }
    for v in ["e1", "e2", "e3"] {
        put(s3, bucket, &format!("{p}e"), v).await; // several versions in one second
    }
    put(s3, bucket, &format!("{p}h"), "h1").await;
    del(s3, bucket, &format!("{p}h")).await; // version + delete marker in one second (marker latest)
    next_second().await;
    del(s3, bucket, &format!("{p}g")).await; // deleted before T
    next_second().await;
    let t = Utc::now().timestamp_millis();
    next_second().await;
    put(s3, bucket, &format!("{p}a"), "a2").await; // overwritten after T
    del(s3, bucket, &format!("{p}b")).await; // delete marker after T
    del(s3, bucket, &format!("{p}c")).await; // delete then recreate
    put(s3, bucket, &format!("{p}c"), "c2").await;
    del(s3, bucket, &format!("{p}d")).await;
    put(s3, bucket, &format!("{p}e"), "e4").await;
    put(s3, bucket, &format!("{p}e"), "e5").await;
    put(s3, bucket, &format!("{p}f"), "f1").await; // created after T
    put(s3, bucket, &format!("{p}g"), "g2").await; // recreated after T
    put(s3, bucket, "outside/x", "x1").await; // outside the prefix: never touched
    t
}

#[tokio::test]
async fn point_in_time_restore_matches_the_boto3_oracle() {
    let Some(env) = env() else { return };
    let s3 = client(&env.endpoint, None, None).await;
    let bucket = unique("pit");
    make_bucket(&s3, &bucket).await;
    let t = fixture(&s3, &bucket, "app/").await;
    let before = oracle(&env, &env.endpoint, &bucket, "", t);
    let expected = before.state_at_t.iter().filter(|(k, _)| k.starts_with("app/")).collect::<BTreeMap<_, _>>();
    assert_eq!(
        expected.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
        vec!["app/a", "app/b", "app/c", "app/d", "app/e"],
        "fixture sanity"
    );

    let target = target(s3.clone(), &bucket, "app/", 8);
    let identity = target.identity().await.expect("a versioned bucket passes the identity check");
    assert!(identity.to_string().contains(&bucket), "{identity}");
    let at = chrono::DateTime::from_timestamp_millis(t).unwrap();
    let diff = target.diff_at(at).await.unwrap();
    assert_eq!((diff.overwritten, diff.recreated, diff.removed), (3, 2, 2), "{diff:?}");
    assert_eq!(diff.written_after, 5, "a, c, e, f, g were written after T");

    let request = Request::Action { action: "restore_at".into(), params: serde_json::json!({ "at": at }) };
    let change = target.prepare(&request).await.unwrap();
    assert_eq!(change.data_loss.items, Some(5), "{}", change.data_loss);
    assert!(change.data_loss.summary.contains("nothing is destroyed"));
    let preview = change.preview.as_deref().expect("a key preview");
    assert!(preview.contains("3 keys overwritten") && preview.contains("app/a"), "{preview}");
    let after_prepare = oracle(&env, &env.endpoint, &bucket, "", t);
    assert_eq!(after_prepare.total_versions, before.total_versions, "prepare (dry-run) changed nothing");

    let key = IdempotencyKey::new("run-1/restore/fwd");
    assert_eq!(target.observe(&change, &key).await.unwrap(), Observed::NotStarted);
    target.apply(&change, &key).await.unwrap();
    assert_eq!(target.observe(&change, &key).await.unwrap(), Observed::Done);
    assert_eq!(target.current().await.unwrap().id, change.to.id);

    let after = oracle(&env, &env.endpoint, &bucket, "", t);
    let restored: BTreeMap<_, _> = after.current.iter().filter(|(k, _)| k.starts_with("app/")).collect();
    assert_eq!(restored, expected, "current state equals the oracle's state at T");
    assert_eq!(after.current.get("outside/x").map(String::as_str), before.current.get("outside/x").map(String::as_str));
    assert!(after.total_versions > before.total_versions, "restores add versions");
    assert!(all_version_ids(&before).is_subset(&all_version_ids(&after)), "no version was destroyed");
    assert_eq!(after.total_versions, before.total_versions + 7, "one new version per planned key");

    // The copies keep the object's metadata and content type and carry the run's stamp.
    let head = s3.client().head_object().bucket(&bucket).key("app/a").send().await.unwrap();
    assert_eq!(head.metadata().unwrap().get("owner").map(String::as_str), Some("fixture"));
    assert_eq!(head.content_type(), Some("text/plain"));
    let version_at_t = &before.versions["app/a"][1];
    assert_eq!(
        tag(&s3, &bucket, "app/a").await.as_deref(),
        Some(restore_stamp(&key, &format!("{bucket}/app/a?versionId={version_at_t}")).as_str())
    );

    // Re-running (as after a crash) creates no extra versions.
    target.apply(&change, &key).await.unwrap();
    let again = oracle(&env, &env.endpoint, &bucket, "", t);
    assert_eq!(again.total_versions, after.total_versions, "re-applying a done restore wrote versions");
}

/// A bucket of `n` keys `k0000…` with an old version before T and a new one after;
/// returns T (ms).
async fn two_versions(s3: &S3, bucket: &str, n: usize) -> (Vec<String>, i64) {
    make_bucket(s3, bucket).await;
    let keys: Vec<String> = (0..n).map(|i| format!("k{i:04}")).collect();
    put_all(s3, bucket, &keys, "old").await;
    next_second().await;
    let t = Utc::now().timestamp_millis();
    next_second().await;
    put_all(s3, bucket, &keys, "new").await;
    (keys, t)
}

fn restore_at(t: i64) -> Request {
    let at = chrono::DateTime::from_timestamp_millis(t).unwrap();
    Request::Action { action: "restore_at".into(), params: serde_json::json!({ "at": at }) }
}

fn copies(requests: &[rollback_core::testkit::CapturedRequest]) -> Vec<&rollback_core::testkit::CapturedRequest> {
    requests.iter().filter(|r| r.method == "PUT" && r.headers.contains_key("x-amz-copy-source")).collect()
}

fn listings(requests: &[rollback_core::testkit::CapturedRequest]) -> usize {
    requests.iter().filter(|r| r.method == "GET" && r.path.contains("list-type=2")).count()
}

#[tokio::test]
async fn one_request_per_key_and_a_writer_inside_the_restore_is_not_overwritten() {
    let Some(env) = env() else { return };
    let s3 = client(&env.endpoint, None, None).await;
    let bucket = unique("guard");
    let (keys, t) = two_versions(&s3, &bucket, 1100).await;
    // Everything the restore sends goes through a recording proxy: counted at the wire.
    let proxy = rollback_core::testkit::RecordingProxy::start(&env.endpoint).await;
    let target = target(client(&proxy.url(), None, None).await, &bucket, "", 16);
    let change = target.prepare(&restore_at(t)).await.unwrap();
    proxy.clear();
    let before = oracle(&env, &env.endpoint, &bucket, "", t).total_versions;
    // A writer changes a key of the second page while the first page is written.
    let writer = {
        let (s3, bucket, key, proxy) = (s3.clone(), bucket.clone(), keys[1050].clone(), proxy.clone());
        tokio::spawn(async move {
            while copies(&proxy.requests()).len() < 300 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            put(&s3, &bucket, &key, "someone else's").await;
        })
    };
    let key = IdempotencyKey::new("run-g/restore/fwd");
    let err = target.apply(&change, &key).await.unwrap_err();
    writer.await.unwrap();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(err.to_string().contains("k1050"), "the error names the key: {err}");
    assert!(err.to_string().contains("restored_in_this_attempt=1000"), "says how far it got: {err}");

    let after = oracle(&env, &env.endpoint, &bucket, "", t);
    assert_eq!(body(&s3, &bucket, &keys[1050]).await, "someone else's", "the writer's object was not overwritten");
    assert_eq!(
        after.total_versions,
        before + 1001,
        "the first page restored, the writer's version, none of the second"
    );
    for k in &keys[..1000] {
        assert_eq!(after.current[k], after.state_at_t[k], "{k} restored");
    }
    for k in keys[1000..].iter().filter(|k| **k != keys[1050]) {
        assert_ne!(after.current[k], after.state_at_t[k], "{k} untouched");
    }
    let seen = proxy.requests();
    let copied = copies(&seen);
    assert_eq!(copied.len(), 1000, "one copy per restored key, no HEAD: {} requests", seen.len());
    assert_eq!(
        seen.len(),
        1000 + listings(&seen),
        "nothing but copies and listings: {:?}",
        seen.iter().take(3).collect::<Vec<_>>()
    );
    // observe before apply: 2 pages; page 1 before + after: 1 + 1; page 2 before: 1.
    assert_eq!(listings(&seen), 5, "listings per page");
    let probes: Vec<_> = copied.iter().filter(|r| r.headers.contains_key("if-match")).collect();
    assert_eq!(probes.len(), 1, "only the probe carries If-Match on the re-listing path");
    for c in &copied {
        assert_eq!(c.headers.get("x-amz-metadata-directive").map(String::as_str), Some("COPY"));
        assert_eq!(c.headers.get("x-amz-tagging-directive").map(String::as_str), Some("REPLACE"));
    }
    assert!(matches!(target.observe(&change, &key).await.unwrap(), Observed::Diverged(_)), "k1050 diverged");
}

#[tokio::test]
async fn conditional_writes_put_the_planned_etag_on_every_copy() {
    let Some(env) = env() else { return };
    let s3 = client(&env.endpoint, None, None).await;
    let bucket = unique("cond");
    let (keys, t) = two_versions(&s3, &bucket, 40).await;
    del(&s3, &bucket, &keys[0]).await; // restored by a copy onto an absent key: If-None-Match
    let proxy = rollback_core::testkit::RecordingProxy::start(&env.endpoint).await;
    let mut config = S3RestoreConfig {
        bucket: bucket.clone(),
        prefix: String::new(),
        concurrency: Some(8),
        attempts: Some(2),
        client: Default::default(),
    };
    config.client.write_guard = Some(rollback_storage::s3::WriteGuard::Conditional);
    let proxied = client(&proxy.url(), None, None).await;
    let target = S3Restore::new("bucket", proxied, config).unwrap();
    let change = target.prepare(&restore_at(t)).await.unwrap();
    let etag_new = oracle(&env, &env.endpoint, &bucket, "", t).current[&keys[1]].clone();
    proxy.clear();
    let key = IdempotencyKey::new("run-c/restore/fwd");
    target.apply(&change, &key).await.unwrap();
    let seen = proxy.requests();
    let copied = copies(&seen);
    assert_eq!(copied.len(), 40);
    assert_eq!(listings(&seen), 1, "only apply's own observe lists; no page listings");
    for c in &copied {
        if c.path.contains(&format!("/{}?", keys[0])) {
            assert_eq!(c.headers.get("if-none-match").map(String::as_str), Some("*"), "absent key: {c:?}");
        } else {
            assert_eq!(c.headers.get("if-match"), Some(&format!("\"{etag_new}\"")), "planned ETag: {c:?}");
        }
    }
    assert_eq!(target.observe(&change, &key).await.unwrap(), Observed::Done);
}

#[tokio::test]
async fn interrupted_restore_resumes_and_diverged_is_refused() {
    let Some(env) = env() else { return };
    let s3 = client(&env.endpoint, None, None).await;
    let bucket = unique("pitpart");
    make_bucket(&s3, &bucket).await;
    let t = fixture(&s3, &bucket, "").await;
    let target = target(s3.clone(), &bucket, "", 4);
    let at = chrono::DateTime::from_timestamp_millis(t).unwrap();
    let change = target
        .prepare(&Request::Action { action: "restore_at".into(), params: serde_json::json!({ "at": at }) })
        .await
        .unwrap();
    let key = IdempotencyKey::new("run-2/restore/fwd");
    // Half-finished: the key f got its delete marker, nothing else happened.
    del(&s3, &bucket, "f").await;
    let progress = target.progress(&change, &key).await.unwrap();
    assert_eq!((progress.done, progress.planned), (1, 8), "{progress:?}");
    assert!(matches!(target.observe(&change, &key).await.unwrap(), Observed::Partial(_)));
    let before = oracle(&env, &env.endpoint, &bucket, "", t);
    target.apply(&change, &key).await.unwrap();
    assert_eq!(target.observe(&change, &key).await.unwrap(), Observed::Done);
    let after = oracle(&env, &env.endpoint, &bucket, "", t);
    assert_eq!(after.total_versions, before.total_versions + 7, "only the seven remaining keys were written");
    assert_eq!(after.current, after.state_at_t);

    // Someone else writes a key outside the plan after prepare: a fresh change is diverged.
    let other = target
        .prepare(&Request::To(rollback_core::Selector::Before(
            chrono::DateTime::from_timestamp_millis(t - 1500).unwrap(),
        )))
        .await;
    if let Ok(other) = other {
        put(&s3, &bucket, "late-writer", "zzz").await;
        let k2 = IdempotencyKey::new("run-3/restore/fwd");
        assert!(matches!(target.observe(&other, &k2).await.unwrap(), Observed::Diverged(_)));
        let err = target.apply(&other, &k2).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    }
}

/// A bucket with three revisions, each in its own second, newest current.
async fn three_revisions(endpoint: &str) -> Arc<dyn Target> {
    let s3 = client(endpoint, None, None).await;
    let bucket = unique("conf");
    make_bucket(&s3, &bucket).await;
    next_second().await;
    put(&s3, &bucket, "a", "1").await;
    next_second().await;
    put(&s3, &bucket, "a", "2").await;
    put(&s3, &bucket, "b", "1").await;
    next_second().await;
    put(&s3, &bucket, "a", "3").await;
    put(&s3, &bucket, "b", "2").await;
    Arc::new(target(s3, &bucket, "", 4))
}

#[tokio::test]
async fn conformance_suite() {
    let Some(env) = env() else { return };
    let endpoint = env.endpoint.clone();
    conformance::target_suite(|| three_revisions(&endpoint)).await;
    let t = three_revisions(&endpoint).await;
    let s3 = client(&endpoint, None, None).await;
    conformance::observe_between_phases(t, |change, _key| async move {
        // Restore one of the two keys by hand, the way a crash half-way leaves it.
        let payload = &change.payload;
        let bucket = payload["bucket"].as_str().unwrap().to_owned();
        let row = &payload["rows"][0];
        let key = row[0].as_str().unwrap();
        let version = row[3].as_str().unwrap();
        s3.client()
            .copy_object()
            .bucket(&bucket)
            .key(key)
            .copy_source(format!("{bucket}/{key}?versionId={version}"))
            .send()
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn server_stopped_mid_restore_then_resumed() {
    let Some(env) = env() else { return };
    // A private moto_server, stopped with SIGSTOP (past the client timeouts) and
    // continued with SIGCONT: moto keeps its state in memory, so it cannot be killed.
    let moto = std::path::Path::new(&env.python).with_file_name("moto_server");
    let port = rollback_core::testkit::outage::free_port();
    let mut child = std::process::Command::new(&moto)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start a private moto_server");
    let endpoint = format!("http://127.0.0.1:{port}");
    for _ in 0..600 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the private moto_server exited");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let result = std::panic::AssertUnwindSafe(async {
        let setup = client(&endpoint, None, None).await;
        let s3 = client(&endpoint, Some(Duration::from_secs(1)), Some(2)).await;
        make_bucket(&setup, "fault").await;
        next_second().await;
        let keys: Vec<String> = (0..400).map(|i| format!("k{i:04}")).collect();
        put_all(&setup, "fault", &keys, "old").await;
        next_second().await;
        let t = Utc::now().timestamp_millis();
        next_second().await;
        put_all(&setup, "fault", &keys, "new").await;
        let before = oracle(&env, &endpoint, "fault", "", t);
        assert_eq!(before.total_versions, 800);

        let restore = Arc::new(target(s3.clone(), "fault", "", 8));
        let at = chrono::DateTime::from_timestamp_millis(t).unwrap();
        let change = restore
            .prepare(&Request::Action { action: "restore_at".into(), params: serde_json::json!({ "at": at }) })
            .await
            .unwrap();
        let key = IdempotencyKey::new("run-f/restore/fwd");
        let running = {
            let (target, change, key) = (restore.clone(), change.clone(), key.clone());
            tokio::spawn(async move { target.apply(&change, &key).await })
        };
        // Stop the server once some keys are restored (observed from the server).
        let watcher = target(client(&endpoint, None, None).await, "fault", "", 1);
        for _ in 0..200 {
            if watcher.progress(&change, &key).await.unwrap().done >= 20 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
        let err = running.await.unwrap().expect_err("the restore must fail while the server is stopped");
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
        let text = err.to_string();
        assert!(matches!(err.kind(), ErrorKind::Timeout | ErrorKind::Backend), "{text}");
        assert!(err.is_retryable());
        assert!(err.context_value("failed_key").is_some(), "the report names the key: {text}");
        let restored: u64 = err.context_value("restored_in_this_attempt").unwrap().parse().unwrap();
        assert!((20..400).contains(&restored), "{text}");
        assert!(err.context_value("remaining_at_start") == Some("400"), "{text}");
        // Requests queued while stopped finish now; then resume observes and completes.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let observed = restore.observe(&change, &key).await.unwrap();
        assert!(matches!(observed, Observed::Partial(_)), "{observed:?}");
        restore.apply(&change, &key).await.unwrap();
        assert_eq!(restore.observe(&change, &key).await.unwrap(), Observed::Done);
        let after = oracle(&env, &endpoint, "fault", "", t);
        assert!(all_version_ids(&before).is_subset(&all_version_ids(&after)), "no version lost");
        for k in &keys {
            assert_eq!(after.versions[k].len(), 3, "{k}: exactly one restore copy, no duplicate");
            assert_eq!(after.current[k], after.state_at_t[k]);
        }
        eprintln!("fault report was: {text}");
    });
    let outcome = futures::FutureExt::catch_unwind(result).await;
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
    let _ = child.kill();
    let _ = child.wait();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test]
async fn bad_input_is_refused_before_anything_changes() {
    let Some(env) = env() else { return };
    let s3 = client(&env.endpoint, None, None).await;
    let err = S3Restore::new(
        "x",
        s3.clone(),
        S3RestoreConfig {
            bucket: "ab".into(),
            prefix: String::new(),
            concurrency: None,
            attempts: None,
            client: Default::default(),
        },
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let bucket = unique("unver");
    s3.client().create_bucket().bucket(&bucket).send().await.unwrap();
    let t = target(s3.clone(), &bucket, "", 2);
    let err = t.identity().await.unwrap_err();
    assert!(err.to_string().contains("versioning"), "{err}");
    let missing = target(s3, "no-such-bucket-here", "", 2);
    assert_eq!(missing.current().await.unwrap_err().kind(), ErrorKind::NotFound);
    let err = missing.prepare(&Request::Action { action: "explode".into(), params: serde_json::Value::Null }).await;
    assert_eq!(err.unwrap_err().kind(), ErrorKind::InvalidInput);
}

#[tokio::test]
async fn artifact_store_retention_spares_unfinished_runs_and_bucket_verifier() {
    use rollback_core::{ArtifactStore, Outcome, Verifier};
    use rollback_storage::s3::{BucketCheck, Retention, S3ArtifactStore, S3BucketVerifier};
    let Some(env) = env() else { return };
    let s3 = client(&env.endpoint, None, None).await;
    let bucket = unique("art");
    s3.client().create_bucket().bucket(&bucket).send().await.unwrap();
    let store = S3ArtifactStore::new(s3.clone(), &bucket, "rollback/");
    for run in ["run-a", "run-b", "run-c", "run-d"] {
        store.put(&format!("{run}/snap/manifest.json"), run.as_bytes().to_vec()).await.unwrap();
        next_second().await;
    }
    assert_eq!(store.get("run-a/snap/manifest.json").await.unwrap(), b"run-a");
    assert!(store.put("../escape", vec![]).await.is_err());
    assert_eq!(store.location("x/y"), format!("s3://{bucket}/rollback/x/y"));
    let protected: BTreeSet<String> = ["run-a".to_owned()].into();
    let pruned = store.prune(Retention { keep: Some(2), max_age: None }, &protected).await.unwrap();
    assert_eq!(pruned, vec!["run-b".to_owned()], "keep the newest two, never the unfinished run-a");
    let left = store.list("").await.unwrap();
    assert_eq!(left, vec!["run-a/snap/manifest.json", "run-c/snap/manifest.json", "run-d/snap/manifest.json"]);

    let check =
        BucketCheck { bucket: bucket.clone(), prefix: "rollback/".into(), min_objects: Some(3), max_objects: None };
    let verifier = S3BucketVerifier::new("bucket", s3.clone(), check);
    let c = verifier.check().await.unwrap();
    assert_eq!((c.outcome, c.measurements["objects"]), (Outcome::Pass, 3.0));
    let missing =
        S3BucketVerifier::new("x", s3, BucketCheck { bucket: "no-such-bucket-zz".into(), ..Default::default() });
    assert_eq!(missing.check().await.unwrap().outcome, Outcome::Fail);
}

#[tokio::test]
async fn artifact_store_retention_by_max_age() {
    use rollback_core::ArtifactStore;
    use rollback_storage::s3::{Retention, S3ArtifactStore};
    let Some(env) = env() else { return };
    let s3 = client(&env.endpoint, None, None).await;
    let bucket = unique("age");
    s3.client().create_bucket().bucket(&bucket).send().await.unwrap();
    let store = S3ArtifactStore::new(s3.clone(), &bucket, "evidence");
    // Two old points (one with two artifacts), then two fresh ones 5 s later. Each
    // prune uses max_age = (time since the fresh ones were written) + 2.5 s: fresh
    // points are younger than that (the server's one-second LastModified resolution
    // and the listing inside prune fit in the 2.5 s), old ones are >= 5 s older than
    // the fresh ones — whatever the load on the server.
    store.put("run-a/snap/manifest.json", b"a".to_vec()).await.unwrap();
    next_second().await; // run-a strictly older than run-b: no tie in the newest-first order
    store.put("run-b/snap/manifest.json", b"b".to_vec()).await.unwrap();
    store.put("run-b/logs/app.log", b"b".to_vec()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let fresh = std::time::Instant::now();
    store.put("run-c/snap/manifest.json", b"c".to_vec()).await.unwrap();
    store.put("run-d/snap/manifest.json", b"d".to_vec()).await.unwrap();
    let max_age = || Some(fresh.elapsed() + Duration::from_millis(2500));
    let protected: BTreeSet<String> = ["run-a".to_owned()].into();

    // keep + max_age: a point goes only when it is both beyond the newest 3 and too old
    // (only run-a is), and run-a is protected (an unfinished run): nothing goes.
    let pruned = store.prune(Retention { keep: Some(3), max_age: max_age() }, &protected).await.unwrap();
    assert!(pruned.is_empty(), "{pruned:?}");
    assert_eq!(store.list("").await.unwrap().len(), 5);

    // max_age alone: every old point goes, except the protected one; fresh ones stay.
    let pruned = store.prune(Retention { keep: None, max_age: max_age() }, &protected).await.unwrap();
    assert_eq!(pruned, vec!["run-b".to_owned()]);
    assert_eq!(
        store.list("").await.unwrap(),
        vec!["run-a/snap/manifest.json", "run-c/snap/manifest.json", "run-d/snap/manifest.json"],
        "both of run-b's artifacts are gone, nothing else"
    );
    // What the server holds, not what the store says: list the bucket directly.
    let listed = s3.client().list_objects_v2().bucket(&bucket).send().await.unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(
        keys,
        vec![
            "evidence/run-a/snap/manifest.json",
            "evidence/run-c/snap/manifest.json",
            "evidence/run-d/snap/manifest.json"
        ]
    );

    // Once run-a finished (no longer protected), it goes too.
    let pruned = store.prune(Retention { keep: None, max_age: max_age() }, &BTreeSet::new()).await.unwrap();
    assert_eq!(pruned, vec!["run-a".to_owned()]);
    assert_eq!(store.list("").await.unwrap(), vec!["run-c/snap/manifest.json", "run-d/snap/manifest.json"]);
}

/// The current objects under `prefix`, as `key=body` lines, read from the server.
async fn bucket_state(s3: &S3, bucket: &str, prefix: &str) -> String {
    let listed = s3.client().list_objects_v2().bucket(bucket).prefix(prefix).send().await.unwrap();
    let mut lines = Vec::new();
    for object in listed.contents() {
        let key = object.key().unwrap();
        let body = s3.client().get_object().bucket(bucket).key(key).send().await.unwrap().body.collect().await;
        lines.push(format!("{key}={}", String::from_utf8_lossy(&body.unwrap().into_bytes())));
    }
    lines.join("\n")
}

#[tokio::test]
async fn artifact_store_and_version_manifest_conform() {
    use rollback_storage::s3::{S3ArtifactStore, S3VersionManifest, S3VersionManifestConfig};
    let Some(env) = env() else { return };
    let s3 = client(&env.endpoint, None, None).await;
    let bucket = unique("conf");
    make_bucket(&s3, &bucket).await;
    let store = S3ArtifactStore::new(s3.clone(), &bucket, "evidence/");
    conformance::artifact_store_suite(&store, "conformance").await;

    let keys: Vec<String> = (0..20).map(|i| format!("app/k{i:02}")).collect();
    put_all(&s3, &bucket, &keys, "good").await;
    let config = S3VersionManifestConfig {
        bucket: bucket.clone(),
        prefix: "app/".into(),
        concurrency: None,
        client: Default::default(),
    };
    let snapshot = Arc::new(S3VersionManifest::new("assets", s3.clone(), config).unwrap());
    let state = || bucket_state(&s3, &bucket, "app/");
    conformance::snapshot_suite(snapshot, &store, state, || async {
        put_all(&s3, &bucket, &keys[..10], "broken").await;
        put(&s3, &bucket, "app/new-key", "added later").await;
        del(&s3, &bucket, &keys[15]).await;
    })
    .await;
}
