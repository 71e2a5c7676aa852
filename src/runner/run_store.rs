//! Where runs are recorded: newest first, at most `max_runs_per_policy` kept per policy.

use super::run::{Run, RunSource, RunStatus, new_run_id};
use crate::clock::{SharedClock, SystemClock};
use crate::error::{Error, Result};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// Default number of runs kept per policy.
pub const DEFAULT_MAX_RUNS_PER_POLICY: usize = 100;

/// The run store contract.
#[async_trait]
pub trait RunStore: Send + Sync + std::fmt::Debug {
    /// The clock this store stamps runs with; run leases are taken and reaped against it too.
    fn clock(&self) -> &SharedClock;

    /// Records a new RUNNING run of `policy_id` and drops that policy's oldest runs beyond the
    /// retention limit.
    async fn create_run(
        &self,
        policy_id: &str,
        source: RunSource,
        metadata: Map<String, Value>,
    ) -> Result<Run>;

    /// Finishes a RUNNING run as COMPLETED or FAILED (with `reason`), setting its entity count and
    /// merging `metadata` into the run's metadata.
    async fn finish_run(
        &self,
        run_id: &str,
        status: RunStatus,
        reason: Option<String>,
        entity_count: u64,
        metadata: Map<String, Value>,
    ) -> Result<Run>;

    /// One run by id (`NotFound` if unknown or already dropped by retention).
    async fn get_run(&self, run_id: &str) -> Result<Run>;

    /// The runs of `policy_id`, newest first.
    async fn runs(&self, policy_id: &str) -> Result<Vec<Run>>;

    /// Every policy with at least one recorded run, sorted by name.
    async fn policy_ids(&self) -> Result<Vec<String>>;

    /// Waits until every write made so far is durable (no-op for synchronous stores).
    async fn flush(&self) -> Result<()> {
        Ok(())
    }

    /// Records that the process running `run_id` is alive until `until` (its run lease).
    /// Stores that die with their process (memory) need no lease: the default does nothing.
    async fn renew_run_lease(&self, _run_id: &str, _until: DateTime<Utc>) -> Result<()> {
        Ok(())
    }

    /// Finishes as FAILED every RUNNING run of `policy_id` whose lease expired before `now`
    /// (its process was killed or lost its database); returns the runs it finished.
    async fn reap_expired_runs(&self, _policy_id: &str, _now: DateTime<Utc>) -> Result<Vec<Run>> {
        Ok(Vec::new())
    }
}

/// How long a run's lease lasts; the executor renews it every third of that.
pub const RUN_LEASE: std::time::Duration = std::time::Duration::from_secs(60);

/// The reason given to a run reaped because its lease expired.
pub(crate) fn expired_reason(expired_at: DateTime<Utc>) -> String {
    format!(
        "the process running it stopped (killed, or cut off from the database): its run lease \
         expired at {}",
        expired_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    )
}

/// Checks a finishing transition, naming the run.
pub(crate) fn check_finish(run: &Run, status: RunStatus) -> Result<()> {
    if !status.is_final() {
        return Err(Error::InvalidStatusTransition(format!(
            "run {} can only be finished as completed or failed, not {status}",
            run.id
        )));
    }
    if run.status.is_final() {
        return Err(Error::InvalidStatusTransition(format!(
            "run {} is already {}; it cannot become {status}",
            run.id, run.status
        )));
    }
    Ok(())
}

/// Checks a retention limit.
pub fn check_max_runs(max_runs_per_policy: usize) -> Result<()> {
    if max_runs_per_policy == 0 {
        return Err(Error::config("max_runs_per_policy must be >= 1, got 0"));
    }
    Ok(())
}

/// Runs kept in memory, for tests and dry runs (lost when the process ends).
#[derive(Debug)]
pub struct MemoryRunStore {
    max_runs_per_policy: usize,
    clock: SharedClock,
    inner: Mutex<MemoryRuns>,
}

#[derive(Debug, Default)]
struct MemoryRuns {
    /// Per policy, oldest first.
    by_policy: HashMap<String, VecDeque<String>>,
    runs: HashMap<String, Run>,
}

impl MemoryRunStore {
    /// An empty store keeping `max_runs_per_policy` runs per policy.
    pub fn new(max_runs_per_policy: usize) -> Result<Self> {
        Self::with_clock(max_runs_per_policy, Arc::new(SystemClock))
    }

    /// Like [`MemoryRunStore::new`] with an injected clock.
    pub fn with_clock(max_runs_per_policy: usize, clock: SharedClock) -> Result<Self> {
        check_max_runs(max_runs_per_policy)?;
        Ok(MemoryRunStore {
            max_runs_per_policy,
            clock,
            inner: Mutex::new(MemoryRuns::default()),
        })
    }
}

#[async_trait]
impl RunStore for MemoryRunStore {
    fn clock(&self) -> &SharedClock {
        &self.clock
    }

    async fn create_run(
        &self,
        policy_id: &str,
        source: RunSource,
        metadata: Map<String, Value>,
    ) -> Result<Run> {
        let now = self.clock.now();
        let run = Run::started(new_run_id(), policy_id, source, metadata, now);
        let mut inner = self.inner.lock().expect("run store poisoned");
        let MemoryRuns { by_policy, runs } = &mut *inner;
        let ids = by_policy.entry(policy_id.to_string()).or_default();
        ids.push_back(run.id.clone());
        runs.insert(run.id.clone(), run.clone());
        while ids.len() > self.max_runs_per_policy {
            if let Some(old) = ids.pop_front() {
                runs.remove(&old);
            }
        }
        Ok(run)
    }

    async fn finish_run(
        &self,
        run_id: &str,
        status: RunStatus,
        reason: Option<String>,
        entity_count: u64,
        metadata: Map<String, Value>,
    ) -> Result<Run> {
        let now = self.clock.now();
        let mut inner = self.inner.lock().expect("run store poisoned");
        let run = inner
            .runs
            .get_mut(run_id)
            .ok_or_else(|| Error::NotFound(format!("no run with id {run_id:?}")))?;
        check_finish(run, status)?;
        run.status = status;
        run.reason = reason;
        run.entity_count = entity_count;
        run.metadata.extend(metadata);
        run.updated_at = now;
        Ok(run.clone())
    }

    async fn get_run(&self, run_id: &str) -> Result<Run> {
        let inner = self.inner.lock().expect("run store poisoned");
        inner
            .runs
            .get(run_id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("no run with id {run_id:?}")))
    }

    async fn runs(&self, policy_id: &str) -> Result<Vec<Run>> {
        let inner = self.inner.lock().expect("run store poisoned");
        Ok(inner
            .by_policy
            .get(policy_id)
            .map(|ids| {
                ids.iter()
                    .rev()
                    .filter_map(|id| inner.runs.get(id).cloned())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn policy_ids(&self) -> Result<Vec<String>> {
        let inner = self.inner.lock().expect("run store poisoned");
        let mut ids: Vec<String> = inner
            .by_policy
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        ids.sort();
        Ok(ids)
    }
}
