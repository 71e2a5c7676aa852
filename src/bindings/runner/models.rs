//! What a backend hands the core and gets back: its metadata (read from the pydantic
//! `headrace.orb.models.Metadata` or any object with the same fields), the pydantic `Policy`
//! its `run()` receives, and the recorded `Run`.

use crate::bindings::json;
use crate::error::{Error, Result};
use crate::runner::{BackendMetadata, PolicySpec, Run};
use chrono::{DateTime, Utc};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;
use serde_json::Value;

/// Reads a backend's metadata from whatever `describe()` / `setup()` returned: a `Metadata`, a
/// dict, or any object with `name`, `app_name` and `app_version` attributes (orb-worker's own
/// pydantic `Metadata` included).
pub(super) fn metadata_from_py(value: &Bound<'_, PyAny>, backend: &str) -> Result<BackendMetadata> {
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

/// The validated pydantic `Policy` (`headrace.orb.models.Policy`) a backend's `run()` receives:
/// built once per policy from the core's already-validated spec, never per entity.
pub(super) fn policy_object(py: Python<'_>, spec: &PolicySpec) -> PyResult<Py<PyAny>> {
    let document = serde_json::json!({"config": spec.config.to_value(), "scope": spec.scope});
    let data = json::loads(py, &document.to_string())?;
    Ok(py
        .import("headrace.orb.models")?
        .getattr("Policy")?
        .call_method1("model_validate", (data,))?
        .unbind())
}

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
