//! The built-in sinks (`OutboxSink`, `DryRunSink`, `NullSink`) and any Python object as a sink.

use super::diagnostics::error_from_py;
use super::manager::seconds;
use crate::bindings::errors::config_error;
use crate::bindings::json;
use crate::bindings::outbox::PyOutboxStore;
use crate::bindings::runtime::wait;
use crate::error::{Error, Result};
use crate::runner::{Chunk, DryRunSink, NullSink, OutboxSink, Sink};
use async_trait::async_trait;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::sync::Arc;

/// Each chunk becomes one outbox item: `{"metadata": {…}, "entities": […]}` on `topic`.
#[pyclass(module = "headrace._core", name = "OutboxSink", frozen)]
pub(crate) struct PyOutboxSink {
    sink: Arc<OutboxSink>,
    store: Py<PyOutboxStore>,
}

#[pymethods]
impl PyOutboxSink {
    #[new]
    #[pyo3(signature = (store, topic="headrace.entities"))]
    fn new(store: &Bound<'_, PyOutboxStore>, topic: &str) -> PyResult<Self> {
        let sink = OutboxSink::new(store.get().store.clone(), topic)?;
        Ok(PyOutboxSink {
            sink: Arc::new(sink),
            store: store.clone().unbind(),
        })
    }
    #[getter]
    fn topic(&self) -> &str {
        self.sink.topic()
    }
    #[getter]
    fn store(&self, py: Python<'_>) -> Py<PyOutboxStore> {
        self.store.clone_ref(py)
    }
    /// Deletes chunks held for more than `older_than_seconds` by runs that never ended (their
    /// process died mid-run); returns how many.
    fn discard_abandoned(&self, py: Python<'_>, older_than_seconds: f64) -> PyResult<u64> {
        let age = chrono::Duration::from_std(seconds(older_than_seconds)?)
            .map_err(|e| config_error(format!("older_than_seconds is too large: {e}")))?;
        let sink = self.sink.clone();
        wait(py, async move { sink.discard_abandoned(age).await })
    }
    fn __repr__(&self) -> String {
        format!("OutboxSink(topic={:?})", self.sink.topic())
    }
}

/// Writes each chunk to its own JSON file in `directory`; nothing is sent anywhere.
#[pyclass(module = "headrace._core", name = "DryRunSink", frozen)]
pub(crate) struct PyDryRunSink {
    sink: Arc<DryRunSink>,
}

#[pymethods]
impl PyDryRunSink {
    #[new]
    fn new(directory: PathBuf) -> PyResult<Self> {
        Ok(PyDryRunSink {
            sink: Arc::new(DryRunSink::new(directory)?),
        })
    }
    #[getter]
    fn directory(&self) -> PathBuf {
        self.sink.directory().to_path_buf()
    }
    fn __repr__(&self) -> String {
        format!("DryRunSink({:?})", self.sink.directory())
    }
}

/// Discards chunks, counting them (benchmarks, tests).
#[pyclass(module = "headrace._core", name = "NullSink", frozen)]
pub(crate) struct PyNullSink {
    sink: Arc<NullSink>,
}

#[pymethods]
impl PyNullSink {
    #[new]
    fn new() -> Self {
        PyNullSink {
            sink: Arc::new(NullSink::new()),
        }
    }
    #[getter]
    fn chunks(&self) -> u64 {
        self.sink.counts().0
    }
    #[getter]
    fn entities(&self) -> u64 {
        self.sink.counts().1
    }
    #[getter]
    fn bytes(&self) -> u64 {
        self.sink.counts().2
    }
    fn __repr__(&self) -> String {
        let (c, e, b) = self.sink.counts();
        format!("NullSink(chunks={c}, entities={e}, bytes={b})")
    }
}

/// Any Python object with `ingest(entities, *, metadata)` (and optionally
/// `record_failure(error, *, metadata)`), called on a blocking thread with the GIL.
pub(super) struct PyObjectSink {
    object: Arc<Py<PyAny>>,
    has_record_failure: bool,
    has_ingest_protobuf: bool,
    has_protobuf_envelope: bool,
    has_finish_run: bool,
    repr: String,
}

impl std::fmt::Debug for PyObjectSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PyObjectSink({})", self.repr)
    }
}

pub(super) fn metadata_dict<'py>(
    py: Python<'py>,
    metadata: &Map<String, Value>,
) -> PyResult<Bound<'py, PyAny>> {
    json::loads(py, &Value::Object(metadata.clone()).to_string())
}

