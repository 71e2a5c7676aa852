//! Python classes of `headrace.outbox`: stores, items, the retry policy and the reaper.

use crate::bindings::clock::{PyManualClock, shared_clock};
use crate::bindings::errors::config_error;
use crate::bindings::json;
use crate::bindings::runtime::{awaitable, block_on, block_on_task, runtime};
use crate::clock::SharedClock;
use crate::db::DatabaseUrl;
use crate::db::url::redact;
use crate::outbox::{
    self, ClaimFilter, DEFAULT_MAX_PAYLOAD_BYTES, NewItem, OutboxConfig, OutboxItem, OutboxReaper,
    OutboxStatus, OutboxStore, RetryPolicy, check_limit, seconds,
};
use chrono::{DateTime, FixedOffset, Utc};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Environment variable consulted when a store is created without a URL.
const URL_ENV: &str = "HEADRACE_DATABASE_URL";

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyRetryPolicy>()?;
    m.add_class::<PyOutboxItem>()?;
    m.add_class::<PyOutboxStore>()?;
    m.add_class::<PySkipLockedClaimOutboxStore>()?;
    m.add_class::<PyOptimisticClaimOutboxStore>()?;
    m.add_class::<PyOutboxReaper>()?;
    m.add_class::<PyClaimIterator>()?;
    Ok(())
}

/// Exponential, capped, jittered backoff and the attempt limit.
#[pyclass(
    module = "headrace._core",
    name = "RetryPolicy",
    frozen,
    get_all,
    from_py_object
)]
#[derive(Clone)]
pub(crate) struct PyRetryPolicy {
    max_attempts: i32,
    base_seconds: f64,
    factor: f64,
    max_seconds: f64,
    jitter: f64,
}

impl PyRetryPolicy {
    pub(crate) fn core(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts,
            base_seconds: self.base_seconds,
            factor: self.factor,
            max_seconds: self.max_seconds,
            jitter: self.jitter,
        }
    }
}

#[pymethods]
impl PyRetryPolicy {
    #[new]
    #[pyo3(signature = (max_attempts=5, base_seconds=2.0, factor=2.0, max_seconds=3600.0, jitter=0.1))]
    fn new(
        max_attempts: i32,
        base_seconds: f64,
        factor: f64,
        max_seconds: f64,
        jitter: f64,
    ) -> PyResult<Self> {
        let policy = PyRetryPolicy {
            max_attempts,
            base_seconds,
            factor,
            max_seconds,
            jitter,
        };
        policy.core().validate()?;
        Ok(policy)
    }

    /// Seconds to wait after attempt number `attempt` (1-based), jitter included.
    fn delay_seconds(&self, attempt: i32) -> f64 {
        self.core().delay(attempt).as_seconds_f64()
    }

    fn __repr__(&self) -> String {
        format!(
            "RetryPolicy(max_attempts={}, base_seconds={}, factor={}, max_seconds={}, jitter={})",
            self.max_attempts, self.base_seconds, self.factor, self.max_seconds, self.jitter
        )
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyRetryPolicy>()
            .is_ok_and(|o| o.get().core() == self.core())
    }
}

/// One outbox row. `payload` is decoded from JSON on first access.
#[pyclass(module = "headrace._core", name = "OutboxItem", frozen)]
pub(crate) struct PyOutboxItem {
    item: OutboxItem,
    payload: PyOnceLock<Py<PyAny>>,
}

impl From<OutboxItem> for PyOutboxItem {
    fn from(item: OutboxItem) -> Self {
        PyOutboxItem {
            item,
            payload: PyOnceLock::new(),
        }
    }
}

