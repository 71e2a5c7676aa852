//! The one path every run takes — scheduled, manual or through the ingest callback (orb-worker's
//! `_execute_run`): record the run RUNNING, then produce entities lazily inside the run's error
//! handling, chunk them by exact size, send each chunk, and record COMPLETED with the entity
//! count or FAILED with the reason. A producer or sink that fails — or panics — fails the run;
//! it never takes the runner down.

use super::chunker::{Chunk, Chunker};
use super::metrics::RunMetrics;
use super::protobuf::ProtoChunker;
use super::run::{Run, RunSource, RunStatus};
use super::run_store::{RUN_LEASE, RunStore};
use super::sink::{Sink, classify_sink_error};
use super::source::{Batch, EntitySource};
use crate::error::{Error, Result};
use serde_json::{Map, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The log target (and Python logger) of operator-facing runner messages.
pub const LOG: &str = "headrace.runner";

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Starts the entity stream of one run; called once, after the run is recorded.
pub type Producer =
    Box<dyn FnOnce(RunContext) -> BoxFuture<'static, Result<Box<dyn EntitySource>>> + Send>;

/// What a producer is told about the run it produces for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunContext {
    pub run_id: String,
    pub policy_name: String,
    pub source: RunSource,
}

/// A backend's identity (`Metadata` in Python).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendMetadata {
    pub name: String,
    pub app_name: String,
    pub app_version: String,
    pub description: Option<String>,
}

/// The policy a run belongs to and the backend producing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunTarget {
    pub policy_name: String,
    pub backend: BackendMetadata,
}

impl RunTarget {
    /// The metadata recorded on the run and, with `run_id` and `chunk_index`, sent with each
    /// chunk: `policy_name`, `worker_backend`, `app_name`, `app_version`.
    pub fn run_metadata(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("policy_name".into(), Value::from(self.policy_name.clone()));
        m.insert(
            "worker_backend".into(),
            Value::from(self.backend.name.clone()),
        );
        m.insert(
            "app_name".into(),
            Value::from(self.backend.app_name.clone()),
        );
        m.insert(
            "app_version".into(),
            Value::from(self.backend.app_version.clone()),
        );
        m
    }
}

/// How a run ended: the recorded run and, when it failed, the error that failed it.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub run: Run,
    pub error: Option<Error>,
}

/// Something a caller may want to know about (the binding logs these to Python).
#[derive(Debug, Clone)]
pub enum RunEvent {
    /// A run finished (completed or failed).
    Finished(Run),
    /// A schedule tick found the policy still running and was skipped.
    TickSkipped { policy: String },
}

/// Receiver of [`RunEvent`]s.
pub type EventHook = Arc<dyn Fn(&RunEvent) + Send + Sync>;

/// Counts runs in flight so that shutdown can wait for them.
#[derive(Debug, Clone)]
pub struct Inflight {
    count: Arc<watch::Sender<usize>>,
}

impl Default for Inflight {
    fn default() -> Self {
        Inflight {
            count: Arc::new(watch::channel(0).0),
        }
    }
}

/// Held while a run is in flight.
#[derive(Debug)]
pub struct InflightGuard(Arc<watch::Sender<usize>>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

impl Inflight {
    /// Marks one more run in flight until the guard drops.
    pub fn enter(&self) -> InflightGuard {
        self.count.send_modify(|n| *n += 1);
        InflightGuard(self.count.clone())
    }

    /// Runs in flight now.
    pub fn count(&self) -> usize {
        *self.count.borrow()
    }

    /// Waits until no run is in flight, at most `timeout`; returns whether that happened.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let mut rx = self.count.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|n| *n == 0))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// Executes runs against one run store and one sink.
#[derive(Clone)]
pub struct RunExecutor {
    store: Arc<dyn RunStore>,
    sink: Arc<dyn Sink>,
    chunk_bytes: usize,
    inflight: Inflight,
    hook: Option<EventHook>,
    metrics: Arc<RunMetrics>,
    run_lease: Duration,
}

impl std::fmt::Debug for RunExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunExecutor")
            .field("store", &self.store)
            .field("sink", &self.sink)
            .field("chunk_bytes", &self.chunk_bytes)
            .finish()
    }
}

impl RunExecutor {
    /// An executor chunking at the smaller of `chunk_bytes` and the sink's own limit.
    pub fn new(store: Arc<dyn RunStore>, sink: Arc<dyn Sink>, chunk_bytes: usize) -> Result<Self> {
        let chunk_bytes = sink
            .max_chunk_bytes()
            .map_or(chunk_bytes, |m| m.min(chunk_bytes));
        // Validates the bound once, up front.
        Chunker::new(chunk_bytes, Map::new())?;
        Ok(RunExecutor {
            store,
            sink,
            chunk_bytes,
            inflight: Inflight::default(),
            hook: None,
            metrics: Arc::default(),
            run_lease: RUN_LEASE,
        })
    }

