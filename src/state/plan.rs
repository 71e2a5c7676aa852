//! Turns a batch of writes plus the stored rows they touch into the final rows to write, so
//! every store validates and merges identically (and a batch writes each row once).

use super::store::{Rejected, ValueKind, WriteOp, invocation_not_found};
use super::{AppInfo, ExceptionRecord, Invocation, InvocationHistory, WorkflowIdentity};
use std::collections::{HashMap, HashSet};

/// An invocation row: the invocation with its result and exception.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredInvocation {
    pub invocation: Invocation,
    /// Result as JSON text.
    pub result: Option<String>,
    pub exception: Option<ExceptionRecord>,
}

/// What a batch writes, after validation against the stored state.
#[derive(Debug, Default)]
pub struct Plan {
    /// Final rows of the invocations the batch changed, one per id, in first-touched order.
    pub invocations: Vec<StoredInvocation>,
    /// History entries to append, in order.
    pub history: Vec<InvocationHistory>,
    /// Workflow values to set: (workflow_id, kind, key, value), one per key (last write wins).
    pub values: Vec<(String, ValueKind, String, String)>,
    /// App infos to store, one per app id (last write wins).
    pub app_infos: Vec<AppInfo>,
    /// Workflow runs to record if new, one per workflow id (first write wins).
    pub workflow_runs: Vec<WorkflowIdentity>,
    /// (parent_workflow_id, sub_invocation_id) pairs to record if new.
    pub sub_invocations: Vec<(String, String)>,
    /// Writes refused with the reason.
    pub rejected: Vec<Rejected>,
}

impl Plan {
    /// Distinct invocation ids the writes touch (the rows a store must read first).
    pub fn touched_invocations(ops: &[WriteOp]) -> Vec<String> {
        let mut seen = HashSet::new();
        ops.iter()
            .filter_map(WriteOp::invocation_id)
            .filter(|id| seen.insert(*id))
            .map(str::to_string)
            .collect()
    }

    /// Validates `ops` in order against `current` (the stored rows of the touched invocations)
    /// and computes what to write.
    pub fn build(ops: Vec<WriteOp>, mut current: HashMap<String, StoredInvocation>) -> Plan {
        let mut plan = Plan::default();
        let mut changed: Vec<String> = Vec::new();
        let mut changed_set: HashSet<String> = HashSet::new();
        let mut value_index: HashMap<(String, ValueKind, String), usize> = HashMap::new();
        let mut app_index: HashMap<String, usize> = HashMap::new();
        let mut runs_seen: HashSet<String> = HashSet::new();
        let mut subs_seen: HashSet<(String, String)> = HashSet::new();
        let mut mark = |id: &str, changed: &mut Vec<String>| {
            if changed_set.insert(id.to_string()) {
                changed.push(id.to_string());
            }
        };
        for (index, op) in ops.into_iter().enumerate() {
            if let Err(error) = op.validate() {
                plan.rejected.push(Rejected { index, error });
                continue;
            }
            match op {
                WriteOp::UpsertInvocation(inv) => {
                    let id = inv.invocation_id.clone();
                    match current.get_mut(&id) {
                        Some(row) => {
                            let current = row.invocation.status;
                            if current != inv.status
                                && let Err(error) = current.check_transition(inv.status, &id)
                            {
                                plan.rejected.push(Rejected { index, error });
                                continue;
                            }
                            row.invocation = inv;
                        }
                        None => {
                            current.insert(
                                id.clone(),
                                StoredInvocation {
                                    invocation: inv,
                                    result: None,
                                    exception: None,
                                },
                            );
                        }
                    }
                    mark(&id, &mut changed);
                }
                WriteOp::AddHistory(history) => {
                    let id = history.invocation_id.clone();
                    let Some(row) = current.get_mut(&id) else {
                        plan.rejected.push(Rejected {
                            index,
                            error: invocation_not_found(&id),
                        });
                        continue;
                    };
                    if let Some(next) = history.status {
                        if let Err(error) = row.invocation.status.check_transition(next, &id) {
                            plan.rejected.push(Rejected { index, error });
                            continue;
                        }
                        row.invocation.status = next;
                        mark(&id, &mut changed);
                    }
                    plan.history.push(history);
                }
                WriteOp::SetResult {
                    invocation_id,
                    value,
                } => {
                    let Some(row) = current.get_mut(&invocation_id) else {
                        plan.rejected.push(Rejected {
                            index,
                            error: invocation_not_found(&invocation_id),
                        });
                        continue;
                    };
                    row.result = Some(value);
                    mark(&invocation_id, &mut changed);
                }
                WriteOp::SetException {
                    invocation_id,
                    exception,
                } => {
                    let Some(row) = current.get_mut(&invocation_id) else {
                        plan.rejected.push(Rejected {
                            index,
                            error: invocation_not_found(&invocation_id),
                        });
                        continue;
                    };
                    row.exception = Some(exception);
                    mark(&invocation_id, &mut changed);
                }
                WriteOp::SetWorkflowValue {
                    workflow_id,
                    kind,
                    key,
                    value,
                } => {
                    let slot = (workflow_id.clone(), kind, key.clone());
                    match value_index.get(&slot) {
                        Some(&at) => plan.values[at].3 = value,
                        None => {
                            value_index.insert(slot, plan.values.len());
                            plan.values.push((workflow_id, kind, key, value));
                        }
                    }
                }
                WriteOp::StoreAppInfo(info) => match app_index.get(&info.app_id) {
                    Some(&at) => plan.app_infos[at] = info,
                    None => {
                        app_index.insert(info.app_id.clone(), plan.app_infos.len());
                        plan.app_infos.push(info);
                    }
                },
                WriteOp::StoreWorkflowRun(wf) => {
                    if runs_seen.insert(wf.workflow_id.clone()) {
                        plan.workflow_runs.push(wf);
                    }
                }
                WriteOp::StoreSubInvocation {
                    parent_workflow_id,
                    sub_invocation_id,
                } => {
                    let pair = (parent_workflow_id, sub_invocation_id);
                    if subs_seen.insert(pair.clone()) {
                        plan.sub_invocations.push(pair);
                    }
                }
            }
        }
        plan.invocations = changed
            .into_iter()
            .map(|id| current.remove(&id).expect("changed rows are known"))
            .collect();
        plan
    }
}