#[pymethods]
impl PyOutboxItem {
    #[getter]
    fn id(&self) -> i64 {
        self.item.id
    }
    #[getter]
    fn topic(&self) -> &str {
        &self.item.topic
    }
    #[getter]
    fn payload<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.payload
            .get_or_try_init(py, || {
                json::loads(py, &self.item.payload).map(Bound::unbind)
            })
            .map(|p| p.bind(py).clone())
    }
    /// The payload as the JSON text stored in the database.
    #[getter]
    fn payload_json(&self) -> &str {
        &self.item.payload
    }
    #[getter]
    fn status(&self) -> &'static str {
        self.item.status.as_str()
    }
    #[getter]
    fn priority(&self) -> i32 {
        self.item.priority
    }
    #[getter]
    fn attempts(&self) -> i32 {
        self.item.attempts
    }
    #[getter]
    fn max_attempts(&self) -> i32 {
        self.item.max_attempts
    }
    #[getter]
    fn run_at(&self) -> DateTime<Utc> {
        self.item.run_at
    }
    #[getter]
    fn lease_owner(&self) -> Option<&str> {
        self.item.lease_owner.as_deref()
    }
    #[getter]
    fn lease_expires_at(&self) -> Option<DateTime<Utc>> {
        self.item.lease_expires_at
    }
    #[getter]
    fn last_error(&self) -> Option<&str> {
        self.item.last_error.as_deref()
    }
    #[getter]
    fn dedupe_key(&self) -> Option<&str> {
        self.item.dedupe_key.as_deref()
    }
    #[getter]
    fn trace_id(&self) -> Option<&str> {
        self.item.trace_id.as_deref()
    }
    #[getter]
    fn created_at(&self) -> DateTime<Utc> {
        self.item.created_at
    }
    #[getter]
    fn updated_at(&self) -> DateTime<Utc> {
        self.item.updated_at
    }

    fn __repr__(&self) -> String {
        format!(
            "OutboxItem(id={}, topic={:?}, status={:?}, attempts={}/{})",
            self.item.id,
            self.item.topic,
            self.item.status.as_str(),
            self.item.attempts,
            self.item.max_attempts
        )
    }
}

/// Base class of the outbox stores; `OutboxStore.connect(url)` picks the implementation.
#[pyclass(module = "headrace._core", name = "OutboxStore", subclass, frozen)]
pub(crate) struct PyOutboxStore {
    pub(crate) store: Arc<dyn OutboxStore>,
    url: String,
}

/// Options shared by `connect` and the two constructors.
struct ConnectOptions {
    lease_seconds: f64,
    retry: Option<PyRetryPolicy>,
    migrate: bool,
    max_payload_bytes: usize,
    clock: SharedClock,
}

fn resolve_url(url: Option<String>) -> PyResult<String> {
    url.or_else(|| std::env::var(URL_ENV).ok().filter(|u| !u.is_empty())).ok_or_else(|| {
        config_error(format!(
            "no database URL: pass url=\"sqlite:///path.db\" or \"postgres://…\", or set {URL_ENV}"
        ))
    })
}

fn open_store(py: Python<'_>, url: &str, options: ConnectOptions) -> PyResult<PyOutboxStore> {
    let config = OutboxConfig {
        lease: seconds("lease_seconds", options.lease_seconds, false)?,
        retry: options.retry.map(|r| r.core()).unwrap_or_default(),
        max_payload_bytes: options.max_payload_bytes,
        clock: options.clock,
    };
    let store = block_on(py, outbox::connect(url, config, options.migrate))?;
    Ok(PyOutboxStore {
        store,
        url: redact(url),
    })
}

impl ConnectOptions {
    fn new(
        lease_seconds: f64,
        retry: Option<PyRetryPolicy>,
        migrate: bool,
        max_payload_bytes: usize,
        clock: Option<&Bound<'_, PyManualClock>>,
    ) -> Self {
        ConnectOptions {
            lease_seconds,
            retry,
            migrate,
            max_payload_bytes,
            clock: shared_clock(clock),
        }
    }
}

/// Opens the store of one engine for its class's constructor, refusing the other engine's URL.
fn open_engine(
    py: Python<'_>,
    url: Option<String>,
    postgres: bool,
    class: &str,
    options: ConnectOptions,
) -> PyResult<PyOutboxStore> {
    let url = resolve_url(url)?;
    expect_engine(&url, postgres, class)?;
    open_store(py, &url, options)
}

