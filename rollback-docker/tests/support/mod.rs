//! Shared set-up for the Docker integration tests: test images built locally from
//! Debian's busybox (no registry here), containers on host networking probed on
//! 127.0.0.1 only, and clean-up of everything a test made.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use rollback_docker::{DockerApi, DockerEndpoint};

/// The engine's socket, from `ROLLBACK_TEST_DOCKER` (`scripts/test.sh` starts dockerd).
pub fn docker_host() -> Option<String> {
    rollback_core::testkit::server_env("ROLLBACK_TEST_DOCKER", "Docker")
}

pub fn endpoint(host: &str) -> DockerEndpoint {
    DockerEndpoint { host: Some(host.to_string()), ..DockerEndpoint::default() }
}

pub fn api(host: &str) -> DockerApi {
    DockerApi::connect(&endpoint(host)).unwrap()
}

pub use rollback_docker::testkit::{TestImages as Images, docker, docker_quiet};

/// Removes every container whose name starts with the prefix when dropped.
pub struct Containers {
    pub prefix: String,
    host: String,
}

impl Containers {
    pub fn new(host: &str, prefix: &str) -> Self {
        let me = Containers { prefix: prefix.to_string(), host: host.to_string() };
        me.remove_all();
        me
    }

    pub fn remove_all(&self) {
        let out = Command::new("docker")
            .env("DOCKER_HOST", &self.host)
            .args(["ps", "-aq", "--filter", &format!("name=^/{}", self.prefix)])
            .output();
        if let Ok(out) = out {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                docker_quiet(&self.host, &["rm", "-f", "-v", id]);
            }
        }
    }

    /// Names of the containers with the prefix, sorted.
    pub fn names(&self) -> Vec<String> {
        let out =
            docker(&self.host, &["ps", "-a", "--format", "{{.Names}}", "--filter", &format!("name=^/{}", self.prefix)]);
        let mut names: Vec<String> = out.lines().map(str::to_string).collect();
        names.sort();
        names
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        self.remove_all();
    }
}

pub use rollback_core::testkit::outage::free_port;

/// Runs `image` as `name` on host networking serving on `port`, with extra `docker run` args.
pub fn run(host: &str, name: &str, image: &str, port: u16, extra: &[&str]) -> String {
    let port_env = format!("PORT={port}");
    // One second of grace at most (the images stop on SIGTERM at once anyway).
    let mut args = vec!["run", "-d", "--name", name, "--network", "host", "--stop-timeout", "1", "-e", &port_env];
    args.extend_from_slice(extra);
    args.push(image);
    docker(host, &args)
}

