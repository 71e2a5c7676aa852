//! `OutboxItem`, one outbox row.

use crate::bindings::json;
use crate::outbox::OutboxItem;
use chrono::{DateTime, Utc};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

/// One outbox row. `payload` is decoded from JSON on first access.
#[pyclass(module = "headrace._core", name = "OutboxItem", frozen)]
pub(crate) struct PyOutboxItem {
    item: OutboxItem,
    payload: PyOnceLock<Py<PyAny>>,
}

impl From<OutboxItem> for PyOutboxItem {
    fn from(item: OutboxItem) -> Self {
        PyOutboxItem {
            item,
            payload: PyOnceLock::new(),
        }
    }
}

impl PyOutboxItem {
    /// The core item.
    pub(crate) fn core(&self) -> &OutboxItem {
        &self.item
    }
}

#[pymethods]
impl PyOutboxItem {
    #[getter]
    fn id(&self) -> i64 {
        self.item.id
    }
    #[getter]
    fn topic(&self) -> &str {
        &self.item.topic
    }
    #[getter]
    fn payload<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.payload
            .get_or_try_init(py, || {
                json::loads(py, &self.item.payload).map(Bound::unbind)
            })
            .map(|p| p.bind(py).clone())
    }
    /// The payload as the JSON text stored in the database.
    #[getter]
    fn payload_json(&self) -> &str {
        &self.item.payload
    }
    #[getter]
    fn status(&self) -> &'static str {
        self.item.status.as_str()
    }
    #[getter]
    fn priority(&self) -> i32 {
        self.item.priority
    }
    #[getter]
    fn attempts(&self) -> i32 {
        self.item.attempts
    }
    #[getter]
    fn max_attempts(&self) -> i32 {
        self.item.max_attempts
    }
    #[getter]
    fn run_at(&self) -> DateTime<Utc> {
        self.item.run_at
    }
    #[getter]
    fn lease_owner(&self) -> Option<&str> {
        self.item.lease_owner.as_deref()
    }
    #[getter]
    fn lease_expires_at(&self) -> Option<DateTime<Utc>> {
        self.item.lease_expires_at
    }
    #[getter]
    fn last_error(&self) -> Option<&str> {
        self.item.last_error.as_deref()
    }
    #[getter]
    fn dedupe_key(&self) -> Option<&str> {
        self.item.dedupe_key.as_deref()
    }
    #[getter]
    fn trace_id(&self) -> Option<&str> {
        self.item.trace_id.as_deref()
    }
    #[getter]
    fn created_at(&self) -> DateTime<Utc> {
        self.item.created_at
    }
    #[getter]
    fn updated_at(&self) -> DateTime<Utc> {
        self.item.updated_at
    }

    fn __repr__(&self) -> String {
        format!(
            "OutboxItem(id={}, topic={:?}, status={:?}, attempts={}/{})",
            self.item.id,
            self.item.topic,
            self.item.status.as_str(),
            self.item.attempts,
            self.item.max_attempts
        )
    }
}
