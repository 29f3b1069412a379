//! `kubectl rollout undo` + `rollout status`, done by `rollback-k8s` on the Kubernetes
//! API double, for 1 and 50 Deployments in parallel: wall time and API calls per
//! rollback, counted from the double's request log, beside kubectl's sequence.
//!
//! ```text
//! cargo bench -p rollback-benches --bench k8s
//! ROLLBACK_BENCH_QUICK=1 cargo bench -p rollback-benches --bench k8s      # 1 and 5 Deployments
//! ```
//!
//! kubectl's count (its known sequence, discovery cached in ~/.kube/cache and not
//! counted): `rollout undo` = GET deployment, LIST replicasets, PATCH deployment (3);
//! `rollout status` = GET deployment (the resource builder), then a watch = LIST with
//! `fieldSelector=metadata.name=…` + one WATCH stream (3). Total 6 requests, one of
//! them long-lived. `rollback-k8s`: prepare GET + LIST, apply GET deployment + GET the
//! target ReplicaSet + PATCH, then one WATCH from the PATCH's answer (6; it polls with
//! GET only if the watch breaks).

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use rollback_core::{IdempotencyKey, Request, Selector, Target};
use rollback_k8s::double::{ApiDouble, DoubleOptions};
use rollback_k8s::{DeploymentConfig, DeploymentTarget, WaitConfig};

const NS: &str = "bench";

async fn setup(double: &ApiDouble, n: usize) {
    let api: Api<Deployment> = Api::namespaced(double.client(NS), NS);
    for i in 0..n {
        let name = format!("web-{i}");
        let d: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "app", "image": "app:1"}]}}}
        }))
        .unwrap();
        api.create(&PostParams::default(), &d).await.unwrap();
    }
    double.ticks(10);
    for i in 0..n {
        let patch =
            serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}}});
        api.patch(&format!("web-{i}"), &PatchParams::default(), &Patch::Strategic(patch)).await.unwrap();
    }
    double.ticks(20);
}

struct Row {
    n: usize,
    wall: Duration,
    per_rollback: f64,
    gets: usize,
    lists: usize,
    patches: usize,
    watches: usize,
}

async fn run(n: usize, tick_period: Duration, poll: Duration) -> Row {
    let double = Arc::new(
        ApiDouble::start_with(DoubleOptions { background: None, tick: Duration::from_secs(1), ..Default::default() })
            .await,
    );
    setup(&double, n).await;
    let ticker = {
        let double = double.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(tick_period);
            loop {
                interval.tick().await;
                double.tick();
            }
        })
    };
    double.clear_requests();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let wait = WaitConfig { wait: true, timeout: Duration::from_secs(120), poll_interval: poll };
        let config = DeploymentConfig {
            cluster: Default::default(),
            namespace: NS.into(),
            deployment: format!("web-{i}"),
            wait,
        };
        let target = DeploymentTarget::new(&format!("web-{i}"), double.cluster(), config).unwrap();
        tasks.spawn(async move {
            let change = target.prepare(&Request::To(Selector::Previous)).await.unwrap();
            target.apply(&change, &IdempotencyKey::new(format!("bench/web-{i}/fwd"))).await.unwrap();
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let wall = started.elapsed();
    ticker.abort();
    let log = double.requests();
    let watching = |r: &&rollback_k8s::double::LoggedRequest| r.query.contains("watch=true");
    let count = |m: &str, list: bool| {
        log.iter()
            .filter(|r| !watching(r))
            .filter(|r| r.method == m && (r.path.ends_with("replicasets") == list || m != "GET"))
            .count()
    };
    Row {
        n,
        wall,
        per_rollback: log.len() as f64 / n as f64,
        gets: count("GET", false),
        lists: count("GET", true),
        patches: count("PATCH", false),
        watches: log.iter().filter(watching).count(),
    }
}

const REQUESTS: rollback_benches::Plot = rollback_benches::Plot {
    id: "k8s-requests",
    title: "Kubernetes (API double): API requests per undo + wait",
    x: "Deployments rolled back at once",
    y: "requests per Deployment",
    per_unit: true,
};

const WALL: rollback_benches::Plot = rollback_benches::Plot {
    id: "k8s-wall",
    title: "Kubernetes (API double): wall time of N undos + waits in parallel",
    x: "Deployments rolled back at once",
    y: "seconds",
    per_unit: false,
};

fn main() {
    let quick = std::env::var("ROLLBACK_BENCH_QUICK").is_ok() || std::env::args().any(|a| a == "--test");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let sizes: &[usize] = if quick { &[1, 5] } else { &[1, 50] };
    // The scaling series, at the 100 ms poll: requests and wall time by Deployments.
    let series: &[usize] = if quick { &[1, 5] } else { &[1, 10, 50, 100, 200] };
    // One virtual second per 10 ms of real time; pods ready after 2 virtual seconds.
    let tick = Duration::from_millis(10);
    let polls = [Duration::from_millis(20), Duration::from_millis(100)];
    println!("\nrollback-k8s undo + wait on the API double (tick = 1 virtual s per {tick:?}; 2 replicas each)");
    println!("kubectl reference: 6 requests per rollback (GET, LIST rs, PATCH; rollout status: GET, LIST, WATCH)\n");
    println!("| Deployments | poll | wall | requests/rollback | GET deploy+rs | LIST rs | PATCH | WATCH |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &poll in &polls {
        let scaling = poll == Duration::from_millis(100);
        for &n in if scaling { series } else { sizes } {
            let row = rt.block_on(run(n, tick, poll));
            if scaling {
                REQUESTS.point("this library (watch)", n as f64, row.per_rollback);
                REQUESTS.point("kubectl's sequence", n as f64, 6.0);
                WALL.point("this library, all in parallel", n as f64, row.wall.as_secs_f64());
            }
            println!(
                "| {} | {poll:?} | {:.0?} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
                row.n,
                row.wall,
                row.per_rollback,
                row.gets as f64 / n as f64,
                row.lists as f64 / n as f64,
                row.patches as f64 / n as f64,
                row.watches as f64 / n as f64
            );
            if !sizes.contains(&n) {
                continue;
            }
            rollback_benches::summary(
                "k8s (API double)",
                &format!("API requests per undo + wait, {n} Deployment(s), poll {poll:?}, vs kubectl's sequence"),
                &format!("{:.1}", row.per_rollback),
                "6",
                &format!("{:.2}× kubectl's", row.per_rollback / 6.0),
                &format!("≤ 6 whatever the poll: {}", rollback_benches::met(row.per_rollback <= 6.0)),
            );
        }
    }
}
