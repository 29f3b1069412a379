//! Compose projects on a real engine with Debian's docker-compose: services found by
//! their labels and rolled back in dependency order, traffic stop/start, runbook
//! 002's compose-file rollback, and evidence with secrets redacted.
//!
//! Needs `ROLLBACK_TEST_DOCKER` (`scripts/test.sh` starts dockerd and sets it) and
//! the `docker-compose` program.

mod support;

use std::path::Path;

use rollback_core::verify::register_builtin_verifiers;
use rollback_core::{
    ArtifactStore, Engine, IdempotencyKey, LocalDirStore, Observed, Plan, ProbePolicy, Registry, Request, RunState,
    Selector, Snapshot, Spec, Step, StepOp, Target,
};
use rollback_docker::{
    ComposeFiles, ComposeFilesConfig, ComposeService, ContainerSnapshot, ContainerSnapshotConfig, ServiceRollback,
    ServiceTraffic, ServiceTrafficConfig, project_stages,
};
use support::*;

const COMPOSE: &str = r#"version: "2.4"
services:
  api:
    image: ${REPO}:${IMAGE_TAG}
    network_mode: host
    stop_grace_period: 1s
    environment:
      PORT: "${API_PORT}"
      DB_PASSWORD: "${DB_PASSWORD}"
      DATABASE_URL: "${DATABASE_URL}"
  worker:
    image: ${REPO}:${IMAGE_TAG}
    network_mode: host
    stop_grace_period: 1s
    depends_on: [api]
    environment:
      PORT: "${WORKER_PORT}"
  cron:
    image: ${REPO}:${IMAGE_TAG}
    network_mode: host
    stop_grace_period: 1s
    depends_on: [api]
    environment:
      PORT: "${CRON_PORT}"
"#;

struct Project {
    name: String,
    dir: std::path::PathBuf,
    ports: [u16; 3],
    host: String,
}

impl Project {
    fn up(host: &str, name: &str, repo: &str, tag: &str, dir: &Path) -> Project {
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let ports = [free_port(), free_port(), free_port()];
        std::fs::write(dir.join("docker-compose.yml"), COMPOSE).unwrap();
        std::fs::write(dir.join(".env"), env_text(repo, tag, ports)).unwrap();
        let project = Project { name: name.to_string(), dir, ports, host: host.to_string() };
        project.compose(&["up", "-d"]);
        project
    }

