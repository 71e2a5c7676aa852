//! PostgreSQL connections are kept at hand between queries (src/db/shelf.rs): a store (outbox or
//! state) that queries one statement after another works on one connection instead of growing
//! its pool.

mod common;

use _core::db::connect_pg;
use _core::db::shelf::ConnectionShelf;
use _core::outbox::postgres::SkipLockedClaimOutboxStore;
use _core::outbox::{ClaimFilter, NewItem, OutboxConfig, OutboxStore};
use _core::state::postgres::PostgresStateStore;
use _core::state::{Invocation, StateStore};
use common::{Database, Engine};
use std::time::Duration;

async fn backend_pid(shelf: &ConnectionShelf) -> i32 {
    let mut conn = shelf.checkout().await.unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    conn.park();
    pid
}

async fn shelf() -> Option<ConnectionShelf> {
    let url = common::pg_admin_url()?;
    Some(ConnectionShelf::new(connect_pg(&url, 8).await.unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_one_after_another_run_on_one_connection() {
    let Some(shelf) = shelf().await else {
        eprintln!("skipped: HEADRACE_TEST_PG_URL is not set");
        return;
    };
    let first = backend_pid(&shelf).await;
    for _ in 0..50 {
        assert_eq!(backend_pid(&shelf).await, first);
    }
    assert_eq!(shelf.pool().size(), 1, "the pool opened more connections");
    assert_eq!(shelf.parked(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_queries_get_connections_of_their_own() {
    let Some(shelf) = shelf().await else {
        return;
    };
    let mut a = shelf.checkout().await.unwrap();
    let mut b = shelf.checkout().await.unwrap();
    let pid_a: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *a)
        .await
        .unwrap();
    let pid_b: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *b)
        .await
        .unwrap();
    assert_ne!(pid_a, pid_b);
    a.park();
    b.park();
    assert_eq!(shelf.parked(), 2);
    // Both are used again before the pool is asked for a third.
    let pids = [backend_pid(&shelf).await, backend_pid(&shelf).await];
    assert!(pids.iter().all(|pid| *pid == pid_a || *pid == pid_b));
    assert_eq!(shelf.pool().size(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_query_failed_or_was_abandoned_is_not_parked() {
    let Some(shelf) = shelf().await else {
        return;
    };
    {
        let mut conn = shelf.checkout().await.unwrap();
        let failed = sqlx::query("SELECT 1 / 0").execute(&mut *conn).await;
        assert!(failed.is_err());
        // Dropped without park(): sqlx's own release tests it.
    }
    assert_eq!(shelf.parked(), 0);
    {
        let mut conn = shelf.checkout().await.unwrap();
        let mut tx = conn.begin().await.unwrap();
        sqlx::query("CREATE TEMP TABLE left_open (x int)")
            .execute(&mut *tx)
            .await
            .unwrap();
        // A transaction dropped half-way: never parked, rolled back by sqlx.
    }
    assert_eq!(shelf.parked(), 0);
    let mut conn = shelf.checkout().await.unwrap();
    let left_over: bool = sqlx::query_scalar("SELECT to_regclass('pg_temp.left_open') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert!(
        !left_over,
        "a later query saw the abandoned transaction's table"
    );
    conn.park();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_gives_parked_connections_back_without_waiting_for_them() {
    let Some(shelf) = shelf().await else {
        return;
    };
    let held = [
        shelf.checkout().await.unwrap(),
        shelf.checkout().await.unwrap(),
    ];
    for conn in held {
        conn.park();
    }
    assert_eq!(shelf.parked(), 2);
    tokio::time::timeout(Duration::from_secs(5), shelf.close())
        .await
        .expect("close() waited for the parked connections");
    assert!(shelf.pool().is_closed());
    assert_eq!(shelf.parked(), 0);
    assert!(
        shelf.checkout().await.is_err(),
        "a closed shelf handed out a connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_and_acknowledge_loop_keeps_to_one_connection() {
    let Some(db) = Database::fresh(Engine::Postgres).await else {
        return;
    };
    // Migrate with one store; loop with another that does not migrate, so every connection of
    // its pool is one the loop opened.
    let migrator = SkipLockedClaimOutboxStore::connect(&db.url, OutboxConfig::default(), true)
        .await
        .unwrap();
    migrator.close().await;
    let store = SkipLockedClaimOutboxStore::connect(&db.url, OutboxConfig::default(), false)
        .await
        .unwrap();
    let items = (0..200)
        .map(|i| NewItem::new("loop", format!("{{\"i\": {i}}}")))
        .collect();
    store.enqueue_many(items).await.unwrap();
    let filter = ClaimFilter::default();
    let mut batch = store.claim("w", 10, &filter).await.unwrap();
    while !batch.is_empty() {
        let ids: Vec<i64> = batch.iter().map(|item| item.id).collect();
        let (acknowledged, next) = store
            .complete_and_claim(&ids, "w", 10, &filter)
            .await
            .unwrap();
        acknowledged.unwrap();
        batch = next;
    }
    assert_eq!(store.stats().await.unwrap()["completed"], 200);
    // Before the shelf, every query's connection went back through a spawned ping, so the
    // next query found none idle and the pool grew towards its 8.
    assert_eq!(
        store.pool().size(),
        1,
        "the claim loop opened extra connections"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_store_writing_and_reading_in_turn_keeps_to_one_connection() {
    let Some(db) = Database::fresh(Engine::Postgres).await else {
        return;
    };
    PostgresStateStore::connect(&db.url, true)
        .await
        .unwrap()
        .close()
        .await;
    let store = PostgresStateStore::connect(&db.url, false).await.unwrap();
    for i in 0..100 {
        let invocation = Invocation::new("loop", format!("{{\"i\": {i}}}"), chrono::Utc::now());
        let id = invocation.invocation_id.clone();
        store.upsert_invocation(invocation).await.unwrap();
        assert_eq!(store.get_invocation(&id).await.unwrap().invocation_id, id);
        assert!(store.get_history(&id).await.unwrap().is_empty());
    }
    assert_eq!(
        store
            .get_invocations_by_task("loop", 1000)
            .await
            .unwrap()
            .len(),
        100
    );
    // Before the shelf, a read right after a write found the write's connection still on its
    // way back to the pool (a spawned ping) and opened another.
    assert_eq!(
        store.pool().size(),
        1,
        "the state store opened extra connections"
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_the_pool_stays_free_for_callers_that_use_the_pool_itself() {
    let Some(shelf) = shelf().await else {
        return;
    };
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(shelf.checkout().await.unwrap());
    }
    for conn in held {
        conn.park();
    }
    assert_eq!(shelf.parked(), 4);
    let direct = tokio::time::timeout(Duration::from_secs(5), shelf.pool().acquire()).await;
    assert!(
        direct.is_ok_and(|conn| conn.is_ok()),
        "the pool had no connection left"
    );
}

/// Python drops stores outside any Tokio runtime; parked connections must not need one then.
#[test]
fn a_shelf_dropped_outside_a_runtime_closes_its_parked_connections() {
    let Some(url) = common::pg_admin_url() else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let shelf = runtime.block_on(async {
        let shelf = ConnectionShelf::new(connect_pg(&url, 8).await.unwrap());
        backend_pid(&shelf).await;
        shelf
    });
    assert_eq!(shelf.parked(), 1);
    drop(shelf); // panicked ("requires a Tokio context") before Drop detached them
    drop(runtime);
}
