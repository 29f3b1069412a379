//! A recording HTTP/1.1 proxy: sits between a client and a real server on
//! 127.0.0.1, forwards every byte unchanged both ways, and records each request's
//! method, path and headers — so a test or a benchmark counts the requests a
//! backend sent *at the wire* (S3 copies, listings) instead of trusting the
//! backend's own report.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::CapturedRequest;

/// A proxy to one upstream address; requests are recorded without their bodies.
///
/// ```no_run
/// # async fn demo() {
/// let proxy = rollback_core::testkit::RecordingProxy::start("127.0.0.1:5055").await;
/// // point the client at proxy.url() … then:
/// let copies = proxy.requests().iter().filter(|r| r.headers.contains_key("x-amz-copy-source")).count();
/// # let _ = copies;
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RecordingProxy {
    address: SocketAddr,
    seen: Arc<Mutex<Vec<CapturedRequest>>>,
}

impl RecordingProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream` (`host:port`,
    /// or a URL `http://host:port`).
    ///
    /// # Panics
    /// When no port can be bound (a test helper).
    pub async fn start(upstream: &str) -> Self {
        let upstream = upstream.trim_start_matches("http://").trim_end_matches('/').to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let address = listener.local_addr().expect("proxy address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, record) = (upstream.clone(), record.clone());
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&upstream).await {
                        forward(client, server, record).await;
                    }
                });
            }
        });
        RecordingProxy { address, seen }
    }

    /// The proxy's URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Every request recorded so far, in arrival order (bodies empty).
    pub fn requests(&self) -> Vec<CapturedRequest> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Forgets the requests recorded so far.
    pub fn clear(&self) {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

async fn forward(client: TcpStream, server: TcpStream, record: Arc<Mutex<Vec<CapturedRequest>>>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let requests = async move {
        let mut parser = RequestParser::default();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            for request in parser.feed(&buf[..n]) {
                record.lock().unwrap_or_else(|e| e.into_inner()).push(request);
            }
            if server_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = server_write.shutdown().await;
    };
    let responses = async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    };
    tokio::join!(requests, responses);
}

/// Splits a client's byte stream into request heads, skipping `Content-Length`
/// bodies (chunked uploads are not parsed: point the proxy at requests without them).
#[derive(Default)]
struct RequestParser {
    pending: Vec<u8>,
    body_left: usize,
}

impl RequestParser {
    fn feed(&mut self, bytes: &[u8]) -> Vec<CapturedRequest> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            let skip = self.body_left.min(self.pending.len());
            self.pending.drain(..skip);
            self.body_left -= skip;
            if self.body_left > 0 {
                return out;
            }
            let Some(end) = crate::http1::head_end(&self.pending) else { return out };
            let request = crate::http1::parse_head(&String::from_utf8_lossy(&self.pending[..end - 4]));
            self.pending.drain(..end);
            self.body_left = request.content_length();
            out.push(request);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_split_across_reads_and_bodies_skipped() {
        let mut p = RequestParser::default();
        let stream = b"PUT /b/k HTTP/1.1\r\nContent-Length: 5\r\nx-amz-copy-source: b/a\r\n\r\nhelloGET /b?list-type=2 HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut seen = Vec::new();
        for chunk in stream.chunks(7) {
            seen.extend(p.feed(chunk));
        }
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!((seen[0].method.as_str(), seen[0].path.as_str()), ("PUT", "/b/k"));
        assert_eq!(seen[0].headers.get("x-amz-copy-source").map(String::as_str), Some("b/a"));
        assert_eq!((seen[1].method.as_str(), seen[1].path.as_str()), ("GET", "/b?list-type=2"));
    }
}
