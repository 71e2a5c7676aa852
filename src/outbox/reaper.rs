//! Recovery of items whose worker vanished.

use super::OutboxStore;
use crate::error::Result;
use chrono::Duration;
use std::sync::Arc;

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
