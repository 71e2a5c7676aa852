//! The one mapping between the core's [`Error`] and the Python classes of `headrace.errors`, both
//! ways, through [`ERROR_TABLE`]; the one description of a Python exception; and the one retry
//! classification rule ([`failure_is_retryable`]) applied to Python exceptions.

use crate::error::{ERROR_TABLE, Error, FailureContext, classify_failure, failure_is_retryable};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyModule;

static ERRORS_MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(error_table, m)?)?;
    m.add_function(wrap_pyfunction!(describe_exception, m)?)?;
    m.add_function(wrap_pyfunction!(is_retryable, m)?)?;
    Ok(())
}

/// The error table: `(code, class name in headrace.errors, retryable)` per core error.
#[pyfunction]
fn error_table() -> Vec<(&'static str, &'static str, bool)> {
    ERROR_TABLE
        .iter()
        .map(|row| (row.code, row.python_class, row.retryable))
        .collect()
}

/// `Type: message` of an exception (`Type` alone when the message is empty).
#[pyfunction]
pub(crate) fn describe_exception(exc: &Bound<'_, PyAny>) -> String {
    let type_name = exc
        .get_type()
        .qualname()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "Exception".into());
    let message = exc.str().map(|s| s.to_string()).unwrap_or_default();
    if message.is_empty() {
        type_name
    } else {
        format!("{type_name}: {message}")
    }
}

/// Whether retrying after `exc` may succeed, by the one classification rule: its `retryable`
/// attribute when it has one, else `True` for a handler (`context="handler"`) and `False` for
/// a runner ingest (`context="ingest"`).
#[pyfunction]
#[pyo3(signature = (exc, context = "handler"))]
fn is_retryable(exc: &Bound<'_, PyAny>, context: &str) -> PyResult<bool> {
    Ok(failure_is_retryable(
        retryable_attribute(exc),
        failure_context(context)?,
    ))
}

fn failure_context(context: &str) -> PyResult<FailureContext> {
    match context {
        "handler" => Ok(FailureContext::Handler),
        "ingest" => Ok(FailureContext::Ingest),
        other => Err(PyValueError::new_err(format!(
            "context must be \"handler\" or \"ingest\", got {other:?}"
        ))),
    }
}

/// The exception's `retryable` attribute as a bool (`None` when it has none).
fn retryable_attribute(exc: &Bound<'_, PyAny>) -> Option<bool> {
    let flag = exc.getattr("retryable").ok()?;
    if flag.is_none() {
        return None;
    }
    flag.is_truthy().ok()
}

/// The core error a Python exception raised by user code stands for (see [`classify_failure`]).
pub(crate) fn error_from_exception(py: Python<'_>, err: &PyErr, context: FailureContext) -> Error {
    let value = err.value(py);
    let is_headrace = error_class(py, "HeadraceError")
        .and_then(|class| value.is_instance(&class))
        .unwrap_or(false);
    let code: Option<String> = if is_headrace {
        value.getattr("code").ok().and_then(|c| c.extract().ok())
    } else {
        None
    };
    let message = if is_headrace {
        value.str().map(|s| s.to_string()).unwrap_or_default()
    } else {
        describe_exception(value)
    };
    classify_failure(
        code.as_deref(),
        retryable_attribute(value),
        context,
        message,
    )
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
    let class = error_class(py, err.kind().python_class)?;
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