fn expect_engine(url: &str, postgres: bool, class: &str) -> PyResult<()> {
    let matches = matches!(
        (DatabaseUrl::parse(url)?, postgres),
        (DatabaseUrl::Postgres { .. }, true) | (DatabaseUrl::Sqlite { .. }, false)
    );
    if matches {
        Ok(())
    } else {
        let wanted = if postgres {
            "postgres://…"
        } else {
            "sqlite:///path.db"
        };
        Err(config_error(format!(
            "{class} needs a {wanted} URL, got {:?}: use OutboxStore.connect(url) to choose by URL",
            redact(url)
        )))
    }
}

/// A point in time from a timezone-aware datetime, or seconds from now from a number.
fn when(value: &Bound<'_, PyAny>, what: &str) -> PyResult<DateTime<Utc>> {
    if let Ok(seconds_from_now) = value.extract::<f64>() {
        let delay = seconds(what, seconds_from_now, true)?;
        return Ok(Utc::now() + delay);
    }
    match value.extract::<DateTime<FixedOffset>>() {
        Ok(at) => Ok(at.with_timezone(&Utc)),
        Err(_) => Err(config_error(format!(
            "{what} must be a timezone-aware datetime or a number of seconds, got {}",
            value
                .repr()
                .map(|r| r.to_string())
                .unwrap_or_else(|_| "?".into())
        ))),
    }
}

#[allow(clippy::too_many_arguments)] // mirrors enqueue's keyword arguments
fn new_item(
    topic: String,
    payload: &Bound<'_, PyAny>,
    priority: i32,
    delay_seconds: f64,
    run_at: Option<&Bound<'_, PyAny>>,
    dedupe_key: Option<String>,
    max_attempts: Option<i32>,
    trace_id: Option<String>,
) -> PyResult<NewItem> {
    let delay = if delay_seconds.is_finite() {
        chrono::Duration::microseconds((delay_seconds * 1e6).round() as i64)
    } else {
        return Err(config_error(format!(
            "delay_seconds must be a finite number, got {delay_seconds}"
        )));
    };
    Ok(NewItem {
        payload: json::dumps(payload, "payload")?,
        topic,
        priority,
        run_at: run_at
            .filter(|v| !v.is_none())
            .map(|v| when(v, "run_at"))
            .transpose()?,
        delay,
        dedupe_key,
        max_attempts,
        trace_id,
    })
}

const ITEM_KEYS: [&str; 8] = [
    "topic",
    "payload",
    "priority",
    "delay_seconds",
    "run_at",
    "dedupe_key",
    "max_attempts",
    "trace_id",
];

fn new_item_from_dict(index: usize, spec: &Bound<'_, PyAny>) -> PyResult<NewItem> {
    let dict = spec.cast::<PyDict>().map_err(|_| {
        config_error(format!(
            "enqueue_many item {index} must be a dict with topic and payload keys"
        ))
    })?;
    for key in dict.keys() {
        let key: String = key.extract()?;
        if !ITEM_KEYS.contains(&key.as_str()) {
            return Err(config_error(format!(
                "enqueue_many item {index} has unknown key {key:?}: expected {}",
                ITEM_KEYS.join(", ")
            )));
        }
    }
    let get = |key: &str| dict.get_item(key).ok().flatten().filter(|v| !v.is_none());
    let topic: String = get("topic")
        .ok_or_else(|| config_error(format!("enqueue_many item {index} has no topic")))?
        .extract()?;
    let payload = get("payload")
        .ok_or_else(|| config_error(format!("enqueue_many item {index} has no payload")))?;
    new_item(
        topic,
        &payload,
        get("priority")
            .map(|v| v.extract())
            .transpose()?
            .unwrap_or(0),
        get("delay_seconds")
            .map(|v| v.extract())
            .transpose()?
            .unwrap_or(0.0),
        get("run_at").as_ref(),
        get("dedupe_key").map(|v| v.extract()).transpose()?,
        get("max_attempts").map(|v| v.extract()).transpose()?,
        get("trace_id").map(|v| v.extract()).transpose()?,
    )
}

fn items(claimed: Vec<OutboxItem>) -> Vec<PyOutboxItem> {
    claimed.into_iter().map(PyOutboxItem::from).collect()
}

fn lease_delta(seconds_value: Option<f64>) -> PyResult<Option<chrono::Duration>> {
    seconds_value
        .map(|s| seconds("seconds", s, false).map_err(PyErr::from))
        .transpose()
}

