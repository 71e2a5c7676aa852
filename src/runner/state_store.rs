//! The run store on the state backend: a run is an invocation of task `policy:<name>`, its
//! status history the run's transitions, its result the run's data (status, reason,
//! entity_count, metadata). Policies are registered as workflow runs of type
//! `headrace.policy`, so `policy_ids` lists them. Durable on SQLite and PostgreSQL, newest
//! first, at most `max_runs_per_policy` kept per policy.

use super::run::{Run, RunSource, RunStatus, new_run_id};
use super::run_store::{RUN_LEASE, RunStore, check_finish, check_max_runs, expired_reason};
use crate::clock::SharedClock;
use crate::error::{Error, Result};
use crate::state::{
    Invocation, InvocationStatus, ValueKind, WorkflowIdentity, WriteBehind, truncate_to_micros,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// Prefix of the task id of a policy's runs.
pub const TASK_PREFIX: &str = "policy:";
/// Workflow type under which policies are registered.
pub const POLICY_WORKFLOW_TYPE: &str = "headrace.policy";

/// What the invocation's arguments hold.
#[derive(Debug, Serialize, Deserialize)]
struct RunArguments {
    policy: String,
    source: String,
    metadata: Map<String, Value>,
}

/// What the invocation's result holds once the run finished.
#[derive(Debug, Serialize, Deserialize)]
struct RunResult {
    status: String,
    reason: Option<String>,
    entity_count: u64,
    metadata: Map<String, Value>,
    /// RFC 3339, microseconds, UTC.
    updated_at: String,
}

/// Runs stored through a [`WriteBehind`] state backend (read-your-writes).
pub struct StateRunStore {
    state: Arc<WriteBehind>,
    max_runs_per_policy: usize,
    clock: SharedClock,
    registered: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for StateRunStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateRunStore")
            .field("max_runs_per_policy", &self.max_runs_per_policy)
            .finish()
    }
}

fn task_id(policy_id: &str) -> String {
    format!("{TASK_PREFIX}{policy_id}")
}

fn not_found(run_id: &str, error: Error) -> Error {
    match error {
        Error::InvocationNotFound(_) | Error::NotFound(_) => {
            Error::NotFound(format!("no run with id {run_id:?}"))
        }
        other => other,
    }
}

fn corrupt(run_id: &str, what: &str, e: impl std::fmt::Display) -> Error {
    Error::Store(format!("run {run_id:?}: its stored {what} is corrupt: {e}"))
}

impl StateRunStore {
    /// Runs in `state`, at most `max_runs_per_policy` kept per policy, on `state`'s clock.
    pub fn new(state: Arc<WriteBehind>, max_runs_per_policy: usize) -> Result<Self> {
        let clock = state.clock().clone();
        Self::with_clock(state, max_runs_per_policy, clock)
    }

    /// Like [`StateRunStore::new`] with an injected clock.
    pub fn with_clock(
        state: Arc<WriteBehind>,
        max_runs_per_policy: usize,
        clock: SharedClock,
    ) -> Result<Self> {
        check_max_runs(max_runs_per_policy)?;
        Ok(StateRunStore {
            state,
            max_runs_per_policy,
            clock,
            registered: Mutex::new(HashSet::new()),
        })
    }

    /// The state backend.
    pub fn state(&self) -> &Arc<WriteBehind> {
        &self.state
    }

