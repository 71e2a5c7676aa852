//! In-memory pynenc store: one process, one lock; the same semantics as the SQL stores.

use super::history::HistoryEntry;
use super::status::StatusRecord;
use super::store::{
    PynencInvocation, PynencStore, PynencWrite, Refused, Transitions, WorkflowRun, check_entry,
    closed_error,
};
use crate::error::Result;
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

#[derive(Debug, Default)]
struct AppState {
    invocations: BTreeMap<String, PynencInvocation>,
    /// Per invocation: (time, insertion number, entry), kept sorted.
    history: HashMap<String, Vec<(i64, u64, HistoryEntry)>>,
    results: HashMap<String, String>,
    exceptions: HashMap<String, String>,
    runner_contexts: BTreeMap<String, String>,
    workflow_runs: Vec<WorkflowRun>,
    workflow_data: HashMap<(String, String), String>,
    sub_invocations: Vec<(String, String)>,
    sub_invocation_set: HashSet<(String, String)>,
}

#[derive(Debug, Default)]
struct State {
    apps: HashMap<String, AppState>,
    app_infos: BTreeMap<String, String>,
    next_seq: u64,
    closed: bool,
}

/// The in-memory pynenc store.
#[derive(Debug, Default)]
pub struct MemoryPynencStore {
    state: Mutex<State>,
}

impl MemoryPynencStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, work: impl FnOnce(&mut State) -> T) -> Result<T> {
        let mut state = self.state.lock().expect("memory pynenc store poisoned");
        if state.closed {
            return Err(closed_error());
        }
        Ok(work(&mut state))
    }

    fn with_app<T>(&self, app: &str, work: impl FnOnce(&AppState) -> T) -> Result<T> {
        self.with(|state| match state.apps.get(app) {
            Some(app_state) => work(app_state),
            None => work(&AppState::default()),
        })
    }
}

fn latest_record(app: &AppState, invocation_id: &str) -> Option<StatusRecord> {
    app.history
        .get(invocation_id)
        .and_then(|entries| entries.last())
        .map(|(_, _, e)| StatusRecord {
            status: e.status,
            runner_id: e.status_runner_id.clone(),
        })
}

fn apply_one(state: &mut State, app: &str, write: PynencWrite) {
    if let PynencWrite::StoreAppInfo { app_id, info_json } = write {
        state.app_infos.insert(app_id, info_json);
        return;
    }
    state.next_seq += 1;
    let seq = state.next_seq;
    let app_state = state.apps.entry(app.to_string()).or_default();
    match write {
        PynencWrite::UpsertInvocation(inv) => {
            app_state.invocations.insert(inv.invocation_id.clone(), inv);
        }
        PynencWrite::AddHistory(entry) => {
            let entries = app_state
                .history
                .entry(entry.invocation_id.clone())
                .or_default();
            let key = (entry.timestamp_us, seq);
            let at = entries.partition_point(|(t, s, _)| (*t, *s) <= key);
            entries.insert(at, (entry.timestamp_us, seq, entry));
        }
        PynencWrite::SetResult {
            invocation_id,
            value,
        } => {
            app_state.results.insert(invocation_id, value);
        }
        PynencWrite::SetException {
            invocation_id,
            value,
        } => {
            app_state.exceptions.insert(invocation_id, value);
        }
        PynencWrite::SetWorkflowData {
            workflow_id,
            key,
            value,
        } => {
            app_state.workflow_data.insert((workflow_id, key), value);
        }
        PynencWrite::StoreWorkflowRun(run) => {
            if !app_state
                .workflow_runs
                .iter()
                .any(|r| r.workflow_id == run.workflow_id)
            {
                app_state.workflow_runs.push(run);
            }
        }
        PynencWrite::StoreSubInvocation {
            parent_workflow_id,
            sub_invocation_id,
        } => {
            let pair = (parent_workflow_id, sub_invocation_id);
            if app_state.sub_invocation_set.insert(pair.clone()) {
                app_state.sub_invocations.push(pair);
            }
        }
        PynencWrite::StoreRunnerContext {
            runner_id,
            context_json,
        } => {
            app_state.runner_contexts.insert(runner_id, context_json);
        }
        PynencWrite::StoreAppInfo { .. } => unreachable!("handled above"),
    }
}

fn all_history(app: &AppState, start_us: i64, end_us: i64) -> Vec<&(i64, u64, HistoryEntry)> {
    let mut entries: Vec<_> = app
        .history
        .values()
        .flatten()
        .filter(|(t, _, _)| *t >= start_us && *t <= end_us)
        .collect();
    entries.sort_by_key(|(t, s, _)| (*t, *s));
    entries
}

#[async_trait]
impl PynencStore for MemoryPynencStore {
    async fn apply(
        &self,
        app: &str,
        writes: Vec<PynencWrite>,
        transitions: Transitions,
    ) -> Result<Vec<Refused>> {
        self.with(|state| {
            let mut refused = Vec::new();
            for (index, write) in writes.into_iter().enumerate() {
                if let (Transitions::Enforce, PynencWrite::AddHistory(entry)) =
                    (transitions, &write)
                {
                    let current = state
                        .apps
                        .get(app)
                        .and_then(|a| latest_record(a, &entry.invocation_id));
                    if let Err(refusal) = check_entry(current.as_ref(), entry) {
                        refused.push(Refused {
                            index,
                            invocation_id: entry.invocation_id.clone(),
                            refusal,
                        });
                        continue;
                    }
                }
                apply_one(state, app, write);
            }
            refused
        })
    }

