//! The embedded default's targets on real files, real subprocesses and a real HTTP flag service.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rollback_core::local::{ConfigFile, ConfigFileConfig, HttpFlag, HttpFlagConfig, ReleaseDir, ReleaseDirConfig};
use rollback_core::testkit::{TestHttpServer, conformance};
use rollback_core::{
    Engine, ErrorKind, FailurePolicy, IdempotencyKey, MemoryJournal, MemoryLock, Observed, Plan, Registry, Request,
    RunState, Selector, Step, StepOp, Target,
};

fn releases(root: &Path, names: &[&str]) {
    for name in names {
        let dir = root.join("releases").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("REVISION"), format!("commit for {name}")).unwrap();
    }
    let _ = std::fs::remove_file(root.join("current"));
    std::os::unix::fs::symlink(format!("releases/{}", names.last().unwrap()), root.join("current")).unwrap();
}

fn release_dir(root: &Path, restart: Option<Vec<String>>) -> ReleaseDir {
    let config = ReleaseDirConfig { root: root.into(), restart, restart_timeout: Duration::from_secs(10) };
    ReleaseDir::new("app", config).unwrap()
}

#[tokio::test]
async fn release_dir_conforms() {
    let base = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    conformance::target_suite(|| {
        let root = base.path().join(format!("r{}", n.fetch_add(1, std::sync::atomic::Ordering::SeqCst)));
        releases(&root, &["20251014-100000", "20251015-120000", "20251016-180000"]);
        async move { Arc::new(release_dir(&root, None)) as Arc<dyn Target> }
    })
    .await;
}

#[tokio::test]
async fn release_dir_switches_atomically_restarts_and_finishes_a_half_done_switch() {
    let root = tempfile::tempdir().unwrap();
    releases(root.path(), &["20251015-120000", "20251016-180000"]);
    let restarted = root.path().join("restarted");
    let restart = vec!["touch".to_string(), restarted.display().to_string()];
    let app = Arc::new(release_dir(root.path(), Some(restart)));
    let change = app.prepare(&Request::To(Selector::Previous)).await.unwrap();
    assert!(change.description.contains("then restart"), "{}", change.description);
    assert_eq!(app.history().await.unwrap()[0].description, "commit for 20251016-180000");
    // Between phases: the switch happened, the restart did not.
    conformance::observe_between_phases(app.clone(), |change, key| {
        let root = root.path().to_path_buf();
        async move {
            std::fs::remove_file(root.join("current")).unwrap();
            std::os::unix::fs::symlink(format!("releases/{}", change.to.id), root.join("current")).unwrap();
            let marker = serde_json::json!({"key": key.as_str(), "to": change.to.id, "phase": "switched"});
            std::fs::write(root.join(".current.rollback.json"), marker.to_string()).unwrap();
        }
    })
    .await;
    assert!(restarted.exists(), "re-applying from the partial state ran the restart");
    assert_eq!(std::fs::read_link(root.path().join("current")).unwrap(), PathBuf::from("releases/20251015-120000"));

    // A failing restart leaves a partial state that observe reports.
    let root = tempfile::tempdir().unwrap();
    releases(root.path(), &["a", "b"]);
    let app = release_dir(root.path(), Some(vec!["false".into()]));
    let change = app.prepare(&Request::To(Selector::Previous)).await.unwrap();
    let key = IdempotencyKey::new("r/app/fwd");
    let err = app.apply(&change, &key).await.unwrap_err();
    assert!(err.to_string().contains("restart command \"false\" exited 1"), "{err}");
    assert!(matches!(app.observe(&change, &key).await.unwrap(), Observed::Partial(_)));
    assert!(
        ReleaseDir::new(
            "x",
            ReleaseDirConfig { root: "/nonexistent".into(), restart: None, restart_timeout: Duration::from_secs(1) }
        )
        .is_err()
    );
}

