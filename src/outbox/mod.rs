//! Transactional outbox: enqueue, batch claim under a lease, acknowledge, retry with
//! backoff, dead-letter and reap. One [`OutboxStore`] trait, one implementation per database,
//! one conformance suite (`tests/outbox_conformance.rs`) run against each.

pub mod claim_stream;
pub mod external;
pub mod external_batch;
mod item;
mod lease;
mod operator;
pub mod postgres;
pub mod reaper;
pub mod retry;
pub mod sqlite;

pub use item::{NewItem, OutboxItem, OutboxStatus};
pub use reaper::{OutboxReaper, Rescue};
pub use retry::{FailureDecision, RetryPolicy};

use crate::clock::{SharedClock, SystemClock};
use crate::db::DatabaseUrl;
use crate::error::{Error, Result};
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::Notify;

/// Default largest accepted payload, in bytes of encoded JSON.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// Settings shared by every outbox store implementation.
#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// How long a claim holds an item before another worker may take it.
    pub lease: Duration,
    /// Backoff and attempt limit for `mark_retry` without an explicit time.
    pub retry: RetryPolicy,
    /// Largest accepted payload (encoded JSON bytes).
    pub max_payload_bytes: usize,
    /// Source of "now" for run times, leases and backoff.
    pub clock: SharedClock,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            lease: Duration::seconds(300),
            retry: RetryPolicy::default(),
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            clock: Arc::new(SystemClock),
        }
    }
}

impl OutboxConfig {
    /// Checks the settings, naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        if self.lease <= Duration::zero() {
            return Err(Error::config(format!(
                "lease_seconds must be > 0, got {}",
                self.lease.as_seconds_f64()
            )));
        }
        crate::validate::duration("lease_seconds", self.lease)?;
        if self.max_payload_bytes == 0 {
            return Err(Error::config("max_payload_bytes must be > 0"));
        }
        self.retry.validate()
    }
}

/// The `run_at` of a held item (9000-01-01 UTC): pending, but never due until released.
pub fn held_run_at() -> DateTime<Utc> {
    DateTime::from_timestamp(HELD_RUN_AT_SECONDS, 0).expect("a valid constant time")
}

/// [`held_run_at`] in seconds since the Unix epoch.
pub const HELD_RUN_AT_SECONDS: i64 = 221_845_392_000;

/// Which items a claim may take.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClaimFilter {
    /// Only these topics (`None`: any topic).
    pub topics: Option<Vec<String>>,
    /// Never these topics (e.g. a scheduler's own items that workers must leave alone).
    pub exclude_topics: Vec<String>,
    /// Items are due when `run_at` is at or before this moment (default: now) — for schedulers
    /// that evaluate a given moment.
    pub due_by: Option<DateTime<Utc>>,
}

/// The outbox contract every database implements with the same semantics.
#[async_trait]
pub trait OutboxStore: Send + Sync + std::fmt::Debug {
    /// The settings this store was opened with.
    fn config(&self) -> &OutboxConfig;

    /// Short name of the claim strategy (`"skip_locked"` or `"optimistic"`).
    fn claim_strategy(&self) -> &'static str;

    /// Inserts items atomically and returns their ids in order; an item whose `dedupe_key`
    /// matches a pending or processing item returns that item's id instead.
    async fn enqueue_many(&self, items: Vec<NewItem>) -> Result<Vec<i64>>;

    /// Claims up to `limit` due pending items that pass `filter`, as [`OutboxStore::claim_batch`].
    async fn claim(
        &self,
        worker_id: &str,
        limit: i64,
        filter: &ClaimFilter,
    ) -> Result<Vec<OutboxItem>>;

    /// Claims up to `limit` due pending items (optionally only of `topics`) for `worker_id`,
    /// in claim order, each leased until now + lease and its `attempts` incremented.
    async fn claim_batch(
        &self,
        worker_id: &str,
        limit: i64,
        topics: Option<&[String]>,
    ) -> Result<Vec<OutboxItem>> {
        let filter = ClaimFilter {
            topics: topics.map(<[String]>::to_vec),
            ..ClaimFilter::default()
        };
        self.claim(worker_id, limit, &filter).await
    }

