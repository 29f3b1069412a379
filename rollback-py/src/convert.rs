//! Python objects ↔ the core's serde types, through `serde_json::Value`.
//!
//! Plans, specs, changes and policies arrive as dicts (or TOML); reports, checks
//! and history records leave as dicts. Durations may be given as `datetime.timedelta`
//! or humantime strings (`"15m"`); datetimes as `datetime` or RFC 3339 strings;
//! paths as `os.PathLike`.

use pyo3::IntoPyObjectExt;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Number, Value};

use crate::errors::invalid_input;

/// A JSON value that converts into the matching Python object (dict, list, str, …).
#[derive(Debug, Clone)]
pub struct Json(pub Value);

impl Json {
    /// Serializes a core value.
    pub fn of<T: Serialize>(value: &T) -> PyResult<Self> {
        serde_json::to_value(value)
            .map(Json)
            .map_err(|e| invalid_input(format!("cannot convert to a Python value: {e}")))
    }
}

impl<'py> IntoPyObject<'py> for Json {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(py, &self.0)
    }
}

/// A core value as a Python object.
pub fn to_py<'py, T: Serialize>(py: Python<'py>, value: &T) -> PyResult<Bound<'py, PyAny>> {
    Json::of(value)?.into_pyobject(py)
}

/// A Python object as a core value; a mismatch raises `InvalidInputError` naming it.
pub fn from_py<T: DeserializeOwned>(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<T> {
    let value = py_to_json(obj)?;
    serde_json::from_value(value).map_err(|e| invalid_input(format!("{what}: {e}")))
}

/// A JSON value as a Python object.
pub fn json_to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_bound_py_any(py)?
            } else if let Some(u) = n.as_u64() {
                u.into_bound_py_any(py)?
            } else {
                PyFloat::new(py, n.as_f64().unwrap_or(f64::NAN)).into_any()
            }
        }
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            let items = items.iter().map(|v| json_to_py(py, v)).collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, items)?.into_any()
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (k, v) in map {
                dict.set_item(k, json_to_py(py, v)?)?;
            }
            dict.into_any()
        }
    })
}

/// A Python object as a JSON value: None, bool, int, float, str, dict (str keys),
/// list/tuple, `timedelta` (→ humantime), `datetime` (→ RFC 3339), `os.PathLike`
/// (→ str), and objects with a `to_dict()` method (our `Plan`).
pub fn py_to_json(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(i) = obj.extract::<i64>() {
            return Ok(Value::Number(i.into()));
        }
        if let Ok(u) = obj.extract::<u64>() {
            return Ok(Value::Number(u.into()));
        }
        return Err(invalid_input(format!("integer {obj} does not fit in 64 bits")));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return Number::from_f64(f.value())
            .map(Value::Number)
            .ok_or_else(|| invalid_input(format!("{obj} is not a finite number")));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::String(s.to_cow()?.into_owned()));
    }
    if let Ok(dict) = obj.cast::<PyDict>() {
        let mut map = Map::new();
        for (k, v) in dict.iter() {
            let key = k
                .cast::<PyString>()
                .map_err(|_| invalid_input(format!("dict keys must be str, not {}", type_name(&k))))?
                .to_cow()?
                .into_owned();
            map.insert(key, py_to_json(&v)?);
        }
        return Ok(Value::Object(map));
    }
    if let Ok(list) = obj.cast::<PyList>() {
        return list.iter().map(|v| py_to_json(&v)).collect::<PyResult<Vec<_>>>().map(Value::Array);
    }
    if let Ok(tuple) = obj.cast::<PyTuple>() {
        return tuple.iter().map(|v| py_to_json(&v)).collect::<PyResult<Vec<_>>>().map(Value::Array);
    }
    let py = obj.py();
    let datetime = py.import("datetime")?;
    if obj.is_instance(&datetime.getattr("timedelta")?)? {
        let micros: f64 = obj.call_method0("total_seconds")?.extract::<f64>()? * 1e6;
        if micros < 0.0 {
            return Err(invalid_input(format!("negative duration {obj}")));
        }
        return Ok(Value::String(format!("{}us", micros.round() as u64)));
    }
    if obj.is_instance(&datetime.getattr("datetime")?)? {
        if obj.getattr("tzinfo")?.is_none() {
            return Err(invalid_input(format!("datetime {obj} has no time zone (use datetime.timezone.utc)")));
        }
        return Ok(Value::String(obj.call_method0("isoformat")?.extract::<String>()?));
    }
    if obj.hasattr("__fspath__")? {
        return Ok(Value::String(obj.call_method0("__fspath__")?.extract::<String>()?));
    }
    if obj.hasattr("to_dict")? {
        return py_to_json(&obj.call_method0("to_dict")?);
    }
    Err(invalid_input(format!("cannot convert a {} to a plan value", type_name(obj))))
}

/// The Python type name of `obj`, for messages.
pub fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "object".into())
}
