//! The Docker daemon itself stops in the middle of a recreate (`SIGTERM` to dockerd,
//! what `systemctl stop docker` does) while the old container is being stopped; the
//! run fails with a report naming the step and the retryable cause; `resume` refuses
//! to act while the daemon is down and, once it is started again, finishes the same
//! recreate: one replacement, the old container retained.
//!
//! Runs a private dockerd (own data root, exec root, socket and bridge; no
//! iptables), so stopping it disturbs no other test. Its bridge is one the test
//! creates and deletes itself: a dockerd started with `--bridge none` deletes the
//! host's `docker0` on start-up, which broke every later test building an image on
//! the shared daemon. The test images are built on the
//! shared daemon and moved with `docker save | docker load`. Needs
//! `ROLLBACK_TEST_DOCKER` (`scripts/test.sh` installs docker.io, starts the shared
//! daemon and sets it) and root, as dockerd does.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rollback_core::testkit::outage::{assert_cut_by_outage, wait_until};
use rollback_core::verify::register_builtin_verifiers;
use rollback_core::{Engine, Plan, ProbePolicy, Registry, RunState, Selector, Spec, Step, StepOp};
use support::{Images, docker, docker_host, docker_quiet, free_port, inspect, version_served};

/// A Linux bridge of the test's own (`ip link add … type bridge`), deleted on drop.
struct PrivateBridge {
    name: String,
}

impl PrivateBridge {
    fn create() -> PrivateBridge {
        let pid = std::process::id();
        // Interface names have at most 15 bytes; the address is one no host network uses.
        let bridge = PrivateBridge { name: format!("rbt{pid}") };
        let address = format!("10.251.{}.1/24", pid % 250);
        for args in [
            vec!["link", "add", bridge.name.as_str(), "type", "bridge"],
            vec!["addr", "add", address.as_str(), "dev", bridge.name.as_str()],
            vec!["link", "set", bridge.name.as_str(), "up"],
        ] {
            let out = Command::new("ip").args(&args).output().expect("ip (iproute2)");
            assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        }
        bridge
    }
}

impl Drop for PrivateBridge {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "delete", &self.name, "type", "bridge"]).output();
    }
}

/// A dockerd of our own. Fields drop in order: the daemon stops (in `Drop`), then
/// its directory and bridge go.
struct PrivateDaemon {
    dir: tempfile::TempDir,
    child: Option<Child>,
    bridge: PrivateBridge,
}

impl PrivateDaemon {
    fn start() -> PrivateDaemon {
        let mut daemon =
            PrivateDaemon { dir: tempfile::tempdir().unwrap(), child: None, bridge: PrivateBridge::create() };
        daemon.restart();
        daemon
    }

    /// Starts the daemon again and waits until it answers.
    fn restart(&mut self) {
        assert!(
            self.try_restart(),
            "the private dockerd did not come up: {}",
            std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
        );
    }

    fn host(&self) -> String {
        format!("unix://{}", self.dir.path().join("docker.sock").display())
    }

    fn try_restart(&mut self) -> bool {
        let d = self.dir.path();
        let Ok(log) = std::fs::OpenOptions::new().create(true).append(true).open(d.join("dockerd.log")) else {
            return false;
        };
        let child = Command::new("dockerd")
            .arg("--host")
            .arg(self.host())
            .arg("--data-root")
            .arg(d.join("root"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("dockerd.pid"))
            .args(["--bridge", &self.bridge.name, "--iptables=false", "--ip-masq=false"])
            .args(["--cgroup-parent", "rollback-private"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn();
        let Ok(child) = child else { return false };
        self.child = Some(child);
        wait_until(Duration::from_secs(60), || self.answers())
    }

    fn answers(&self) -> bool {
        Command::new("docker")
            .env("DOCKER_HOST", self.host())
            .args(["version", "--format", "{{.Server.Version}}"])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// `systemctl stop docker`: SIGTERM, then wait (up to a minute) until the daemon
    /// has exited; whether it did.
    fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else { return true };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        wait_until(Duration::from_secs(60), || child.try_wait().is_ok_and(|status| status.is_some()))
    }
}

impl Drop for PrivateDaemon {
    fn drop(&mut self) {
        // Remove every container through the daemon (started again if it is down).
        // Best effort, without asserting: a panic in drop would abort the test binary.
        if self.child.is_none() {
            self.try_restart();
        }
        let ids = Command::new("docker").env("DOCKER_HOST", self.host()).args(["ps", "-aq"]).output();
        if let Ok(out) = ids {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                docker_quiet(&self.host(), &["rm", "-f", id]);
            }
        }
        if !self.stop()
            && let Some(mut child) = self.child.take()
        {
            let _ = child.kill();
        }
        // Overlay and network-namespace mounts may linger under the directory: unmount
        // them before the tempdir is removed.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "grep -o ' {}/[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l",
                self.dir.path().display()
            ))
            .status();
    }
}

