//! The policy manager: loads backends for configured policies, schedules them on tokio, and
//! guarantees that one policy never runs twice at once (a schedule tick that finds it running is
//! skipped and reported). Backend code is reached through [`BackendLoader`], which the Python
//! binding implements with real `Backend` classes and Rust tests with closures.

use super::config::{PolicySpec, parse_policies, parse_policies_yaml, process_env};
use super::executor::{
    BackendMetadata, BoxFuture, EventHook, IngestHandle, LOG, Producer, RunContext, RunEvent,
    RunExecutor, RunTarget,
};
use super::run::{Run, RunSource};
use super::run_store::RunStore;
use super::schedule::Schedule;
use super::sink::Sink;
use super::source::EntitySource;
use crate::clock::{SharedClock, SystemClock};
use crate::error::{Error, Result};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::task::JoinHandle;

/// A constructed backend, able to start the entity stream of a run.
pub trait PolicyBackend: Send + Sync {
    /// Starts producing the entities of one run (called inside the run's error handling, after
    /// the run is recorded).
    fn produce(&self, context: RunContext) -> BoxFuture<'static, Result<Box<dyn EntitySource>>>;
}

/// Finds a policy's backend and reads its metadata, without constructing it yet.
#[async_trait]
pub trait BackendLoader: Send + Sync {
    /// Resolves the backend `spec` names (a `ConfigError` naming the module and the cause when
    /// it cannot).
    async fn resolve(&self, spec: &PolicySpec) -> Result<Box<dyn ResolvedBackend>>;
}

/// A backend whose metadata is known and that can now be constructed once, with its ingest
/// handle already in hand.
#[async_trait]
pub trait ResolvedBackend: Send {
    /// The backend's identity.
    fn metadata(&self) -> &BackendMetadata;

    /// Constructs the backend; `ingest` is valid from this moment on.
    async fn construct(self: Box<Self>, ingest: IngestHandle) -> Result<Arc<dyn PolicyBackend>>;
}

/// What a schedule tick did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickOutcome {
    /// A run started.
    Started,
    /// The policy was still running: nothing started.
    Skipped,
}

/// Settings of a [`PolicyManager`].
#[derive(Clone)]
pub struct ManagerConfig {
    /// Largest encoded chunk payload (the sink's own limit may lower it).
    pub chunk_bytes: usize,
    /// Source of "now" for schedules.
    pub clock: SharedClock,
    /// Receiver of run events (finished runs, skipped ticks).
    pub hook: Option<EventHook>,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            chunk_bytes: super::chunker::DEFAULT_CHUNK_BYTES,
            clock: Arc::new(SystemClock),
            hook: None,
        }
    }
}

struct PolicyEntry {
    spec: PolicySpec,
    schedule: Schedule,
    target: RunTarget,
    backend: Arc<dyn PolicyBackend>,
    handle: IngestHandle,
    running: Arc<AtomicBool>,
    scheduler: Mutex<Option<JoinHandle<()>>>,
}

impl PolicyEntry {
    fn abort_scheduler(&self) {
        if let Some(task) = self.scheduler.lock().expect("scheduler poisoned").take() {
            task.abort();
        }
    }
}

struct RunningGuard(Arc<AtomicBool>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

fn try_begin(flag: &Arc<AtomicBool>) -> Option<RunningGuard> {
    flag.compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
        .ok()
        .map(|_| RunningGuard(flag.clone()))
}

struct Inner {
    executor: RunExecutor,
    loader: Arc<dyn BackendLoader>,
    clock: SharedClock,
    policies: Mutex<HashMap<String, Arc<PolicyEntry>>>,
    start_lock: tokio::sync::Mutex<()>,
    stopped: AtomicBool,
}

/// Runs configured policies.
#[derive(Clone)]
pub struct PolicyManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PolicyManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyManager")
            .field("policies", &self.policy_names())
            .finish()
    }
}

