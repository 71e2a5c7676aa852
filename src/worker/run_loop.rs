//! The claim → handle → acknowledge loop.

use super::lease_keeper::{LeaseKeeper, keep_alive};
use super::{
    BatchHandler, Outcome, Settled, SettledItem, StopFlag, WorkerConfig, WorkerMetrics,
    WorkerReport,
};
use crate::error::{Error, Result};
use crate::outbox::claim_stream::{ClaimFuture, ClaimStream, finish};
use crate::outbox::retry::retry_at_after;
use crate::outbox::{
    ClaimFilter, FailureDecision, OutboxItem, OutboxStatus, OutboxStore, RetryPolicy,
};
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
    leases: Arc<LeaseKeeper>,
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
                leases: Arc::new(LeaseKeeper::default()),
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
        let lease_keeper = tokio::spawn(keep_alive(
            self.shared.leases.clone(),
            self.shared.store.clone(),
            self.shared.config.worker_id.clone(),
            self.shared.config.handler_timeout,
        ));
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
        lease_keeper.abort();
        let _ = lease_keeper.await;
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
    shared.leases.hold(items.iter().map(|i| i.id));
    let topics: Vec<&str> = items.iter().map(|i| i.topic.as_str()).collect();
    shared.metrics.record_claim(started.elapsed(), &topics);
    Ok(items)
}

/// One lane: claim → handle → acknowledge. The next batch is claimed while handlers run, and
/// the acknowledgement of a batch shares one round trip with the claim after the next
/// ([`OutboxStore::complete_and_claim`]): a lane holds the batch it handles and one claimed
/// ahead, and sends one statement per batch.
async fn lane(shared: Arc<Shared>, until_empty: bool) -> Result<WorkerReport> {
    let config = &shared.config;
    // A drain never waits for work, so it does not listen for it (on PostgreSQL that would
    // open one more connection).
    let work = if until_empty {
        Arc::new(Notify::new())
    } else {
        shared.store.work_signal().await?
    };
    let mut report = WorkerReport::default();
    // Batches acknowledged by a claim made ahead (counted once their acknowledgement is done).
    let acknowledged = Arc::new(std::sync::Mutex::new(WorkerReport::default()));
    let claimer = shared.clone();
    let mut stream = ClaimStream::new(Arc::new(move || Box::pin(claim(claimer.clone()))));
    // Handed out by the stream and not handled yet.
    let mut in_hand: Vec<OutboxItem> = Vec::new();
    let mut outcome = loop {
        if shared.stop.is_set() {
            break Ok(());
        }
        let work_arrived = work.notified();
        let stopping = shared.stopping.notified();
        tokio::pin!(work_arrived, stopping);
        work_arrived.as_mut().enable();
        stopping.as_mut().enable();
        let items = if in_hand.is_empty() {
            match stream.next().await {
                Ok(items) => items,
                Err(err) if until_empty => break Err(err),
                Err(err) => {
                    tracing::warn!(target: "headrace.worker", worker = %config.worker_id, %err, "claim failed; retrying after the poll interval");
                    tokio::select! { _ = &mut stopping => {}, _ = tokio::time::sleep(config.poll_interval) => {} }
                    continue;
                }
            }
        } else {
            std::mem::take(&mut in_hand)
        };
        if items.is_empty() {
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
            stream.claim_ahead();
        }
        let span =
            tracing::info_span!("outbox.batch", worker = %config.worker_id, items = items.len());
        let handled = match tracing::Instrument::instrument(process_batch(&shared, items), span)
            .await
        {
            Ok(Batch::Handled(handled)) => handled,
            Ok(Batch::Abandoned(abandoned)) => {
                report.add(&abandoned);
                continue;
            }
            Err(err) if until_empty => break Err(err),
            Err(err) => {
                tracing::warn!(target: "headrace.worker", worker = %config.worker_id, %err, "settling a batch failed; its leases will expire and the reaper will return the items");
                continue;
            }
        };
        if shared.stop.is_set() {
            // No further claim: the acknowledgement goes alone.
            match acknowledge(&shared, handled).await {
                Ok(batch) => report.add(&batch),
                Err(err) if until_empty => break Err(err),
                Err(err) => ack_failed(config, &err),
            }
            continue;
        }
        // The batch claimed ahead is next; the claim after it carries this acknowledgement.
        match stream.next().await {
            Ok(next) => in_hand = next,
            Err(err) => {
                match acknowledge(&shared, handled).await {
                    Ok(batch) => report.add(&batch),
                    Err(ack_err) if until_empty => break Err(ack_err),
                    Err(ack_err) => ack_failed(config, &ack_err),
                }
                if until_empty {
                    break Err(err);
                }
                tracing::warn!(target: "headrace.worker", worker = %config.worker_id, %err, "claim failed; retrying after the poll interval");
                tokio::select! { _ = &mut stopping => {}, _ = tokio::time::sleep(config.poll_interval) => {} }
                continue;
            }
        }
        let ack_and_claim: ClaimFuture = Box::pin(complete_and_claim(
            shared.clone(),
            handled,
            acknowledged.clone(),
        ));
        if let Some(refused) = stream.claim_ahead_with(ack_and_claim) {
            // Not expected (the stream is open and idle): make it here instead.
            match refused.await {
                Ok(more) => in_hand.extend(more),
                Err(err) if until_empty => break Err(err),
                Err(err) => ack_failed(config, &err),
            }
        }
    };
    if let Some(ahead) = stream.detach_ahead() {
        match finish(ahead).await {
            Ok(claimed) => in_hand.extend(claimed),
            Err(err) => {
                ack_failed(config, &err);
                if until_empty && outcome.is_ok() {
                    outcome = Err(err);
                }
            }
        }
    }
    report.add(&acknowledged.lock().expect("report poisoned"));
    if !in_hand.is_empty() {
        let ids: Vec<i64> = in_hand.iter().map(|i| i.id).collect();
        shared.leases.let_go(&ids);
        // Claimed ahead and never handed to a handler: give it back. Not counted as released
        // in the report, which counts items whose handling the stop interrupted.
        if let Err(err) = shared.store.release(&ids, &config.worker_id).await {
            tracing::warn!(target: "headrace.worker", %err, "could not release a prefetched batch; the reaper will return it");
        }
    }
    outcome.map(|()| report)
}