fn plan(host: &str, container: &str, port: u16) -> Plan {
    let mut plan = Plan::new("app back one").stage(
        "app",
        1,
        vec![
            Step::new("rollback-api", StepOp::Rollback { target: "api".into(), to: Selector::Previous }),
            Step::new(
                "serves",
                StepOp::Verify {
                    verifier: "api-version".into(),
                    policy: ProbePolicy {
                        interval: Duration::from_millis(200),
                        passes: 1,
                        deadline: Duration::from_secs(20),
                        ..Default::default()
                    },
                },
            ),
        ],
    );
    plan.targets.push(Spec::new(
        "docker-container",
        "api",
        serde_json::json!({ "container": container, "docker": { "host": host } }),
    ));
    plan.verifiers.push(Spec::new(
        "http",
        "api-version",
        serde_json::json!({ "url": format!("http://127.0.0.1:{port}/version"), "body_contains": "v1" }),
    ));
    plan
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_stopped_mid_recreate_is_reported_and_resume_finishes() {
    let Some(shared) = docker_host() else { return };
    let work = tempfile::tempdir().unwrap();
    let images = Images::build(&shared, "rbtest-daemon-outage", work.path());
    let mut daemon = PrivateDaemon::start();
    let host = daemon.host();
    let archive = work.path().join("images.tar");
    docker(&shared, &["save", "-o", archive.to_str().unwrap(), &images.tag("v1"), &images.tag("v2")]);
    docker(&host, &["load", "-q", "-i", archive.to_str().unwrap()]);

    // v2 runs; it ignores SIGTERM, so stopping it takes its 5 s stop timeout: the
    // window in which the daemon goes away.
    let (name, port) = ("rbt-daemon-outage", free_port());
    let port_env = format!("PORT={port}");
    docker(
        &host,
        &[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "host",
            "--stop-timeout",
            "5",
            "-e",
            &port_env,
            &images.tag("v2"),
            "/bin/sh",
            "-c",
            "trap '' TERM; httpd -f -p 127.0.0.1:${PORT} -h /www & wait",
        ],
    );
    let old_id = inspect(&host, name)["Id"].as_str().unwrap().to_string();
    assert_eq!(version_served(port).await, "v2");

    let mut registry = Registry::new();
    register_builtin_verifiers(&mut registry);
    rollback_docker::register(&mut registry);
    let engine = Engine::builder(registry).home(work.path().join("home")).try_build().unwrap();
    // Every `kill` event since now (`--since`: one that comes before the subscription
    // is replayed, not missed).
    let since = chrono_like_now();
    let mut events = Command::new("docker")
        .env("DOCKER_HOST", &host)
        .args(["events", "--since", &since, "--filter", &format!("container={name}"), "--filter", "event=kill"])
        .args(["--format", "{{.Action}}"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let run = tokio::spawn({
        let (engine, plan) = (engine.clone(), plan(&host, name, port));
        async move { engine.run(plan, Default::default()).await }
    });
    // The library asked the daemon to stop the old container: stop the daemon now.
    let stdout = events.stdout.take().unwrap();
    let first_kill = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        line
    });
    let kill_seen = tokio::time::timeout(Duration::from_secs(60), first_kill).await;
    let _ = events.kill();
    let _ = events.wait();
    let kill_seen = kill_seen.expect("a kill event within a minute").unwrap();
    assert!(kill_seen.starts_with("kill"), "{kill_seen:?}");
    assert!(daemon.stop(), "dockerd stopped");
    let report = run.await.unwrap().unwrap();

    assert_cut_by_outage(&report, "rollback-api");
    let text = report.to_string();
    assert!(report.not_started.iter().any(|s| s.as_str() == "serves"), "no checks after a failed rollback: {text}");
    eprintln!("--- the report of the failed run\n{text}");

    let err = engine.resume(&report.run).await.expect_err("resume while the daemon is down fails before acting");
    assert!(err.is_retryable(), "{err}");

    daemon.restart();
    let report = engine.resume(&report.run).await.unwrap();
    assert_eq!(report.state, RunState::Succeeded, "{report}");
    let now = inspect(&host, name);
    assert_eq!(now["Image"], images.ids[0], "v1's image under the name");
    assert_eq!(version_served(port).await, "v1");
    let keyed = docker(&host, &["ps", "-aq", "--no-trunc", "--filter", "label=io.rollback.key"]);
    assert_eq!(keyed.lines().collect::<Vec<_>>(), [now["Id"].as_str().unwrap()], "exactly one replacement");
    let all = docker(&host, &["ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}}"]);
    assert_eq!(all.lines().count(), 2, "the replacement and the retained old container: {all}");
    assert!(all.contains(&old_id), "the old container is kept: {all}");
}

/// Seconds since the epoch, as `docker events --since` takes them.
fn chrono_like_now() -> String {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0).to_string()
}
