//! `ExternalOutboxSql` and `schema_plan`: the core's outbox statements and schema, rendered for
//! a connection Python owns (Django's). Python only executes what these return.

use crate::bindings::clock::{PyManualClock, shared_clock};
use crate::bindings::errors::config_error;
use crate::bindings::outbox::{PyOutboxItem, PyRetryPolicy, new_item, new_item_from_dict};
use crate::db::migrate;
use crate::outbox::external::{
    Dialect, EnqueueSql, ExternalSql, ITEM_COLUMNS, SqlValue, Statement, split_statements,
};
use crate::outbox::external_batch::EnqueueBatchSql;
use crate::outbox::{
    ClaimFilter, DEFAULT_MAX_PAYLOAD_BYTES, OutboxConfig, OutboxItem, OutboxStatus, seconds,
};
use chrono::{DateTime, FixedOffset, Utc};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyExternalOutboxSql>()?;
    m.add_class::<PyEnqueueBatch>()?;
    m.add_function(wrap_pyfunction!(schema_plan, m)?)?;
    Ok(())
}

fn dialect(name: &str) -> PyResult<Dialect> {
    Ok(name.parse::<Dialect>()?)
}

fn value<'py>(py: Python<'py>, v: &SqlValue) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        SqlValue::Null => py.None().into_bound(py),
        SqlValue::Int(i) => i.into_pyobject(py)?.into_any(),
        SqlValue::Text(s) => s.into_pyobject(py)?.into_any(),
        SqlValue::Time(t) => t.into_pyobject(py)?.into_any(),
        SqlValue::TextArray(v) => PyList::new(py, v)?.into_any(),
        SqlValue::IntArray(v) => PyList::new(py, v)?.into_any(),
        SqlValue::TimeArray(v) => PyList::new(py, v)?.into_any(),
    })
}

/// `(sql, params)`.
fn statement<'py>(py: Python<'py>, s: &Statement) -> PyResult<Bound<'py, PyTuple>> {
    let params = s
        .params
        .iter()
        .map(|v| value(py, v))
        .collect::<PyResult<Vec<_>>>()?;
    PyTuple::new(
        py,
        [
            s.sql.into_pyobject(py)?.into_any(),
            PyTuple::new(py, params)?.into_any(),
        ],
    )
}

/// `((sql, params), (sql, params) | None)`.
fn enqueue_pair<'py>(py: Python<'py>, e: &EnqueueSql) -> PyResult<Bound<'py, PyTuple>> {
    let existing = match &e.existing {
        Some(s) => statement(py, s)?.into_any(),
        None => py.None().into_bound(py),
    };
    PyTuple::new(py, [statement(py, &e.insert)?.into_any(), existing])
}

/// A time column as the driver returned it: microseconds (SQLite) or an aware datetime.
fn time(v: &Bound<'_, PyAny>, column: &str) -> PyResult<DateTime<Utc>> {
    if let Ok(us) = v.extract::<i64>() {
        return DateTime::from_timestamp_micros(us)
            .ok_or_else(|| config_error(format!("{column} {us} is out of range")));
    }
    v.extract::<DateTime<FixedOffset>>()
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            config_error(format!(
                "{column} must be microseconds or a timezone-aware datetime, got {v}"
            ))
        })
}

fn opt_time(v: &Bound<'_, PyAny>, column: &str) -> PyResult<Option<DateTime<Utc>>> {
    if v.is_none() {
        Ok(None)
    } else {
        time(v, column).map(Some)
    }
}

fn item_from_row(row: &Bound<'_, PyAny>) -> PyResult<OutboxItem> {
    let cells: Vec<Bound<'_, PyAny>> = row.extract()?;
    if cells.len() != ITEM_COLUMNS.len() {
        return Err(config_error(format!(
            "an outbox row has {} columns ({}), got {}",
            ITEM_COLUMNS.len(),
            ITEM_COLUMNS.join(", "),
            cells.len()
        )));
    }
    let status: String = cells[3].extract()?;
    Ok(OutboxItem {
        id: cells[0].extract()?,
        topic: cells[1].extract()?,
        payload: cells[2].extract()?,
        status: status.parse::<OutboxStatus>()?,
        priority: cells[4].extract()?,
        attempts: cells[5].extract()?,
        max_attempts: cells[6].extract()?,
        run_at: time(&cells[7], "run_at")?,
        lease_owner: cells[8].extract()?,
        lease_expires_at: opt_time(&cells[9], "lease_expires_at")?,
        last_error: cells[10].extract()?,
        dedupe_key: cells[11].extract()?,
        trace_id: cells[12].extract()?,
        created_at: time(&cells[13], "created_at")?,
        updated_at: time(&cells[14], "updated_at")?,
    })
}

/// The outbox's statements for one dialect (`"sqlite"` or `"postgresql"`), with the same
/// validation, JSON encoding, size limit, retry policy and lease as `OutboxStore`.
#[pyclass(module = "headrace._core", name = "ExternalOutboxSql", frozen)]
pub(crate) struct PyExternalOutboxSql {
    sql: ExternalSql,
}

