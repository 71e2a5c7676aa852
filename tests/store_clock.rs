//! Every time a store stamps or compares is read from the store's clock (issue #8): the state
//! stores' `updated_at`, history entries, and the runner's run leases (taken and reaped), on
//! SQLite and PostgreSQL, with a `ManualClock` far from the wall clock.

mod common;

use _core::runner::{
    BackendMetadata, NullSink, Producer, RunContext, RunExecutor, RunSource, RunStatus, RunStore,
    RunTarget, StateRunStore, ValueSource,
};
use _core::state::{self, Invocation, InvocationStatus, ValueKind, WriteBehind, WriteBehindConfig};
use chrono::{DateTime, Duration, Utc};
use common::{Database, Engine, epoch};
use std::sync::{Arc, Mutex};

conformance!(
    state_writes_are_stamped_by_the_store_clock,
    run_leases_are_taken_and_reaped_on_the_store_clock,
);

async fn state(db: &Database) -> Arc<WriteBehind> {
    let config = WriteBehindConfig {
        clock: db.shared_clock(),
        ..Default::default()
    };
    Arc::new(state::connect(&db.url, config).await.unwrap())
}

/// The stored `updated_at` of an invocation, read past the store.
async fn stored_updated_at(db: &Database, invocation_id: &str) -> DateTime<Utc> {
    match db.engine {
        Engine::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            let at = sqlx::query_scalar(
                "SELECT updated_at FROM headrace_invocations WHERE invocation_id = $1",
            )
            .bind(invocation_id)
            .fetch_one(&pool)
            .await
            .unwrap();
            pool.close().await;
            at
        }
        _ => {
            let path = db.url.strip_prefix("sqlite://").unwrap();
            let conn = rusqlite::Connection::open(path).unwrap();
            let micros: i64 = conn
                .query_row(
                    "SELECT updated_at FROM headrace_invocations WHERE invocation_id = ?1",
                    [invocation_id],
                    |row| row.get(0),
                )
                .unwrap();
            DateTime::from_timestamp_micros(micros).unwrap()
        }
    }
}

async fn state_writes_are_stamped_by_the_store_clock(engine: Engine) {
    let Some(db) = Database::fresh(engine).await else {
        return;
    };
    let wb = state(&db).await;
    let inv = Invocation::new("task", "{}", wb.clock().now());
    let id = inv.invocation_id.clone();
    wb.upsert_invocation(inv).await.unwrap();
    db.clock.advance(Duration::seconds(90));
    let entry = wb
        .add_history(&id, Some(InvocationStatus::Pending), None)
        .await
        .unwrap();
    wb.wait_for_all().await.unwrap();
    let later = epoch() + Duration::seconds(90);
    assert_eq!(entry.timestamp, later.fixed_offset());
    let stored = wb.get_history(&id).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].timestamp, later.fixed_offset());
    assert_eq!(
        stored_updated_at(&db, &id).await,
        later,
        "updated_at comes from the store's clock, not the wall clock"
    );
}

fn target() -> RunTarget {
    RunTarget {
        policy_name: "inventory".into(),
        backend: BackendMetadata {
            name: "devices".into(),
            app_name: "acme".into(),
            app_version: "1.0".into(),
            description: None,
        },
    }
}

async fn run_leases_are_taken_and_reaped_on_the_store_clock(engine: Engine) {
    let Some(db) = Database::fresh(engine).await else {
        return;
    };
    let wb = state(&db).await;
    let store: Arc<dyn RunStore> = Arc::new(StateRunStore::new(wb.clone(), 100).unwrap());
    let executor = RunExecutor::new(store.clone(), Arc::new(NullSink::new()), 1 << 20)
        .unwrap()
        .with_run_lease(std::time::Duration::from_secs(30))
        .unwrap();

    // The lease a run takes is counted from the store's clock.
    let lease_seen = Arc::new(Mutex::new(None));
    let (probe_state, probe_lease) = (wb.clone(), lease_seen.clone());
    let produce: Producer = Box::new(move |ctx: RunContext| {
        Box::pin(async move {
            let lease = probe_state
                .get_workflow_value(
                    "policy:inventory",
                    ValueKind::Data,
                    &format!("run-lease:{}", ctx.run_id),
                )
                .await
                .unwrap();
            *probe_lease.lock().unwrap() = lease;
            Ok(Box::new(ValueSource::new(
                std::iter::empty::<_core::error::Result<serde_json::Value>>(),
                ctx.run_id,
            )) as Box<dyn _core::runner::EntitySource>)
        })
    });
    let outcome = executor
        .execute(&target(), RunSource::Manual, produce)
        .await
        .unwrap();
    assert_eq!(outcome.run.status, RunStatus::Completed, "{outcome:?}");
    let until =
        (epoch() + Duration::seconds(30)).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    assert_eq!(
        lease_seen.lock().unwrap().clone(),
        Some(serde_json::Value::from(until).to_string())
    );

    // A run left running by a dead process is reaped once the store's clock passes its lease.
    let dead = store
        .create_run("inventory", RunSource::Schedule, Default::default())
        .await
        .unwrap();
    store
        .renew_run_lease(&dead.id, epoch() + Duration::seconds(5))
        .await
        .unwrap();
    assert!(executor.reap_expired_runs("inventory").await.is_empty());
    db.clock.advance(Duration::seconds(6));
    let reaped = executor.reap_expired_runs("inventory").await;
    assert_eq!(
        reaped.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        vec![dead.id.as_str()],
        "the wall clock is years before the lease; only the store's clock has passed it"
    );
    assert_eq!(
        store.get_run(&dead.id).await.unwrap().status,
        RunStatus::Failed
    );
}
