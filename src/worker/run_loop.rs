//! The claim → handle → acknowledge loop.

use super::{
    BatchHandler, Outcome, Settled, SettledItem, StopFlag, WorkerConfig, WorkerMetrics,
    WorkerReport,
};
use crate::error::{Error, Result};
use crate::outbox::{ClaimFilter, OutboxItem, OutboxStatus, OutboxStore, RetryPolicy};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// Runs handlers over an outbox store. Cheap to clone; clones share the same run.
#[derive(Clone)]
pub struct OutboxWorker {
    shared: Arc<Shared>,
}

struct Shared {
    store: Arc<dyn OutboxStore>,
    claim_filter: ClaimFilter,
    handler: Arc<dyn BatchHandler>,
    config: WorkerConfig,
    metrics: Arc<WorkerMetrics>,
    stop: StopFlag,
    stopping: Notify,
}

impl std::fmt::Debug for OutboxWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxWorker")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl OutboxWorker {
    /// A worker over `store` dispatching to `handler`.
    pub fn new(
        store: Arc<dyn OutboxStore>,
        handler: Arc<dyn BatchHandler>,
        config: WorkerConfig,
    ) -> Result<Self> {
        config.validate()?;
        Ok(OutboxWorker {
            shared: Arc::new(Shared {
                store,
                claim_filter: ClaimFilter {
                    topics: config.topics.clone(),
                    exclude_topics: config.exclude_topics.clone(),
                    due_by: None,
                },
                handler,
                config,
                metrics: Arc::new(WorkerMetrics::default()),
                stop: StopFlag::default(),
                stopping: Notify::new(),
            }),
        })
    }

    /// This worker's settings.
    pub fn config(&self) -> &WorkerConfig {
        &self.shared.config
    }

    /// This worker's metrics.
    pub fn metrics(&self) -> Arc<WorkerMetrics> {
        self.shared.metrics.clone()
    }

    /// Asks the worker to stop: in-flight items finish, claimed-but-unstarted ones are released.
    pub fn stop(&self) {
        self.shared.stop.set();
        self.shared.stopping.notify_waiters();
    }

    /// Whether [`OutboxWorker::stop`] was called.
    pub fn is_stopping(&self) -> bool {
        self.shared.stop.is_set()
    }

    /// Processes items until [`OutboxWorker::stop`]; store failures are logged and retried.
    pub async fn run(&self) -> Result<WorkerReport> {
        self.run_lanes(false).await
    }

    /// Processes items until none is due (or `timeout` passes, which stops gracefully).
    pub async fn run_until_empty(&self, timeout: Option<Duration>) -> Result<WorkerReport> {
        match timeout {
            None => self.run_lanes(true).await,
            Some(limit) => {
                let run = self.run_lanes(true);
                tokio::pin!(run);
                tokio::select! {
                    report = &mut run => report,
                    _ = tokio::time::sleep(limit) => {
                        self.stop();
                        run.await
                    }
                }
            }
        }
    }

    async fn run_lanes(&self, until_empty: bool) -> Result<WorkerReport> {
        let mut lanes = JoinSet::new();
        for _ in 0..self.shared.config.concurrency {
            lanes.spawn(lane(self.shared.clone(), until_empty));
        }
        let reaped = Arc::new(AtomicU64::new(0));
        let reaper = self.shared.config.reaper_interval.map(|every| {
            tokio::spawn(reap_periodically(
                self.shared.clone(),
                every,
                reaped.clone(),
            ))
        });
        let mut report = WorkerReport::default();
        let mut first_error = None;
        while let Some(joined) = lanes.join_next().await {
            match joined
                .map_err(|e| Error::Store(format!("a worker lane crashed: {e}")))
                .and_then(|r| r)
            {
                Ok(lane_report) => report.add(&lane_report),
                Err(err) => {
                    self.stop();
                    first_error.get_or_insert(err);
                }
            }
        }
        if let Some(reaper) = reaper {
            reaper.abort();
            let _ = reaper.await;
        }
        report.reaped = reaped.load(Ordering::SeqCst);
        match first_error {
            Some(err) => Err(err),
            None => Ok(report),
        }
    }
}

