//! The policy runner's core, driven by closure backends: the run path, chunking into sinks,
//! callbacks, the manager's scheduling rules, and the outbox sink on SQLite (and PostgreSQL when
//! configured).

mod common;

use _core::clock::ManualClock;
use _core::error::{Error, Result};
use _core::outbox::{self, OutboxConfig, OutboxStore};
use _core::runner::{
    BackendLoader, BackendMetadata, Chunk, EntitySource, IngestHandle, ManagerConfig,
    MemoryRunStore, NullSink, OutboxSink, PolicyBackend, PolicyManager, PolicySpec, Producer,
    ResolvedBackend, RunContext, RunEvent, RunExecutor, RunSource, RunStatus, RunStore, RunTarget,
    Sink, TickOutcome, ValueSource, parse_policies_yaml,
};
use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

// ---------------------------------------------------------------- fixtures

#[derive(Debug, Default)]
struct RecordingSink {
    chunks: Mutex<Vec<Chunk>>,
    failures: Mutex<Vec<(String, Map<String, Value>)>>,
    fail_with: Mutex<Option<Error>>,
}

impl RecordingSink {
    fn chunks(&self) -> Vec<Chunk> {
        self.chunks.lock().unwrap().clone()
    }
    fn entities(&self) -> Vec<Value> {
        self.chunks()
            .iter()
            .flat_map(|c| serde_json::from_str::<Vec<Value>>(c.entities_json()).unwrap())
            .collect()
    }
}

#[async_trait]
impl Sink for RecordingSink {
    async fn ingest(&self, chunk: Chunk) -> Result<()> {
        if let Some(e) = self.fail_with.lock().unwrap().clone() {
            return Err(e);
        }
        self.chunks.lock().unwrap().push(chunk);
        Ok(())
    }
    async fn record_failure(&self, error: &Error, metadata: &Map<String, Value>) -> Result<()> {
        self.failures
            .lock()
            .unwrap()
            .push((error.to_string(), metadata.clone()));
        Ok(())
    }
}

fn metadata() -> BackendMetadata {
    BackendMetadata {
        name: "devices".into(),
        app_name: "acme-sync".into(),
        app_version: "1.2.3".into(),
        description: None,
    }
}

fn target(policy: &str) -> RunTarget {
    RunTarget {
        policy_name: policy.into(),
        backend: metadata(),
    }
}

fn device(i: usize) -> Value {
    json!({"name": format!("device-{i}"), "site": {"name": "lab"}, "interfaces": [{"name": "eth0"}]})
}

/// A producer yielding `n` devices (the iterator is built lazily, inside the run).
fn devices(n: usize) -> Producer {
    Box::new(move |ctx: RunContext| {
        Box::pin(async move {
            let src = ValueSource::new((0..n).map(|i| Ok(device(i))), ctx.run_id);
            Ok(Box::new(src) as Box<dyn EntitySource>)
        })
    })
}

fn executor(sink: Arc<dyn Sink>, chunk_bytes: usize) -> (RunExecutor, Arc<MemoryRunStore>) {
    let store = Arc::new(MemoryRunStore::new(100).unwrap());
    (
        RunExecutor::new(store.clone(), sink, chunk_bytes).unwrap(),
        store,
    )
}

// ---------------------------------------------------------------- the run path