    fn compose(&self, args: &[&str]) -> String {
        let file = self.dir.join("docker-compose.yml");
        let mut all = vec!["-f", file.to_str().unwrap(), "-p", &self.name];
        all.extend_from_slice(args);
        let out = std::process::Command::new("docker-compose")
            .env("DOCKER_HOST", &self.host)
            .current_dir(&self.dir)
            .args(&all)
            .output()
            .expect("docker-compose (Debian's docker-compose package)");
        assert!(out.status.success(), "docker-compose {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn container(&self, service: &str) -> serde_json::Value {
        inspect(&self.host, &format!("{}_{service}_1", self.name))
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let file = self.dir.join("docker-compose.yml");
        let _ = std::process::Command::new("docker-compose")
            .env("DOCKER_HOST", &self.host)
            .args(["-f", file.to_str().unwrap(), "-p", &self.name, "down", "-t", "1"])
            .output();
        Containers::new(&self.host, &format!("{}_", self.name)).remove_all();
    }
}

fn env_text(repo: &str, tag: &str, ports: [u16; 3]) -> String {
    format!(
        "REPO={repo}\nIMAGE_TAG={tag}\nAPI_PORT={}\nWORKER_PORT={}\nCRON_PORT={}\nDB_PASSWORD=hunter2\nDATABASE_URL=postgres://app:hunter2@db:5432/app\n",
        ports[0], ports[1], ports[2]
    )
}

fn service(project: &str, service: &str) -> serde_json::Value {
    serde_json::json!({ "project": project, "service": service })
}

#[tokio::test(flavor = "multi_thread")]
async fn compose_services_roll_back_in_dependency_order() {
    let Some(host) = docker_host() else { return };
    let dir = tempfile::tempdir().unwrap();
    let images = Images::build(&host, "rbtest-cservices", dir.path());
    let project = Project::up(&host, "rbtcservices", &images.repo, "v3", dir.path());
    let labels_before = project.container("api")["Config"]["Labels"].clone();

    let mut registry = Registry::new();
    register_builtin_verifiers(&mut registry);
    rollback_docker::register(&mut registry);
    let engine = Engine::builder(registry).home(dir.path().join("home")).try_build().unwrap();
    let docker = serde_json::json!({ "host": host });
    let mut plan = Plan::new("compose-services");
    let mut services = Vec::new();
    for (name, deps) in [("api", vec![]), ("worker", vec!["api"]), ("cron", vec!["api"])] {
        plan.targets.push(Spec::new(
            "docker-container",
            name,
            serde_json::json!({ "compose": service(&project.name, name), "docker": docker }),
        ));
        services.push(ServiceRollback {
            target: name.into(),
            to: Selector::Exact(images.tag("v1")),
            depends_on: deps.into_iter().map(Into::into).collect(),
        });
    }
    plan.stages = project_stages(&services, 2).unwrap();
    assert_eq!(plan.stages.len(), 2, "api first, then worker and cron together");
    assert_eq!(plan.stages[1].steps.len(), 2);
    plan.verifiers.push(Spec::new(
        "docker-health",
        "services-health",
        serde_json::json!({ "compose": service(&project.name, "worker"), "docker": docker }),
    ));
    let policy: ProbePolicy =
        serde_json::from_value(serde_json::json!({"interval": "250ms", "passes": 2, "deadline": "20s"})).unwrap();
    plan = plan.stage(
        "verify",
        1,
        vec![Step::new("healthy", StepOp::Verify { verifier: "services-health".into(), policy })],
    );

    let report = engine.run(plan, Default::default()).await.unwrap();
    assert_eq!(report.state, RunState::Succeeded, "{report}");
    for (i, name) in ["api", "worker", "cron"].into_iter().enumerate() {
        let c = project.container(name);
        assert_eq!(c["Image"], images.ids[0], "{name} runs v1");
        assert_eq!(version_served(project.ports[i]).await, "v1");
    }
    let mut labels_after = project.container("api")["Config"]["Labels"].clone();
    labels_after.as_object_mut().unwrap().retain(|k, _| !k.starts_with("io.rollback."));
    assert_eq!(labels_after, labels_before, "compose's labels are kept, so compose still knows its containers");
    let ps = project.compose(&["ps", "-q"]);
    assert_eq!(ps.lines().count(), 3, "compose sees exactly its three containers: {ps}");
}

#[tokio::test(flavor = "multi_thread")]
async fn traffic_stops_and_starts_a_service() {
    let Some(host) = docker_host() else { return };
    let dir = tempfile::tempdir().unwrap();
    let images = Images::build(&host, "rbtest-ctraffic", dir.path());
    let project = Project::up(&host, "rbtctraffic", &images.repo, "v3", dir.path());
    let traffic = ServiceTraffic::new(
        "api-traffic",
        ServiceTrafficConfig {
            docker: endpoint(&host),
            container: None,
            compose: Some(ComposeService { project: project.name.clone(), service: "api".into() }),
            stop_grace_secs: Some(1),
        },
    )
    .unwrap();
    let stop =
        traffic.prepare(&Request::Action { action: "stop".into(), params: serde_json::Value::Null }).await.unwrap();
    let key = IdempotencyKey::new("traffic/stop");
    assert_eq!(traffic.observe(&stop, &key).await.unwrap(), Observed::NotStarted);
    traffic.apply(&stop, &key).await.unwrap();
    assert_eq!(project.container("api")["State"]["Running"], false);
    assert_eq!(traffic.observe(&stop, &key).await.unwrap(), Observed::Done);
    assert_eq!(project.container("worker")["State"]["Running"], true, "only the api stopped");
    let start = traffic.inverse(&stop).unwrap();
    traffic.apply(&start, &IdempotencyKey::new("traffic/start")).await.unwrap();
    assert_eq!(project.container("api")["State"]["Running"], true);
    assert_eq!(version_served(project.ports[0]).await, "v3");
    let err = traffic
        .prepare(&Request::Action { action: "pause".into(), params: serde_json::Value::Null })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("pause"), "{err}");
    // The same target through core's action-target suite, the state read from the engine.
    let running = || async { format!("api running={}", project.container("api")["State"]["Running"]) };
    let stop = Request::Action { action: "stop".into(), params: serde_json::Value::Null };
    rollback_core::testkit::conformance::action_suite(std::sync::Arc::new(traffic), stop, running).await;
}

