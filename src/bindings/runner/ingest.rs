//! Entities from Python into a run: the pump, the `ingest_callback` and the `ingest_sink`.

use super::diagnostics::log;
use super::loader::runner_module;
use super::models::PyRun;
use super::{BATCH_BYTES, BATCH_ENTITIES, CHANNEL_BATCHES};
use crate::bindings::errors::describe_exception;
use crate::bindings::json;
use crate::bindings::runtime::runtime;
use crate::error::{Error, Result};
use crate::runner::executor::RunOutcome;
use crate::runner::source::{self, Batch, BatchSender};
use crate::runner::{EntitySource, IngestHandle, Producer, RunContext, RunIdPlacement};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyIterator, PyList};
use std::sync::Arc;

/// Why feeding a run stopped early.
pub(super) enum PumpEnd {
    /// The entities (or the call producing them) failed; the original exception when there
    /// was one.
    Failed(Error, Option<PyErr>),
    /// The run stopped reading (it already failed).
    Stopped,
}

/// Iterates `iterable` on this thread (holding the GIL), encoding each entity for `run_id`
/// and handing batches to the run with the GIL released. A failure delivers the entities
/// encoded before it, then ends the stream with the error.
pub(super) fn pump(
    py: Python<'_>,
    iterable: &Bound<'_, PyAny>,
    run_id: &str,
    sender: &BatchSender,
) -> std::result::Result<(), PumpEnd> {
    if let Some(what) = single_entity_kind(iterable) {
        return Err(PumpEnd::Failed(
            Error::IngestRejected(format!(
                "the backend returned {what}, not an iterable of entities: return [entity] for \
                 one entity"
            )),
            None,
        ));
    }
    // A list nobody else holds (the backend returned it and kept no reference to it): each
    // entity is released from it once encoded, so the run's memory falls as the encoded copies
    // grow instead of holding both to the end. Unobservable: no other reference exists.
    let sole_list = iterable
        .cast_exact::<PyList>()
        .ok()
        // SAFETY: reads the reference count of an object this thread holds, with the GIL.
        .filter(|list| unsafe { pyo3::ffi::Py_REFCNT(list.as_ptr()) } == 1)
        .cloned();
    let iterator = match sole_list {
        Some(list) => Ok(Items::Owned { list, next: 0 }),
        None => iterable.try_iter().map(Items::Iter),
    };
    let iterator = iterator.map_err(|e| {
        let type_name = iterable
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_default();
        PumpEnd::Failed(
            Error::Ingest(format!(
                "the backend returned an object of type {type_name:?}, which is not iterable"
            )),
            Some(e),
        )
    })?;
    let mut batch = PumpBatch::Json(Vec::with_capacity(BATCH_ENTITIES));
    let mut batch_bytes = 0usize;
    let mut buffer: Vec<u8> = Vec::with_capacity(1024);
    let mut kinds = EntityKinds::default();
    let send = |batch: PumpBatch| -> std::result::Result<(), PumpEnd> {
        let batch: Batch = match batch {
            PumpBatch::Json(v) => Batch::Json(v),
            PumpBatch::Protobuf(v) => Batch::Protobuf(v),
        };
        if py.detach(|| sender.send_blocking(batch)) {
            Ok(())
        } else {
            Err(PumpEnd::Stopped)
        }
    };
    let mut failure = None;
    for (position, item) in (0u64..).zip(iterator) {
        let item = match item {
            Ok(item) => item,
            Err(e) => {
                failure = Some(PumpEnd::Failed(
                    Error::Ingest(describe_exception(e.value(py))),
                    Some(e),
                ));
                break;
            }
        };
        let placement = match kinds.of(py, &item) {
            Ok(placement) => placement,
            Err(e) => {
                failure = Some(PumpEnd::Failed(
                    Error::Ingest(describe_exception(e.value(py))),
                    Some(e),
                ));
                break;
            }
        };
        let encoded = match placement {
            // A protobuf message: serialised once by its own SerializeToString, the run id
            // appended in Rust (the caller's object is never touched).
            Some(placement) => {
                let bytes = item
                    .call_method0("SerializeToString")
                    .and_then(|b| b.extract::<Vec<u8>>());
                match bytes {
                    Ok(bytes) => placement
                        .apply(bytes, run_id, position)
                        .map(Encoded::Protobuf),
                    Err(e) => {
                        failure = Some(PumpEnd::Failed(
                            Error::IngestRejected(format!(
                                "entity {position}: SerializeToString() failed: {}",
                                describe_exception(e.value(py))
                            )),
                            Some(e),
                        ));
                        break;
                    }
                }
            }
            None => {
                buffer.clear();
                match json::encode_entity(&mut buffer, &item, run_id) {
                    Ok(()) => {
                        let capacity = buffer.capacity();
                        let encoded = std::mem::replace(
                            &mut buffer,
                            Vec::with_capacity(capacity.min(64 * 1024)),
                        );
                        Ok(Encoded::Json(
                            String::from_utf8(encoded).expect("the encoder writes UTF-8"),
                        ))
                    }
                    Err(message) => Err(Error::IngestRejected(format!(
                        "entity {position} is not JSON-serialisable: {message}"
                    ))),
                }
            }
        };
        let encoded = match encoded {
            Ok(encoded) => encoded,
            Err(error) => {
                failure = Some(PumpEnd::Failed(error, None));
                break;
            }
        };
        batch_bytes += encoded.len();
        // A change of kind sends what was batched so far (the run rejects mixed kinds).
        if let Some(other) = batch.push(encoded) {
            send(std::mem::replace(&mut batch, other))?;
            batch_bytes = 0;
        }
        if batch.len() >= BATCH_ENTITIES || batch_bytes >= BATCH_BYTES {
            let empty = batch.empty_like();
            send(std::mem::replace(&mut batch, empty))?;
            batch_bytes = 0;
        }
    }
    if batch.len() > 0 {
        send(batch)?;
    }
    match failure {
        Some(end) => Err(end),
        None => Ok(()),
    }
}

