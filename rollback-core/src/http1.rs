//! The little HTTP/1.1 the crate's own servers speak (the verification lab's
//! controllable service, the test kit's server and recording proxy): request heads
//! and `Content-Length` bodies over keep-alive connections. Not a general server.

use std::collections::BTreeMap;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// One request: method, path (with its query), lower-cased header names, body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    /// Method.
    pub method: String,
    /// Path with query.
    pub path: String,
    /// Headers, lower-cased names.
    pub headers: BTreeMap<String, String>,
    /// Body.
    pub body: String,
}

impl Request {
    /// The path without its query.
    pub fn route(&self) -> &str {
        self.path.split('?').next().unwrap_or("/")
    }

    /// Whether the client asked to close the connection after this request.
    pub fn wants_close(&self) -> bool {
        self.headers.get("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }

    /// The declared body length (0 without `Content-Length`).
    pub fn content_length(&self) -> usize {
        self.headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0)
    }
}

/// Parses a request head (the bytes before `\r\n\r\n`); the body is left empty.
pub(crate) fn parse_head(head: &str) -> Request {
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_owned();
    let path = first.next().unwrap_or("/").to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Request { method, path, headers, body: String::new() }
}

/// The end of the head in `buf` (just past `\r\n\r\n`), if it is all there.
pub(crate) fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|at| at + 4)
}

/// Reads the next request from `socket`, keeping bytes of the next one in `buf`.
/// `None` when the peer closed or the connection failed.
pub(crate) async fn read_request(socket: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>) -> Option<Request> {
    let end = loop {
        if let Some(end) = head_end(buf) {
            break end;
        }
        fill(socket, buf).await?;
    };
    let mut request = parse_head(&String::from_utf8_lossy(&buf[..end - 4]));
    let length = request.content_length();
    while buf.len() < end + length {
        fill(socket, buf).await?;
    }
    request.body = String::from_utf8_lossy(&buf[end..end + length]).into_owned();
    buf.drain(..end + length);
    Some(request)
}

async fn fill(socket: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 4096];
    match socket.read(&mut chunk).await {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}

/// Writes one response; `false` when the connection is gone.
pub(crate) async fn respond(
    socket: &mut (impl AsyncWrite + Unpin),
    status: u16,
    content_type: &str,
    body: &str,
    close: bool,
) -> bool {
    let response = format!(
        "HTTP/1.1 {status} {}\r\ncontent-length: {}\r\ncontent-type: {content_type}\r\n{}\r\n{body}",
        reason(status),
        body.len(),
        if close { "connection: close\r\n" } else { "" },
    );
    socket.write_all(response.as_bytes()).await.is_ok()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keep_alive_requests_come_out_one_by_one() {
        let bytes: &[u8] =
            b"POST /control HTTP/1.1\r\nContent-Length: 4\r\n\r\nslowGET /health?x=1 HTTP/1.1\r\nConnection: close\r\n\r\n";
        let mut reader = bytes;
        let mut buf = Vec::new();
        let first = read_request(&mut reader, &mut buf).await.unwrap();
        assert_eq!((first.method.as_str(), first.route(), first.body.as_str()), ("POST", "/control", "slow"));
        let second = read_request(&mut reader, &mut buf).await.unwrap();
        assert_eq!((second.route(), second.path.as_str(), second.wants_close()), ("/health", "/health?x=1", true));
        assert!(read_request(&mut reader, &mut buf).await.is_none());
    }
}
