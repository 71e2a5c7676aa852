//! The outbox worker on every store: outcomes, retry timing, stop, leases, reaper, wake-ups.

mod common;

use _core::clock::SystemClock;
use _core::outbox::{
    self, NewItem, OutboxConfig, OutboxItem, OutboxStatus, OutboxStore, RetryPolicy,
};
use _core::worker::{BatchHandler, OutboxWorker, Outcome, StopFlag, WorkerConfig, WorkerReport};
use async_trait::async_trait;
use chrono::Duration;
use common::{Database, Engine};
use std::sync::{Arc, Mutex};

conformance!(
    each_handler_outcome_settles_the_item,
    retries_follow_the_backoff_then_dead_letter,
    a_topic_retry_policy_overrides_the_store_policy,
    unknown_topics_are_dead_lettered_with_a_reason,
    stop_finishes_in_flight_items_and_releases_unstarted_ones,
    leases_are_extended_while_a_handler_runs_long,
    the_in_worker_reaper_recovers_abandoned_items,
    an_idle_worker_wakes_on_enqueue,
);

/// A handler built from a closure over one item (stops starting items once asked).
struct PerItem<F>(F);

#[async_trait]
impl<F> BatchHandler for PerItem<F>
where
    F: Fn(&OutboxItem) -> Outcome + Send + Sync + 'static,
{
    async fn handle(&self, items: Vec<OutboxItem>, stop: StopFlag) -> Vec<Outcome> {
        items
            .iter()
            .map(|item| {
                if stop.is_set() {
                    Outcome::NotStarted
                } else {
                    (self.0)(item)
                }
            })
            .collect()
    }
}

fn handler(f: impl Fn(&OutboxItem) -> Outcome + Send + Sync + 'static) -> Arc<dyn BatchHandler> {
    Arc::new(PerItem(f))
}

async fn store(db: &Database, lease_seconds: i64, manual_clock: bool) -> Arc<dyn OutboxStore> {
    let config = OutboxConfig {
        lease: Duration::seconds(lease_seconds),
        retry: RetryPolicy {
            max_attempts: 3,
            base_seconds: 10.0,
            factor: 2.0,
            jitter: 0.0,
            ..Default::default()
        },
        clock: if manual_clock {
            db.shared_clock()
        } else {
            Arc::new(SystemClock)
        },
        ..Default::default()
    };
    outbox::connect(&db.url, config, true).await.unwrap()
}

fn config() -> WorkerConfig {
    WorkerConfig {
        batch_size: 10,
        poll_interval: std::time::Duration::from_millis(50),
        ..WorkerConfig::new("w1")
    }
}

async fn enqueue(store: &Arc<dyn OutboxStore>, topic: &str, payload: &str) -> i64 {
    store.enqueue(NewItem::new(topic, payload)).await.unwrap()
}