/// The entities of a run, pulled one at a time.
enum Items<'py> {
    /// A list only the run holds: each item is taken out of it (replaced by `None`).
    Owned {
        list: Bound<'py, PyList>,
        next: usize,
    },
    Iter(Bound<'py, PyIterator>),
}

impl<'py> Iterator for Items<'py> {
    type Item = PyResult<Bound<'py, PyAny>>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Items::Owned { list, next } => {
                if *next >= list.len() {
                    return None;
                }
                let item = list.get_item(*next);
                if item.is_ok() {
                    let _ = list.set_item(*next, list.py().None());
                }
                *next += 1;
                Some(item)
            }
            Items::Iter(iterator) => iterator.next(),
        }
    }
}

/// What `value` is when it is iterable but surely not a stream of entities (a mapping
/// iterates its keys, `str` its characters, `bytes` its integers, a pydantic model its fields):
/// a description naming it, else `None`.
pub(super) fn single_entity_kind(value: &Bound<'_, PyAny>) -> Option<String> {
    use pyo3::types::{PyByteArray, PyBytes, PyMapping, PyString};
    let type_name = value
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default();
    let kind = if value.is_instance_of::<PyString>() {
        "a str"
    } else if value.is_instance_of::<PyBytes>() || value.is_instance_of::<PyByteArray>() {
        "bytes"
    } else if value.is_instance_of::<pyo3::types::PyMemoryView>() {
        "a memoryview"
    } else if value.is_instance_of::<PyDict>() || value.cast::<PyMapping>().is_ok() {
        "a mapping"
    } else if value.hasattr("model_dump").unwrap_or(false)
        && value.get_type().hasattr("model_fields").unwrap_or(false)
    {
        "a pydantic model"
    } else {
        return None;
    };
    Some(format!("{kind} (type {type_name})"))
}

/// Refuses what [`single_entity_kind`] names before a callback run starts (nothing recorded).
fn check_entity_stream(value: &Bound<'_, PyAny>, caller: &str) -> PyResult<()> {
    match single_entity_kind(value) {
        None => Ok(()),
        Some(what) => Err(crate::bindings::errors::config_error(format!(
            "{caller} takes an iterable of entities, got {what}: pass [entity] for one entity"
        ))),
    }
}

enum Encoded {
    Json(String),
    Protobuf(Vec<u8>),
}

impl Encoded {
    fn len(&self) -> usize {
        match self {
            Encoded::Json(s) => s.len(),
            Encoded::Protobuf(b) => b.len(),
        }
    }
}

enum PumpBatch {
    Json(Vec<String>),
    Protobuf(Vec<Vec<u8>>),
}

impl PumpBatch {
    fn len(&self) -> usize {
        match self {
            PumpBatch::Json(v) => v.len(),
            PumpBatch::Protobuf(v) => v.len(),
        }
    }

    fn empty_like(&self) -> PumpBatch {
        match self {
            PumpBatch::Json(_) => PumpBatch::Json(Vec::with_capacity(BATCH_ENTITIES)),
            PumpBatch::Protobuf(_) => PumpBatch::Protobuf(Vec::with_capacity(BATCH_ENTITIES)),
        }
    }

