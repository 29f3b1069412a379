//! HTTP for the double: the Kubernetes REST paths, GET/LIST/POST/PUT/PATCH/DELETE,
//! JSON and merge patches (strategic-merge treated as merge), `dryRun`, pod logs.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use super::store::{ApiError, Kind, find_kind, matches_fields, matches_labels};
use super::{LoggedRequest, Shared};

/// Serves connections until the listener is dropped (the task is aborted).
pub(crate) async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(shared, req).await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await {
                tracing::debug!(error = %e, "api double connection ended");
            }
        });
    }
}

/// A response body: whole, or a watch's stream of events.
pub(crate) type Body = BoxBody<Bytes, Infallible>;

fn respond(code: u16, body: Vec<u8>, content_type: &str) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

pub(crate) fn json_response(code: u16, value: &Value) -> Response<Body> {
    respond(code, serde_json::to_vec(value).unwrap_or_default(), "application/json")
}

/// A parsed REST path.
pub(crate) struct Target {
    pub(crate) kind: &'static Kind,
    pub(crate) namespace: String,
    pub(crate) name: Option<String>,
    pub(crate) subresource: Option<String>,
}

fn parse_path(path: &str) -> Result<Target, ApiError> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(ApiError::new(404, "NotFound", format!("the API double does not serve {path}"))),
    };
    let unknown =
        || ApiError::new(404, "NotFound", format!("the server could not find the requested resource ({path})"));
    let (resource, namespace, name, sub) = match rest {
        ["namespaces"] => ("namespaces", "", None, None),
        ["namespaces", name] => ("namespaces", "", Some(*name), None),
        ["namespaces", ns, resource] => (*resource, *ns, None, None),
        ["namespaces", ns, resource, name] => (*resource, *ns, Some(*name), None),
        ["namespaces", ns, resource, name, sub] => (*resource, *ns, Some(*name), Some(*sub)),
        [resource] => (*resource, "", None, None),
        _ => return Err(unknown()),
    };
    let kind = find_kind(group, version, resource).ok_or_else(unknown)?;
    Ok(Target {
        kind,
        namespace: namespace.to_owned(),
        name: name.map(str::to_owned),
        subresource: sub.map(str::to_owned),
    })
}

fn query(uri: &http::Uri) -> BTreeMap<String, String> {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn handle(shared: Arc<Shared>, req: Request<hyper::body::Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let content_type = req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let accept = req.headers().get("accept").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    if let Some(expected) = &shared.authorization
        && req.headers().get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str())
    {
        return json_response(401, &ApiError::new(401, "Unauthorized", "Unauthorized").status());
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return json_response(400, &ApiError::new(400, "BadRequest", e.to_string()).status()),
    };
    let q = query(&uri);
    shared.log(LoggedRequest {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        content_type: content_type.clone(),
    });
    if q.get("watch").is_some_and(|v| v == "true" || v == "1") && method == Method::GET {
        return match parse_path(uri.path()) {
            Ok(_) if !shared.watches => {
                json_response(405, &ApiError::new(405, "MethodNotAllowed", "watches are off in this double").status())
            }
            Ok(target) if target.name.is_none() && target.subresource.is_none() => {
                super::watch::stream(shared, target, &q)
            }
            Ok(_) => json_response(405, &ApiError::new(405, "MethodNotAllowed", "watch a collection").status()),
            Err(e) => json_response(e.code, &e.status()),
        };
    }
    let result = parse_path(uri.path()).and_then(|target| {
        let mut state =
            shared.state.lock().map_err(|_| ApiError::new(500, "InternalError", "double state poisoned"))?;
        dispatch(&mut state, &method, &target, &q, &content_type, &body).map(|value| (value, target))
    });
    if method != Method::GET {
        shared.changed.notify_waiters();
    }
    match result {
        Ok((Reply::Json(code, value), target)) => {
            if accept.contains("as=PartialObjectMetadata") && target.name.is_some() {
                let meta = json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": value["metadata"]});
                json_response(code, &meta)
            } else {
                json_response(code, &value)
            }
        }
        Ok((Reply::Text(text), _)) => respond(200, text.into_bytes(), "text/plain"),
        Err(e) => json_response(e.code, &e.status()),
    }
}

enum Reply {
    Json(u16, Value),
    Text(String),
}

fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::new(400, "BadRequest", format!("the body is not JSON: {e}")))
}

/// `stringData` is write-only: the API server merges it into `data` (base64).
fn normalize(kind: &Kind, mut obj: Value) -> Value {
    if kind.resource == "secrets"
        && let Some(string_data) = obj.as_object_mut().and_then(|o| o.remove("stringData"))
    {
        for (k, v) in string_data.as_object().into_iter().flatten() {
            let bytes = k8s_openapi::ByteString(v.as_str().unwrap_or_default().as_bytes().to_vec());
            obj["data"][k] = serde_json::to_value(bytes).unwrap_or_default();
        }
    }
    obj
}

