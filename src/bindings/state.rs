//! Python classes behind `headrace.state`: the write-behind `StateBackend` and
//! `InvocationHistory`. `Invocation`, `WorkflowIdentity`, `AppInfo` and `InvocationStatus` are
//! plain Python classes (python/headrace/state.py) read and built here by attribute.

use crate::bindings::errors::config_error;
use crate::bindings::json;
use crate::bindings::runtime::block_on;
use crate::db::url::redact;
use crate::error::Error;
use crate::state::{
    self, AppInfo, ExceptionRecord, Invocation, InvocationHistory, InvocationStatus, ValueKind,
    WorkflowIdentity, WriteBehind, WriteBehindConfig, WriteOp,
};
use chrono::{DateTime, FixedOffset};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString};
use pyo3::{intern, types::PyModule};
use std::sync::Arc;

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyStateBackend>()?;
    m.add_class::<PyInvocationHistory>()?;
    m.add_function(wrap_pyfunction!(status_transitions, m)?)?;
    Ok(())
}

/// The transition table: each status name with the names it may move to.
#[pyfunction]
fn status_transitions() -> Vec<(&'static str, Vec<&'static str>)> {
    InvocationStatus::ALL
        .iter()
        .map(|s| {
            (
                s.as_str(),
                s.allowed_next().iter().map(|n| n.as_str()).collect(),
            )
        })
        .collect()
}

static STATE_MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// A class of `headrace.state` by name.
fn state_class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    STATE_MODULE
        .get_or_try_init(py, || {
            PyModule::import(py, "headrace.state").map(Bound::unbind)
        })?
        .bind(py)
        .getattr(name)
}

fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// An invocation id from an `Invocation` (anything with `invocation_id`) or a str.
fn invocation_id(value: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(s) = value.cast::<PyString>() {
        return Ok(s.to_str()?.to_string());
    }
    match value.getattr(intern!(value.py(), "invocation_id")) {
        Ok(id) => id.extract().map_err(|_| {
            config_error(format!(
                "invocation_id must be a str, got {}",
                type_name(&id)
            ))
        }),
        Err(_) => Err(config_error(format!(
            "expected an Invocation or an invocation id (str), got {}",
            type_name(value)
        ))),
    }
}

/// A workflow id from a `WorkflowIdentity` (anything with `workflow_id`) or a str.
fn workflow_id(value: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(s) = value.cast::<PyString>() {
        return Ok(s.to_str()?.to_string());
    }
    match value.getattr(intern!(value.py(), "workflow_id")) {
        Ok(id) => id.extract().map_err(|_| {
            config_error(format!("workflow_id must be a str, got {}", type_name(&id)))
        }),
        Err(_) => Err(config_error(format!(
            "expected a WorkflowIdentity or a workflow id (str), got {}",
            type_name(value)
        ))),
    }
}

fn status_of(value: &Bound<'_, PyAny>) -> PyResult<InvocationStatus> {
    // InvocationStatus is a str Enum: its str data is the value.
    match value.cast::<PyString>() {
        Ok(s) => Ok(s.to_str()?.parse::<InvocationStatus>()?),
        Err(_) => Err(config_error(format!(
            "status must be an InvocationStatus or its name, got {}",
            type_name(value)
        ))),
    }
}

fn status_object<'py>(py: Python<'py>, status: InvocationStatus) -> PyResult<Bound<'py, PyAny>> {
    state_class(py, "InvocationStatus")?.call1((status.as_str(),))
}

fn optional_str(value: &Bound<'_, PyAny>, what: &str) -> PyResult<Option<String>> {
    if value.is_none() {
        return Ok(None);
    }
    value.extract().map(Some).map_err(|_| {
        config_error(format!(
            "{what} must be a str or None, got {}",
            type_name(value)
        ))
    })
}

fn required_str(value: &Bound<'_, PyAny>, what: &str) -> PyResult<String> {
    value
        .extract()
        .map_err(|_| config_error(format!("{what} must be a str, got {}", type_name(value))))
}

/// Attribute `name` of `value`, or a ConfigError saying what was expected.
fn attr<'py>(
    value: &Bound<'py, PyAny>,
    name: &Bound<'py, PyString>,
    expected: &str,
) -> PyResult<Bound<'py, PyAny>> {
    value
        .getattr(name)
        .map_err(|_| config_error(format!("expected {expected}, got {}", type_name(value))))
}

