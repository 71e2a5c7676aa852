//! `headrace._core.PynencStore`: the store behind `headrace.pynenc.HeadraceStateBackend`.
//! Values cross the seam as plain tuples and JSON text; `python/headrace/pynenc/` turns them
//! into pynenc's own objects. Every call releases the GIL.

mod convert;

use crate::bindings::errors::config_error;
use crate::bindings::runtime::{runtime, wait};
use crate::error::Error;
use crate::error::Result;
use crate::state::pynenc::{
    Durability, HistoryEntry, PynencState, PynencStatus, PynencWrite, Refused, Transitions,
    WorkflowRun, open_store,
};
use convert::{InvocationRow, RefusalRow, WorkflowRunRow, invocation_row, refusal_rows};
use pyo3::prelude::*;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

/// How often a call waiting in [`wait_here`] wakes up to run Python's signal handlers.
const SIGNAL_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// Runs `fut` to its end on the calling thread (inside the shared runtime's context, the GIL
/// released), running Python's signal handlers every [`SIGNAL_CHECK_INTERVAL`].
///
/// Unlike [`wait`], which hands the future to a runtime worker and sleeps until the worker
/// has finished it, the caller polls the future itself: a durable call (one statement, one
/// round trip) sends its statement without first waking a worker and waiting for it to be
/// scheduled, which on a busy machine costs as much as the round trip. A signal handler that
/// raises (Ctrl-C) stops the waiting, not the call: the rest of the future is handed to the
/// runtime and finishes in the background, exactly as with [`wait`].
fn wait_here<F, T>(py: Python<'_>, fut: F) -> PyResult<T>
where
    F: Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let mut fut = Box::pin(fut);
    loop {
        let finished = py.detach(|| {
            std::panic::catch_unwind(AssertUnwindSafe(|| {
                runtime()
                    .block_on(async { tokio::time::timeout(SIGNAL_CHECK_INTERVAL, &mut fut).await })
            }))
        });
        match finished {
            Ok(Ok(result)) => return result.map_err(PyErr::from),
            Ok(Err(_still_running)) => {
                if let Err(raised) = py.check_signals() {
                    runtime().spawn(async move {
                        let _ = fut.await;
                    });
                    return Err(raised);
                }
            }
            Err(_panic) => {
                return Err(Error::Store("a task of the core failed: it panicked".into()).into());
            }
        }
    }
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyPynencStore>()?;
    m.add_function(wrap_pyfunction!(pynenc_status_model, m)?)?;
    Ok(())
}

/// One row per pynenc status: (status, allowed next statuses, is_final, available_for_run,
/// requires_ownership, acquires_ownership, releases_ownership, overrides_ownership); a first
/// row with status `None` lists what a new invocation may move to.
#[pyfunction]
#[allow(clippy::type_complexity)]
fn pynenc_status_model() -> Vec<(
    Option<&'static str>,
    Vec<&'static str>,
    bool,
    bool,
    bool,
    bool,
    bool,
    bool,
)> {
    let names = |list: &[PynencStatus]| list.iter().map(|s| s.as_str()).collect::<Vec<_>>();
    let mut rows = vec![(
        None,
        names(crate::state::pynenc::status::INITIAL_TRANSITIONS),
        false,
        false,
        false,
        false,
        false,
        false,
    )];
    for status in PynencStatus::ALL {
        let d = status.definition();
        rows.push((
            Some(status.as_str()),
            names(d.allowed_transitions),
            d.is_final,
            d.available_for_run,
            d.requires_ownership,
            d.acquires_ownership,
            d.releases_ownership,
            d.overrides_ownership,
        ));
    }
    rows
}

/// One pynenc app's handle on a headrace pynenc store.
#[pyclass(name = "PynencStore", module = "headrace._core", frozen)]
pub(crate) struct PyPynencStore {
    state: Arc<PynencState>,
}

