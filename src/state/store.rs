//! The [`StateStore`] trait every database implements with the same semantics.

use super::{AppInfo, ExceptionRecord, Invocation, InvocationHistory, WorkflowIdentity};
use crate::error::{Error, Result};
use async_trait::async_trait;

/// Which key-value space of a workflow a value lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ValueKind {
    /// `set_workflow_data` / `get_workflow_data`.
    Data,
    /// `set_workflow_deterministic_value` / `get_workflow_deterministic_value`.
    Deterministic,
}

impl ValueKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ValueKind::Data => "data",
            ValueKind::Deterministic => "deterministic",
        }
    }
}

/// One write. A store applies a list of them in order, in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    /// Inserts the invocation or replaces its fields (its result, exception and history stay).
    /// A status different from the stored one must be an allowed transition.
    UpsertInvocation(Invocation),
    /// Appends a history entry; a status moves the invocation to it (an allowed transition).
    AddHistory(InvocationHistory),
    /// Sets the result (JSON text) of an existing invocation.
    SetResult {
        invocation_id: String,
        value: String,
    },
    /// Sets the exception of an existing invocation.
    SetException {
        invocation_id: String,
        exception: ExceptionRecord,
    },
    /// Sets a workflow value (JSON text).
    SetWorkflowValue {
        workflow_id: String,
        kind: ValueKind,
        key: String,
        value: String,
    },
    /// Registers (or replaces) an app's information.
    StoreAppInfo(AppInfo),
    /// Records a workflow run (idempotent by workflow id).
    StoreWorkflowRun(WorkflowIdentity),
    /// Records that `sub_invocation_id` runs inside `parent_workflow_id` (idempotent).
    StoreSubInvocation {
        parent_workflow_id: String,
        sub_invocation_id: String,
    },
}

impl WriteOp {
    /// The invocation this write is about, if any.
    pub fn invocation_id(&self) -> Option<&str> {
        match self {
            WriteOp::UpsertInvocation(inv) => Some(&inv.invocation_id),
            WriteOp::AddHistory(h) => Some(&h.invocation_id),
            WriteOp::SetResult { invocation_id, .. }
            | WriteOp::SetException { invocation_id, .. } => Some(invocation_id),
            _ => None,
        }
    }

    /// A short description for error messages, e.g. `add_history(invocation "x")`.
    pub fn describe(&self) -> String {
        match self {
            WriteOp::UpsertInvocation(inv) => format!("upsert_invocation({:?})", inv.invocation_id),
            WriteOp::AddHistory(h) => format!(
                "add_history({:?}, status={})",
                h.invocation_id,
                h.status.map_or("None", |s| s.as_str())
            ),
            WriteOp::SetResult { invocation_id, .. } => format!("set_result({invocation_id:?})"),
            WriteOp::SetException { invocation_id, .. } => {
                format!("set_exception({invocation_id:?})")
            }
            WriteOp::SetWorkflowValue {
                workflow_id,
                kind: ValueKind::Data,
                key,
                ..
            } => {
                format!("set_workflow_data({workflow_id:?}, {key:?})")
            }
            WriteOp::SetWorkflowValue {
                workflow_id,
                kind: ValueKind::Deterministic,
                key,
                ..
            } => {
                format!("set_workflow_deterministic_value({workflow_id:?}, {key:?})")
            }
            WriteOp::StoreAppInfo(info) => format!("store_app_info({:?})", info.app_id),
            WriteOp::StoreWorkflowRun(wf) => format!("store_workflow_run({:?})", wf.workflow_id),
            WriteOp::StoreSubInvocation {
                parent_workflow_id,
                sub_invocation_id,
            } => {
                format!(
                    "store_workflow_sub_invocation({parent_workflow_id:?}, {sub_invocation_id:?})"
                )
            }
        }
    }

