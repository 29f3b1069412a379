//! `docker-container` against a real Docker engine: the core conformance suite, a
//! stop at every internal phase finished by a fresh target, configuration kept field
//! by field, start-first, and a plan with health verification and compensation.
//!
//! Needs `ROLLBACK_TEST_DOCKER` (`scripts/test.sh` starts dockerd and sets it).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rollback_core::testkit::conformance;
use rollback_core::{ErrorKind, IdempotencyKey, Observed, Request, Selector, Target};
use rollback_docker::{ContainerTarget, ContainerTargetConfig, Order};
use support::*;

fn config(host: &str, name: &str) -> ContainerTargetConfig {
    ContainerTargetConfig { docker: endpoint(host), ..ContainerTargetConfig::container(name) }
}

#[tokio::test(flavor = "multi_thread")]
async fn container_target_conforms() {
    let Some(host) = docker_host() else { return };
    let dir = tempfile::tempdir().unwrap();
    let images = Images::build(&host, "rbtest-conform", dir.path());
    let _containers = Containers::new(&host, "rbt-conform-");
    let counter = AtomicUsize::new(0);
    let make = || {
        let name = format!("rbt-conform-{}", counter.fetch_add(1, Ordering::SeqCst));
        run(&host, &name, &images.tag("v3"), free_port(), &[]);
        let target = ContainerTarget::new(&name, config(&host, &name)).unwrap();
        async move { Arc::new(target) as Arc<dyn Target> }
    };
    conformance::target_suite(make).await;

    let name = "rbt-conform-partial";
    run(&host, name, &images.tag("v3"), free_port(), &[]);
    let target = Arc::new(ContainerTarget::new(name, config(&host, name)).unwrap());
    let host2 = host.clone();
    conformance::observe_between_phases(target, |_change, _key| async move {
        // A crash after the first phase: the old container stopped, not yet replaced.
        docker(&host2, &["stop", "-t", "1", name]);
    })
    .await;
}

/// Stops `apply` after each internal phase (as a crash would), checks that `observe`
/// calls the state Partial, and finishes with a fresh target (as a resumed process
/// would): one replacement, the old container retained, configuration kept.
#[tokio::test(flavor = "multi_thread")]
async fn every_phase_is_observed_and_finished() {
    let Some(host) = docker_host() else { return };
    let dir = tempfile::tempdir().unwrap();
    let images = Images::build(&host, "rbtest-phase", dir.path());
    let containers = Containers::new(&host, "rbt-phase-");
    let network = "rbtest-phase-net";
    docker_quiet(&host, &["network", "rm", network]);
    docker(&host, &["network", "create", network]);
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let bind = format!("{}:/data", data.display());

    let cases = [
        (Order::StopFirst, "old-stopped"),
        (Order::StopFirst, "old-renamed"),
        (Order::StopFirst, "created"),
        (Order::StartFirst, "started-beside"),
        (Order::StartFirst, "old-renamed"),
    ];
    for (i, (order, phase)) in cases.into_iter().enumerate() {
        let name = format!("rbt-phase-{i}");
        let port = free_port();
        // Start-first runs old and new side by side: on a user network (never probed),
        // since on host networking both would bind one port.
        let net_args: Vec<&str> = match order {
            Order::StopFirst => vec![],
            Order::StartFirst => vec!["--network", network, "--network-alias", "api"],
        };
        let mut extra = vec![
            "-e",
            "DB_PASSWORD=hunter2",
            "-e",
            "MODE=prod",
            "--label",
            "team=payments",
            "--restart",
            "unless-stopped",
            "-v",
            &bind,
            "-v",
            "/cache",
            "--stop-timeout",
            "3",
        ];
        extra.extend(net_args);
        if order == Order::StartFirst {
            let port_env = format!("PORT={port}");
            let mut args = vec!["run", "-d", "--name", &name, "-e", &port_env];
            args.extend(extra.iter().copied());
            args.push(&images.ids[2]);
            docker(&host, &args);
            // Referenced by ID: the history needs the repository named.
        } else {
            run(&host, &name, &images.tag("v3"), port, &extra);
        }
        let before = user_config(&inspect(&host, &name));
        let before_id = inspect(&host, &name)["Id"].as_str().unwrap().to_string();
        let target_config =
            ContainerTargetConfig { order, repository: Some(images.repo.clone()), ..config(&host, &name) };
        let crashing = ContainerTarget::new(&name, target_config.clone()).unwrap().stop_after_phase(phase);
        let change = crashing.prepare(&Request::To(Selector::Exact(images.tag("v1")))).await.unwrap();
        assert_eq!(change.to.id, images.ids[0], "a tag is resolved to the image ID once");
        let key = IdempotencyKey::new(format!("run-phases/{i}/fwd"));
        let err = crashing.apply(&change, &key).await.expect_err("the hook stops apply");
        assert!(err.to_string().contains(phase), "{err}");

        let resumed = ContainerTarget::new(&name, target_config).unwrap();
        let observed = resumed.observe(&change, &key).await.unwrap();
        assert!(matches!(observed, Observed::Partial(_)), "after {order:?}/{phase}: {observed:?}");
        resumed.apply(&change, &key).await.unwrap_or_else(|e| panic!("finishing after {phase}: {e}"));
        assert_eq!(resumed.observe(&change, &key).await.unwrap(), Observed::Done, "after {phase}");
        resumed.apply(&change, &key).await.unwrap();

        let now = inspect(&host, &name);
        assert_eq!(now["Image"], images.ids[0], "after {phase}");
        assert_eq!(now["State"]["Running"], true, "after {phase}");
        assert_ne!(now["Id"].as_str().unwrap(), before_id);
        assert_eq!(user_config(&now), before, "configuration kept after {order:?}/{phase}");
        let with_key = docker(&host, &["ps", "-aq", "--filter", &format!("label=io.rollback.key={}", key.as_str())]);
        assert_eq!(with_key.lines().count(), 1, "exactly one replacement after {phase}");
        let retired: Vec<String> =
            containers.names().into_iter().filter(|n| n.starts_with(&format!("{name}_rb_old_"))).collect();
        assert_eq!(retired.len(), 1, "the old container is retained: {:?}", containers.names());
        assert_eq!(inspect(&host, &retired[0])["Id"], before_id);
        assert!(!containers.names().iter().any(|n| n.contains("_rb_new_")), "no start-first leftover");
        if order == Order::StopFirst {
            assert_eq!(version_served(port).await, "v1");
        }
    }
    containers.remove_all();
    docker_quiet(&host, &["network", "rm", network]);
}

