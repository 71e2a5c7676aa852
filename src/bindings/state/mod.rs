//! Python classes behind `headrace.state`: the write-behind `StateBackend` and
//! `InvocationHistory`. `Invocation`, `WorkflowIdentity`, `AppInfo` and `InvocationStatus` are
//! plain Python classes (python/headrace/state.py) read and built here by attribute.

mod backend;
mod convert;
mod history;

use crate::state::InvocationStatus;
pub(crate) use backend::PyStateBackend;
use history::PyInvocationHistory;
use pyo3::prelude::*;
use pyo3::types::PyModule;

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyStateBackend>()?;
    m.add_class::<PyInvocationHistory>()?;
    m.add_function(wrap_pyfunction!(status_transitions, m)?)?;
    Ok(())
}

/// The transition table: each status name with the names it may move to.
#[pyfunction]
fn status_transitions() -> Vec<(&'static str, Vec<&'static str>)> {
    InvocationStatus::ALL
        .iter()
        .map(|s| {
            (
                s.as_str(),
                s.allowed_next().iter().map(|n| n.as_str()).collect(),
            )
        })
        .collect()
}