fn with_policy(name: &str, error: Error) -> Error {
    let prefix = |m: String| format!("policy {name:?}: {m}");
    match error {
        Error::Config(m) => Error::Config(prefix(m)),
        Error::Store(m) => Error::Store(prefix(m)),
        Error::StoreUnavailable(m) => Error::StoreUnavailable(prefix(m)),
        Error::NotFound(m) => Error::NotFound(prefix(m)),
        Error::Ingest(m) => Error::Ingest(prefix(m)),
        Error::IngestRejected(m) => Error::IngestRejected(prefix(m)),
        Error::IngestUnavailable(m) => Error::IngestUnavailable(prefix(m)),
        other => other,
    }
}

impl PolicyManager {
    /// A manager recording runs in `store` and sending chunks to `sink`.
    pub fn new(
        store: Arc<dyn RunStore>,
        sink: Arc<dyn Sink>,
        loader: Arc<dyn BackendLoader>,
        config: ManagerConfig,
    ) -> Result<Self> {
        let executor = RunExecutor::new(store, sink, config.chunk_bytes)?.with_hook(config.hook);
        Ok(PolicyManager {
            inner: Arc::new(Inner {
                executor,
                loader,
                clock: config.clock,
                policies: Mutex::new(HashMap::new()),
                start_lock: tokio::sync::Mutex::new(()),
                stopped: AtomicBool::new(false),
            }),
        })
    }

    /// The executor every run goes through.
    pub fn executor(&self) -> &RunExecutor {
        &self.inner.executor
    }

    /// Parses a YAML policies document (`${VAR}` from the process environment) and starts it.
    pub async fn start_policies_yaml(&self, text: &str, schedule: bool) -> Result<Vec<String>> {
        let specs = parse_policies_yaml(text, &process_env)?;
        self.start_policies(specs, schedule).await
    }

    /// Validates a parsed policies document and starts it.
    pub async fn start_policies_value(
        &self,
        document: Value,
        schedule: bool,
    ) -> Result<Vec<String>> {
        let specs = parse_policies(document, &process_env)?;
        self.start_policies(specs, schedule).await
    }

    /// Loads and constructs every policy's backend, then — only when all of them succeeded —
    /// registers them and (when `schedule`) starts their schedules. Returns their names.
    pub async fn start_policies(
        &self,
        specs: Vec<PolicySpec>,
        schedule: bool,
    ) -> Result<Vec<String>> {
        self.check_running()?;
        let _serial = self.inner.start_lock.lock().await;
        let mut seen = HashSet::new();
        {
            let current = self.inner.policies.lock().expect("policies poisoned");
            for spec in &specs {
                if !seen.insert(spec.name.clone()) {
                    return Err(Error::config(format!(
                        "policy {:?} is defined twice in this request",
                        spec.name
                    )));
                }
                if current.contains_key(&spec.name) {
                    return Err(Error::config(format!(
                        "policy {:?} is already running: delete it first",
                        spec.name
                    )));
                }
            }
        }
        let mut prepared = Vec::with_capacity(specs.len());
        for spec in specs {
            let name = spec.name.clone();
            let entry = self
                .prepare(spec)
                .await
                .map_err(|e| with_policy(&name, e))?;
            prepared.push(entry);
        }
        let names: Vec<String> = prepared.iter().map(|e| e.spec.name.clone()).collect();
        {
            let mut current = self.inner.policies.lock().expect("policies poisoned");
            // Checked under the lock stop() collects the entries under, so a stop either sees
            // these entries (and closes their ingest handles) or refuses them here.
            self.check_running()?;
            for entry in &prepared {
                current.insert(entry.spec.name.clone(), entry.clone());
            }
        }
        if schedule {
            for entry in &prepared {
                if matches!(entry.schedule, Schedule::Once) {
                    // Started here, not in a task, so that the run is in flight (and counted)
                    // by the time start_policies returns.
                    tick(&self.inner, &entry.spec.name)?;
                    continue;
                }
                let task = tokio::spawn(schedule_loop(
                    Arc::downgrade(&self.inner),
                    entry.spec.name.clone(),
                    entry.schedule.clone(),
                ));
                *entry.scheduler.lock().expect("scheduler poisoned") = Some(task);
            }
        }
        tracing::info!(
            target: LOG,
            "started policies {names:?} ({})",
            if schedule { "scheduled" } else { "not scheduled" }
        );
        Ok(names)
    }