    /// Sets the receiver of run events.
    pub fn with_hook(mut self, hook: Option<EventHook>) -> Self {
        self.hook = hook;
        self
    }

    /// Sets how long a run's lease lasts (renewed every third of it while the run goes on;
    /// a run whose lease expired is reaped as FAILED by the policy's next run).
    pub fn with_run_lease(mut self, lease: Duration) -> Result<Self> {
        crate::validate::seconds("run_lease", lease.as_secs_f64(), false)?;
        self.run_lease = lease;
        Ok(self)
    }

    /// Finishes as FAILED the runs of `policy` whose process died (their lease expired).
    pub async fn reap_expired_runs(&self, policy: &str) -> Vec<Run> {
        let now = self.store.clock().now();
        match self.store.reap_expired_runs(policy, now).await {
            Ok(reaped) => {
                for run in &reaped {
                    tracing::warn!(target: LOG, "policy {policy:?}: run {} was left running by a process that stopped; recorded as failed", run.id);
                    self.emit(RunEvent::Finished(run.clone()));
                }
                reaped
            }
            Err(err) => {
                tracing::warn!(target: LOG, "policy {policy:?}: could not reap expired runs: {err}");
                Vec::new()
            }
        }
    }

    /// The effective chunk bound.
    pub fn chunk_bytes(&self) -> usize {
        self.chunk_bytes
    }

    /// The run store.
    pub fn store(&self) -> &Arc<dyn RunStore> {
        &self.store
    }

    /// The sink.
    pub fn sink(&self) -> &Arc<dyn Sink> {
        &self.sink
    }

    /// The in-flight counter shared by every run of this executor.
    pub fn inflight(&self) -> &Inflight {
        &self.inflight
    }

    /// Executions, outcomes and run time per policy.
    pub fn metrics(&self) -> &Arc<RunMetrics> {
        &self.metrics
    }

    pub(crate) fn emit(&self, event: RunEvent) {
        self.metrics.record(&event);
        if let Some(hook) = &self.hook {
            hook(&event);
        }
    }

    /// Runs `produce` as a run of `target` started by `source`. Fails only when the run cannot
    /// even be recorded; every later failure is a FAILED run in the outcome.
    pub async fn execute(
        &self,
        target: &RunTarget,
        source: RunSource,
        produce: Producer,
    ) -> Result<RunOutcome> {
        let inflight = self.inflight.enter();
        self.execute_counted(target, source, produce, inflight)
            .await
    }

