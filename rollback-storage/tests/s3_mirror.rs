//! Mirror restore (`s3-mirror`) and the S3 snapshots (`s3-version-manifest`, `s3-copy`)
//! against a real S3 server (moto_server from ROLLBACK_TEST_S3_ENDPOINT), checked with
//! the independent boto3 oracle (tests/s3_oracle.py), plus an engine run that
//! snapshots, mirrors, fails verification and compensates from the snapshot.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use rollback_core::testkit::conformance;
use rollback_core::{ArtifactStore, ErrorKind, IdempotencyKey, Observed, Request, Selector, Snapshot, Target};
use rollback_storage::s3::{
    BackupLocation, S3, S3ArtifactStore, S3CopyConfig, S3CopySnapshot, S3Mirror, S3MirrorConfig, S3VersionManifest,
    S3VersionManifestConfig, restore_stamp,
};

fn mirror(s3: S3, bucket: &str, prefix: &str, backups: BackupLocation) -> S3Mirror {
    let config = S3MirrorConfig {
        bucket: bucket.into(),
        prefix: prefix.into(),
        backups,
        delete_extra: true,
        allow_unversioned: false,
        concurrency: Some(4),
        attempts: Some(2),
        client: Default::default(),
    };
    S3Mirror::new("docs", s3, config).unwrap()
}

fn backups(bucket: &str, prefix: &str, path: &str) -> BackupLocation {
    BackupLocation { bucket: bucket.into(), prefix: prefix.into(), path: path.into(), sets: true }
}

/// `{key relative to prefix: etag}` of the current objects, from the oracle.
fn current_rel(o: &Oracle, prefix: &str) -> BTreeMap<String, String> {
    o.current.iter().filter_map(|(k, e)| Some((k.strip_prefix(prefix)?.to_owned(), e.clone()))).collect()
}

/// The runbook's layout: nightly sets in an unversioned backup bucket, each holding
/// `prod-docs/`; the live prefix `docs/` of a versioned bucket drifted after 10-16.
async fn runbook_fixture(s3: &S3) -> (String, String) {
    let (live, bk) = (unique("mir"), unique("mirbk"));
    make_bucket(s3, &live).await;
    s3.client().create_bucket().bucket(&bk).send().await.unwrap();
    let set15 = "nightly/2025-10-15-180000/prod-docs/";
    let set16 = "nightly/2025-10-16-180000/prod-docs/";
    put(s3, &bk, &format!("{set15}a"), "a-older").await;
    for (k, v) in [("a", "a-good"), ("b", "b"), ("d", "d"), ("sub/e", "e-good"), ("x y.pdf", "spaced")] {
        put(s3, &bk, &format!("{set16}{k}"), v).await;
    }
    put(s3, &bk, "nightly/2025-10-16-180000/other-app/z", "not ours").await;
    for (k, v) in [("a", "a-bad"), ("b", "b"), ("c", "c-new"), ("sub/e", "e-bad"), ("d", "d")] {
        put(s3, &live, &format!("docs/{k}"), v).await;
    }
    del(s3, &live, "docs/d").await; // deleted after the backup: comes back
    put(s3, &live, "other/x", "outside").await;
    (live, bk)
}

