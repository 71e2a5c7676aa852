//! `DatabaseParams`: connection parameters given field by field, accepted wherever a database
//! URL is (`OutboxStore.connect`, `StateBackend`). Its repr never shows the password.

use crate::db::params::ConnectParams;
use pyo3::prelude::*;
use std::collections::BTreeMap;

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyDatabaseParams>()?;
    m.add_function(wrap_pyfunction!(sqlite_library, m)?)
}

/// `(version, bundled)`: the SQLite the core runs, and whether it is compiled into the
/// extension (a second copy beside Python's `sqlite3`) or the system library Python loads too.
#[pyfunction]
fn sqlite_library() -> (&'static str, bool) {
    (rusqlite::version(), cfg!(feature = "bundled-sqlite"))
}

#[pyclass(module = "headrace._core", name = "DatabaseParams", frozen)]
pub(crate) struct PyDatabaseParams {
    params: ConnectParams,
    url: String,
}

#[pymethods]
impl PyDatabaseParams {
    #[new]
    #[pyo3(signature = (engine, *, name=None, host=None, port=None, user=None, password=None, options=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        engine: String,
        name: Option<String>,
        host: Option<String>,
        port: Option<u16>,
        user: Option<String>,
        password: Option<String>,
        options: Option<BTreeMap<String, String>>,
    ) -> PyResult<Self> {
        let params = ConnectParams {
            engine,
            name,
            host,
            port,
            user,
            password,
            options: options.unwrap_or_default().into_iter().collect(),
        };
        let url = params.to_url()?;
        Ok(PyDatabaseParams { params, url })
    }

    #[getter]
    fn engine(&self) -> &str {
        &self.params.engine
    }

    #[getter]
    fn name(&self) -> Option<&str> {
        self.params.name.as_deref()
    }

    fn __repr__(&self) -> String {
        format!("DatabaseParams({})", self.params.describe())
    }
}

/// The URL for `database`: a URL string, or a `DatabaseParams`.
pub(crate) fn database_url(database: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(params) = database.cast::<PyDatabaseParams>() {
        return Ok(params.get().url.clone());
    }
    database.extract::<String>().map_err(|_| {
        crate::bindings::errors::config_error(format!(
            "a database is a URL string or a DatabaseParams, got {}",
            database
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })
}
