//! Watches for the double: a stream of JSON lines, one event each, after a
//! `resourceVersion`, woken by every change and ended after `timeoutSeconds`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};

use super::Shared;
use super::server::{Body, Target};
use super::store::{ApiError, Kind, matches_fields, matches_labels};

/// What one watch asked for.
struct Watch {
    kind: &'static Kind,
    namespace: String,
    labels: String,
    fields: String,
    bookmarks: bool,
    /// The last version sent (events after it are next).
    rv: u64,
    /// Send the current objects as `ADDED` first (no or `0` resourceVersion).
    initial: bool,
    ends: tokio::time::Instant,
    next_bookmark: tokio::time::Instant,
    done: bool,
}

/// Answers `GET …?watch=true` on a collection with a stream of events.
pub(crate) fn stream(shared: Arc<Shared>, target: Target, q: &BTreeMap<String, String>) -> Response<Body> {
    let requested = q.get("resourceVersion").map(String::as_str).unwrap_or("");
    let rv = match requested {
        "" | "0" => None,
        v => match v.parse::<u64>() {
            Ok(rv) => Some(rv),
            Err(_) => {
                return super::server::json_response(
                    400,
                    &ApiError::new(400, "BadRequest", format!("invalid resourceVersion {v:?}")).status(),
                );
            }
        },
    };
    let timeout = q.get("timeoutSeconds").and_then(|t| t.parse::<u64>().ok()).unwrap_or(1800);
    let now = tokio::time::Instant::now();
    let current = shared.state.lock().map(|s| s.store.rv()).unwrap_or(0);
    let watch = Watch {
        kind: target.kind,
        namespace: target.namespace,
        labels: q.get("labelSelector").cloned().unwrap_or_default(),
        fields: q.get("fieldSelector").cloned().unwrap_or_default(),
        bookmarks: q.get("allowWatchBookmarks").is_some_and(|v| v == "true"),
        rv: rv.unwrap_or(current),
        initial: rv.is_none(),
        ends: now + Duration::from_secs(timeout),
        next_bookmark: now + shared.bookmark_interval,
        done: false,
    };
    let events = futures::stream::unfold((shared, watch), |(shared, mut watch)| async move {
        let lines = next_lines(&shared, &mut watch).await?;
        Some((Ok::<_, Infallible>(Frame::data(Bytes::from(lines))), (shared, watch)))
    });
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(StreamBody::new(events).boxed())
        .unwrap_or_else(|_| Response::new(http_body_util::Full::new(Bytes::new()).boxed()))
}

/// Waits for the next events (or a bookmark) and returns them as JSON lines; `None`
/// when the watch is over.
async fn next_lines(shared: &Shared, watch: &mut Watch) -> Option<Vec<u8>> {
    loop {
        if watch.done {
            return None;
        }
        let changed = shared.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let lines = collect(shared, watch);
        if !lines.is_empty() {
            return Some(lines);
        }
        let now = tokio::time::Instant::now();
        if now >= watch.ends {
            return None;
        }
        if watch.bookmarks && now >= watch.next_bookmark {
            watch.next_bookmark = now + shared.bookmark_interval;
            let bookmark = json!({"type": "BOOKMARK", "object": {
                "apiVersion": watch.kind.api_version(), "kind": watch.kind.kind,
                "metadata": {"resourceVersion": watch.rv.to_string()}}});
            return Some(line(&bookmark));
        }
        let wake = if watch.bookmarks { watch.ends.min(watch.next_bookmark) } else { watch.ends };
        let _ = tokio::time::timeout_at(wake, changed).await;
    }
}

/// The events of the watch's kind after its version that match its selectors.
fn collect(shared: &Shared, watch: &mut Watch) -> Vec<u8> {
    let Ok(state) = shared.state.lock() else { return Vec::new() };
    let mut out = Vec::new();
    let wanted =
        |obj: &Value| matches_labels(obj, &watch.labels).unwrap_or(false) && matches_fields(obj, &watch.fields);
    if watch.initial {
        watch.initial = false;
        for obj in state.store.list(watch.kind, &watch.namespace).into_iter().filter(|o| wanted(o)) {
            out.extend(line(&json!({"type": "ADDED", "object": obj})));
        }
        watch.rv = state.store.rv();
        return out;
    }
    match state.store.events_after(watch.kind.resource, &watch.namespace, watch.rv) {
        Ok(events) => {
            for event in &events {
                if wanted(&event.object) {
                    out.extend(line(&json!({"type": event.kind, "object": event.object})));
                }
            }
            watch.rv = events.last().map_or(watch.rv, |e| e.rv);
        }
        Err(oldest) => {
            let status =
                ApiError::new(410, "Expired", format!("too old resource version: {} ({oldest})", watch.rv)).status();
            out.extend(line(&json!({"type": "ERROR", "object": status})));
            watch.done = true;
        }
    }
    out
}

fn line(value: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}
