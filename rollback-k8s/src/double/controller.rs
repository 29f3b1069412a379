//! The deployment controller, the ReplicaSet controller and a kubelet, emulated after
//! the upstream rules (kubernetes/pkg/controller/deployment): ReplicaSets named
//! `<deployment>-<pod-template-hash>`, a ReplicaSet whose template matches is re-used
//! with revision max+1 and its old number appended to `revision-history`, rolling
//! updates bounded by maxSurge/maxUnavailable, `observedGeneration`, replica counts and
//! the `Available`/`Progressing` conditions, `ProgressDeadlineExceeded` when no progress
//! is made for `progressDeadlineSeconds`. Time is the double's virtual clock.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::State;
use super::store::{Kind, find_kind, ts};
use crate::rollout::{ANNOTATIONS_TO_SKIP, POD_TEMPLATE_HASH, REVISION, REVISION_HISTORY, canonical};

fn kind(resource: &str) -> &'static Kind {
    let group = if matches!(resource, "deployments" | "replicasets") { "apps" } else { "" };
    find_kind(group, "v1", resource).expect("known kind")
}

/// `rand.SafeEncodeString`'s alphabet: no vowels, no look-alikes.
pub(crate) fn safe_encode(s: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes().map(|b| ALPHABET[b as usize % ALPHABET.len()] as char).collect()
}

fn fnv32a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

fn strip_hash(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
        labels.remove(POD_TEMPLATE_HASH);
        if labels.is_empty()
            && let Some(meta) = t.pointer_mut("/metadata").and_then(Value::as_object_mut)
        {
            meta.remove("labels");
        }
    }
    t
}

/// The pod-template-hash of a template (FNV-32a of its content, safe-encoded).
pub(crate) fn pod_template_hash(template: &Value) -> String {
    safe_encode(&fnv32a(canonical(&strip_hash(template)).as_bytes()).to_string())
}