#[tokio::test]
async fn a_run_is_recorded_running_before_entities_are_produced_then_completed() {
    let sink = Arc::new(RecordingSink::default());
    let (exec, store) = executor(sink.clone(), 4096);
    let seen_running = Arc::new(Mutex::new(None));
    let probe = (store.clone(), seen_running.clone());
    let produce: Producer = Box::new(move |ctx: RunContext| {
        Box::pin(async move {
            let run = probe.0.get_run(&ctx.run_id).await.unwrap();
            *probe.1.lock().unwrap() = Some(run.status);
            let src = ValueSource::new((0..100).map(|i| Ok(device(i))), ctx.run_id);
            Ok(Box::new(src) as Box<dyn EntitySource>)
        })
    });
    let outcome = exec
        .execute(&target("p"), RunSource::Schedule, produce)
        .await
        .unwrap();
    assert_eq!(*seen_running.lock().unwrap(), Some(RunStatus::Running));
    let run = outcome.run;
    assert!(outcome.error.is_none());
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(run.entity_count, 100);
    assert_eq!(run.source, RunSource::Schedule);
    assert_eq!(run.metadata["worker_backend"], json!("devices"));
    let chunks = sink.chunks();
    assert!(chunks.len() > 1, "100 devices must not fit in 4 KiB");
    assert_eq!(run.metadata["chunk_count"], json!(chunks.len()));
    for (i, c) in chunks.iter().enumerate() {
        assert!(c.len() <= 4096);
        assert_eq!(c.metadata["run_id"], json!(run.id));
        assert_eq!(c.metadata["chunk_index"], json!(i));
        assert_eq!(c.metadata["policy_name"], json!("p"));
        assert_eq!(c.metadata["app_name"], json!("acme-sync"));
        assert_eq!(c.metadata["app_version"], json!("1.2.3"));
    }
    let entities = sink.entities();
    assert_eq!(entities.len(), 100);
    for (i, e) in entities.iter().enumerate() {
        assert_eq!(e["name"], json!(format!("device-{i}")));
        assert_eq!(e["metadata"]["run_id"], json!(run.id));
    }
    assert_eq!(store.runs("p").await.unwrap(), vec![run]);
}

#[tokio::test]
async fn a_producer_that_fails_before_yielding_is_a_failed_run() {
    let sink = Arc::new(RecordingSink::default());
    let (exec, _) = executor(sink.clone(), 4096);
    let produce: Producer =
        Box::new(|_| Box::pin(async { Err(Error::Ingest("backend exploded".into())) }));
    let outcome = exec
        .execute(&target("p"), RunSource::Manual, produce)
        .await
        .unwrap();
    assert_eq!(outcome.run.status, RunStatus::Failed);
    assert_eq!(outcome.run.reason.as_deref(), Some("backend exploded"));
    assert_eq!(outcome.run.entity_count, 0);
    let failures = sink.failures.lock().unwrap().clone();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].1["run_id"], json!(outcome.run.id));
}

#[tokio::test]
async fn a_broken_iterable_fails_the_run_after_the_chunks_already_sent() {
    let sink = Arc::new(RecordingSink::default());
    let (exec, _) = executor(sink.clone(), 1024);
    let produce: Producer = Box::new(|ctx: RunContext| {
        Box::pin(async move {
            let iter = (0..50).map(|i| {
                if i == 40 {
                    Err(Error::Ingest("iterator broke at 40".into()))
                } else {
                    Ok(device(i))
                }
            });
            Ok(Box::new(ValueSource::new(iter, ctx.run_id)) as Box<dyn EntitySource>)
        })
    });
    let outcome = exec
        .execute(&target("p"), RunSource::Schedule, produce)
        .await
        .unwrap();
    assert_eq!(outcome.run.status, RunStatus::Failed);
    assert!(outcome.run.reason.unwrap().contains("iterator broke at 40"));
    let delivered = sink.entities().len() as u64;
    assert!(delivered > 0 && delivered < 40, "{delivered}");
    assert_eq!(outcome.run.entity_count, delivered);
}

#[tokio::test]
async fn a_panicking_producer_fails_the_run_without_crashing_the_runner() {
    let sink = Arc::new(RecordingSink::default());
    let (exec, _) = executor(sink.clone(), 4096);
    let produce: Producer = Box::new(|_| Box::pin(async { panic!("kaboom in backend") }));
    let outcome = exec
        .execute(&target("p"), RunSource::Schedule, produce)
        .await
        .unwrap();
    assert_eq!(outcome.run.status, RunStatus::Failed);
    assert!(outcome.run.reason.unwrap().contains("kaboom in backend"));
    // The executor still works.
    let again = exec
        .execute(&target("p"), RunSource::Schedule, devices(3))
        .await
        .unwrap();
    assert_eq!(again.run.status, RunStatus::Completed);
}

