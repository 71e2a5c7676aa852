//! The binding layer: the only code that imports pyo3. Thin `#[pyclass]` wrappers over the
//! core, one error mapping, JSON conversion and runtime glue.

pub(crate) mod clock;
pub(crate) mod errors;
pub(crate) mod json;
mod logging;
pub(crate) mod outbox;
mod runner;
pub(crate) mod runtime;
pub(crate) mod state;
mod worker;

use pyo3::prelude::*;

/// Adds every binding to the `headrace._core` module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    clock::register(m)?;
    logging::register(m)?;
    outbox::register(m)?;
    runner::register(m)?;
    state::register(m)?;
    worker::register(m)?;
    Ok(())
}
