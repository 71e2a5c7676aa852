//! `headrace._core.WorkerCore`: the Rust claim loop driving a Python dispatcher.
//! `headrace.worker.OutboxWorker` (Python) builds the dispatcher from user handlers.

use crate::bindings::errors::config_error;
use crate::bindings::outbox::{PyOutboxItem, PyOutboxStore, PyRetryPolicy};
use crate::bindings::runtime::{awaitable, runtime, wait_interruptibly};
use crate::error::Result;
use crate::outbox::{OutboxItem, seconds};
use crate::validate;
use crate::worker::{
    BatchHandler, OutboxWorker, Outcome, SettledItem, StopFlag, WorkerConfig, WorkerReport,
};
use async_trait::async_trait;
use pyo3::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyWorkerCore>()?;
    m.add_class::<PyStopFlag>()?;
    m.add_class::<PyWorkerReport>()?;
    m.add_class::<PyHandlerOutcome>()?;
    Ok(())
}

/// Set when the worker is stopping: dispatchers start no further items once it is.
#[pyclass(module = "headrace._core", name = "StopFlag", frozen)]
struct PyStopFlag(StopFlag);

#[pymethods]
impl PyStopFlag {
    fn __bool__(&self) -> bool {
        self.0.is_set()
    }
    fn is_set(&self) -> bool {
        self.0.is_set()
    }
}

/// What a worker run did.
#[pyclass(module = "headrace._core", name = "WorkerReport", frozen, get_all)]
#[derive(Clone)]
pub(crate) struct PyWorkerReport {
    processed: u64,
    completed: u64,
    retried: u64,
    failed: u64,
    released: u64,
    reaped: u64,
    abandoned: u64,
}

impl From<WorkerReport> for PyWorkerReport {
    fn from(r: WorkerReport) -> Self {
        PyWorkerReport {
            processed: r.processed,
            completed: r.completed,
            retried: r.retried,
            failed: r.failed,
            released: r.released,
            reaped: r.reaped,
            abandoned: r.abandoned,
        }
    }
}

#[pymethods]
impl PyWorkerReport {
    fn __repr__(&self) -> String {
        format!(
            "WorkerReport(processed={}, completed={}, retried={}, failed={}, released={}, reaped={}, abandoned={})",
            self.processed,
            self.completed,
            self.retried,
            self.failed,
            self.released,
            self.reaped,
            self.abandoned
        )
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<PyWorkerReport>().is_ok_and(|o| {
            let o = o.get();
            (
                o.processed,
                o.completed,
                o.retried,
                o.failed,
                o.released,
                o.reaped,
                o.abandoned,
            ) == (
                self.processed,
                self.completed,
                self.retried,
                self.failed,
                self.released,
                self.reaped,
                self.abandoned,
            )
        })
    }

    /// The counts as a dict.
    fn as_dict(&self) -> HashMap<&'static str, u64> {
        HashMap::from([
            ("processed", self.processed),
            ("completed", self.completed),
            ("retried", self.retried),
            ("failed", self.failed),
            ("released", self.released),
            ("reaped", self.reaped),
            ("abandoned", self.abandoned),
        ])
    }
}

/// Calls the Python dispatcher once per batch, on a blocking thread with the GIL.
/// The callables are behind `Arc`s so tokio threads never need the GIL to hand them over.
struct PythonDispatcher {
    dispatch: Arc<Py<PyAny>>,
    /// Swappable: the Python worker turns it on only while hooks or a state backend need it.
    settled: Arc<std::sync::Mutex<Option<Arc<Py<PyAny>>>>>,
}

/// What became of one item handed to a handler: the dispatcher returns one per item.
/// Build it with `completed()`, `not_started()` or `failed(error, retryable, retry_after)`.
#[pyclass(module = "headrace._core", name = "HandlerOutcome", frozen)]
struct PyHandlerOutcome(Outcome);