#[pymethods]
impl PyExternalOutboxSql {
    #[new]
    #[pyo3(signature = (dialect, *, lease_seconds=300.0, retry=None, max_payload_bytes=DEFAULT_MAX_PAYLOAD_BYTES, clock=None))]
    fn new(
        #[pyo3(from_py_with = crate::bindings::checked::text)] dialect: String,
        #[pyo3(from_py_with = crate::bindings::checked::number)] lease_seconds: f64,
        retry: Option<PyRetryPolicy>,
        #[pyo3(from_py_with = crate::bindings::checked::size)] max_payload_bytes: usize,
        clock: Option<&Bound<'_, PyManualClock>>,
    ) -> PyResult<Self> {
        let config = OutboxConfig {
            lease: seconds("lease_seconds", lease_seconds, false)?,
            retry: retry.map(|r| r.core()).unwrap_or_default(),
            max_payload_bytes,
            clock: shared_clock(clock),
        };
        Ok(PyExternalOutboxSql {
            sql: ExternalSql::new(self::dialect(&dialect)?, config)?,
        })
    }

    #[getter]
    fn dialect(&self) -> &'static str {
        match self.sql.dialect {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgresql",
        }
    }

    #[getter]
    fn lease_seconds(&self) -> f64 {
        self.sql.config.lease.as_seconds_f64()
    }

    #[getter]
    fn max_attempts(&self) -> i32 {
        self.sql.config.retry.max_attempts
    }

    /// `((sql, params), existing)`: run the insert; when it returns no row, `existing` (a
    /// `(sql, params)`) returns the id of the live item holding the dedupe key.
    #[pyo3(signature = (topic, payload, *, priority=0, delay_seconds=0.0, run_at=None, dedupe_key=None, max_attempts=None, trace_id=None))]
    #[allow(clippy::too_many_arguments)]
    fn enqueue<'py>(
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
    ) -> PyResult<Bound<'py, PyTuple>> {
        let item = new_item(
            topic,
            payload,
            priority,
            delay_seconds,
            run_at,
            dedupe_key,
            max_attempts,
            trace_id,
            self.sql.config.clock.now(),
        )?;
        let rendered = self.sql.enqueue(std::slice::from_ref(&item))?;
        enqueue_pair(py, &rendered[0])
    }

    /// One statement for a whole batch of dicts (`topic`, `payload` and any enqueue option):
    /// the stores' own bulk path. Nothing is rendered when any item is invalid.
    fn enqueue_batch(&self, items: Vec<Bound<'_, PyAny>>) -> PyResult<PyEnqueueBatch> {
        let now = self.sql.config.clock.now();
        let items = items
            .iter()
            .enumerate()
            .map(|(n, i)| new_item_from_dict(n, i, now))
            .collect::<PyResult<Vec<_>>>()?;
        Ok(PyEnqueueBatch {
            batch: self.sql.enqueue_batch(items)?,
            sql: self.sql.clone(),
        })
    }

    /// `(sql, params)` claiming up to `limit` due items; rows come back in item column order.
    /// `due_by` (an aware datetime) treats items due by then as due now.
    #[pyo3(signature = (worker_id, limit=10, *, topics=None, exclude_topics=Vec::new(), due_by=None))]
    fn claim<'py>(
        &self,
        py: Python<'py>,
        worker_id: &str,
        limit: i64,
        topics: Option<Vec<String>>,
        exclude_topics: Vec<String>,
        due_by: Option<DateTime<FixedOffset>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let filter = ClaimFilter {
            topics,
            exclude_topics,
            due_by: due_by.map(|t| t.with_timezone(&Utc)),
        };
        statement(py, &self.sql.claim(worker_id, limit, &filter)?)
    }

    /// `(sql, params)` completing the items still leased to `worker_id`; returns their ids.
    fn ack<'py>(
        &self,
        py: Python<'py>,
        item_ids: Vec<i64>,
        worker_id: &str,
    ) -> PyResult<Bound<'py, PyTuple>> {
        statement(py, &self.sql.ack(&item_ids, worker_id))
    }

    /// `(status, (sql, params))` for a failed attempt: `"pending"` (retry after `retry_after`
    /// seconds or the policy's backoff) or `"failed"` (dead letter). The statement returns no
    /// row when the lease was lost.
    #[pyo3(signature = (item, worker_id, error, *, retryable=true, retry_after=None))]
    fn settle_failure<'py>(
        &self,
        py: Python<'py>,
        item: &PyOutboxItem,
        worker_id: &str,
        error: &str,
        retryable: bool,
        retry_after: Option<f64>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let retry_after = retry_after
            .map(|seconds| crate::validate::seconds("retry_after", seconds, true))
            .transpose()?
            .map(|after| after.to_std().expect("non-negative"));
        let item = item.core();
        let settled = self.sql.settle_failure(
            item.id,
            worker_id,
            item.attempts,
            item.max_attempts,
            error,
            retryable,
            retry_after,
        );
        PyTuple::new(
            py,
            [
                settled.status.as_str().into_pyobject(py)?.into_any(),
                statement(py, &settled.statement)?.into_any(),
            ],
        )
    }

    /// `(sql, params)` giving unstarted items back without spending an attempt.
    fn release<'py>(
        &self,
        py: Python<'py>,
        item_ids: Vec<i64>,
        worker_id: &str,
    ) -> PyResult<Bound<'py, PyTuple>> {
        statement(py, &self.sql.release(&item_ids, worker_id))
    }

    /// `(sql, params)` reading one item.
    fn get<'py>(&self, py: Python<'py>, item_id: i64) -> PyResult<Bound<'py, PyTuple>> {
        statement(py, &self.sql.get(item_id))
    }

    /// `(sql, params)` listing items of `topic` and `status` (each None: any), oldest first.
    #[pyo3(signature = (*, topic=None, status=None))]
    fn list_items<'py>(
        &self,
        py: Python<'py>,
        topic: Option<&str>,
        status: Option<&str>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let status = status.map(|s| s.parse::<OutboxStatus>()).transpose()?;
        statement(py, &self.sql.list(topic, status))
    }

    /// `(sql, params)` requeueing the chosen items (pending now, attempts reset), except those
    /// a worker holds a live lease on, held chunks, and those whose dedupe key a live item
    /// holds; returns the ids requeued.
    fn requeue_items<'py>(
        &self,
        py: Python<'py>,
        item_ids: Vec<i64>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        statement(py, &self.sql.requeue_items(&item_ids))
    }

    /// `(sql, params)` making the chosen pending items that are due later due now; returns the
    /// ids changed.
    fn run_items_now<'py>(
        &self,
        py: Python<'py>,
        item_ids: Vec<i64>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        statement(py, &self.sql.run_items_now(&item_ids))
    }

    /// `(sql, params)` dead-lettering the chosen pending or processing items with `error`;
    /// returns the ids failed.
    fn fail_items<'py>(
        &self,
        py: Python<'py>,
        item_ids: Vec<i64>,
        error: &str,
    ) -> PyResult<Bound<'py, PyTuple>> {
        statement(py, &self.sql.fail_items(&item_ids, error))
    }

    /// `(sql, params)` deleting the chosen completed or failed items; returns the ids deleted.
    fn purge_items<'py>(
        &self,
        py: Python<'py>,
        item_ids: Vec<i64>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        statement(py, &self.sql.purge_items(&item_ids))
    }

    /// `OutboxItem`s from rows a claim or `get` returned.
    fn items(&self, rows: Vec<Bound<'_, PyAny>>) -> PyResult<Vec<PyOutboxItem>> {
        rows.iter()
            .map(|row| item_from_row(row).map(PyOutboxItem::from))
            .collect()
    }
}

