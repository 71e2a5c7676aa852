//! Python classes of the policy runner: `Backend` (subclassed by integrations), `Metadata`,
//! `Config`, `Policy`, `Run`, the sinks, the ingest callback and sink handed to backends, and
//! `PolicyManager`.
//!
//! Backend code always runs on a thread of its own (a dedicated thread per scheduled or manual
//! run, or the caller's thread for the ingest callback) holding the GIL — never on a tokio
//! worker. Entities cross into Rust in batches, each encoded to JSON once, with the GIL released
//! while a batch is handed over.

use crate::bindings::errors::config_error;
use crate::bindings::json;
use crate::bindings::outbox::PyOutboxStore;
use crate::bindings::runtime::{block_on, runtime};
use crate::bindings::state::PyStateBackend;
use crate::error::{Error, Result};
use crate::runner::executor::RunOutcome;
use crate::runner::source::{self, BatchSender};
use crate::runner::{
    BackendLoader, BackendMetadata, BoxFuture, Chunk, DEFAULT_CHUNK_BYTES,
    DEFAULT_MAX_RUNS_PER_POLICY, DryRunSink, EntitySource, IngestHandle, ManagerConfig,
    MemoryRunStore, NullSink, OutboxSink, PolicyBackend, PolicyManager, PolicySpec, Producer,
    ResolvedBackend, Run, RunContext, RunStore, Sink, StateRunStore, TickOutcome, parse_policies,
    parse_policies_yaml,
};
use crate::state::WriteBehindConfig;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pyo3::exceptions::{PyAttributeError, PyNotImplementedError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyString, PyTuple, PyType};
use serde_json::{Map, Value};
use std::ffi::CString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Entities per batch handed from a backend's thread to the run.
const BATCH_ENTITIES: usize = 1024;
/// Encoded bytes after which a batch is handed over early.
const BATCH_BYTES: usize = 1024 * 1024;
/// Batches a backend may run ahead of the chunker (bounds a run's memory).
const CHANNEL_BATCHES: usize = 4;
/// Python logger of operator-facing runner messages.
const LOGGER: &str = "headrace.runner";

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyBackend>()?;
    m.add_class::<PyMetadata>()?;
    m.add_class::<PyConfig>()?;
    m.add_class::<PyPolicy>()?;
    m.add_class::<PyRun>()?;
    m.add_class::<PyIngestCallback>()?;
    m.add_class::<PyIngestSink>()?;
    m.add_class::<PyOutboxSink>()?;
    m.add_class::<PyDryRunSink>()?;
    m.add_class::<PyNullSink>()?;
    m.add_class::<PyPolicyManager>()?;
    m.add_function(wrap_pyfunction!(list_runs, m)?)?;
    m.add_function(wrap_pyfunction!(next_cron_time, m)?)?;
    m.add("DEFAULT_CHUNK_BYTES", DEFAULT_CHUNK_BYTES)?;
    m.add("DEFAULT_MAX_RUNS_PER_POLICY", DEFAULT_MAX_RUNS_PER_POLICY)?;
    Ok(())
}

// ------------------------------------------------------------------ errors across the seam

/// `Type: message` of a Python exception.
fn describe_exception(py: Python<'_>, value: &Bound<'_, PyAny>) -> String {
    let type_name = value
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "Exception".into());
    let message = value.str().map(|s| s.to_string()).unwrap_or_default();
    let _ = py;
    if message.is_empty() {
        type_name
    } else {
        format!("{type_name}: {message}")
    }
}

/// The core error a Python exception stands for: headrace errors keep their class; other
/// exceptions are classified by a `retryable` attribute when they have one (True: transient,
/// False: permanent), else they are unexpected (`Ingest`).
fn error_from_py(py: Python<'_>, err: &PyErr) -> Error {
    let value = err.value(py);
    let code: Option<String> = value.getattr("code").ok().and_then(|c| c.extract().ok());
    let is_headrace = crate::bindings::errors::error_class(py, "HeadraceError")
        .and_then(|class| value.is_instance(&class))
        .unwrap_or(false);
    if is_headrace {
        let message = value.str().map(|s| s.to_string()).unwrap_or_default();
        match code.as_deref() {
            Some("config_error") => return Error::Config(message),
            Some("store_error") => return Error::Store(message),
            Some("store_unavailable") => return Error::StoreUnavailable(message),
            Some("not_found") => return Error::NotFound(message),
            Some("invocation_not_found") => return Error::InvocationNotFound(message),
            Some("invalid_status_transition") => return Error::InvalidStatusTransition(message),
            Some("ingest_rejected") => return Error::IngestRejected(message),
            Some("ingest_unavailable") => return Error::IngestUnavailable(message),
            Some("ingest_error") => return Error::Ingest(message),
            _ => {}
        }
    }
    let described = describe_exception(py, value);
    match value
        .getattr("retryable")
        .ok()
        .and_then(|r| r.extract::<bool>().ok())
    {
        Some(true) => Error::IngestUnavailable(described),
        Some(false) => Error::IngestRejected(described),
        None => Error::Ingest(described),
    }
}

/// A `ConfigError` about loading a policy, keeping headrace errors as they are.
fn load_error(py: Python<'_>, err: &PyErr, what: &str) -> Error {
    match error_from_py(py, err) {
        Error::Config(m) => Error::Config(m),
        _ => Error::Config(format!("{what}: {}", describe_exception(py, err.value(py)))),
    }
}

