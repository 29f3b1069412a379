//! The double's object store: one resourceVersion counter for everything, generation
//! bumped on spec changes, conflicts on stale resourceVersions, label and field
//! selectors, cascading deletes by owner.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// One resource the double serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Kind {
    pub(crate) resource: &'static str,
    pub(crate) group: &'static str,
    pub(crate) kind: &'static str,
    /// Writes through the main resource keep the stored status (a status subresource).
    pub(crate) has_status: bool,
    /// metadata.generation counts spec changes.
    pub(crate) generation: bool,
    pub(crate) namespaced: bool,
    /// The API version served (`v1`, or `v2` for autoscaling).
    pub(crate) version: &'static str,
}

impl Kind {
    pub(crate) fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.into() } else { format!("{}/{}", self.group, self.version) }
    }
}

const fn kind(resource: &'static str, group: &'static str, kind: &'static str, status: bool) -> Kind {
    Kind { resource, group, kind, has_status: status, generation: status, namespaced: true, version: "v1" }
}

/// Everything the double serves.
pub(crate) const KINDS: &[Kind] = &[
    kind("deployments", "apps", "Deployment", true),
    kind("replicasets", "apps", "ReplicaSet", true),
    kind("pods", "", "Pod", true),
    kind("services", "", "Service", false),
    kind("configmaps", "", "ConfigMap", false),
    kind("secrets", "", "Secret", false),
    kind("events", "", "Event", false),
    kind("leases", "coordination.k8s.io", "Lease", false),
    Kind { version: "v2", ..kind("horizontalpodautoscalers", "autoscaling", "HorizontalPodAutoscaler", true) },
    Kind {
        resource: "namespaces",
        group: "",
        kind: "Namespace",
        has_status: false,
        generation: false,
        namespaced: false,
        version: "v1",
    },
];

pub(crate) fn find_kind(group: &str, version: &str, resource: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.group == group && k.version == version && k.resource == resource)
}

/// An API error, answered as a `Status`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub(crate) code: u16,
    pub(crate) reason: &'static str,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, reason, message: message.into() }
    }

    pub(crate) fn not_found(kind: &Kind, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{}.{} {name:?} not found", kind.resource, kind.group))
    }

    pub(crate) fn conflict(kind: &Kind, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {}.{} {name:?}: the object has been modified; \
                 please apply your changes to the latest version and try again",
                kind.resource, kind.group
            ),
        )
    }

    pub(crate) fn status(&self) -> Value {
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": self.message, "reason": self.reason, "code": self.code})
    }
}

type Key = (&'static str, String, String);

/// The objects, by (resource, namespace, name).
#[derive(Debug, Default)]
pub(crate) struct Store {
    rv: u64,
    uid: u64,
    objects: BTreeMap<Key, Value>,
    /// The newest changes, for watches: `ADDED`, `MODIFIED`, `DELETED` with the
    /// object as it was then, oldest first, at most [`EVENTS_KEPT`].
    events: BTreeMap<&'static str, WatchCache>,
    /// How many changes of one resource a watch can resume from; an older
    /// `resourceVersion` is `410 Gone`, as the real API server (one watch cache per
    /// resource) answers once its cache has moved on.
    events_kept: usize,
}

/// The newest changes of one resource.
#[derive(Debug, Default)]
struct WatchCache {
    events: std::collections::VecDeque<Event>,
    /// The version of the newest change dropped (0: none yet).
    evicted: u64,
}

/// One change, as a watch streams it.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub rv: u64,
    pub namespace: String,
    pub kind: &'static str,
    pub object: Value,
}

pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn spec_of(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(map) = v.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
        map.remove("apiVersion");
        map.remove("kind");
    }
    v
}

impl Store {
    /// An empty store keeping the last `events_kept` changes for watches.
    pub(crate) fn with_watch_cache(events_kept: usize) -> Self {
        Store { events_kept, ..Default::default() }
    }

    pub(crate) fn resource_version(&self) -> String {
        self.rv.to_string()
    }

