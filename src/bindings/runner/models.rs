//! The value classes a backend sees: `Metadata`, `Config`, `Policy` and `Run`.

use crate::bindings::errors::config_error;
use crate::bindings::json;
use crate::error::{Error, Result};
use crate::runner::{BackendMetadata, PolicySpec, Run};
use chrono::{DateTime, Utc};
use pyo3::exceptions::{PyAttributeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;
use serde_json::Value;

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
pub(super) fn metadata_from_py(value: &Bound<'_, PyAny>, backend: &str) -> Result<BackendMetadata> {
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