fn logger(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    static LOGGING: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    LOGGING
        .get_or_try_init(py, || {
            py.import("logging")?
                .call_method1("getLogger", (LOGGER,))
                .map(Bound::unbind)
        })
        .map(|l| l.bind(py).clone())
}

fn log(py: Python<'_>, level: &str, message: String) {
    if let Ok(logger) = logger(py) {
        let _ = logger.call_method1(level, (message,));
    }
}

// ------------------------------------------------------------------ Metadata, Config, Policy

/// A backend's identity.
#[pyclass(
    module = "headrace._core",
    name = "Metadata",
    frozen,
    get_all,
    from_py_object
)]
#[derive(Clone, PartialEq)]
pub(crate) struct PyMetadata {
    name: String,
    app_name: String,
    app_version: String,
    description: Option<String>,
}

impl PyMetadata {
    fn core(&self) -> BackendMetadata {
        BackendMetadata {
            name: self.name.clone(),
            app_name: self.app_name.clone(),
            app_version: self.app_version.clone(),
            description: self.description.clone(),
        }
    }
}

#[pymethods]
impl PyMetadata {
    #[new]
    #[pyo3(signature = (name, app_name, app_version, description=None))]
    fn new(
        name: String,
        app_name: String,
        app_version: String,
        description: Option<String>,
    ) -> PyResult<Self> {
        for (field, value) in [
            ("name", &name),
            ("app_name", &app_name),
            ("app_version", &app_version),
        ] {
            if value.trim().is_empty() {
                return Err(config_error(format!(
                    "Metadata.{field} must be a non-empty string"
                )));
            }
        }
        Ok(PyMetadata {
            name,
            app_name,
            app_version,
            description,
        })
    }

    /// The fields as a dict.
    fn model_dump<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("name", &self.name)?;
        d.set_item("app_name", &self.app_name)?;
        d.set_item("app_version", &self.app_version)?;
        d.set_item("description", &self.description)?;
        Ok(d)
    }

    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.model_dump(py)
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<PyMetadata>().is_ok_and(|o| *o.get() == *self)
    }

    fn __hash__(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (
            &self.name,
            &self.app_name,
            &self.app_version,
            &self.description,
        )
            .hash(&mut h);
        h.finish()
    }

    fn __repr__(&self) -> String {
        format!(
            "Metadata(name={:?}, app_name={:?}, app_version={:?}, description={:?})",
            self.name, self.app_name, self.app_version, self.description
        )
    }
}

/// Reads a backend's metadata from whatever `describe()` / `setup()` returned: a `Metadata`, a
/// dict, or any object with `name`, `app_name` and `app_version` attributes (orb-worker's own
/// pydantic `Metadata` included).
fn metadata_from_py(value: &Bound<'_, PyAny>, backend: &str) -> Result<BackendMetadata> {
    if let Ok(m) = value.cast::<PyMetadata>() {
        return Ok(m.get().core());
    }
    let field = |name: &str| -> Option<Bound<'_, PyAny>> {
        if let Ok(d) = value.cast::<PyDict>() {
            d.get_item(name).ok().flatten()
        } else {
            value.getattr(name).ok()
        }
    };
    let mut problems = Vec::new();
    let mut text = |name: &str, required: bool| -> Option<String> {
        match field(name) {
            Some(v) if v.is_none() && !required => None,
            Some(v) => match v.extract::<String>() {
                Ok(s) if !s.trim().is_empty() || !required => Some(s),
                _ => {
                    problems.push(format!("{name} must be a non-empty string"));
                    None
                }
            },
            None if required => {
                problems.push(format!("{name} is missing"));
                None
            }
            None => None,
        }
    };
    let name = text("name", true);
    let app_name = text("app_name", true);
    let app_version = text("app_version", true);
    let description = text("description", false);
    match (name, app_name, app_version) {
        (Some(name), Some(app_name), Some(app_version)) if problems.is_empty() => {
            Ok(BackendMetadata {
                name,
                app_name,
                app_version,
                description,
            })
        }
        _ => Err(Error::config(format!(
            "backend {backend}: its metadata is invalid ({})",
            problems.join("; ")
        ))),
    }
}

/// A policy's `config` section: `package`, `schedule` and any extra key as attributes.
#[pyclass(module = "headrace._core", name = "Config", frozen)]
pub(crate) struct PyConfig {
    package: String,
    schedule: Option<String>,
    extra: Py<PyDict>,
}

#[pymethods]
impl PyConfig {
    #[new]
    #[pyo3(signature = (package, schedule=None, **extra))]
    fn new(
        py: Python<'_>,
        package: String,
        schedule: Option<String>,
        extra: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        Ok(PyConfig {
            package,
            schedule,
            extra: extra
                .map(|d| d.copy())
                .transpose()?
                .unwrap_or_else(|| PyDict::new(py))
                .unbind(),
        })
    }

    #[getter]
    fn package(&self) -> &str {
        &self.package
    }

    #[getter]
    fn schedule(&self) -> Option<&str> {
        self.schedule.as_deref()
    }

