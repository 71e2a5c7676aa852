//! The outbox contract, run against every store implementation (SQLite and PostgreSQL).

mod common;

use _core::Error;
use _core::outbox::{
    self, ClaimFilter, NewItem, OutboxConfig, OutboxReaper, OutboxStatus, OutboxStore, RetryPolicy,
    reaper,
};
use chrono::Duration;
use common::{Database, Engine};
use std::collections::HashSet;
use std::sync::Arc;

conformance!(
    enqueue_then_get_returns_the_item_with_defaults,
    claim_order_is_priority_then_run_at_then_id,
    delayed_items_are_not_claimed_before_they_are_due,
    claim_evaluates_due_by_at_a_given_moment,
    claim_leases_items_and_counts_attempts,
    concurrent_claimers_never_share_an_item,
    topics_filter_limits_what_is_claimed,
    excluded_topics_are_never_claimed,
    mark_success_many_completes_items,
    partial_acknowledgement_completes_live_leases_and_reports_lost_ones,
    complete_and_claim_acknowledges_one_batch_and_claims_the_next,
    a_worker_without_a_live_lease_changes_nothing,
    unknown_ids_are_not_found,
    mark_retry_uses_the_backoff_of_the_retry_policy,
    mark_retry_dead_letters_when_attempts_are_used_up,
    mark_retry_honours_an_explicit_next_attempt,
    mark_failed_dead_letters_at_once,
    extend_lease_keeps_the_item_and_expires_later,
    reaper_recovers_expired_leases,
    a_stale_rescue_leaves_a_newer_claim_alone,
    dedupe_key_returns_the_existing_live_item,
    enqueue_many_returns_ids_in_input_order_and_dedupes_within_the_batch,
    requeue_requeue_failed_and_purge,
    list_filters_by_status_and_topic_newest_first,
    release_returns_unstarted_items_without_counting_the_attempt,
    bad_input_is_rejected_before_anything_is_written,
    concurrent_migrations_are_safe,
);

struct Fixture {
    db: Database,
    store: Arc<dyn OutboxStore>,
}

impl Fixture {
    async fn new(engine: Engine) -> Option<Fixture> {
        Self::with_retry(
            engine,
            RetryPolicy {
                jitter: 0.0,
                ..Default::default()
            },
        )
        .await
    }

    async fn with_retry(engine: Engine, retry: RetryPolicy) -> Option<Fixture> {
        let db = Database::fresh(engine).await?;
        let store = open(&db, retry).await;
        Some(Fixture { db, store })
    }

    /// Another store (its own connection) on the same database.
    async fn another_store(&self) -> Arc<dyn OutboxStore> {
        open(&self.db, self.store.config().retry.clone()).await
    }

    fn advance(&self, seconds: i64) {
        self.db.clock.advance(Duration::seconds(seconds));
    }

    async fn enqueue(&self, topic: &str, payload: &str) -> i64 {
        self.store
            .enqueue(NewItem::new(topic, payload))
            .await
            .unwrap()
    }

    async fn status(&self, id: i64) -> OutboxStatus {
        self.store.get(id).await.unwrap().status
    }
}

async fn open(db: &Database, retry: RetryPolicy) -> Arc<dyn OutboxStore> {
    let config = OutboxConfig {
        lease: Duration::seconds(30),
        retry,
        clock: db.shared_clock(),
        ..Default::default()
    };
    outbox::connect(&db.url, config, true).await.unwrap()
}

fn ids(items: &[_core::outbox::OutboxItem]) -> Vec<i64> {
    items.iter().map(|i| i.id).collect()
}