    fn record(&mut self, resource: &'static str, namespace: &str, kind: &'static str, object: &Value) {
        let cache = self.events.entry(resource).or_default();
        if cache.events.len() >= self.events_kept.max(1)
            && let Some(dropped) = cache.events.pop_front()
        {
            cache.evicted = dropped.rv;
        }
        let mut object = object.clone();
        if kind == "DELETED" {
            object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        }
        cache.events.push_back(Event { rv: self.rv, namespace: namespace.to_owned(), kind, object });
    }

    /// The changes after `rv` of one resource (in `ns`, or every namespace when empty),
    /// or `Err` with the newest version dropped from its cache when `rv` is older.
    pub(crate) fn events_after(&self, resource: &str, ns: &str, rv: u64) -> Result<Vec<Event>, u64> {
        let Some(cache) = self.events.get(resource) else { return Ok(Vec::new()) };
        if rv < cache.evicted {
            return Err(cache.evicted);
        }
        Ok(cache.events.iter().filter(|e| e.rv > rv && (ns.is_empty() || e.namespace == ns)).cloned().collect())
    }

    /// The current resourceVersion as a number.
    pub(crate) fn rv(&self) -> u64 {
        self.rv
    }

    pub(crate) fn get(&self, kind: &Kind, ns: &str, name: &str) -> Option<&Value> {
        self.objects.get(&(kind.resource, ns.to_owned(), name.to_owned()))
    }

