//! JSON between Python and Rust: Python objects are encoded to JSON text in Rust (once, without
//! an intermediate tree); JSON text is decoded with Python's own `json.loads`.

use crate::bindings::errors::config_error;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use std::io::Write;

/// Deepest nesting accepted before assuming a reference cycle.
const MAX_DEPTH: usize = 256;

static JSON_LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Decodes JSON text into Python objects.
pub(crate) fn loads<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    JSON_LOADS
        .get_or_try_init(py, || {
            py.import("json")?.getattr("loads").map(Bound::unbind)
        })?
        .bind(py)
        .call1((text,))
}

/// Encodes `value` as compact JSON text; `what` names the value in error messages.
pub(crate) fn dumps(value: &Bound<'_, PyAny>, what: &str) -> PyResult<String> {
    let mut out = Vec::with_capacity(128);
    encode_into(&mut out, value, what)?;
    Ok(String::from_utf8(out).expect("the encoder writes UTF-8"))
}

/// Appends the JSON encoding of `value` to `out`.
pub(crate) fn encode_into(out: &mut Vec<u8>, value: &Bound<'_, PyAny>, what: &str) -> PyResult<()> {
    let mut path = Vec::new();
    write_value(out, value, 0, &mut path).map_err(|failure| {
        let location: String = path.iter().rev().map(String::as_str).collect();
        config_error(format!(
            "{what}{location} is not JSON-serialisable: {failure}"
        ))
    })
}

fn write_value(
    out: &mut Vec<u8>,
    value: &Bound<'_, PyAny>,
    depth: usize,
    path: &mut Vec<String>,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "nested deeper than {MAX_DEPTH} levels (a reference cycle?)"
        ));
    }
    if value.is_none() {
        out.extend_from_slice(b"null");
    } else if let Ok(s) = value.cast::<PyString>() {
        write_str(out, s.to_str().map_err(|e| e.to_string())?);
    } else if let Ok(b) = value.cast::<PyBool>() {
        out.extend_from_slice(if b.is_true() { b"true" } else { b"false" });
    } else if let Ok(i) = value.cast::<PyInt>() {
        match i.extract::<i64>() {
            Ok(n) => write!(out, "{n}").expect("write to Vec"),
            Err(_) => out.extend_from_slice(
                i.str()
                    .map_err(|e| e.to_string())?
                    .to_str()
                    .map_err(|e| e.to_string())?
                    .as_bytes(),
            ),
        }
    } else if let Ok(f) = value.cast::<PyFloat>() {
        let x = f.value();
        if !x.is_finite() {
            return Err(format!("float {x} has no JSON form"));
        }
        serde_json::to_writer(&mut *out, &x).expect("write to Vec");
    } else if let Ok(dict) = value.cast::<PyDict>() {
        out.push(b'{');
        for (n, (key, item)) in dict.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            let key = dict_key(&key)?;
            write_str(out, &key);
            out.push(b':');
            write_value(out, &item, depth + 1, path)
                .inspect_err(|_| path.push(format!("[{key:?}]")))?;
        }
        out.push(b'}');
    } else if let Ok(list) = value.cast::<PyList>() {
        write_array(out, list.iter(), depth, path)?;
    } else if let Ok(tuple) = value.cast::<PyTuple>() {
        write_array(out, tuple.iter(), depth, path)?;
    } else {
        let type_name = value
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".into());
        return Err(format!("object of type {type_name:?}"));
    }
    Ok(())
}

fn write_array<'py>(
    out: &mut Vec<u8>,
    items: impl Iterator<Item = Bound<'py, PyAny>>,
    depth: usize,
    path: &mut Vec<String>,
) -> Result<(), String> {
    out.push(b'[');
    for (n, item) in items.enumerate() {
        if n > 0 {
            out.push(b',');
        }
        write_value(out, &item, depth + 1, path).inspect_err(|_| path.push(format!("[{n}]")))?;
    }
    out.push(b']');
    Ok(())
}

/// Dict keys as `json.dumps` accepts them: strings, and numbers, booleans and None as text.
fn dict_key(key: &Bound<'_, PyAny>) -> Result<String, String> {
    if let Ok(s) = key.cast::<PyString>() {
        return s.to_str().map(str::to_string).map_err(|e| e.to_string());
    }
    if key.is_none() {
        return Ok("null".into());
    }
    if let Ok(b) = key.cast::<PyBool>() {
        return Ok(if b.is_true() { "true" } else { "false" }.into());
    }
    if key.is_instance_of::<PyInt>() || key.is_instance_of::<PyFloat>() {
        return key.str().map(|s| s.to_string()).map_err(|e| e.to_string());
    }
    let type_name = key
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default();
    Err(format!(
        "dict key of type {type_name:?} (keys must be str, int, float, bool or None)"
    ))
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("write to Vec");
}
