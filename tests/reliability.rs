//! Regression tests of the hostile-input and fault defects (issue #9) at the core level, on
//! SQLite and PostgreSQL: one validation for both databases, durations that cannot overflow,
//! lease renewal from claim to acknowledgement, the handler timeout, and runs left `running`
//! by a killed process.

mod common;

use _core::outbox::{self, NewItem, OutboxConfig, OutboxStatus, OutboxStore, RetryPolicy};
use _core::runner::{RunSource, RunStatus, RunStore, StateRunStore};
use _core::state::{self, Invocation, WriteBehindConfig};
use _core::worker::{BatchHandler, OutboxWorker, Outcome, StopFlag, WorkerConfig};
use async_trait::async_trait;
use chrono::{Duration, Utc};
use common::{Database, Engine};
use serde_json::Map;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

conformance!(
    both_databases_refuse_the_same_bad_items_and_store_nothing,
    huge_durations_are_config_errors_not_panics,
    errors_holding_nul_bytes_are_stored_cleaned,
    prefetched_batches_keep_their_leases_under_a_short_lease,
    a_hung_handler_is_given_up_after_its_timeout_and_its_late_ack_is_refused,
    a_stop_does_not_wait_for_ever_on_a_hung_handler,
    a_run_left_running_by_a_dead_process_is_reaped_as_failed,
    state_writes_with_nul_bytes_are_refused_before_queueing,
);

async fn store(db: &Database, lease: Duration) -> Arc<dyn OutboxStore> {
    let config = OutboxConfig {
        lease,
        ..Default::default()
    };
    outbox::connect(&db.url, config, true).await.unwrap()
}

