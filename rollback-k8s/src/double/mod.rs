//! A Kubernetes API double (feature `api-double`): an HTTP server on 127.0.0.1 serving
//! the endpoints this crate uses, for tests of this crate and of users' plans.
//!
//! What it keeps faithful: `resourceVersion` (one counter, bumped on every change, 409
//! on a stale one in PUT, in a merge patch or changed by a JSON patch), `generation`
//! (spec changes only), JSON patches with `test` (a failed test answers 422, as the real
//! API server does), merge patches (strategic-merge treated as merge), delete
//! preconditions, `dryRun=All`, label and field selectors, owner cascades, and a
//! deployment controller after the upstream rules (see [`ApiDouble::tick`]). What it
//! does not do: authentication, admission beyond Deployment
//! defaults and selector validation, scheduling, real containers. Watches
//! (`?watch=true`) stream `ADDED` / `MODIFIED` / `DELETED` events after the given
//! `resourceVersion` (the current objects first as `ADDED` when it is empty or `0`),
//! honour `fieldSelector`, `labelSelector` and `timeoutSeconds`, send `BOOKMARK`s with
//! `allowWatchBookmarks=true`, and answer a version older than the last
//! [`DoubleOptions::watch_cache`] changes of the resource with an `ERROR` event `410 Expired`, as the real API
//! server does once its watch cache moved on.
//!
//! Served: `deployments`, `replicasets` (apps/v1); `pods` (+ `log`), `services`,
//! `configmaps`, `secrets`, `events`, `namespaces` (v1); `leases` (coordination.k8s.io/v1).
//!
//! ```
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use rollback_k8s::double::ApiDouble;
//! let double = ApiDouble::start().await;
//! let api: kube::Api<ConfigMap> = kube::Api::namespaced(double.client("default"), "default");
//! let cm: ConfigMap = serde_json::from_value(serde_json::json!({"metadata": {"name": "app"}})).unwrap();
//! api.create(&Default::default(), &cm).await.unwrap();
//! assert_eq!(double.writes().len(), 1);
//! # });
//! ```

mod controller;
mod server;
mod store;
mod watch;

use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::Cluster;

/// Whether pods with this image never become ready.
pub type NeverReady = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// How the double behaves.
#[derive(Clone)]
pub struct DoubleOptions {
    /// Virtual time one [`ApiDouble::tick`] advances (default 1 s).
    pub tick: Duration,
    /// Virtual time a pod takes to become ready (default 2 s).
    pub ready_after: Duration,
    /// Real time between background ticks; `None` for ticks only by hand (default 10 ms:
    /// with the defaults, virtual time runs 100× faster than real time).
    pub background: Option<Duration>,
    /// Images whose pods never become ready (default: the image name contains `broken`).
    pub never_ready: NeverReady,
    /// When set, every request must carry `Authorization: Bearer <token>`; others get
    /// `401 Unauthorized`, as from a real API server (default: none required).
    pub bearer_token: Option<String>,
    /// Real time between two `BOOKMARK`s of a watch that asked for them (default 1 s;
    /// the real API server sends one about every minute).
    pub bookmark_interval: Duration,
    /// Changes of one resource a watch can resume from (default 10,000); a watch from
    /// an older `resourceVersion` gets `410 Expired`.
    pub watch_cache: usize,
    /// Whether watches are served (default true); `false` answers them `405`, as a
    /// proxy in front of an API server that does not pass streams might.
    pub watches: bool,
}

impl Default for DoubleOptions {
    fn default() -> Self {
        DoubleOptions {
            tick: Duration::from_secs(1),
            ready_after: Duration::from_secs(2),
            background: Some(Duration::from_millis(10)),
            never_ready: Arc::new(|image: &str| image.contains("broken")),
            bearer_token: None,
            bookmark_interval: Duration::from_secs(1),
            watch_cache: 10_000,
            watches: true,
        }
    }
}

impl std::fmt::Debug for DoubleOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DoubleOptions")
            .field("tick", &self.tick)
            .field("ready_after", &self.ready_after)
            .field("background", &self.background)
            .field("bearer_token", &self.bearer_token.as_ref().map(|_| "***"))
            .field("bookmark_interval", &self.bookmark_interval)
            .field("watch_cache", &self.watch_cache)
            .field("watches", &self.watches)
            .finish()
    }
}

/// One request the double received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    /// `GET`, `PATCH`, …
    pub method: String,
    /// The path.
    pub path: String,
    /// The query string.
    pub query: String,
    /// The request's content type (for patches: which kind of patch).
    pub content_type: String,
}

impl LoggedRequest {
    /// Whether it asked for a change (POST, PUT, PATCH, DELETE) that was not a dry run.
    pub fn is_write(&self) -> bool {
        matches!(self.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE") && !self.query.contains("dryRun=All")
    }
}

pub(crate) struct State {
    store: store::Store,
    now: DateTime<Utc>,
    tick: chrono::TimeDelta,
    ready_after: chrono::TimeDelta,
    never_ready: NeverReady,
    logs: BTreeMap<(String, String), Vec<String>>,
    event_seq: u64,
    pod_seq: u64,
    /// Pods (namespace, name) whose container crashes: `CrashLoopBackOff`, never ready.
    crashing: std::collections::BTreeSet<(String, String)>,
}

pub(crate) struct Shared {
    state: Mutex<State>,
    log: Mutex<Vec<LoggedRequest>>,
    /// The `Authorization` header value every request must carry, if any.
    authorization: Option<String>,
    /// Woken after every change, for watches.
    changed: tokio::sync::Notify,
    bookmark_interval: Duration,
    watches: bool,
}

impl Shared {
    fn log(&self, request: LoggedRequest) {
        if let Ok(mut log) = self.log.lock() {
            log.push(request);
        }
    }
}

/// A running API double. Dropping it stops the server and the background ticker.
pub struct ApiDouble {
    shared: Arc<Shared>,
    url: String,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for ApiDouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiDouble").field("url", &self.url).finish()
    }
}

