//! `OutboxStore`: every store method, sync and async.

use super::args::{
    ConnectOptions, items, lease_delta, new_item, new_item_from_dict, next_attempt_time,
    open_store, parse_statuses, resolve_url, when,
};
use super::claim_iterator::PyClaimIterator;
use super::engines::{PyOptimisticClaimOutboxStore, PySkipLockedClaimOutboxStore};
use super::item::PyOutboxItem;
use super::retry_policy::PyRetryPolicy;
use crate::bindings::clock::PyManualClock;
use crate::bindings::runtime::awaitable;
use crate::bindings::twins::pymethods_with_twins;
use crate::clock::SharedClock;
use crate::db::DatabaseUrl;
use crate::outbox::{
    ClaimFilter, DEFAULT_MAX_PAYLOAD_BYTES, OutboxStatus, OutboxStore, check_limit, seconds,
};
use chrono::{DateTime, Utc};
use pyo3::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Base class of the outbox stores; `OutboxStore.connect(url)` picks the implementation.
#[pyclass(module = "headrace._core", name = "OutboxStore", subclass, frozen)]
pub(crate) struct PyOutboxStore {
    pub(crate) store: Arc<dyn OutboxStore>,
    pub(super) url: String,
    /// The store's clock: every time given as a number of seconds is read against it.
    pub(super) clock: SharedClock,
}

