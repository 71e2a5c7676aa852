//! Reading and building the plain Python classes of `headrace.state`.

use crate::bindings::errors::config_error;
use crate::bindings::json;
use crate::state::{self, AppInfo, Invocation, InvocationStatus, WorkflowIdentity};
use chrono::{DateTime, FixedOffset};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString};
use pyo3::{intern, types::PyModule};

pub(super) static STATE_MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// A class of `headrace.state` by name.
pub(super) fn state_class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    STATE_MODULE
        .get_or_try_init(py, || {
            PyModule::import(py, "headrace.state").map(Bound::unbind)
        })?
        .bind(py)
        .getattr(name)
}

pub(super) fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// An invocation id from an `Invocation` (anything with `invocation_id`) or a str.
pub(super) fn invocation_id(value: &Bound<'_, PyAny>) -> PyResult<String> {
    if value.is_instance_of::<PyString>() {
        return crate::bindings::checked::text(value);
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
pub(super) fn workflow_id(value: &Bound<'_, PyAny>) -> PyResult<String> {
    if value.is_instance_of::<PyString>() {
        return crate::bindings::checked::text(value);
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

pub(super) fn status_of(value: &Bound<'_, PyAny>) -> PyResult<InvocationStatus> {
    // InvocationStatus is a str Enum: its str data is the value.
    match value.cast::<PyString>() {
        Ok(s) => Ok(s.to_str()?.parse::<InvocationStatus>()?),
        Err(_) => Err(config_error(format!(
            "status must be an InvocationStatus or its name, got {}",
            type_name(value)
        ))),
    }
}

pub(super) fn status_object<'py>(
    py: Python<'py>,
    status: InvocationStatus,
) -> PyResult<Bound<'py, PyAny>> {
    state_class(py, "InvocationStatus")?.call1((status.as_str(),))
}

pub(super) fn optional_str(value: &Bound<'_, PyAny>, what: &str) -> PyResult<Option<String>> {
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

pub(super) fn required_str(value: &Bound<'_, PyAny>, what: &str) -> PyResult<String> {
    value
        .extract()
        .map_err(|_| config_error(format!("{what} must be a str, got {}", type_name(value))))
}

/// Attribute `name` of `value`, or a ConfigError saying what was expected.
pub(super) fn attr<'py>(
    value: &Bound<'py, PyAny>,
    name: &Bound<'py, PyString>,
    expected: &str,
) -> PyResult<Bound<'py, PyAny>> {
    value
        .getattr(name)
        .map_err(|_| config_error(format!("expected {expected}, got {}", type_name(value))))
}

pub(super) fn workflow_from(value: &Bound<'_, PyAny>) -> PyResult<Option<WorkflowIdentity>> {
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

pub(super) fn workflow_object<'py>(
    py: Python<'py>,
    wf: &WorkflowIdentity,
) -> PyResult<Bound<'py, PyAny>> {
    state_class(py, "WorkflowIdentity")?.call1((
        wf.workflow_id.as_str(),
        wf.workflow_type.as_str(),
        wf.parent_workflow_id.as_deref(),
    ))
}

pub(super) fn timestamp(value: &Bound<'_, PyAny>, what: &str) -> PyResult<DateTime<FixedOffset>> {
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
pub(super) fn invocation_from(value: &Bound<'_, PyAny>) -> PyResult<Invocation> {
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

pub(super) fn invocation_object<'py>(
    py: Python<'py>,
    inv: &Invocation,
) -> PyResult<Bound<'py, PyAny>> {
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

pub(super) fn app_info_from(value: &Bound<'_, PyAny>) -> PyResult<AppInfo> {
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

pub(super) fn app_info_object<'py>(py: Python<'py>, info: &AppInfo) -> PyResult<Bound<'py, PyAny>> {
    state_class(py, "AppInfo")?.call1((
        info.app_id.as_str(),
        info.module.as_deref(),
        json::loads(py, &info.metadata)?,
    ))
}

pub(super) fn optional_json(
    value: Option<&Bound<'_, PyAny>>,
    what: &str,
) -> PyResult<Option<String>> {
    value
        .filter(|v| !v.is_none())
        .map(|v| json::dumps(v, what))
        .transpose()
}