/// Runbook 002's emergency path: the compose file and `.env` from the backups of
/// one moment, validated, swapped in, and the project converged by the compose CLI.
#[tokio::test(flavor = "multi_thread")]
async fn compose_files_come_back_from_timestamped_backups_and_the_project_converges() {
    let Some(host) = docker_host() else { return };
    let dir = tempfile::tempdir().unwrap();
    let images = Images::build(&host, "rbtest-cfiles", dir.path());
    let project = Project::up(&host, "rbtcfiles", &images.repo, "v1", dir.path());
    let backups = dir.path().join("backups");
    std::fs::create_dir_all(&backups).unwrap();
    // The deploy of 2025-10-17 backed up the files of 2025-10-16 (v1), then went to v3.
    std::fs::copy(project.dir.join("docker-compose.yml"), backups.join("docker-compose.yml.2025-10-16-180000"))
        .unwrap();
    std::fs::copy(project.dir.join(".env"), backups.join(".env.2025-10-16-180000")).unwrap();
    std::fs::write(project.dir.join(".env"), env_text(&images.repo, "v3", project.ports)).unwrap();
    std::fs::write(
        project.dir.join("docker-compose.yml"),
        COMPOSE.replace("stop_grace_period: 1s", "stop_grace_period: 2s"),
    )
    .unwrap();
    project.compose(&["up", "-d"]);
    assert_eq!(project.container("api")["Image"], images.ids[2]);

    let files = ComposeFiles::new(
        "deploy",
        ComposeFilesConfig {
            docker: endpoint(&host),
            compose_file: project.dir.join("docker-compose.yml"),
            env_file: Some(project.dir.join(".env")),
            backups_dir: Some(backups.clone()),
            project: Some(project.name.clone()),
            command: None,
            timeout: std::time::Duration::from_secs(120),
        },
    )
    .unwrap();
    let change = files.prepare(&Request::To(Selector::Previous)).await.unwrap();
    assert!(change.description.contains("2025-10-16-180000"), "{}", change.description);
    let key = IdempotencyKey::new("compose-files/fwd");
    assert_eq!(files.observe(&change, &key).await.unwrap(), Observed::NotStarted);
    files.apply(&change, &key).await.unwrap();
    assert_eq!(files.observe(&change, &key).await.unwrap(), Observed::Done);
    for service in ["api", "worker", "cron"] {
        assert_eq!(project.container(service)["Image"], images.ids[0], "{service} is back on v1");
    }
    assert_eq!(version_served(project.ports[0]).await, "v1");
    let env = std::fs::read_to_string(project.dir.join(".env")).unwrap();
    assert!(env.contains("IMAGE_TAG=v1"), "{env}");
    files.apply(&change, &key).await.unwrap();

    // Converge is observed from the engine, not remembered: a service removed by hand
    // makes the change Partial again, and applying it again converges the project.
    docker(&host, &["rm", "-f", &format!("{}_api_1", project.name)]);
    let observed = files.observe(&change, &key).await.unwrap();
    assert!(matches!(&observed, Observed::Partial(d) if d.contains("api")), "{observed:?}");
    files.apply(&change, &key).await.unwrap();
    assert_eq!(files.observe(&change, &key).await.unwrap(), Observed::Done);
    assert_eq!(version_served(project.ports[0]).await, "v1");
}

#[tokio::test(flavor = "multi_thread")]
async fn evidence_redacts_environment_values_and_secrets_in_files() {
    let Some(host) = docker_host() else { return };
    let dir = tempfile::tempdir().unwrap();
    let images = Images::build(&host, "rbtest-cevidence", dir.path());
    let project = Project::up(&host, "rbtcevidence", &images.repo, "v3", dir.path());
    version_served(project.ports[0]).await;
    let snapshot = ContainerSnapshot::new(
        "evidence",
        ContainerSnapshotConfig {
            docker: endpoint(&host),
            container: None,
            compose: Some(ComposeService { project: project.name.clone(), service: "api".into() }),
            log_lines: 50,
            compose_file: Some(project.dir.join("docker-compose.yml")),
            env_file: Some(project.dir.join(".env")),
        },
    )
    .unwrap();
    let store = LocalDirStore::new(dir.path().join("artifacts"));
    let taken = snapshot.capture(&store, &IdempotencyKey::new("run-x/evidence")).await.unwrap();
    assert_eq!(taken.artifacts.len(), 4, "{:?}", taken.artifacts);
    let mut all = String::new();
    for key in &taken.artifacts {
        all.push_str(&String::from_utf8(store.get(key).await.unwrap()).unwrap());
    }
    assert!(!all.contains("hunter2"), "a secret reached the evidence");
    assert!(all.contains("\"DB_PASSWORD=***\"") && all.contains("\"PORT=***\""), "every env value is redacted");
    assert!(all.contains("IMAGE_TAG=v3"), "non-secret .env values are kept for the post-mortem");
    assert!(all.contains("postgres://app:***@db:5432/app"));
    assert!(all.contains("\"Image\""), "the inspect document is there");
}

/// The shipped sample plan, pointed at a real compose project, dry-runs: every
/// component builds from its spec and the rollback resolves to the previous image ID.
#[tokio::test(flavor = "multi_thread")]
async fn the_sample_plan_dry_runs_against_a_compose_project() {
    let Some(host) = docker_host() else { return };
    let dir = tempfile::tempdir().unwrap();
    let images = Images::build(&host, "rbtest-csample", dir.path());
    let project = Project::up(&host, "rbtcsample", &images.repo, "v3", dir.path());
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/plans/docker-service.toml"))
        .unwrap()
        .replace("${COMPOSE_PROJECT}", &project.name)
        .replace("${API_HEALTH_URL}", &format!("http://127.0.0.1:{}/version", project.ports[0]));
    let plan = Plan::from_toml_str(&text).unwrap();
    let mut registry = Registry::new();
    register_builtin_verifiers(&mut registry);
    rollback_docker::register(&mut registry);
    let engine = Engine::builder(registry).home(dir.path().join("home")).try_build().unwrap();
    let dry = engine.dry_run(&plan).await.unwrap();
    let step = dry.steps.iter().find(|s| s.step.as_str() == "api-image").unwrap();
    assert_eq!(step.change.as_ref().unwrap().to.id, images.ids[1], "previous of v3 is v2, by image ID");
    assert_eq!(project.container("api")["Image"], images.ids[2], "a dry-run changes nothing");
}
