//! `rollback.Secrets`: the secrets a spec declares, handed to a Python target or
//! verifier class as `cls(name, config, secrets=…)`. A read-only mapping whose
//! `repr`/`str` show the names only, so a log line or a traceback never prints a value.

use std::collections::BTreeMap;

use pyo3::exceptions::PyKeyError;
use pyo3::prelude::*;
use pyo3::types::PyList;
use rollback_core::{Result, Secret, Spec};

/// The resolved secrets of one spec.
#[pyclass(name = "Secrets", module = "rollback", frozen, mapping)]
pub struct PySecrets {
    values: BTreeMap<String, Secret>,
}

impl PySecrets {
    /// Resolves every secret the spec declares (a missing variable or file is an error
    /// naming it, never showing a value).
    pub fn of(spec: &Spec) -> Result<Self> {
        let values = spec.secrets.keys().map(|name| Ok((name.clone(), spec.secret(name)?))).collect::<Result<_>>()?;
        Ok(PySecrets { values })
    }
}

#[pymethods]
impl PySecrets {
    fn __getitem__(&self, name: &str) -> PyResult<String> {
        self.values
            .get(name)
            .map(|s| s.expose().to_owned())
            .ok_or_else(|| PyKeyError::new_err(format!("no secret named {name:?}")))
    }

    /// The value of `name`, or `default`.
    #[pyo3(signature = (name, default=None))]
    fn get(&self, name: &str, default: Option<String>) -> Option<String> {
        self.values.get(name).map(|s| s.expose().to_owned()).or(default)
    }

    fn __contains__(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    fn __len__(&self) -> usize {
        self.values.len()
    }

    /// The secrets' names.
    fn keys(&self) -> Vec<String> {
        self.values.keys().cloned().collect()
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        PyList::new(py, self.values.keys())?.call_method0("__iter__")
    }

    fn __repr__(&self) -> String {
        format!("Secrets({:?})", self.values.keys().collect::<Vec<_>>())
    }
}
