//! `StateBackend`: pynenc's `BaseStateBackend` contract with write-behind writes.

use super::convert::{
    app_info_from, app_info_object, invocation_from, invocation_id, invocation_object,
    optional_json, status_object, status_of, workflow_from, workflow_id, workflow_object,
};
use super::history::PyInvocationHistory;
use crate::bindings::clock::{PyManualClock, shared_clock};
use crate::bindings::errors::config_error;
use crate::bindings::json;
use crate::bindings::runtime::wait;
use crate::db::url::redact;
use crate::error::Error;
use crate::state::{
    self, ExceptionRecord, InvocationHistory, ValueKind, WriteBehind, WriteBehindConfig, WriteOp,
};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use std::sync::Arc;

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
                wait(py, async move { wb.write(op).await })
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
        let text = wait(
            py,
            async move { wb.get_workflow_value(&id, kind, &key).await },
        )?;
        text.map(|t| json::loads(py, &t)).transpose()
    }
}

#[pymethods]
impl PyStateBackend {
    #[new]
    #[pyo3(signature = (url, *, app_id=None, max_batch=100_000, clock=None))]
    fn new(
        py: Python<'_>,
        url: &Bound<'_, PyAny>,
        app_id: Option<String>,
        max_batch: usize,
        clock: Option<&Bound<'_, PyManualClock>>,
    ) -> PyResult<Self> {
        let url = &crate::bindings::db_params::database_url(url)?;
        if max_batch == 0 {
            return Err(config_error("max_batch must be >= 1"));
        }
        let config = WriteBehindConfig {
            max_batch,
            clock: shared_clock(clock),
            ..Default::default()
        };
        let owned = url.to_string();
        let wb = wait(py, async move { state::connect(&owned, config).await })?;
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
        let inv = wait(py, async move { wb.get_invocation(&id).await })?;
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
            self.wb.clock().now(),
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
        let history = wait(py, async move { wb.get_history(&id).await })?;
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
        match wait(py, async move { wb.get_result(&lookup).await })? {
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
        let record = wait(py, async move { wb.get_exception(&id).await })?;
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
        #[pyo3(from_py_with = crate::bindings::checked::text)] key: String,
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
        #[pyo3(from_py_with = crate::bindings::checked::text)] key: String,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        Ok(match self.get_value(py, workflow, ValueKind::Data, &key)? {
            Some(value) => value,
            None => default.unwrap_or_else(|| py.None().into_bound(py)),
        })
    }

    /// Queues a deterministic value of a workflow.
    fn set_workflow_deterministic_value(
        &self,
        py: Python<'_>,
        workflow: &Bound<'_, PyAny>,
        #[pyo3(from_py_with = crate::bindings::checked::text)] key: String,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.set_value(py, workflow, ValueKind::Deterministic, key, value)
    }

    /// A deterministic value of a workflow, or None.
    fn get_workflow_deterministic_value<'py>(
        &self,
        py: Python<'py>,
        workflow: &Bound<'_, PyAny>,
        #[pyo3(from_py_with = crate::bindings::checked::text)] key: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        Ok(self
            .get_value(py, workflow, ValueKind::Deterministic, &key)?
            .unwrap_or_else(|| py.None().into_bound(py)))
    }

    /// Queues this app's information; it becomes what `get_app_info()` returns.
    fn store_app_info(&self, py: Python<'_>, app_info: &Bound<'_, PyAny>) -> PyResult<()> {
        let info = app_info_from(app_info)?;
        let wb = self.wb.clone();
        wait(py, async move { wb.store_app_info(info).await })
    }

    /// This backend's app information (the last stored through it, or the `app_id` given).
    fn get_app_info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let wb = self.wb.clone();
        let info = wait(py, async move { wb.get_app_info().await })?;
        app_info_object(py, &info)
    }

    /// Every registered app: {app_id: AppInfo}.
    fn get_all_app_infos<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let wb = self.wb.clone();
        let infos = wait(py, async move { wb.get_all_app_infos().await })?;
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
        wait(py, async move { wb.get_workflow_types().await })
    }

    /// Every stored workflow run, in the order first stored.
    fn get_all_workflows_runs<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let wb = self.wb.clone();
        let runs = wait(py, async move { wb.get_workflow_runs(None).await })?;
        runs.iter().map(|wf| workflow_object(py, wf)).collect()
    }

    /// Stored runs of one workflow type, in the order first stored.
    fn get_workflow_runs<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = crate::bindings::checked::text)] workflow_type: String,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let wb = self.wb.clone();
        let runs = wait(py, async move {
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
        wait(
            py,
            async move { wb.get_workflow_sub_invocations(&id).await },
        )
    }

    /// Invocations of `task_id`, newest first (by created_at), at most `limit`.
    #[pyo3(signature = (task_id, limit=100))]
    fn get_invocations_by_task<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = crate::bindings::checked::text)] task_id: String,
        #[pyo3(from_py_with = crate::bindings::checked::int64)] limit: i64,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let limit = usize::try_from(limit)
            .map_err(|_| config_error(format!("limit must be >= 0, got {limit}")))?;
        let wb = self.wb.clone();
        let invocations = wait(py, async move {
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
        wait(py, async move { wb.delete_invocations(&ids).await })
    }

    /// Blocks until every write queued so far is durable; raises StoreError for a failed one.
    fn wait_for_all_async_operations(&self, py: Python<'_>) -> PyResult<()> {
        let wb = self.wb.clone();
        wait(py, async move { wb.wait_for_all().await })
    }

    /// Blocks until the writes about one invocation queued so far are durable.
    fn wait_for_invocation_async_operations(
        &self,
        py: Python<'_>,
        invocation_id: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let (wb, id) = (self.wb.clone(), self::invocation_id(invocation_id)?);
        wait(py, async move { wb.wait_for_invocation(&id).await })
    }

    /// Writes what is queued, then closes; later calls raise StoreError. Idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let wb = self.wb.clone();
        wait(py, async move { wb.close().await })
    }

    fn __repr__(&self) -> String {
        format!("StateBackend({:?})", self.url)
    }
}