/// API-server defaulting and validation for the kinds that have rules here.
fn admit(kind: &Kind, obj: &mut Value) -> Result<(), ApiError> {
    if kind.resource != "deployments" {
        return Ok(());
    }
    let spec = obj.get_mut("spec").ok_or_else(|| ApiError::new(422, "Invalid", "spec: Required value"))?;
    let defaults = [
        ("replicas", json!(1)),
        ("revisionHistoryLimit", json!(10)),
        ("progressDeadlineSeconds", json!(600)),
        ("strategy", json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})),
    ];
    for (field, value) in defaults {
        if spec.get(field).is_none_or(Value::is_null) {
            spec[field] = value;
        }
    }
    if spec["replicas"].as_i64().is_none_or(|n| n < 0) {
        return Err(ApiError::new(422, "Invalid", "spec.replicas: Invalid value: must be greater than or equal to 0"));
    }
    let selector = spec.pointer("/selector/matchLabels").and_then(Value::as_object).cloned().unwrap_or_default();
    let labels = spec.pointer("/template/metadata/labels").and_then(Value::as_object).cloned().unwrap_or_default();
    if selector.is_empty() || selector.iter().any(|(k, v)| labels.get(k) != Some(v)) {
        return Err(ApiError::new(
            422,
            "Invalid",
            "spec.template.metadata.labels: Invalid value: `selector` does not match template `labels`",
        ));
    }
    Ok(())
}

/// A Deployment's `autoscaling/v1` `Scale`, as the API server derives it.
fn scale_of(d: &Value) -> Value {
    let selector = d
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(","))
        .unwrap_or_default();
    let meta = &d["metadata"];
    json!({
        "apiVersion": "autoscaling/v1", "kind": "Scale",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
                     "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"]},
        "spec": {"replicas": d.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
        "status": {"replicas": d.pointer("/status/replicas").cloned().unwrap_or(json!(0)), "selector": selector},
    })
}

/// `deployments/{name}/scale`: GET, PUT and PATCH of the replica count alone, with
/// the Deployment's resourceVersion as the precondition.
fn scale(
    state: &mut super::State,
    method: &Method,
    kind: &Kind,
    ns: &str,
    name: &str,
    content_type: &str,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let d = state.store.get(kind, ns, name).cloned().ok_or_else(|| ApiError::not_found(kind, name))?;
    let current = scale_of(&d);
    let wanted = match *method {
        Method::GET => return Ok(Reply::Json(200, current)),
        Method::PUT => parse_body(body)?,
        Method::PATCH => patched(&current, content_type, body)?,
        _ => return Err(ApiError::new(405, "MethodNotAllowed", format!("{method} is not allowed on scale"))),
    };
    let replicas = wanted.pointer("/spec/replicas").and_then(Value::as_i64).filter(|n| *n >= 0).ok_or_else(|| {
        ApiError::new(422, "Invalid", "spec.replicas: Invalid value: must be greater than or equal to 0")
    })?;
    let mut updated = d.clone();
    updated["spec"]["replicas"] = json!(replicas);
    updated["metadata"]["resourceVersion"] =
        wanted.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null);
    let stored = state.store.update(kind, ns, name, updated)?;
    Ok(Reply::Json(200, scale_of(&stored)))
}

/// `current` with a JSON, merge or strategic-merge patch applied.
fn patched(current: &Value, content_type: &str, body: &[u8]) -> Result<Value, ApiError> {
    let mut patched = current.clone();
    let patch = parse_body(body)?;
    match content_type.split(';').next().unwrap_or_default().trim() {
        "application/json-patch+json" => {
            let ops: json_patch::Patch = serde_json::from_value(patch)
                .map_err(|e| ApiError::new(400, "BadRequest", format!("invalid JSON patch: {e}")))?;
            json_patch::patch(&mut patched, &ops).map_err(|e| {
                let message = match e.kind {
                    json_patch::PatchErrorKind::TestFailed => format!("testing value {} failed: test failed", e.path),
                    _ => e.to_string(),
                };
                ApiError::new(422, "Invalid", message)
            })?;
        }
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            json_patch::merge(&mut patched, &patch);
        }
        other => {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!("the API double does not support patch type {other:?}"),
            ));
        }
    }
    Ok(patched)
}