    async fn get_invocation(
        &self,
        app: &str,
        invocation_id: &str,
    ) -> Result<Option<PynencInvocation>> {
        self.with_app(app, |a| a.invocations.get(invocation_id).cloned())
    }

    async fn get_history(&self, app: &str, invocation_id: &str) -> Result<Vec<HistoryEntry>> {
        self.with_app(app, |a| {
            a.history
                .get(invocation_id)
                .map(|entries| entries.iter().map(|(_, _, e)| e.clone()).collect())
                .unwrap_or_default()
        })
    }

    async fn get_result(&self, app: &str, invocation_id: &str) -> Result<Option<String>> {
        self.with_app(app, |a| a.results.get(invocation_id).cloned())
    }

    async fn get_exception(&self, app: &str, invocation_id: &str) -> Result<Option<String>> {
        self.with_app(app, |a| a.exceptions.get(invocation_id).cloned())
    }

    async fn get_workflow_data(
        &self,
        app: &str,
        workflow_id: &str,
        key: &str,
    ) -> Result<Option<String>> {
        self.with_app(app, |a| {
            a.workflow_data
                .get(&(workflow_id.to_string(), key.to_string()))
                .cloned()
        })
    }

    async fn get_app_info(&self, app_id: &str) -> Result<Option<String>> {
        self.with(|state| state.app_infos.get(app_id).cloned())
    }

    async fn all_app_infos(&self) -> Result<Vec<(String, String)>> {
        self.with(|state| {
            state
                .app_infos
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
    }

    async fn workflow_types(&self, app: &str) -> Result<Vec<String>> {
        self.with_app(app, |a| {
            let mut types: Vec<String> = a
                .workflow_runs
                .iter()
                .map(|r| r.workflow_type_key.clone())
                .collect();
            types.sort();
            types.dedup();
            types
        })
    }

    async fn workflow_runs(
        &self,
        app: &str,
        workflow_type_key: Option<&str>,
    ) -> Result<Vec<WorkflowRun>> {
        self.with_app(app, |a| {
            a.workflow_runs
                .iter()
                .filter(|r| workflow_type_key.is_none_or(|t| r.workflow_type_key == t))
                .cloned()
                .collect()
        })
    }

    async fn sub_invocations(&self, app: &str, workflow_id: &str) -> Result<Vec<String>> {
        self.with_app(app, |a| {
            a.sub_invocations
                .iter()
                .filter(|(parent, _)| parent == workflow_id)
                .map(|(_, sub)| sub.clone())
                .collect()
        })
    }

    async fn child_invocations(
        &self,
        app: &str,
        parent_invocation_id: &str,
    ) -> Result<Vec<String>> {
        self.with_app(app, |a| {
            a.invocations
                .values()
                .filter(|i| i.parent_invocation_id.as_deref() == Some(parent_invocation_id))
                .map(|i| i.invocation_id.clone())
                .collect()
        })
    }

    async fn invocations_by_parent_event(
        &self,
        app: &str,
        parent_event_id: &str,
    ) -> Result<Vec<String>> {
        self.with_app(app, |a| {
            a.invocations
                .values()
                .filter(|i| i.parent_event_id.as_deref() == Some(parent_event_id))
                .map(|i| i.invocation_id.clone())
                .collect()
        })
    }

    async fn invocations_by_workflow(
        &self,
        app: &str,
        workflow_id: Option<&str>,
        workflow_type_key: Option<&str>,
    ) -> Result<Vec<String>> {
        self.with_app(app, |a| {
            a.invocations
                .values()
                .filter(|i| {
                    let wf = i.workflow.as_ref();
                    workflow_id.is_none_or(|id| wf.is_some_and(|w| w.workflow_id == id))
                        && workflow_type_key
                            .is_none_or(|t| wf.is_some_and(|w| w.workflow_type_key == t))
                })
                .map(|i| i.invocation_id.clone())
                .collect()
        })
    }

    async fn history_in_range(
        &self,
        app: &str,
        start_us: i64,
        end_us: i64,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<HistoryEntry>> {
        self.with_app(app, |a| {
            all_history(a, start_us, end_us)
                .into_iter()
                .skip(offset)
                .take(limit)
                .map(|(_, _, e)| e.clone())
                .collect()
        })
    }

    async fn invocations_in_range(
        &self,
        app: &str,
        start_us: i64,
        end_us: i64,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<String>> {
        self.with_app(app, |a| {
            let mut ids: Vec<String> = all_history(a, start_us, end_us)
                .into_iter()
                .map(|(_, _, e)| e.invocation_id.clone())
                .collect();
            ids.sort();
            ids.dedup();
            ids.into_iter().skip(offset).take(limit).collect()
        })
    }

    async fn runner_contexts(&self, app: &str, runner_ids: &[String]) -> Result<Vec<String>> {
        self.with_app(app, |a| {
            runner_ids
                .iter()
                .filter_map(|id| a.runner_contexts.get(id).cloned())
                .collect()
        })
    }

    async fn matching_runner_contexts(&self, app: &str, partial_id: &str) -> Result<Vec<String>> {
        self.with_app(app, |a| {
            a.runner_contexts
                .iter()
                .filter(|(id, _)| id.contains(partial_id))
                .map(|(_, json)| json.clone())
                .collect()
        })
    }

    async fn purge(&self, app: &str) -> Result<()> {
        self.with(|state| {
            state.apps.remove(app);
            state.app_infos.remove(app);
        })
    }

    async fn close(&self) {
        self.state
            .lock()
            .expect("memory pynenc store poisoned")
            .closed = true;
    }
}
