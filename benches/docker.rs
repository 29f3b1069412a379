//! Rolling back Docker services side by side, in one run, on a real engine:
//!
//! - **this library**: a plan (journaled, file lock, preflight) whose stage recreates
//!   the services in parallel (`docker-container`, stop-first) and then probes each
//!   service's HTTP endpoint until it serves the old version;
//! - **the floor**: the bare Docker API sequence compose uses (stop, rename, create
//!   with the old image, start, remove the old container), services in parallel,
//!   then the same probe;
//! - **the runbooks' route**: `docker-compose -f … up -d` with the previous
//!   `IMAGE_TAG` in `.env` (Debian's docker-compose 1.29), then the same probe.
//!
//! Every route starts from the same state (v2 running) and ends when every service
//! serves v1 on 127.0.0.1 (polled every 20 ms). Services run on host networking.
//!
//! ```text
//! ROLLBACK_TEST_DOCKER=unix:///var/run/docker.sock cargo bench -p rollback-benches --bench docker
//! ... -- --test     # one round, a smoke run
//! ```

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use bollard::models::ContainerCreateBody;
use bollard::query_parameters as q;
use rollback_core::verify::register_builtin_verifiers;
use rollback_core::{Engine, Plan, ProbePolicy, Registry, RunState, Selector, Spec, Step, StepOp};
use rollback_docker::testkit::{TestImages, docker, docker_quiet};

const PROJECT: &str = "rbbench";

fn compose_file(services: usize) -> String {
    let mut text = String::from("version: \"2.4\"\nservices:\n");
    for i in 0..services {
        text.push_str(&format!(
            "  s{i}:\n    image: ${{REPO}}:${{IMAGE_TAG}}\n    network_mode: host\n    stop_grace_period: 5s\n    environment:\n      PORT: \"${{PORT_{i}}}\"\n"
        ));
    }
    text
}

struct Bench {
    host: String,
    dir: std::path::PathBuf,
    images: TestImages,
    ports: Vec<u16>,
}

impl Bench {
    fn env(&self, tag: &str) -> String {
        let mut text = format!("REPO={}\nIMAGE_TAG={tag}\n", self.images.repo);
        for (i, port) in self.ports.iter().enumerate() {
            text.push_str(&format!("PORT_{i}={port}\n"));
        }
        text
    }