fn workflow_from(value: &Bound<'_, PyAny>) -> PyResult<Option<WorkflowIdentity>> {
    if value.is_none() {
        return Ok(None);
    }
    let py = value.py();
    let get = |name| {
        attr(
            value,
            name,
            "a WorkflowIdentity (workflow_id, workflow_type, parent_workflow_id)",
        )
    };
    Ok(Some(WorkflowIdentity {
        workflow_id: required_str(&get(intern!(py, "workflow_id"))?, "workflow_id")?,
        workflow_type: required_str(&get(intern!(py, "workflow_type"))?, "workflow_type")?,
        parent_workflow_id: optional_str(
            &get(intern!(py, "parent_workflow_id"))?,
            "parent_workflow_id",
        )?,
    }))
}

fn workflow_object<'py>(py: Python<'py>, wf: &WorkflowIdentity) -> PyResult<Bound<'py, PyAny>> {
    state_class(py, "WorkflowIdentity")?.call1((
        wf.workflow_id.as_str(),
        wf.workflow_type.as_str(),
        wf.parent_workflow_id.as_deref(),
    ))
}

fn timestamp(value: &Bound<'_, PyAny>, what: &str) -> PyResult<DateTime<FixedOffset>> {
    value
        .extract::<DateTime<FixedOffset>>()
        .map(state::truncate_to_micros)
        .map_err(|_| {
            config_error(format!(
                "{what} must be a timezone-aware datetime, got {}",
                value
                    .repr()
                    .map(|r| r.to_string())
                    .unwrap_or_else(|_| type_name(value))
            ))
        })
}

/// Reads an `Invocation` object into the core type.
fn invocation_from(value: &Bound<'_, PyAny>) -> PyResult<Invocation> {
    let py = value.py();
    let get = |name| {
        attr(
            value,
            name,
            "an Invocation (invocation_id, task_id, arguments, status, workflow, \
             parent_invocation_id, created_at)",
        )
    };
    let arguments = get(intern!(py, "arguments"))?;
    Ok(Invocation {
        invocation_id: required_str(&get(intern!(py, "invocation_id"))?, "invocation_id")?,
        task_id: required_str(&get(intern!(py, "task_id"))?, "task_id")?,
        arguments: if arguments.is_none() {
            "{}".into()
        } else {
            json::dumps(&arguments, "arguments")?
        },
        status: status_of(&get(intern!(py, "status"))?)?,
        workflow: workflow_from(&get(intern!(py, "workflow"))?)?,
        parent_invocation_id: optional_str(
            &get(intern!(py, "parent_invocation_id"))?,
            "parent_invocation_id",
        )?,
        created_at: timestamp(&get(intern!(py, "created_at"))?, "created_at")?.to_utc(),
    })
}

fn invocation_object<'py>(py: Python<'py>, inv: &Invocation) -> PyResult<Bound<'py, PyAny>> {
    let kwargs = PyDict::new(py);
    kwargs.set_item(intern!(py, "invocation_id"), inv.invocation_id.as_str())?;
    kwargs.set_item(intern!(py, "status"), status_object(py, inv.status)?)?;
    if let Some(wf) = &inv.workflow {
        kwargs.set_item(intern!(py, "workflow"), workflow_object(py, wf)?)?;
    }
    kwargs.set_item(
        intern!(py, "parent_invocation_id"),
        inv.parent_invocation_id.as_deref(),
    )?;
    kwargs.set_item(intern!(py, "created_at"), inv.created_at)?;
    let arguments = json::loads(py, &inv.arguments)?;
    state_class(py, "Invocation")?.call((inv.task_id.as_str(), arguments), Some(&kwargs))
}

fn app_info_from(value: &Bound<'_, PyAny>) -> PyResult<AppInfo> {
    let py = value.py();
    let get = |name| attr(value, name, "an AppInfo (app_id, module, metadata)");
    let metadata = get(intern!(py, "metadata"))?;
    Ok(AppInfo {
        app_id: required_str(&get(intern!(py, "app_id"))?, "app_id")?,
        module: optional_str(&get(intern!(py, "module"))?, "module")?,
        metadata: if metadata.is_none() {
            "{}".into()
        } else {
            json::dumps(&metadata, "app info metadata")?
        },
    })
}

fn app_info_object<'py>(py: Python<'py>, info: &AppInfo) -> PyResult<Bound<'py, PyAny>> {
    state_class(py, "AppInfo")?.call1((
        info.app_id.as_str(),
        info.module.as_deref(),
        json::loads(py, &info.metadata)?,
    ))
}