    /// The extra keys (everything but `package` and `schedule`), as a new dict.
    #[getter]
    fn extra<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.extra.bind(py).copy()
    }

    fn __getattr__(&self, py: Python<'_>, name: &str) -> PyResult<Py<PyAny>> {
        match self.extra.bind(py).get_item(name)? {
            Some(v) => Ok(v.unbind()),
            None => Err(PyAttributeError::new_err(format!(
                "'Config' object has no attribute {name:?} (the policy's config has no such key)"
            ))),
        }
    }

    /// `config[key]` for any key, `package` and `schedule` included.
    fn __getitem__(&self, py: Python<'_>, key: &str) -> PyResult<Py<PyAny>> {
        self.model_dump(py)?
            .get_item(key)?
            .map(Bound::unbind)
            .ok_or_else(|| pyo3::exceptions::PyKeyError::new_err(key.to_string()))
    }

    #[pyo3(signature = (key, default=None))]
    fn get(
        &self,
        py: Python<'_>,
        key: &str,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Option<Py<PyAny>>> {
        Ok(self
            .model_dump(py)?
            .get_item(key)?
            .map(Bound::unbind)
            .or(default))
    }

    /// `{"package": …, "schedule": …, **extra}`.
    fn model_dump<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("package", &self.package)?;
        d.set_item("schedule", &self.schedule)?;
        d.update(self.extra.bind(py).as_mapping())?;
        Ok(d)
    }

    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.model_dump(py)
    }

    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<bool> {
        match other.cast::<PyConfig>() {
            Ok(o) => self.model_dump(py)?.eq(o.get().model_dump(py)?),
            Err(_) => Ok(false),
        }
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let mut parts = vec![
            format!("package={:?}", self.package),
            format!("schedule={:?}", self.schedule),
        ];
        for (k, v) in self.extra.bind(py).iter() {
            parts.push(format!("{}={}", k.str()?, v.repr()?));
        }
        Ok(format!("Config({})", parts.join(", ")))
    }
}

/// A configured policy, as a backend's `run()` receives it.
#[pyclass(module = "headrace._core", name = "Policy", frozen)]
pub(crate) struct PyPolicy {
    config: Py<PyConfig>,
    scope: Py<PyAny>,
}

#[pymethods]
impl PyPolicy {
    #[new]
    #[pyo3(signature = (config, scope=None))]
    fn new(py: Python<'_>, config: &Bound<'_, PyAny>, scope: Option<Py<PyAny>>) -> PyResult<Self> {
        let config = if let Ok(c) = config.cast::<PyConfig>() {
            c.clone().unbind()
        } else if let Ok(d) = config.cast::<PyDict>() {
            let d = d.copy()?;
            let package: String = d
                .get_item("package")?
                .ok_or_else(|| config_error("Policy config needs a 'package'"))?
                .extract()?;
            let schedule: Option<String> =
                d.get_item("schedule")?.map(|s| s.extract()).transpose()?;
            d.del_item("package")?;
            if d.contains("schedule")? {
                d.del_item("schedule")?;
            }
            Py::new(py, PyConfig::new(py, package, schedule, Some(&d))?)?
        } else {
            return Err(PyTypeError::new_err(
                "Policy(config=…) takes a Config or a dict",
            ));
        };
        Ok(PyPolicy {
            config,
            scope: scope.unwrap_or_else(|| py.None()),
        })
    }

    #[getter]
    fn config(&self, py: Python<'_>) -> Py<PyConfig> {
        self.config.clone_ref(py)
    }

    #[getter]
    fn scope(&self, py: Python<'_>) -> Py<PyAny> {
        self.scope.clone_ref(py)
    }

    fn model_dump<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("config", self.config.get().model_dump(py)?)?;
        d.set_item("scope", self.scope.bind(py))?;
        Ok(d)
    }

    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.model_dump(py)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Policy(config={}, scope={})",
            self.config.get().__repr__(py)?,
            self.scope.bind(py).repr()?
        ))
    }
}

fn policy_object(py: Python<'_>, spec: &PolicySpec) -> PyResult<Py<PyPolicy>> {
    let extra = json::loads(py, &Value::Object(spec.config.extra.clone()).to_string())?;
    let extra = extra.cast_into::<PyDict>()?;
    let config = Py::new(
        py,
        PyConfig {
            package: spec.config.package.clone(),
            schedule: spec.config.schedule.clone(),
            extra: extra.unbind(),
        },
    )?;
    let scope = json::loads(py, &spec.scope.to_string())?.unbind();
    Py::new(py, PyPolicy { config, scope })
}

// ------------------------------------------------------------------ Backend

/// Base class of integrations (orb-worker's `Backend`).
///
/// Subclasses implement `describe()` (a classmethod returning `Metadata`) and
/// `run(policy_name, policy, **kwargs)` returning an iterable of entities. They are constructed
/// once per policy with `ingest_callback=` and `ingest_sink=` already valid.
#[pyclass(module = "headrace._core", name = "Backend", subclass, dict)]
pub(crate) struct PyBackend;

fn warn(py: Python<'_>, category: &Bound<'_, PyAny>, message: String) -> PyResult<()> {
    let message = CString::new(message).unwrap_or_default();
    PyErr::warn(py, category, &message, 1)
}