    /// Marks items completed. Items `worker_id` still holds a live lease on are completed even
    /// when others are not; those others raise `LeaseLost` (or `NotFound` if unknown).
    async fn mark_success_many(&self, item_ids: &[i64], worker_id: &str) -> Result<()>;

    /// Returns a leased item to `pending` at `next_attempt` (or the retry policy's backoff), or
    /// dead-letters it as `failed` once its attempts are used up. Returns the new status.
    async fn mark_retry(
        &self,
        item_id: i64,
        worker_id: &str,
        next_attempt: Option<DateTime<Utc>>,
        error: &str,
    ) -> Result<OutboxStatus>;

    /// Dead-letters a leased item as `failed`, keeping `error`.
    async fn mark_failed(&self, item_id: i64, worker_id: &str, error: &str) -> Result<()>;

    /// Extends a live lease by `by` (default: the store's lease) from now; returns the new expiry.
    async fn extend_lease(
        &self,
        item_id: i64,
        worker_id: &str,
        by: Option<Duration>,
    ) -> Result<DateTime<Utc>>;

    /// Extends every live lease `worker_id` holds among `item_ids` by `by` (default: the store's
    /// lease) from now, in one transaction; returns the ids extended (the others were lost).
    async fn extend_leases(
        &self,
        item_ids: &[i64],
        worker_id: &str,
        by: Option<Duration>,
    ) -> Result<Vec<i64>> {
        let mut extended = Vec::with_capacity(item_ids.len());
        for id in item_ids {
            match self.extend_lease(*id, worker_id, by).await {
                Ok(_) => extended.push(*id),
                Err(Error::LeaseLost { .. } | Error::NotFound(_)) => {}
                Err(other) => return Err(other),
            }
        }
        Ok(extended)
    }

    /// Gives claimed-but-unstarted items back to `pending` without counting the attempt.
    /// Items no longer leased to `worker_id` are skipped; returns how many were released.
    async fn release(&self, item_ids: &[i64], worker_id: &str) -> Result<u64>;

    /// One item by id.
    async fn get(&self, item_id: i64) -> Result<OutboxItem>;

    /// The newest item holding `dedupe_key`, whatever its status (`None` when no item holds it,
    /// or it was purged): how a producer recognises work it already handed in, e.g. a replayed
    /// webhook delivery whose first item already completed.
    async fn get_by_dedupe_key(&self, dedupe_key: &str) -> Result<Option<OutboxItem>>;

    /// Up to `limit` items, newest first, optionally only of one status and/or topic.
    async fn list(
        &self,
        status: Option<OutboxStatus>,
        topic: Option<&str>,
        limit: i64,
    ) -> Result<Vec<OutboxItem>>;

    /// Item counts per status (every status present, zero included).
    async fn stats(&self) -> Result<BTreeMap<String, i64>>;

    /// Puts any item back to `pending` now with its attempts reset.
    async fn requeue(&self, item_id: i64) -> Result<()>;

    /// Requeues every failed item (of `topic`, if given); returns how many.
    async fn requeue_failed(&self, topic: Option<&str>) -> Result<u64>;

    /// Deletes items in `statuses` not updated for `older_than`; returns how many.
    async fn purge(&self, older_than: Duration, statuses: &[OutboxStatus]) -> Result<u64>;

    /// Returns items whose lease expired (or that sat in `processing` without a lease for
    /// `stale_after`) to `pending`, or to `failed` when their attempts are used up. The rule is
    /// [`reaper::reap_stale`]'s; stores provide [`OutboxStore::stuck`] and [`OutboxStore::rescue`].
    async fn reap_stale(&self, stale_after: Duration) -> Result<u64> {
        reaper::reap_stale(self, stale_after).await
    }