fn config_layout(dir: &Path) -> PathBuf {
    let live = dir.join(".env.production");
    std::fs::write(dir.join(".env.production.2025-10-14-090000"), "PORT=8080\nFEATURE=a\n").unwrap();
    std::fs::write(dir.join(".env.production.2025-10-16-180000"), "PORT=8080\nFEATURE=b\n").unwrap();
    std::fs::write(&live, "PORT=8080\nFEATURE=broken\n").unwrap();
    live
}

fn config_file(live: &Path, validate: Option<Vec<&str>>, reload: Option<Vec<String>>) -> ConfigFile {
    let config = ConfigFileConfig {
        path: live.into(),
        backups_dir: None,
        validate: validate.map(|v| v.into_iter().map(String::from).collect()),
        reload,
        timeout: Duration::from_secs(10),
    };
    ConfigFile::new("env", config).unwrap()
}

#[tokio::test]
async fn config_file_conforms() {
    let base = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    conformance::target_suite(|| {
        let dir = base.path().join(format!("c{}", n.fetch_add(1, std::sync::atomic::Ordering::SeqCst)));
        std::fs::create_dir_all(&dir).unwrap();
        let live = config_layout(&dir);
        async move { Arc::new(config_file(&live, None, None)) as Arc<dyn Target> }
    })
    .await;
}

#[tokio::test]
async fn config_file_validates_before_replacing_keeps_evidence_reloads_and_inverts() {
    let dir = tempfile::tempdir().unwrap();
    let live = config_layout(dir.path());
    // A validator that refuses the candidate: nothing is replaced.
    let strict = config_file(&live, Some(vec!["grep", "-q", "^FEATURE=zzz", "{}"]), None);
    let change = strict.prepare(&Request::To(Selector::Previous)).await.unwrap();
    assert_eq!(change.to.label.as_deref(), Some(".env.production.2025-10-16-180000"));
    let err = strict.apply(&change, &IdempotencyKey::new("r/env/fwd")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("nothing was replaced"), "{err}");
    assert_eq!(std::fs::read_to_string(&live).unwrap(), "PORT=8080\nFEATURE=broken\n");

    let reloaded = dir.path().join("reloaded");
    let env = config_file(
        &live,
        Some(vec!["grep", "-q", "^PORT=", "{}"]),
        Some(vec!["touch".into(), reloaded.display().to_string()]),
    );
    let change = env.prepare(&Request::To(Selector::Previous)).await.unwrap();
    let key = IdempotencyKey::new("r/env/fwd");
    env.apply(&change, &key).await.unwrap();
    assert_eq!(std::fs::read_to_string(&live).unwrap(), "PORT=8080\nFEATURE=b\n");
    assert!(reloaded.exists());
    assert_eq!(env.observe(&change, &key).await.unwrap(), Observed::Done);
    let evidence: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".env.production.replaced-"))
        .collect();
    assert_eq!(evidence.len(), 1, "the replaced file is kept");
    assert_eq!(std::fs::read_to_string(dir.path().join(&evidence[0])).unwrap(), "PORT=8080\nFEATURE=broken\n");

    let undo = env.inverse(&change).unwrap();
    env.apply(&undo, &IdempotencyKey::new("r/env/undo")).await.unwrap();
    assert_eq!(std::fs::read_to_string(&live).unwrap(), "PORT=8080\nFEATURE=broken\n");
}

