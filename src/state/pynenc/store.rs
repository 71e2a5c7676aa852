//! The [`PynencStore`] trait (pynenc 0.4's `BaseStateBackend` storage contract) and the
//! records and writes it stores. Every call is scoped to one pynenc app id.

use super::history::HistoryEntry;
use super::status::{StatusRecord, TransitionRefusal, status_record_transition};
use crate::error::{Error, Result};
use async_trait::async_trait;

/// An invocation as pynenc's `InvocationDTO` + `CallDTO` describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PynencInvocation {
    pub invocation_id: String,
    /// `CallId.key` (task id key and arguments id).
    pub call_id_key: String,
    pub task_id_key: String,
    /// Argument name → serialized value, as a JSON object (text).
    pub serialized_arguments: String,
    pub parent_invocation_id: Option<String>,
    pub parent_event_id: Option<String>,
    pub workflow: Option<WorkflowRun>,
}

/// A workflow run (pynenc's `WorkflowIdentity`, its type as `TaskId.key`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkflowRun {
    pub workflow_id: String,
    pub workflow_type_key: String,
    pub parent_workflow_id: Option<String>,
}

/// One write; a store applies a list of them in order in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum PynencWrite {
    /// Inserts or replaces an invocation (its history, result and exception stay).
    UpsertInvocation(PynencInvocation),
    /// Appends a history entry (checked against the status model when enforcing).
    AddHistory(HistoryEntry),
    /// Sets an invocation's serialized result (the invocation need not be stored).
    SetResult {
        invocation_id: String,
        value: String,
    },
    /// Sets an invocation's serialized exception.
    SetException {
        invocation_id: String,
        value: String,
    },
    /// Sets one serialized workflow value.
    SetWorkflowData {
        workflow_id: String,
        key: String,
        value: String,
    },
    /// Registers the app's `AppInfo` JSON (the store's app id is ignored: the info names its app).
    StoreAppInfo { app_id: String, info_json: String },
    /// Records a workflow run (idempotent by workflow id).
    StoreWorkflowRun(WorkflowRun),
    /// Records that `sub_invocation_id` runs inside `parent_workflow_id` (idempotent).
    StoreSubInvocation {
        parent_workflow_id: String,
        sub_invocation_id: String,
    },
    /// Stores a `RunnerContext` JSON under its runner id (replacing it).
    StoreRunnerContext {
        runner_id: String,
        context_json: String,
    },
}

impl PynencWrite {
    /// Checks the write's own fields, naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        match self {
            PynencWrite::UpsertInvocation(inv) => {
                non_empty("invocation_id", &inv.invocation_id)?;
                non_empty("call_id key", &inv.call_id_key)?;
                let args: serde_json::Value = serde_json::from_str(&inv.serialized_arguments)
                    .map_err(|e| {
                        Error::config(format!(
                            "serialized arguments of invocation {:?} are not JSON: {e}",
                            inv.invocation_id
                        ))
                    })?;
                if !args.is_object() {
                    return Err(Error::config(format!(
                        "serialized arguments of invocation {:?} must be a JSON object",
                        inv.invocation_id
                    )));
                }
                Ok(())
            }
            PynencWrite::AddHistory(h) => non_empty("invocation_id", &h.invocation_id),
            PynencWrite::SetResult { invocation_id, .. }
            | PynencWrite::SetException { invocation_id, .. } => {
                non_empty("invocation_id", invocation_id)
            }
            PynencWrite::SetWorkflowData { workflow_id, .. } => {
                non_empty("workflow_id", workflow_id)
            }
            PynencWrite::StoreAppInfo { app_id, info_json } => {
                non_empty("app_id", app_id)?;
                crate::state::check_json("app info", info_json)
            }
            PynencWrite::StoreWorkflowRun(run) => {
                non_empty("workflow_id", &run.workflow_id)?;
                non_empty("workflow type", &run.workflow_type_key)
            }
            PynencWrite::StoreSubInvocation {
                parent_workflow_id,
                sub_invocation_id,
            } => {
                non_empty("parent_workflow_id", parent_workflow_id)?;
                non_empty("sub_invocation_id", sub_invocation_id)
            }
            PynencWrite::StoreRunnerContext {
                runner_id,
                context_json,
            } => {
                non_empty("runner_id", runner_id)?;
                crate::state::check_json("runner context", context_json)
            }
        }
    }
}

/// Whether the store checks each history entry against pynenc's status model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transitions {
    /// Store every entry as given, as pynenc's own state backends do (pynenc's orchestrator
    /// checks a status change before it records it).
    #[default]
    Record,
    /// Refuse an entry that pynenc's `status_record_transition` refuses from the invocation's
    /// latest stored record (transition table, then ownership), in the write's transaction.
    Enforce,
}

/// A write the store refused (the rest of its batch was applied).
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub index: usize,
    pub invocation_id: String,
    pub refusal: TransitionRefusal,
}