pymethods_with_twins! {
    PyOutboxStore;
    plain {
    /// Opens the store `url` selects: `sqlite:…` → OptimisticClaimOutboxStore,
    /// `postgres://…` → SkipLockedClaimOutboxStore.
    #[staticmethod]
    #[pyo3(signature = (url=None, *, lease_seconds=300.0, retry=None, migrate=true, max_payload_bytes=DEFAULT_MAX_PAYLOAD_BYTES, clock=None))]
    fn connect(
        py: Python<'_>,
        url: Option<Bound<'_, PyAny>>,
        #[pyo3(from_py_with = crate::bindings::checked::number)]
        lease_seconds: f64,
        retry: Option<PyRetryPolicy>,
        migrate: bool,
        #[pyo3(from_py_with = crate::bindings::checked::size)]
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

    /// Batches claimed one after another until none is due, each next batch claimed while the
    /// caller works on the current one. Closing the iterator (or leaving its `with` block, or
    /// dropping it) gives an unused prefetched batch back to `pending`.
    #[pyo3(signature = (worker_id, limit=100, *, topics=None, exclude_topics=Vec::new()))]
    fn iter_claims(
        &self,
        #[pyo3(from_py_with = crate::bindings::checked::text)]
        worker_id: String,
        #[pyo3(from_py_with = crate::bindings::checked::int64)]
        limit: i64,
        #[pyo3(from_py_with = crate::bindings::checked::optional_texts)]
        topics: Option<Vec<String>>,
        #[pyo3(from_py_with = crate::bindings::checked::texts)]
        exclude_topics: Vec<String>,
    ) -> PyResult<PyClaimIterator> {
        check_limit(limit)?;
        Ok(PyClaimIterator::new(
            self.store.clone(),
            worker_id,
            limit,
            ClaimFilter {
                topics,
                exclude_topics,
                due_by: None,
            },
        ))
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __aenter__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.clone().into_any().unbind();
        awaitable(slf.py(), async move { Ok(this) })
    }

    #[pyo3(signature = (*_exc))]
    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _exc: &Bound<'py, pyo3::types::PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store.clone();
        awaitable(py, async move {
            store.close().await;
            Ok(false)
        })
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

    twins {
        /// Adds one item; returns its id (an existing item's id when `dedupe_key` matches).
        #[pyo3(signature = (topic, payload, *, priority=0, delay_seconds=0.0, run_at=None, dedupe_key=None, max_attempts=None, trace_id=None))]
        #[allow(clippy::too_many_arguments)]
        fn enqueue / aenqueue<'py>(
            &self,
            py: Python<'py>,
            #[pyo3(from_py_with = crate::bindings::checked::text)]
            topic: String,
            payload: &Bound<'py, PyAny>,
            #[pyo3(from_py_with = crate::bindings::checked::int32)]
            priority: i32,
            #[pyo3(from_py_with = crate::bindings::checked::number)]
            delay_seconds: f64,
            run_at: Option<&Bound<'py, PyAny>>,
            #[pyo3(from_py_with = crate::bindings::checked::optional_text)]
            dedupe_key: Option<String>,
            #[pyo3(from_py_with = crate::bindings::checked::optional_int32)]
            max_attempts: Option<i32>,
            #[pyo3(from_py_with = crate::bindings::checked::optional_text)]
            trace_id: Option<String>,
        ) -> i64 {
            let item = new_item(
                topic,
                payload,
                priority,
                delay_seconds,
                run_at,
                dedupe_key,
                max_attempts,
                trace_id,
                self.clock.now(),
            )?;
            let store = self.store.clone();
            async move { store.enqueue(item).await }
        }

        /// Enqueues dicts (`topic`, `payload` and any enqueue option) in one transaction.
        fn enqueue_many / aenqueue_many<'py>(
            &self,
            py: Python<'py>,
            #[pyo3(from_py_with = crate::bindings::checked::objects)]
            items: Vec<Bound<'py, PyAny>>,
        ) -> Vec<i64> {
            let items = items
                .iter()
                .enumerate()
                .map(|(n, i)| new_item_from_dict(n, i, self.clock.now()))
                .collect::<PyResult<Vec<_>>>()?;
            let store = self.store.clone();
            async move { store.enqueue_many(items).await }
        }

        /// Claims up to `limit` due items, optionally only of `topics` and never of
        /// `exclude_topics`; `due_by` (a datetime, or seconds from now) evaluates "due" at
        /// another moment.
        #[pyo3(signature = (worker_id, limit=10, *, topics=None, exclude_topics=Vec::new(), due_by=None))]
        fn claim_batch / aclaim_batch<'py>(
            &self,
            py: Python<'py>,
            #[pyo3(from_py_with = crate::bindings::checked::text)]
            worker_id: String,
            #[pyo3(from_py_with = crate::bindings::checked::int64)]
            limit: i64,
            #[pyo3(from_py_with = crate::bindings::checked::optional_texts)]
            topics: Option<Vec<String>>,
            #[pyo3(from_py_with = crate::bindings::checked::texts)]
            exclude_topics: Vec<String>,
            due_by: Option<&Bound<'py, PyAny>>,
        ) -> Vec<PyOutboxItem> {
            let filter = ClaimFilter {
                topics,
                exclude_topics,
                due_by: due_by
                    .filter(|v| !v.is_none())
                    .map(|v| when(v, "due_by", self.clock.now()))
                    .transpose()?,
            };
            let store = self.store.clone();
            async move { store.claim(&worker_id, limit, &filter).await.map(items) }
        }

        fn mark_success / amark_success<'py>(
            &self,
            py: Python<'py>,
            #[pyo3(from_py_with = crate::bindings::checked::int64)]
            item_id: i64,
            #[pyo3(from_py_with = crate::bindings::checked::text)]
            worker_id: String,
        ) -> () {
            let store = self.store.clone();
            async move { store.mark_success(item_id, &worker_id).await }
        }

        fn mark_success_many / amark_success_many<'py>(
            &self,
            py: Python<'py>,
            #[pyo3(from_py_with = crate::bindings::checked::int64s)]
            item_ids: Vec<i64>,
            #[pyo3(from_py_with = crate::bindings::checked::text)]
            worker_id: String,
        ) -> () {
            let store = self.store.clone();
            async move { store.mark_success_many(&item_ids, &worker_id).await }
        }

        /// Returns the item to `pending` (at `next_attempt`, a datetime or seconds from now, else
        /// the retry policy's backoff) or dead-letters it once attempts are used up. Returns the
        /// status.
        #[pyo3(signature = (item_id, worker_id, next_attempt=None, error=String::new()))]
        fn mark_retry / amark_retry<'py>(
            &self,
            py: Python<'py>,
            #[pyo3(from_py_with = crate::bindings::checked::int64)]
            item_id: i64,
            #[pyo3(from_py_with = crate::bindings::checked::text)]
            worker_id: String,
            next_attempt: Option<&Bound<'py, PyAny>>,
            #[pyo3(from_py_with = crate::bindings::checked::text)]
            error: String,
        ) -> &'static str {
            let at = next_attempt_time(next_attempt, self.clock.now())?;
            let store = self.store.clone();
            async move {
                store
                    .mark_retry(item_id, &worker_id, at, &error)
                    .await
                    .map(OutboxStatus::as_str)
            }
        }

        #[pyo3(signature = (item_id, worker_id, error=String::new()))]
        fn mark_failed / amark_failed<'py>(
            &self,
            py: Python<'py>,
            #[pyo3(from_py_with = crate::bindings::checked::int64)]
            item_id: i64,
            #[pyo3(from_py_with = crate::bindings::checked::text)]
            worker_id: String,
            #[pyo3(from_py_with = crate::bindings::checked::text)]
            error: String,
        ) -> () {
            let store = self.store.clone();
            async move { store.mark_failed(item_id, &worker_id, &error).await }
        }

        /// Extends a live lease by `seconds` (default: the store's lease); returns the new expiry.
        #[pyo3(signature = (item_id, worker_id, seconds=None))]
        fn extend_lease / aextend_lease<'py>(
            &self,
            py: Python<'py>,
            #[pyo3(from_py_with = crate::bindings::checked::int64)]
            item_id: i64,
            #[pyo3(from_py_with = crate::bindings::checked::text)]
            worker_id: String,
            #[pyo3(from_py_with = crate::bindings::checked::optional_number)]
            seconds: Option<f64>,
        ) -> DateTime<Utc> {
            let by = lease_delta(seconds)?;
            let store = self.store.clone();
            async move { store.extend_lease(item_id, &worker_id, by).await }
        }

        /// Gives claimed-but-unstarted items back without counting the attempt; returns how many.
        fn release / arelease<'py>(
            &self,
            py: Python<'py>,
            #[pyo3(from_py_with = crate::bindings::checked::int64s)]
            item_ids: Vec<i64>,
            #[pyo3(from_py_with = crate::bindings::checked::text)]
            worker_id: String,
        ) -> u64 {
            let store = self.store.clone();
            async move { store.release(&item_ids, &worker_id).await }
        }

        fn get / aget<'py>(
            &self,
            py: Python<'py>,
            #[pyo3(from_py_with = crate::bindings::checked::int64)] item_id: i64,
        ) -> PyOutboxItem {
            let store = self.store.clone();
            async move { store.get(item_id).await.map(PyOutboxItem::from) }
        }

        /// The newest item holding `dedupe_key` in any status (`None` if none holds it).
        fn get_by_dedupe_key / aget_by_dedupe_key<'py>(
            &self,
            py: Python<'py>,
            #[pyo3(from_py_with = crate::bindings::checked::text)]
            dedupe_key: String,
        ) -> Option<PyOutboxItem> {
            let store = self.store.clone();
            async move { store.get_by_dedupe_key(&dedupe_key).await.map(|item| item.map(PyOutboxItem::from)) }
        }

        /// Up to `limit` items, newest first, optionally of one `status` and/or `topic`.
        #[pyo3(signature = (*, status=None, topic=None, limit=50))]
        fn list / alist<'py>(
            &self,
            py: Python<'py>,
            #[pyo3(from_py_with = crate::bindings::checked::optional_text)]
            status: Option<String>,
            #[pyo3(from_py_with = crate::bindings::checked::optional_text)]
            topic: Option<String>,
            #[pyo3(from_py_with = crate::bindings::checked::int64)]
            limit: i64,
        ) -> Vec<PyOutboxItem> {
            let status = status.map(|s| s.parse::<OutboxStatus>()).transpose()?;
            let store = self.store.clone();
            async move { store.list(status, topic.as_deref(), limit).await.map(items) }
        }

        fn stats / astats<'py>(&self, py: Python<'py>) -> BTreeMap<String, i64> {
            let store = self.store.clone();
            async move { store.stats().await }
        }

        fn requeue / arequeue<'py>(
            &self,
            py: Python<'py>,
            #[pyo3(from_py_with = crate::bindings::checked::int64)] item_id: i64,
        ) -> () {
            let store = self.store.clone();
            async move { store.requeue(item_id).await }
        }

        #[pyo3(signature = (topic=None))]
        fn requeue_failed / arequeue_failed<'py>(
            &self,
            py: Python<'py>,
            #[pyo3(from_py_with = crate::bindings::checked::optional_text)]
            topic: Option<String>,
        ) -> u64 {
            let store = self.store.clone();
            async move { store.requeue_failed(topic.as_deref()).await }
        }

        #[pyo3(signature = (older_than_seconds, statuses=vec!["completed".to_string()]))]
        fn purge / apurge<'py>(
            &self,
            py: Python<'py>,
            #[pyo3(from_py_with = crate::bindings::checked::number)]
            older_than_seconds: f64,
            #[pyo3(from_py_with = crate::bindings::checked::texts)]
            statuses: Vec<String>,
        ) -> u64 {
            let older = seconds("older_than_seconds", older_than_seconds, true)?;
            let statuses = parse_statuses(statuses)?;
            let store = self.store.clone();
            async move { store.purge(older, &statuses).await }
        }

        /// Releases every connection and stops the LISTEN task; later calls raise `StoreError`.
        /// Closing twice is harmless. Also a context manager (`with OutboxStore.connect(…) as s:`).
        fn close / aclose<'py>(&self, py: Python<'py>) -> () {
            let store = self.store.clone();
            async move {
                store.close().await;
                Ok(())
            }
        }
    }
}