    fn compose(&self, services: usize, tag: &str) {
        std::fs::write(self.dir.join("docker-compose.yml"), compose_file(services)).unwrap();
        std::fs::write(self.dir.join(".env"), self.env(tag)).unwrap();
        let out = Command::new("docker-compose")
            .env("DOCKER_HOST", &self.host)
            .current_dir(&self.dir)
            .args(["-p", PROJECT, "up", "-d", "--remove-orphans"])
            .output()
            .expect("docker-compose");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    fn container(&self, i: usize) -> String {
        format!("{PROJECT}_s{i}_1")
    }

    /// Back to v2 everywhere, by compose (not timed); removes retained containers.
    fn reset(&self, services: usize) {
        for name in docker(&self.host, &["ps", "-a", "--format", "{{.Names}}"]).lines() {
            if name.starts_with(PROJECT) && name.contains("_rb_") {
                docker_quiet(&self.host, &["rm", "-f", name]);
            }
        }
        self.compose(services, "v2");
        std::thread::sleep(Duration::from_millis(300));
    }

    async fn wait_serving(&self, services: usize, version: &str) {
        let client = reqwest::Client::new();
        let waits = (0..services).map(|i| {
            let url = format!("http://127.0.0.1:{}/version", self.ports[i]);
            let client = client.clone();
            async move {
                loop {
                    if let Ok(r) = client.get(&url).send().await
                        && r.status().is_success()
                        && r.text().await.is_ok_and(|t| t == version)
                    {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
        futures::future::join_all(waits).await;
    }

    async fn library(&self, engine: &Engine, services: usize) -> Duration {
        let docker = serde_json::json!({ "host": self.host });
        let mut plan = Plan::new("bench");
        let mut rollbacks = Vec::new();
        let mut checks = Vec::new();
        let policy = ProbePolicy {
            interval: Duration::from_millis(20),
            passes: 1,
            deadline: Duration::from_secs(60),
            ..Default::default()
        };
        for i in 0..services {
            let name = format!("s{i}");
            plan.targets.push(Spec::new(
                "docker-container",
                &name,
                serde_json::json!({ "container": self.container(i), "docker": docker, "retain_old": false }),
            ));
            plan.verifiers.push(Spec::new(
                "http",
                format!("{name}-up"),
                serde_json::json!({ "url": format!("http://127.0.0.1:{}/version", self.ports[i]), "body_contains": "v1" }),
            ));
            rollbacks.push(Step::new(
                format!("rollback-{name}"),
                StepOp::Rollback { target: name.as_str().into(), to: Selector::Exact(self.images.tag("v1")) },
            ));
            checks.push(Step::new(
                format!("check-{name}"),
                StepOp::Verify { verifier: format!("{name}-up"), policy: policy.clone() },
            ));
        }
        plan = plan.stage("rollback", services, rollbacks).stage("verify", services, checks);
        let started = Instant::now();
        let report = engine.run(plan, Default::default()).await.unwrap();
        let took = started.elapsed();
        assert_eq!(report.state, RunState::Succeeded, "{report}");
        took
    }

    async fn floor(&self, api: &bollard::Docker, services: usize) -> Duration {
        let started = Instant::now();
        let one = |i: usize| async move {
            let name = self.container(i);
            let old = api.inspect_container(&name, None::<q::InspectContainerOptions>).await.unwrap();
            let config = old.config.clone().unwrap();
            let body = ContainerCreateBody {
                image: Some(self.images.tag("v1")),
                env: config.env,
                labels: config.labels,
                host_config: old.host_config.clone(),
                ..Default::default()
            };
            let old_id = old.id.unwrap();
            api.stop_container(&old_id, None::<q::StopContainerOptions>).await.unwrap();
            api.rename_container(&old_id, q::RenameContainerOptions { name: format!("{name}_rb_floor") })
                .await
                .unwrap();
            let options = q::CreateContainerOptions { name: Some(name.clone()), ..Default::default() };
            api.create_container(Some(options), body).await.unwrap();
            api.start_container(&name, None::<q::StartContainerOptions>).await.unwrap();
            api.remove_container(&old_id, None::<q::RemoveContainerOptions>).await.unwrap();
        };
        futures::future::join_all((0..services).map(one)).await;
        self.wait_serving(services, "v1").await;
        started.elapsed()
    }

    async fn compose_route(&self, services: usize) -> Duration {
        let started = Instant::now();
        self.compose(services, "v1");
        self.wait_serving(services, "v1").await;
        started.elapsed()
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

const SERVICES: rollback_benches::Plot = rollback_benches::Plot {
    id: "docker-services",
    title: "Docker: roll back N services, v2 -> v1, until every one serves v1",
    x: "services",
    y: "ms (median)",
    per_unit: false,
};

fn main() {
    let quick = std::env::args().any(|a| a == "--test") || std::env::var_os("ROLLBACK_BENCH_QUICK").is_some();
    let Ok(host) = std::env::var("ROLLBACK_TEST_DOCKER") else {
        eprintln!("*** NOT RUN: the docker benchmark needs ROLLBACK_TEST_DOCKER (scripts/test.sh starts dockerd) ***");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(PROJECT);
    std::fs::create_dir_all(&dir).unwrap();
    let images = TestImages::build(&host, "rbbench-app", tmp.path());
    let sizes: &[usize] = if quick { &[1, 2] } else { &[1, 5, 10, 20] };
    let most = sizes.iter().copied().max().unwrap_or(1);
    let ports: Vec<u16> =
        (0..most).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()).collect();
    let bench = Bench { host: host.clone(), dir, images, ports };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let rounds = if quick { 1 } else { 7 };

    let mut registry = Registry::new();
    register_builtin_verifiers(&mut registry);
    rollback_docker::register(&mut registry);
    let engine = Engine::builder(registry).home(tmp.path().join("home")).try_build().unwrap();
    let api = bollard::Docker::connect_with_host(&host).unwrap();

    let mut rows: HashMap<(usize, &str), Vec<Duration>> = HashMap::new();
    for &services in sizes {
        // The scaling points past the targets' sizes take fewer rounds.
        let rounds = if services > 5 { rounds.min(3) } else { rounds };
        for _ in 0..rounds {
            bench.reset(services);
            let t = runtime.block_on(bench.library(&engine, services));
            rows.entry((services, "library")).or_default().push(t);
            bench.reset(services);
            let t = runtime.block_on(bench.floor(&api, services));
            rows.entry((services, "floor")).or_default().push(t);
            bench.reset(services);
            let t = runtime.block_on(bench.compose_route(services));
            rows.entry((services, "compose")).or_default().push(t);
        }
    }
    Command::new("docker-compose")
        .env("DOCKER_HOST", &host)
        .current_dir(&bench.dir)
        .args(["-p", PROJECT, "down", "-t", "1"])
        .output()
        .ok();

    println!("\nDocker service rollback, v2 → v1 until every service serves v1 (median of {rounds}, ms)\n");
    println!(
        "| services | this library | bare API (floor) | docker-compose up -d | library / floor | compose / library |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for &services in sizes {
        let ms = |route| median(rows[&(services, route)].clone()).as_secs_f64() * 1000.0;
        let (lib, floor, compose) = (ms("library"), ms("floor"), ms("compose"));
        println!("| {services} | {lib:.0} | {floor:.0} | {compose:.0} | {:.2}× | {:.2}× |", lib / floor, compose / lib);
        for (curve, value) in
            [("this library", lib), ("bare Docker API (floor)", floor), ("docker-compose up -d", compose)]
        {
            SERVICES.point(curve, services as f64, value);
        }
        if services > 5 {
            continue;
        }
        rollback_benches::summary(
            "docker",
            &format!("roll back {services} service(s) vs docker-compose up -d + health wait"),
            &format!("{lib:.0} ms"),
            &format!("{compose:.0} ms"),
            &format!("{:.2}× faster", compose / lib),
            &format!("≥ 2×: {}", rollback_benches::met(compose / lib >= 2.0)),
        );
        rollback_benches::summary(
            "docker",
            &format!("roll back {services} service(s) vs the bare Docker API sequence (floor)"),
            &format!("{lib:.0} ms"),
            &format!("{floor:.0} ms"),
            &format!("{:.2}× the floor", lib / floor),
            &format!("≤ 1.2×: {}", rollback_benches::met(lib / floor <= 1.2)),
        );
    }
    println!("\ntargets: library ≤ 1.2× the floor, compose ≥ 2× the library");
}