    async fn prepare(&self, spec: PolicySpec) -> Result<Arc<PolicyEntry>> {
        let schedule = spec.schedule()?;
        let resolved = self.inner.loader.resolve(&spec).await?;
        let target = RunTarget {
            policy_name: spec.name.clone(),
            backend: resolved.metadata().clone(),
        };
        let handle = IngestHandle::new(self.inner.executor.clone(), target.clone());
        let backend = resolved.construct(handle.clone()).await?;
        Ok(Arc::new(PolicyEntry {
            spec,
            schedule,
            target,
            backend,
            handle,
            running: Arc::new(AtomicBool::new(false)),
            scheduler: Mutex::new(None),
        }))
    }

    fn check_running(&self) -> Result<()> {
        if self.inner.stopped.load(Ordering::SeqCst) {
            return Err(Error::config("the policy manager is stopped"));
        }
        Ok(())
    }

    fn entry(&self, name: &str) -> Result<Arc<PolicyEntry>> {
        self.inner
            .policies
            .lock()
            .expect("policies poisoned")
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("no policy named {name:?} is running")))
    }

    /// Names of the running policies, sorted.
    pub fn policy_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .inner
            .policies
            .lock()
            .expect("policies poisoned")
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// The spec a running policy was started with.
    pub fn policy(&self, name: &str) -> Result<PolicySpec> {
        Ok(self.entry(name)?.spec.clone())
    }

    /// The ingest handle of a running policy (what its backend's callback drives).
    pub fn ingest_handle(&self, name: &str) -> Result<IngestHandle> {
        Ok(self.entry(name)?.handle.clone())
    }

    /// Whether a scheduled or manual run of `name` is in flight.
    pub fn is_running(&self, name: &str) -> Result<bool> {
        Ok(self.entry(name)?.running.load(Ordering::SeqCst))
    }

    /// Stops scheduling `name` and forgets it; a run in flight finishes and is recorded.
    pub async fn delete_policy(&self, name: &str) -> Result<()> {
        let entry = self
            .inner
            .policies
            .lock()
            .expect("policies poisoned")
            .remove(name)
            .ok_or_else(|| Error::NotFound(format!("no policy named {name:?} is running")))?;
        entry.abort_scheduler();
        entry.handle.close();
        tracing::info!(target: LOG, "policy {name:?} deleted");
        Ok(())
    }

    /// What a schedule fire does: starts a run of `name` in the background, or skips (and
    /// reports) when the policy is still running.
    pub fn tick(&self, name: &str) -> Result<TickOutcome> {
        self.check_running()?;
        tick(&self.inner, name)
    }

    /// Runs `name` now (source `manual`) and returns the finished run, failed or not. Fails when
    /// the policy is already running: one policy never runs twice at once.
    pub async fn run_now(&self, name: &str) -> Result<Run> {
        self.check_running()?;
        let entry = self.entry(name)?;
        let Some(guard) = try_begin(&entry.running) else {
            return Err(Error::config(format!(
                "policy {name:?} is already running: one policy never runs twice at once"
            )));
        };
        let outcome = self
            .inner
            .executor
            .execute(&entry.target, RunSource::Manual, producer(&entry.backend))
            .await;
        drop(guard);
        Ok(outcome?.run)
    }

    /// The recorded runs of `name` (running or deleted policies alike), newest first.
    pub async fn runs(&self, name: &str) -> Result<Vec<Run>> {
        self.inner.executor.store().runs(name).await
    }

    /// Runs in flight (scheduled, manual and callback).
    pub fn inflight(&self) -> usize {
        self.inner.executor.inflight().count()
    }

    /// Waits until no run is in flight, at most `timeout`; returns whether that happened.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        self.inner.executor.inflight().wait_idle(timeout).await
    }

    /// Stops every schedule, refuses new scheduled and manual runs, and waits up to `timeout`
    /// for the runs in flight. Returns whether they all finished in time.
    pub async fn stop(&self, timeout: Duration) -> bool {
        self.inner.stopped.store(true, Ordering::SeqCst);
        let entries: Vec<Arc<PolicyEntry>> = self
            .inner
            .policies
            .lock()
            .expect("policies poisoned")
            .values()
            .cloned()
            .collect();
        for entry in &entries {
            entry.abort_scheduler();
            entry.handle.close();
        }
        let idle = self.wait_idle(timeout).await;
        if let Err(e) = self.inner.executor.store().flush().await {
            tracing::error!(target: LOG, "the run store could not be flushed: {e}");
        }
        if !idle {
            tracing::warn!(
                target: LOG,
                "policy manager stopped with {} run(s) still in flight after {timeout:?}",
                self.inflight()
            );
        }
        idle
    }

    /// Whether [`PolicyManager::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.inner.stopped.load(Ordering::SeqCst)
    }
}

