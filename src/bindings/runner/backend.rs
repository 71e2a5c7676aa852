//! `Backend`, the base class of integrations.

use pyo3::exceptions::PyNotImplementedError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple, PyType};
use std::ffi::CString;

/// Base class of integrations (orb-worker's `Backend`).
///
/// Subclasses implement `describe()` (a classmethod returning `Metadata`) and
/// `run(policy_name, policy, **kwargs)` returning an iterable of entities. They are constructed
/// once per policy with `ingest_callback=` and `ingest_sink=` already valid.
#[pyclass(module = "headrace._core", name = "Backend", subclass, dict)]
pub(crate) struct PyBackend;

pub(super) fn warn(py: Python<'_>, category: &Bound<'_, PyAny>, message: String) -> PyResult<()> {
    let message = CString::new(message).unwrap_or_default();
    PyErr::warn(py, category, &message, 1)
}

/// The class attribute `name` as stored in the first class of `cls`'s MRO defining it, and that
/// class.
pub(super) fn find_in_mro<'py>(
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
pub(super) fn is_class_callable(py: Python<'_>, raw: &Bound<'_, PyAny>) -> PyResult<bool> {
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