/// A flag service: GET returns `{"enabled": …}`, PATCH sets it; every PATCH is recorded.
fn flag_service(server: &TestHttpServer) -> Arc<Mutex<(bool, usize)>> {
    let state = Arc::new(Mutex::new((true, 0usize)));
    let s = state.clone();
    server.handler(move |request| {
        let mut state = s.lock().unwrap();
        match request.method.as_str() {
            "GET" => Some((200, format!(r#"{{"name":"new-checkout","enabled":{}}}"#, state.0))),
            "PATCH" => {
                let body: serde_json::Value = serde_json::from_str(&request.body).ok()?;
                state.0 = body["enabled"].as_bool()?;
                state.1 += 1;
                Some((200, "{}".into()))
            }
            _ => Some((405, String::new())),
        }
    });
    state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_flag_is_turned_off_and_restored_by_compensation() {
    let server = TestHttpServer::start().await;
    let state = flag_service(&server);
    let flag = Arc::new(
        HttpFlag::new(
            "checkout-flag",
            HttpFlagConfig {
                url: server.url("/flags/new-checkout"),
                field: "enabled".into(),
                headers_from_env: Default::default(),
            },
        )
        .unwrap(),
    );
    let key = IdempotencyKey::new("r/flag/fwd");
    let change =
        flag.prepare(&Request::Action { action: "disable".into(), params: serde_json::Value::Null }).await.unwrap();
    assert_eq!((change.from.as_ref().unwrap().id.as_str(), change.to.id.as_str()), ("true", "false"));
    assert_eq!(flag.observe(&change, &key).await.unwrap(), Observed::NotStarted);
    flag.apply(&change, &key).await.unwrap();
    flag.apply(&change, &key).await.unwrap();
    assert_eq!(*state.lock().unwrap(), (false, 1), "one PATCH: the second apply was a no-op");
    assert_eq!(flag.observe(&change, &key).await.unwrap(), Observed::Done);
    let undo = flag.inverse(&change).unwrap();
    flag.apply(&undo, &IdempotencyKey::new("r/flag/undo")).await.unwrap();
    assert_eq!(*state.lock().unwrap(), (true, 2));

    // In a plan: flag off, then an app step that fails with compensate → the flag is restored.
    let app = Arc::new(rollback_core::testkit::MemoryTarget::with_versions("app", &["v1", "v2"]));
    app.inject(rollback_core::testkit::Fault::FailOnCall { method: "apply", n: 1 });
    let mut registry = Registry::new();
    registry.register_target(flag.clone()).register_target(app.clone());
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::builder(registry)
        .journal(Arc::new(MemoryJournal::new()))
        .lock(Arc::new(MemoryLock::new()))
        .artifacts_dir(dir.path())
        .build();
    let plan = Plan::new("ladder")
        .stage(
            "flag",
            1,
            vec![Step::new(
                "flag-off",
                StepOp::Action { target: "checkout-flag".into(), action: "disable".into(), params: Default::default() },
            )],
        )
        .stage(
            "app",
            1,
            vec![
                Step::new("app", StepOp::Rollback { target: "app".into(), to: Selector::Previous })
                    .on_failure(FailurePolicy::Compensate),
            ],
        );
    let report = engine.run(plan, Default::default()).await.unwrap();
    assert_eq!(report.state, RunState::Compensated, "{report}");
    assert_eq!(*state.lock().unwrap(), (true, 4), "off, then back on");
}

fn git(repo: &Path, args: &[&str]) -> String {
    git_at(repo, args, "2025-10-20T12:00:00Z")
}

/// Runs git with fixed author and committer (and tagger) dates.
fn git_at(repo: &Path, args: &[&str], date: &str) -> String {
    let out = std::process::Command::new("git")
        .env("GIT_AUTHOR_DATE", date)
        .env("GIT_COMMITTER_DATE", date)
        .args(["-c", "user.name=dev", "-c", "user.email=dev@localhost", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(repo)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A deploy checkout with releases v1..v3 tagged; v3 changes frontend and backend in
/// separate commits.
fn git_repo(repo: &Path) {
    std::fs::create_dir_all(repo.join("frontend")).unwrap();
    std::fs::create_dir_all(repo.join("backend")).unwrap();
    git(repo, &["init", "-q"]);
    for (version, front, back, date) in
        [("v1", "f1", "b1", "2025-10-14T12:00:00Z"), ("v2", "f2", "b2", "2025-10-16T12:00:00Z")]
    {
        std::fs::write(repo.join("frontend/app.js"), front).unwrap();
        std::fs::write(repo.join("backend/app.py"), back).unwrap();
        git_at(repo, &["add", "."], date);
        git_at(repo, &["commit", "-q", "-m", &format!("release {version}")], date);
        git_at(repo, &["tag", "-a", version, "-m", version], date);
    }
    std::fs::write(repo.join("frontend/app.js"), "f3-broken").unwrap();
    git(repo, &["commit", "-q", "-am", "frontend v3"]);
    std::fs::write(repo.join("backend/app.py"), "b3").unwrap();
    git(repo, &["commit", "-q", "-am", "backend v3"]);
    git(repo, &["tag", "-a", "v3", "-m", "v3"]);
}

fn git_release(repo: &Path, build: Option<Vec<String>>) -> rollback_core::local::GitRelease {
    rollback_core::local::GitRelease::new(
        "app",
        rollback_core::local::GitReleaseConfig {
            repo: repo.into(),
            build,
            history: rollback_core::local::GitHistory::Tags,
            timeout: Duration::from_secs(30),
        },
    )
    .unwrap()
}

#[tokio::test]
async fn git_release_checks_out_the_previous_tag_and_builds() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("checkout");
    git_repo(&repo);
    let built = dir.path().join("built");
    let app = git_release(&repo, Some(vec!["touch".into(), built.display().to_string()]));
    let history = app.history().await.unwrap();
    let labels: Vec<&str> = history.iter().filter_map(|r| r.version.label.as_deref()).collect();
    assert_eq!(labels, ["v3", "v2", "v1"]);
    let change = app.prepare(&Request::To(Selector::Previous)).await.unwrap();
    assert_eq!(change.to.label.as_deref(), Some("v2"));
    let key = IdempotencyKey::new("r/app/fwd");
    app.apply(&change, &key).await.unwrap();
    assert_eq!(std::fs::read_to_string(repo.join("frontend/app.js")).unwrap(), "f2");
    assert!(built.exists(), "the build ran in the checkout");
    assert_eq!(app.observe(&change, &key).await.unwrap(), Observed::Done);
    app.apply(&change, &key).await.unwrap();
}

#[tokio::test]
async fn git_release_conforms() {
    let base = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    conformance::target_suite(|| {
        let repo = base.path().join(format!("r{}", n.fetch_add(1, std::sync::atomic::Ordering::SeqCst)));
        git_repo(&repo);
        async move { Arc::new(git_release(&repo, None)) as Arc<dyn Target> }
    })
    .await;
}

#[tokio::test]
async fn git_revert_of_chosen_commits_is_a_partial_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("checkout");
    git_repo(&repo);
    let app = git_release(&repo, None);
    let frontend = git(&repo, &["log", "-1", "--format=%H", "HEAD~1"]);
    let change = app
        .prepare(&Request::Action { action: "revert".into(), params: serde_json::json!({ "commits": [frontend] }) })
        .await
        .unwrap();
    assert!(change.description.contains("partial rollback"), "{}", change.description);
    let key = IdempotencyKey::new("r/app/fwd");
    assert_eq!(app.observe(&change, &key).await.unwrap(), Observed::NotStarted);
    app.apply(&change, &key).await.unwrap();
    assert_eq!(std::fs::read_to_string(repo.join("frontend/app.js")).unwrap(), "f2", "frontend rolled back");
    assert_eq!(std::fs::read_to_string(repo.join("backend/app.py")).unwrap(), "b3", "backend kept");
    assert!(git(&repo, &["log", "-1", "--format=%B"]).contains("Rollback-Key: r/app/fwd"));
    assert_eq!(app.observe(&change, &key).await.unwrap(), Observed::Done);
    app.apply(&change, &key).await.unwrap();
    assert_eq!(git(&repo, &["rev-list", "--count", "HEAD"]), "5", "re-applying made no second revert");
    let err = app
        .prepare(&Request::Action { action: "revert".into(), params: serde_json::json!({ "commits": ["nope"] }) })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_flag_conforms_as_an_action_target() {
    let server = TestHttpServer::start().await;
    let state = flag_service(&server);
    let config = HttpFlagConfig {
        url: server.url("/flags/new-checkout"),
        field: "enabled".into(),
        headers_from_env: Default::default(),
    };
    let flag = Arc::new(HttpFlag::new("checkout-flag", config).unwrap());
    let read = || async { format!("enabled={}", state.lock().unwrap().0) };
    rollback_core::testkit::conformance::action_suite(
        flag,
        Request::Action { action: "disable".into(), params: serde_json::Value::Null },
        read,
    )
    .await;
}
