//! `headrace._core.WorkerCore`: the Rust claim loop driving a Python dispatcher.
//! `headrace.worker.OutboxWorker` (Python) builds the dispatcher from user handlers.

use crate::bindings::errors::config_error;
use crate::bindings::outbox::{PyOutboxItem, PyOutboxStore, PyRetryPolicy};
use crate::bindings::runtime::{awaitable, runtime};
use crate::error::{Error, Result};
use crate::outbox::{OutboxItem, seconds};
use crate::worker::{
    BatchHandler, OutboxWorker, Outcome, SettledItem, StopFlag, WorkerConfig, WorkerReport,
};
use async_trait::async_trait;
use chrono::{DateTime, FixedOffset, Utc};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyWorkerCore>()?;
    m.add_class::<PyStopFlag>()?;
    m.add_class::<PyWorkerReport>()?;
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
        }
    }
}

#[pymethods]
impl PyWorkerReport {
    fn __repr__(&self) -> String {
        format!(
            "WorkerReport(processed={}, completed={}, retried={}, failed={}, released={}, reaped={})",
            self.processed, self.completed, self.retried, self.failed, self.released, self.reaped
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
            ) == (
                self.processed,
                self.completed,
                self.retried,
                self.failed,
                self.released,
                self.reaped,
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

/// Reads one outcome tuple: `("completed",)`, `("not_started",)` or
/// `("failed", error, retryable, retry_at_or_None)`.
fn outcome(value: &Bound<'_, PyAny>) -> PyResult<Outcome> {
    let tuple = value.cast::<PyTuple>()?;
    let kind: String = tuple.get_item(0)?.extract()?;
    match kind.as_str() {
        "completed" => Ok(Outcome::Completed),
        "not_started" => Ok(Outcome::NotStarted),
        "failed" => {
            let retry_at = tuple.get_item(3)?;
            Ok(Outcome::Failed {
                error: tuple.get_item(1)?.extract()?,
                retryable: tuple.get_item(2)?.extract()?,
                retry_at: if retry_at.is_none() {
                    None
                } else {
                    Some(
                        retry_at
                            .extract::<DateTime<FixedOffset>>()?
                            .with_timezone(&Utc),
                    )
                },
            })
        }
        other => Err(config_error(format!("unknown dispatch outcome {other:?}"))),
    }
}

#[async_trait]
impl BatchHandler for PythonDispatcher {
    async fn handle(&self, items: Vec<OutboxItem>, stop: StopFlag) -> Vec<Outcome> {
        let count = items.len();
        let dispatch = self.dispatch.clone();
        let joined = tokio::task::spawn_blocking(move || {
            Python::attach(|py| {
                let items: Vec<PyOutboxItem> = items.into_iter().map(PyOutboxItem::from).collect();
                let outcomes =
                    dispatch
                        .bind(py)
                        .call1((items, PyStopFlag(stop)))
                        .and_then(|returned| {
                            returned.try_iter()?.map(|value| outcome(&value?)).collect()
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
    #[pyo3(signature = (store, dispatch, *, settled=None, worker_id, batch_size=100, concurrency=1, poll_interval=1.0, retry=None, reaper_interval=Some(60.0), topics=None, exclude_topics=Vec::new(), retry_by_topic=HashMap::new()))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        store: &Bound<'_, PyOutboxStore>,
        dispatch: Py<PyAny>,
        settled: Option<Py<PyAny>>,
        worker_id: String,
        batch_size: i64,
        concurrency: i64,
        poll_interval: f64,
        retry: Option<PyRetryPolicy>,
        reaper_interval: Option<f64>,
        topics: Option<Vec<String>>,
        exclude_topics: Vec<String>,
        retry_by_topic: HashMap<String, PyRetryPolicy>,
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
        loop {
            let finished = py.detach(|| {
                runtime().block_on(async {
                    tokio::time::timeout(Duration::from_millis(100), &mut task).await
                })
            });
            if let Ok(joined) = finished {
                let report =
                    joined.map_err(|e| Error::Store(format!("the worker crashed: {e}")))??;
                return Ok(report.into());
            }
            if let Err(interrupt) = py.check_signals() {
                self.worker.stop();
                let _ = py.detach(|| runtime().block_on(task));
                return Err(interrupt);
            }
        }
    }
}