fn next_attempt_time(next_attempt: Option<&Bound<'_, PyAny>>) -> PyResult<Option<DateTime<Utc>>> {
    next_attempt
        .filter(|v| !v.is_none())
        .map(|v| when(v, "next_attempt"))
        .transpose()
}

fn parse_statuses(statuses: Vec<String>) -> PyResult<Vec<OutboxStatus>> {
    statuses
        .iter()
        .map(|s| s.parse::<OutboxStatus>().map_err(PyErr::from))
        .collect()
}

#[pymethods]
impl PyOutboxStore {
    /// Opens the store `url` selects: `sqlite:…` → OptimisticClaimOutboxStore,
    /// `postgres://…` → SkipLockedClaimOutboxStore.
    #[staticmethod]
    #[pyo3(signature = (url=None, *, lease_seconds=300.0, retry=None, migrate=true, max_payload_bytes=DEFAULT_MAX_PAYLOAD_BYTES, clock=None))]
    fn connect(
        py: Python<'_>,
        url: Option<String>,
        lease_seconds: f64,
        retry: Option<PyRetryPolicy>,
        migrate: bool,
        max_payload_bytes: usize,
        clock: Option<&Bound<'_, PyManualClock>>,
    ) -> PyResult<Py<PyAny>> {
        let url = resolve_url(url)?;
        let postgres = matches!(DatabaseUrl::parse(&url)?, DatabaseUrl::Postgres { .. });
        let base = open_store(
            py,
            &url,
            ConnectOptions::new(lease_seconds, retry, migrate, max_payload_bytes, clock),
        )?;
        let init = PyClassInitializer::from(base);
        Ok(if postgres {
            Py::new(py, init.add_subclass(PySkipLockedClaimOutboxStore))?.into_any()
        } else {
            Py::new(py, init.add_subclass(PyOptimisticClaimOutboxStore))?.into_any()
        })
    }

    /// The URL this store was opened with (password hidden).
    #[getter]
    fn url(&self) -> &str {
        &self.url
    }

    #[getter]
    fn lease_seconds(&self) -> f64 {
        self.store.config().lease.as_seconds_f64()
    }

    #[getter]
    fn retry(&self) -> PyRetryPolicy {
        let r = &self.store.config().retry;
        PyRetryPolicy {
            max_attempts: r.max_attempts,
            base_seconds: r.base_seconds,
            factor: r.factor,
            max_seconds: r.max_seconds,
            jitter: r.jitter,
        }
    }