    /// Objects of a kind in a namespace (all namespaces when `ns` is empty), in name order.
    pub(crate) fn list(&self, kind: &Kind, ns: &str) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((r, n, _), _)| *r == kind.resource && (ns.is_empty() || n == ns))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Creates an object; `now` stamps `creationTimestamp`.
    pub(crate) fn create(
        &mut self,
        kind: &Kind,
        ns: &str,
        mut obj: Value,
        now: DateTime<Utc>,
    ) -> Result<Value, ApiError> {
        let name = match (
            obj.pointer("/metadata/name").and_then(Value::as_str),
            obj.pointer("/metadata/generateName").and_then(Value::as_str),
        ) {
            (Some(n), _) if !n.is_empty() => n.to_owned(),
            (_, Some(prefix)) => {
                self.uid += 1;
                format!("{prefix}{}", super::controller::safe_encode(&format!("{:05}", self.uid)))
            }
            _ => {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    "metadata.name: Required value: name or generateName is required",
                ));
            }
        };
        let key = (kind.resource, if kind.namespaced { ns.to_owned() } else { String::new() }, name.clone());
        if self.objects.contains_key(&key) {
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!("{}.{} {name:?} already exists", kind.resource, kind.group),
            ));
        }
        self.rv += 1;
        self.uid += 1;
        let meta = obj.as_object_mut().ok_or_else(|| ApiError::new(400, "BadRequest", "the body is not an object"))?;
        meta.insert("apiVersion".into(), json!(kind.api_version()));
        meta.insert("kind".into(), json!(kind.kind));
        let m = meta.entry("metadata").or_insert_with(|| json!({}));
        m["name"] = json!(name);
        if kind.namespaced {
            m["namespace"] = json!(ns);
        }
        m["uid"] = json!(format!("00000000-0000-4000-8000-{:012x}", self.uid));
        m["resourceVersion"] = json!(self.rv.to_string());
        m["creationTimestamp"] = json!(ts(now));
        if kind.generation {
            m["generation"] = json!(1);
        }
        if let Some(m) = m.as_object_mut() {
            m.remove("generateName");
        }
        self.objects.insert(key, obj.clone());
        self.record(kind.resource, ns, "ADDED", &obj);
        Ok(obj)
    }

    /// Replaces an object as a client write: a `resourceVersion` in `new` must be the
    /// stored one (else 409); identity fields are kept; the status is kept for kinds
    /// with a status subresource; generation counts spec changes; nothing changed means
    /// no new resourceVersion.
    pub(crate) fn update(&mut self, kind: &Kind, ns: &str, name: &str, mut new: Value) -> Result<Value, ApiError> {
        let key = (kind.resource, if kind.namespaced { ns.to_owned() } else { String::new() }, name.to_owned());
        let old = self.objects.get(&key).ok_or_else(|| ApiError::not_found(kind, name))?.clone();
        let old_rv = old.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or_default();
        match new.pointer("/metadata/resourceVersion").and_then(Value::as_str) {
            Some(rv) if !rv.is_empty() && rv != old_rv => return Err(ApiError::conflict(kind, name)),
            _ => {}
        }
        if new.pointer("/metadata/name").and_then(Value::as_str).is_some_and(|n| n != name) {
            return Err(ApiError::new(400, "BadRequest", "the name of the object does not match the name on the URL"));
        }
        if !new.is_object() {
            return Err(ApiError::new(400, "BadRequest", "the body is not an object"));
        }
        for field in ["name", "namespace", "uid", "creationTimestamp", "generation", "resourceVersion"] {
            match old["metadata"].get(field) {
                Some(v) => new["metadata"][field] = v.clone(),
                None => {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove(field);
                    }
                }
            }
        }
        new["apiVersion"] = json!(kind.api_version());
        new["kind"] = json!(kind.kind);
        if kind.has_status {
            match old.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        if kind.generation && spec_of(&new) != spec_of(&old) {
            let g = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
            new["metadata"]["generation"] = json!(g + 1);
        }
        Ok(self.store(key, old, new))
    }

    /// Writes as a controller (status included, no preconditions).
    pub(crate) fn controller_write(&mut self, kind: &Kind, obj: Value) -> Value {
        let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default().to_owned();
        let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned();
        let key = (kind.resource, ns, name);
        match self.objects.get(&key).cloned() {
            Some(old) => self.store(key, old, obj),
            None => obj,
        }
    }

    fn store(&mut self, key: Key, old: Value, mut new: Value) -> Value {
        if new == old {
            return old;
        }
        self.rv += 1;
        new["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.record(key.0, &key.1, "MODIFIED", &new);
        self.objects.insert(key, new.clone());
        new
    }

    /// Deletes an object (preconditions on resourceVersion and uid) and everything it
    /// owns, transitively.
    pub(crate) fn delete(
        &mut self,
        kind: &Kind,
        ns: &str,
        name: &str,
        preconditions: &Value,
    ) -> Result<Value, ApiError> {
        let key = (kind.resource, if kind.namespaced { ns.to_owned() } else { String::new() }, name.to_owned());
        let old = self.objects.get(&key).ok_or_else(|| ApiError::not_found(kind, name))?.clone();
        for (field, pre) in [("resourceVersion", "resourceVersion"), ("uid", "uid")] {
            if let Some(want) = preconditions.get(pre).and_then(Value::as_str)
                && old["metadata"].get(field).and_then(Value::as_str) != Some(want)
            {
                return Err(ApiError::new(
                    409,
                    "Conflict",
                    format!(
                        "Precondition failed: {field} in precondition: {want}, {field} in object meta: {}",
                        old["metadata"][field]
                    ),
                ));
            }
        }
        self.objects.remove(&key);
        self.rv += 1;
        self.record(kind.resource, ns, "DELETED", &old);
        if kind.resource == "namespaces" {
            self.objects.retain(|(_, n, _), _| n != name);
        }
        let mut owners = vec![old["metadata"]["uid"].as_str().unwrap_or_default().to_owned()];
        while let Some(uid) = owners.pop() {
            let owned: Vec<Key> = self
                .objects
                .iter()
                .filter(|(_, v)| {
                    v.pointer("/metadata/ownerReferences")
                        .and_then(Value::as_array)
                        .is_some_and(|refs| refs.iter().any(|r| r["uid"].as_str() == Some(uid.as_str())))
                })
                .map(|(k, _)| k.clone())
                .collect();
            for k in owned {
                if let Some(v) = self.objects.remove(&k) {
                    owners.push(v["metadata"]["uid"].as_str().unwrap_or_default().to_owned());
                    self.rv += 1;
                    self.record(k.0, &k.1, "DELETED", &v);
                }
            }
        }
        Ok(old)
    }

    /// Removes an object as a controller (no preconditions, no cascade).
    pub(crate) fn controller_remove(&mut self, kind: &Kind, ns: &str, name: &str) {
        if let Some(old) = self.objects.remove(&(kind.resource, ns.to_owned(), name.to_owned())) {
            self.rv += 1;
            self.record(kind.resource, ns, "DELETED", &old);
        }
    }
}