/// The core schema for `dialect` as single statements: `{"ledger": [...], "lock": sql | None,
/// "applied": sql, "record": sql (one %s: the version), "steps": [(version, [sql, ...]), ...]}`.
/// Running it the way `migrate` does gives the same schema and the same ledger.
#[pyfunction]
fn schema_plan<'py>(py: Python<'py>, dialect: &str) -> PyResult<Bound<'py, PyDict>> {
    let dialect = self::dialect(dialect)?;
    let plan = migrate::external_plan(dialect == Dialect::Postgres);
    let out = PyDict::new(py);
    out.set_item("ledger", split_statements(plan.ledger))?;
    out.set_item("lock", plan.lock)?;
    out.set_item("applied", plan.applied)?;
    out.set_item("record", plan.record)?;
    let steps = plan
        .steps
        .iter()
        .map(|m| (m.version, split_statements(m.sql)))
        .collect::<Vec<_>>();
    out.set_item("steps", steps)?;
    Ok(out)
}

/// A batch rendered by `ExternalOutboxSql.enqueue_batch`: run `insert`, hand its rows to
/// `resolve`; an id that comes back `None` (the item's dedupe key was held by another item) is
/// settled by the `fallback(index)` pair, as for `enqueue`.
#[pyclass(module = "headrace._core", name = "EnqueueBatch", frozen)]
pub(crate) struct PyEnqueueBatch {
    batch: EnqueueBatchSql,
    sql: ExternalSql,
}

#[pymethods]
impl PyEnqueueBatch {
    /// `(sql, params)` inserting every item; returns `(id, dedupe_key)` rows.
    #[getter]
    fn insert<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        statement(py, &self.batch.insert)
    }

    fn __len__(&self) -> usize {
        self.batch.len()
    }

    /// Ids in input order from the insert's rows; `None` for an item to settle by `fallback`.
    fn resolve(&self, rows: Vec<(Option<i64>, Option<String>)>) -> PyResult<Vec<Option<i64>>> {
        Ok(self.batch.resolve(&rows)?)
    }

    /// `((sql, params), existing)` for item `index`, as `ExternalOutboxSql.enqueue` renders it.
    fn fallback<'py>(&self, py: Python<'py>, index: usize) -> PyResult<Bound<'py, PyTuple>> {
        enqueue_pair(py, &self.sql.enqueue_fallback(&self.batch, index)?)
    }
}