async fn enqueue_then_get_returns_the_item_with_defaults(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let id = f
        .enqueue("mail", r#"{"to": "a@example.com", "n": [1, 2]}"#)
        .await;
    let item = f.store.get(id).await.unwrap();
    assert_eq!(item.topic, "mail");
    let payload: serde_json::Value = serde_json::from_str(&item.payload).unwrap();
    assert_eq!(
        payload,
        serde_json::json!({"to": "a@example.com", "n": [1, 2]})
    );
    assert_eq!(item.status, OutboxStatus::Pending);
    assert_eq!((item.priority, item.attempts, item.max_attempts), (0, 0, 5));
    assert_eq!(item.run_at, common::epoch());
    assert_eq!(item.created_at, common::epoch());
    assert!(item.lease_owner.is_none() && item.lease_expires_at.is_none());
}

async fn claim_order_is_priority_then_run_at_then_id(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let low = f.enqueue("t", "1").await;
    let high = f
        .store
        .enqueue(NewItem {
            priority: 5,
            ..NewItem::new("t", "2")
        })
        .await
        .unwrap();
    let earlier = f
        .store
        .enqueue(NewItem {
            run_at: Some(common::epoch() - Duration::seconds(60)),
            ..NewItem::new("t", "3")
        })
        .await
        .unwrap();
    let low_later_id = f.enqueue("t", "4").await;
    let claimed = f.store.claim_batch("w", 10, None).await.unwrap();
    assert_eq!(ids(&claimed), vec![high, earlier, low, low_later_id]);
}

async fn delayed_items_are_not_claimed_before_they_are_due(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let id = f
        .store
        .enqueue(NewItem {
            delay: Duration::seconds(10),
            ..NewItem::new("t", "{}")
        })
        .await
        .unwrap();
    assert!(f.store.claim_batch("w", 10, None).await.unwrap().is_empty());
    f.advance(9);
    assert!(f.store.claim_batch("w", 10, None).await.unwrap().is_empty());
    f.advance(1);
    assert_eq!(
        ids(&f.store.claim_batch("w", 10, None).await.unwrap()),
        vec![id]
    );
}

async fn claim_leases_items_and_counts_attempts(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    for n in 0..5 {
        f.enqueue("t", &n.to_string()).await;
    }
    let first = f.store.claim_batch("w1", 3, None).await.unwrap();
    assert_eq!(first.len(), 3);
    for item in &first {
        assert_eq!(item.status, OutboxStatus::Processing);
        assert_eq!(item.attempts, 1);
        assert_eq!(item.lease_owner.as_deref(), Some("w1"));
        assert_eq!(
            item.lease_expires_at,
            Some(common::epoch() + Duration::seconds(30))
        );
    }
    let rest = f.store.claim_batch("w2", 10, None).await.unwrap();
    assert_eq!(rest.len(), 2, "only unclaimed items remain");
    assert!(
        f.store
            .claim_batch("w3", 10, None)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(f.store.claim_batch("w3", 0, None).await.unwrap().is_empty());
}

async fn concurrent_claimers_never_share_an_item(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let total = 400;
    let items = (0..total)
        .map(|n| NewItem::new("t", n.to_string()))
        .collect();
    f.store.enqueue_many(items).await.unwrap();
    let mut claimers = Vec::new();
    for worker in 0..4 {
        let store = f.another_store().await;
        claimers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = store
                    .claim_batch(&format!("w{worker}"), 7, None)
                    .await
                    .unwrap();
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(batch.iter().map(|i| i.id));
            }
        }));
    }
    let mut seen = HashSet::new();
    for claimer in claimers {
        for id in claimer.await.unwrap() {
            assert!(seen.insert(id), "item {id} was claimed twice");
        }
    }
    assert_eq!(seen.len(), total);
}

