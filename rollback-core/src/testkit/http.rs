use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A request the [`TestHttpServer`] received (or the [`super::RecordingProxy`] saw).
pub use crate::http1::Request as CapturedRequest;

#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    body: String,
    delay: Duration,
}

/// Answers a request (status, body), or `None` to fall back to routes.
pub type Handler = Arc<dyn Fn(&CapturedRequest) -> Option<(u16, String)> + Send + Sync>;

#[derive(Default)]
struct State {
    handler: Option<Handler>,
    default: Option<Reply>,
    routes: BTreeMap<String, Reply>,
    captured: Vec<CapturedRequest>,
}

/// A real HTTP/1.1 server on 127.0.0.1 (keep-alive, `Content-Length` bodies) whose
/// answers tests change at will: a service that turns healthy, a Prometheus query
/// endpoint, a webhook receiver that captures what was posted.
///
/// ```
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// use rollback_core::testkit::TestHttpServer;
/// let server = TestHttpServer::start().await;
/// server.route("/health", 503, "starting");
/// assert!(server.url("/health").starts_with("http://127.0.0.1:"));
/// # });
/// ```
pub struct TestHttpServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    hits: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for TestHttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestHttpServer").field("addr", &self.addr).finish()
    }
}

impl Drop for TestHttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestHttpServer {
    /// Starts a server answering 200 "ok" to everything.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State {
            default: Some(Reply { status: 200, body: "ok".into(), delay: Duration::ZERO }),
            ..Default::default()
        }));
        let hits = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let (s, h, c) = (state.clone(), hits.clone(), connections.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else { continue };
                c.fetch_add(1, Ordering::SeqCst);
                let _ = socket.set_nodelay(true);
                tokio::spawn(serve(socket, s.clone(), h.clone()));
            }
        });
        TestHttpServer { addr, state, hits, connections, task }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets the answer for every path without a route.
    pub fn respond(&self, status: u16, body: &str) {
        self.lock().default = Some(Reply { status, body: body.into(), delay: Duration::ZERO });
    }

    /// Delays every default answer.
    pub fn delay(&self, delay: Duration) {
        if let Some(reply) = self.lock().default.as_mut() {
            reply.delay = delay;
        }
    }

    /// Sets the answer for one path (query string ignored).
    pub fn route(&self, path: &str, status: u16, body: &str) {
        self.lock().routes.insert(path.into(), Reply { status, body: body.into(), delay: Duration::ZERO });
    }

    /// Answers with a function of the request first (routes and the default after).
    pub fn handler(&self, handler: impl Fn(&CapturedRequest) -> Option<(u16, String)> + Send + Sync + 'static) {
        self.lock().handler = Some(Arc::new(handler));
    }

    /// Requests served so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    /// Requests captured so far (the last 10,000).
    pub fn captured(&self) -> Vec<CapturedRequest> {
        self.lock().captured.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn serve(mut socket: tokio::net::TcpStream, state: Arc<Mutex<State>>, hits: Arc<AtomicU64>) {
    let mut buf = Vec::with_capacity(4096);
    while let Some(request) = crate::http1::read_request(&mut socket, &mut buf).await {
        let close = request.wants_close();
        let reply = {
            let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
            let handled = state.handler.as_ref().and_then(|h| h(&request));
            let reply = match handled {
                Some((status, body)) => Some(Reply { status, body, delay: Duration::ZERO }),
                None => state.routes.get(request.route()).cloned().or_else(|| state.default.clone()),
            };
            if state.captured.len() < 10_000 {
                state.captured.push(request);
            }
            reply.unwrap_or(Reply { status: 404, body: String::new(), delay: Duration::ZERO })
        };
        hits.fetch_add(1, Ordering::SeqCst);
        if !reply.delay.is_zero() {
            tokio::time::sleep(reply.delay).await;
        }
        if !crate::http1::respond(&mut socket, reply.status, "application/json", &reply.body, close).await || close {
            return;
        }
    }
}
