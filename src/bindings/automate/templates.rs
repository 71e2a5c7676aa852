//! `TemplateRenderer`: the core's minijinja engine with filters and secrets from Python.

use super::convert::{to_json, to_py, to_py_err};
use crate::automate::templates::{FilterCall, SecretSource, TemplateEngine};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use serde_json::{Map, Value};
use std::sync::Arc;

struct PyFilter(Py<PyAny>);

impl FilterCall for PyFilter {
    fn call(
        &self,
        value: Value,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
    ) -> Result<Value, String> {
        Python::attach(|py| {
            let run = || -> PyResult<Value> {
                let mut positional = vec![to_py(py, &value)?];
                for a in &args {
                    positional.push(to_py(py, a)?);
                }
                let kw = PyDict::new(py);
                for (k, v) in &kwargs {
                    kw.set_item(k, to_py(py, v)?)?;
                }
                let out = self
                    .0
                    .bind(py)
                    .call(PyTuple::new(py, positional)?, Some(&kw))?;
                to_json(&out, "a filter's result")
            };
            run().map_err(|e| format!("filter raised {e}"))
        })
    }
}

/// Calls Python `lookup(kind, key)` -> str | None, where kind is "secret" or "env".
struct PySource(Py<PyAny>);

impl PySource {
    fn get(&self, kind: &str, key: &str) -> Result<Option<String>, String> {
        Python::attach(|py| {
            let out = self.0.bind(py).call1((kind, key)).map_err(|e| {
                let name = e
                    .get_type(py)
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default();
                format!("the {kind} lookup of {key:?} raised {name}")
            })?;
            if out.is_none() {
                Ok(None)
            } else {
                out.extract::<String>()
                    .map(Some)
                    .map_err(|_| format!("the {kind} lookup of {key:?} did not return a string"))
            }
        })
    }
}

impl SecretSource for PySource {
    fn secret(&self, key: &str) -> Result<Option<String>, String> {
        self.get("secret", key)
    }
    fn env(&self, var: &str) -> Result<Option<String>, String> {
        self.get("env", var)
    }
}

/// Renders step inputs (see `crate::automate::templates`).
#[pyclass(module = "headrace._core", frozen)]
pub struct TemplateRenderer {
    engine: TemplateEngine,
}

#[pymethods]
impl TemplateRenderer {
    /// `filters` maps a filter name to a Python callable `f(value, *args, **kwargs)`.
    #[new]
    #[pyo3(signature = (filters=None))]
    fn new(py: Python<'_>, filters: Option<Vec<(String, Py<PyAny>)>>) -> PyResult<Self> {
        let filters = filters
            .unwrap_or_default()
            .into_iter()
            .map(|(name, f)| (name, Arc::new(PyFilter(f)) as Arc<dyn FilterCall>))
            .collect();
        let engine = TemplateEngine::new(filters).map_err(|e| to_py_err(py, e))?;
        Ok(Self { engine })
    }

    /// Names of the custom filters.
    #[getter]
    fn filters(&self) -> Vec<String> {
        self.engine.filters().to_vec()
    }

    /// Raises `ConfigError` if a template in `input` does not compile.
    fn check(&self, py: Python<'_>, input: &Bound<'_, PyAny>) -> PyResult<()> {
        let input = to_json(input, "the step input")?;
        self.engine.check(&input).map_err(|e| to_py_err(py, e))
    }

    /// Renders `input` against `context`; `lookup(kind, key)` resolves secrets and env.
    /// Returns `(rendered, resolved_values)`.
    fn render<'py>(
        &self,
        py: Python<'py>,
        input: &Bound<'py, PyAny>,
        context: &Bound<'py, PyAny>,
        lookup: Py<PyAny>,
    ) -> PyResult<(Bound<'py, PyAny>, Vec<String>)> {
        let input = to_json(input, "the step input")?;
        let context = to_json(context, "the template context")?;
        let out = self
            .engine
            .render(&input, &context, Arc::new(PySource(lookup)))
            .map_err(|e| to_py_err(py, e))?;
        Ok((to_py(py, &out.value)?, out.resolved))
    }
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<TemplateRenderer>()
}