fn ack_failed(config: &WorkerConfig, err: &Error) {
    tracing::warn!(target: "headrace.worker", worker = %config.worker_id, %err, "acknowledging a batch failed; its leases will expire and the reaper will return the items");
}

/// Acknowledges `handled` and claims the next batch in one call; the batch's report is added to
/// `acknowledged` once its acknowledgement is done.
async fn complete_and_claim(
    shared: Arc<Shared>,
    handled: Handled,
    acknowledged: Arc<std::sync::Mutex<WorkerReport>>,
) -> Result<Vec<OutboxItem>> {
    let config = &shared.config;
    let started = Instant::now();
    let (acked, items) = match shared
        .store
        .complete_and_claim(
            &handled.completed,
            &config.worker_id,
            config.batch_size,
            &shared.claim_filter,
        )
        .await
    {
        Ok(done) => done,
        Err(err) => {
            shared.leases.let_go(&handled.ids);
            return Err(err);
        }
    };
    shared.leases.hold(items.iter().map(|i| i.id));
    let topics: Vec<&str> = items.iter().map(|i| i.topic.as_str()).collect();
    shared.metrics.record_claim(started.elapsed(), &topics);
    match acked {
        Ok(()) => {}
        // The items still leased were acknowledged; the others ran after their lease lapsed.
        Err(err @ Error::LeaseLost { .. }) => {
            tracing::warn!(target: "headrace.worker", %err, "some completions were refused")
        }
        Err(err) => {
            shared.leases.let_go(&handled.ids);
            let ids: Vec<i64> = items.iter().map(|i| i.id).collect();
            shared.leases.let_go(&ids);
            if let Err(release) = shared.store.release(&ids, &config.worker_id).await {
                tracing::warn!(target: "headrace.worker", err = %release, "could not release a claimed batch; the reaper will return it");
            }
            return Err(err);
        }
    }
    let batch = record_settled(&shared, handled).await;
    acknowledged.lock().expect("report poisoned").add(&batch);
    Ok(items)
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

/// What handling a batch led to.
enum Batch {
    /// The handlers returned: the completions are still to be acknowledged.
    Handled(Handled),
    /// Given up on (handler timeout or stop grace); it is settled late, by a task of its own.
    Abandoned(WorkerReport),
}

/// A batch whose failures, retries and releases are recorded, and whose completions are not
/// acknowledged yet.
struct Handled {
    report: WorkerReport,
    completed: Vec<i64>,
    results: Vec<SettledItem>,
    handler_elapsed: Duration,
    /// The batch's items, whose leases are let go once it is settled.
    ids: Vec<i64>,
}

async fn process_batch(shared: &Arc<Shared>, items: Vec<OutboxItem>) -> Result<Batch> {
    let ids: Vec<i64> = items.iter().map(|i| i.id).collect();
    shared.leases.handing_over(&ids);
    let started = Instant::now();
    let handler = shared.handler.clone();
    let (batch, stop) = (items.clone(), shared.stop.clone());
    let mut handling = tokio::spawn(async move { handler.handle(batch, stop).await });
    let outcomes = tokio::select! {
        joined = &mut handling => joined.unwrap_or_else(|e| {
            vec![Outcome::retry(format!("the handler task failed: {e}")); items.len()]
        }),
        reason = give_up(shared) => {
            // Stop renewing: the leases lapse and another worker may take the items. If the
            // handler ever returns, its acknowledgements are tried (and refused with LeaseLost
            // for items taken meanwhile).
            shared.leases.let_go(&ids);
            tracing::warn!(target: "headrace.worker", worker = %shared.config.worker_id, items = ?ids, "{reason}: the batch's leases are let go");
            let late = shared.clone();
            tokio::spawn(async move {
                if let Ok(outcomes) = handling.await {
                    let elapsed = started.elapsed();
                    if let Err(err) = settle_batch(&late, items, outcomes, elapsed).await {
                        tracing::warn!(target: "headrace.worker", %err, "late acknowledgement of an abandoned batch refused");
                    }
                }
            });
            return Ok(Batch::Abandoned(WorkerReport {
                abandoned: ids.len() as u64,
                ..WorkerReport::default()
            }));
        }
    };
    match settle_outcomes(shared, items, outcomes, started.elapsed()).await {
        Ok(handled) => Ok(Batch::Handled(handled)),
        Err(err) => {
            shared.leases.let_go(&ids);
            Err(err)
        }
    }
}

/// Resolves once the batch's handler should be given up on: it ran past `handler_timeout`, or
/// the worker was asked to stop and `stop_grace` passed since.
async fn give_up(shared: &Shared) -> &'static str {
    let timed_out = async {
        match shared.config.handler_timeout {
            Some(limit) => tokio::time::sleep(limit).await,
            None => std::future::pending().await,
        }
    };
    let stopped = async {
        loop {
            let stopping = shared.stopping.notified();
            tokio::pin!(stopping);
            stopping.as_mut().enable();
            if shared.stop.is_set() {
                break;
            }
            stopping.await;
        }
        tokio::time::sleep(shared.config.stop_grace).await;
    };
    tokio::select! {
        _ = timed_out => "the handler ran past handler_timeout",
        _ = stopped => "the worker is stopping and the handler ran past stop_grace",
    }
}