    async fn to_run(&self, invocation: Invocation) -> Result<Run> {
        let id = invocation.invocation_id.clone();
        let args: RunArguments = serde_json::from_str(&invocation.arguments)
            .map_err(|e| corrupt(&id, "arguments", e))?;
        let source: RunSource = args.source.parse().map_err(|e| corrupt(&id, "source", e))?;
        let mut run = Run {
            id: id.clone(),
            policy_id: args.policy,
            status: RunStatus::Running,
            reason: None,
            entity_count: 0,
            metadata: args.metadata,
            source,
            created_at: invocation.created_at,
            updated_at: invocation.created_at,
        };
        match invocation.status {
            InvocationStatus::Running
            | InvocationStatus::Registered
            | InvocationStatus::Pending => {}
            other => {
                let result = self
                    .state
                    .get_result(&id)
                    .await
                    .map_err(|e| not_found(&id, e))?;
                match result {
                    Some(text) => {
                        let data: RunResult =
                            serde_json::from_str(&text).map_err(|e| corrupt(&id, "result", e))?;
                        run.status = data.status.parse().map_err(|e| corrupt(&id, "status", e))?;
                        run.reason = data.reason;
                        run.entity_count = data.entity_count;
                        run.metadata.extend(data.metadata);
                        run.updated_at = DateTime::parse_from_rfc3339(&data.updated_at)
                            .map_err(|e| corrupt(&id, "updated_at", e))?
                            .with_timezone(&Utc);
                    }
                    None => {
                        run.status = RunStatus::Failed;
                        run.reason = Some(format!("the run's invocation ended as {other}"));
                    }
                }
            }
        }
        Ok(run)
    }

    async fn register(&self, policy_id: &str) -> Result<()> {
        if self
            .registered
            .lock()
            .expect("poisoned")
            .contains(policy_id)
        {
            return Ok(());
        }
        self.state
            .store_workflow_run(WorkflowIdentity::new(
                task_id(policy_id),
                POLICY_WORKFLOW_TYPE,
            ))
            .await?;
        self.registered
            .lock()
            .expect("poisoned")
            .insert(policy_id.to_string());
        Ok(())
    }