/// The class attribute `name` as stored in the first class of `cls`'s MRO defining it, and that
/// class.
fn find_in_mro<'py>(
    cls: &Bound<'py, PyType>,
    name: &str,
) -> PyResult<Option<(Bound<'py, PyAny>, Bound<'py, PyAny>)>> {
    for klass in cls.getattr("__mro__")?.try_iter()? {
        let klass = klass?;
        let dict = klass.getattr("__dict__")?;
        if dict.contains(name)? {
            return Ok(Some((dict.get_item(name)?, klass)));
        }
    }
    Ok(None)
}

/// Whether a raw class attribute can be called on the class itself (`classmethod`,
/// `staticmethod`, or a classmethod defined in Rust).
fn is_class_callable(py: Python<'_>, raw: &Bound<'_, PyAny>) -> PyResult<bool> {
    let builtins = py.import("builtins")?;
    if raw.is_instance(&builtins.getattr("classmethod")?)?
        || raw.is_instance(&builtins.getattr("staticmethod")?)?
    {
        return Ok(true);
    }
    let type_name = raw.get_type().name()?.to_string();
    Ok(type_name == "classmethod_descriptor")
}

#[pymethods]
impl PyBackend {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        PyBackend
    }

    /// Keeps `ingest_callback` and `ingest_sink` as attributes; other keyword arguments are
    /// accepted for forward compatibility.
    #[pyo3(signature = (*, ingest_callback=None, ingest_sink=None, **kwargs))]
    fn __init__(
        slf: &Bound<'_, Self>,
        ingest_callback: Option<Bound<'_, PyAny>>,
        ingest_sink: Option<Bound<'_, PyAny>>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let _ = kwargs;
        slf.setattr("ingest_callback", ingest_callback)?;
        slf.setattr("ingest_sink", ingest_sink)?;
        Ok(())
    }

    /// The backend's `Metadata`, read without constructing it. Subclasses must implement it.
    #[classmethod]
    fn describe(cls: &Bound<'_, PyType>) -> PyResult<Py<PyAny>> {
        Err(PyNotImplementedError::new_err(format!(
            "{} does not implement describe(): define `@classmethod def describe(cls) -> Metadata`",
            cls.qualname()?
        )))
    }

    /// Produces the policy's entities. Subclasses must implement it.
    #[pyo3(signature = (policy_name, policy, **kwargs))]
    fn run(
        slf: &Bound<'_, Self>,
        policy_name: &str,
        policy: &Bound<'_, PyAny>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let _ = (policy, kwargs);
        Err(PyNotImplementedError::new_err(format!(
            "{} does not implement run() (policy {policy_name:?})",
            slf.get_type().qualname()?
        )))
    }

    /// Warns integration authors at class definition: `RuntimeWarning` when `describe` is not a
    /// classmethod, `DeprecationWarning` when `setup()` is overridden without a `describe()`
    /// classmethod.
    #[classmethod]
    #[pyo3(signature = (**kwargs))]
    fn __init_subclass__(
        cls: &Bound<'_, PyType>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let _ = kwargs;
        let py = cls.py();
        let name = cls.qualname()?.to_string();
        let own = cls.getattr("__dict__")?;
        let describe = find_in_mro(cls, "describe")?;
        let base = py.get_type::<PyBackend>();
        let (describe_ok, describe_is_base) = match &describe {
            Some((raw, owner)) => (is_class_callable(py, raw)?, owner.is(&base)),
            None => (false, true),
        };
        if own.contains("describe")? && !describe_ok {
            let category = py.import("builtins")?.getattr("RuntimeWarning")?;
            warn(
                py,
                &category,
                format!(
                    "{name}.describe must be a @classmethod: the runner reads a backend's metadata \
                     from its class, before constructing it"
                ),
            )?;
        }
        if own.contains("setup")? && (describe_is_base || !describe_ok) {
            let category = py.import("builtins")?.getattr("DeprecationWarning")?;
            warn(
                py,
                &category,
                format!(
                    "{name} overrides the deprecated Backend.setup() without a describe() \
                     classmethod: implement `@classmethod def describe(cls) -> Metadata` instead. \
                     The setup() fallback will be removed in headrace 2.0."
                ),
            )?;
        }
        Ok(())
    }
}

// ------------------------------------------------------------------ entities into Rust

/// Why feeding a run stopped early.
enum PumpEnd {
    /// The entities (or the call producing them) failed; the original exception when there
    /// was one.
    Failed(Error, Option<PyErr>),
    /// The run stopped reading (it already failed).
    Stopped,
}

/// Iterates `iterable` on this thread (holding the GIL), encoding each entity for `run_id`
/// and handing batches to the run with the GIL released. A failure delivers the entities
/// encoded before it, then ends the stream with the error.
fn pump(
    py: Python<'_>,
    iterable: &Bound<'_, PyAny>,
    run_id: &str,
    sender: &BatchSender,
) -> std::result::Result<(), PumpEnd> {
    let iterator = iterable.try_iter().map_err(|e| {
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
    let mut batch: Vec<String> = Vec::with_capacity(BATCH_ENTITIES);
    let mut batch_bytes = 0usize;
    let mut buffer: Vec<u8> = Vec::with_capacity(1024);
    let send = |batch: Vec<String>| -> std::result::Result<(), PumpEnd> {
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
                    Error::Ingest(describe_exception(py, e.value(py))),
                    Some(e),
                ));
                break;
            }
        };
        buffer.clear();
        if let Err(message) = json::encode_entity(&mut buffer, &item, run_id) {
            failure = Some(PumpEnd::Failed(
                Error::IngestRejected(format!(
                    "entity {position} is not JSON-serialisable: {message}"
                )),
                None,
            ));
            break;
        }
        batch_bytes += buffer.len();
        let capacity = buffer.capacity();
        let encoded = std::mem::replace(&mut buffer, Vec::with_capacity(capacity.min(64 * 1024)));
        batch.push(String::from_utf8(encoded).expect("the encoder writes UTF-8"));
        if batch.len() >= BATCH_ENTITIES || batch_bytes >= BATCH_BYTES {
            send(std::mem::replace(
                &mut batch,
                Vec::with_capacity(BATCH_ENTITIES),
            ))?;
            batch_bytes = 0;
        }
    }
    if !batch.is_empty() {
        send(batch)?;
    }
    match failure {
        Some(end) => Err(end),
        None => Ok(()),
    }
}