    /// Adds `entity`; when it is of the other kind and the batch is not empty, returns a new
    /// batch holding it (the caller sends this one first).
    fn push(&mut self, entity: Encoded) -> Option<PumpBatch> {
        match (self, entity) {
            (PumpBatch::Json(v), Encoded::Json(e)) => v.push(e),
            (PumpBatch::Protobuf(v), Encoded::Protobuf(e)) => v.push(e),
            (this, Encoded::Protobuf(e)) if this.len() == 0 => *this = PumpBatch::Protobuf(vec![e]),
            (this, Encoded::Json(e)) if this.len() == 0 => *this = PumpBatch::Json(vec![e]),
            (_, Encoded::Protobuf(e)) => return Some(PumpBatch::Protobuf(vec![e])),
            (_, Encoded::Json(e)) => return Some(PumpBatch::Json(vec![e])),
        }
        None
    }
}

/// Remembers, per Python type, whether entities are protobuf messages and where their run id
/// goes (one lookup per type, not per entity).
#[derive(Default)]
struct EntityKinds {
    last: Option<(Py<PyAny>, Option<Arc<RunIdPlacement>>)>,
}

impl EntityKinds {
    fn of(
        &mut self,
        py: Python<'_>,
        item: &Bound<'_, PyAny>,
    ) -> PyResult<Option<Arc<RunIdPlacement>>> {
        let ty = item.get_type();
        if let Some((last, placement)) = &self.last
            && last.bind(py).is(&ty)
        {
            return Ok(placement.clone());
        }
        let placement = if item.hasattr("SerializeToString")? && ty.hasattr("DESCRIPTOR")? {
            let pairs: Vec<(u32, u32)> = runner_module(py)?
                .call_method1("_run_id_placement", (ty.getattr("DESCRIPTOR")?,))?
                .extract()?;
            Some(Arc::new(RunIdPlacement::new(pairs)))
        } else {
            None
        };
        self.last = Some((ty.into_any().unbind(), placement.clone()));
        Ok(placement)
    }
}

/// Ends the stream after [`pump`]: finished, failed (with the error), or nothing to do.
pub(super) fn end_stream(
    py: Python<'_>,
    sender: BatchSender,
    outcome: std::result::Result<(), PumpEnd>,
) -> Option<PyErr> {
    match outcome {
        Ok(()) => {
            py.detach(|| sender.finish_blocking());
            None
        }
        Err(PumpEnd::Failed(error, original)) => {
            py.detach(|| sender.fail_blocking(error));
            original
        }
        Err(PumpEnd::Stopped) => None,
    }
}

/// Runs `fut` on the shared runtime and waits for it with the GIL released. Unlike
/// `block_on`, safe from any thread, including one already inside the runtime's context (a
/// Python sink calling a backend's callback from its blocking thread, say).
pub(super) fn wait_detached<T: Send + 'static>(
    py: Python<'_>,
    fut: impl std::future::Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    runtime().spawn(async move {
        let _ = tx.send(fut.await);
    });
    py.detach(move || rx.recv())
        .map_err(|_| Error::Ingest("the run was lost (the runtime shut down)".into()))?
}

/// Runs `entities` as a callback run of `handle`, iterating them on the calling thread.
/// Returns how the run ended and, when the entities themselves failed, the original exception.
pub(super) fn callback_run(
    py: Python<'_>,
    handle: &IngestHandle,
    entities: &Bound<'_, PyAny>,
) -> PyResult<(RunOutcome, Option<PyErr>)> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<(BatchSender, String)>();
    let producer: Producer = Box::new(move |context: RunContext| {
        let (sender, source) = source::channel(CHANNEL_BATCHES);
        let _ = ready_tx.send((sender, context.run_id));
        Box::pin(async move { Ok(Box::new(source) as Box<dyn EntitySource>) })
    });
    let (done_tx, done_rx) = std::sync::mpsc::channel::<Result<RunOutcome>>();
    let task_handle = handle.clone();
    runtime().spawn(async move {
        let _ = done_tx.send(task_handle.ingest_outcome(producer).await);
    });
    // (The same pattern as `wait_detached`, split so that this thread can feed the run.)
    let mut original = None;
    // Either the run asks for entities, or it ended before it could (no run recorded).
    if let Ok((sender, run_id)) = py.detach(move || ready_rx.recv()) {
        let outcome = pump(py, entities, &run_id, &sender);
        original = end_stream(py, sender, outcome);
    }
    let outcome = py
        .detach(move || done_rx.recv())
        .map_err(|_| Error::Ingest("the run was lost (the runtime shut down)".into()))??;
    Ok((outcome, original))
}