    #[getter]
    fn claim_strategy(&self) -> &'static str {
        self.store.claim_strategy()
    }

    #[pyo3(signature = (topic, payload, *, priority=0, delay_seconds=0.0, run_at=None, dedupe_key=None, max_attempts=None, trace_id=None))]
    #[allow(clippy::too_many_arguments)]
    fn enqueue(
        &self,
        py: Python<'_>,
        topic: String,
        payload: &Bound<'_, PyAny>,
        priority: i32,
        delay_seconds: f64,
        run_at: Option<&Bound<'_, PyAny>>,
        dedupe_key: Option<String>,
        max_attempts: Option<i32>,
        trace_id: Option<String>,
    ) -> PyResult<i64> {
        let item = new_item(
            topic,
            payload,
            priority,
            delay_seconds,
            run_at,
            dedupe_key,
            max_attempts,
            trace_id,
        )?;
        block_on(py, self.store.enqueue(item))
    }

    #[pyo3(signature = (topic, payload, *, priority=0, delay_seconds=0.0, run_at=None, dedupe_key=None, max_attempts=None, trace_id=None))]
    #[allow(clippy::too_many_arguments)]
    fn aenqueue<'py>(
        &self,
        py: Python<'py>,
        topic: String,
        payload: &Bound<'py, PyAny>,
        priority: i32,
        delay_seconds: f64,
        run_at: Option<&Bound<'py, PyAny>>,
        dedupe_key: Option<String>,
        max_attempts: Option<i32>,
        trace_id: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let item = new_item(
            topic,
            payload,
            priority,
            delay_seconds,
            run_at,
            dedupe_key,
            max_attempts,
            trace_id,
        )?;
        let store = self.store.clone();
        awaitable(py, async move { store.enqueue(item).await })
    }

    /// Enqueues dicts (`topic`, `payload` and any enqueue option) in one transaction.
    fn enqueue_many(&self, py: Python<'_>, items: Vec<Bound<'_, PyAny>>) -> PyResult<Vec<i64>> {
        let items = items
            .iter()
            .enumerate()
            .map(|(n, i)| new_item_from_dict(n, i))
            .collect::<PyResult<Vec<_>>>()?;
        block_on(py, self.store.enqueue_many(items))
    }

    fn aenqueue_many<'py>(
        &self,
        py: Python<'py>,
        items: Vec<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let items = items
            .iter()
            .enumerate()
            .map(|(n, i)| new_item_from_dict(n, i))
            .collect::<PyResult<Vec<_>>>()?;
        let store = self.store.clone();
        awaitable(py, async move { store.enqueue_many(items).await })
    }

    /// Claims up to `limit` due items, optionally only of `topics` and never of
    /// `exclude_topics`; `due_by` (a datetime) evaluates "due" at another moment.
    #[pyo3(signature = (worker_id, limit=10, *, topics=None, exclude_topics=Vec::new(), due_by=None))]
    fn claim_batch(
        &self,
        py: Python<'_>,
        worker_id: String,
        limit: i64,
        topics: Option<Vec<String>>,
        exclude_topics: Vec<String>,
        due_by: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Vec<PyOutboxItem>> {
        let filter = ClaimFilter {
            topics,
            exclude_topics,
            due_by: due_by
                .filter(|v| !v.is_none())
                .map(|v| when(v, "due_by"))
                .transpose()?,
        };
        let store = self.store.clone();
        block_on_task(
            py,
            async move { store.claim(&worker_id, limit, &filter).await },
        )
        .map(items)
    }

    /// Batches claimed one after another until none is due, each next batch claimed while the
    /// caller works on the current one. Closing the iterator (or leaving its `with` block, or
    /// dropping it) gives an unused prefetched batch back to `pending`.
    #[pyo3(signature = (worker_id, limit=100, *, topics=None, exclude_topics=Vec::new()))]
    fn iter_claims(
        &self,
        worker_id: String,
        limit: i64,
        topics: Option<Vec<String>>,
        exclude_topics: Vec<String>,
    ) -> PyResult<PyClaimIterator> {
        check_limit(limit)?;
        Ok(PyClaimIterator {
            store: self.store.clone(),
            worker_id,
            limit,
            filter: ClaimFilter {
                topics,
                exclude_topics,
                due_by: None,
            },
            prefetched: std::sync::Mutex::new(None),
        })
    }

    #[pyo3(signature = (worker_id, limit=10, *, topics=None))]
    fn aclaim_batch<'py>(
        &self,
        py: Python<'py>,
        worker_id: String,
        limit: i64,
        topics: Option<Vec<String>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store.clone();
        awaitable(py, async move {
            store
                .claim_batch(&worker_id, limit, topics.as_deref())
                .await
                .map(items)
        })
    }

    fn mark_success(&self, py: Python<'_>, item_id: i64, worker_id: String) -> PyResult<()> {
        block_on(py, self.store.mark_success(item_id, &worker_id))
    }

    fn amark_success<'py>(
        &self,
        py: Python<'py>,
        item_id: i64,
        worker_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store.clone();
        awaitable(
            py,
            async move { store.mark_success(item_id, &worker_id).await },
        )
    }

    fn mark_success_many(
        &self,
        py: Python<'_>,
        item_ids: Vec<i64>,
        worker_id: String,
    ) -> PyResult<()> {
        let store = self.store.clone();
        block_on_task(py, async move {
            store.mark_success_many(&item_ids, &worker_id).await
        })
    }

    fn amark_success_many<'py>(
        &self,
        py: Python<'py>,
        item_ids: Vec<i64>,
        worker_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store.clone();
        awaitable(py, async move {
            store.mark_success_many(&item_ids, &worker_id).await
        })
    }

    /// Returns the item to `pending` (at `next_attempt`, a datetime or seconds from now, else
    /// the retry policy's backoff) or dead-letters it once attempts are used up. Returns the status.
    #[pyo3(signature = (item_id, worker_id, next_attempt=None, error=String::new()))]
    fn mark_retry(
        &self,
        py: Python<'_>,
        item_id: i64,
        worker_id: String,
        next_attempt: Option<&Bound<'_, PyAny>>,
        error: String,
    ) -> PyResult<&'static str> {
        let at = next_attempt_time(next_attempt)?;
        block_on(py, self.store.mark_retry(item_id, &worker_id, at, &error))
            .map(OutboxStatus::as_str)
    }

    #[pyo3(signature = (item_id, worker_id, next_attempt=None, error=String::new()))]
    fn amark_retry<'py>(
        &self,
        py: Python<'py>,
        item_id: i64,
        worker_id: String,
        next_attempt: Option<&Bound<'py, PyAny>>,
        error: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let at = next_attempt_time(next_attempt)?;
        let store = self.store.clone();
        awaitable(py, async move {
            store
                .mark_retry(item_id, &worker_id, at, &error)
                .await
                .map(OutboxStatus::as_str)
        })
    }

    #[pyo3(signature = (item_id, worker_id, error=String::new()))]
    fn mark_failed(
        &self,
        py: Python<'_>,
        item_id: i64,
        worker_id: String,
        error: String,
    ) -> PyResult<()> {
        block_on(py, self.store.mark_failed(item_id, &worker_id, &error))
    }

    #[pyo3(signature = (item_id, worker_id, error=String::new()))]
    fn amark_failed<'py>(
        &self,
        py: Python<'py>,
        item_id: i64,
        worker_id: String,
        error: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store.clone();
        awaitable(py, async move {
            store.mark_failed(item_id, &worker_id, &error).await
        })
    }

    /// Extends a live lease by `seconds` (default: the store's lease); returns the new expiry.
    #[pyo3(signature = (item_id, worker_id, seconds=None))]
    fn extend_lease(
        &self,
        py: Python<'_>,
        item_id: i64,
        worker_id: String,
        seconds: Option<f64>,
    ) -> PyResult<DateTime<Utc>> {
        let by = lease_delta(seconds)?;
        block_on(py, self.store.extend_lease(item_id, &worker_id, by))
    }

    #[pyo3(signature = (item_id, worker_id, seconds=None))]
    fn aextend_lease<'py>(
        &self,
        py: Python<'py>,
        item_id: i64,
        worker_id: String,
        seconds: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let by = lease_delta(seconds)?;
        let store = self.store.clone();
        awaitable(py, async move {
            store.extend_lease(item_id, &worker_id, by).await
        })
    }

    /// Gives claimed-but-unstarted items back without counting the attempt; returns how many.
    fn release(&self, py: Python<'_>, item_ids: Vec<i64>, worker_id: String) -> PyResult<u64> {
        block_on(py, self.store.release(&item_ids, &worker_id))
    }

    fn arelease<'py>(
        &self,
        py: Python<'py>,
        item_ids: Vec<i64>,
        worker_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store.clone();
        awaitable(
            py,
            async move { store.release(&item_ids, &worker_id).await },
        )
    }

    fn get(&self, py: Python<'_>, item_id: i64) -> PyResult<PyOutboxItem> {
        block_on(py, self.store.get(item_id)).map(PyOutboxItem::from)
    }

    fn aget<'py>(&self, py: Python<'py>, item_id: i64) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store.clone();
        awaitable(py, async move {
            store.get(item_id).await.map(PyOutboxItem::from)
        })
    }

    /// Up to `limit` items, newest first, optionally of one `status` and/or `topic`.
    #[pyo3(signature = (*, status=None, topic=None, limit=50))]
    fn list(
        &self,
        py: Python<'_>,
        status: Option<String>,
        topic: Option<String>,
        limit: i64,
    ) -> PyResult<Vec<PyOutboxItem>> {
        let status = status.map(|s| s.parse::<OutboxStatus>()).transpose()?;
        block_on(py, self.store.list(status, topic.as_deref(), limit)).map(items)
    }

    fn stats(&self, py: Python<'_>) -> PyResult<BTreeMap<String, i64>> {
        block_on(py, self.store.stats())
    }

    fn astats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store.clone();
        awaitable(py, async move { store.stats().await })
    }

    fn requeue(&self, py: Python<'_>, item_id: i64) -> PyResult<()> {
        block_on(py, self.store.requeue(item_id))
    }

    fn arequeue<'py>(&self, py: Python<'py>, item_id: i64) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store.clone();
        awaitable(py, async move { store.requeue(item_id).await })
    }

    #[pyo3(signature = (topic=None))]
    fn requeue_failed(&self, py: Python<'_>, topic: Option<String>) -> PyResult<u64> {
        block_on(py, self.store.requeue_failed(topic.as_deref()))
    }

    #[pyo3(signature = (topic=None))]
    fn arequeue_failed<'py>(
        &self,
        py: Python<'py>,
        topic: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store.clone();
        awaitable(
            py,
            async move { store.requeue_failed(topic.as_deref()).await },
        )
    }

    #[pyo3(signature = (older_than_seconds, statuses=vec!["completed".to_string()]))]
    fn purge(
        &self,
        py: Python<'_>,
        older_than_seconds: f64,
        statuses: Vec<String>,
    ) -> PyResult<u64> {
        let older = seconds("older_than_seconds", older_than_seconds, true)?;
        let statuses = parse_statuses(statuses)?;
        block_on(py, self.store.purge(older, &statuses))
    }

    #[pyo3(signature = (older_than_seconds, statuses=vec!["completed".to_string()]))]
    fn apurge<'py>(
        &self,
        py: Python<'py>,
        older_than_seconds: f64,
        statuses: Vec<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let older = seconds("older_than_seconds", older_than_seconds, true)?;
        let statuses = parse_statuses(statuses)?;
        let store = self.store.clone();
        awaitable(py, async move { store.purge(older, &statuses).await })
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let class = slf.get_type().name()?;
        Ok(format!(
            "{class}({:?}, lease_seconds={})",
            slf.get().url,
            slf.get().lease_seconds()
        ))
    }
}

