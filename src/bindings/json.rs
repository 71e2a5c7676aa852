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
    } else if let Some(plain) = to_plain(value)? {
        write_value(out, &plain, depth + 1, path)?;
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

static DATACLASS_ASDICT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The plain (dict/list) form of a model object: pydantic's `model_dump(mode="json")`, a
/// `to_dict()` method, or `dataclasses.asdict` for dataclass instances; `None` for anything else.
pub(crate) fn to_plain<'py>(
    value: &Bound<'py, PyAny>,
) -> Result<Option<Bound<'py, PyAny>>, String> {
    let py = value.py();
    if value.is_instance_of::<pyo3::types::PyType>() {
        return Ok(None);
    }
    if let Ok(dump) = value.getattr(pyo3::intern!(py, "model_dump"))
        && dump.is_callable()
    {
        let kwargs = PyDict::new(py);
        kwargs.set_item("mode", "json").map_err(|e| e.to_string())?;
        return match dump.call((), Some(&kwargs)) {
            Ok(plain) => Ok(Some(plain)),
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyTypeError>(py) => dump
                .call0()
                .map(Some)
                .map_err(|e| format!("model_dump() raised {e}")),
            Err(e) => Err(format!("model_dump() raised {e}")),
        };
    }
    if let Ok(to_dict) = value.getattr(pyo3::intern!(py, "to_dict"))
        && to_dict.is_callable()
    {
        return to_dict
            .call0()
            .map(Some)
            .map_err(|e| format!("to_dict() raised {e}"));
    }
    if value
        .get_type()
        .hasattr(pyo3::intern!(py, "__dataclass_fields__"))
        .unwrap_or(false)
    {
        let asdict = DATACLASS_ASDICT
            .get_or_try_init(py, || {
                py.import("dataclasses")?
                    .getattr("asdict")
                    .map(Bound::unbind)
            })
            .map_err(|e| e.to_string())?;
        return asdict
            .bind(py)
            .call1((value,))
            .map(Some)
            .map_err(|e| format!("dataclasses.asdict() raised {e}"));
    }
    Ok(None)
}

/// Appends one entity of a run: `value` encoded as JSON with `run_id` written into its top-level
/// `metadata` object (created when absent or None) — without touching the caller's object.
/// Dicts, lists, tuples, objects with `model_dump()` / `to_dict()` and dataclasses are accepted;
/// only object-shaped entities carry `run_id`. The error names the failing location.
pub(crate) fn encode_entity(
    out: &mut Vec<u8>,
    value: &Bound<'_, PyAny>,
    run_id: &str,
) -> Result<(), String> {
    let mut path = Vec::new();
    let located = |failure: String, path: &[String]| {
        let location: String = path.iter().rev().map(String::as_str).collect();
        if location.is_empty() {
            failure
        } else {
            format!("at {location}: {failure}")
        }
    };
    let dict;
    if let Ok(d) = value.cast::<PyDict>() {
        dict = d.clone();
    } else if value.is_instance_of::<PyList>() || value.is_instance_of::<PyTuple>() {
        return write_value(out, value, 0, &mut path).map_err(|f| located(f, &path));
    } else {
        match to_plain(value)? {
            Some(plain) => match plain.cast_into::<PyDict>() {
                Ok(d) => dict = d,
                Err(e) => {
                    let plain = e.into_inner();
                    return write_value(out, &plain, 0, &mut path).map_err(|f| located(f, &path));
                }
            },
            None => return write_value(out, value, 0, &mut path).map_err(|f| located(f, &path)),
        }
    }
    out.push(b'{');
    let mut wrote_metadata = false;
    for (n, (key, item)) in dict.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        let key = dict_key(&key)?;
        write_str(out, &key);
        out.push(b':');
        if key == "metadata" {
            wrote_metadata = true;
            write_metadata(out, &item, run_id, &mut path)
                .inspect_err(|_| path.push("[\"metadata\"]".into()))
                .map_err(|f| located(f, &path))?;
        } else {
            write_value(out, &item, 1, &mut path)
                .inspect_err(|_| path.push(format!("[{key:?}]")))
                .map_err(|f| located(f, &path))?;
        }
    }
    if !wrote_metadata {
        if !dict.is_empty() {
            out.push(b',');
        }
        out.extend_from_slice(b"\"metadata\":{\"run_id\":");
        write_str(out, run_id);
        out.push(b'}');
    }
    out.push(b'}');
    Ok(())
}

fn write_metadata(
    out: &mut Vec<u8>,
    value: &Bound<'_, PyAny>,
    run_id: &str,
    path: &mut Vec<String>,
) -> Result<(), String> {
    let dict = if value.is_none() {
        None
    } else if let Ok(d) = value.cast::<PyDict>() {
        Some(d.clone())
    } else {
        match to_plain(value)?.map(|p| p.cast_into::<PyDict>()) {
            Some(Ok(d)) => Some(d),
            _ => {
                let type_name = value
                    .get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default();
                return Err(format!(
                    "must be a dict to carry run_id, got an object of type {type_name:?}"
                ));
            }
        }
    };
    out.push(b'{');
    let mut n = 0;
    if let Some(dict) = dict {
        for (key, item) in dict.iter() {
            let key = dict_key(&key)?;
            if key == "run_id" {
                continue;
            }
            if n > 0 {
                out.push(b',');
            }
            write_str(out, &key);
            out.push(b':');
            write_value(out, &item, 2, path).inspect_err(|_| path.push(format!("[{key:?}]")))?;
            n += 1;
        }
    }
    if n > 0 {
        out.push(b',');
    }
    out.extend_from_slice(b"\"run_id\":");
    write_str(out, run_id);
    out.push(b'}');
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
