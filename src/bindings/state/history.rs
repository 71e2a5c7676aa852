//! `InvocationHistory`.

use super::convert::{invocation_id, optional_json, status_object, status_of, type_name};
use crate::bindings::errors::config_error;
use crate::bindings::json;
use crate::clock::{Clock, SystemClock};
use crate::state::{self, InvocationHistory};
use chrono::{DateTime, FixedOffset};
use pyo3::prelude::*;
use pyo3::types::PyString;

/// One entry of an invocation's status history.
#[pyclass(module = "headrace._core", name = "InvocationHistory", frozen)]
pub(crate) struct PyInvocationHistory {
    pub(super) entry: InvocationHistory,
}

#[pymethods]
impl PyInvocationHistory {
    #[new]
    #[pyo3(signature = (invocation_id, status=None, execution_context=None))]
    fn new(
        invocation_id: &Bound<'_, PyAny>,
        status: Option<&Bound<'_, PyAny>>,
        execution_context: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let status = status.filter(|s| !s.is_none()).map(status_of).transpose()?;
        let entry = InvocationHistory::new(
            self::invocation_id(invocation_id)?,
            status,
            optional_json(execution_context, "execution_context")?,
            // A free-standing entry belongs to no store, so to no store's clock.
            SystemClock.now(),
        );
        entry.validate()?;
        Ok(PyInvocationHistory { entry })
    }

    #[getter]
    fn invocation_id(&self) -> &str {
        &self.entry.invocation_id
    }

    /// When the entry was made (timezone-aware).
    #[getter]
    fn timestamp(&self) -> DateTime<FixedOffset> {
        self.entry.timestamp
    }

    #[getter]
    fn status<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.entry.status.map(|s| status_object(py, s)).transpose()
    }

    #[getter]
    fn execution_context<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.entry
            .execution_context
            .as_deref()
            .map(|text| json::loads(py, text))
            .transpose()
    }

    /// The entry as JSON (`from_json` gives back an equal entry with the same JSON).
    fn to_json(&self) -> String {
        self.entry.to_json()
    }

    /// Parses `to_json` output; malformed input raises ConfigError.
    #[classmethod]
    fn from_json(
        _cls: &Bound<'_, pyo3::types::PyType>,
        json_str: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let text: &str = json_str
            .cast::<PyString>()
            .map_err(|_| {
                config_error(format!(
                    "from_json needs a str, got {}",
                    type_name(json_str)
                ))
            })?
            .to_str()?;
        Ok(PyInvocationHistory {
            entry: InvocationHistory::from_json(text)?,
        })
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyInvocationHistory>()
            .is_ok_and(|o| o.get().entry.to_json() == self.entry.to_json())
    }

    fn __hash__(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.entry.to_json().hash(&mut h);
        h.finish()
    }

    fn __repr__(&self) -> String {
        format!(
            "InvocationHistory(invocation_id={:?}, timestamp={:?}, status={}, execution_context={})",
            self.entry.invocation_id,
            state::format_timestamp(&self.entry.timestamp),
            self.entry
                .status
                .map_or("None".to_string(), |s| format!("{:?}", s.as_str())),
            self.entry.execution_context.as_deref().unwrap_or("None"),
        )
    }
}