#[tokio::test]
async fn an_oversized_entity_fails_the_run_with_ingest_rejected() {
    let sink = Arc::new(RecordingSink::default());
    let (exec, _) = executor(sink.clone(), 2048);
    let produce: Producer = Box::new(|ctx: RunContext| {
        Box::pin(async move {
            let iter = (0..5).map(|i| {
                Ok(if i == 3 {
                    json!({"blob": "z".repeat(5000)})
                } else {
                    device(i)
                })
            });
            Ok(Box::new(ValueSource::new(iter, ctx.run_id)) as Box<dyn EntitySource>)
        })
    });
    let outcome = exec
        .execute(&target("p"), RunSource::Schedule, produce)
        .await
        .unwrap();
    assert_eq!(outcome.run.status, RunStatus::Failed);
    assert_eq!(outcome.error.as_ref().unwrap().code(), "ingest_rejected");
    let reason = outcome.run.reason.unwrap();
    assert!(reason.contains("entity 3 "), "{reason}");
}

#[tokio::test]
async fn the_callback_maps_sink_failures_and_records_callback_runs() {
    let sink = Arc::new(RecordingSink::default());
    let (exec, store) = executor(sink.clone(), 4096);
    let handle = IngestHandle::new(exec, target("p"));

    let run = handle.ingest(devices(2)).await.unwrap();
    assert_eq!(
        (run.status, run.source, run.entity_count),
        (RunStatus::Completed, RunSource::Callback, 2)
    );

    for (raised, expected) in [
        (
            Error::StoreUnavailable("db down".into()),
            "ingest_unavailable",
        ),
        (
            Error::IngestRejected("bad entity".into()),
            "ingest_rejected",
        ),
        (Error::NotFound("weird".into()), "ingest_error"),
    ] {
        *sink.fail_with.lock().unwrap() = Some(raised);
        let err = handle.ingest(devices(2)).await.unwrap_err();
        assert_eq!(err.code(), expected);
    }
    *sink.fail_with.lock().unwrap() = None;

    let failed = handle
        .fail("upstream API returned 503".into())
        .await
        .unwrap();
    assert_eq!(failed.status, RunStatus::Failed);
    assert_eq!(failed.source, RunSource::Callback);
    assert_eq!(failed.reason.as_deref(), Some("upstream API returned 503"));
    let runs = store.runs("p").await.unwrap();
    assert_eq!(runs.len(), 5);
    assert_eq!(runs[0].id, failed.id, "newest first");
    assert_eq!(runs[4].id, run.id);
    assert!(
        sink.failures
            .lock()
            .unwrap()
            .iter()
            .any(|(e, _)| e.contains("503"))
    );
}

#[tokio::test]
async fn retention_keeps_the_newest_runs_per_policy() {
    let store = Arc::new(MemoryRunStore::new(3).unwrap());
    let sink = Arc::new(NullSink::new());
    let exec = RunExecutor::new(store.clone(), sink.clone(), 4096).unwrap();
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(
            exec.execute(&target("a"), RunSource::Manual, devices(1))
                .await
                .unwrap()
                .run
                .id,
        );
    }
    exec.execute(&target("b"), RunSource::Manual, devices(1))
        .await
        .unwrap();
    let kept: Vec<String> = store
        .runs("a")
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
    assert_eq!(store.policy_ids().await.unwrap(), vec!["a", "b"]);
    assert_eq!(sink.counts().1, 6);
    assert_eq!(MemoryRunStore::new(0).unwrap_err().code(), "config_error");
}

// ---------------------------------------------------------------- the manager

/// A backend whose runs wait for a permit (to hold a run in flight) and yield `n` devices.
struct GatedBackend {
    gate: Arc<Semaphore>,
    n: usize,
    produced: Arc<AtomicUsize>,
}

impl PolicyBackend for GatedBackend {
    fn produce(
        &self,
        ctx: RunContext,
    ) -> _core::runner::BoxFuture<'static, Result<Box<dyn EntitySource>>> {
        let gate = self.gate.clone();
        let n = self.n;
        let produced = self.produced.clone();
        Box::pin(async move {
            gate.acquire().await.unwrap().forget();
            produced.fetch_add(1, Ordering::SeqCst);
            Ok(
                Box::new(ValueSource::new((0..n).map(|i| Ok(device(i))), ctx.run_id))
                    as Box<dyn EntitySource>,
            )
        })
    }
}

#[derive(Default)]
struct TestLoader {
    gates: Mutex<HashMap<String, Arc<Semaphore>>>,
    produced: Arc<AtomicUsize>,
    constructed: Arc<AtomicUsize>,
}