    /// Checks the write's own fields (not the stored state), naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        match self {
            WriteOp::UpsertInvocation(inv) => inv.validate(),
            WriteOp::AddHistory(h) => h.validate(),
            WriteOp::SetResult {
                invocation_id,
                value,
            } => {
                super::non_empty("invocation_id", invocation_id)?;
                super::check_json("result", value)
            }
            WriteOp::SetException {
                invocation_id,
                exception,
            } => {
                super::non_empty("invocation_id", invocation_id)?;
                exception.validate()
            }
            WriteOp::SetWorkflowValue {
                workflow_id,
                key,
                value,
                ..
            } => {
                super::non_empty("workflow_id", workflow_id)?;
                crate::validate::text(
                    &format!("workflow key {key:?}"),
                    key,
                    crate::validate::MAX_KEY_BYTES,
                )?;
                super::check_json(&format!("workflow value {key:?}"), value)
            }
            WriteOp::StoreAppInfo(info) => info.validate(),
            WriteOp::StoreWorkflowRun(wf) => wf.validate(),
            WriteOp::StoreSubInvocation {
                parent_workflow_id,
                sub_invocation_id,
            } => {
                super::non_empty("parent_workflow_id", parent_workflow_id)?;
                super::non_empty("sub_invocation_id", sub_invocation_id)
            }
        }
    }
}

/// A write the store refused (the rest of its batch was applied): its index in the batch and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub index: usize,
    pub error: Error,
}

/// The state contract every database implements with the same semantics.
#[async_trait]
pub trait StateStore: Send + Sync + std::fmt::Debug {
    /// Applies `ops` in order in one transaction. A write that is invalid against the stored
    /// state (unknown invocation, forbidden transition) is skipped and returned as [`Rejected`];
    /// the others are applied. `Err` means nothing was applied.
    async fn apply(&self, ops: Vec<WriteOp>) -> Result<Vec<Rejected>>;

    /// One invocation; `InvocationNotFound` if unknown.
    async fn get_invocation(&self, invocation_id: &str) -> Result<Invocation>;

    /// The history of an invocation in timestamp order; `InvocationNotFound` if unknown.
    async fn get_history(&self, invocation_id: &str) -> Result<Vec<InvocationHistory>>;

    /// The result (JSON text), `None` if none was set; `InvocationNotFound` if unknown.
    async fn get_result(&self, invocation_id: &str) -> Result<Option<String>>;

    /// The exception, `None` if none was set; `InvocationNotFound` if unknown.
    async fn get_exception(&self, invocation_id: &str) -> Result<Option<ExceptionRecord>>;

    /// A workflow value (JSON text), `None` if unset.
    async fn get_workflow_value(
        &self,
        workflow_id: &str,
        kind: ValueKind,
        key: &str,
    ) -> Result<Option<String>>;

    /// One app's information, `None` if unknown.
    async fn get_app_info(&self, app_id: &str) -> Result<Option<AppInfo>>;

    /// Every registered app, ordered by app id.
    async fn get_all_app_infos(&self) -> Result<Vec<AppInfo>>;

    /// Distinct workflow types of the stored runs, sorted.
    async fn get_workflow_types(&self) -> Result<Vec<String>>;

    /// Stored workflow runs (of `workflow_type`, if given), in the order first stored.
    async fn get_workflow_runs(&self, workflow_type: Option<&str>)
    -> Result<Vec<WorkflowIdentity>>;

    /// Sub-invocation ids of a workflow, in the order first stored.
    async fn get_workflow_sub_invocations(&self, workflow_id: &str) -> Result<Vec<String>>;

    /// Invocations of `task_id`, newest first (`created_at`, then insertion order), at most `limit`.
    async fn get_invocations_by_task(&self, task_id: &str, limit: usize)
    -> Result<Vec<Invocation>>;

    /// Deletes invocations with their history, result and exception; returns how many existed.
    async fn delete_invocations(&self, invocation_ids: &[String]) -> Result<u64>;

    /// Closes the store: later calls fail with a clear `Store` error.
    async fn close(&self);

    /// Upserts one invocation (see [`WriteOp::UpsertInvocation`]).
    async fn upsert_invocation(&self, invocation: Invocation) -> Result<()> {
        self.apply_one(WriteOp::UpsertInvocation(invocation)).await
    }

    /// Adds one history entry (see [`WriteOp::AddHistory`]).
    async fn add_history(&self, history: InvocationHistory) -> Result<()> {
        self.apply_one(WriteOp::AddHistory(history)).await
    }

    /// Applies one write, returning its rejection as the error.
    async fn apply_one(&self, op: WriteOp) -> Result<()> {
        op.validate()?;
        match self.apply(vec![op]).await?.pop() {
            Some(rejected) => Err(rejected.error),
            None => Ok(()),
        }
    }
}

pub(crate) fn invocation_not_found(invocation_id: &str) -> Error {
    Error::InvocationNotFound(format!("invocation {invocation_id:?} does not exist"))
}

pub(crate) fn closed_error() -> Error {
    Error::Store("the state backend is closed: connect again to use it".into())
}