/// PostgreSQL store: batch claims with `FOR UPDATE SKIP LOCKED`.
#[pyclass(module = "headrace._core", name = "SkipLockedClaimOutboxStore", extends = PyOutboxStore, frozen)]
pub(crate) struct PySkipLockedClaimOutboxStore;

#[pymethods]
impl PySkipLockedClaimOutboxStore {
    #[new]
    #[pyo3(signature = (url=None, *, lease_seconds=300.0, retry=None, migrate=true, max_payload_bytes=DEFAULT_MAX_PAYLOAD_BYTES, clock=None))]
    fn new(
        py: Python<'_>,
        url: Option<String>,
        lease_seconds: f64,
        retry: Option<PyRetryPolicy>,
        migrate: bool,
        max_payload_bytes: usize,
        clock: Option<&Bound<'_, PyManualClock>>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let options = ConnectOptions::new(lease_seconds, retry, migrate, max_payload_bytes, clock);
        let base = open_engine(py, url, true, "SkipLockedClaimOutboxStore", options)?;
        Ok(PyClassInitializer::from(base).add_subclass(PySkipLockedClaimOutboxStore))
    }
}

/// SQLite store: claims inside `BEGIN IMMEDIATE` transactions.
#[pyclass(module = "headrace._core", name = "OptimisticClaimOutboxStore", extends = PyOutboxStore, frozen)]
pub(crate) struct PyOptimisticClaimOutboxStore;