/// Ends the stream after [`pump`]: finished, failed (with the error), or nothing to do.
fn end_stream(
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
fn wait_detached<T: Send + 'static>(
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
fn callback_run(
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

fn callback_error(py: Python<'_>, error: Error, original: Option<PyErr>) -> PyErr {
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
    handle: IngestHandle,
}

#[pymethods]
impl PyIngestCallback {
    /// Exactly one of `entities` (an iterable) or `error` (an exception or message). Raises
    /// `IngestRejected` (permanent), `IngestUnavailable` (transient) or `IngestError`.
    #[pyo3(signature = (*, entities=None, error=None, **kwargs))]
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
                let (outcome, original) = callback_run(py, &self.handle, &entities)?;
                match outcome.error {
                    None => Ok(()),
                    Some(error) => Err(callback_error(py, error, original)),
                }
            }
            (None, Some(error)) => {
                let reason = if error.is_instance_of::<pyo3::exceptions::PyBaseException>() {
                    describe_exception(py, &error)
                } else {
                    error.str()?.to_string()
                };
                let handle = self.handle.clone();
                wait_detached(py, async move { handle.fail(reason).await })?;
                Ok(())
            }
            _ => Err(PyValueError::new_err(
                "ingest_callback takes exactly one of entities= or error=",
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
    handle: IngestHandle,
}

#[pymethods]
impl PyIngestSink {
    #[pyo3(signature = (entities, **kwargs))]
    fn ingest(
        &self,
        py: Python<'_>,
        entities: &Bound<'_, PyAny>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> Option<PyRun> {
        let _ = kwargs;
        match callback_run(py, &self.handle, entities) {
            Ok((outcome, _)) => Some(PyRun::from(outcome.run)),
            Err(e) => {
                log(
                    py,
                    "error",
                    format!(
                        "policy {:?}: ingest_sink.ingest could not record its run: {e}",
                        self.handle.target().policy_name
                    ),
                );
                None
            }
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
            describe_exception(py, error)
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

// ------------------------------------------------------------------ Run

/// One recorded run of a policy.
#[pyclass(module = "headrace._core", name = "Run", frozen)]
pub(crate) struct PyRun {
    run: Run,
    metadata: PyOnceLock<Py<PyAny>>,
}

impl From<Run> for PyRun {
    fn from(run: Run) -> Self {
        PyRun {
            run,
            metadata: PyOnceLock::new(),
        }
    }
}

#[pymethods]
impl PyRun {
    #[getter]
    fn id(&self) -> &str {
        &self.run.id
    }
    #[getter]
    fn policy_id(&self) -> &str {
        &self.run.policy_id
    }
    #[getter]
    fn status(&self) -> &'static str {
        self.run.status.as_str()
    }
    #[getter]
    fn reason(&self) -> Option<&str> {
        self.run.reason.as_deref()
    }
    #[getter]
    fn entity_count(&self) -> u64 {
        self.run.entity_count
    }
    #[getter]
    fn metadata<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.metadata
            .get_or_try_init(py, || {
                json::loads(py, &Value::Object(self.run.metadata.clone()).to_string())
                    .map(Bound::unbind)
            })
            .map(|m| m.bind(py).clone())
    }
    #[getter]
    fn source(&self) -> &'static str {
        self.run.source.as_str()
    }
    #[getter]
    fn created_at(&self) -> DateTime<Utc> {
        self.run.created_at
    }
    #[getter]
    fn updated_at(&self) -> DateTime<Utc> {
        self.run.updated_at
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<PyRun>().is_ok_and(|o| o.get().run == self.run)
    }

    fn __repr__(&self) -> String {
        format!(
            "Run(id={:?}, policy_id={:?}, status={:?}, source={:?}, entity_count={}, reason={})",
            self.run.id,
            self.run.policy_id,
            self.run.status.as_str(),
            self.run.source.as_str(),
            self.run.entity_count,
            self.run
                .reason
                .as_ref()
                .map_or_else(|| "None".to_string(), |r| format!("{r:?}"))
        )
    }
}

// ------------------------------------------------------------------ sinks

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
struct PyObjectSink {
    object: Arc<Py<PyAny>>,
    has_record_failure: bool,
    repr: String,
}

impl std::fmt::Debug for PyObjectSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PyObjectSink({})", self.repr)
    }
}

fn metadata_dict<'py>(
    py: Python<'py>,
    metadata: &Map<String, Value>,
) -> PyResult<Bound<'py, PyAny>> {
    json::loads(py, &Value::Object(metadata.clone()).to_string())
}

