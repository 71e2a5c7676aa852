//! In-process state store (`memory://`): the same semantics as the SQL stores, nothing durable.

use super::plan::{Plan, StoredInvocation};
use super::store::{Rejected, StateStore, ValueKind, WriteOp, closed_error, invocation_not_found};
use super::{AppInfo, ExceptionRecord, Invocation, InvocationHistory, WorkflowIdentity};
use crate::error::Result;
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

#[derive(Debug, Default)]
struct Tables {
    /// Invocation rows with their insertion sequence.
    invocations: HashMap<String, (u64, StoredInvocation)>,
    next_seq: u64,
    history: HashMap<String, Vec<InvocationHistory>>,
    values: HashMap<(String, ValueKind, String), String>,
    app_infos: BTreeMap<String, AppInfo>,
    workflow_runs: Vec<WorkflowIdentity>,
    run_index: HashMap<String, usize>,
    sub_invocations: HashMap<String, Vec<String>>,
    closed: bool,
}

/// The in-memory state store.
#[derive(Debug, Default)]
pub struct MemoryStateStore {
    tables: Mutex<Tables>,
}

impl MemoryStateStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, work: impl FnOnce(&mut Tables) -> Result<T>) -> Result<T> {
        let mut tables = self.tables.lock().expect("memory state store poisoned");
        if tables.closed {
            return Err(closed_error());
        }
        work(&mut tables)
    }

    fn row<T>(&self, invocation_id: &str, read: impl FnOnce(&StoredInvocation) -> T) -> Result<T> {
        self.with(|t| {
            t.invocations
                .get(invocation_id)
                .map(|(_, row)| read(row))
                .ok_or_else(|| invocation_not_found(invocation_id))
        })
    }
}

#[async_trait]
impl StateStore for MemoryStateStore {
    async fn apply(&self, ops: Vec<WriteOp>) -> Result<Vec<Rejected>> {
        self.with(|t| {
            let current = Plan::touched_invocations(&ops)
                .into_iter()
                .filter_map(|id| t.invocations.get(&id).map(|(_, row)| (id, row.clone())))
                .collect();
            let plan = Plan::build(ops, current);
            for row in plan.invocations {
                let id = row.invocation.invocation_id.clone();
                match t.invocations.get_mut(&id) {
                    Some(slot) => slot.1 = row,
                    None => {
                        t.next_seq += 1;
                        t.invocations.insert(id, (t.next_seq, row));
                    }
                }
            }
            for entry in plan.history {
                t.history
                    .entry(entry.invocation_id.clone())
                    .or_default()
                    .push(entry);
            }
            for (workflow_id, kind, key, value) in plan.values {
                t.values.insert((workflow_id, kind, key), value);
            }
            for info in plan.app_infos {
                t.app_infos.insert(info.app_id.clone(), info);
            }
            for wf in plan.workflow_runs {
                if !t.run_index.contains_key(&wf.workflow_id) {
                    t.run_index
                        .insert(wf.workflow_id.clone(), t.workflow_runs.len());
                    t.workflow_runs.push(wf);
                }
            }
            for (parent, sub) in plan.sub_invocations {
                let subs = t.sub_invocations.entry(parent).or_default();
                if !subs.contains(&sub) {
                    subs.push(sub);
                }
            }
            Ok(plan.rejected)
        })
    }

    async fn get_invocation(&self, invocation_id: &str) -> Result<Invocation> {
        self.row(invocation_id, |row| row.invocation.clone())
    }

    async fn get_history(&self, invocation_id: &str) -> Result<Vec<InvocationHistory>> {
        self.with(|t| {
            if !t.invocations.contains_key(invocation_id) {
                return Err(invocation_not_found(invocation_id));
            }
            let mut history = t.history.get(invocation_id).cloned().unwrap_or_default();
            history.sort_by_key(|h| h.timestamp);
            Ok(history)
        })
    }

    async fn get_result(&self, invocation_id: &str) -> Result<Option<String>> {
        self.row(invocation_id, |row| row.result.clone())
    }

    async fn get_exception(&self, invocation_id: &str) -> Result<Option<ExceptionRecord>> {
        self.row(invocation_id, |row| row.exception.clone())
    }

    async fn get_workflow_value(
        &self,
        workflow_id: &str,
        kind: ValueKind,
        key: &str,
    ) -> Result<Option<String>> {
        self.with(|t| {
            Ok(t.values
                .get(&(workflow_id.to_string(), kind, key.to_string()))
                .cloned())
        })
    }

    async fn get_app_info(&self, app_id: &str) -> Result<Option<AppInfo>> {
        self.with(|t| Ok(t.app_infos.get(app_id).cloned()))
    }

    async fn get_all_app_infos(&self) -> Result<Vec<AppInfo>> {
        self.with(|t| Ok(t.app_infos.values().cloned().collect()))
    }

    async fn get_workflow_types(&self) -> Result<Vec<String>> {
        self.with(|t| {
            let mut types: Vec<String> = t
                .workflow_runs
                .iter()
                .map(|wf| wf.workflow_type.clone())
                .collect();
            types.sort();
            types.dedup();
            Ok(types)
        })
    }

    async fn get_workflow_runs(
        &self,
        workflow_type: Option<&str>,
    ) -> Result<Vec<WorkflowIdentity>> {
        self.with(|t| {
            Ok(t.workflow_runs
                .iter()
                .filter(|wf| workflow_type.is_none_or(|ty| wf.workflow_type == ty))
                .cloned()
                .collect())
        })
    }

    async fn get_workflow_sub_invocations(&self, workflow_id: &str) -> Result<Vec<String>> {
        self.with(|t| {
            Ok(t.sub_invocations
                .get(workflow_id)
                .cloned()
                .unwrap_or_default())
        })
    }

    async fn get_invocations_by_task(
        &self,
        task_id: &str,
        limit: usize,
    ) -> Result<Vec<Invocation>> {
        self.with(|t| {
            let mut rows: Vec<&(u64, StoredInvocation)> = t
                .invocations
                .values()
                .filter(|(_, row)| row.invocation.task_id == task_id)
                .collect();
            rows.sort_by(|a, b| {
                (b.1.invocation.created_at, b.0).cmp(&(a.1.invocation.created_at, a.0))
            });
            Ok(rows
                .into_iter()
                .take(limit)
                .map(|(_, row)| row.invocation.clone())
                .collect())
        })
    }

    async fn delete_invocations(&self, invocation_ids: &[String]) -> Result<u64> {
        self.with(|t| {
            let mut deleted = 0;
            for id in invocation_ids {
                if t.invocations.remove(id).is_some() {
                    deleted += 1;
                }
                t.history.remove(id);
            }
            Ok(deleted)
        })
    }

    async fn close(&self) {
        let mut tables = self.tables.lock().expect("memory state store poisoned");
        *tables = Tables {
            closed: true,
            ..Tables::default()
        };
    }
}