/// Claims one batch and records the claim in the metrics.
async fn claim(shared: Arc<Shared>) -> Result<Vec<OutboxItem>> {
    let config = &shared.config;
    let started = Instant::now();
    let items = shared
        .store
        .claim(&config.worker_id, config.batch_size, &shared.claim_filter)
        .await?;
    let topics: Vec<&str> = items.iter().map(|i| i.topic.as_str()).collect();
    shared.metrics.record_claim(started.elapsed(), &topics);
    Ok(items)
}

/// One lane: claim → handle → acknowledge, claiming the next batch while handlers run.
async fn lane(shared: Arc<Shared>, until_empty: bool) -> Result<WorkerReport> {
    let config = &shared.config;
    let work = shared.store.work_signal().await?;
    let mut report = WorkerReport::default();
    let mut prefetched: Option<tokio::task::JoinHandle<Result<Vec<OutboxItem>>>> = None;
    let outcome = loop {
        if shared.stop.is_set() {
            break Ok(());
        }
        let work_arrived = work.notified();
        let stopping = shared.stopping.notified();
        tokio::pin!(work_arrived, stopping);
        work_arrived.as_mut().enable();
        stopping.as_mut().enable();
        let was_prefetched = prefetched.is_some();
        let claimed = match prefetched.take() {
            Some(handle) => handle
                .await
                .unwrap_or_else(|e| Err(Error::Store(format!("claim task failed: {e}")))),
            None => claim(shared.clone()).await,
        };
        let items = match claimed {
            Ok(items) => items,
            Err(err) if until_empty => break Err(err),
            Err(err) => {
                tracing::warn!(target: "headrace.worker", worker = %config.worker_id, %err, "claim failed; retrying after the poll interval");
                tokio::select! { _ = &mut stopping => {}, _ = tokio::time::sleep(config.poll_interval) => {} }
                continue;
            }
        };
        if items.is_empty() {
            if was_prefetched {
                continue; // claimed before the last batch settled: look again before idling
            }
            if until_empty {
                break Ok(());
            }
            tokio::select! {
                _ = &mut work_arrived => {}
                _ = &mut stopping => {}
                _ = tokio::time::sleep(config.poll_interval) => {}
            }
            continue;
        }
        if !shared.stop.is_set() {
            prefetched = Some(tokio::spawn(claim(shared.clone())));
        }
        let span =
            tracing::info_span!("outbox.batch", worker = %config.worker_id, items = items.len());
        match tracing::Instrument::instrument(process_batch(&shared, items), span).await {
            Ok(batch) => report.add(&batch),
            Err(err) if until_empty => break Err(err),
            Err(err) => {
                tracing::warn!(target: "headrace.worker", worker = %config.worker_id, %err, "acknowledging a batch failed; its leases will expire and the reaper will return the items");
            }
        }
    };
    if let Some(handle) = prefetched
        && let Ok(Ok(items)) = handle.await
    {
        let ids: Vec<i64> = items.iter().map(|i| i.id).collect();
        // Claimed ahead and never handed to a handler: give it back. Not counted as released
        // in the report, which counts items whose handling the stop interrupted.
        if let Err(err) = shared.store.release(&ids, &config.worker_id).await {
            tracing::warn!(target: "headrace.worker", %err, "could not release a prefetched batch; the reaper will return it");
        }
    }
    outcome.map(|()| report)
}

async fn reap_periodically(shared: Arc<Shared>, every: Duration, reaped: Arc<AtomicU64>) {
    let mut ticks = tokio::time::interval(every);
    loop {
        ticks.tick().await;
        if shared.stop.is_set() {
            return;
        }
        match shared
            .store
            .reap_stale(shared.config.reaper_stale_after)
            .await
        {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(target: "headrace.worker", reaped = n, "reaper returned items with expired leases");
                reaped.fetch_add(n, Ordering::SeqCst);
            }
            Err(err) => {
                tracing::warn!(target: "headrace.worker", %err, "reaper failed; trying again next interval")
            }
        }
    }
}