impl Refused {
    /// The refusal as a core error (for callers that only report it).
    pub fn to_error(&self) -> Error {
        Error::InvalidStatusTransition(format!(
            "invocation {:?}: {}",
            self.invocation_id, self.refusal
        ))
    }
}

/// Checks `entry` against the latest stored record `current` under [`Transitions::Enforce`]:
/// pynenc's `status_record_transition` from `current` to the entry's status, made by the
/// entry's runner context (the runner pynenc's orchestrator passes as `runner_id`). The
/// entry's owner is stored as given: pynenc's orchestrators set it (a registration, for
/// instance, records the registering runner).
pub fn check_entry(
    current: Option<&StatusRecord>,
    entry: &HistoryEntry,
) -> std::result::Result<(), TransitionRefusal> {
    let runner = Some(entry.runner_context_id.as_str()).filter(|r| !r.is_empty());
    status_record_transition(current, entry.status, runner).map(drop)
}

/// pynenc's state-backend storage contract, one implementation per database.
#[async_trait]
pub trait PynencStore: Send + Sync + std::fmt::Debug {
    /// Applies `writes` for `app` in order in one transaction. Under [`Transitions::Enforce`]
    /// a history entry the status model refuses is skipped and returned; `Err` means nothing
    /// was applied.
    async fn apply(
        &self,
        app: &str,
        writes: Vec<PynencWrite>,
        transitions: Transitions,
    ) -> Result<Vec<Refused>>;

    async fn get_invocation(
        &self,
        app: &str,
        invocation_id: &str,
    ) -> Result<Option<PynencInvocation>>;

    /// History of one invocation in time order (then insertion order); empty if none.
    async fn get_history(&self, app: &str, invocation_id: &str) -> Result<Vec<HistoryEntry>>;

    async fn get_result(&self, app: &str, invocation_id: &str) -> Result<Option<String>>;

    async fn get_exception(&self, app: &str, invocation_id: &str) -> Result<Option<String>>;

    async fn get_workflow_data(
        &self,
        app: &str,
        workflow_id: &str,
        key: &str,
    ) -> Result<Option<String>>;

    /// The `AppInfo` JSON stored for `app_id`.
    async fn get_app_info(&self, app_id: &str) -> Result<Option<String>>;

    /// Every stored app: (app id, `AppInfo` JSON), by app id.
    async fn all_app_infos(&self) -> Result<Vec<(String, String)>>;

    /// Distinct workflow types, sorted.
    async fn workflow_types(&self, app: &str) -> Result<Vec<String>>;

    /// Workflow runs (of one type, if given), in the order first stored.
    async fn workflow_runs(
        &self,
        app: &str,
        workflow_type_key: Option<&str>,
    ) -> Result<Vec<WorkflowRun>>;

    /// Sub-invocations of a workflow, in the order first stored.
    async fn sub_invocations(&self, app: &str, workflow_id: &str) -> Result<Vec<String>>;

    /// Invocations whose parent invocation is `parent_invocation_id`.
    async fn child_invocations(&self, app: &str, parent_invocation_id: &str)
    -> Result<Vec<String>>;

    /// Invocations created in response to `parent_event_id`.
    async fn invocations_by_parent_event(
        &self,
        app: &str,
        parent_event_id: &str,
    ) -> Result<Vec<String>>;

    /// Invocations of a workflow id and/or workflow type (both `None`: every invocation).
    async fn invocations_by_workflow(
        &self,
        app: &str,
        workflow_id: Option<&str>,
        workflow_type_key: Option<&str>,
    ) -> Result<Vec<String>>;

    /// History entries with `start_us <= time <= end_us`, in time order, one page.
    async fn history_in_range(
        &self,
        app: &str,
        start_us: i64,
        end_us: i64,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<HistoryEntry>>;

    /// Distinct invocation ids with history in `[start_us, end_us]`, by id, one page.
    async fn invocations_in_range(
        &self,
        app: &str,
        start_us: i64,
        end_us: i64,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<String>>;

    /// Stored `RunnerContext` JSON of these runner ids (unknown ids are left out).
    async fn runner_contexts(&self, app: &str, runner_ids: &[String]) -> Result<Vec<String>>;

    /// Stored `RunnerContext` JSON whose runner id contains `partial_id`.
    async fn matching_runner_contexts(&self, app: &str, partial_id: &str) -> Result<Vec<String>>;

    /// Deletes everything stored for `app` (its app info included).
    async fn purge(&self, app: &str) -> Result<()>;

    /// Closes the store: later calls fail with a clear `Store` error.
    async fn close(&self);
}

fn non_empty(what: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::config(format!("{what} must be a non-empty string")));
    }
    Ok(())
}

pub(crate) fn closed_error() -> Error {
    Error::Store("the pynenc state store is closed: connect again to use it".into())
}