    /// [`Self::execute`] for a run already counted in flight by `_inflight` (taken before
    /// the run's task was spawned, so that `stop()` never misses it).
    pub async fn execute_counted(
        &self,
        target: &RunTarget,
        source: RunSource,
        produce: Producer,
        _inflight: InflightGuard,
    ) -> Result<RunOutcome> {
        let metadata = target.run_metadata();
        self.reap_expired_runs(&target.policy_name).await;
        let run = self
            .store
            .create_run(&target.policy_name, source, metadata.clone())
            .await?;
        let (lease_store, lease_run, run_lease) =
            (self.store.clone(), run.id.clone(), self.run_lease);
        let renew = move || {
            let until =
                lease_store.clock().now() + chrono::Duration::from_std(run_lease).expect("fits");
            let (store, run_id) = (lease_store.clone(), lease_run.clone());
            async move { store.renew_run_lease(&run_id, until).await }
        };
        renew().await?;
        let context = RunContext {
            run_id: run.id.clone(),
            policy_name: target.policy_name.clone(),
            source,
        };
        let mut chunk_metadata = metadata.clone();
        chunk_metadata.insert("run_id".into(), Value::from(run.id.clone()));

        let sink = self.sink.clone();
        let chunk_bytes = self.chunk_bytes;
        let progress = Arc::new(Progress::default());
        let body_progress = progress.clone();
        // Spawned so that a panic in a producer or sink fails this run instead of unwinding
        // through the caller.
        let body = tokio::spawn(async move {
            deliver(
                produce,
                context,
                chunk_metadata,
                chunk_bytes,
                sink,
                &body_progress,
            )
            .await
        });
        let result = match keep_run_lease(body, renew, self.run_lease / 3).await {
            Ok(result) => result,
            Err(join) if join.is_panic() => Err(Error::Ingest(format!(
                "the run panicked: {}",
                panic_message(join.into_panic())
            ))),
            Err(join) => Err(Error::Ingest(format!("the run was cancelled: {join}"))),
        };
        // All or nothing: the sink releases the run's held chunks only when the run completed,
        // and discards them when it failed.
        let result = match result {
            Ok(()) => self
                .sink
                .finish_run(&run.id, true)
                .await
                .map_err(classify_sink_error),
            Err(error) => Err(error),
        };
        if result.is_err()
            && let Err(e) = self.sink.finish_run(&run.id, false).await
        {
            tracing::warn!(target: LOG, "run {}: discarding its held chunks failed: {e}", run.id);
        }
        let (entities, chunks) = progress.get();
        let mut finish_meta = Map::new();
        finish_meta.insert("chunk_count".into(), Value::from(chunks));
        let (status, reason, error) = match result {
            Ok(()) => (RunStatus::Completed, None, None),
            Err(error) => {
                let reason = error.to_string();
                let mut failure_meta = metadata.clone();
                failure_meta.insert("run_id".into(), Value::from(run.id.clone()));
                if let Err(e) = self.sink.record_failure(&error, &failure_meta).await {
                    tracing::warn!(target: LOG, "run {}: the sink's record_failure failed: {e}", run.id);
                }
                (RunStatus::Failed, Some(reason), Some(error))
            }
        };
        let run = self
            .store
            .finish_run(&run.id, status, reason, entities, finish_meta)
            .await?;
        match &error {
            None => tracing::info!(
                target: LOG,
                "policy {:?}: {} run {} completed with {} entities in {chunks} chunk(s)",
                run.policy_id,
                run.source,
                run.id,
                run.entity_count
            ),
            Some(e) => tracing::error!(
                target: LOG,
                "policy {:?}: {} run {} failed after {} entities: {e}",
                run.policy_id,
                run.source,
                run.id,
                run.entity_count
            ),
        }
        self.emit(RunEvent::Finished(run.clone()));
        Ok(RunOutcome { run, error })
    }

    /// Records a FAILED run of `target` with `reason` and no entity (the callback's `error=`),
    /// telling the sink through `record_failure`.
    pub async fn record_failed_run(
        &self,
        target: &RunTarget,
        source: RunSource,
        reason: String,
    ) -> Result<Run> {
        let _inflight = self.inflight.enter();
        let metadata = target.run_metadata();
        let run = self
            .store
            .create_run(&target.policy_name, source, metadata.clone())
            .await?;
        let mut failure_meta = metadata;
        failure_meta.insert("run_id".into(), Value::from(run.id.clone()));
        let error = Error::Ingest(reason.clone());
        if let Err(e) = self.sink.record_failure(&error, &failure_meta).await {
            tracing::warn!(target: LOG, "run {}: the sink's record_failure failed: {e}", run.id);
        }
        let mut finish_meta = Map::new();
        finish_meta.insert("chunk_count".into(), Value::from(0));
        let run = self
            .store
            .finish_run(&run.id, RunStatus::Failed, Some(reason), 0, finish_meta)
            .await?;
        tracing::error!(
            target: LOG,
            "policy {:?}: {} run {} failed: {}",
            run.policy_id,
            run.source,
            run.id,
            run.reason.as_deref().unwrap_or("")
        );
        self.emit(RunEvent::Finished(run.clone()));
        Ok(run)
    }
}

#[derive(Debug, Default)]
struct Progress {
    entities: std::sync::atomic::AtomicU64,
    chunks: std::sync::atomic::AtomicU64,
}

impl Progress {
    fn add(&self, entities: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.entities.fetch_add(entities as u64, Relaxed);
        self.chunks.fetch_add(1, Relaxed);
    }

    fn get(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.entities.load(Relaxed), self.chunks.load(Relaxed))
    }
}

/// Awaits `body`, renewing the run's lease every `every` until it ends (a failed renewal is
/// logged; the run goes on).
async fn keep_run_lease<T, F, Fut>(
    body: tokio::task::JoinHandle<T>,
    renew: F,
    every: Duration,
) -> std::result::Result<T, tokio::task::JoinError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    tokio::pin!(body);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            joined = &mut body => return joined,
            _ = ticks.tick() => {
                if let Err(err) = renew().await {
                    tracing::warn!(target: LOG, "renewing a run lease failed: {err}");
                }
            }
        }
    }
}