pub(super) fn callback_error(py: Python<'_>, error: Error, original: Option<PyErr>) -> PyErr {
    let mapped = match error {
        Error::IngestRejected(_) | Error::IngestUnavailable(_) | Error::Ingest(_) => error,
        other => Error::Ingest(other.to_string()),
    };
    let err = PyErr::from(mapped);
    if let Some(original) = original {
        err.set_cause(py, Some(original));
    }
    err
}

/// The `ingest_callback` a backend is constructed with: `callback(entities=…)` ships entities
/// as a run of its own (`source="callback"`), `callback(error=…)` records a failed run.
/// Callable from any thread, at any time after construction.
#[pyclass(module = "headrace._core", name = "IngestCallback", frozen)]
pub(crate) struct PyIngestCallback {
    pub(super) handle: IngestHandle,
}

#[pymethods]
impl PyIngestCallback {
    /// Exactly one of `entities` (an iterable) or `error` (an exception or message). Raises
    /// `IngestRejected` (permanent), `IngestUnavailable` (transient) or `IngestError`.
    #[pyo3(signature = (entities=None, *, error=None, **kwargs))]
    fn __call__(
        &self,
        py: Python<'_>,
        entities: Option<Bound<'_, PyAny>>,
        error: Option<Bound<'_, PyAny>>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let _ = kwargs;
        match (entities, error) {
            (Some(entities), None) => {
                check_entity_stream(&entities, "ingest_callback")?;
                let (outcome, original) = callback_run(py, &self.handle, &entities)?;
                match outcome.error {
                    None => Ok(()),
                    Some(error) => Err(callback_error(py, error, original)),
                }
            }
            (None, Some(error)) => {
                let reason = if error.is_instance_of::<pyo3::exceptions::PyBaseException>() {
                    describe_exception(&error)
                } else {
                    error.str()?.to_string()
                };
                let handle = self.handle.clone();
                wait_detached(py, async move { handle.fail(reason).await })?;
                Ok(())
            }
            _ => Err(PyTypeError::new_err(
                "ingest_callback takes exactly one of entities (positional or entities=) or error=",
            )),
        }
    }

    /// The policy this callback records runs for.
    #[getter]
    fn policy_name(&self) -> &str {
        &self.handle.target().policy_name
    }

    fn __repr__(&self) -> String {
        format!(
            "<headrace ingest_callback for policy {:?}>",
            self.handle.target().policy_name
        )
    }
}

/// The newer upstream `ingest_sink` protocol handed to backends: `ingest(entities, **kw)` and
/// `record_failure(error, **kw)` record runs like the callback but never raise; they return the
/// recorded `Run` (or `None` when even recording failed, which is logged).
#[pyclass(module = "headrace._core", name = "IngestSink", frozen)]
pub(crate) struct PyIngestSink {
    pub(super) handle: IngestHandle,
}

#[pymethods]
impl PyIngestSink {
    /// Ships `entities` as one callback run and returns it; a failed run is recorded first,
    /// then its `IngestError` subclass is raised (as orb-worker's `ingest_sink.ingest`).
    #[pyo3(signature = (entities, **kwargs))]
    fn ingest(
        &self,
        py: Python<'_>,
        entities: &Bound<'_, PyAny>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<PyRun> {
        let _ = kwargs;
        check_entity_stream(entities, "ingest_sink.ingest")?;
        let (outcome, original) = callback_run(py, &self.handle, entities)?;
        match outcome.error {
            None => Ok(PyRun::from(outcome.run)),
            Some(error) => Err(callback_error(py, error, original)),
        }
    }

    #[pyo3(signature = (error, **kwargs))]
    fn record_failure(
        &self,
        py: Python<'_>,
        error: &Bound<'_, PyAny>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> Option<PyRun> {
        let _ = kwargs;
        let reason = if error.is_instance_of::<pyo3::exceptions::PyBaseException>() {
            describe_exception(error)
        } else {
            error.str().map(|s| s.to_string()).unwrap_or_default()
        };
        let handle = self.handle.clone();
        match wait_detached(py, async move { handle.fail(reason).await }) {
            Ok(run) => Some(PyRun::from(run)),
            Err(e) => {
                log(
                    py,
                    "error",
                    format!(
                        "policy {:?}: ingest_sink.record_failure could not record its run: {e}",
                        self.handle.target().policy_name
                    ),
                );
                None
            }
        }
    }

    #[getter]
    fn policy_name(&self) -> &str {
        &self.handle.target().policy_name
    }
}
