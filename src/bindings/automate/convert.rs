//! JSON in and out of Python, and the automate error mapping.

use crate::automate::AutomateError;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyModule};

static JSON: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
static ERRORS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

fn json_module(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    Ok(JSON
        .get_or_try_init(py, || PyModule::import(py, "json").map(Bound::unbind))?
        .bind(py))
}

/// A Python value (dicts, lists, str, numbers, bool, None) as JSON; `what` names it in errors.
pub(crate) fn to_json(value: &Bound<'_, PyAny>, what: &str) -> PyResult<serde_json::Value> {
    let py = value.py();
    let text: String = json_module(py)?
        .call_method1("dumps", (value,))
        .map_err(|e| config(py, format!("{what} is not JSON-serialisable: {e}")))?
        .extract()?;
    serde_json::from_str(&text).map_err(|e| config(py, format!("{what} is not valid JSON: {e}")))
}

/// JSON as a Python value.
pub(crate) fn to_py<'py>(
    py: Python<'py>,
    value: &serde_json::Value,
) -> PyResult<Bound<'py, PyAny>> {
    json_module(py)?.call_method1("loads", (value.to_string(),))
}

fn class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    ERRORS
        .get_or_try_init(py, || {
            PyModule::import(py, "headrace.errors").map(Bound::unbind)
        })?
        .bind(py)
        .getattr(name)
}

fn build(
    py: Python<'_>,
    name: &str,
    message: String,
    attrs: &[(&str, Bound<'_, PyAny>)],
) -> PyResult<PyErr> {
    let kwargs = PyDict::new(py);
    for (k, v) in attrs {
        kwargs.set_item(k, v)?;
    }
    let exc = class(py, name)?.call((message,), Some(&kwargs))?;
    Ok(PyErr::from_value(exc))
}

fn config(py: Python<'_>, message: String) -> PyErr {
    build(py, "ConfigError", message.clone(), &[])
        .unwrap_or_else(|_| PyRuntimeError::new_err(message))
}

/// The Python exception for an automate error.
pub(crate) fn to_py_err(py: Python<'_>, err: AutomateError) -> PyErr {
    let text = err.to_string();
    let made = match err {
        AutomateError::Config(m) => build(py, "ConfigError", m, &[]),
        AutomateError::Invalid { message, errors } => {
            let list = serde_json::to_value(&errors).unwrap_or_default();
            to_py(py, &list).and_then(|l| build(py, "ConfigError", message, &[("errors", l)]))
        }
        AutomateError::Template { message, variable } => {
            let var = variable.into_pyobject(py).map(|v| v.into_any());
            var.map_err(PyErr::from)
                .and_then(|v| build(py, "TemplateError", message, &[("variable", v)]))
        }
        AutomateError::Signature(m) => build(py, "WebhookVerificationError", m, &[]),
        AutomateError::SecretNotFound(key) => {
            let k = key.clone().into_pyobject(py).map(|v| v.into_any());
            k.map_err(PyErr::from).and_then(|k| {
                build(
                    py,
                    "SecretNotFoundError",
                    format!("secret {key:?} was not found"),
                    &[("key", k)],
                )
            })
        }
        AutomateError::Callback(m) => build(py, "TemplateError", m, &[]),
    };
    made.unwrap_or_else(|failure| {
        PyRuntimeError::new_err(format!("{text} (while raising it: {failure})"))
    })
}