    /// SQL primitive of the reaper: up to `limit` items in `processing` whose lease expired at
    /// or before `as_of`, or that hold no lease and were last updated at or before
    /// `untouched_since`, in id order.
    async fn stuck(
        &self,
        as_of: DateTime<Utc>,
        untouched_since: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OutboxItem>>;

    /// SQL primitive of the reaper: applies `rescues` in one transaction, each only to an item
    /// still in `processing` with the lease it was read with; clears the lease and stamps
    /// `updated_at = as_of`. Returns how many items moved.
    async fn rescue(&self, rescues: &[Rescue], as_of: DateTime<Utc>) -> Result<u64>;

    /// A signal fired when work may have arrived: on every enqueue through this store and, on
    /// PostgreSQL, on every enqueue by any process (LISTEN/NOTIFY, started on first call).
    async fn work_signal(&self) -> Result<Arc<Notify>>;

    /// Makes held items (pending, `run_at` at or after [`held_run_at`]) among `item_ids`
    /// claimable now; returns how many. A run's chunks are held until the run completes.
    async fn release_held(&self, item_ids: &[i64]) -> Result<u64>;

    /// Deletes held items among `item_ids` (the chunks of a failed run); returns how many.
    async fn discard_held(&self, item_ids: &[i64]) -> Result<u64>;

    /// Deletes every held item created more than `older_than` ago (the chunks of a run whose
    /// process died before the run ended); returns how many.
    async fn discard_abandoned_held(&self, older_than: Duration) -> Result<u64>;

    /// Releases every connection and stops the LISTEN task; later calls fail with a clear,
    /// non-retryable `StoreError`. Closing twice is harmless.
    async fn close(&self);

    /// Enqueues one item.
    async fn enqueue(&self, item: NewItem) -> Result<i64> {
        Ok(self.enqueue_many(vec![item]).await?[0])
    }

    /// Marks `completed` done (as [`OutboxStore::mark_success_many`]) and claims the next batch
    /// (as [`OutboxStore::claim`]): a worker's acknowledgement of one batch and its claim of the
    /// next, in one round trip where the database allows it. Returns the acknowledgement's own
    /// result (`LeaseLost`/`NotFound` for items not acknowledged) beside the claimed items; an
    /// `Err` outside means neither is known to have happened.
    async fn complete_and_claim(
        &self,
        completed: &[i64],
        worker_id: &str,
        limit: i64,
        filter: &ClaimFilter,
    ) -> Result<(Result<()>, Vec<OutboxItem>)> {
        let acknowledged = match self.mark_success_many(completed, worker_id).await {
            Ok(()) => Ok(()),
            Err(err @ (Error::LeaseLost { .. } | Error::NotFound(_))) => Err(err),
            Err(err) => return Err(err),
        };
        Ok((acknowledged, self.claim(worker_id, limit, filter).await?))
    }

    /// Marks one item completed (see [`OutboxStore::mark_success_many`]).
    async fn mark_success(&self, item_id: i64, worker_id: &str) -> Result<()> {
        self.mark_success_many(&[item_id], worker_id).await
    }
}

/// Opens the store `url` selects (`sqlite:…` or `postgres…`), migrating first if asked.
pub async fn connect(
    url: &str,
    config: OutboxConfig,
    migrate: bool,
) -> Result<Arc<dyn OutboxStore>> {
    config.validate()?;
    match DatabaseUrl::parse(url)? {
        DatabaseUrl::Sqlite { path } => Ok(Arc::new(
            sqlite::OptimisticClaimOutboxStore::open(&path, config, migrate).await?,
        )),
        DatabaseUrl::Postgres { url } => Ok(Arc::new(
            postgres::SkipLockedClaimOutboxStore::connect(&url, config, migrate).await?,
        )),
        DatabaseUrl::Memory => Err(Error::config(
            "the outbox has no memory:// store: use sqlite:///path.db (embedded) or postgres://…",
        )),
    }
}

/// Converts seconds given by a caller into a duration, naming `what` when invalid.
/// (At most 100 years: see [`crate::validate::seconds`].)
pub fn seconds(what: &str, value: f64, allow_zero: bool) -> Result<Duration> {
    crate::validate::seconds(what, value, allow_zero)
}

pub(crate) fn check_limit(limit: i64) -> Result<usize> {
    usize::try_from(limit).map_err(|_| Error::config(format!("limit must be >= 0, got {limit}")))
}
