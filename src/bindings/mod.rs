//! The binding layer: the only code that imports pyo3. Thin `#[pyclass]` wrappers over the
//! core, one error mapping, JSON conversion and runtime glue.

mod automate;
pub(crate) mod checked;
pub(crate) mod clock;
mod db_params;
pub(crate) mod errors;
mod foreign_sql;
pub(crate) mod json;
mod logging;
mod orb;
pub(crate) mod outbox;
mod pynenc;
mod runner;
pub(crate) mod runtime;
pub(crate) mod state;
mod twins;
mod worker;

use pyo3::prelude::*;

/// Adds every binding to the `headrace._core` module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    automate::register(m)?;
    clock::register(m)?;
    errors::register(m)?;
    db_params::register(m)?;
    foreign_sql::register(m)?;
    logging::register(m)?;
    orb::register(m)?;
    outbox::register(m)?;
    pynenc::register(m)?;
    runner::register(m)?;
    runtime::register(m)?;
    state::register(m)?;
    worker::register(m)?;
    m.add_function(wrap_pyfunction!(redact_url, m)?)?;
    Ok(())
}

/// `url` with every password (user info, `?password=`, …) replaced by `***`: for anything shown
/// to a person (CLI output, logs, reprs).
#[pyfunction]
fn redact_url(url: &str) -> String {
    crate::db::url::redact(url)
}