fn dispatch(
    state: &mut super::State,
    method: &Method,
    target: &Target,
    q: &BTreeMap<String, String>,
    content_type: &str,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let kind = target.kind;
    let ns = target.namespace.as_str();
    let dry_run = q.get("dryRun").is_some_and(|v| v == "All");
    if let Some(sub) = &target.subresource {
        let name = target.name.as_deref().unwrap_or_default();
        return match (method, kind.resource, sub.as_str()) {
            (&Method::GET, "pods", "log") => {
                state.store.get(kind, ns, name).ok_or_else(|| ApiError::not_found(kind, name))?;
                let lines = state.logs.get(&(ns.to_owned(), name.to_owned())).cloned().unwrap_or_default();
                let tail = q.get("tailLines").and_then(|t| t.parse::<usize>().ok()).unwrap_or(lines.len());
                let text: String = lines[lines.len().saturating_sub(tail)..].iter().map(|l| format!("{l}\n")).collect();
                Ok(Reply::Text(text))
            }
            (_, "deployments", "scale") => scale(state, method, kind, ns, name, content_type, body),
            _ => Err(ApiError::new(404, "NotFound", format!("the API double does not serve {}/{sub}", kind.resource))),
        };
    }
    let now = state.now;
    match (method, &target.name) {
        (&Method::GET, Some(name)) => state
            .store
            .get(kind, ns, name)
            .cloned()
            .map(|v| Reply::Json(200, v))
            .ok_or_else(|| ApiError::not_found(kind, name)),
        (&Method::GET, None) => {
            let labels = q.get("labelSelector").map(String::as_str).unwrap_or("");
            let fields = q.get("fieldSelector").map(String::as_str).unwrap_or("");
            let mut items = Vec::new();
            for obj in state.store.list(kind, ns) {
                if matches_labels(&obj, labels)? && matches_fields(&obj, fields) {
                    items.push(obj);
                }
            }
            Ok(Reply::Json(
                200,
                json!({"apiVersion": kind.api_version(), "kind": format!("{}List", kind.kind),
                       "metadata": {"resourceVersion": state.store.resource_version()}, "items": items}),
            ))
        }
        (&Method::POST, None) => {
            let mut obj = normalize(kind, parse_body(body)?);
            admit(kind, &mut obj)?;
            if dry_run {
                return Ok(Reply::Json(201, obj));
            }
            state.store.create(kind, ns, obj, now).map(|v| Reply::Json(201, v))
        }
        (&Method::PUT, Some(name)) => {
            let mut obj = normalize(kind, parse_body(body)?);
            admit(kind, &mut obj)?;
            if dry_run {
                return Ok(Reply::Json(200, obj));
            }
            state.store.update(kind, ns, name, obj).map(|v| Reply::Json(200, v))
        }
        (&Method::PATCH, Some(name)) => {
            let current = state.store.get(kind, ns, name).cloned().ok_or_else(|| ApiError::not_found(kind, name))?;
            let patched = patched(&current, content_type, body)?;
            // A resourceVersion changed by the patch is a precondition: stale → 409.
            let rv = |v: &Value| v.pointer("/metadata/resourceVersion").cloned();
            if rv(&patched) != rv(&current) && rv(&patched).is_some_and(|v| !v.is_null()) {
                return Err(ApiError::conflict(kind, name));
            }
            let mut patched = normalize(kind, patched);
            admit(kind, &mut patched)?;
            if dry_run {
                return Ok(Reply::Json(200, patched));
            }
            state.store.update(kind, ns, name, patched).map(|v| Reply::Json(200, v))
        }
        (&Method::DELETE, Some(name)) => {
            let options = if body.is_empty() { Value::Null } else { parse_body(body)? };
            let preconditions = options.get("preconditions").cloned().unwrap_or(Value::Null);
            if dry_run {
                return state
                    .store
                    .get(kind, ns, name)
                    .cloned()
                    .map(|v| Reply::Json(200, v))
                    .ok_or_else(|| ApiError::not_found(kind, name));
            }
            let deleted = state.store.delete(kind, ns, name, &preconditions)?;
            if kind.resource == "pods" {
                state.logs.remove(&(ns.to_owned(), name.clone()));
            }
            Ok(Reply::Json(200, deleted))
        }
        _ => Err(ApiError::new(405, "MethodNotAllowed", format!("{method} is not allowed here"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_queries() {
        let t = parse_path("/apis/apps/v1/namespaces/prod/deployments/web").unwrap();
        assert_eq!((t.kind.resource, t.namespace.as_str(), t.name.as_deref()), ("deployments", "prod", Some("web")));
        let t = parse_path("/api/v1/namespaces/prod/pods/web-1/log").unwrap();
        assert_eq!(t.subresource.as_deref(), Some("log"));
        assert!(parse_path("/apis/apps/v1/namespaces/prod/statefulsets").is_err());
        let uri: http::Uri = "/x?labelSelector=app%3Dweb%2Ctrack%20in%20(a)&watch=false".parse().unwrap();
        let q = query(&uri);
        assert_eq!(q["labelSelector"], "app=web,track in (a)");
    }
}