async fn deliver(
    produce: Producer,
    context: RunContext,
    chunk_metadata: Map<String, Value>,
    chunk_bytes: usize,
    sink: Arc<dyn Sink>,
    progress: &Progress,
) -> Result<()> {
    let send = |chunk: Chunk| {
        let sink = sink.clone();
        async move {
            let count = chunk.entity_count();
            sink.ingest(chunk).await.map_err(classify_sink_error)?;
            progress.add(count);
            Ok::<(), Error>(())
        }
    };
    let mut json: Option<Chunker> = None;
    let mut protobuf: Option<ProtoChunker> = None;
    let mut position = 0u64;
    let mut source = produce(context).await?;
    while let Some(batch) = source.next_batch().await? {
        match batch {
            Batch::Json(entities) => {
                if protobuf.is_some() {
                    return Err(mixed_kinds(position, "JSON", "protobuf messages"));
                }
                let chunker = match &mut json {
                    Some(chunker) => chunker,
                    None => json.insert(Chunker::new(chunk_bytes, chunk_metadata.clone())?),
                };
                for entity in entities {
                    position += 1;
                    if let Some(chunk) = chunker.push(&entity)? {
                        send(chunk).await?;
                    }
                }
            }
            Batch::Protobuf(entities) => {
                if json.is_some() {
                    return Err(mixed_kinds(position, "a protobuf message", "JSON"));
                }
                let chunker = match &mut protobuf {
                    Some(chunker) => chunker,
                    None => {
                        let envelope = sink.protobuf_envelope(&chunk_metadata).await?;
                        protobuf.insert(ProtoChunker::new(
                            chunk_bytes,
                            envelope,
                            chunk_metadata.clone(),
                        )?)
                    }
                };
                for entity in entities {
                    position += 1;
                    if let Some(chunk) = chunker.push(&entity)? {
                        send(Chunk::protobuf(chunk)).await?;
                    }
                }
            }
        }
    }
    if let Some(chunk) = json.as_mut().and_then(Chunker::finish) {
        send(chunk).await?;
    }
    if let Some(chunk) = protobuf.as_mut().and_then(ProtoChunker::finish) {
        send(Chunk::protobuf(chunk)).await?;
    }
    Ok(())
}

fn mixed_kinds(position: u64, this: &str, earlier: &str) -> Error {
    Error::IngestRejected(format!(
        "entity {position} is {this} but the run's earlier entities were {earlier}: a run's entities must all be JSON-serialisable values or all protobuf messages"
    ))
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// What a backend's `ingest_callback` drives: runs of one policy with `source = callback`,
/// valid from the moment the backend is constructed and from any thread.
#[derive(Debug, Clone)]
pub struct IngestHandle {
    executor: RunExecutor,
    target: Arc<RunTarget>,
    /// Set when its policy is deleted or its manager stopped: the handle records no more runs.
    closed: Arc<std::sync::atomic::AtomicBool>,
}

impl IngestHandle {
    /// A handle recording runs of `target` through `executor`.
    pub fn new(executor: RunExecutor, target: RunTarget) -> Self {
        IngestHandle {
            executor,
            target: Arc::new(target),
            closed: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }

    /// Stops the handle (and every clone of it): later calls fail with a `Config` error
    /// instead of recording runs for a policy that no longer runs.
    pub fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether [`IngestHandle::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn check_open(&self) -> Result<()> {
        if self.is_closed() {
            return Err(Error::config(format!(
                "policy {:?} was stopped (PolicyManager.stop or delete_policy): its \
                 ingest_callback records no more runs",
                self.target.policy_name
            )));
        }
        Ok(())
    }

    /// The policy and backend the handle serves.
    pub fn target(&self) -> &RunTarget {
        &self.target
    }

    /// Runs `produce` as a callback run. A run that failed is recorded FAILED and its error
    /// returned, mapped to the ingest hierarchy (`IngestRejected`, `IngestUnavailable`, or the
    /// base `Ingest` for anything unexpected).
    pub async fn ingest(&self, produce: Producer) -> Result<Run> {
        let outcome = self.ingest_outcome(produce).await?;
        match outcome.error {
            None => Ok(outcome.run),
            Some(error) => Err(match error {
                Error::IngestRejected(_) | Error::IngestUnavailable(_) | Error::Ingest(_) => error,
                other => Error::Ingest(other.to_string()),
            }),
        }
    }

    /// Runs `produce` as a callback run and returns how it ended (the `ingest_sink` protocol,
    /// which reports failures instead of raising them).
    pub async fn ingest_outcome(&self, produce: Producer) -> Result<RunOutcome> {
        self.check_open()?;
        self.executor
            .execute(&self.target, RunSource::Callback, produce)
            .await
    }

    /// Records a FAILED callback run with `reason` (the callback's `error=`).
    pub async fn fail(&self, reason: String) -> Result<Run> {
        self.check_open()?;
        self.executor
            .record_failed_run(&self.target, RunSource::Callback, reason)
            .await
    }
}