fn parse_durability(durability: &str, max_batch: usize) -> PyResult<Durability> {
    match durability {
        "durable" => Ok(Durability::Durable),
        "write_behind" => Ok(Durability::WriteBehind { max_batch }),
        other => Err(config_error(format!(
            "unknown durability {other:?}: use \"durable\" (committed when each call returns) or \
             \"write_behind\" (batched; call flush() to wait)"
        ))),
    }
}

fn parse_transitions(transitions: &str) -> PyResult<Transitions> {
    match transitions {
        "record" => Ok(Transitions::Record),
        "enforce" => Ok(Transitions::Enforce),
        other => Err(config_error(format!(
            "unknown transitions mode {other:?}: use \"record\" (as pynenc's own backends) or \
             \"enforce\" (refuse what pynenc's status model forbids)"
        ))),
    }
}

impl PyPynencStore {
    fn run<T, F, Fut>(&self, py: Python<'_>, work: F) -> PyResult<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<PynencState>) -> Fut,
        Fut: Future<Output = Result<T>> + Send + 'static,
    {
        wait_here(py, work(self.state.clone()))
    }

    fn write(&self, py: Python<'_>, writes: Vec<PynencWrite>) -> PyResult<Vec<Refused>> {
        if self.state.is_write_behind() {
            // Queueing waits for nothing: no GIL release, no trip through the runtime.
            self.state.enqueue(writes)?;
            return Ok(Vec::new());
        }
        self.run(py, |s| async move { s.write(writes).await })
    }

    fn write_one(&self, py: Python<'_>, write: PynencWrite) -> PyResult<()> {
        self.write(py, vec![write]).map(drop)
    }
}

#[pymethods]
impl PyPynencStore {
    /// Opens the store `url` selects for `app_id`.
    #[staticmethod]
    #[pyo3(signature = (url, app_id, *, durability = "durable", transitions = "record", max_batch = 5000))]
    fn open(
        py: Python<'_>,
        url: String,
        app_id: String,
        durability: &str,
        transitions: &str,
        max_batch: usize,
    ) -> PyResult<Self> {
        let durability = parse_durability(durability, max_batch)?;
        let transitions = parse_transitions(transitions)?;
        if app_id.trim().is_empty() {
            return Err(config_error("app_id must be a non-empty string"));
        }
        let state = wait(py, async move {
            let store = open_store(&url).await?;
            Ok(PynencState::new(store, app_id, durability, transitions))
        })?;
        Ok(PyPynencStore {
            state: Arc::new(state),
        })
    }

    #[getter]
    fn app_id(&self) -> String {
        self.state.app().to_string()
    }

    /// Upserts invocations given as `(invocation_id, call_id_key, task_id_key,
    /// serialized_arguments_json, parent_invocation_id, parent_event_id, workflow_id,
    /// workflow_type_key, parent_workflow_id)` tuples, in one transaction.
    fn upsert_invocations(&self, py: Python<'_>, rows: Vec<InvocationRow>) -> PyResult<()> {
        let writes = rows
            .into_iter()
            .map(|row| PynencWrite::UpsertInvocation(invocation_row(row)))
            .collect();
        self.write(py, writes).map(drop)
    }

    /// Appends history entries given as pynenc `InvocationHistory` JSON (the seed-era form is
    /// read too). Returns the refusals of the status model (only when enforcing transitions).
    fn add_histories(&self, py: Python<'_>, entries: Vec<String>) -> PyResult<Vec<RefusalRow>> {
        let writes = entries
            .iter()
            .map(|text| HistoryEntry::from_json(text).map(PynencWrite::AddHistory))
            .collect::<Result<Vec<_>>>()?;
        Ok(refusal_rows(self.write(py, writes)?))
    }