#[async_trait]
impl Sink for PyObjectSink {
    async fn ingest(&self, chunk: Chunk) -> Result<()> {
        let object = self.object.clone();
        tokio::task::spawn_blocking(move || {
            Python::attach(|py| {
                let call = || -> PyResult<()> {
                    let entities = json::loads(py, chunk.entities_json())?;
                    let kwargs = PyDict::new(py);
                    kwargs.set_item("metadata", metadata_dict(py, &chunk.metadata)?)?;
                    object
                        .bind(py)
                        .call_method("ingest", (entities,), Some(&kwargs))?;
                    Ok(())
                };
                call().map_err(|e| error_from_py(py, &e))
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

fn core_sink(sink: &Bound<'_, PyAny>) -> PyResult<Arc<dyn Sink>> {
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
    let has_record_failure = sink
        .getattr("record_failure")
        .is_ok_and(|r| r.is_callable());
    Ok(Arc::new(PyObjectSink {
        object: Arc::new(sink.clone().unbind()),
        has_record_failure,
        repr: sink.repr()?.to_string(),
    }))
}

// ------------------------------------------------------------------ backends in the manager

fn runner_module(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    py.import("headrace.runner")
}

struct PyLoader;

struct PyResolved {
    name: String,
    class: Arc<Py<PyAny>>,
    metadata: BackendMetadata,
    policy: Arc<Py<PyPolicy>>,
}

struct PyPolicyBackend {
    name: String,
    instance: Arc<Py<PyAny>>,
    policy: Arc<Py<PyPolicy>>,
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Ingest(format!("a backend thread failed: {e}")))?
}

#[async_trait]
impl BackendLoader for PyLoader {
    async fn resolve(&self, spec: &PolicySpec) -> Result<Box<dyn ResolvedBackend>> {
        let spec = spec.clone();
        blocking(move || {
            Python::attach(|py| {
                let package = spec.config.package.clone();
                let found = runner_module(py)
                    .and_then(|m| m.call_method1("_resolve_backend", (&package,)))
                    .map_err(|e| load_error(py, &e, &format!("cannot load backend {package:?}")))?;
                let (class, metadata): (Bound<'_, PyAny>, Bound<'_, PyAny>) = found
                    .extract()
                    .map_err(|e| load_error(py, &e, "unexpected _resolve_backend result"))?;
                let class_name = class
                    .getattr("__qualname__")
                    .map(|n| n.to_string())
                    .unwrap_or_default();
                let metadata = metadata_from_py(&metadata, &class_name)?;
                let policy = policy_object(py, &spec)
                    .map_err(|e| load_error(py, &e, "cannot build the Policy object"))?;
                Ok(Box::new(PyResolved {
                    name: spec.name.clone(),
                    class: Arc::new(class.unbind()),
                    metadata,
                    policy: Arc::new(policy),
                }) as Box<dyn ResolvedBackend>)
            })
        })
        .await
    }
}

#[async_trait]
impl ResolvedBackend for PyResolved {
    fn metadata(&self) -> &BackendMetadata {
        &self.metadata
    }

    async fn construct(self: Box<Self>, ingest: IngestHandle) -> Result<Arc<dyn PolicyBackend>> {
        let PyResolved {
            name,
            class,
            policy,
            ..
        } = *self;
        blocking(move || {
            Python::attach(|py| {
                let callback = Py::new(
                    py,
                    PyIngestCallback {
                        handle: ingest.clone(),
                    },
                )
                .map_err(|e| error_from_py(py, &e))?;
                let sink = Py::new(py, PyIngestSink { handle: ingest })
                    .map_err(|e| error_from_py(py, &e))?;
                let instance = runner_module(py)
                    .and_then(|m| {
                        m.call_method1("_construct_backend", (class.bind(py), callback, sink))
                    })
                    .map_err(|e| {
                        load_error(
                            py,
                            &e,
                            &format!("constructing backend {} failed", class.bind(py)),
                        )
                    })?;
                Ok(Arc::new(PyPolicyBackend {
                    name,
                    instance: Arc::new(instance.unbind()),
                    policy,
                }) as Arc<dyn PolicyBackend>)
            })
        })
        .await
    }
}

impl PolicyBackend for PyPolicyBackend {
    fn produce(&self, context: RunContext) -> BoxFuture<'static, Result<Box<dyn EntitySource>>> {
        let (sender, source) = source::channel(CHANNEL_BATCHES);
        let instance = self.instance.clone();
        let policy = self.policy.clone();
        let name = self.name.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("headrace-run-{}", self.name))
            .spawn(move || {
                Python::attach(|py| {
                    let produced = instance
                        .bind(py)
                        .call_method1("run", (&name, policy.bind(py)));
                    let outcome = match produced {
                        Ok(iterable) => pump(py, &iterable, &context.run_id, &sender),
                        Err(e) => Err(PumpEnd::Failed(
                            Error::Ingest(describe_exception(py, e.value(py))),
                            Some(e),
                        )),
                    };
                    end_stream(py, sender, outcome);
                })
            });
        Box::pin(async move {
            spawned
                .map_err(|e| Error::Ingest(format!("cannot start the backend's thread: {e}")))?;
            Ok(Box::new(source) as Box<dyn EntitySource>)
        })
    }
}

// ------------------------------------------------------------------ PolicyManager

/// The recorded runs in the database at `url` (of `policy`, or of every policy), newest first,
/// at most `limit` per policy.
#[pyfunction]
#[pyo3(signature = (url, policy=None, *, limit=20))]
fn list_runs(
    py: Python<'_>,
    url: &str,
    policy: Option<String>,
    limit: usize,
) -> PyResult<Vec<PyRun>> {
    let store = run_store(
        py,
        Some(PyString::new(py, url).as_any()),
        DEFAULT_MAX_RUNS_PER_POLICY,
    )?;
    let runs = block_on(py, async move {
        let policies = match policy {
            Some(p) => vec![p],
            None => store.policy_ids().await?,
        };
        let mut all = Vec::new();
        for p in policies {
            all.extend(store.runs(&p).await?.into_iter().take(limit));
        }
        Ok(all)
    })?;
    Ok(runs.into_iter().map(PyRun::from).collect())
}

/// The run store `state` selects: `None` or `"memory://"` keep runs in this process; a
/// `StateBackend` or a database URL (`sqlite:…`, `postgres://…`) keep them in the state backend
/// (durable, shared by every process on that database).
fn run_store(
    py: Python<'_>,
    state: Option<&Bound<'_, PyAny>>,
    max_runs: usize,
) -> PyResult<Arc<dyn RunStore>> {
    let state = match state {
        None => return Ok(Arc::new(MemoryRunStore::new(max_runs)?)),
        Some(s) if s.is_none() => return Ok(Arc::new(MemoryRunStore::new(max_runs)?)),
        Some(s) => s,
    };
    if let Ok(backend) = state.cast::<PyStateBackend>() {
        return Ok(Arc::new(StateRunStore::new(
            backend.get().wb.clone(),
            max_runs,
        )?));
    }
    let url: String = state.extract().map_err(|_| {
        config_error(format!(
            "state= takes a StateBackend or a database URL (sqlite:///path.db, postgres://…, \
             memory://), got {}",
            state.repr().map(|r| r.to_string()).unwrap_or_default()
        ))
    })?;
    if let crate::db::DatabaseUrl::Memory = crate::db::DatabaseUrl::parse(&url)? {
        return Ok(Arc::new(MemoryRunStore::new(max_runs)?));
    }
    let wb = block_on(py, async move {
        crate::state::connect(&url, WriteBehindConfig::default()).await
    })?;
    Ok(Arc::new(StateRunStore::new(Arc::new(wb), max_runs)?))
}

/// Runs configured policies: loads each backend, schedules it (5-field cron, or once now), and
/// records every run.
#[pyclass(module = "headrace._core", name = "PolicyManager", frozen, subclass)]
pub(crate) struct PyPolicyManager {
    manager: PolicyManager,
    sink: Py<PyAny>,
    state: Py<PyAny>,
}

fn document_from_py(py: Python<'_>, policies: &Bound<'_, PyAny>) -> PyResult<Vec<PolicySpec>> {
    if let Ok(text) = policies.cast::<PyString>() {
        return Ok(parse_policies_yaml(
            text.to_str()?,
            &crate::runner::config::process_env,
        )?);
    }
    if let Ok(bytes) = policies.cast::<PyBytes>() {
        let text = std::str::from_utf8(bytes.as_bytes())
            .map_err(|e| config_error(format!("policies YAML is not UTF-8: {e}")))?;
        return Ok(parse_policies_yaml(
            text,
            &crate::runner::config::process_env,
        )?);
    }
    if policies.cast::<PyDict>().is_ok() {
        let text = json::dumps(policies, "policies")?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| config_error(format!("policies are not JSON-like: {e}")))?;
        let _ = py;
        return Ok(parse_policies(value, &crate::runner::config::process_env)?);
    }
    Err(config_error(format!(
        "start_policies takes YAML text (str or bytes) or a dict, got {}",
        policies.get_type().name()?
    )))
}

#[pymethods]
impl PyPolicyManager {
    #[new]
    #[pyo3(signature = (state=None, sink=None, *, chunk_bytes=DEFAULT_CHUNK_BYTES, max_runs_per_policy=DEFAULT_MAX_RUNS_PER_POLICY))]
    fn new(
        py: Python<'_>,
        state: Option<Bound<'_, PyAny>>,
        sink: Option<Bound<'_, PyAny>>,
        chunk_bytes: usize,
        max_runs_per_policy: usize,
    ) -> PyResult<Self> {
        let Some(sink) = sink.filter(|s| !s.is_none()) else {
            return Err(config_error(
                "PolicyManager needs a sink: OutboxSink(store), DryRunSink(directory), or any \
                 object with ingest(entities, *, metadata)",
            ));
        };
        let store = run_store(py, state.as_ref(), max_runs_per_policy)?;
        let core = core_sink(&sink)?;
        let manager = PolicyManager::new(
            store,
            core,
            Arc::new(PyLoader),
            ManagerConfig {
                chunk_bytes,
                ..ManagerConfig::default()
            },
        )?;
        Ok(PyPolicyManager {
            manager,
            sink: sink.unbind(),
            state: state.map_or_else(|| py.None(), Bound::unbind),
        })
    }

    /// Policy executions counted in this process: `(policy, completed, failed, ticks_skipped,
    /// run_seconds)` per policy, `run_seconds` being the backend time of its finished runs.
    fn metrics_snapshot(&self) -> Vec<(String, u64, u64, u64, f64)> {
        self.manager
            .executor()
            .metrics()
            .snapshot()
            .into_iter()
            .map(|(policy, c)| {
                (
                    policy,
                    c.completed,
                    c.failed,
                    c.ticks_skipped,
                    c.run_seconds,
                )
            })
            .collect()
    }

    /// Loads, constructs and schedules every policy of `policies` (YAML text or a dict); when
    /// one fails, none of them starts. Returns their names. With `schedule=False` nothing is
    /// scheduled: run them with `run_now`.
    #[pyo3(signature = (policies, *, schedule=true))]
    fn start_policies(
        &self,
        py: Python<'_>,
        policies: &Bound<'_, PyAny>,
        schedule: bool,
    ) -> PyResult<Vec<String>> {
        let specs = document_from_py(py, policies)?;
        let manager = self.manager.clone();
        block_on(
            py,
            async move { manager.start_policies(specs, schedule).await },
        )
    }

    /// Stops scheduling `name`; a run in flight finishes and is recorded.
    fn delete_policy(&self, py: Python<'_>, name: String) -> PyResult<()> {
        let manager = self.manager.clone();
        block_on(py, async move { manager.delete_policy(&name).await })
    }

    /// Runs `name` now and returns the finished run (completed or failed).
    fn run_now(&self, py: Python<'_>, name: String) -> PyResult<PyRun> {
        let manager = self.manager.clone();
        block_on(py, async move { manager.run_now(&name).await }).map(PyRun::from)
    }

    /// The recorded runs of `name`, newest first.
    fn runs(&self, py: Python<'_>, name: String) -> PyResult<Vec<PyRun>> {
        let manager = self.manager.clone();
        let runs = block_on(py, async move { manager.runs(&name).await })?;
        Ok(runs.into_iter().map(PyRun::from).collect())
    }

    /// Stops every schedule and waits up to `timeout` seconds for runs in flight; returns
    /// whether they all finished.
    #[pyo3(signature = (timeout=30.0))]
    fn stop(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        let timeout = seconds(timeout)?;
        let manager = self.manager.clone();
        block_on(py, async move { Ok(manager.stop(timeout).await) })
    }

    /// Waits up to `timeout` seconds until no run is in flight; returns whether that happened.
    #[pyo3(signature = (timeout=30.0))]
    fn wait_idle(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        let timeout = seconds(timeout)?;
        let manager = self.manager.clone();
        block_on(py, async move { Ok(manager.wait_idle(timeout).await) })
    }

    /// Names of the running policies, sorted.
    #[getter]
    fn policies(&self) -> Vec<String> {
        self.manager.policy_names()
    }

    /// The `Policy` a running policy was started with.
    fn policy(&self, py: Python<'_>, name: &str) -> PyResult<Py<PyPolicy>> {
        policy_object(py, &self.manager.policy(name)?)
    }

    /// Whether a scheduled or manual run of `name` is in flight.
    fn is_running(&self, name: &str) -> PyResult<bool> {
        Ok(self.manager.is_running(name)?)
    }

    /// Runs in flight (scheduled, manual and callback).
    #[getter]
    fn inflight(&self) -> usize {
        self.manager.inflight()
    }

    /// The effective chunk bound (the sink's own limit may lower `chunk_bytes`).
    #[getter]
    fn chunk_bytes(&self) -> usize {
        self.manager.executor().chunk_bytes()
    }

    #[getter]
    fn sink(&self, py: Python<'_>) -> Py<PyAny> {
        self.sink.clone_ref(py)
    }

    #[getter]
    fn state(&self, py: Python<'_>) -> Py<PyAny> {
        self.state.clone_ref(py)
    }

    /// What a schedule fire does (for tests and tools): `"started"` or `"skipped"`.
    fn _tick(&self, py: Python<'_>, name: String) -> PyResult<&'static str> {
        let manager = self.manager.clone();
        let outcome = py.detach(|| {
            let _guard = runtime().enter();
            manager.tick(&name)
        })?;
        Ok(match outcome {
            TickOutcome::Started => "started",
            TickOutcome::Skipped => "skipped",
        })
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.stop(py, 30.0)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!("PolicyManager(policies={:?})", self.manager.policy_names())
    }
}

fn seconds(value: f64) -> PyResult<Duration> {
    if !value.is_finite() || value < 0.0 {
        return Err(config_error(format!(
            "timeout must be a finite number >= 0, got {value}"
        )));
    }
    Ok(Duration::from_secs_f64(value))
}

/// The first time a 5-field cron `expression` (UTC) fires strictly after `after`.
#[pyfunction]
fn next_cron_time(
    expression: &str,
    after: chrono::DateTime<chrono::FixedOffset>,
) -> PyResult<chrono::DateTime<chrono::Utc>> {
    let schedule = crate::runner::schedule::Schedule::parse(Some(expression))?;
    if schedule.expression().is_none() {
        return Err(crate::bindings::errors::config_error(
            "a cron expression is required",
        ));
    }
    schedule
        .next_after(after.with_timezone(&chrono::Utc))
        .ok_or_else(|| {
            crate::bindings::errors::config_error(format!(
                "cron schedule {expression:?} never fires again"
            ))
        })
}