#[tokio::test(flavor = "multi_thread")]
async fn start_first_keeps_the_old_container_when_the_new_one_is_unhealthy() {
    let Some(host) = docker_host() else { return };
    let dir = tempfile::tempdir().unwrap();
    let images = Images::build(&host, "rbtest-startfirst", dir.path());
    let _containers = Containers::new(&host, "rbt-startfirst");
    let name = "rbt-startfirst";
    let network = "rbtest-startfirst-net";
    docker_quiet(&host, &["network", "rm", network]);
    docker(&host, &["network", "create", network]);
    docker(&host, &["run", "-d", "--name", name, "--network", network, &images.tag("v3")]);
    let before = inspect(&host, name);
    let target = ContainerTarget::new(
        name,
        ContainerTargetConfig {
            order: Order::StartFirst,
            start_timeout: std::time::Duration::from_secs(20),
            ..config(&host, name)
        },
    )
    .unwrap();
    let change = target.prepare(&Request::To(Selector::Exact(images.tag("v2")))).await.unwrap();
    let key = IdempotencyKey::new("run-startfirst/fwd");
    let err = target.apply(&change, &key).await.expect_err("v2 never gets healthy");
    assert_eq!(err.kind(), ErrorKind::VerificationFailed, "{err}");
    let after = inspect(&host, name);
    assert_eq!(after["Id"], before["Id"], "the old container is still the one in place");
    assert_eq!(after["State"]["Running"], true);
    assert_eq!(target.observe(&change, &key).await.unwrap(), Observed::NotStarted);
    _containers.remove_all();
    docker_quiet(&host, &["network", "rm", network]);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_by_name_before_anything_changes() {
    let Some(host) = docker_host() else { return };
    let dir = tempfile::tempdir().unwrap();
    let images = Images::build(&host, "rbtest-badinput", dir.path());
    let _containers = Containers::new(&host, "rbt-badinput");
    let name = "rbt-badinput";
    run(&host, name, &images.tag("v3"), free_port(), &[]);
    let target = ContainerTarget::new(name, config(&host, name)).unwrap();

    docker(&host, &["rmi", &images.tag("v1")]);
    let err = target.prepare(&Request::To(Selector::Exact(images.tag("v1")))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("rbtest-badinput:v1") && err.to_string().contains("pull"), "{err}");
    let err = target.prepare(&Request::To(Selector::Exact(images.ids[0].clone()))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let err = target.prepare(&Request::To(Selector::Exact(images.tag("v3")))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyDone, "the current image is already there: {err}");
    let history = target.history().await.unwrap();
    assert_eq!(history.len(), 2, "v1 is gone: {history:?}");

    let missing = ContainerTarget::new("nope", config(&host, "rbt-badinput-nope")).unwrap();
    let err = missing.prepare(&Request::To(Selector::Previous)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("rbt-badinput-nope"), "{err}");
    let err = ContainerTarget::new("x", ContainerTargetConfig { container: None, ..config(&host, "x") }).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(inspect(&host, name)["Image"], images.ids[2], "nothing changed");
}
