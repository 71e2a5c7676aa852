//! The run store contract, on memory and on the state backend (memory://, SQLite, PostgreSQL):
//! runs newest first, retention per policy, finishing rules, and durability across reopening.

mod common;

use _core::runner::StateRunStore;
use _core::runner::{MemoryRunStore, RunSource, RunStatus, RunStore};
use _core::state::{self, WriteBehindConfig};
use serde_json::{Map, Value, json};
use std::sync::Arc;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Memory,
    StateMemory,
    StateSqlite,
    StatePostgres,
}

struct Fixture {
    url: Option<String>,
    _db: Option<common::Database>,
}

async fn fixture(kind: Kind) -> Option<Fixture> {
    match kind {
        Kind::Memory => Some(Fixture {
            url: None,
            _db: None,
        }),
        Kind::StateMemory => Some(Fixture {
            url: Some("memory://".into()),
            _db: None,
        }),
        Kind::StateSqlite => {
            let db = common::Database::fresh(common::Engine::Sqlite).await?;
            Some(Fixture {
                url: Some(db.url.clone()),
                _db: Some(db),
            })
        }
        Kind::StatePostgres => {
            let db = common::Database::fresh(common::Engine::Postgres).await?;
            Some(Fixture {
                url: Some(db.url.clone()),
                _db: Some(db),
            })
        }
    }
}

async fn open(f: &Fixture, max_runs: usize) -> Arc<dyn RunStore> {
    match &f.url {
        None => Arc::new(MemoryRunStore::new(max_runs).unwrap()),
        Some(url) => {
            let wb = state::connect(url, WriteBehindConfig::default())
                .await
                .unwrap();
            Arc::new(StateRunStore::new(Arc::new(wb), max_runs).unwrap())
        }
    }
}

fn meta() -> Map<String, Value> {
    json!({"worker_backend": "devices", "app_name": "a"})
        .as_object()
        .unwrap()
        .clone()
}

async fn lifecycle(kind: Kind) {
    let Some(f) = fixture(kind).await else { return };
    let store = open(&f, 100).await;
    let run = store
        .create_run("inv", RunSource::Schedule, meta())
        .await
        .unwrap();
    assert_eq!(
        (run.status, run.source, run.entity_count),
        (RunStatus::Running, RunSource::Schedule, 0)
    );
    assert_eq!(store.get_run(&run.id).await.unwrap(), run);
    let mut extra = Map::new();
    extra.insert("chunk_count".into(), json!(3));
    let done = store
        .finish_run(&run.id, RunStatus::Completed, None, 42, extra)
        .await
        .unwrap();
    assert_eq!((done.status, done.entity_count), (RunStatus::Completed, 42));
    assert_eq!(done.metadata["chunk_count"], json!(3));
    assert_eq!(done.metadata["worker_backend"], json!("devices"));
    assert!(done.updated_at >= done.created_at);
    assert_eq!(store.get_run(&run.id).await.unwrap(), done);
    let err = store
        .finish_run(&run.id, RunStatus::Failed, Some("x".into()), 0, Map::new())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "invalid_status_transition");
    assert_eq!(
        store.get_run("no-such-run").await.unwrap_err().code(),
        "not_found"
    );
    let failed = store
        .create_run("inv", RunSource::Callback, meta())
        .await
        .unwrap();
    let failed = store
        .finish_run(
            &failed.id,
            RunStatus::Failed,
            Some("boom".into()),
            1,
            Map::new(),
        )
        .await
        .unwrap();
    assert_eq!(failed.reason.as_deref(), Some("boom"));
    let runs = store.runs("inv").await.unwrap();
    assert_eq!(runs, vec![failed.clone(), done.clone()]);
    store
        .create_run("other", RunSource::Manual, meta())
        .await
        .unwrap();
    assert_eq!(store.policy_ids().await.unwrap(), vec!["inv", "other"]);
    store.flush().await.unwrap();
    // Durable: a new handle on the same database sees the same runs.
    if matches!(kind, Kind::StateSqlite | Kind::StatePostgres) {
        let reopened = open(&f, 100).await;
        assert_eq!(reopened.runs("inv").await.unwrap(), vec![failed, done]);
        assert_eq!(reopened.policy_ids().await.unwrap(), vec!["inv", "other"]);
    }
}

async fn retention(kind: Kind) {
    let Some(f) = fixture(kind).await else { return };
    let store = open(&f, 3).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let run = store
            .create_run("p", RunSource::Manual, meta())
            .await
            .unwrap();
        store
            .finish_run(&run.id, RunStatus::Completed, None, 1, Map::new())
            .await
            .unwrap();
        ids.push(run.id);
    }
    let kept: Vec<String> = store
        .runs("p")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(kept, vec![ids[4].clone(), ids[3].clone(), ids[2].clone()]);
    assert_eq!(
        store.get_run(&ids[0]).await.unwrap_err().code(),
        "not_found"
    );
    store.flush().await.unwrap();
    if matches!(kind, Kind::StateSqlite | Kind::StatePostgres) {
        let reopened = open(&f, 3).await;
        assert_eq!(reopened.runs("p").await.unwrap().len(), 3);
    }
}

macro_rules! each_store {
    ($($case:ident),*) => {
        $(
            mod $case {
                use super::*;
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn memory() { super::$case(Kind::Memory).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn state_memory() { super::$case(Kind::StateMemory).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn state_sqlite() { super::$case(Kind::StateSqlite).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn state_postgres() { super::$case(Kind::StatePostgres).await }
            }
        )*
    };
}

each_store!(lifecycle, retention);