    /// Appends one history entry (`InvocationHistory` JSON) under several invocation ids.
    fn add_history_for(
        &self,
        py: Python<'_>,
        invocation_ids: Vec<String>,
        entry: &str,
    ) -> PyResult<Vec<RefusalRow>> {
        let entry = HistoryEntry::from_json(entry)?;
        let writes = invocation_ids
            .into_iter()
            .map(|invocation_id| {
                PynencWrite::AddHistory(HistoryEntry {
                    invocation_id,
                    ..entry.clone()
                })
            })
            .collect();
        Ok(refusal_rows(self.write(py, writes)?))
    }

    fn set_result(&self, py: Python<'_>, invocation_id: String, value: String) -> PyResult<()> {
        self.write_one(
            py,
            PynencWrite::SetResult {
                invocation_id,
                value,
            },
        )
    }

    fn set_exception(&self, py: Python<'_>, invocation_id: String, value: String) -> PyResult<()> {
        self.write_one(
            py,
            PynencWrite::SetException {
                invocation_id,
                value,
            },
        )
    }

    fn set_workflow_data(
        &self,
        py: Python<'_>,
        workflow_id: String,
        key: String,
        value: String,
    ) -> PyResult<()> {
        self.write_one(
            py,
            PynencWrite::SetWorkflowData {
                workflow_id,
                key,
                value,
            },
        )
    }

    fn store_app_info(&self, py: Python<'_>, app_id: String, info_json: String) -> PyResult<()> {
        self.write_one(py, PynencWrite::StoreAppInfo { app_id, info_json })
    }

    #[pyo3(signature = (workflow_id, workflow_type_key, parent_workflow_id = None))]
    fn store_workflow_run(
        &self,
        py: Python<'_>,
        workflow_id: String,
        workflow_type_key: String,
        parent_workflow_id: Option<String>,
    ) -> PyResult<()> {
        self.write_one(
            py,
            PynencWrite::StoreWorkflowRun(WorkflowRun {
                workflow_id,
                workflow_type_key,
                parent_workflow_id,
            }),
        )
    }

    fn store_sub_invocation(
        &self,
        py: Python<'_>,
        parent_workflow_id: String,
        sub_invocation_id: String,
    ) -> PyResult<()> {
        self.write_one(
            py,
            PynencWrite::StoreSubInvocation {
                parent_workflow_id,
                sub_invocation_id,
            },
        )
    }

    /// Stores runner contexts given as `(runner_id, RunnerContext JSON)` pairs.
    fn store_runner_contexts(
        &self,
        py: Python<'_>,
        contexts: Vec<(String, String)>,
    ) -> PyResult<()> {
        let writes = contexts
            .into_iter()
            .map(
                |(runner_id, context_json)| PynencWrite::StoreRunnerContext {
                    runner_id,
                    context_json,
                },
            )
            .collect();
        self.write(py, writes).map(drop)
    }

    fn get_invocation(
        &self,
        py: Python<'_>,
        invocation_id: String,
    ) -> PyResult<Option<InvocationRow>> {
        let found = self.run(
            py,
            |s| async move { s.get_invocation(&invocation_id).await },
        )?;
        Ok(found.map(convert::invocation_tuple))
    }

    /// The history as pynenc `InvocationHistory` JSON, in time order.
    fn get_history(&self, py: Python<'_>, invocation_id: String) -> PyResult<Vec<String>> {
        let entries = self.run(py, |s| async move { s.get_history(&invocation_id).await })?;
        Ok(entries.iter().map(HistoryEntry::to_json).collect())
    }

    fn get_result(&self, py: Python<'_>, invocation_id: String) -> PyResult<Option<String>> {
        self.run(py, |s| async move { s.get_result(&invocation_id).await })
    }

    fn get_exception(&self, py: Python<'_>, invocation_id: String) -> PyResult<Option<String>> {
        self.run(py, |s| async move { s.get_exception(&invocation_id).await })
    }

    fn get_workflow_data(
        &self,
        py: Python<'_>,
        workflow_id: String,
        key: String,
    ) -> PyResult<Option<String>> {
        self.run(py, |s| async move {
            s.get_workflow_data(&workflow_id, &key).await
        })
    }