/// Whether `obj`'s labels satisfy a label selector (`a=b,c!=d,e,!f,g in (h,i),j notin (k)`).
pub(crate) fn matches_labels(obj: &Value, selector: &str) -> Result<bool, ApiError> {
    let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    for term in split_terms(selector) {
        let term = term.trim();
        if term.is_empty() {
            continue;
        }
        let ok = if let Some((k, set)) = term.split_once(" notin ") {
            !parse_set(set)?.contains(&get(k.trim()).unwrap_or("\0"))
        } else if let Some((k, set)) = term.split_once(" in ") {
            get(k.trim()).is_some_and(|v| parse_set(set).is_ok_and(|s| s.contains(&v)))
        } else if let Some((k, v)) = term.split_once("!=") {
            get(k.trim()) != Some(v.trim())
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            get(k.trim()) == Some(v.trim())
        } else if let Some(k) = term.strip_prefix('!') {
            get(k.trim()).is_none()
        } else {
            get(term).is_some()
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn split_terms(selector: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&selector[start..]);
    out
}

fn parse_set(set: &str) -> Result<Vec<&str>, ApiError> {
    let inner = set
        .trim()
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| ApiError::new(400, "BadRequest", format!("unable to parse requirement set {set:?}")))?;
    Ok(inner.split(',').map(str::trim).collect())
}

/// Whether `obj` satisfies a field selector (`metadata.name=x,involvedObject.name!=y`).
pub(crate) fn matches_fields(obj: &Value, selector: &str) -> bool {
    selector.split(',').filter(|t| !t.trim().is_empty()).all(|term| {
        let (path, want, equal) = match term.split_once("!=") {
            Some((p, v)) => (p, v, false),
            None => match term.split_once("==").or_else(|| term.split_once('=')) {
                Some((p, v)) => (p, v, true),
                None => return false,
            },
        };
        let pointer = format!("/{}", path.trim().replace('.', "/"));
        let value = obj.pointer(&pointer).map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()));
        (value.as_deref().unwrap_or("") == want.trim()) == equal
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        let pod = json!({"metadata": {"name": "p", "labels": {"app": "web", "track": "stable"}}});
        for (sel, want) in [
            ("app=web", true),
            ("app==web,track=stable", true),
            ("app=api", false),
            ("app!=api", true),
            ("track in (stable,canary)", true),
            ("track notin (stable)", false),
            ("app", true),
            ("!missing", true),
            ("", true),
        ] {
            assert_eq!(matches_labels(&pod, sel).unwrap(), want, "{sel}");
        }
        assert!(matches_fields(&pod, "metadata.name=p"));
        assert!(!matches_fields(&pod, "metadata.name!=p"));
    }

    #[test]
    fn resource_versions_generations_and_conflicts() {
        let mut store = Store::default();
        let k = find_kind("apps", "v1", "deployments").unwrap();
        let now = Utc::now();
        let d = store.create(k, "ns", json!({"metadata": {"name": "web"}, "spec": {"replicas": 1}}), now).unwrap();
        assert_eq!(d["metadata"]["generation"], 1);
        let rv1 = d["metadata"]["resourceVersion"].as_str().unwrap().to_owned();
        let mut changed = d.clone();
        changed["metadata"]["annotations"] = json!({"a": "b"});
        let d2 = store.update(k, "ns", "web", changed).unwrap();
        assert_eq!(d2["metadata"]["generation"], 1, "metadata changes keep the generation");
        assert_ne!(d2["metadata"]["resourceVersion"].as_str().unwrap(), rv1);
        let mut stale = d.clone();
        stale["spec"]["replicas"] = json!(2);
        assert_eq!(store.update(k, "ns", "web", stale).unwrap_err().code, 409);
        let mut fresh = d2.clone();
        fresh["spec"]["replicas"] = json!(2);
        assert_eq!(store.update(k, "ns", "web", fresh).unwrap()["metadata"]["generation"], 2);
        let same = store.get(k, "ns", "web").unwrap().clone();
        let rv = same["metadata"]["resourceVersion"].clone();
        assert_eq!(store.update(k, "ns", "web", same).unwrap()["metadata"]["resourceVersion"], rv, "no-op write");
    }
}