#[tokio::test]
async fn mirror_restore_matches_the_backup_boto3_check() {
    let Some(env) = env() else { return };
    let s3 = client(&env.endpoint, None, None).await;
    let (live, bk) = runbook_fixture(&s3).await;
    let target = mirror(s3.clone(), &live, "docs", backups(&bk, "nightly", "prod-docs"));
    target.identity().await.unwrap();

    let history = target.history().await.unwrap();
    let labels: Vec<_> = history.iter().map(|r| r.version.label.clone().unwrap_or_default()).collect();
    assert_eq!(labels, vec!["live", "2025-10-16-180000", "2025-10-15-180000"]);
    assert_eq!(target.backups().await.unwrap(), vec!["2025-10-15-180000", "2025-10-16-180000"]);

    let diff = target.diff("2025-10-16-180000").await.unwrap();
    assert_eq!((diff.overwritten, diff.created, diff.removed, diff.unchanged), (2, 2, 1, 1), "{diff:?}");

    let before = oracle(&env, &env.endpoint, &live, "", 0);
    let at = chrono::DateTime::parse_from_rfc3339("2025-10-16T20:00:00Z").unwrap().to_utc();
    let change = target.prepare(&Request::To(Selector::Before(at))).await.unwrap();
    assert_eq!(change.to.label.as_deref(), Some("2025-10-16-180000"), "before 20:00 is the 18:00 set");
    assert_eq!(change.data_loss.items, Some(3), "{}", change.data_loss);
    assert!(change.data_loss.summary.contains("nothing is destroyed"));
    assert_eq!(change.payload["rows"].as_array().unwrap().len(), 5);
    let preview = change.preview.as_deref().expect("a key preview");
    assert!(
        preview.contains("2 keys overwritten") && preview.contains("examples (5 of the changed keys)"),
        "{preview}"
    );
    let previous = target.prepare(&Request::To(Selector::Previous)).await.unwrap();
    assert_eq!(previous.to, change.to, "previous is the newest backup");
    assert_eq!(oracle(&env, &env.endpoint, &live, "", 0).total_versions, before.total_versions, "prepare wrote");

    let key = IdempotencyKey::new("run-m/mirror/fwd");
    assert_eq!(target.observe(&change, &key).await.unwrap(), Observed::NotStarted);
    target.apply(&change, &key).await.unwrap();
    assert_eq!(target.observe(&change, &key).await.unwrap(), Observed::Done);
    assert_eq!(target.current().await.unwrap().id, change.to.id);

    let after = oracle(&env, &env.endpoint, &live, "", 0);
    let backup = oracle(&env, &env.endpoint, &bk, "nightly/2025-10-16-180000/prod-docs/", 0);
    assert_eq!(
        current_rel(&after, "docs/"),
        current_rel(&backup, "nightly/2025-10-16-180000/prod-docs/"),
        "the live prefix now holds exactly the backup (by ETag)"
    );
    assert_eq!(after.current["other/x"], before.current["other/x"], "outside the prefix: untouched");
    assert!(all_version_ids(&before).is_subset(&all_version_ids(&after)), "no version was destroyed");
    assert_eq!(after.total_versions, before.total_versions + 5, "one new version or delete marker per planned key");
    assert_eq!(after.versions["docs/c"].len(), 2, "c: its version kept under a delete marker");
    assert!(!after.current.contains_key("docs/c"));
    assert_eq!(body(&s3, &live, "docs/a").await, "a-good");
    assert_eq!(body(&s3, &live, "docs/x y.pdf").await, "spaced");
    assert_eq!(
        tag(&s3, &live, "docs/sub/e").await,
        Some(restore_stamp(&key, &format!("{bk}/nightly/2025-10-16-180000/prod-docs/sub/e"))),
        "the copy carries the run's stamp of its source"
    );

    target.apply(&change, &key).await.unwrap();
    assert_eq!(oracle(&env, &env.endpoint, &live, "", 0).total_versions, after.total_versions, "re-apply wrote");
    let err = target.prepare(&Request::To(Selector::Exact("2025-10-16-180000".into()))).await.unwrap_err();
    assert!(err.to_string().contains("nothing to restore"), "{err}");
    assert_eq!(err.kind(), rollback_core::ErrorKind::AlreadyDone, "a re-run is nothing to do, not bad input");
}