async fn topics_filter_limits_what_is_claimed(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let a = f.enqueue("a", "1").await;
    let b = f.enqueue("b", "2").await;
    f.enqueue("c", "3").await;
    let topics = vec!["a".to_string(), "b".to_string()];
    let claimed = f.store.claim_batch("w", 10, Some(&topics)).await.unwrap();
    assert_eq!(ids(&claimed), vec![a, b]);
    assert!(
        f.store
            .claim_batch("w", 10, Some(&topics))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        f.store
            .claim_batch("w", 10, Some(&[]))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn mark_success_many_completes_items(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    for n in 0..3 {
        f.enqueue("t", &n.to_string()).await;
    }
    let claimed = f.store.claim_batch("w", 10, None).await.unwrap();
    f.store
        .mark_success_many(&ids(&claimed), "w")
        .await
        .unwrap();
    for id in ids(&claimed) {
        let item = f.store.get(id).await.unwrap();
        assert_eq!(item.status, OutboxStatus::Completed);
        assert!(item.lease_owner.is_none());
    }
    let stats = f.store.stats().await.unwrap();
    assert_eq!(stats["completed"], 3);
    assert_eq!(stats["pending"], 0);
    assert_eq!(stats["failed"], 0);
    f.store.mark_success_many(&[], "w").await.unwrap();
}

async fn complete_and_claim_acknowledges_one_batch_and_claims_the_next(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    for n in 0..5 {
        f.enqueue(if n == 3 { "other" } else { "t" }, &n.to_string())
            .await;
    }
    let filter = ClaimFilter {
        exclude_topics: vec!["other".into()],
        ..ClaimFilter::default()
    };
    // Nothing to acknowledge yet: a plain claim, in claim order, honouring the filter.
    let (acked, first) = f
        .store
        .complete_and_claim(&[], "w", 2, &filter)
        .await
        .unwrap();
    acked.unwrap();
    assert_eq!(first.len(), 2);
    let (acked, second) = f
        .store
        .complete_and_claim(&ids(&first), "w", 10, &filter)
        .await
        .unwrap();
    acked.unwrap();
    assert_eq!(
        ids(&second).len(),
        2,
        "the rest of the due items outside the excluded topic"
    );
    for item in &second {
        assert!(item.topic == "t" && item.status == OutboxStatus::Processing);
        assert_eq!(item.lease_owner.as_deref(), Some("w"));
        assert_eq!(item.attempts, 1);
    }
    assert!(second[0].id < second[1].id, "claim order");
    for id in ids(&first) {
        assert_eq!(
            f.store.get(id).await.unwrap().status,
            OutboxStatus::Completed
        );
    }
    // An item this worker does not hold: LeaseLost for it, the others are acknowledged.
    let theirs = f.store.claim_batch("w2", 1, None).await.unwrap();
    let mut acknowledge = ids(&second);
    acknowledge.push(theirs[0].id);
    let (acked, third) = f
        .store
        .complete_and_claim(&acknowledge, "w", 10, &ClaimFilter::default())
        .await
        .unwrap();
    match acked {
        Err(Error::LeaseLost { item_ids, .. }) => assert_eq!(item_ids, ids(&theirs)),
        other => panic!("expected LeaseLost, got {other:?}"),
    }
    assert!(third.is_empty(), "nothing else is due");
    for id in ids(&second) {
        assert_eq!(
            f.store.get(id).await.unwrap().status,
            OutboxStatus::Completed
        );
    }
    assert_eq!(
        f.store.get(theirs[0].id).await.unwrap().status,
        OutboxStatus::Processing
    );
    let stats = f.store.stats().await.unwrap();
    assert_eq!((stats["completed"], stats["processing"]), (4, 1));
}

async fn partial_acknowledgement_completes_live_leases_and_reports_lost_ones(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let mine = f.enqueue("t", "1").await;
    let theirs = f.enqueue("t", "2").await;
    f.store.claim_batch("w1", 1, None).await.unwrap();
    f.store.claim_batch("w2", 1, None).await.unwrap();
    let err = f
        .store
        .mark_success_many(&[mine, theirs], "w1")
        .await
        .unwrap_err();
    match err {
        Error::LeaseLost { item_ids, .. } => assert_eq!(item_ids, vec![theirs]),
        other => panic!("expected LeaseLost, got {other:?}"),
    }
    assert_eq!(f.status(mine).await, OutboxStatus::Completed);
    assert_eq!(f.status(theirs).await, OutboxStatus::Processing);
}

async fn a_worker_without_a_live_lease_changes_nothing(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let id = f.enqueue("t", "1").await;
    f.store.claim_batch("w1", 1, None).await.unwrap();
    let before = f.store.get(id).await.unwrap();
    for result in [
        f.store.mark_success(id, "w2").await,
        f.store.mark_failed(id, "w2", "x").await,
        f.store.mark_retry(id, "w2", None, "x").await.map(|_| ()),
        f.store.extend_lease(id, "w2", None).await.map(|_| ()),
    ] {
        assert_eq!(result.unwrap_err().code(), "lease_lost");
    }
    f.advance(31);
    let err = f.store.mark_success(id, "w1").await.unwrap_err();
    assert_eq!(err.code(), "lease_lost", "an expired lease is lost: {err}");
    assert_eq!(f.store.get(id).await.unwrap(), before);
}

async fn unknown_ids_are_not_found(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    for result in [
        f.store.get(999).await.map(|_| ()),
        f.store.mark_success(999, "w").await,
        f.store.mark_failed(999, "w", "x").await,
        f.store.mark_retry(999, "w", None, "x").await.map(|_| ()),
        f.store.extend_lease(999, "w", None).await.map(|_| ()),
        f.store.requeue(999).await,
    ] {
        let err = result.unwrap_err();
        assert_eq!(err.code(), "not_found");
        assert!(err.to_string().contains("999"), "{err}");
    }
}

async fn mark_retry_uses_the_backoff_of_the_retry_policy(engine: Engine) {
    let retry = RetryPolicy {
        base_seconds: 4.0,
        factor: 3.0,
        jitter: 0.0,
        ..Default::default()
    };
    let Some(f) = Fixture::with_retry(engine, retry).await else {
        return;
    };
    let id = f.enqueue("t", "1").await;
    let mut expected_delays = vec![4, 12, 36].into_iter();
    for attempt in 1..=3 {
        let claimed = f.store.claim_batch("w", 1, None).await.unwrap();
        assert_eq!((claimed[0].id, claimed[0].attempts), (id, attempt));
        let status = f
            .store
            .mark_retry(id, "w", None, &format!("boom {attempt}"))
            .await
            .unwrap();
        assert_eq!(status, OutboxStatus::Pending);
        let item = f.store.get(id).await.unwrap();
        let delay = expected_delays.next().unwrap();
        let now = f.db.clock.now_for_tests();
        assert_eq!(item.run_at, now + Duration::seconds(delay));
        assert_eq!(
            item.last_error.as_deref(),
            Some(format!("boom {attempt}").as_str())
        );
        assert!(
            f.store.claim_batch("w", 1, None).await.unwrap().is_empty(),
            "not due yet"
        );
        f.advance(delay);
    }
}

async fn mark_retry_dead_letters_when_attempts_are_used_up(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let id = f
        .store
        .enqueue(NewItem {
            max_attempts: Some(2),
            ..NewItem::new("t", "1")
        })
        .await
        .unwrap();
    f.store.claim_batch("w", 1, None).await.unwrap();
    assert_eq!(
        f.store.mark_retry(id, "w", None, "first").await.unwrap(),
        OutboxStatus::Pending
    );
    f.advance(3600);
    f.store.claim_batch("w", 1, None).await.unwrap();
    assert_eq!(
        f.store.mark_retry(id, "w", None, "second").await.unwrap(),
        OutboxStatus::Failed
    );
    let item = f.store.get(id).await.unwrap();
    assert_eq!(item.status, OutboxStatus::Failed);
    assert_eq!(item.last_error.as_deref(), Some("second"));
    f.advance(3600);
    assert!(
        f.store.claim_batch("w", 1, None).await.unwrap().is_empty(),
        "dead letters stay put"
    );
}

async fn mark_retry_honours_an_explicit_next_attempt(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let id = f.enqueue("t", "1").await;
    f.store.claim_batch("w", 1, None).await.unwrap();
    let at = common::epoch() + Duration::seconds(500);
    f.store
        .mark_retry(id, "w", Some(at), "later")
        .await
        .unwrap();
    assert_eq!(f.store.get(id).await.unwrap().run_at, at);
}

async fn mark_failed_dead_letters_at_once(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let id = f.enqueue("t", "1").await;
    f.store.claim_batch("w", 1, None).await.unwrap();
    f.store.mark_failed(id, "w", "PERMANENT").await.unwrap();
    let item = f.store.get(id).await.unwrap();
    assert_eq!(
        (item.status, item.last_error.as_deref()),
        (OutboxStatus::Failed, Some("PERMANENT"))
    );
    assert_eq!(f.store.stats().await.unwrap()["failed"], 1);
}

async fn extend_lease_keeps_the_item_and_expires_later(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let id = f.enqueue("t", "1").await;
    f.store.claim_batch("w", 1, None).await.unwrap();
    f.advance(20);
    let expires = f
        .store
        .extend_lease(id, "w", Some(Duration::seconds(100)))
        .await
        .unwrap();
    assert_eq!(expires, common::epoch() + Duration::seconds(120));
    f.advance(60);
    assert_eq!(f.store.reap_stale(Duration::seconds(600)).await.unwrap(), 0);
    f.store.mark_success(id, "w").await.unwrap();
    let err = f
        .store
        .extend_lease(id, "w", Some(Duration::seconds(-1)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "config_error");
}

async fn reaper_recovers_expired_leases(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let retryable = f.enqueue("t", "1").await;
    let exhausted = f
        .store
        .enqueue(NewItem {
            max_attempts: Some(1),
            ..NewItem::new("t", "2")
        })
        .await
        .unwrap();
    let live = f.enqueue("t", "3").await;
    f.store.claim_batch("dead-worker", 2, None).await.unwrap();
    f.advance(20);
    f.store.claim_batch("alive-worker", 1, None).await.unwrap();
    let reaper = OutboxReaper::new(f.store.clone(), Duration::seconds(600));
    assert_eq!(
        reaper.reap_stale_items().await.unwrap(),
        0,
        "no lease has expired yet"
    );
    f.advance(11);
    assert_eq!(reaper.reap_stale_items().await.unwrap(), 2);
    let item = f.store.get(retryable).await.unwrap();
    assert_eq!(item.status, OutboxStatus::Pending);
    assert!(item.lease_owner.is_none());
    assert!(item.last_error.unwrap().contains("dead-worker"));
    assert_eq!(f.status(exhausted).await, OutboxStatus::Failed);
    assert_eq!(f.status(live).await, OutboxStatus::Processing);
    let reclaimed = f.store.claim_batch("w", 10, None).await.unwrap();
    assert_eq!(
        (ids(&reclaimed), reclaimed[0].attempts),
        (vec![retryable], 2)
    );
}

/// The reaper decides on what it read; a rescue only applies to an item still holding the lease
/// it was decided on, so a reaper that lost a race never undoes a newer claim.
async fn a_stale_rescue_leaves_a_newer_claim_alone(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let id = f.enqueue("t", "1").await;
    f.store.claim_batch("dead-worker", 1, None).await.unwrap();
    f.advance(31);
    let now = common::epoch() + Duration::seconds(31);
    let stuck = f.store.stuck(now, now, 10).await.unwrap();
    assert_eq!(ids(&stuck), vec![id]);
    let late = reaper::decide(f.store.as_ref(), &stuck[0], now);
    assert_eq!(late.status, OutboxStatus::Pending);
    assert_eq!(
        late.last_error,
        "lease of worker dead-worker expired after attempt 1 of 5"
    );
    // Another reaper gets there first and a live worker claims the item again.
    assert_eq!(f.store.reap_stale(Duration::seconds(600)).await.unwrap(), 1);
    f.store.claim_batch("alive-worker", 1, None).await.unwrap();
    assert_eq!(f.store.rescue(&[late], now).await.unwrap(), 0);
    let item = f.store.get(id).await.unwrap();
    assert_eq!(
        (item.status, item.lease_owner.as_deref(), item.attempts),
        (OutboxStatus::Processing, Some("alive-worker"), 2)
    );
}

async fn dedupe_key_returns_the_existing_live_item(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let keyed = |payload: &str| NewItem {
        dedupe_key: Some("order-7".into()),
        ..NewItem::new("t", payload)
    };
    let first = f.store.enqueue(keyed("1")).await.unwrap();
    assert_eq!(f.store.enqueue(keyed("2")).await.unwrap(), first);
    let batch = f
        .store
        .enqueue_many(vec![keyed("3"), NewItem::new("t", "4")])
        .await
        .unwrap();
    assert_eq!(batch[0], first);
    assert_eq!(f.store.get(first).await.unwrap().payload, "1");
    f.store.claim_batch("w", 1, None).await.unwrap();
    assert_eq!(
        f.store.enqueue(keyed("5")).await.unwrap(),
        first,
        "processing is still live"
    );
    f.store.mark_success(first, "w").await.unwrap();
    let done = f.store.get_by_dedupe_key("order-7").await.unwrap().unwrap();
    assert_eq!(
        (done.id, done.status),
        (first, OutboxStatus::Completed),
        "found after it completed"
    );
    assert!(
        f.store
            .get_by_dedupe_key("order-8")
            .await
            .unwrap()
            .is_none()
    );
    let next = f.store.enqueue(keyed("6")).await.unwrap();
    assert_ne!(next, first, "a completed item no longer holds its key");
    assert_eq!(
        f.store
            .get_by_dedupe_key("order-7")
            .await
            .unwrap()
            .map(|i| i.id),
        Some(next),
        "the newest holder of the key"
    );
}

async fn enqueue_many_returns_ids_in_input_order_and_dedupes_within_the_batch(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let keyed = |key: &str, payload: &str| NewItem {
        dedupe_key: Some(key.into()),
        ..NewItem::new("t", payload)
    };
    let live = f.store.enqueue(keyed("live", "0")).await.unwrap();
    let mut items: Vec<NewItem> = (1..=1500)
        .map(|n| NewItem::new("t", format!("{n}")))
        .collect();
    items[10] = keyed("twice", "\"first\"");
    items[700] = keyed("twice", "\"second\"");
    items[20] = keyed("live", "\"ignored\"");
    let ids = f.store.enqueue_many(items).await.unwrap();
    assert_eq!(ids.len(), 1500);
    assert_eq!(
        ids[700], ids[10],
        "a key repeated in one batch answers its first item"
    );
    assert_eq!(ids[20], live, "a key held by a live item answers that item");
    let fresh: Vec<i64> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| ![20, 700].contains(i))
        .map(|(_, id)| *id)
        .collect();
    assert!(
        fresh.windows(2).all(|w| w[0] < w[1]),
        "new ids ascend in input order"
    );
    for (index, id) in [(0usize, ids[0]), (10, ids[10]), (1499, ids[1499])] {
        let expected = if index == 10 {
            "\"first\"".to_string()
        } else {
            format!("{}", index + 1)
        };
        assert_eq!(f.store.get(id).await.unwrap().payload, expected);
    }
    assert_eq!(f.store.get(live).await.unwrap().payload, "0");
    let stats = f.store.stats().await.unwrap();
    assert_eq!(stats["pending"], 1 + 1500 - 2);
    assert!(f.store.enqueue_many(Vec::new()).await.unwrap().is_empty());
}

async fn requeue_requeue_failed_and_purge(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let a = f.enqueue("a", "1").await;
    let b = f.enqueue("b", "2").await;
    let c = f.enqueue("a", "3").await;
    f.store.claim_batch("w", 3, None).await.unwrap();
    f.store.mark_failed(a, "w", "x").await.unwrap();
    f.store.mark_failed(b, "w", "x").await.unwrap();
    f.store.mark_success(c, "w").await.unwrap();

    f.store.requeue(a).await.unwrap();
    let item = f.store.get(a).await.unwrap();
    assert_eq!((item.status, item.attempts), (OutboxStatus::Pending, 0));
    assert_eq!(f.store.requeue_failed(Some("a")).await.unwrap(), 0);
    assert_eq!(f.store.requeue_failed(None).await.unwrap(), 1);
    assert_eq!(f.status(b).await, OutboxStatus::Pending);

    f.advance(100);
    assert_eq!(
        f.store
            .purge(Duration::seconds(200), &[OutboxStatus::Completed])
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        f.store
            .purge(Duration::seconds(50), &[OutboxStatus::Completed])
            .await
            .unwrap(),
        1
    );
    assert_eq!(f.store.get(c).await.unwrap_err().code(), "not_found");
    assert_eq!(
        f.store.stats().await.unwrap()["pending"],
        2,
        "purge keeps other statuses"
    );
}

async fn release_returns_unstarted_items_without_counting_the_attempt(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let id = f.enqueue("t", "1").await;
    f.store.claim_batch("w", 1, None).await.unwrap();
    assert_eq!(f.store.release(&[id], "other").await.unwrap(), 0);
    assert_eq!(f.store.release(&[id], "w").await.unwrap(), 1);
    let item = f.store.get(id).await.unwrap();
    assert_eq!((item.status, item.attempts), (OutboxStatus::Pending, 0));
}

async fn bad_input_is_rejected_before_anything_is_written(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let err = f.store.claim_batch("w", -1, None).await.unwrap_err();
    assert_eq!(err.code(), "config_error");
    assert!(err.to_string().contains("-1"), "{err}");
    let huge = format!("\"{}\"", "x".repeat(1024 * 1024));
    let err = f
        .store
        .enqueue_many(vec![NewItem::new("t", "1"), NewItem::new("t", huge)])
        .await
        .unwrap_err();
    assert_eq!(err.code(), "config_error");
    assert!(err.to_string().contains("1048578 bytes"), "{err}");
    let err = f.store.enqueue(NewItem::new("", "1")).await.unwrap_err();
    assert_eq!(err.code(), "config_error");
    let err = f
        .store
        .enqueue(NewItem {
            max_attempts: Some(0),
            ..NewItem::new("t", "1")
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("max_attempts"), "{err}");
    let err = f
        .store
        .enqueue(NewItem {
            delay: Duration::seconds(-5),
            ..NewItem::new("t", "1")
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("delay_seconds"), "{err}");
    let stats = f.store.stats().await.unwrap();
    assert_eq!(
        stats.values().sum::<i64>(),
        0,
        "nothing was written: {stats:?}"
    );
}

async fn concurrent_migrations_are_safe(engine: Engine) {
    let Some(db) = Database::fresh(engine).await else {
        return;
    };
    let db = Arc::new(db);
    let opens = (0..4).map(|_| {
        let db = db.clone();
        tokio::spawn(async move { open(&db, RetryPolicy::default()).await })
    });
    let stores: Vec<_> = futures_join(opens).await;
    let id = stores[0].enqueue(NewItem::new("t", "1")).await.unwrap();
    assert_eq!(stores[3].get(id).await.unwrap().id, id);
}

async fn futures_join<T: Send + 'static>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

async fn claim_evaluates_due_by_at_a_given_moment(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let id = f
        .store
        .enqueue(NewItem {
            delay: Duration::seconds(60),
            ..NewItem::new("t", "{}")
        })
        .await
        .unwrap();
    let soon = common::epoch() + Duration::seconds(59);
    assert!(
        f.store
            .claim(
                "w",
                10,
                &ClaimFilter {
                    due_by: Some(soon),
                    ..Default::default()
                }
            )
            .await
            .unwrap()
            .is_empty()
    );
    let later = common::epoch() + Duration::seconds(60);
    let claimed = f
        .store
        .claim(
            "w",
            10,
            &ClaimFilter {
                due_by: Some(later),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(ids(&claimed), vec![id]);
    assert_eq!(
        claimed[0].lease_expires_at,
        Some(common::epoch() + Duration::seconds(30)),
        "the lease runs from now"
    );
}

async fn list_filters_by_status_and_topic_newest_first(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    let a1 = f.enqueue("a", "1").await;
    let b1 = f.enqueue("b", "2").await;
    let a2 = f.enqueue("a", "3").await;
    f.store.claim_batch("w", 1, None).await.unwrap();
    assert_eq!(
        ids(&f.store.list(None, None, 10).await.unwrap()),
        vec![a2, b1, a1]
    );
    assert_eq!(
        ids(&f.store.list(None, Some("a"), 10).await.unwrap()),
        vec![a2, a1]
    );
    assert_eq!(
        ids(&f
            .store
            .list(Some(OutboxStatus::Processing), None, 10)
            .await
            .unwrap()),
        vec![a1]
    );
    assert_eq!(
        ids(&f
            .store
            .list(Some(OutboxStatus::Pending), Some("a"), 1)
            .await
            .unwrap()),
        vec![a2]
    );
    assert_eq!(
        f.store.list(None, None, -1).await.unwrap_err().code(),
        "config_error"
    );
}

async fn excluded_topics_are_never_claimed(engine: Engine) {
    let Some(f) = Fixture::new(engine).await else {
        return;
    };
    f.enqueue("scheduler.own", "1").await;
    let work = f.enqueue("work", "2").await;
    let filter = ClaimFilter {
        exclude_topics: vec!["scheduler.own".into()],
        ..Default::default()
    };
    assert_eq!(
        ids(&f.store.claim("w", 10, &filter).await.unwrap()),
        vec![work]
    );
    assert!(f.store.claim("w", 10, &filter).await.unwrap().is_empty());
    assert_eq!(
        f.store.claim_batch("w", 10, None).await.unwrap().len(),
        1,
        "others may still claim it"
    );
}
