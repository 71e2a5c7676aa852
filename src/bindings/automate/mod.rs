//! Thin bindings of `crate::automate` (#13): JSON Schema, JsonLogic, templates, webhook HMAC and
//! redaction. Values cross the seam as JSON; errors become the classes of `headrace.errors`.

mod convert;
mod helpers;
mod templates;

use pyo3::prelude::*;

/// Adds the automate bindings to `headrace._core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    helpers::register(m)?;
    templates::register(m)?;
    Ok(())
}