impl Drop for ApiDouble {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn delta(d: Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::seconds(1))
}

impl ApiDouble {
    /// Starts a double with the default options (a background ticker every 10 ms).
    pub async fn start() -> Self {
        Self::start_with(DoubleOptions::default()).await
    }

    /// Starts a double on a free port of 127.0.0.1.
    ///
    /// # Panics
    /// When no port can be bound on 127.0.0.1 (test support: failing loudly is right).
    pub async fn start_with(options: DoubleOptions) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1 for the API double");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                store: store::Store::with_watch_cache(options.watch_cache),
                now: Utc::now(),
                tick: delta(options.tick),
                ready_after: delta(options.ready_after),
                never_ready: options.never_ready.clone(),
                logs: BTreeMap::new(),
                event_seq: 0,
                pod_seq: 0,
                crashing: Default::default(),
            }),
            log: Mutex::new(Vec::new()),
            authorization: options.bearer_token.as_ref().map(|token| format!("Bearer {token}")),
            changed: tokio::sync::Notify::new(),
            bookmark_interval: options.bookmark_interval,
            watches: options.watches,
        });
        let mut tasks = vec![tokio::spawn(server::serve(listener, shared.clone()))];
        if let Some(period) = options.background {
            let ticker = shared.clone();
            tasks.push(tokio::spawn(async move {
                let mut interval = tokio::time::interval(period);
                loop {
                    interval.tick().await;
                    tick_shared(&ticker);
                }
            }));
        }
        ApiDouble { shared, url, tasks }
    }

    /// The base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A kube client for the double with `namespace` as its default.
    ///
    /// # Panics
    /// Never in practice: the URL is the double's own.
    pub fn client(&self, namespace: &str) -> kube::Client {
        let mut config = kube::Config::new(self.url.parse().expect("the double's URL"));
        config.default_namespace = namespace.to_owned();
        kube::Client::try_from(config).expect("a kube client for the API double")
    }

    /// A [`Cluster`] for the targets.
    pub fn cluster(&self) -> Cluster {
        Cluster::new(self.client("default"), self.url.clone())
    }

    /// Advances the virtual clock by one tick and runs every controller once: the
    /// deployment controller (new or re-used ReplicaSets, revisions, rolling steps,
    /// status and conditions), the ReplicaSet controller (pods) and the kubelet
    /// (readiness after `ready_after`, never for `never_ready` images).
    pub fn tick(&self) {
        tick_shared(&self.shared);
    }

    /// Makes one pod's container crash from the next tick on (`CrashLoopBackOff`, not
    /// ready), as a partial failure does: its ReplicaSet's other pods stay healthy, and
    /// the pod that replaces it once deleted starts normally.
    pub fn crash_pod(&self, namespace: &str, name: &str) {
        if let Ok(mut state) = self.shared.state.lock() {
            state.crashing.insert((namespace.to_owned(), name.to_owned()));
        }
    }

    /// `n` ticks.
    pub fn ticks(&self, n: usize) {
        (0..n).for_each(|_| self.tick());
    }

    /// The virtual time.
    pub fn now(&self) -> DateTime<Utc> {
        self.shared.state.lock().map(|s| s.now).unwrap_or_else(|_| Utc::now())
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The write requests so far (see [`LoggedRequest::is_write`]).
    pub fn writes(&self) -> Vec<LoggedRequest> {
        self.requests().into_iter().filter(LoggedRequest::is_write).collect()
    }

    /// Forgets the request log (before a measured or asserted section).
    pub fn clear_requests(&self) {
        if let Ok(mut log) = self.shared.log.lock() {
            log.clear();
        }
    }

    /// An object as stored (`resource` is the plural: `deployments`, `pods`, …), for
    /// assertions.
    pub fn object(&self, resource: &str, namespace: &str, name: &str) -> Option<serde_json::Value> {
        let state = self.shared.state.lock().ok()?;
        let kind = store::KINDS.iter().find(|k| k.resource == resource)?;
        state.store.get(kind, if kind.namespaced { namespace } else { "" }, name).cloned()
    }

    /// Objects of a resource in a namespace, for assertions.
    pub fn objects(&self, resource: &str, namespace: &str) -> Vec<serde_json::Value> {
        let Ok(state) = self.shared.state.lock() else { return Vec::new() };
        store::KINDS.iter().find(|k| k.resource == resource).map(|k| state.store.list(k, namespace)).unwrap_or_default()
    }
}

fn tick_shared(shared: &Shared) {
    if let Ok(mut state) = shared.state.lock() {
        let step = state.tick;
        state.now += step;
        state.reconcile();
    }
    shared.changed.notify_waiters();
}