/// Acknowledges, retries, dead-letters or releases each item by its outcome.
async fn settle_batch(
    shared: &Arc<Shared>,
    items: Vec<OutboxItem>,
    outcomes: Vec<Outcome>,
    handler_elapsed: Duration,
) -> Result<WorkerReport> {
    let handled = settle_outcomes(shared, items, outcomes, handler_elapsed).await?;
    acknowledge(shared, handled).await
}

/// Retries, dead-letters or releases each item by its outcome; the completions are left to
/// acknowledge.
async fn settle_outcomes(
    shared: &Arc<Shared>,
    items: Vec<OutboxItem>,
    mut outcomes: Vec<Outcome>,
    handler_elapsed: Duration,
) -> Result<Handled> {
    let worker_id = &shared.config.worker_id;
    if outcomes.len() != items.len() {
        let message = format!(
            "the handler returned {} outcomes for {} items",
            outcomes.len(),
            items.len()
        );
        tracing::error!(target: "headrace.worker", "{message}");
        outcomes.resize(items.len(), Outcome::retry(message));
    }

    let ids: Vec<i64> = items.iter().map(|i| i.id).collect();
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
                retry_after,
            } => match settle_failure(shared, &item, &error, retryable, retry_after, now).await {
                Ok(settled) => (settled, Some(error)),
                Err(err @ (Error::LeaseLost { .. } | Error::NotFound(_))) => {
                    tracing::warn!(target: "headrace.worker", item = item.id, %err, "failure not recorded: the lease was lost");
                    continue;
                }
                Err(err) => return Err(err),
            },
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
    shared.store.release(&unstarted, worker_id).await?;
    Ok(Handled {
        report,
        completed,
        results,
        handler_elapsed,
        ids,
    })
}

/// Acknowledges a handled batch's completions on their own.
async fn acknowledge(shared: &Arc<Shared>, handled: Handled) -> Result<WorkerReport> {
    match shared
        .store
        .mark_success_many(&handled.completed, &shared.config.worker_id)
        .await
    {
        Ok(()) => {}
        // The items still leased were acknowledged; the others ran after their lease lapsed.
        Err(err @ Error::LeaseLost { .. }) => {
            tracing::warn!(target: "headrace.worker", %err, "some completions were refused")
        }
        Err(err) => {
            shared.leases.let_go(&handled.ids);
            return Err(err);
        }
    }
    Ok(record_settled(shared, handled).await)
}

/// Records a settled batch: its leases are let go, its metrics counted, the hooks told.
async fn record_settled(shared: &Arc<Shared>, handled: Handled) -> WorkerReport {
    shared.leases.let_go(&handled.ids);
    let counted: Vec<(&str, Settled)> = handled
        .results
        .iter()
        .map(|r| (r.item.topic.as_str(), r.settled))
        .collect();
    shared
        .metrics
        .record_batch(&counted, handled.handler_elapsed);
    shared.handler.settled(handled.results).await;
    handled.report
}

/// Dead-letters or schedules the retry of a failed item; returns where it ended up.
async fn settle_failure(
    shared: &Shared,
    item: &OutboxItem,
    error: &str,
    retryable: bool,
    retry_after: Option<std::time::Duration>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Settled> {
    let worker_id = &shared.config.worker_id;
    let (policy, own_limit) = retry_policy(shared, &item.topic);
    let limit = if own_limit {
        policy.max_attempts.min(item.max_attempts)
    } else {
        item.max_attempts
    };
    let retry_at = retry_after.and_then(|after| retry_at_after(now, after));
    let at = match policy.decide(item.attempts, limit, retryable, retry_at, now) {
        FailureDecision::Retry { at } => at,
        FailureDecision::DeadLetter => {
            shared.store.mark_failed(item.id, worker_id, error).await?;
            return Ok(Settled::Failed);
        }
    };
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
