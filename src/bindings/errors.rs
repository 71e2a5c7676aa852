//! The one mapping from the core's [`Error`] to the Python classes of `headrace.errors`.

use crate::error::Error;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyModule;

static ERRORS_MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// The Python class name that represents `err`.
fn class_name(err: &Error) -> &'static str {
    match err {
        Error::Config(_) => "ConfigError",
        Error::Store(_) => "StoreError",
        Error::StoreUnavailable(_) => "StoreUnavailable",
        Error::LeaseLost { .. } => "LeaseLost",
        Error::NotFound(_) => "NotFoundError",
        Error::InvocationNotFound(_) => "InvocationNotFoundError",
        Error::InvalidStatusTransition(_) => "InvalidStatusTransition",
        Error::Ingest(_) => "IngestError",
        Error::IngestRejected(_) => "IngestRejected",
        Error::IngestUnavailable(_) => "IngestUnavailable",
    }
}

/// A class of `headrace.errors` by name.
pub(crate) fn error_class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    ERRORS_MODULE
        .get_or_try_init(py, || {
            PyModule::import(py, "headrace.errors").map(Bound::unbind)
        })?
        .bind(py)
        .getattr(name)
}

fn to_py_err(py: Python<'_>, err: &Error) -> PyResult<PyErr> {
    let class = error_class(py, class_name(err))?;
    let exc = class.call1((err.to_string(),))?;
    if let Error::LeaseLost { item_ids, .. } = err {
        exc.setattr("item_ids", item_ids.clone())?;
    }
    Ok(PyErr::from_value(exc))
}

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        Python::attach(|py| {
            to_py_err(py, &err).unwrap_or_else(|import_failure| {
                PyRuntimeError::new_err(format!(
                    "{err} (headrace.errors could not be loaded: {import_failure})"
                ))
            })
        })
    }
}

/// Shorthand for a `ConfigError` raised from binding code.
pub(crate) fn config_error(message: impl Into<String>) -> PyErr {
    Error::Config(message.into()).into()
}