#[pymethods]
impl PyOptimisticClaimOutboxStore {
    #[new]
    #[pyo3(signature = (url=None, *, lease_seconds=300.0, retry=None, migrate=true, max_payload_bytes=DEFAULT_MAX_PAYLOAD_BYTES, clock=None))]
    fn new(
        py: Python<'_>,
        url: Option<String>,
        lease_seconds: f64,
        retry: Option<PyRetryPolicy>,
        migrate: bool,
        max_payload_bytes: usize,
        clock: Option<&Bound<'_, PyManualClock>>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let options = ConnectOptions::new(lease_seconds, retry, migrate, max_payload_bytes, clock);
        let base = open_engine(py, url, false, "OptimisticClaimOutboxStore", options)?;
        Ok(PyClassInitializer::from(base).add_subclass(PyOptimisticClaimOutboxStore))
    }
}

/// Returns items with expired leases to `pending` (or `failed` once out of attempts).
#[pyclass(module = "headrace._core", name = "OutboxReaper", frozen)]
pub(crate) struct PyOutboxReaper {
    reaper: OutboxReaper,
}

#[pymethods]
impl PyOutboxReaper {
    #[new]
    #[pyo3(signature = (store, stale_threshold_seconds=600.0))]
    fn new(store: &Bound<'_, PyOutboxStore>, stale_threshold_seconds: f64) -> PyResult<Self> {
        let threshold = seconds("stale_threshold_seconds", stale_threshold_seconds, true)?;
        Ok(PyOutboxReaper {
            reaper: OutboxReaper::new(store.get().store.clone(), threshold),
        })
    }