    async fn prune(&self, policy_id: &str) -> Result<()> {
        let window = self.max_runs_per_policy.saturating_add(1000);
        let runs = self
            .state
            .get_invocations_by_task(&task_id(policy_id), window)
            .await?;
        if runs.len() > self.max_runs_per_policy {
            let old: Vec<String> = runs[self.max_runs_per_policy..]
                .iter()
                .map(|inv| inv.invocation_id.clone())
                .collect();
            self.state.delete_invocations(&old).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl RunStore for StateRunStore {
    fn clock(&self) -> &SharedClock {
        &self.clock
    }

    async fn create_run(
        &self,
        policy_id: &str,
        source: RunSource,
        metadata: Map<String, Value>,
    ) -> Result<Run> {
        self.register(policy_id).await?;
        let now = truncate_to_micros(self.clock.now());
        let arguments = RunArguments {
            policy: policy_id.to_string(),
            source: source.as_str().to_string(),
            metadata: metadata.clone(),
        };
        let invocation = Invocation {
            invocation_id: new_run_id(),
            task_id: task_id(policy_id),
            arguments: serde_json::to_string(&arguments).expect("arguments encode"),
            // Registered, then moved to running by the history entry (the allowed transition).
            status: InvocationStatus::Registered,
            workflow: None,
            parent_invocation_id: None,
            created_at: now,
        };
        let id = invocation.invocation_id.clone();
        self.state.upsert_invocation(invocation).await?;
        self.state
            .add_history(&id, Some(InvocationStatus::Running), None)
            .await?;
        self.prune(policy_id).await?;
        Ok(Run::started(id, policy_id, source, metadata, now))
    }

    async fn finish_run(
        &self,
        run_id: &str,
        status: RunStatus,
        reason: Option<String>,
        entity_count: u64,
        metadata: Map<String, Value>,
    ) -> Result<Run> {
        let invocation = self
            .state
            .get_invocation(run_id)
            .await
            .map_err(|e| not_found(run_id, e))?;
        let mut run = self.to_run(invocation).await?;
        check_finish(&run, status)?;
        let now = truncate_to_micros(self.clock.now());
        let data = RunResult {
            status: status.as_str().to_string(),
            reason: reason.clone(),
            entity_count,
            metadata: metadata.clone(),
            updated_at: now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        };
        // The result first, so that a reader never sees a finished status without its data.
        self.state
            .set_result(
                run_id,
                serde_json::to_string(&data).expect("result encodes"),
            )
            .await?;
        let next = if status == RunStatus::Completed {
            InvocationStatus::Success
        } else {
            InvocationStatus::Failed
        };
        let context =
            serde_json::json!({"entity_count": entity_count, "reason": reason}).to_string();
        self.state
            .add_history(run_id, Some(next), Some(context))
            .await?;
        run.status = status;
        run.reason = reason;
        run.entity_count = entity_count;
        run.metadata.extend(metadata);
        run.updated_at = now;
        Ok(run)
    }

    async fn get_run(&self, run_id: &str) -> Result<Run> {
        let invocation = self
            .state
            .get_invocation(run_id)
            .await
            .map_err(|e| not_found(run_id, e))?;
        if !invocation.task_id.starts_with(TASK_PREFIX) {
            return Err(Error::NotFound(format!("no run with id {run_id:?}")));
        }
        self.to_run(invocation).await
    }

    async fn runs(&self, policy_id: &str) -> Result<Vec<Run>> {
        let invocations = self
            .state
            .get_invocations_by_task(&task_id(policy_id), self.max_runs_per_policy)
            .await?;
        let mut runs = Vec::with_capacity(invocations.len());
        for invocation in invocations {
            runs.push(self.to_run(invocation).await?);
        }
        Ok(runs)
    }

    async fn policy_ids(&self) -> Result<Vec<String>> {
        let mut ids: Vec<String> = self
            .state
            .get_workflow_runs(Some(POLICY_WORKFLOW_TYPE))
            .await?
            .into_iter()
            .filter_map(|wf| wf.workflow_id.strip_prefix(TASK_PREFIX).map(str::to_string))
            .collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    async fn flush(&self) -> Result<()> {
        self.state.wait_for_all().await
    }

    async fn renew_run_lease(&self, run_id: &str, until: DateTime<Utc>) -> Result<()> {
        let invocation = self
            .state
            .get_invocation(run_id)
            .await
            .map_err(|e| not_found(run_id, e))?;
        let expiry = until.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        self.state
            .set_workflow_value(
                &invocation.task_id,
                ValueKind::Data,
                &lease_key(run_id),
                Value::from(expiry).to_string(),
            )
            .await
    }

    async fn reap_expired_runs(&self, policy_id: &str, now: DateTime<Utc>) -> Result<Vec<Run>> {
        let mut reaped = Vec::new();
        for run in self.runs(policy_id).await? {
            if run.status != RunStatus::Running {
                continue;
            }
            let lease = self
                .state
                .get_workflow_value(&task_id(policy_id), ValueKind::Data, &lease_key(&run.id))
                .await?;
            let expires = match lease.as_deref().map(serde_json::from_str::<String>) {
                Some(Ok(text)) => DateTime::parse_from_rfc3339(&text)
                    .map_err(|e| corrupt(&run.id, "run lease", e))?
                    .with_timezone(&Utc),
                Some(Err(e)) => return Err(corrupt(&run.id, "run lease", e)),
                // Recorded without a lease (an older version): one lease after its start.
                None => run.created_at + chrono::Duration::from_std(RUN_LEASE).expect("fits"),
            };
            if expires >= now {
                continue;
            }
            match self
                .finish_run(
                    &run.id,
                    RunStatus::Failed,
                    Some(expired_reason(expires)),
                    run.entity_count,
                    Map::new(),
                )
                .await
            {
                Ok(finished) => reaped.push(finished),
                // Finished meanwhile by its owner or another reaper.
                Err(Error::InvalidStatusTransition(_) | Error::NotFound(_)) => {}
                Err(other) => return Err(other),
            }
        }
        Ok(reaped)
    }
}

/// The workflow value holding a run's lease expiry.
fn lease_key(run_id: &str) -> String {
    format!("run-lease:{run_id}")
}
