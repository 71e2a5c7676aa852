//! Tuples the pynenc store exchanges with Python.

use crate::state::pynenc::{PynencInvocation, Refused, TransitionRefusal, WorkflowRun};

/// `(invocation_id, call_id_key, task_id_key, serialized_arguments_json, parent_invocation_id,
/// parent_event_id, workflow_id, workflow_type_key, parent_workflow_id)`.
pub(super) type InvocationRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// `(workflow_id, workflow_type_key, parent_workflow_id)`.
pub(super) type WorkflowRunRow = (String, String, Option<String>);

/// `(invocation_id, kind, from_status, to_status, allowed_statuses, current_owner,
/// attempted_owner, reason)`; kind is `"transition"` or `"ownership"`.
pub(super) type RefusalRow = (
    String,
    &'static str,
    Option<&'static str>,
    &'static str,
    Vec<&'static str>,
    Option<String>,
    Option<String>,
    String,
);

pub(super) fn invocation_row(row: InvocationRow) -> PynencInvocation {
    let (id, call, task, args, parent, event, wf_id, wf_type, wf_parent) = row;
    let workflow = match (wf_id, wf_type) {
        (Some(workflow_id), Some(workflow_type_key)) => Some(WorkflowRun {
            workflow_id,
            workflow_type_key,
            parent_workflow_id: wf_parent,
        }),
        _ => None,
    };
    PynencInvocation {
        invocation_id: id,
        call_id_key: call,
        task_id_key: task,
        serialized_arguments: args,
        parent_invocation_id: parent,
        parent_event_id: event,
        workflow,
    }
}

pub(super) fn invocation_tuple(inv: PynencInvocation) -> InvocationRow {
    let (wf_id, wf_type, wf_parent) = match inv.workflow {
        Some(w) => (
            Some(w.workflow_id),
            Some(w.workflow_type_key),
            w.parent_workflow_id,
        ),
        None => (None, None, None),
    };
    (
        inv.invocation_id,
        inv.call_id_key,
        inv.task_id_key,
        inv.serialized_arguments,
        inv.parent_invocation_id,
        inv.parent_event_id,
        wf_id,
        wf_type,
        wf_parent,
    )
}

pub(super) fn refusal_rows(refused: Vec<Refused>) -> Vec<RefusalRow> {
    refused
        .into_iter()
        .map(|r| {
            let reason = r.refusal.to_string();
            match r.refusal {
                TransitionRefusal::Transition { from, to, allowed } => (
                    r.invocation_id,
                    "transition",
                    from.map(|s| s.as_str()),
                    to.as_str(),
                    allowed.iter().map(|s| s.as_str()).collect(),
                    None,
                    None,
                    reason,
                ),
                TransitionRefusal::Ownership {
                    from,
                    to,
                    current_owner,
                    attempted_owner,
                    reason,
                } => (
                    r.invocation_id,
                    "ownership",
                    Some(from.as_str()),
                    to.as_str(),
                    Vec::new(),
                    current_owner,
                    attempted_owner,
                    reason,
                ),
            }
        })
        .collect()
}