fn optional_json(value: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Option<String>> {
    value
        .filter(|v| !v.is_none())
        .map(|v| json::dumps(v, what))
        .transpose()
}

/// One entry of an invocation's status history.
#[pyclass(module = "headrace._core", name = "InvocationHistory", frozen)]
pub(crate) struct PyInvocationHistory {
    entry: InvocationHistory,
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

/// The state backend: pynenc's `BaseStateBackend` contract with write-behind writes.
#[pyclass(module = "headrace._core", name = "StateBackend", subclass, frozen)]
pub(crate) struct PyStateBackend {
    pub(crate) wb: Arc<WriteBehind>,
    url: String,
}

impl PyStateBackend {
    /// Queues `op` without leaving Python when possible; otherwise waits (GIL released) for the
    /// one store read or the back-pressure it needs.
    fn write(&self, py: Python<'_>, op: WriteOp) -> PyResult<()> {
        match self.wb.try_write(op)? {
            None => Ok(()),
            Some(op) => {
                let wb = self.wb.clone();
                block_on(py, async move { wb.write(op).await })
            }
        }
    }

    fn set_value(
        &self,
        py: Python<'_>,
        wf: &Bound<'_, PyAny>,
        kind: ValueKind,
        key: String,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let what = format!("workflow value {key:?}");
        let value = json::dumps(value, &what)?;
        self.write(
            py,
            WriteOp::SetWorkflowValue {
                workflow_id: workflow_id(wf)?,
                kind,
                key,
                value,
            },
        )
    }

    fn get_value<'py>(
        &self,
        py: Python<'py>,
        wf: &Bound<'_, PyAny>,
        kind: ValueKind,
        key: &str,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let (wb, id, key) = (self.wb.clone(), workflow_id(wf)?, key.to_string());
        let text = block_on(
            py,
            async move { wb.get_workflow_value(&id, kind, &key).await },
        )?;
        text.map(|t| json::loads(py, &t)).transpose()
    }
}

#[pymethods]
impl PyStateBackend {
    #[new]
    #[pyo3(signature = (url, *, app_id=None, max_batch=100_000))]
    fn new(py: Python<'_>, url: &str, app_id: Option<String>, max_batch: usize) -> PyResult<Self> {
        if max_batch == 0 {
            return Err(config_error("max_batch must be >= 1"));
        }
        let config = WriteBehindConfig {
            max_batch,
            ..Default::default()
        };
        let owned = url.to_string();
        let wb = block_on(py, async move { state::connect(&owned, config).await })?;
        wb.set_app_id(app_id);
        Ok(PyStateBackend {
            wb: Arc::new(wb),
            url: redact(url),
        })
    }

    /// The URL this backend was opened with (password hidden).
    #[getter]
    fn url(&self) -> &str {
        &self.url
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.wb.is_closed()
    }

    /// Writes queued but not yet durable.
    #[getter]
    fn pending_operations(&self) -> u64 {
        self.wb.pending()
    }

    /// Queues an insert-or-update of `invocation`; returns at once.
    fn upsert_invocation(&self, py: Python<'_>, invocation: &Bound<'_, PyAny>) -> PyResult<()> {
        self.write(py, WriteOp::UpsertInvocation(invocation_from(invocation)?))
    }

    /// The invocation with this id; InvocationNotFoundError if unknown.
    fn get_invocation<'py>(
        &self,
        py: Python<'py>,
        invocation_id: &Bound<'_, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (wb, id) = (self.wb.clone(), self::invocation_id(invocation_id)?);
        let inv = block_on(py, async move { wb.get_invocation(&id).await })?;
        invocation_object(py, &inv)
    }

    /// Queues a history entry stamped now; a status must be an allowed transition (else
    /// InvalidStatusTransition) and becomes the invocation's status (also on the object passed).
    #[pyo3(signature = (invocation, status=None, execution_context=None))]
    fn add_history(
        &self,
        py: Python<'_>,
        invocation: &Bound<'_, PyAny>,
        status: Option<&Bound<'_, PyAny>>,
        execution_context: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let status_obj = status.filter(|s| !s.is_none());
        let status = status_obj.map(status_of).transpose()?;
        let entry = InvocationHistory::new(
            self::invocation_id(invocation)?,
            status,
            optional_json(execution_context, "execution_context")?,
        );
        self.write(py, WriteOp::AddHistory(entry))?;
        if let (Some(obj), Some(next)) = (status_obj, status)
            && !invocation.is_instance_of::<PyString>()
        {
            let member = if obj.is_exact_instance_of::<PyString>() {
                status_object(py, next)?
            } else {
                obj.clone()
            };
            // Keep the caller's object in step; objects without a settable status are fine.
            let _ = invocation.setattr(intern!(py, "status"), member);
        }
        Ok(())
    }

    /// The history in timestamp order (pending entries included).
    fn get_history(
        &self,
        py: Python<'_>,
        invocation: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<PyInvocationHistory>> {
        let (wb, id) = (self.wb.clone(), invocation_id(invocation)?);
        let history = block_on(py, async move { wb.get_history(&id).await })?;
        Ok(history
            .into_iter()
            .map(|entry| PyInvocationHistory { entry })
            .collect())
    }

    /// Queues the result (any JSON-serialisable value).
    fn set_result(
        &self,
        py: Python<'_>,
        invocation: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let id = invocation_id(invocation)?;
        let value = json::dumps(value, "result")?;
        self.write(
            py,
            WriteOp::SetResult {
                invocation_id: id,
                value,
            },
        )
    }

    /// The result; NotFoundError when none was set, InvocationNotFoundError if unknown.
    fn get_result<'py>(
        &self,
        py: Python<'py>,
        invocation: &Bound<'_, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (wb, id) = (self.wb.clone(), invocation_id(invocation)?);
        let lookup = id.clone();
        match block_on(py, async move { wb.get_result(&lookup).await })? {
            Some(text) => json::loads(py, &text),
            None => Err(Error::NotFound(format!("invocation {id:?} has no result")).into()),
        }
    }

    /// Queues an exception record (see `StateBackend.set_exception` in Python).
    #[pyo3(signature = (invocation, type_module, type_qualname, args_json, message, traceback))]
    #[allow(clippy::too_many_arguments)] // one argument per field of the record
    fn _set_exception_record(
        &self,
        py: Python<'_>,
        invocation: &Bound<'_, PyAny>,
        type_module: String,
        type_qualname: String,
        args_json: Option<String>,
        message: String,
        traceback: String,
    ) -> PyResult<()> {
        let exception = ExceptionRecord {
            type_module,
            type_qualname,
            args: args_json,
            message,
            traceback,
        };
        self.write(
            py,
            WriteOp::SetException {
                invocation_id: invocation_id(invocation)?,
                exception,
            },
        )
    }

    /// The stored exception record as (module, qualname, args_json, message, traceback) or None.
    #[allow(clippy::type_complexity)]
    fn _get_exception_record(
        &self,
        py: Python<'_>,
        invocation: &Bound<'_, PyAny>,
    ) -> PyResult<Option<(String, String, Option<String>, String, String)>> {
        let (wb, id) = (self.wb.clone(), invocation_id(invocation)?);
        let record = block_on(py, async move { wb.get_exception(&id).await })?;
        Ok(record.map(|r| {
            (
                r.type_module,
                r.type_qualname,
                r.args,
                r.message,
                r.traceback,
            )
        }))
    }

    /// Queues a workflow data value.
    fn set_workflow_data(
        &self,
        py: Python<'_>,
        workflow: &Bound<'_, PyAny>,
        key: String,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.set_value(py, workflow, ValueKind::Data, key, value)
    }

    /// A workflow data value, or `default`.
    #[pyo3(signature = (workflow, key, default=None))]
    fn get_workflow_data<'py>(
        &self,
        py: Python<'py>,
        workflow: &Bound<'_, PyAny>,
        key: &str,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        Ok(match self.get_value(py, workflow, ValueKind::Data, key)? {
            Some(value) => value,
            None => default.unwrap_or_else(|| py.None().into_bound(py)),
        })
    }

    /// Queues a deterministic value of a workflow.
    fn set_workflow_deterministic_value(
        &self,
        py: Python<'_>,
        workflow: &Bound<'_, PyAny>,
        key: String,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.set_value(py, workflow, ValueKind::Deterministic, key, value)
    }

    /// A deterministic value of a workflow, or None.
    fn get_workflow_deterministic_value<'py>(
        &self,
        py: Python<'py>,
        workflow: &Bound<'_, PyAny>,
        key: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        Ok(self
            .get_value(py, workflow, ValueKind::Deterministic, key)?
            .unwrap_or_else(|| py.None().into_bound(py)))
    }

    /// Queues this app's information; it becomes what `get_app_info()` returns.
    fn store_app_info(&self, py: Python<'_>, app_info: &Bound<'_, PyAny>) -> PyResult<()> {
        let info = app_info_from(app_info)?;
        let wb = self.wb.clone();
        block_on(py, async move { wb.store_app_info(info).await })
    }

    /// This backend's app information (the last stored through it, or the `app_id` given).
    fn get_app_info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let wb = self.wb.clone();
        let info = block_on(py, async move { wb.get_app_info().await })?;
        app_info_object(py, &info)
    }

    /// Every registered app: {app_id: AppInfo}.
    fn get_all_app_infos<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let wb = self.wb.clone();
        let infos = block_on(py, async move { wb.get_all_app_infos().await })?;
        let out = PyDict::new(py);
        for (app_id, info) in &infos {
            out.set_item(app_id, app_info_object(py, info)?)?;
        }
        Ok(out)
    }

    /// Queues a workflow run record (idempotent by workflow id).
    fn store_workflow_run(&self, py: Python<'_>, workflow: &Bound<'_, PyAny>) -> PyResult<()> {
        let wf = workflow_from(workflow)?
            .ok_or_else(|| config_error("store_workflow_run needs a WorkflowIdentity, got None"))?;
        self.write(py, WriteOp::StoreWorkflowRun(wf))
    }

    /// Workflow types with stored runs, sorted.
    fn get_all_workflows(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let wb = self.wb.clone();
        block_on(py, async move { wb.get_workflow_types().await })
    }

    /// Every stored workflow run, in the order first stored.
    fn get_all_workflows_runs<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let wb = self.wb.clone();
        let runs = block_on(py, async move { wb.get_workflow_runs(None).await })?;
        runs.iter().map(|wf| workflow_object(py, wf)).collect()
    }

    /// Stored runs of one workflow type, in the order first stored.
    fn get_workflow_runs<'py>(
        &self,
        py: Python<'py>,
        workflow_type: String,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let wb = self.wb.clone();
        let runs = block_on(py, async move {
            wb.get_workflow_runs(Some(&workflow_type)).await
        })?;
        runs.iter().map(|wf| workflow_object(py, wf)).collect()
    }

    /// Queues that `sub_invocation_id` runs inside `parent_workflow_id` (idempotent).
    fn store_workflow_sub_invocation(
        &self,
        py: Python<'_>,
        parent_workflow_id: &Bound<'_, PyAny>,
        sub_invocation_id: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.write(
            py,
            WriteOp::StoreSubInvocation {
                parent_workflow_id: workflow_id(parent_workflow_id)?,
                sub_invocation_id: invocation_id(sub_invocation_id)?,
            },
        )
    }

    /// Sub-invocation ids of a workflow, in the order first stored.
    fn get_workflow_sub_invocations(
        &self,
        py: Python<'_>,
        workflow_id: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<String>> {
        let (wb, id) = (self.wb.clone(), self::workflow_id(workflow_id)?);
        block_on(
            py,
            async move { wb.get_workflow_sub_invocations(&id).await },
        )
    }

    /// Invocations of `task_id`, newest first (by created_at), at most `limit`.
    #[pyo3(signature = (task_id, limit=100))]
    fn get_invocations_by_task<'py>(
        &self,
        py: Python<'py>,
        task_id: String,
        limit: i64,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let limit = usize::try_from(limit)
            .map_err(|_| config_error(format!("limit must be >= 0, got {limit}")))?;
        let wb = self.wb.clone();
        let invocations = block_on(py, async move {
            wb.get_invocations_by_task(&task_id, limit).await
        })?;
        invocations
            .iter()
            .map(|inv| invocation_object(py, inv))
            .collect()
    }

    /// Deletes invocations with their history, result and exception; returns how many existed.
    fn delete_invocations(
        &self,
        py: Python<'_>,
        invocations: Vec<Bound<'_, PyAny>>,
    ) -> PyResult<u64> {
        let ids = invocations
            .iter()
            .map(invocation_id)
            .collect::<PyResult<Vec<_>>>()?;
        let wb = self.wb.clone();
        block_on(py, async move { wb.delete_invocations(&ids).await })
    }

    /// Blocks until every write queued so far is durable; raises StoreError for a failed one.
    fn wait_for_all_async_operations(&self, py: Python<'_>) -> PyResult<()> {
        let wb = self.wb.clone();
        block_on(py, async move { wb.wait_for_all().await })
    }

    /// Blocks until the writes about one invocation queued so far are durable.
    fn wait_for_invocation_async_operations(
        &self,
        py: Python<'_>,
        invocation_id: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let (wb, id) = (self.wb.clone(), self::invocation_id(invocation_id)?);
        block_on(py, async move { wb.wait_for_invocation(&id).await })
    }

    /// Writes what is queued, then closes; later calls raise StoreError. Idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let wb = self.wb.clone();
        block_on(py, async move { wb.close().await })
    }

    fn __repr__(&self) -> String {
        format!("StateBackend({:?})", self.url)
    }
}