async fn both_databases_refuse_the_same_bad_items_and_store_nothing(engine: Engine) {
    let Some(db) = Database::fresh(engine).await else {
        return;
    };
    let store = store(&db, Duration::seconds(30)).await;
    let item = |f: &dyn Fn(&mut NewItem)| {
        let mut item = NewItem::new("t", "{}");
        f(&mut item);
        item
    };
    let cases: Vec<(&str, NewItem)> = vec![
        ("topic", item(&|i| i.topic = "a\0b".into())),
        ("topic", item(&|i| i.topic = "  ".into())),
        ("dedupe_key", item(&|i| i.dedupe_key = Some(String::new()))),
        ("dedupe_key", item(&|i| i.dedupe_key = Some("k\0".into()))),
        (
            "dedupe_key",
            item(&|i| i.dedupe_key = Some("k".repeat(1 << 20))),
        ),
        ("trace_id", item(&|i| i.trace_id = Some("t\0".into()))),
        ("NUL", item(&|i| i.payload = r#"{"a":"x\u0000y"}"#.into())),
        (
            "delay_seconds",
            item(&|i| i.delay = Duration::days(365 * 1000)),
        ),
        (
            "run_at",
            item(&|i| i.run_at = Some(Utc::now() + Duration::days(365 * 9000))),
        ),
    ];
    for (named, bad) in cases {
        let err = store.enqueue(bad).await.unwrap_err();
        assert_eq!(err.code(), "config_error", "{named}: {err}");
        assert!(err.to_string().contains(named), "{named}: {err}");
    }
    // A batch with one bad item stores none of them.
    let err = store
        .enqueue_many(vec![
            NewItem::new("t", "1"),
            item(&|i| i.topic = "\0".into()),
        ])
        .await
        .unwrap_err();
    assert_eq!(err.code(), "config_error");
    assert_eq!(store.stats().await.unwrap().values().sum::<i64>(), 0);
    // An escaped backslash followed by u0000 is ordinary text and accepted.
    store
        .enqueue(NewItem::new("t", r#"{"a":"\\u0000"}"#))
        .await
        .unwrap();
}

async fn huge_durations_are_config_errors_not_panics(engine: Engine) {
    let Some(db) = Database::fresh(engine).await else {
        return;
    };
    let store = store(&db, Duration::seconds(30)).await;
    let id = store.enqueue(NewItem::new("t", "1")).await.unwrap();
    store.claim_batch("w", 1, None).await.unwrap();
    let huge = Duration::seconds(1_000_000_000_000);
    for err in [
        store.extend_lease(id, "w", Some(huge)).await.unwrap_err(),
        store
            .purge(huge, &[OutboxStatus::Completed])
            .await
            .unwrap_err(),
        store
            .mark_retry(id, "w", Some(Utc::now() + Duration::days(365 * 9000)), "x")
            .await
            .unwrap_err(),
    ] {
        assert_eq!(err.code(), "config_error", "{err}");
    }
    // The longest accepted cut-offs clamp instead of overflowing.
    let century = Duration::days(36_500);
    store.reap_stale(century).await.unwrap();
    store
        .purge(century, &[OutboxStatus::Completed])
        .await
        .unwrap();
    assert_eq!(
        store.get(id).await.unwrap().status,
        OutboxStatus::Processing
    );
    let err = outbox::connect(
        &db.url,
        OutboxConfig {
            retry: RetryPolicy {
                max_seconds: 1e300,
                ..Default::default()
            },
            ..Default::default()
        },
        false,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("max_seconds"), "{err}");
}

async fn errors_holding_nul_bytes_are_stored_cleaned(engine: Engine) {
    let Some(db) = Database::fresh(engine).await else {
        return;
    };
    let store = store(&db, Duration::seconds(30)).await;
    let a = store.enqueue(NewItem::new("t", "1")).await.unwrap();
    let b = store.enqueue(NewItem::new("t", "2")).await.unwrap();
    store.claim_batch("w", 2, None).await.unwrap();
    store.mark_retry(a, "w", None, "bad\0byte").await.unwrap();
    store
        .mark_failed(b, "w", &"x".repeat(1 << 20))
        .await
        .unwrap();
    assert_eq!(
        store.get(a).await.unwrap().last_error.as_deref(),
        Some("bad\u{FFFD}byte")
    );
    let stored = store.get(b).await.unwrap().last_error.unwrap();
    assert!(stored.len() <= 64 * 1024 && stored.ends_with("(truncated)"));
}

/// Completes each item after `delay`.
struct Slow(std::time::Duration, Arc<AtomicUsize>);

#[async_trait]
impl BatchHandler for Slow {
    async fn handle(&self, items: Vec<_core::outbox::OutboxItem>, stop: StopFlag) -> Vec<Outcome> {
        let mut out = Vec::new();
        for _ in &items {
            if stop.is_set() {
                out.push(Outcome::NotStarted);
                continue;
            }
            tokio::time::sleep(self.0).await;
            self.1.fetch_add(1, Ordering::SeqCst);
            out.push(Outcome::Completed);
        }
        out
    }
}

async fn prefetched_batches_keep_their_leases_under_a_short_lease(engine: Engine) {
    let Some(db) = Database::fresh(engine).await else {
        return;
    };
    // Batches of 5 × 150 ms take 750 ms, longer than the 600 ms lease: the batch claimed ahead
    // waits that long before its handler starts, and must not lose its leases meanwhile.
    let store = store(&db, Duration::milliseconds(600)).await;
    let items: Vec<NewItem> = (0..20).map(|i| NewItem::new("t", i.to_string())).collect();
    store.enqueue_many(items).await.unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let handled = Arc::new(Slow(std::time::Duration::from_millis(150), runs.clone()));
    let worker = OutboxWorker::new(
        store.clone(),
        handled,
        WorkerConfig {
            batch_size: 5,
            reaper_interval: Some(std::time::Duration::from_millis(100)),
            poll_interval: std::time::Duration::from_millis(50),
            ..WorkerConfig::new("w")
        },
    )
    .unwrap();
    let report = worker.run_until_empty(None).await.unwrap();
    assert_eq!((report.completed, report.reaped), (20, 0), "{report:?}");
    assert_eq!(
        runs.load(Ordering::SeqCst),
        20,
        "every item ran exactly once"
    );
}

/// Hangs on the first item it sees (until `release`), completes the others.
struct HangsOnce {
    hung: AtomicUsize,
    release: tokio::sync::Notify,
}

#[async_trait]
impl BatchHandler for HangsOnce {
    async fn handle(&self, items: Vec<_core::outbox::OutboxItem>, _stop: StopFlag) -> Vec<Outcome> {
        if self.hung.fetch_add(1, Ordering::SeqCst) == 0 {
            self.release.notified().await;
        }
        vec![Outcome::Completed; items.len()]
    }
}

async fn a_hung_handler_is_given_up_after_its_timeout_and_its_late_ack_is_refused(engine: Engine) {
    let Some(db) = Database::fresh(engine).await else {
        return;
    };
    let store = store(&db, Duration::milliseconds(400)).await;
    let id = store.enqueue(NewItem::new("t", "1")).await.unwrap();
    let handler = Arc::new(HangsOnce {
        hung: AtomicUsize::new(0),
        release: tokio::sync::Notify::new(),
    });
    let worker = OutboxWorker::new(
        store.clone(),
        handler.clone(),
        WorkerConfig {
            batch_size: 1,
            handler_timeout: Some(std::time::Duration::from_millis(300)),
            reaper_interval: None,
            ..WorkerConfig::new("hung")
        },
    )
    .unwrap();
    let started = std::time::Instant::now();
    let report = worker.run_until_empty(None).await.unwrap();
    assert_eq!(report.abandoned, 1, "{report:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    // The lease lapses (no longer renewed); another worker takes the item and completes it.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    store.reap_stale(Duration::seconds(600)).await.unwrap();
    let other =
        OutboxWorker::new(store.clone(), handler.clone(), WorkerConfig::new("other")).unwrap();
    assert_eq!(other.run_until_empty(None).await.unwrap().completed, 1);
    // The hung handler returns late: its acknowledgement is refused, the item stays completed
    // by the other worker.
    handler.release.notify_one();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let item = store.get(id).await.unwrap();
    assert_eq!(item.status, OutboxStatus::Completed);
    let err = store.mark_success(id, "hung").await.unwrap_err();
    assert_eq!(err.code(), "lease_lost");
}

async fn a_stop_does_not_wait_for_ever_on_a_hung_handler(engine: Engine) {
    let Some(db) = Database::fresh(engine).await else {
        return;
    };
    let store = store(&db, Duration::seconds(30)).await;
    store.enqueue(NewItem::new("t", "1")).await.unwrap();
    let handler = Arc::new(HangsOnce {
        hung: AtomicUsize::new(0),
        release: tokio::sync::Notify::new(),
    });
    let worker = OutboxWorker::new(
        store.clone(),
        handler,
        WorkerConfig {
            stop_grace: std::time::Duration::from_millis(200),
            ..WorkerConfig::new("w")
        },
    )
    .unwrap();
    let started = std::time::Instant::now();
    let report = worker
        .run_until_empty(Some(std::time::Duration::from_millis(300)))
        .await
        .unwrap();
    assert_eq!(report.abandoned, 1, "{report:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "returned after {:?}",
        started.elapsed()
    );
}

async fn a_run_left_running_by_a_dead_process_is_reaped_as_failed(engine: Engine) {
    let Some(db) = Database::fresh(engine).await else {
        return;
    };
    let open = || async {
        let state = Arc::new(
            state::connect(&db.url, WriteBehindConfig::default())
                .await
                .unwrap(),
        );
        StateRunStore::new(state, 100).unwrap()
    };
    // A process starts a run, renews its lease once, then dies (the store is dropped).
    let dead = open().await;
    let run = dead
        .create_run("inventory", RunSource::Schedule, Map::new())
        .await
        .unwrap();
    dead.renew_run_lease(&run.id, Utc::now() + Duration::seconds(5))
        .await
        .unwrap();
    dead.flush().await.unwrap();
    drop(dead);
    let alive = open().await;
    assert!(
        alive
            .reap_expired_runs("inventory", Utc::now())
            .await
            .unwrap()
            .is_empty(),
        "a live lease is left alone"
    );
    let reaped = alive
        .reap_expired_runs("inventory", Utc::now() + Duration::seconds(6))
        .await
        .unwrap();
    assert_eq!(reaped.len(), 1);
    let stored = alive.get_run(&run.id).await.unwrap();
    assert_eq!(stored.status, RunStatus::Failed);
    assert!(
        stored
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("lease expired")),
        "{stored:?}"
    );
    // Reaping twice changes nothing.
    assert!(
        alive
            .reap_expired_runs("inventory", Utc::now() + Duration::seconds(60))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn state_writes_with_nul_bytes_are_refused_before_queueing(engine: Engine) {
    let Some(db) = Database::fresh(engine).await else {
        return;
    };
    let state = state::connect(&db.url, WriteBehindConfig::default())
        .await
        .unwrap();
    let good = Invocation::new("task", "{}", Utc::now());
    let mut bad = Invocation::new("task", "{}", Utc::now());
    bad.invocation_id = "inv\0x".into();
    let err = state.upsert_invocation(bad).await.unwrap_err();
    assert_eq!(err.code(), "config_error");
    assert!(err.to_string().contains("NUL"), "{err}");
    let mut long = Invocation::new("task", "{}", Utc::now());
    long.task_id = "t".repeat(1 << 20);
    assert_eq!(
        state.upsert_invocation(long).await.unwrap_err().code(),
        "config_error"
    );
    // The valid write beside them is stored.
    state.upsert_invocation(good.clone()).await.unwrap();
    state.wait_for_all().await.unwrap();
    assert_eq!(
        state
            .get_invocation(&good.invocation_id)
            .await
            .unwrap()
            .task_id,
        "task"
    );
}
