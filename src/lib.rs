//! headrace: a Rust core (outbox, policy runner, state backend, errors) with a Python face.
//!
//! The core modules never import pyo3; the binding layer in [`bindings`] is compiled only
//! with the `python` feature, which maturin enables.

pub mod automate;
pub mod clock;
pub mod db;
pub mod error;
pub mod outbox;
pub mod runner;
pub mod state;
pub mod validate;
pub mod worker;

#[cfg(feature = "python")]
mod bindings;

pub use error::{Error, Result};

#[cfg(feature = "python")]
#[pyo3::pymodule]
fn _core(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
    bindings::register(m)
}