    fn get_app_info(&self, py: Python<'_>, app_id: String) -> PyResult<Option<String>> {
        self.run(py, |s| async move { s.get_app_info(&app_id).await })
    }

    /// Every stored app as `(app_id, AppInfo JSON)`.
    fn all_app_infos(&self, py: Python<'_>) -> PyResult<Vec<(String, String)>> {
        self.run(py, |s| async move { s.all_app_infos().await })
    }

    fn workflow_types(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        self.run(py, |s| async move { s.workflow_types().await })
    }

    /// Workflow runs as `(workflow_id, workflow_type_key, parent_workflow_id)`.
    #[pyo3(signature = (workflow_type_key = None))]
    fn workflow_runs(
        &self,
        py: Python<'_>,
        workflow_type_key: Option<String>,
    ) -> PyResult<Vec<WorkflowRunRow>> {
        let runs = self.run(py, |s| async move {
            s.workflow_runs(workflow_type_key.as_deref()).await
        })?;
        Ok(runs
            .into_iter()
            .map(|r| (r.workflow_id, r.workflow_type_key, r.parent_workflow_id))
            .collect())
    }

    fn sub_invocations(&self, py: Python<'_>, workflow_id: String) -> PyResult<Vec<String>> {
        self.run(py, |s| async move { s.sub_invocations(&workflow_id).await })
    }

    fn child_invocations(
        &self,
        py: Python<'_>,
        parent_invocation_id: String,
    ) -> PyResult<Vec<String>> {
        self.run(py, |s| async move {
            s.child_invocations(&parent_invocation_id).await
        })
    }

    fn invocations_by_parent_event(
        &self,
        py: Python<'_>,
        parent_event_id: String,
    ) -> PyResult<Vec<String>> {
        self.run(py, |s| async move {
            s.invocations_by_parent_event(&parent_event_id).await
        })
    }

    #[pyo3(signature = (workflow_id = None, workflow_type_key = None))]
    fn invocations_by_workflow(
        &self,
        py: Python<'_>,
        workflow_id: Option<String>,
        workflow_type_key: Option<String>,
    ) -> PyResult<Vec<String>> {
        self.run(py, |s| async move {
            s.invocations_by_workflow(workflow_id.as_deref(), workflow_type_key.as_deref())
                .await
        })
    }

    /// History entries (pynenc JSON) with `start_us <= time <= end_us`, one page in time order.
    fn history_in_range(
        &self,
        py: Python<'_>,
        start_us: i64,
        end_us: i64,
        limit: usize,
        offset: usize,
    ) -> PyResult<Vec<String>> {
        let entries = self.run(py, |s| async move {
            s.history_in_range(start_us, end_us, limit, offset).await
        })?;
        Ok(entries.iter().map(HistoryEntry::to_json).collect())
    }

    fn invocations_in_range(
        &self,
        py: Python<'_>,
        start_us: i64,
        end_us: i64,
        limit: usize,
        offset: usize,
    ) -> PyResult<Vec<String>> {
        self.run(py, |s| async move {
            s.invocations_in_range(start_us, end_us, limit, offset)
                .await
        })
    }

    fn runner_contexts(&self, py: Python<'_>, runner_ids: Vec<String>) -> PyResult<Vec<String>> {
        self.run(py, |s| async move { s.runner_contexts(&runner_ids).await })
    }

    fn matching_runner_contexts(
        &self,
        py: Python<'_>,
        partial_id: String,
    ) -> PyResult<Vec<String>> {
        self.run(py, |s| async move {
            s.matching_runner_contexts(&partial_id).await
        })
    }

    /// Deletes everything of this app.
    fn purge(&self, py: Python<'_>) -> PyResult<()> {
        self.run(py, |s| async move { s.purge().await })
    }

    /// Waits until every earlier write is committed (write-behind); raises a background failure.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        self.run(py, |s| async move { s.flush().await })
    }

    /// Flushes, then closes the store.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.run(py, |s| async move { s.close().await })
    }
}
