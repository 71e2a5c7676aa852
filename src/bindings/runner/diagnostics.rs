//! Python exceptions of runner code as core errors, and the runner's operator-facing log.

use super::LOGGER;
use crate::bindings::errors::{describe_exception, error_from_exception};
use crate::error::{Error, FailureContext};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

/// The core error an exception of a backend, sink or ingest callback stands for (the
/// classification rule in its ingest context).
pub(super) fn error_from_py(py: Python<'_>, err: &PyErr) -> Error {
    error_from_exception(py, err, FailureContext::Ingest)
}

/// A `ConfigError` about loading a policy, keeping headrace errors as they are.
pub(super) fn load_error(py: Python<'_>, err: &PyErr, what: &str) -> Error {
    match error_from_py(py, err) {
        Error::Config(m) => Error::Config(m),
        _ => Error::Config(format!("{what}: {}", describe_exception(err.value(py)))),
    }
}

pub(super) fn logger(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    static LOGGING: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    LOGGING
        .get_or_try_init(py, || {
            py.import("logging")?
                .call_method1("getLogger", (LOGGER,))
                .map(Bound::unbind)
        })
        .map(|l| l.bind(py).clone())
}

pub(super) fn log(py: Python<'_>, level: &str, message: String) {
    if let Ok(logger) = logger(py) {
        let _ = logger.call_method1(level, (message,));
    }
}
