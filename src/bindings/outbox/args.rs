//! Opening stores and reading the arguments of store calls.

use super::URL_ENV;
use super::item::PyOutboxItem;
use super::retry_policy::PyRetryPolicy;
use super::store::PyOutboxStore;
use crate::bindings::clock::{PyManualClock, shared_clock};
use crate::bindings::errors::config_error;
use crate::bindings::json;
use crate::bindings::runtime::wait;
use crate::clock::SharedClock;
use crate::db::DatabaseUrl;
use crate::db::url::redact;
use crate::outbox::{self, NewItem, OutboxConfig, OutboxItem, OutboxStatus, seconds};
use chrono::{DateTime, FixedOffset, Utc};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// Options shared by `connect` and the two constructors.
pub(super) struct ConnectOptions {
    lease_seconds: f64,
    retry: Option<PyRetryPolicy>,
    migrate: bool,
    max_payload_bytes: usize,
    clock: SharedClock,
}

pub(super) fn resolve_url(url: Option<Bound<'_, PyAny>>) -> PyResult<String> {
    let url = url
        .map(|u| crate::bindings::db_params::database_url(&u))
        .transpose()?;
    url.or_else(|| std::env::var(URL_ENV).ok().filter(|u| !u.is_empty())).ok_or_else(|| {
        config_error(format!(
            "no database URL: pass url=\"sqlite:///path.db\" or \"postgres://…\", or set {URL_ENV}"
        ))
    })
}

pub(super) fn open_store(
    py: Python<'_>,
    url: &str,
    options: ConnectOptions,
) -> PyResult<PyOutboxStore> {
    let config = OutboxConfig {
        lease: seconds("lease_seconds", options.lease_seconds, false)?,
        retry: options.retry.map(|r| r.core()).unwrap_or_default(),
        max_payload_bytes: options.max_payload_bytes,
        clock: options.clock.clone(),
    };
    let (owned_url, migrate) = (url.to_string(), options.migrate);
    let store = wait(py, async move {
        outbox::connect(&owned_url, config, migrate).await
    })?;
    Ok(PyOutboxStore {
        store,
        url: redact(url),
        clock: options.clock,
    })
}

impl ConnectOptions {
    pub(super) fn new(
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
pub(super) fn open_engine(
    py: Python<'_>,
    url: Option<Bound<'_, PyAny>>,
    postgres: bool,
    class: &str,
    options: ConnectOptions,
) -> PyResult<PyOutboxStore> {
    let url = resolve_url(url)?;
    expect_engine(&url, postgres, class)?;
    open_store(py, &url, options)
}

pub(super) fn expect_engine(url: &str, postgres: bool, class: &str) -> PyResult<()> {
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

/// A point in time from a timezone-aware datetime, or from a number of seconds after `now` (the
/// store's clock, so a `ManualClock` governs numbers and `delay_seconds` alike). A number that
/// looks like a Unix timestamp is refused ([`crate::validate::seconds_from_now`]).
pub(super) fn when(
    value: &Bound<'_, PyAny>,
    what: &str,
    now: DateTime<Utc>,
) -> PyResult<DateTime<Utc>> {
    if let Ok(seconds_from_now) = value.extract::<f64>() {
        let delay = crate::validate::seconds_from_now(what, seconds_from_now)?;
        return Ok(now + delay);
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
pub(crate) fn new_item(
    topic: String,
    payload: &Bound<'_, PyAny>,
    priority: i32,
    delay_seconds: f64,
    run_at: Option<&Bound<'_, PyAny>>,
    dedupe_key: Option<String>,
    max_attempts: Option<i32>,
    trace_id: Option<String>,
    now: DateTime<Utc>,
) -> PyResult<NewItem> {
    let delay = crate::validate::seconds("delay_seconds", delay_seconds, true)?;
    Ok(NewItem {
        payload: json::dumps(payload, "payload")?,
        topic,
        priority,
        run_at: run_at
            .filter(|v| !v.is_none())
            .map(|v| when(v, "run_at", now))
            .transpose()?,
        delay,
        dedupe_key,
        max_attempts,
        trace_id,
    })
}

pub(super) const ITEM_KEYS: [&str; 8] = [
    "topic",
    "payload",
    "priority",
    "delay_seconds",
    "run_at",
    "dedupe_key",
    "max_attempts",
    "trace_id",
];

pub(crate) fn new_item_from_dict(
    index: usize,
    spec: &Bound<'_, PyAny>,
    now: DateTime<Utc>,
) -> PyResult<NewItem> {
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
    use crate::bindings::checked;
    let topic = checked::text(
        &get("topic")
            .ok_or_else(|| config_error(format!("enqueue_many item {index} has no topic")))?,
    )?;
    let payload = get("payload")
        .ok_or_else(|| config_error(format!("enqueue_many item {index} has no payload")))?;
    new_item(
        topic,
        &payload,
        get("priority")
            .map(|v| checked::int32(&v))
            .transpose()?
            .unwrap_or(0),
        get("delay_seconds")
            .map(|v| checked::number(&v))
            .transpose()?
            .unwrap_or(0.0),
        get("run_at").as_ref(),
        get("dedupe_key")
            .map(|v| checked::optional_text(&v))
            .transpose()?
            .flatten(),
        get("max_attempts")
            .map(|v| checked::optional_int32(&v))
            .transpose()?
            .flatten(),
        get("trace_id")
            .map(|v| checked::optional_text(&v))
            .transpose()?
            .flatten(),
        now,
    )
}

pub(super) fn items(claimed: Vec<OutboxItem>) -> Vec<PyOutboxItem> {
    claimed.into_iter().map(PyOutboxItem::from).collect()
}

pub(super) fn lease_delta(seconds_value: Option<f64>) -> PyResult<Option<chrono::Duration>> {
    seconds_value
        .map(|s| seconds("seconds", s, false).map_err(PyErr::from))
        .transpose()
}

pub(super) fn next_attempt_time(
    next_attempt: Option<&Bound<'_, PyAny>>,
    now: DateTime<Utc>,
) -> PyResult<Option<DateTime<Utc>>> {
    next_attempt
        .filter(|v| !v.is_none())
        .map(|v| when(v, "next_attempt", now))
        .transpose()
}

pub(super) fn parse_statuses(statuses: Vec<String>) -> PyResult<Vec<OutboxStatus>> {
    statuses
        .iter()
        .map(|s| s.parse::<OutboxStatus>().map_err(PyErr::from))
        .collect()
}