#[async_trait]
impl Sink for PyObjectSink {
    async fn ingest(&self, chunk: Chunk) -> Result<()> {
        let object = self.object.clone();
        let has_ingest_protobuf = self.has_ingest_protobuf;
        tokio::task::spawn_blocking(move || {
            Python::attach(|py| {
                let call = || -> PyResult<()> {
                    let kwargs = PyDict::new(py);
                    kwargs.set_item("metadata", metadata_dict(py, &chunk.metadata)?)?;
                    let object = object.bind(py);
                    match chunk.protobuf_body() {
                        // Protobuf entities: the framed IngestRequest bytes, or one `bytes`
                        // per entity for a sink without ingest_protobuf().
                        Some(body) if has_ingest_protobuf => {
                            let bytes = PyBytes::new(py, &body.entities);
                            object.call_method("ingest_protobuf", (bytes,), Some(&kwargs))?;
                        }
                        Some(body) => {
                            let entities: Vec<Bound<'_, PyBytes>> = body
                                .entity_slices()
                                .into_iter()
                                .map(|e| PyBytes::new(py, e))
                                .collect();
                            object.call_method("ingest", (entities,), Some(&kwargs))?;
                        }
                        None => {
                            let entities = json::loads(py, chunk.entities_json())?;
                            object.call_method("ingest", (entities,), Some(&kwargs))?;
                        }
                    }
                    Ok(())
                };
                call().map_err(|e| error_from_py(py, &e))
            })
        })
        .await
        .map_err(|e| Error::Ingest(format!("the sink's thread failed: {e}")))?
    }

    async fn protobuf_envelope(&self, metadata: &Map<String, Value>) -> Result<usize> {
        if !self.has_protobuf_envelope {
            return Ok(0);
        }
        let object = self.object.clone();
        let metadata = metadata.clone();
        tokio::task::spawn_blocking(move || {
            Python::attach(|py| {
                let call = || -> PyResult<usize> {
                    object
                        .bind(py)
                        .call_method1("protobuf_envelope", (metadata_dict(py, &metadata)?,))?
                        .extract()
                };
                call().map_err(|e| error_from_py(py, &e))
            })
        })
        .await
        .map_err(|e| Error::Ingest(format!("the sink's thread failed: {e}")))?
    }

    async fn finish_run(&self, run_id: &str, completed: bool) -> Result<()> {
        if !self.has_finish_run {
            return Ok(());
        }
        let object = self.object.clone();
        let run_id = run_id.to_string();
        tokio::task::spawn_blocking(move || {
            Python::attach(|py| {
                object
                    .bind(py)
                    .call_method1("finish_run", (run_id, completed))
                    .map(|_| ())
                    .map_err(|e| error_from_py(py, &e))
            })
        })
        .await
        .map_err(|e| Error::Ingest(format!("the sink's thread failed: {e}")))?
    }

    async fn record_failure(&self, error: &Error, metadata: &Map<String, Value>) -> Result<()> {
        if !self.has_record_failure {
            return Ok(());
        }
        let object = self.object.clone();
        let error = error.clone();
        let metadata = metadata.clone();
        tokio::task::spawn_blocking(move || {
            Python::attach(|py| {
                let call = || -> PyResult<()> {
                    let exception = PyErr::from(error).into_value(py);
                    let kwargs = PyDict::new(py);
                    kwargs.set_item("metadata", metadata_dict(py, &metadata)?)?;
                    object
                        .bind(py)
                        .call_method("record_failure", (exception,), Some(&kwargs))?;
                    Ok(())
                };
                call().map_err(|e| error_from_py(py, &e))
            })
        })
        .await
        .map_err(|e| Error::Ingest(format!("the sink's thread failed: {e}")))?
    }
}

pub(super) fn core_sink(sink: &Bound<'_, PyAny>) -> PyResult<Arc<dyn Sink>> {
    if let Ok(s) = sink.cast::<PyOutboxSink>() {
        return Ok(s.get().sink.clone());
    }
    if let Ok(s) = sink.cast::<PyDryRunSink>() {
        return Ok(s.get().sink.clone());
    }
    if let Ok(s) = sink.cast::<PyNullSink>() {
        return Ok(s.get().sink.clone());
    }
    if sink.cast::<PyOutboxStore>().is_ok() {
        return Err(config_error(
            "sink= takes a sink, not a store: wrap the store as OutboxSink(store)",
        ));
    }
    let ingest = sink.getattr("ingest").ok().filter(|i| i.is_callable());
    if ingest.is_none() {
        return Err(config_error(format!(
            "sink {} has no ingest(entities, *, metadata) method: use OutboxSink(store), \
             DryRunSink(directory) or an object with ingest()",
            sink.repr()?
        )));
    }
    let has = |name: &str| sink.getattr(name).is_ok_and(|r| r.is_callable());
    Ok(Arc::new(PyObjectSink {
        object: Arc::new(sink.clone().unbind()),
        has_record_failure: has("record_failure"),
        has_ingest_protobuf: has("ingest_protobuf"),
        has_protobuf_envelope: has("protobuf_envelope"),
        has_finish_run: has("finish_run"),
        repr: sink.repr()?.to_string(),
    }))
}
