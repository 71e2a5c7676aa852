//! Bindings for the orb-worker drop-in (`headrace.orb`): the core's `${VAR}` rule for policy
//! documents.

use crate::bindings::errors::config_error;
use crate::runner::config::{process_env, resolve_env_references as resolve};
use pyo3::prelude::*;
use serde_json::Value;

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(resolve_env_references, m)?)?;
    Ok(())
}

/// The JSON document `document_json` with every `${VAR}` resolved from the environment, as JSON;
/// `ConfigError` naming each unset variable.
#[pyfunction]
fn resolve_env_references(py: Python<'_>, document_json: &str) -> PyResult<String> {
    let document: Value = serde_json::from_str(document_json)
        .map_err(|e| config_error(format!("not a JSON document: {e}")))?;
    let resolved = py.detach(|| resolve(document, &process_env))?;
    Ok(resolved.to_string())
}