/// What `/version` answers on 127.0.0.1:port (waits up to 10 s for the server).
pub async fn version_served(port: u16) -> String {
    let url = format!("http://127.0.0.1:{port}/version");
    for _ in 0..100 {
        if let Ok(response) = reqwest::get(&url).await
            && response.status().is_success()
        {
            return response.text().await.unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("nothing serves {url}");
}

/// `docker inspect` of a container as JSON.
pub fn inspect(host: &str, name: &str) -> serde_json::Value {
    let text = docker(host, &["inspect", name]);
    serde_json::from_str::<serde_json::Value>(&text).unwrap()[0].clone()
}

/// The configuration a user set on a container, for before/after comparison: Config
/// (without Hostname and Image, and without this library's `io.rollback.*` labels),
/// HostConfig, Mounts, Name, the networks with their aliases. Runtime fields (ID,
/// Created, State, addresses the engine assigned, paths that contain the ID) are left out.
///
/// One deliberate difference is normalised: an anonymous volume (`-v /cache`) is
/// re-attached to the replacement by its name, as compose does, so it shows up in
/// the replacement's `HostConfig.Binds` as `<volume>:/cache`; those entries are
/// dropped here, and `Mounts` (same volume, same place) is compared sorted by
/// destination, without the engine's `Mode` hint.
pub fn user_config(inspect: &serde_json::Value) -> serde_json::Value {
    let mut mounts = inspect["Mounts"].as_array().cloned().unwrap_or_default();
    mounts.sort_by_key(|m| m["Destination"].as_str().unwrap_or_default().to_string());
    let anonymous: Vec<String> = mounts
        .iter()
        .filter(|m| m["Type"] == "volume" && m["Name"].as_str().is_some_and(|n| n.len() == 64))
        .map(|m| format!("{}:{}", m["Name"].as_str().unwrap(), m["Destination"].as_str().unwrap()))
        .collect();
    for mount in &mut mounts {
        mount.as_object_mut().unwrap().remove("Mode");
    }
    let mut host_config = inspect["HostConfig"].clone();
    if let Some(binds) = host_config["Binds"].as_array_mut() {
        binds.retain(|b| !anonymous.iter().any(|a| b.as_str() == Some(a)));
    }
    let mut config = inspect["Config"].clone();
    let fields = config.as_object_mut().unwrap();
    fields.remove("Hostname");
    fields.remove("Image");
    if let Some(labels) = fields.get_mut("Labels").and_then(|l| l.as_object_mut()) {
        labels.retain(|k, _| !k.starts_with("io.rollback."));
    }
    let id = inspect["Id"].as_str().unwrap_or_default();
    let networks: serde_json::Map<String, serde_json::Value> = inspect["NetworkSettings"]["Networks"]
        .as_object()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|(name, n)| {
            let aliases: Vec<serde_json::Value> = n["Aliases"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|a| !id.starts_with(a.as_str().unwrap_or("-")))
                .collect();
            (name, serde_json::json!({ "Aliases": aliases, "NetworkID": n["NetworkID"] }))
        })
        .collect();
    serde_json::json!({
        "Name": inspect["Name"],
        "Config": config,
        "HostConfig": host_config,
        "Mounts": mounts,
        "Networks": networks,
    })
}

/// A Unix-socket proxy in front of the engine that can go away and come back, as
/// dockerd does when it is stopped and started: while down, its socket file does not
/// exist and every open connection is cut. It can also go down by itself the moment
/// a request whose head contains a given text arrives (that request is not forwarded).
pub struct EngineProxy {
    pub path: std::path::PathBuf,
    upstream: std::path::PathBuf,
    state: std::sync::Arc<ProxyState>,
}

struct ProxyState {
    generation: std::sync::atomic::AtomicU64,
    trip_on: std::sync::Mutex<Option<String>>,
    down: tokio::sync::watch::Sender<bool>,
}

impl EngineProxy {
    pub fn start(upstream: &str, dir: &Path) -> EngineProxy {
        let upstream = std::path::PathBuf::from(upstream.trim_start_matches("unix://"));
        let (down, _) = tokio::sync::watch::channel(false);
        let state =
            std::sync::Arc::new(ProxyState { generation: Default::default(), trip_on: Default::default(), down });
        let proxy = EngineProxy { path: dir.join("docker-proxy.sock"), upstream, state };
        proxy.up();
        proxy
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// Goes down when a request head contains `text`.
    pub fn trip_on(&self, text: &str) {
        *self.state.trip_on.lock().unwrap() = Some(text.to_string());
    }

    pub fn is_down(&self) -> bool {
        *self.state.down.borrow()
    }

    pub fn down(&self) {
        take_down(&self.state, &self.path);
    }

    pub fn up(&self) {
        let _ = std::fs::remove_file(&self.path);
        let listener = tokio::net::UnixListener::bind(&self.path).unwrap();
        self.state.down.send_replace(false);
        let generation = self.state.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let (state, upstream, path) = (self.state.clone(), self.upstream.clone(), self.path.clone());
        tokio::spawn(async move {
            let mut down = state.down.subscribe();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((client, _)) = accepted else { return };
                        tokio::spawn(forward(client, upstream.clone(), state.clone(), path.clone()));
                    }
                    _ = down.wait_for(|d| *d) => return,
                }
                if state.generation.load(std::sync::atomic::Ordering::SeqCst) != generation {
                    return;
                }
            }
        });
    }
}

fn take_down(state: &ProxyState, path: &Path) {
    state.down.send_replace(true);
    let _ = std::fs::remove_file(path);
}

async fn forward(
    client: tokio::net::UnixStream,
    upstream: std::path::PathBuf,
    state: std::sync::Arc<ProxyState>,
    path: std::path::PathBuf,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(server) = tokio::net::UnixStream::connect(&upstream).await else { return };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let mut down = state.down.subscribe();
    let requests = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = client_read.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            let trip = state.trip_on.lock().unwrap().clone();
            if let Some(text) = trip
                && String::from_utf8_lossy(&buf[..n]).contains(&text)
            {
                *state.trip_on.lock().unwrap() = None;
                take_down(&state, &path);
                return;
            }
            if server_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let responses = async {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
    };
    tokio::select! {
        _ = async { tokio::join!(requests, responses) } => {}
        _ = down.wait_for(|d| *d) => {}
    }
}
