//! Snapshots written in Python: an object with `name`, `capture(key)` returning
//! `{"artifacts": {NAME: bytes | str}, "description": str, "metadata": {...}}`, and
//! optionally `restore(snapshot, artifacts)` (the journaled snapshot as a dict, the
//! artifacts read back as `{NAME: bytes}`) and `restored(snapshot, key)` (`True` when
//! the restore keyed `key` is visibly finished, `None` when it cannot tell). The
//! engine writes the artifacts into its store (a Python snapshot never holds the
//! store), so they are kept with the run like every other snapshot's.

use async_trait::async_trait;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};
use rollback_core::{ArtifactStore, Error, IdempotencyKey, Registry, Result, Snapshot, SnapshotRef, Spec};
use serde_json::{Value, json};
use std::sync::Arc;

use crate::components::{call, callable_attr, construct, finish, required_name};
use crate::convert::{json_to_py, py_to_json, type_name};
use crate::errors::invalid_input;
use crate::secrets::PySecrets;

/// A snapshot implemented by a Python object (see the module docs).
pub struct PySnapshot {
    name: String,
    obj: Arc<Py<PyAny>>,
}

impl PySnapshot {
    /// Checks the object's shape.
    pub fn from_object(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        let name = required_name(obj, "snapshot")?;
        if !callable_attr(obj, "capture")? {
            return Err(invalid_input(format!("Python snapshot {name:?} has no method capture(key)")));
        }
        Ok(PySnapshot { name, obj: Arc::new(obj.clone().unbind()) })
    }
}

/// What `capture` returned.
struct Captured {
    artifacts: Vec<(String, Vec<u8>)>,
    description: String,
    metadata: Value,
}

fn captured(name: &str, value: &Bound<'_, PyAny>) -> PyResult<Captured> {
    let shape = || {
        invalid_input(format!(
            "Python snapshot {name:?}: capture() must return {{\"artifacts\": {{name: bytes | str}}, \"description\": \
             str, \"metadata\": dict}}, not {}",
            type_name(value)
        ))
    };
    let dict = value.cast::<PyDict>().map_err(|_| shape())?;
    let mut artifacts = Vec::new();
    if let Some(items) = dict.get_item("artifacts")? {
        for (artifact, data) in items.cast::<PyDict>().map_err(|_| shape())?.iter() {
            let artifact: String = artifact.extract().map_err(|_| shape())?;
            if artifact.is_empty() || artifact.contains('/') || artifact.contains("..") || artifact.len() > 128 {
                return Err(invalid_input(format!(
                    "Python snapshot {name:?}: artifact name {artifact:?} must be 1-128 characters without `/` or `..`"
                )));
            }
            let bytes = if let Ok(bytes) = data.cast::<PyBytes>() {
                bytes.as_bytes().to_vec()
            } else if data.is_instance_of::<PyString>() {
                data.extract::<String>()?.into_bytes()
            } else {
                return Err(shape());
            };
            artifacts.push((artifact, bytes));
        }
    }
    let description = match dict.get_item("description")? {
        Some(d) if !d.is_none() => d.extract::<String>().map_err(|_| shape())?,
        _ => format!("{} artifact(s) from {name}", artifacts.len()),
    };
    let metadata = match dict.get_item("metadata")? {
        Some(m) if !m.is_none() => py_to_json(&m)?,
        _ => Value::Null,
    };
    Ok(Captured { artifacts, description, metadata })
}

/// The artifact names of a captured snapshot, in the order of its store keys.
fn names(snapshot: &SnapshotRef) -> Vec<String> {
    snapshot.metadata["artifact_names"]
        .as_array()
        .map(|names| names.iter().filter_map(|n| n.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[async_trait]
impl Snapshot for PySnapshot {
    fn name(&self) -> &str {
        &self.name
    }

    async fn capture(&self, store: &dyn ArtifactStore, key: &IdempotencyKey) -> Result<SnapshotRef> {
        let (name, key_text) = (self.name.clone(), key.as_str().to_owned());
        let captured = call(&self.obj, "capture", move |obj| {
            let value = finish(obj.call_method1("capture", (key_text,))?)?;
            captured(&name, &value)
        })
        .await?;
        let prefix = key.as_str().replace('/', "_");
        let mut artifacts = Vec::with_capacity(captured.artifacts.len());
        let mut names = Vec::with_capacity(captured.artifacts.len());
        for (artifact, bytes) in captured.artifacts {
            let stored = format!("{prefix}/{}/{artifact}", self.name);
            store.put(&stored, bytes).await?;
            artifacts.push(stored);
            names.push(artifact);
        }
        Ok(SnapshotRef {
            snapshot: self.name.clone(),
            artifacts,
            taken_at: chrono::Utc::now(),
            description: captured.description,
            metadata: json!({ "artifact_names": names, "python": captured.metadata }),
        })
    }

    async fn restore(&self, snapshot: &SnapshotRef, store: &dyn ArtifactStore) -> Result<()> {
        let mut artifacts = Vec::with_capacity(snapshot.artifacts.len());
        for (artifact, name) in snapshot.artifacts.iter().zip(names(snapshot)) {
            artifacts.push((name, store.get(artifact).await?));
        }
        let reference = snapshot_dict(snapshot)?;
        let name = self.name.clone();
        call(&self.obj, "restore", move |obj| {
            let py = obj.py();
            if !callable_attr(obj, "restore")? {
                return Err(invalid_input(format!(
                    "Python snapshot {name:?} has no method restore(snapshot, artifacts)"
                )));
            }
            let files = PyDict::new(py);
            for (name, bytes) in &artifacts {
                files.set_item(name, PyBytes::new(py, bytes))?;
            }
            finish(obj.call_method1("restore", (json_to_py(py, &reference)?, files))?).map(drop)
        })
        .await
    }

    async fn restored(&self, snapshot: &SnapshotRef, key: &IdempotencyKey) -> Result<Option<bool>> {
        let reference = snapshot_dict(snapshot)?;
        let key = key.as_str().to_owned();
        call(&self.obj, "restored", move |obj| {
            if !callable_attr(obj, "restored")? {
                return Ok(None);
            }
            let value = finish(obj.call_method1("restored", (json_to_py(obj.py(), &reference)?, key))?)?;
            if value.is_none() { Ok(None) } else { value.extract::<bool>().map(Some) }
        })
        .await
    }
}

/// The journaled snapshot as Python sees it: its fields, with capture's own
/// metadata back under `metadata`.
fn snapshot_dict(snapshot: &SnapshotRef) -> Result<Value> {
    let mut value = serde_json::to_value(snapshot).map_err(|e| Error::internal(e.to_string()))?;
    value["metadata"] = snapshot.metadata["python"].clone();
    Ok(value)
}

/// Registers a Python class as a snapshot kind, built as `cls(name, config)` (with
/// `secrets=` when its spec declares secrets).
pub fn register_snapshot_class(registry: &mut Registry, kind: &str, cls: &Bound<'_, PyAny>) {
    let cls = Arc::new(cls.clone().unbind());
    registry.register_snapshot_kind(kind, move |spec: Spec| {
        let cls = cls.clone();
        async move {
            let secrets = PySecrets::of(&spec)?;
            let snapshot =
                call(&cls, "build snapshot", move |cls| PySnapshot::from_object(&construct(cls, &spec, secrets)?))
                    .await?;
            Ok(Arc::new(snapshot) as Arc<dyn Snapshot>)
        }
    });
}