/// Extends the leases of `ids` every half lease until aborted.
fn keep_leases(shared: &Arc<Shared>, ids: Vec<i64>) -> tokio::task::JoinHandle<()> {
    let shared = shared.clone();
    tokio::spawn(async move {
        let half = (shared.store.config().lease / 2)
            .to_std()
            .unwrap_or(Duration::from_secs(1));
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + half, half);
        loop {
            ticks.tick().await;
            for id in &ids {
                if let Err(err) = shared
                    .store
                    .extend_lease(*id, &shared.config.worker_id, None)
                    .await
                {
                    tracing::debug!(target: "headrace.worker", item = id, %err, "lease not extended");
                }
            }
        }
    })
}

fn retry_policy<'a>(shared: &'a Shared, topic: &str) -> (&'a RetryPolicy, bool) {
    match shared.config.retry_by_topic.get(topic) {
        Some(policy) => (policy, true),
        None => (
            shared
                .config
                .retry
                .as_ref()
                .unwrap_or(&shared.store.config().retry),
            false,
        ),
    }
}

async fn process_batch(shared: &Arc<Shared>, items: Vec<OutboxItem>) -> Result<WorkerReport> {
    let worker_id = &shared.config.worker_id;
    let lease_keeper = keep_leases(shared, items.iter().map(|i| i.id).collect());
    let started = Instant::now();
    let mut outcomes = shared
        .handler
        .handle(items.clone(), shared.stop.clone())
        .await;
    let handler_elapsed = started.elapsed();
    lease_keeper.abort();
    if outcomes.len() != items.len() {
        let message = format!(
            "the handler returned {} outcomes for {} items",
            outcomes.len(),
            items.len()
        );
        tracing::error!(target: "headrace.worker", "{message}");
        outcomes.resize(items.len(), Outcome::retry(message));
    }

    let now = shared.store.config().clock.now();
    let mut report = WorkerReport::default();
    let mut completed = Vec::new();
    let mut unstarted = Vec::new();
    let mut results = Vec::with_capacity(items.len());
    for (item, outcome) in items.into_iter().zip(outcomes) {
        let (settled, error) = match outcome {
            Outcome::Completed => {
                completed.push(item.id);
                (Settled::Completed, None)
            }
            Outcome::NotStarted => {
                unstarted.push(item.id);
                (Settled::Released, None)
            }
            Outcome::Failed {
                error,
                retryable,
                retry_at,
            } => {
                let settled =
                    settle_failure(shared, &item, &error, retryable, retry_at, now).await?;
                (settled, Some(error))
            }
        };
        match settled {
            Settled::Completed => report.completed += 1,
            Settled::Retried => report.retried += 1,
            Settled::Failed => report.failed += 1,
            Settled::Released => report.released += 1,
        }
        results.push(SettledItem {
            item,
            settled,
            error,
        });
    }
    report.processed = report.completed + report.retried + report.failed;
    shared
        .store
        .mark_success_many(&completed, worker_id)
        .await?;
    shared.store.release(&unstarted, worker_id).await?;
    let counted: Vec<(&str, Settled)> = results
        .iter()
        .map(|r| (r.item.topic.as_str(), r.settled))
        .collect();
    shared.metrics.record_batch(&counted, handler_elapsed);
    shared.handler.settled(results).await;
    Ok(report)
}

/// Dead-letters or schedules the retry of a failed item; returns where it ended up.
async fn settle_failure(
    shared: &Shared,
    item: &OutboxItem,
    error: &str,
    retryable: bool,
    retry_at: Option<chrono::DateTime<chrono::Utc>>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Settled> {
    let worker_id = &shared.config.worker_id;
    let (policy, own_limit) = retry_policy(shared, &item.topic);
    let limit = if own_limit {
        policy.max_attempts.min(item.max_attempts)
    } else {
        item.max_attempts
    };
    if !retryable || item.attempts >= limit {
        shared.store.mark_failed(item.id, worker_id, error).await?;
        return Ok(Settled::Failed);
    }
    let at = retry_at.unwrap_or_else(|| now + policy.delay(item.attempts));
    Ok(
        match shared
            .store
            .mark_retry(item.id, worker_id, Some(at), error)
            .await?
        {
            OutboxStatus::Failed => Settled::Failed,
            _ => Settled::Retried,
        },
    )
}