fn producer(backend: &Arc<dyn PolicyBackend>) -> Producer {
    let backend = backend.clone();
    Box::new(move |context| backend.produce(context))
}

fn tick(inner: &Arc<Inner>, name: &str) -> Result<TickOutcome> {
    let entry = inner
        .policies
        .lock()
        .expect("policies poisoned")
        .get(name)
        .cloned()
        .ok_or_else(|| Error::NotFound(format!("no policy named {name:?} is running")))?;
    let Some(guard) = try_begin(&entry.running) else {
        tracing::warn!(
            target: LOG,
            "policy {name:?}: the previous run is still in progress; skipping this schedule tick"
        );
        inner.executor.emit(RunEvent::TickSkipped {
            policy: name.to_string(),
        });
        return Ok(TickOutcome::Skipped);
    };
    let executor = inner.executor.clone();
    // Counted before the task starts so that stop() never misses it.
    let inflight = executor.inflight().enter();
    tokio::spawn(async move {
        let _guard = guard;
        if let Err(e) = executor
            .execute_counted(
                &entry.target,
                RunSource::Schedule,
                producer(&entry.backend),
                inflight,
            )
            .await
        {
            tracing::error!(target: LOG, "policy {:?}: could not record a run: {e}", entry.spec.name);
        }
    });
    Ok(TickOutcome::Started)
}

async fn schedule_loop(inner: Weak<Inner>, name: String, schedule: Schedule) {
    let clock = match inner.upgrade() {
        Some(i) => i.clock.clone(),
        None => return,
    };
    if matches!(schedule, Schedule::Once) {
        if let Some(inner) = inner.upgrade() {
            let _ = tick(&inner, &name);
        }
        return;
    }
    let mut last: Option<DateTime<Utc>> = None;
    loop {
        let now = clock.now();
        let from = last.map_or(now, |l| l.max(now));
        let Some(next) = schedule.next_after(from) else {
            tracing::info!(target: LOG, "policy {name:?}: its schedule has no further fire time");
            return;
        };
        let wait = (next - now).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
        last = Some(next);
        let Some(inner) = inner.upgrade() else { return };
        if inner.stopped.load(Ordering::SeqCst) {
            return;
        }
        if let Err(e) = tick(&inner, &name) {
            tracing::info!(target: LOG, "policy {name:?}: schedule ended: {e}");
            return;
        }
    }
}
