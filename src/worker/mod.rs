//! The outbox worker: claims batches, hands them to a [`BatchHandler`] (Python handlers in the
//! binding layer, closures in tests), and does all the bookkeeping — batched acknowledgements,
//! retries with backoff, dead-letters, lease extension, releasing unstarted items on stop, the
//! in-worker reaper and LISTEN/NOTIFY wake-ups.

mod lease_keeper;
pub mod metrics;
mod run_loop;

pub use metrics::WorkerMetrics;
pub use run_loop::OutboxWorker;

use crate::error::{Error, Result};
use crate::outbox::{OutboxItem, RetryPolicy};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// What became of one item handed to a handler.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The handler returned normally.
    Completed,
    /// The handler raised. `retryable: false` dead-letters at once; otherwise the item is retried
    /// (`retry_after` from the store clock's now, else after the topic's backoff) until its
    /// attempts are used up.
    Failed {
        error: String,
        retryable: bool,
        retry_after: Option<Duration>,
    },
    /// The worker was stopping before the handler started: the item goes back to `pending`.
    NotStarted,
}

impl Outcome {
    /// A failure that may be retried.
    pub fn retry(error: impl Into<String>) -> Self {
        Outcome::Failed {
            error: error.into(),
            retryable: true,
            retry_after: None,
        }
    }

    /// A permanent failure.
    pub fn reject(error: impl Into<String>) -> Self {
        Outcome::Failed {
            error: error.into(),
            retryable: false,
            retry_after: None,
        }
    }
}

/// Tells a handler that the worker is stopping: start no further items.
#[derive(Debug, Clone, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// Whether a stop was requested.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    pub(crate) fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Where an item ended up after the worker's bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Completed,
    /// Back to `pending` for another attempt.
    Retried,
    /// Dead-lettered.
    Failed,
    /// Given back unstarted because the worker stopped.
    Released,
}

impl Settled {
    /// Lower-case name, as hooks see it.
    pub fn as_str(self) -> &'static str {
        match self {
            Settled::Completed => "completed",
            Settled::Retried => "retried",
            Settled::Failed => "failed",
            Settled::Released => "released",
        }
    }
}

/// One item's final bookkeeping, reported to [`BatchHandler::settled`].
#[derive(Debug, Clone, PartialEq)]
pub struct SettledItem {
    pub item: OutboxItem,
    pub settled: Settled,
    /// The handler's error, for retried and failed items.
    pub error: Option<String>,
}

/// User code that processes a claimed batch; returns exactly one outcome per item, in order.
#[async_trait]
pub trait BatchHandler: Send + Sync {
    /// Handles `items`; items not started because `stop` was set report [`Outcome::NotStarted`].
    async fn handle(&self, items: Vec<OutboxItem>, stop: StopFlag) -> Vec<Outcome>;

    /// Told where each item of a batch ended up (for hooks and records); default: nothing.
    async fn settled(&self, _results: Vec<SettledItem>) {}
}

/// How the worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Lease owner name written on claimed items.
    pub worker_id: String,
    /// Items claimed per batch.
    pub batch_size: i64,
    /// Batches processed at once.
    pub concurrency: usize,
    /// Longest wait for work when idle (LISTEN/NOTIFY or a local enqueue wakes it sooner).
    pub poll_interval: Duration,
    /// How often the in-worker reaper runs; `None` disables it.
    pub reaper_interval: Option<Duration>,
    /// Items in `processing` without a lease are reaped after this long.
    pub reaper_stale_after: chrono::Duration,
    /// Claim only these topics (`None`: every topic; unknown ones are dead-lettered).
    pub topics: Option<Vec<String>>,
    /// Topics this worker never claims (a scheduler's own items, such as bridge schedules).
    pub exclude_topics: Vec<String>,
    /// Topics whose retries follow their own policy (a QueuedClient's `max_retries`/backoff)
    /// instead of the store's.
    pub retry_by_topic: HashMap<String, RetryPolicy>,
    /// Retry policy for every other topic (`None`: the store's).
    pub retry: Option<RetryPolicy>,
    /// A batch whose handler runs longer is given up on: its leases are no longer renewed, so
    /// another worker may take its items (`None`: wait for ever).
    pub handler_timeout: Option<Duration>,
    /// After a stop, how long a running handler may still take before its batch is given up on.
    pub stop_grace: Duration,
}

impl WorkerConfig {
    /// Defaults for `worker_id`: batch 100, one lane, 1 s polling, reaper every 60 s.
    pub fn new(worker_id: impl Into<String>) -> Self {
        WorkerConfig {
            worker_id: worker_id.into(),
            batch_size: 100,
            concurrency: 1,
            poll_interval: Duration::from_secs(1),
            reaper_interval: Some(Duration::from_secs(60)),
            reaper_stale_after: chrono::Duration::seconds(600),
            topics: None,
            exclude_topics: Vec::new(),
            retry_by_topic: HashMap::new(),
            retry: None,
            handler_timeout: None,
            stop_grace: Duration::from_secs(10),
        }
    }

    /// Checks the settings, naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        crate::validate::key("worker_id", &self.worker_id)?;
        if self.batch_size < 1 {
            return Err(Error::config(format!(
                "batch_size must be >= 1, got {}",
                self.batch_size
            )));
        }
        if self.concurrency < 1 {
            return Err(Error::config(format!(
                "concurrency must be >= 1, got {}",
                self.concurrency
            )));
        }
        if self.poll_interval.is_zero() {
            return Err(Error::config("poll_interval must be > 0"));
        }
        if self.reaper_interval.is_some_and(|i| i.is_zero()) {
            return Err(Error::config(
                "reaper_interval must be > 0 (or None to disable the reaper)",
            ));
        }
        for (what, value) in [
            ("poll_interval", Some(self.poll_interval)),
            ("reaper_interval", self.reaper_interval),
            ("handler_timeout", self.handler_timeout),
            ("stop_grace", Some(self.stop_grace)),
        ] {
            if let Some(value) = value {
                crate::validate::seconds(what, value.as_secs_f64(), true)?;
            }
        }
        crate::validate::duration("reaper_stale_after", self.reaper_stale_after)?;
        for policy in self.retry_by_topic.values().chain(self.retry.iter()) {
            policy.validate()?;
        }
        Ok(())
    }
}

/// What a worker run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Items handed to handlers (completed + retried + failed).
    pub processed: u64,
    pub completed: u64,
    /// Items returned to `pending` for another attempt.
    pub retried: u64,
    /// Items dead-lettered.
    pub failed: u64,
    /// Claimed items given back unstarted because the worker stopped.
    pub released: u64,
    /// Items recovered by the in-worker reaper.
    pub reaped: u64,
    /// Items whose handler ran past `handler_timeout` (or `stop_grace` after a stop): their
    /// leases were let go unacknowledged.
    pub abandoned: u64,
}

impl WorkerReport {
    pub(crate) fn add(&mut self, other: &WorkerReport) {
        self.processed += other.processed;
        self.completed += other.completed;
        self.retried += other.retried;
        self.failed += other.failed;
        self.released += other.released;
        self.reaped += other.reaped;
        self.abandoned += other.abandoned;
    }
}