    /// Reaps once; returns how many items were recovered.
    fn reap_stale_items(&self, py: Python<'_>) -> PyResult<u64> {
        block_on(py, self.reaper.reap_stale_items())
    }

    fn areap_stale_items<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let reaper = self.reaper.clone();
        awaitable(py, async move { reaper.reap_stale_items().await })
    }
}

type ClaimTask = tokio::task::JoinHandle<crate::error::Result<Vec<OutboxItem>>>;

/// Iterator over claimed batches with the next claim overlapped (see `OutboxStore.iter_claims`).
#[pyclass(module = "headrace._core", name = "ClaimIterator", frozen)]
pub(crate) struct PyClaimIterator {
    store: Arc<dyn OutboxStore>,
    worker_id: String,
    limit: i64,
    filter: ClaimFilter,
    prefetched: std::sync::Mutex<Option<ClaimTask>>,
}

impl PyClaimIterator {
    fn spawn_claim(&self) -> ClaimTask {
        let (store, worker_id, limit, filter) = (
            self.store.clone(),
            self.worker_id.clone(),
            self.limit,
            self.filter.clone(),
        );
        crate::bindings::runtime::runtime()
            .spawn(async move { store.claim(&worker_id, limit, &filter).await })
    }

    fn take_prefetched(&self) -> Option<ClaimTask> {
        self.prefetched
            .lock()
            .expect("claim iterator poisoned")
            .take()
    }
}

async fn finish(task: ClaimTask) -> crate::error::Result<Vec<OutboxItem>> {
    task.await.unwrap_or_else(|e| {
        Err(crate::error::Error::Store(format!(
            "a claim task failed: {e}"
        )))
    })
}

#[pymethods]
impl PyClaimIterator {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Vec<PyOutboxItem>>> {
        let prefetched = self.take_prefetched();
        let was_prefetched = prefetched.is_some();
        let task = prefetched.unwrap_or_else(|| self.spawn_claim());
        let mut claimed = py.detach(|| runtime().block_on(finish(task)))?;
        if claimed.is_empty() && was_prefetched {
            // Claimed before the caller settled the last batch: look once more before stopping.
            claimed = py.detach(|| runtime().block_on(finish(self.spawn_claim())))?;
        }
        if claimed.is_empty() {
            return Ok(None);
        }
        *self.prefetched.lock().expect("claim iterator poisoned") = Some(self.spawn_claim());
        Ok(Some(items(claimed)))
    }

    /// Gives an unused prefetched batch back to `pending`; returns how many items it held.
    fn close(&self, py: Python<'_>) -> PyResult<u64> {
        let Some(task) = self.take_prefetched() else {
            return Ok(0);
        };
        let (store, worker_id) = (self.store.clone(), self.worker_id.clone());
        block_on(py, async move {
            let ids: Vec<i64> = finish(task).await?.iter().map(|i| i.id).collect();
            store.release(&ids, &worker_id).await
        })
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }
}

impl Drop for PyClaimIterator {
    fn drop(&mut self) {
        if let Some(task) = self.take_prefetched() {
            let (store, worker_id) = (self.store.clone(), self.worker_id.clone());
            runtime().spawn(async move {
                if let Ok(claimed) = finish(task).await {
                    let ids: Vec<i64> = claimed.iter().map(|i| i.id).collect();
                    let _ = store.release(&ids, &worker_id).await;
                }
            });
        }
    }
}