#[pymethods]
impl PyHandlerOutcome {
    /// The handler returned normally.
    #[staticmethod]
    fn completed() -> Self {
        PyHandlerOutcome(Outcome::Completed)
    }

    /// The worker was stopping before the handler started: the item goes back to pending.
    #[staticmethod]
    fn not_started() -> Self {
        PyHandlerOutcome(Outcome::NotStarted)
    }

    /// The handler raised. `retryable=False` dead-letters; otherwise the item runs again after
    /// `retry_after` seconds (measured on the store's clock), else after the retry backoff.
    #[staticmethod]
    #[pyo3(signature = (error, retryable, retry_after=None))]
    fn failed(error: String, retryable: bool, retry_after: Option<f64>) -> PyResult<Self> {
        let retry_after = retry_after
            .map(|seconds| validate::seconds("retry_after", seconds, true))
            .transpose()?
            .map(|after| after.to_std().expect("non-negative"));
        Ok(PyHandlerOutcome(Outcome::Failed {
            error,
            retryable,
            retry_after,
        }))
    }

    /// `"completed"`, `"not_started"` or `"failed"`.
    #[getter]
    fn kind(&self) -> &'static str {
        match self.0 {
            Outcome::Completed => "completed",
            Outcome::NotStarted => "not_started",
            Outcome::Failed { .. } => "failed",
        }
    }

    /// The failure's description (`None` unless failed).
    #[getter]
    fn error(&self) -> Option<&str> {
        match &self.0 {
            Outcome::Failed { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Whether the failure may be retried (`None` unless failed).
    #[getter]
    fn retryable(&self) -> Option<bool> {
        match self.0 {
            Outcome::Failed { retryable, .. } => Some(retryable),
            _ => None,
        }
    }

    /// Seconds to wait before the retry, if the failure asked for a delay.
    #[getter]
    fn retry_after(&self) -> Option<f64> {
        match self.0 {
            Outcome::Failed { retry_after, .. } => retry_after.map(|d| d.as_secs_f64()),
            _ => None,
        }
    }

    fn __repr__(&self) -> String {
        match &self.0 {
            Outcome::Failed {
                error,
                retryable,
                retry_after,
            } => format!(
                "HandlerOutcome.failed({error:?}, retryable={retryable}, retry_after={retry_after:?})"
            ),
            _ => format!("HandlerOutcome.{}()", self.kind()),
        }
    }
}

#[async_trait]
impl BatchHandler for PythonDispatcher {
    async fn handle(&self, items: Vec<OutboxItem>, stop: StopFlag) -> Vec<Outcome> {
        let count = items.len();
        if crate::bindings::runtime::exiting() {
            // The interpreter is exiting: no handler can run; the items go back to pending.
            return vec![Outcome::NotStarted; count];
        }
        let dispatch = self.dispatch.clone();
        let joined = tokio::task::spawn_blocking(move || {
            Python::attach(|py| {
                let items: Vec<PyOutboxItem> = items.into_iter().map(PyOutboxItem::from).collect();
                let outcomes =
                    dispatch
                        .bind(py)
                        .call1((items, PyStopFlag(stop)))
                        .and_then(|returned| {
                            returned
                                .try_iter()?
                                .map(|value| Ok(value?.cast::<PyHandlerOutcome>()?.get().0.clone()))
                                .collect()
                        });
                outcomes.map_err(|err| format!("the dispatcher raised {}", err.value(py)))
            })
        })
        .await;
        match joined {
            Ok(Ok(outcomes)) => outcomes,
            Ok(Err(message)) => {
                tracing::error!(target: "headrace.worker", "{message}");
                vec![Outcome::retry(message); count]
            }
            Err(err) => vec![Outcome::retry(format!("the dispatcher thread failed: {err}")); count],
        }
    }

    async fn settled(&self, results: Vec<SettledItem>) {
        let Some(settled) = self.settled.lock().expect("settled poisoned").clone() else {
            return;
        };
        let _ = tokio::task::spawn_blocking(move || {
            Python::attach(|py| {
                let rows: Vec<(PyOutboxItem, &'static str, Option<String>)> = results
                    .into_iter()
                    .map(|r| (PyOutboxItem::from(r.item), r.settled.as_str(), r.error))
                    .collect();
                if let Err(err) = settled.bind(py).call1((rows,)) {
                    err.print(py); // a failing hook must not stop the worker
                }
            })
        })
        .await;
    }
}

/// The Rust claim loop. Use `headrace.worker.OutboxWorker`, which builds its dispatcher.
#[pyclass(module = "headrace._core", name = "WorkerCore", frozen)]
struct PyWorkerCore {
    worker: OutboxWorker,
    settled: Arc<std::sync::Mutex<Option<Arc<Py<PyAny>>>>>,
}

fn secs(what: &str, value: f64) -> PyResult<Duration> {
    Ok(seconds(what, value, false)?.to_std().expect("positive"))
}

#[pymethods]
impl PyWorkerCore {
    #[new]
    #[pyo3(signature = (store, dispatch, *, settled=None, worker_id, batch_size=100, concurrency=1, poll_interval=1.0, retry=None, reaper_interval=Some(60.0), topics=None, exclude_topics=Vec::new(), retry_by_topic=HashMap::new(), handler_timeout=None, stop_grace=10.0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        store: &Bound<'_, PyOutboxStore>,
        dispatch: Py<PyAny>,
        settled: Option<Py<PyAny>>,
        #[pyo3(from_py_with = crate::bindings::checked::text)] worker_id: String,
        #[pyo3(from_py_with = crate::bindings::checked::int64)] batch_size: i64,
        #[pyo3(from_py_with = crate::bindings::checked::int64)] concurrency: i64,
        #[pyo3(from_py_with = crate::bindings::checked::number)] poll_interval: f64,
        retry: Option<PyRetryPolicy>,
        reaper_interval: Option<f64>,
        #[pyo3(from_py_with = crate::bindings::checked::optional_texts)] topics: Option<
            Vec<String>,
        >,
        #[pyo3(from_py_with = crate::bindings::checked::texts)] exclude_topics: Vec<String>,
        retry_by_topic: HashMap<String, PyRetryPolicy>,
        #[pyo3(from_py_with = crate::bindings::checked::optional_number)] handler_timeout: Option<
            f64,
        >,
        #[pyo3(from_py_with = crate::bindings::checked::number)] stop_grace: f64,
    ) -> PyResult<Self> {
        let config = WorkerConfig {
            worker_id,
            batch_size,
            concurrency: usize::try_from(concurrency).map_err(|_| {
                config_error(format!("concurrency must be >= 1, got {concurrency}"))
            })?,
            poll_interval: secs("poll_interval", poll_interval)?,
            reaper_interval: reaper_interval
                .map(|s| secs("reaper_interval", s))
                .transpose()?,
            reaper_stale_after: chrono::Duration::seconds(600),
            topics,
            exclude_topics,
            retry_by_topic: retry_by_topic
                .into_iter()
                .map(|(t, p)| (t, p.core()))
                .collect(),
            retry: retry.map(|r| r.core()),
            handler_timeout: handler_timeout
                .map(|s| secs("handler_timeout", s))
                .transpose()?,
            stop_grace: seconds("stop_grace", stop_grace, true)?
                .to_std()
                .expect("non-negative"),
        };
        let settled_slot = Arc::new(std::sync::Mutex::new(settled.map(Arc::new)));
        let handler = Arc::new(PythonDispatcher {
            dispatch: Arc::new(dispatch),
            settled: settled_slot.clone(),
        });
        let worker = OutboxWorker::new(store.get().store.clone(), handler, config)?;
        Ok(PyWorkerCore {
            worker,
            settled: settled_slot,
        })
    }

    /// Sets (or with None, clears) the callable told where each item of a batch ended up.
    #[pyo3(signature = (settled=None))]
    fn set_settled(&self, settled: Option<Py<PyAny>>) {
        *self.settled.lock().expect("settled poisoned") = settled.map(Arc::new);
    }

    #[getter]
    fn worker_id(&self) -> &str {
        &self.worker.config().worker_id
    }

    /// Runs until `stop()`; Python signal handlers run every 100 ms while it waits.
    fn run(&self, py: Python<'_>) -> PyResult<PyWorkerReport> {
        let worker = self.worker.clone();
        self.wait(py, runtime().spawn(async move { worker.run().await }))
    }

    /// Drains every due item (or stops gracefully after `timeout` seconds); returns the report.
    #[pyo3(signature = (timeout=None))]
    fn run_until_empty(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<PyWorkerReport> {
        let limit = timeout.map(|t| secs("timeout", t)).transpose()?;
        let worker = self.worker.clone();
        self.wait(
            py,
            runtime().spawn(async move { worker.run_until_empty(limit).await }),
        )
    }

    /// Awaitable twin of `run_until_empty`.
    #[pyo3(signature = (timeout=None))]
    fn arun_until_empty<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let limit = timeout.map(|t| secs("timeout", t)).transpose()?;
        let worker = self.worker.clone();
        awaitable(py, async move {
            worker
                .run_until_empty(limit)
                .await
                .map(PyWorkerReport::from)
        })
    }

    /// Awaitable twin of `run`.
    fn arun<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let worker = self.worker.clone();
        awaitable(
            py,
            async move { worker.run().await.map(PyWorkerReport::from) },
        )
    }

    /// Stops gracefully: in-flight items finish, unstarted ones go back to pending.
    fn stop(&self) {
        self.worker.stop();
    }

    #[getter]
    fn stopping(&self) -> bool {
        self.worker.is_stopping()
    }

    /// Metrics in the Prometheus text format.
    fn metrics(&self) -> String {
        self.worker.metrics().render_prometheus()
    }

    /// Metrics as plain data: `(topics, claim, handler)` where `topics` maps a topic to its
    /// `claimed/completed/retried/failed` counts and latencies are `(count, sum_seconds)`.
    #[allow(clippy::type_complexity)]
    fn metrics_snapshot(
        &self,
    ) -> (
        BTreeMap<String, BTreeMap<&'static str, u64>>,
        (u64, f64),
        BTreeMap<String, (u64, f64)>,
    ) {
        let metrics = self.worker.metrics();
        let topics = metrics
            .topic_counts()
            .into_iter()
            .map(|(topic, c)| {
                let counts = BTreeMap::from([
                    ("claimed", c.claimed),
                    ("completed", c.completed),
                    ("retried", c.retried),
                    ("failed", c.failed),
                ]);
                (topic, counts)
            })
            .collect();
        let claim = metrics.claim_latency();
        let handler = metrics
            .handler_latency()
            .into_iter()
            .map(|(topic, l)| (topic, (l.count, l.sum_seconds)))
            .collect();
        (topics, (claim.count, claim.sum_seconds), handler)
    }
}

impl PyWorkerCore {
    /// Waits for `task` with the GIL released, running Python signal handlers in between; an
    /// exception from a handler (KeyboardInterrupt) stops the worker gracefully, then propagates.
    fn wait(
        &self,
        py: Python<'_>,
        mut task: tokio::task::JoinHandle<Result<WorkerReport>>,
    ) -> PyResult<PyWorkerReport> {
        match wait_interruptibly(py, &mut task) {
            Ok(report) => report.map(PyWorkerReport::from),
            Err(interrupt) => {
                self.worker.stop();
                let _ = py.detach(|| runtime().block_on(task));
                Err(interrupt)
            }
        }
    }
}
