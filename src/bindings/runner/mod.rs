//! Python classes of the policy runner: `Backend` (subclassed by integrations), `Metadata`,
//! `Config`, `Policy`, `Run`, the sinks, the ingest callback and sink handed to backends, and
//! `PolicyManager`.
//!
//! Backend code always runs on a thread of its own (a dedicated thread per scheduled or manual
//! run, or the caller's thread for the ingest callback) holding the GIL — never on a tokio
//! worker. Entities cross into Rust in batches, each encoded to JSON once, with the GIL released
//! while a batch is handed over.

mod backend;
mod diagnostics;
mod ingest;
mod loader;
mod manager;
mod models;
mod sinks;

use crate::runner::{DEFAULT_CHUNK_BYTES, DEFAULT_MAX_RUNS_PER_POLICY};
use backend::PyBackend;
use ingest::{PyIngestCallback, PyIngestSink};
use manager::{PyPolicyManager, list_runs, next_cron_time};
use models::PyRun;
use pyo3::prelude::*;
use sinks::{PyDryRunSink, PyNullSink, PyOutboxSink};

/// Entities per batch handed from a backend's thread to the run.
const BATCH_ENTITIES: usize = 1024;
/// Encoded bytes after which a batch is handed over early.
const BATCH_BYTES: usize = 1024 * 1024;
/// Batches a backend may run ahead of the chunker (bounds a run's memory).
const CHANNEL_BATCHES: usize = 4;
/// Python logger of operator-facing runner messages.
const LOGGER: &str = "headrace.runner";

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyBackend>()?;
    m.add_class::<PyRun>()?;
    m.add_class::<PyIngestCallback>()?;
    m.add_class::<PyIngestSink>()?;
    m.add_class::<PyOutboxSink>()?;
    m.add_class::<PyDryRunSink>()?;
    m.add_class::<PyNullSink>()?;
    m.add_class::<PyPolicyManager>()?;
    m.add_function(wrap_pyfunction!(list_runs, m)?)?;
    m.add_function(wrap_pyfunction!(next_cron_time, m)?)?;
    m.add("DEFAULT_CHUNK_BYTES", DEFAULT_CHUNK_BYTES)?;
    m.add("DEFAULT_MAX_RUNS_PER_POLICY", DEFAULT_MAX_RUNS_PER_POLICY)?;
    Ok(())
}