#[tokio::test]
async fn mirror_refuses_diverged_keys_and_a_backup_changed_after_prepare() {
    let Some(env) = env() else { return };
    let s3 = client(&env.endpoint, None, None).await;
    let (live, bk) = runbook_fixture(&s3).await;
    let target = mirror(s3.clone(), &live, "docs/", backups(&bk, "nightly/", "prod-docs/"));
    let request =
        Request::Action { action: "mirror".into(), params: serde_json::json!({"backup": "2025-10-16-180000"}) };

    // Someone writes a planned key after prepare: diverged, nothing written.
    let change = target.prepare(&request).await.unwrap();
    put(&s3, &live, "docs/c", "someone else").await;
    let before = oracle(&env, &env.endpoint, &live, "", 0);
    let key = IdempotencyKey::new("run-d/mirror/fwd");
    let observed = target.observe(&change, &key).await.unwrap();
    assert!(matches!(&observed, Observed::Diverged(d) if d.contains("docs/c")), "{observed:?}");
    assert_eq!(target.apply(&change, &key).await.unwrap_err().kind(), ErrorKind::Conflict);
    assert_eq!(oracle(&env, &env.endpoint, &live, "", 0).total_versions, before.total_versions);

    // The backup changes after prepare: the copy is conditional on the prepared ETag,
    // so that key fails with a conflict instead of restoring other content.
    let change = target.prepare(&request).await.unwrap();
    put(&s3, &bk, "nightly/2025-10-16-180000/prod-docs/a", "tampered").await;
    let err = target.apply(&change, &IdempotencyKey::new("run-e/mirror/fwd")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert_eq!(err.context_value("failed_key"), Some("docs/a"), "{err}");
    assert_eq!(body(&s3, &live, "docs/a").await, "a-bad", "a was not overwritten with the tampered backup");

    // Unknown sets and actions, empty sets, overlapping places: clear errors first.
    let missing = Request::Action { action: "mirror".into(), params: serde_json::json!({"backup": "1999-01-01"}) };
    assert_eq!(target.prepare(&missing).await.unwrap_err().kind(), ErrorKind::NotFound);
    let bad = Request::Action { action: "explode".into(), params: serde_json::Value::Null };
    assert_eq!(target.prepare(&bad).await.unwrap_err().kind(), ErrorKind::InvalidInput);
    put(&s3, &bk, "nightly/2025-10-17-180000/other-app/z", "no prod-docs in this set").await;
    let err = target.prepare(&Request::To(Selector::Exact("2025-10-17-180000".into()))).await.unwrap_err();
    assert!(err.to_string().contains("is empty"), "{err}");
    let history = target.history().await.unwrap();
    assert!(history.iter().any(|r| r.version.label.as_deref() == Some("2025-10-17-180000") && !r.available));
    let overlapping = S3MirrorConfig {
        bucket: live.clone(),
        prefix: "docs/".into(),
        backups: backups(&live, "docs/backups/", ""),
        delete_extra: true,
        allow_unversioned: false,
        concurrency: None,
        attempts: None,
        client: Default::default(),
    };
    let err = S3Mirror::new("x", s3.clone(), overlapping).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let unversioned = mirror(s3.clone(), &bk, "nightly-restore/", backups(&live, "", "docs/"));
    assert!(unversioned.identity().await.unwrap_err().to_string().contains("versioning"));
}

/// A destination equal to its newest backup set, with two older sets (times in the names).
async fn three_sets(endpoint: &str) -> Arc<dyn Target> {
    let s3 = client(endpoint, None, None).await;
    let (live, bk) = (unique("mconf"), unique("mconfbk"));
    make_bucket(&s3, &live).await;
    s3.client().create_bucket().bucket(&bk).send().await.unwrap();
    let sets = [
        ("2025-01-01-000000", "1", None),
        ("2025-01-02-000000", "2", Some("1")),
        ("2025-01-03-000000", "3", Some("2")),
    ];
    for (set, a, b) in sets {
        put(&s3, &bk, &format!("{set}/app/a"), a).await;
        if let Some(b) = b {
            put(&s3, &bk, &format!("{set}/app/b"), b).await;
        }
    }
    put(&s3, &live, "app/a", "3").await;
    put(&s3, &live, "app/b", "2").await;
    Arc::new(mirror(s3, &live, "app/", backups(&bk, "", "app/")))
}

#[tokio::test]
async fn mirror_conformance_suite() {
    let Some(env) = env() else { return };
    let endpoint = env.endpoint.clone();
    conformance::target_suite(|| three_sets(&endpoint)).await;
    let s3 = client(&endpoint, None, None).await;
    conformance::observe_between_phases(three_sets(&endpoint).await, |change, _key| async move {
        // One key copied by hand, as a crash half-way leaves it.
        let p = &change.payload;
        let (bucket, source) = (p["bucket"].as_str().unwrap(), p["source_bucket"].as_str().unwrap());
        let row = &p["rows"][0];
        s3.client()
            .copy_object()
            .bucket(bucket)
            .key(row[0].as_str().unwrap())
            .copy_source(format!("{source}/{}", row[2].as_str().unwrap()))
            .send()
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn version_manifest_snapshot_restores_the_exact_versions() {
    let Some(env) = env() else { return };
    let s3 = client(&env.endpoint, None, None).await;
    let (bucket, art) = (unique("man"), unique("manart"));
    make_bucket(&s3, &bucket).await;
    s3.client().create_bucket().bucket(&art).send().await.unwrap();
    let store = S3ArtifactStore::new(s3.clone(), &art, "rollback");
    for k in ["a", "b", "c"] {
        put(&s3, &bucket, &format!("data/{k}"), &format!("{k}1")).await;
    }
    put(&s3, &bucket, "other/x", "x").await;
    let config = S3VersionManifestConfig {
        bucket: bucket.clone(),
        prefix: "data/".into(),
        concurrency: Some(4),
        client: Default::default(),
    };
    let snap = S3VersionManifest::new("manifest", s3.clone(), config).unwrap();
    let captured = oracle(&env, &env.endpoint, &bucket, "data/", 0);
    let reference = snap.capture(&store, &IdempotencyKey::new("run-v/snap/fwd")).await.unwrap();
    assert_eq!(reference.artifacts, vec!["run-v_snap_fwd/manifest/manifest.jsonl"]);
    let manifest = String::from_utf8(store.get(&reference.artifacts[0]).await.unwrap()).unwrap();
    assert_eq!(manifest.lines().count(), 3);
    for (key, versions) in &captured.versions {
        let line = manifest.lines().find(|l| l.contains(&format!("\"{}\"", &key["data/".len()..]))).unwrap();
        assert!(line.contains(&versions[0]), "the manifest holds {key}'s current version id: {line}");
    }

    // The bad deploy: overwrite, delete, create, and a rewrite with the same content.
    put(&s3, &bucket, "data/a", "a2").await;
    del(&s3, &bucket, "data/b").await;
    put(&s3, &bucket, "data/d", "d1").await;
    put(&s3, &bucket, "data/c", "c1").await;
    put(&s3, &bucket, "other/x", "x2").await;
    let before = oracle(&env, &env.endpoint, &bucket, "", 0);
    snap.restore(&reference, &store).await.unwrap();
    let after = oracle(&env, &env.endpoint, &bucket, "", 0);
    assert_eq!(current_rel(&after, "data/"), current_rel(&captured, "data/"), "the captured state is back (by ETag)");
    assert_eq!(after.current["other/x"], before.current["other/x"], "outside the prefix: untouched");
    assert!(all_version_ids(&before).is_subset(&all_version_ids(&after)), "no version was destroyed");
    assert_eq!(after.total_versions, before.total_versions + 3, "a and b copied back, d gets a delete marker; c equal");
    let source = format!("{bucket}/data/b?versionId={}", captured.versions["data/b"][0]);
    assert_eq!(
        tag(&s3, &bucket, "data/b").await,
        Some(restore_stamp(&IdempotencyKey::new("run-v/snap/fwd/restore"), &source)),
        "the copy carries the restore's stamp of the captured version"
    );

    snap.restore(&reference, &store).await.unwrap();
    assert_eq!(oracle(&env, &env.endpoint, &bucket, "", 0).total_versions, after.total_versions, "restore twice wrote");

    let unversioned = unique("manunv");
    s3.client().create_bucket().bucket(&unversioned).send().await.unwrap();
    let config = S3VersionManifestConfig {
        bucket: unversioned,
        prefix: String::new(),
        concurrency: None,
        client: Default::default(),
    };
    let err = S3VersionManifest::new("m", s3, config)
        .unwrap()
        .capture(&store, &IdempotencyKey::new("run-x/snap/fwd"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("versioning"), "{err}");
}

#[tokio::test]
async fn copy_snapshot_captures_once_and_mirrors_back() {
    let Some(env) = env() else { return };
    let s3 = client(&env.endpoint, None, None).await;
    let (bucket, bk) = (unique("cp"), unique("cpbk"));
    make_bucket(&s3, &bucket).await;
    s3.client().create_bucket().bucket(&bk).send().await.unwrap();
    for k in ["a", "b", "deep/c"] {
        put(&s3, &bucket, &format!("site/{k}"), &format!("{k}1")).await;
    }
    let config = S3CopyConfig {
        bucket: bucket.clone(),
        prefix: "site/".into(),
        backup_bucket: bk.clone(),
        backup_prefix: "old".into(),
        concurrency: Some(4),
        client: Default::default(),
    };
    let snap = S3CopySnapshot::new("site-copy", s3.clone(), config).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = rollback_core::LocalDirStore::new(dir.path());
    let key = IdempotencyKey::new("run-c/snap/fwd");
    let reference = snap.capture(&store, &key).await.unwrap();
    let copy_prefix = "old/run-c_snap_fwd/";
    let captured = oracle(&env, &env.endpoint, &bucket, "site/", 0);
    let copy = oracle(&env, &env.endpoint, &bk, copy_prefix, 0);
    assert_eq!(current_rel(&copy, copy_prefix), current_rel(&captured, "site/"));
    assert!(reference.description.contains("3 copied now"), "{}", reference.description);
    let again = snap.capture(&store, &key).await.unwrap();
    assert!(again.description.contains("0 copied now"), "re-capture copies nothing: {}", again.description);

    put(&s3, &bucket, "site/a", "a2").await;
    del(&s3, &bucket, "site/b").await;
    put(&s3, &bucket, "site/new", "n").await;
    let before = oracle(&env, &env.endpoint, &bucket, "", 0);
    snap.restore(&reference, &store).await.unwrap();
    let after = oracle(&env, &env.endpoint, &bucket, "", 0);
    assert_eq!(current_rel(&after, "site/"), current_rel(&captured, "site/"));
    assert!(all_version_ids(&before).is_subset(&all_version_ids(&after)));
    assert_eq!(after.total_versions, before.total_versions + 3);

    put(&s3, &bk, &format!("{copy_prefix}sneaked-in"), "x").await;
    let err = snap.restore(&reference, &store).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Diverged, "{err}");
    let err = S3CopySnapshot::new(
        "bad",
        s3,
        S3CopyConfig {
            bucket: bucket.clone(),
            prefix: String::new(),
            backup_bucket: bucket,
            backup_prefix: "old/".into(),
            concurrency: None,
            client: Default::default(),
        },
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "a copy inside its own source is refused: {err}");
}

#[tokio::test]
async fn engine_snapshots_mirrors_and_compensates_from_the_copy() {
    use rollback_core::{Engine, Plan, Registry, RunOptions, RunState};
    let Some(env) = env() else { return };
    let s3 = client(&env.endpoint, None, None).await;
    let (live, bk) = runbook_fixture(&s3).await;
    let old = unique("mirold");
    s3.client().create_bucket().bucket(&old).send().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("s3-secret");
    std::fs::write(&secret, "test\n").unwrap();
    let secrets = format!(
        "{{ access_key_id = {{ from = \"file\", path = \"{0}\" }}, secret_access_key = {{ from = \"file\", path = \"{0}\" }} }}",
        secret.display()
    );
    let client = format!("{{ endpoint = \"{}\" }}", env.endpoint);
    // The runbook: copy prod to prod-old, mirror the backup over prod, verify. The
    // verification fails here (at most 0 objects), so the mirror is undone from the copy.
    let plan = format!(
        r#"
name = "documents back from the nightly backup"
[[targets]]
kind = "s3-mirror"
name = "docs"
config = {{ bucket = "{live}", prefix = "docs/", backups = {{ bucket = "{bk}", prefix = "nightly/", path = "prod-docs/" }}, client = {client} }}
secrets = {secrets}
[[snapshots]]
kind = "s3-copy"
name = "docs-old"
config = {{ bucket = "{live}", prefix = "docs/", backup_bucket = "{old}", backup_prefix = "prod-docs-old/", client = {client} }}
secrets = {secrets}
[[verifiers]]
kind = "s3-bucket"
name = "too-strict"
config = {{ bucket = "{live}", prefix = "docs/", max_objects = 0, client = {client} }}
secrets = {secrets}
[[stages]]
name = "snapshot"
[[stages.steps]]
id = "copy-old"
op = "snapshot"
snapshot = "docs-old"
[[stages]]
name = "restore"
[[stages.steps]]
id = "mirror"
op = "rollback"
target = "docs"
to = "previous"
undo = {{ restore_from = "copy-old" }}
[[stages]]
name = "verify"
[[stages.steps]]
id = "check"
op = "verify"
verifier = "too-strict"
on_failure = "compensate"
policy = {{ interval = "100ms", passes = 1, deadline = "2s", max_failures = 1 }}
"#
    );
    let plan = Plan::from_toml_str(&plan).unwrap();
    let mut registry = Registry::new();
    rollback_storage::register(&mut registry);
    let engine = Engine::builder(registry).home(dir.path().join("home")).try_build().unwrap();
    let live_before = oracle(&env, &env.endpoint, &live, "docs/", 0);
    let report = engine.run(plan, RunOptions::default()).await.unwrap();
    assert_eq!(report.state, RunState::Compensated, "{report}");
    let mirror = report.steps.iter().find(|s| s.step.as_str() == "mirror").expect("the mirror step");
    assert_eq!(mirror.detail["write_guard"], "relist", "moto ignores conditional copies: {}", mirror.detail);
    let after = oracle(&env, &env.endpoint, &live, "docs/", 0);
    assert_eq!(current_rel(&after, "docs/"), current_rel(&live_before, "docs/"), "the pre-mirror contents are back");
    assert!(all_version_ids(&live_before).is_subset(&all_version_ids(&after)), "no version destroyed on the way");
    let old_copy = oracle(&env, &env.endpoint, &old, "prod-docs-old/", 0);
    assert_eq!(old_copy.current.len(), 4, "the copy of prod holds its four objects: {:?}", old_copy.current);
}
