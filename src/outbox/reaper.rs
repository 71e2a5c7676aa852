//! Recovery of items whose worker vanished.
//!
//! The rule lives here, once: an item in `processing` whose lease expired (or that holds no
//! lease and was not touched for the stale threshold) goes back to `pending`, or is dead-lettered
//! as `failed` when [`RetryPolicy::decide`](super::RetryPolicy::decide) says its attempts are
//! used up. The drivers only provide the two SQL primitives, [`OutboxStore::stuck`] (the
//! expired leases as of a time read from the store's clock) and [`OutboxStore::rescue`] (apply
//! the decisions, each guarded by the lease state it was made on), as River's rescuer does.

use super::{FailureDecision, OutboxItem, OutboxStatus, OutboxStore};
use crate::error::Result;
use chrono::{DateTime, Duration, Utc};
use std::sync::Arc;

/// Stuck items read and rescued per round trip.
const RESCUE_BATCH: i64 = 500;

/// One decided rescue: the item moves to `status` (with `run_at` and `last_error`) if it still
/// holds the lease it was read with (`attempts`, `lease_owner`, `lease_expires_at`).
#[derive(Debug, Clone, PartialEq)]
pub struct Rescue {
    /// The item.
    pub id: i64,
    /// Its attempts when read (guard).
    pub attempts: i32,
    /// Its lease owner when read (guard).
    pub lease_owner: Option<String>,
    /// Its lease expiry when read (guard).
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// `pending` or `failed`.
    pub status: OutboxStatus,
    /// When it is due again (unchanged from the stuck item's).
    pub run_at: DateTime<Utc>,
    /// Why it was rescued.
    pub last_error: String,
}

/// The reaper's decision for one stuck item (read at `now` from the store's clock).
pub fn decide(
    store: &(impl OutboxStore + ?Sized),
    item: &OutboxItem,
    now: DateTime<Utc>,
) -> Rescue {
    // The lease ran out, so the attempt counts as a retryable failure; a reaped item keeps
    // its `run_at` (already due), so it runs again at once.
    let status = match store.config().retry.decide(
        item.attempts,
        item.max_attempts,
        true,
        Some(item.run_at),
        now,
    ) {
        FailureDecision::Retry { .. } => OutboxStatus::Pending,
        FailureDecision::DeadLetter => OutboxStatus::Failed,
    };
    Rescue {
        id: item.id,
        attempts: item.attempts,
        lease_owner: item.lease_owner.clone(),
        lease_expires_at: item.lease_expires_at,
        status,
        run_at: item.run_at,
        last_error: format!(
            "lease of worker {} expired after attempt {} of {}",
            item.lease_owner.as_deref().unwrap_or("(none)"),
            item.attempts,
            item.max_attempts
        ),
    }
}

/// Reaps `store` once as of its clock's now (see the module docs); returns how many items moved.
pub async fn reap_stale(store: &(impl OutboxStore + ?Sized), stale_after: Duration) -> Result<u64> {
    let now = store.config().clock.now();
    let untouched_since = crate::validate::before(now, stale_after);
    let mut reaped = 0;
    loop {
        let stuck = store.stuck(now, untouched_since, RESCUE_BATCH).await?;
        if stuck.is_empty() {
            break;
        }
        let rescues: Vec<Rescue> = stuck.iter().map(|item| decide(store, item, now)).collect();
        let moved = store.rescue(&rescues, now).await?;
        reaped += moved;
        // A short page is the last one; a page nobody could move (another reaper got there
        // first) ends the pass rather than reading the same rows again.
        if (stuck.len() as i64) < RESCUE_BATCH || moved == 0 {
            break;
        }
    }
    Ok(reaped)
}

/// Returns items with expired leases to `pending` (or `failed` when out of attempts).
#[derive(Debug, Clone)]
pub struct OutboxReaper {
    store: Arc<dyn OutboxStore>,
    stale_threshold: Duration,
}

impl OutboxReaper {
    /// A reaper over `store`; items in `processing` with no lease at all are reaped once they
    /// have not been touched for `stale_threshold`.
    pub fn new(store: Arc<dyn OutboxStore>, stale_threshold: Duration) -> Self {
        OutboxReaper {
            store,
            stale_threshold,
        }
    }

    /// Reaps once; returns how many items were recovered.
    pub async fn reap_stale_items(&self) -> Result<u64> {
        let reaped = self.store.reap_stale(self.stale_threshold).await?;
        if reaped > 0 {
            tracing::info!(target: "headrace.outbox", reaped, "reaped items with expired leases");
        }
        Ok(reaped)
    }
}