impl TestLoader {
    fn gate(&self, policy: &str) -> Arc<Semaphore> {
        self.gates
            .lock()
            .unwrap()
            .entry(policy.into())
            .or_insert_with(|| Arc::new(Semaphore::new(0)))
            .clone()
    }
}

struct Resolved {
    meta: BackendMetadata,
    gate: Arc<Semaphore>,
    produced: Arc<AtomicUsize>,
    constructed: Arc<AtomicUsize>,
    fail_construct: bool,
    policy: String,
    handles: Arc<Mutex<HashMap<String, IngestHandle>>>,
}

#[async_trait]
impl ResolvedBackend for Resolved {
    fn metadata(&self) -> &BackendMetadata {
        &self.meta
    }
    async fn construct(self: Box<Self>, ingest: IngestHandle) -> Result<Arc<dyn PolicyBackend>> {
        if self.fail_construct {
            return Err(Error::config("__init__ raised TypeError"));
        }
        self.constructed.fetch_add(1, Ordering::SeqCst);
        self.handles
            .lock()
            .unwrap()
            .insert(self.policy.clone(), ingest);
        Ok(Arc::new(GatedBackend {
            gate: self.gate,
            n: 10,
            produced: self.produced,
        }))
    }
}

struct SharedLoader(Arc<TestLoader>, Arc<Mutex<HashMap<String, IngestHandle>>>);

#[async_trait]
impl BackendLoader for SharedLoader {
    async fn resolve(&self, spec: &PolicySpec) -> Result<Box<dyn ResolvedBackend>> {
        match spec.config.package.as_str() {
            "missing" => Err(Error::config(
                "cannot import module 'missing': No module named 'missing'",
            )),
            package => Ok(Box::new(Resolved {
                meta: metadata(),
                gate: self.0.gate(&spec.name),
                produced: self.0.produced.clone(),
                constructed: self.0.constructed.clone(),
                fail_construct: package == "broken_init",
                policy: spec.name.clone(),
                handles: self.1.clone(),
            })),
        }
    }
}

struct Harness {
    manager: PolicyManager,
    loader: Arc<TestLoader>,
    handles: Arc<Mutex<HashMap<String, IngestHandle>>>,
    sink: Arc<RecordingSink>,
    events: Arc<Mutex<Vec<String>>>,
}

fn harness(clock: Option<ManualClock>) -> Harness {
    let loader = Arc::new(TestLoader::default());
    let handles = Arc::new(Mutex::new(HashMap::new()));
    let sink = Arc::new(RecordingSink::default());
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev = events.clone();
    let mut config = ManagerConfig {
        chunk_bytes: 64 * 1024,
        hook: Some(Arc::new(move |e: &RunEvent| {
            ev.lock().unwrap().push(match e {
                RunEvent::Finished(run) => {
                    format!("finished {} {} {}", run.policy_id, run.source, run.status)
                }
                RunEvent::TickSkipped { policy } => format!("skipped {policy}"),
            })
        })),
        ..ManagerConfig::default()
    };
    if let Some(c) = clock {
        config.clock = Arc::new(c);
    }
    let manager = PolicyManager::new(
        Arc::new(MemoryRunStore::new(100).unwrap()),
        sink.clone(),
        Arc::new(SharedLoader(loader.clone(), handles.clone())),
        config,
    )
    .unwrap();
    Harness {
        manager,
        loader,
        handles,
        sink,
        events,
    }
}