async fn each_handler_outcome_settles_the_item(engine: Engine) {
    let Some(db) = Database::fresh(engine).await else {
        return;
    };
    let store = store(&db, 30, true).await;
    let ok = enqueue(&store, "t", r#""ok""#).await;
    let rejected = enqueue(&store, "t", r#""reject""#).await;
    let flaky = enqueue(&store, "t", r#""flaky""#).await;
    let worker = OutboxWorker::new(
        store.clone(),
        handler(|item| match item.payload.as_str() {
            r#""ok""# => Outcome::Completed,
            r#""reject""# => Outcome::reject("bad data"),
            _ => Outcome::retry("timeout"),
        }),
        config(),
    )
    .unwrap();
    let report = worker.run_until_empty(None).await.unwrap();
    assert_eq!(
        report,
        WorkerReport {
            processed: 3,
            completed: 1,
            retried: 1,
            failed: 1,
            ..Default::default()
        }
    );
    assert_eq!(store.get(ok).await.unwrap().status, OutboxStatus::Completed);
    let dead = store.get(rejected).await.unwrap();
    assert_eq!(
        (dead.status, dead.last_error.as_deref()),
        (OutboxStatus::Failed, Some("bad data"))
    );
    let retry = store.get(flaky).await.unwrap();
    assert_eq!(
        (retry.status, retry.last_error.as_deref()),
        (OutboxStatus::Pending, Some("timeout"))
    );
    let counts = worker.metrics().topic_counts();
    assert_eq!(
        (
            counts["t"].claimed,
            counts["t"].completed,
            counts["t"].failed
        ),
        (3, 1, 1)
    );
    assert!(
        worker
            .metrics()
            .render_prometheus()
            .contains("headrace_outbox_items_retried_total{topic=\"t\"} 1")
    );
}

async fn retries_follow_the_backoff_then_dead_letter(engine: Engine) {
    let Some(db) = Database::fresh(engine).await else {
        return;
    };
    let store = store(&db, 30, true).await;
    let id = enqueue(&store, "t", "1").await;
    let worker =
        OutboxWorker::new(store.clone(), handler(|_| Outcome::retry("down")), config()).unwrap();
    for (attempt, delay) in [(1, 10), (2, 20)] {
        let report = worker.run_until_empty(None).await.unwrap();
        assert_eq!(report.retried, 1, "attempt {attempt}");
        let item = store.get(id).await.unwrap();
        assert_eq!(
            item.run_at,
            db.clock.now_for_tests() + Duration::seconds(delay)
        );
        assert_eq!(
            worker.run_until_empty(None).await.unwrap().processed,
            0,
            "not due before the backoff"
        );
        db.clock.advance(Duration::seconds(delay));
    }
    let report = worker.run_until_empty(None).await.unwrap();
    assert_eq!(report.failed, 1);
    let item = store.get(id).await.unwrap();
    assert_eq!(
        (item.status, item.attempts, item.last_error.as_deref()),
        (OutboxStatus::Failed, 3, Some("down"))
    );
}

async fn a_topic_retry_policy_overrides_the_store_policy(engine: Engine) {
    let Some(db) = Database::fresh(engine).await else {
        return;
    };
    let store = store(&db, 30, true).await;
    let id = enqueue(&store, "client.sync", "1").await;
    let mut config = config();
    config.retry_by_topic.insert(
        "client.sync".into(),
        RetryPolicy {
            max_attempts: 2,
            base_seconds: 1.0,
            factor: 1.0,
            jitter: 0.0,
            ..Default::default()
        },
    );
    let worker =
        OutboxWorker::new(store.clone(), handler(|_| Outcome::retry("down")), config).unwrap();
    worker.run_until_empty(None).await.unwrap();
    assert_eq!(
        store.get(id).await.unwrap().run_at,
        db.clock.now_for_tests() + Duration::seconds(1)
    );
    db.clock.advance(Duration::seconds(1));
    assert_eq!(
        worker.run_until_empty(None).await.unwrap().failed,
        1,
        "max_attempts 2 of the topic, not 3"
    );
}

async fn unknown_topics_are_dead_lettered_with_a_reason(engine: Engine) {
    let Some(db) = Database::fresh(engine).await else {
        return;
    };
    let store = store(&db, 30, true).await;
    let id = enqueue(&store, "nobody.listens", "1").await;
    let worker = OutboxWorker::new(
        store.clone(),
        handler(|item| Outcome::reject(format!("no handler for topic {:?}", item.topic))),
        config(),
    )
    .unwrap();
    assert_eq!(worker.run_until_empty(None).await.unwrap().failed, 1);
    let item = store.get(id).await.unwrap();
    assert!(item.last_error.unwrap().contains("nobody.listens"));
}

async fn stop_finishes_in_flight_items_and_releases_unstarted_ones(engine: Engine) {
    let Some(db) = Database::fresh(engine).await else {
        return;
    };
    let store = store(&db, 30, true).await;
    for n in 0..5 {
        enqueue(&store, "t", &n.to_string()).await;
    }
    let handled = Arc::new(Mutex::new(Vec::new()));
    let worker_slot: Arc<Mutex<Option<OutboxWorker>>> = Arc::default();
    let (seen, slot) = (handled.clone(), worker_slot.clone());
    let worker = OutboxWorker::new(
        store.clone(),
        handler(move |item| {
            seen.lock().unwrap().push(item.id);
            if seen.lock().unwrap().len() == 2 {
                slot.lock().unwrap().as_ref().unwrap().stop(); // stop while item 2 is in flight
            }
            Outcome::Completed
        }),
        config(),
    )
    .unwrap();
    *worker_slot.lock().unwrap() = Some(worker.clone());
    let report = worker.run().await.unwrap();
    assert_eq!((report.completed, report.released), (2, 3));
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (stats["completed"], stats["pending"], stats["processing"]),
        (2, 3, 0),
        "nothing lost"
    );
    let claimable = store.claim_batch("w2", 10, None).await.unwrap();
    assert!(
        claimable.iter().all(|i| i.attempts == 1),
        "released items did not spend an attempt"
    );
}

async fn leases_are_extended_while_a_handler_runs_long(engine: Engine) {
    let Some(db) = Database::fresh(engine).await else {
        return;
    };
    let store = store(&db, 1, false).await;
    let id = enqueue(&store, "t", "1").await;
    let worker = OutboxWorker::new(
        store.clone(),
        Arc::new(Slow(std::time::Duration::from_millis(1800))),
        WorkerConfig {
            reaper_interval: None,
            ..config()
        },
    )
    .unwrap();
    let report = worker.run_until_empty(None).await.unwrap();
    assert_eq!(
        report.completed, 1,
        "the 1 s lease was kept alive for a 1.8 s handler"
    );
    assert_eq!(store.get(id).await.unwrap().status, OutboxStatus::Completed);
}

/// A handler that blocks its thread, as a slow Python handler would.
struct Slow(std::time::Duration);

#[async_trait]
impl BatchHandler for Slow {
    async fn handle(&self, items: Vec<OutboxItem>, _stop: StopFlag) -> Vec<Outcome> {
        let pause = self.0;
        tokio::task::spawn_blocking(move || std::thread::sleep(pause))
            .await
            .unwrap();
        items.iter().map(|_| Outcome::Completed).collect()
    }
}

async fn the_in_worker_reaper_recovers_abandoned_items(engine: Engine) {
    let Some(db) = Database::fresh(engine).await else {
        return;
    };
    let store = store(&db, 1, false).await;
    let id = enqueue(&store, "t", "1").await;
    store.claim_batch("crashed-worker", 1, None).await.unwrap();
    let worker = OutboxWorker::new(
        store.clone(),
        handler(|_| Outcome::Completed),
        WorkerConfig {
            reaper_interval: Some(std::time::Duration::from_millis(200)),
            ..config()
        },
    )
    .unwrap();
    let runner = tokio::spawn({
        let worker = worker.clone();
        async move { worker.run().await }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.get(id).await.unwrap().status != OutboxStatus::Completed {
        assert!(
            std::time::Instant::now() < deadline,
            "the reaper never returned the item"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    worker.stop();
    let report = runner.await.unwrap().unwrap();
    assert_eq!((report.reaped, report.completed), (1, 1));
}

async fn an_idle_worker_wakes_on_enqueue(engine: Engine) {
    let Some(db) = Database::fresh(engine).await else {
        return;
    };
    let store = store(&db, 30, false).await;
    // Another store object (on PostgreSQL: another connection pool) enqueues, so only
    // LISTEN/NOTIFY can wake the worker there; SQLite wakes on enqueues through its own store.
    let producer = if engine == Engine::Postgres {
        self::store(&db, 30, false).await
    } else {
        store.clone()
    };
    let worker = OutboxWorker::new(
        store.clone(),
        handler(|_| Outcome::Completed),
        WorkerConfig {
            poll_interval: std::time::Duration::from_secs(60),
            ..config()
        },
    )
    .unwrap();
    let runner = tokio::spawn({
        let worker = worker.clone();
        async move { worker.run().await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await; // let it go idle
    let id = enqueue(&producer, "t", "1").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while store.get(id).await.unwrap().status != OutboxStatus::Completed {
        assert!(
            std::time::Instant::now() < deadline,
            "the idle worker did not wake (poll interval is 60 s)"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    worker.stop();
    runner.await.unwrap().unwrap();
}
