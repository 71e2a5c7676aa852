//! Keeps the leases of every item a worker holds alive, from the moment of the claim (prefetched
//! batches included) until the item is settled, on its own task: a slow handler, a busy claim
//! loop or a Python handler holding the GIL never delays an extension.
//!
//! All held leases are extended in one store call every third of the lease, so a lease is
//! renewed twice before it could expire. An item whose handler has run longer than the
//! worker's `handler_timeout` is no longer extended: its lease lapses and another worker may
//! take it.

use crate::outbox::OutboxStore;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One held item: when its handler started (`None`: claimed, not yet handed over).
#[derive(Debug, Clone, Copy)]
struct Held {
    handler_started: Option<Instant>,
}

/// The items a worker holds leases on.
#[derive(Debug, Default)]
pub(crate) struct LeaseKeeper {
    held: Mutex<HashMap<i64, Held>>,
}

impl LeaseKeeper {
    /// Starts keeping the leases of freshly claimed `ids`.
    pub fn hold(&self, ids: impl IntoIterator<Item = i64>) {
        let mut held = self.held.lock().expect("lease keeper poisoned");
        for id in ids {
            held.insert(
                id,
                Held {
                    handler_started: None,
                },
            );
        }
    }

    /// Notes that the handler of `ids` starts now (the handler timeout counts from here).
    pub fn handing_over(&self, ids: &[i64]) {
        let now = Instant::now();
        let mut held = self.held.lock().expect("lease keeper poisoned");
        for id in ids {
            if let Some(entry) = held.get_mut(id) {
                entry.handler_started = Some(now);
            }
        }
    }

    /// Stops keeping the leases of `ids` (settled, released or given up).
    pub fn let_go(&self, ids: &[i64]) {
        let mut held = self.held.lock().expect("lease keeper poisoned");
        for id in ids {
            held.remove(id);
        }
    }

    /// How many items are held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.held.lock().expect("lease keeper poisoned").len()
    }

    /// The ids to extend now: every held item whose handler has not run past `handler_timeout`.
    fn due(&self, handler_timeout: Option<Duration>) -> Vec<i64> {
        let held = self.held.lock().expect("lease keeper poisoned");
        held.iter()
            .filter(|(_, h)| match (handler_timeout, h.handler_started) {
                (Some(limit), Some(started)) => started.elapsed() < limit,
                _ => true,
            })
            .map(|(id, _)| *id)
            .collect()
    }
}

/// How often held leases are renewed: a third of the lease (at least every 10 ms).
pub(crate) fn renewal_interval(lease: chrono::Duration) -> Duration {
    (lease / 3)
        .to_std()
        .unwrap_or(Duration::from_secs(1))
        .max(Duration::from_millis(10))
}

/// Renews every held lease each [`renewal_interval`] until the task is aborted.
pub(crate) async fn keep_alive(
    keeper: Arc<LeaseKeeper>,
    store: Arc<dyn OutboxStore>,
    worker_id: String,
    handler_timeout: Option<Duration>,
) {
    let every = renewal_interval(store.config().lease);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let ids = keeper.due(handler_timeout);
        if ids.is_empty() {
            continue;
        }
        match store.extend_leases(&ids, &worker_id, None).await {
            Ok(extended) if extended.len() < ids.len() => {
                let lost: Vec<i64> = ids
                    .into_iter()
                    .filter(|id| !extended.contains(id))
                    .collect();
                tracing::warn!(target: "headrace.worker", worker = %worker_id, ?lost, "leases lost before they could be renewed; another worker may run these items");
                keeper.let_go(&lost);
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(target: "headrace.worker", worker = %worker_id, %err, "renewing leases failed; trying again next tick");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_past_their_handler_timeout_are_no_longer_renewed() {
        let keeper = LeaseKeeper::default();
        keeper.hold([1, 2, 3]);
        keeper.handing_over(&[1, 2]);
        std::thread::sleep(Duration::from_millis(30));
        keeper.handing_over(&[2]);
        let mut due = keeper.due(Some(Duration::from_millis(20)));
        due.sort();
        assert_eq!(due, vec![2, 3]);
        keeper.let_go(&[2, 3]);
        assert_eq!(keeper.due(None), vec![1]);
        assert_eq!(keeper.len(), 1);
    }

    #[test]
    fn renewal_happens_three_times_per_lease() {
        assert_eq!(
            renewal_interval(chrono::Duration::seconds(3)),
            Duration::from_secs(1)
        );
        assert_eq!(
            renewal_interval(chrono::Duration::milliseconds(3)),
            Duration::from_millis(10)
        );
    }
}