fn specs(yaml: &str) -> Vec<PolicySpec> {
    parse_policies_yaml(yaml, &|_| None).unwrap()
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..500 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_without_schedule_runs_once_on_start() {
    let h = harness(None);
    let names = h
        .manager
        .start_policies(
            specs("policies:\n  once:\n    config: {package: m}\n"),
            true,
        )
        .await
        .unwrap();
    assert_eq!(names, vec!["once"]);
    h.loader.gate("once").add_permits(1);
    eventually("the run", || h.events.lock().unwrap().len() == 1).await;
    let runs = h.manager.runs("once").await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(
        (runs[0].source, runs[0].status, runs[0].entity_count),
        (RunSource::Schedule, RunStatus::Completed, 10)
    );
    assert!(!h.manager.is_running("once").unwrap());
    assert!(h.manager.stop(Duration::from_secs(1)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlapping_tick_is_skipped_and_reported_and_run_now_refuses() {
    let h = harness(None);
    h.manager
        .start_policies(
            specs("policies:\n  p:\n    config: {package: m, schedule: '0 0 1 1 *'}\n"),
            true,
        )
        .await
        .unwrap();
    assert_eq!(h.manager.tick("p").unwrap(), TickOutcome::Started);
    eventually("the run to be in flight", || h.manager.inflight() == 1).await;
    assert_eq!(h.manager.tick("p").unwrap(), TickOutcome::Skipped);
    assert_eq!(h.manager.tick("p").unwrap(), TickOutcome::Skipped);
    let err = h.manager.run_now("p").await.unwrap_err();
    assert_eq!(err.code(), "config_error");
    assert!(err.to_string().contains("already running"), "{err}");
    assert_eq!(
        h.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| *e == "skipped p")
            .count(),
        2
    );
    // The scheduler side keeps working while the backend blocks: callbacks still run.
    let handle = h.handles.lock().unwrap()["p"].clone();
    let cb = handle.ingest(devices(4)).await.unwrap();
    assert_eq!(cb.source, RunSource::Callback);
    h.loader.gate("p").add_permits(1);
    eventually("the scheduled run to finish", || h.manager.inflight() == 0).await;
    assert_eq!(
        h.loader.produced.load(Ordering::SeqCst),
        1,
        "only one scheduled run"
    );
    let runs = h.manager.runs("p").await.unwrap();
    assert_eq!(runs.len(), 2);
    // After it finished, run_now works and is recorded as manual.
    h.loader.gate("p").add_permits(1);
    let run = h.manager.run_now("p").await.unwrap();
    assert_eq!(
        (run.source, run.status),
        (RunSource::Manual, RunStatus::Completed)
    );
    assert_eq!(h.manager.runs("p").await.unwrap()[0].id, run.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_starting_one_policy_starts_none_of_the_request() {
    let h = harness(None);
    let yaml =
        "policies:\n  good:\n    config: {package: m}\n  bad:\n    config: {package: missing}\n";
    let err = h
        .manager
        .start_policies(specs(yaml), true)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "config_error");
    assert!(
        err.to_string().contains("\"bad\"") && err.to_string().contains("No module named"),
        "{err}"
    );
    assert!(h.manager.policy_names().is_empty());
    let yaml = "policies:\n  good:\n    config: {package: m}\n  bad:\n    config: {package: broken_init}\n";
    assert!(h.manager.start_policies(specs(yaml), true).await.is_err());
    assert!(h.manager.policy_names().is_empty());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        h.manager.inflight(),
        0,
        "nothing of a failed request may run"
    );
    assert!(h.manager.runs("good").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_names_delete_and_stop() {
    let h = harness(None);
    let yaml = "policies:\n  p:\n    config: {package: m, schedule: '0 0 1 1 *'}\n";
    h.manager.start_policies(specs(yaml), true).await.unwrap();
    let err = h
        .manager
        .start_policies(specs(yaml), true)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "config_error");
    assert!(err.to_string().contains("already running"));
    let mut twice = specs(yaml);
    twice.push(twice[0].clone());
    twice[0].name = "q".into();
    twice[1].name = "q".into();
    assert!(
        h.manager
            .start_policies(twice, true)
            .await
            .unwrap_err()
            .to_string()
            .contains("twice")
    );

    h.manager.delete_policy("p").await.unwrap();
    assert_eq!(
        h.manager.delete_policy("p").await.unwrap_err().code(),
        "not_found"
    );
    assert_eq!(
        h.manager.run_now("p").await.unwrap_err().code(),
        "not_found"
    );
    // The name is free again.
    h.manager.start_policies(specs(yaml), true).await.unwrap();

    // stop() waits for a blocked run up to its timeout, then reports it unfinished.
    assert_eq!(h.manager.tick("p").unwrap(), TickOutcome::Started);
    eventually("in flight", || h.manager.inflight() == 1).await;
    assert!(!h.manager.stop(Duration::from_millis(100)).await);
    assert_eq!(h.manager.tick("p").unwrap_err().code(), "config_error");
    h.loader.gate("p").add_permits(1);
    assert!(h.manager.stop(Duration::from_secs(5)).await);
    assert_eq!(
        h.manager.runs("p").await.unwrap()[0].status,
        RunStatus::Completed
    );
    assert!(h.sink.entities().len() >= 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_without_scheduling_then_run_now_each_once() {
    let h = harness(None);
    let yaml = "policies:\n  a:\n    config: {package: m, schedule: '* * * * *'}\n  b:\n    config: {package: m}\n";
    h.manager.start_policies(specs(yaml), false).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(h.manager.inflight(), 0, "no schedule was started");
    for name in ["a", "b"] {
        h.loader.gate(name).add_permits(1);
        assert_eq!(
            h.manager.run_now(name).await.unwrap().status,
            RunStatus::Completed
        );
    }
    assert_eq!(
        h.loader.constructed.load(Ordering::SeqCst),
        2,
        "each backend constructed once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_schedule_fires_at_its_next_minute() {
    // The clock shows 200 ms before a minute boundary: `* * * * *` fires once, soon.
    let clock = ManualClock::new(
        Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 59).unwrap() + chrono::Duration::milliseconds(800),
    );
    let h = harness(Some(clock));
    h.loader.gate("cron").add_permits(10);
    h.manager
        .start_policies(
            specs("policies:\n  cron:\n    config: {package: m, schedule: '* * * * *'}\n"),
            true,
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        h.manager.runs("cron").await.unwrap().is_empty(),
        "not before its time"
    );
    eventually("the cron run", || h.events.lock().unwrap().len() == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let runs = h.manager.runs("cron").await.unwrap();
    assert_eq!(runs.len(), 1, "exactly one fire for one boundary");
    assert_eq!(runs[0].source, RunSource::Schedule);
    assert!(h.manager.stop(Duration::from_secs(1)).await);
}

// ---------------------------------------------------------------- the outbox sink

async fn outbox_sink_writes_one_item_per_chunk(engine: common::Engine) {
    let Some(db) = common::Database::fresh(engine).await else {
        return;
    };
    let config = OutboxConfig {
        max_payload_bytes: 8 * 1024,
        ..OutboxConfig::default()
    };
    let store: Arc<dyn OutboxStore> = outbox::connect(&db.url, config, true).await.unwrap();
    let sink = Arc::new(OutboxSink::new(store.clone(), "headrace.entities").unwrap());
    let runs = Arc::new(MemoryRunStore::new(10).unwrap());
    // The sink's 8 KiB limit lowers the 3 MiB default.
    let exec = RunExecutor::new(runs, sink, 3 * 1024 * 1024).unwrap();
    assert_eq!(exec.chunk_bytes(), 8 * 1024);
    let outcome = exec
        .execute(&target("inv"), RunSource::Manual, devices(300))
        .await
        .unwrap();
    assert_eq!(
        outcome.run.status,
        RunStatus::Completed,
        "{:?}",
        outcome.error
    );
    let chunks = outcome.run.metadata["chunk_count"].as_u64().unwrap() as i64;
    assert!(chunks > 1);
    let items = store.claim_batch("w", 1000, None).await.unwrap();
    assert_eq!(items.len() as i64, chunks);
    let mut total = 0;
    for (i, item) in items.iter().enumerate() {
        assert_eq!(item.topic, "headrace.entities");
        assert_eq!(item.trace_id.as_deref(), Some(outcome.run.id.as_str()));
        assert_eq!(
            item.dedupe_key.as_deref(),
            Some(format!("{}:{i}", outcome.run.id).as_str())
        );
        let payload: Value = serde_json::from_str(&item.payload).unwrap();
        // Compact size (PostgreSQL's jsonb re-renders the text with spaces).
        assert!(payload.to_string().len() <= 8 * 1024);
        assert_eq!(payload["metadata"]["chunk_index"], json!(i));
        assert_eq!(payload["metadata"]["worker_backend"], json!("devices"));
        total += payload["entities"].as_array().unwrap().len();
    }
    assert_eq!(total, 300);
}

conformance!(outbox_sink_writes_one_item_per_chunk);