fn i(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

/// Objects grouped by the uid of their controller (one pass instead of one list per owner).
fn by_owner(items: Vec<Value>) -> std::collections::HashMap<String, Vec<Value>> {
    let mut out: std::collections::HashMap<String, Vec<Value>> = std::collections::HashMap::new();
    for o in items {
        let owner = o
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .and_then(|r| r.iter().find(|r| r["controller"] == true))
            .and_then(|r| r["uid"].as_str())
            .map(str::to_owned);
        if let Some(owner) = owner {
            out.entry(owner).or_default().push(o);
        }
    }
    out
}

fn revision(v: &Value) -> i64 {
    s(v, &format!("/metadata/annotations/{}", REVISION.replace('/', "~1"))).parse().unwrap_or(0)
}

fn owner_ref(owner: &Value, kind: &str) -> Value {
    json!([{"apiVersion": owner["apiVersion"], "kind": kind, "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}])
}

/// `intstr.GetScaledValueFromIntOrPercent`.
fn scaled(value: Option<&Value>, total: i64, round_up: bool, default: &str) -> i64 {
    let value = value.cloned().unwrap_or_else(|| json!(default));
    if let Some(n) = value.as_i64() {
        return n;
    }
    let pct: i64 = value.as_str().and_then(|s| s.strip_suffix('%')).and_then(|p| p.parse().ok()).unwrap_or(25);
    if round_up { (pct * total + 99) / 100 } else { pct * total / 100 }
}

/// `(maxSurge, maxUnavailable)` as the controller resolves them.
fn fenceposts(d: &Value, desired: i64) -> (i64, i64) {
    let ru = d.pointer("/spec/strategy/rollingUpdate");
    let surge = scaled(ru.and_then(|r| r.get("maxSurge")), desired, true, "25%");
    let unavailable = scaled(ru.and_then(|r| r.get("maxUnavailable")), desired, false, "25%");
    if surge == 0 && unavailable == 0 { (0, 1) } else { (surge, unavailable.min(desired)) }
}

impl State {
    fn event(&mut self, obj: &Value, reason: &str, message: String, warning: bool) {
        self.event_seq += 1;
        let now = ts(self.now);
        let event = json!({
            "metadata": {"name": format!("{}.{:x}", s(obj, "/metadata/name"), self.event_seq)},
            "involvedObject": {"kind": obj["kind"], "name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"],
                               "uid": obj["metadata"]["uid"], "apiVersion": obj["apiVersion"]},
            "reason": reason, "message": message, "type": if warning { "Warning" } else { "Normal" },
            "source": {"component": "deployment-controller"}, "count": 1, "firstTimestamp": now, "lastTimestamp": now,
        });
        let ns = s(obj, "/metadata/namespace").to_owned();
        let _ = self.store.create(kind("events"), &ns, event, self.now);
    }

    fn scale_rs(&mut self, d: &Value, rs: &mut Value, to: i64) {
        let from = i(rs, "/spec/replicas");
        if from == to {
            return;
        }
        rs["spec"]["replicas"] = json!(to);
        *rs = self.store.controller_write(kind("replicasets"), rs.clone());
        let verb = if to > from { "up" } else { "down" };
        self.event(
            d,
            "ScalingReplicaSet",
            format!("Scaled {verb} replica set {} from {from} to {to}", s(rs, "/metadata/name")),
            false,
        );
    }

    /// One pass of every controller, at the current virtual time.
    pub(crate) fn reconcile(&mut self) {
        let mut rses = by_owner(self.store.list(kind("replicasets"), ""));
        for d in self.store.list(kind("deployments"), "") {
            let owned = rses.remove(s(&d, "/metadata/uid")).unwrap_or_default();
            self.sync_deployment(d, owned);
        }
        self.sync_replica_sets();
        self.kubelet();
        let mut rses = by_owner(self.store.list(kind("replicasets"), ""));
        for d in self.store.list(kind("deployments"), "") {
            let owned = rses.remove(s(&d, "/metadata/uid")).unwrap_or_default();
            self.deployment_status(&d, owned);
        }
    }

    fn replica_sets_of(d: &Value, owned: Vec<Value>) -> (Option<Value>, Vec<Value>) {
        let wanted = canonical(&strip_hash(&d["spec"]["template"]));
        let mut new = None;
        let mut old = Vec::new();
        for rs in &owned {
            if new.is_none() && canonical(&strip_hash(&rs["spec"]["template"])) == wanted {
                new = Some(rs.clone());
            } else {
                old.push(rs.clone());
            }
        }
        old.sort_by_key(revision);
        (new, old)
    }

    fn sync_deployment(&mut self, mut d: Value, owned: Vec<Value>) {
        let desired = d.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
        let (new, mut old) = Self::replica_sets_of(&d, owned);
        let (surge, unavailable) = fenceposts(&d, desired);
        if d.pointer("/spec/paused").and_then(Value::as_bool).unwrap_or(false) {
            // A paused Deployment is scaled, never rolled out.
            if let Some(mut rs) = new
                && old.iter().all(|o| i(o, "/spec/replicas") == 0)
            {
                self.scale_rs(&d, &mut rs, desired);
            }
            return;
        }
        let max_old = old.iter().map(revision).max().unwrap_or(0);
        let mut rs = match new {
            Some(mut rs) => {
                let mut updated = rs.clone();
                copy_annotations(&d, &mut updated);
                let current = revision(&rs);
                if current < max_old + 1 {
                    let history_key = REVISION_HISTORY;
                    let history =
                        updated["metadata"]["annotations"].get(history_key).and_then(Value::as_str).unwrap_or("");
                    let history = if current == 0 {
                        history.to_owned()
                    } else if history.is_empty() {
                        current.to_string()
                    } else {
                        format!("{history},{current}")
                    };
                    if !history.is_empty() {
                        updated["metadata"]["annotations"][history_key] = json!(history);
                    }
                    updated["metadata"]["annotations"][REVISION] = json!((max_old + 1).to_string());
                }
                updated["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] =
                    json!(desired.to_string());
                updated["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"] =
                    json!((desired + surge).to_string());
                if updated != rs {
                    rs = self.store.controller_write(kind("replicasets"), updated);
                }
                rs
            }
            None => {
                let hash = pod_template_hash(&d["spec"]["template"]);
                let mut template = d["spec"]["template"].clone();
                template["metadata"]["labels"][POD_TEMPLATE_HASH] = json!(hash);
                let mut selector = d["spec"]["selector"].clone();
                selector["matchLabels"][POD_TEMPLATE_HASH] = json!(hash);
                let mut rs = json!({
                    "metadata": {"name": format!("{}-{hash}", s(&d, "/metadata/name")), "labels": template["metadata"]["labels"],
                                 "annotations": {}, "ownerReferences": owner_ref(&d, "Deployment")},
                    "spec": {"replicas": 0, "selector": selector, "template": template,
                             "minReadySeconds": d["spec"].get("minReadySeconds").cloned().unwrap_or(json!(0))},
                });
                copy_annotations(&d, &mut rs);
                rs["metadata"]["annotations"][REVISION] = json!((max_old + 1).to_string());
                rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] = json!(desired.to_string());
                rs["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"] =
                    json!((desired + surge).to_string());
                let ns = s(&d, "/metadata/namespace").to_owned();
                match self.store.create(kind("replicasets"), &ns, rs, self.now) {
                    Ok(rs) => {
                        let name = s(&rs, "/metadata/name").to_owned();
                        self.set_progressing(
                            &mut d,
                            "True",
                            "NewReplicaSetCreated",
                            format!("Created new replica set {name:?}"),
                        );
                        rs
                    }
                    Err(_) => return,
                }
            }
        };
        let rev = revision(&rs).to_string();
        if d["metadata"]["annotations"].get(REVISION).and_then(Value::as_str) != Some(rev.as_str()) {
            d["metadata"]["annotations"][REVISION] = json!(rev);
            d = self.store.controller_write(kind("deployments"), d);
        }
        if d.pointer("/spec/strategy/type").and_then(Value::as_str) == Some("Recreate") {
            for o in old.iter_mut() {
                self.scale_rs(&d, o, 0);
            }
            if old.iter().all(|o| i(o, "/status/replicas") == 0) {
                self.scale_rs(&d, &mut rs, desired);
            }
        } else {
            self.rolling(&d, &mut rs, &mut old, desired, surge, unavailable);
        }
        self.cleanup(&d, &old);
    }

    /// `rolloutRolling`: scale the new ReplicaSet up within maxSurge, then old ones down
    /// within maxUnavailable (unhealthy replicas first).
    fn rolling(&mut self, d: &Value, new: &mut Value, old: &mut [Value], desired: i64, surge: i64, unavailable: i64) {
        let total = |new: &Value, old: &[Value]| {
            i(new, "/spec/replicas") + old.iter().map(|o| i(o, "/spec/replicas")).sum::<i64>()
        };
        let new_replicas = i(new, "/spec/replicas");
        if new_replicas > desired {
            self.scale_rs(d, new, desired);
        } else if new_replicas < desired {
            let room = desired + surge - total(new, old);
            if room > 0 {
                self.scale_rs(d, new, new_replicas + room.min(desired - new_replicas));
            }
        }
        if old.iter().all(|o| i(o, "/spec/replicas") == 0) {
            return;
        }
        let min_available = desired - unavailable;
        let new_unavailable = i(new, "/spec/replicas") - i(new, "/status/availableReplicas");
        let mut max_scaled_down = total(new, old) - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return;
        }
        // cleanupUnhealthyReplicas, oldest first.
        for o in old.iter_mut() {
            let unhealthy = i(o, "/spec/replicas") - i(o, "/status/availableReplicas");
            let n = unhealthy.min(max_scaled_down).max(0);
            if n > 0 {
                let to = i(o, "/spec/replicas") - n;
                self.scale_rs(d, o, to);
                max_scaled_down -= n;
            }
        }
        // scaleDownOldReplicaSetsForRollingUpdate.
        let available: i64 =
            i(new, "/status/availableReplicas") + old.iter().map(|o| i(o, "/status/availableReplicas")).sum::<i64>();
        let mut budget = (available - min_available).max(0);
        for o in old.iter_mut() {
            if budget == 0 {
                break;
            }
            let n = i(o, "/spec/replicas").min(budget);
            if n > 0 {
                let to = i(o, "/spec/replicas") - n;
                self.scale_rs(d, o, to);
                budget -= n;
            }
        }
    }

    /// Old ReplicaSets beyond `revisionHistoryLimit` (with no replicas) are deleted, oldest first.
    fn cleanup(&mut self, d: &Value, old: &[Value]) {
        let limit = d.pointer("/spec/revisionHistoryLimit").and_then(Value::as_i64).unwrap_or(10).max(0) as usize;
        let idle: Vec<&Value> =
            old.iter().filter(|o| i(o, "/spec/replicas") == 0 && i(o, "/status/replicas") == 0).collect();
        if idle.len() > limit {
            for o in &idle[..idle.len() - limit] {
                let ns = s(o, "/metadata/namespace").to_owned();
                let _ = self.store.delete(kind("replicasets"), &ns, s(o, "/metadata/name"), &Value::Null);
            }
        }
    }

    /// The ReplicaSet controller: pods up to `spec.replicas` (deleting not-ready and newest
    /// first), then each ReplicaSet's status.
    fn sync_replica_sets(&mut self) {
        let mut pods_by_rs = by_owner(self.store.list(kind("pods"), ""));
        for rs in self.store.list(kind("replicasets"), "") {
            let ns = s(&rs, "/metadata/namespace").to_owned();
            let mut pods: Vec<Value> = pods_by_rs.remove(s(&rs, "/metadata/uid")).unwrap_or_default();
            let want = i(&rs, "/spec/replicas").max(0) as usize;
            while pods.len() < want {
                self.pod_seq += 1;
                let name = format!("{}-{}", s(&rs, "/metadata/name"), safe_encode(&format!("{:05}", self.pod_seq)));
                let pod = json!({
                    "metadata": {"name": name, "labels": rs["spec"]["template"]["metadata"]["labels"],
                                 "annotations": rs["spec"]["template"]["metadata"].get("annotations").cloned().unwrap_or(json!({})),
                                 "ownerReferences": owner_ref(&rs, "ReplicaSet")},
                    "spec": rs["spec"]["template"]["spec"],
                    "status": {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}]},
                });
                match self.store.create(kind("pods"), &ns, pod, self.now) {
                    Ok(p) => pods.push(p),
                    Err(_) => break,
                }
            }
            if pods.len() > want {
                pods.sort_by_key(|p| (pod_ready(p), std::cmp::Reverse(s(p, "/metadata/creationTimestamp").to_owned())));
                for p in pods.drain(..pods.len() - want) {
                    self.store.controller_remove(kind("pods"), &ns, s(&p, "/metadata/name"));
                    self.logs.remove(&(ns.clone(), s(&p, "/metadata/name").to_owned()));
                }
            }
        }
    }

    /// The kubelet: a pod becomes ready `ready_after` after creation unless its image is
    /// one that never becomes ready (then it sits in `ImagePullBackOff`).
    fn kubelet(&mut self) {
        let now = self.now;
        for mut pod in self.store.list(kind("pods"), "") {
            let ns = s(&pod, "/metadata/namespace").to_owned();
            let name = s(&pod, "/metadata/name").to_owned();
            let images: Vec<String> = pod
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map(|cs| cs.iter().map(|c| s(c, "/image").to_owned()).collect())
                .unwrap_or_default();
            let broken = images.iter().find(|image| (self.never_ready)(image)).cloned();
            let created = DateTime::parse_from_rfc3339(s(&pod, "/metadata/creationTimestamp"))
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or(now);
            let crashing = self.crashing.contains(&(ns.clone(), name.clone()));
            let log = self.logs.entry((ns, name.clone())).or_default();
            let status = if crashing {
                if log.last().is_none_or(|l| !l.contains("panic")) {
                    log.push(format!("{} panic: the process exited with status 2", ts(now)));
                }
                json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
                       "containerStatuses": images.iter().map(|im| json!({"name": "c", "image": im, "ready": false,
                           "restartCount": 5, "state": {"waiting": {"reason": "CrashLoopBackOff"}}})).collect::<Vec<_>>()})
            } else if let Some(image) = broken {
                if log.is_empty() {
                    log.push(format!("{} pulling image {image:?}", ts(now)));
                    log.push(format!("{} Back-off pulling image {image:?}", ts(now)));
                }
                json!({"phase": "Pending", "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
                       "containerStatuses": images.iter().map(|im| json!({"name": "c", "image": im, "ready": false,
                           "state": {"waiting": {"reason": "ImagePullBackOff"}}})).collect::<Vec<_>>()})
            } else if now - created >= self.ready_after {
                if log.len() < 2 {
                    log.push(format!("{} started container with image {}", ts(now), images.join(",")));
                    log.push(format!("{} ready", ts(now)));
                }
                json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": ts(now)}],
                       "containerStatuses": images.iter().map(|im| json!({"name": "c", "image": im, "ready": true,
                           "state": {"running": {"startedAt": ts(created)}}})).collect::<Vec<_>>()})
            } else {
                if log.is_empty() {
                    log.push(format!("{} starting container with image {}", ts(now), images.join(",")));
                }
                pod["status"].clone()
            };
            if pod["status"] != status {
                pod["status"] = status;
                self.store.controller_write(kind("pods"), pod);
            }
        }
        let mut pods_by_rs = by_owner(self.store.list(kind("pods"), ""));
        for rs in self.store.list(kind("replicasets"), "") {
            let pods: Vec<Value> = pods_by_rs.remove(s(&rs, "/metadata/uid")).unwrap_or_default();
            let ready = pods.iter().filter(|p| pod_ready(p)).count();
            let mut updated = rs.clone();
            updated["status"] = json!({"replicas": pods.len(), "fullyLabeledReplicas": pods.len(), "readyReplicas": ready,
                                       "availableReplicas": ready, "observedGeneration": rs["metadata"]["generation"]});
            if updated != rs {
                self.store.controller_write(kind("replicasets"), updated);
            }
        }
    }

    fn set_progressing(&mut self, d: &mut Value, status: &str, reason: &str, message: String) {
        let now = ts(self.now);
        let conditions = d["status"]["conditions"].as_array().cloned().unwrap_or_default();
        let old = conditions.iter().find(|c| c["type"] == "Progressing").cloned();
        let transition = match &old {
            Some(c) if c["status"] == status => c["lastTransitionTime"].clone(),
            _ => json!(now),
        };
        let mut rest: Vec<Value> = conditions.into_iter().filter(|c| c["type"] != "Progressing").collect();
        rest.push(json!({"type": "Progressing", "status": status, "reason": reason, "message": message,
                         "lastUpdateTime": now, "lastTransitionTime": transition}));
        d["status"]["conditions"] = json!(rest);
    }

    /// `syncRolloutStatus`: counts, `observedGeneration`, `Available` and `Progressing`.
    fn deployment_status(&mut self, d: &Value, owned: Vec<Value>) {
        let Some(mut d) =
            self.store.get(kind("deployments"), s(d, "/metadata/namespace"), s(d, "/metadata/name")).cloned()
        else {
            return;
        };
        let desired = d.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
        let (new, old) = Self::replica_sets_of(&d, owned);
        let all: Vec<&Value> = new.iter().chain(old.iter()).collect();
        let sum = |p: &str| all.iter().map(|rs| i(rs, p)).sum::<i64>();
        let before = d.get("status").cloned().unwrap_or(json!({}));
        let updated = new.as_ref().map(|rs| i(rs, "/status/replicas")).unwrap_or(0);
        let (replicas, ready, available) =
            (sum("/status/replicas"), sum("/status/readyReplicas"), sum("/status/availableReplicas"));
        let (_, max_unavailable) = fenceposts(&d, desired);
        let mut status = before.clone();
        status["observedGeneration"] = d["metadata"]["generation"].clone();
        status["replicas"] = json!(replicas);
        status["updatedReplicas"] = json!(updated);
        status["readyReplicas"] = json!(ready);
        status["availableReplicas"] = json!(available);
        status["unavailableReplicas"] = json!((desired - available).max(0));
        d["status"] = status;
        let now = ts(self.now);
        let available_cond = if available >= desired - max_unavailable {
            json!({"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability."})
        } else {
            json!({"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable", "message": "Deployment does not have minimum availability."})
        };
        let mut conditions: Vec<Value> = d["status"]["conditions"].as_array().cloned().unwrap_or_default();
        match conditions.iter_mut().find(|c| c["type"] == "Available") {
            Some(c) if c["status"] == available_cond["status"] => {}
            Some(c) => {
                *c = available_cond;
                c["lastUpdateTime"] = json!(now);
                c["lastTransitionTime"] = json!(now);
            }
            None => {
                let mut c = available_cond;
                c["lastUpdateTime"] = json!(now);
                c["lastTransitionTime"] = json!(now);
                conditions.push(c);
            }
        }
        d["status"]["conditions"] = json!(conditions);
        let new_name = new.as_ref().map(|rs| s(rs, "/metadata/name").to_owned()).unwrap_or_default();
        let progressing = conditions.iter().find(|c| c["type"] == "Progressing").cloned();
        let paused = d.pointer("/spec/paused").and_then(Value::as_bool).unwrap_or(false);
        let complete = new.is_some() && updated == desired && replicas == desired && available == desired;
        let progressed = updated > i(&before, "/updatedReplicas")
            || replicas < i(&before, "/replicas")
            || ready > i(&before, "/readyReplicas")
            || available > i(&before, "/availableReplicas");
        let reason = progressing.as_ref().map(|c| s(c, "/reason").to_owned()).unwrap_or_default();
        if paused {
            if reason != "DeploymentPaused" {
                self.set_progressing(&mut d, "Unknown", "DeploymentPaused", "Deployment is paused".into());
            }
        } else if complete {
            if reason != "NewReplicaSetAvailable" {
                self.set_progressing(
                    &mut d,
                    "True",
                    "NewReplicaSetAvailable",
                    format!("ReplicaSet {new_name:?} has successfully progressed."),
                );
            }
        } else if progressed || progressing.is_none() || reason == "DeploymentPaused" {
            self.set_progressing(
                &mut d,
                "True",
                "ReplicaSetUpdated",
                format!("ReplicaSet {new_name:?} is progressing."),
            );
        } else if reason != "ProgressDeadlineExceeded" && reason != "NewReplicaSetAvailable" {
            let deadline = d.pointer("/spec/progressDeadlineSeconds").and_then(Value::as_i64).unwrap_or(600);
            let since = progressing
                .as_ref()
                .and_then(|c| DateTime::parse_from_rfc3339(s(c, "/lastUpdateTime")).ok())
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or(self.now);
            if since + chrono::TimeDelta::seconds(deadline) < self.now {
                self.set_progressing(
                    &mut d,
                    "False",
                    "ProgressDeadlineExceeded",
                    format!("ReplicaSet {new_name:?} has timed out progressing."),
                );
                let msg = format!("Deployment {:?} has timed out progressing.", s(&d, "/metadata/name"));
                self.event(&d, "ProgressDeadlineExceeded", msg, true);
            }
        } else if reason == "NewReplicaSetAvailable" {
            // A new rollout started after completion.
            self.set_progressing(
                &mut d,
                "True",
                "ReplicaSetUpdated",
                format!("ReplicaSet {new_name:?} is progressing."),
            );
        }
        self.store.controller_write(kind("deployments"), d);
    }
}

fn pod_ready(p: &Value) -> bool {
    p.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// `copyDeploymentAnnotationsToReplicaSet`: every annotation but the skipped ones.
fn copy_annotations(d: &Value, rs: &mut Value) {
    if !rs["metadata"]["annotations"].is_object() {
        rs["metadata"]["annotations"] = json!({});
    }
    for (k, v) in d.pointer("/metadata/annotations").and_then(Value::as_object).into_iter().flatten() {
        if !ANNOTATIONS_TO_SKIP.contains(&k.as_str()) {
            rs["metadata"]["annotations"][k] = v.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_ignore_the_hash_label_and_look_like_upstream() {
        let a =
            json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}});
        let mut b = a.clone();
        b["metadata"]["labels"][POD_TEMPLATE_HASH] = json!("zzz");
        assert_eq!(pod_template_hash(&a), pod_template_hash(&b));
        assert!(pod_template_hash(&a).chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    }

    #[test]
    fn fenceposts_like_upstream() {
        let d = json!({"spec": {}});
        assert_eq!(fenceposts(&d, 3), (1, 0));
        assert_eq!(fenceposts(&d, 4), (1, 1));
        let d = json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}}});
        assert_eq!(fenceposts(&d, 3), (0, 1));
    }
}
