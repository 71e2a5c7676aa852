//! Reads that consult the overlay before the store.

use super::writer::check_state;
use super::{PendingInvocation, WriteBehind};
use crate::error::{Error, Result};
use crate::state::store::ValueKind;
use crate::state::{
    AppInfo, ExceptionRecord, Invocation, InvocationHistory, InvocationStatus, WorkflowIdentity,
};
use std::collections::{BTreeMap, HashMap, HashSet};

impl WriteBehind {
    /// One invocation, including this layer's pending writes; `InvocationNotFound` if unknown.
    pub async fn get_invocation(&self, invocation_id: &str) -> Result<Invocation> {
        let status = {
            let mut st = self.inner.lock();
            check_state(&mut st)?;
            match st.overlay.invocations.get(invocation_id) {
                Some(PendingInvocation {
                    record: Some(record),
                    ..
                }) => return Ok(record.clone()),
                Some(p) => p.status,
                None => None,
            }
        };
        let mut invocation = self.inner.store.get_invocation(invocation_id).await?;
        if let Some(status) = status {
            invocation.status = status;
        }
        Ok(invocation)
    }

    /// The history of an invocation in timestamp order, including pending entries.
    pub async fn get_history(&self, invocation_id: &str) -> Result<Vec<InvocationHistory>> {
        let pending = {
            let mut st = self.inner.lock();
            check_state(&mut st)?;
            st.overlay
                .invocations
                .get(invocation_id)
                .map(|p| p.history.iter().map(|(_, h)| h.clone()).collect::<Vec<_>>())
        };
        let mut history = match self.inner.store.get_history(invocation_id).await {
            Ok(stored) => stored,
            Err(Error::InvocationNotFound(_)) if pending.is_some() => Vec::new(),
            Err(err) => return Err(err),
        };
        if let Some(pending) = pending {
            let stored: HashSet<i64> = history.iter().map(|h| h.entry_key).collect();
            history.extend(
                pending
                    .into_iter()
                    .filter(|h| !stored.contains(&h.entry_key)),
            );
            history.sort_by_key(|h| h.timestamp);
        }
        Ok(history)
    }

    /// The result (JSON text) or `None` if unset; `InvocationNotFound` if unknown.
    pub async fn get_result(&self, invocation_id: &str) -> Result<Option<String>> {
        let known = {
            let mut st = self.inner.lock();
            check_state(&mut st)?;
            match st.overlay.invocations.get(invocation_id) {
                Some(PendingInvocation {
                    result: Some(value),
                    ..
                }) => return Ok(Some(value.clone())),
                Some(_) => true,
                None => false,
            }
        };
        match self.inner.store.get_result(invocation_id).await {
            Err(Error::InvocationNotFound(_)) if known => Ok(None),
            other => other,
        }
    }

    /// The exception or `None` if unset; `InvocationNotFound` if unknown.
    pub async fn get_exception(&self, invocation_id: &str) -> Result<Option<ExceptionRecord>> {
        let known = {
            let mut st = self.inner.lock();
            check_state(&mut st)?;
            match st.overlay.invocations.get(invocation_id) {
                Some(PendingInvocation {
                    exception: Some(exc),
                    ..
                }) => return Ok(Some(exc.clone())),
                Some(_) => true,
                None => false,
            }
        };
        match self.inner.store.get_exception(invocation_id).await {
            Err(Error::InvocationNotFound(_)) if known => Ok(None),
            other => other,
        }
    }

    /// A workflow value (JSON text) or `None`.
    pub async fn get_workflow_value(
        &self,
        workflow_id: &str,
        kind: ValueKind,
        key: &str,
    ) -> Result<Option<String>> {
        {
            let mut st = self.inner.lock();
            check_state(&mut st)?;
            let slot = (workflow_id.to_string(), kind, key.to_string());
            if let Some((_, value)) = st.overlay.values.get(&slot) {
                return Ok(Some(value.clone()));
            }
        }
        self.inner
            .store
            .get_workflow_value(workflow_id, kind, key)
            .await
    }

    /// The information of this layer's app: the last one stored through it, else `app_id`
    /// given to [`WriteBehind::set_app_id`]; `NotFound` when there is none.
    pub async fn get_app_info(&self) -> Result<AppInfo> {
        self.check()?;
        let app_id = self
            .app_id
            .lock()
            .expect("app id poisoned")
            .clone()
            .ok_or_else(|| {
                Error::NotFound(
                    "no app info: this state backend has not stored one (store_app_info)".into(),
                )
            })?;
        self.get_app_info_of(&app_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no app info stored for app {app_id:?}")))
    }

    /// Makes `app_id` the app [`WriteBehind::get_app_info`] reads.
    pub fn set_app_id(&self, app_id: Option<String>) {
        *self.app_id.lock().expect("app id poisoned") = app_id;
    }

    /// One app's information or `None`.
    pub async fn get_app_info_of(&self, app_id: &str) -> Result<Option<AppInfo>> {
        {
            let mut st = self.inner.lock();
            check_state(&mut st)?;
            if let Some((_, info)) = st.overlay.app_infos.get(app_id) {
                return Ok(Some(info.clone()));
            }
        }
        self.inner.store.get_app_info(app_id).await
    }

    /// Every registered app, by app id.
    pub async fn get_all_app_infos(&self) -> Result<BTreeMap<String, AppInfo>> {
        // Set-like reads take the overlay before the store: a write pruned in between is in
        // the store by then, so nothing is missed, and duplicates are merged by key.
        let pending: Vec<AppInfo> = {
            let mut st = self.inner.lock();
            check_state(&mut st)?;
            st.overlay
                .app_infos
                .values()
                .map(|(_, info)| info.clone())
                .collect()
        };
        let stored = self.inner.store.get_all_app_infos().await?;
        let mut all: BTreeMap<String, AppInfo> = stored
            .into_iter()
            .map(|info| (info.app_id.clone(), info))
            .collect();
        for info in pending {
            all.insert(info.app_id.clone(), info);
        }
        Ok(all)
    }

    /// Distinct workflow types, sorted.
    pub async fn get_workflow_types(&self) -> Result<Vec<String>> {
        let pending: Vec<String> = {
            let mut st = self.inner.lock();
            check_state(&mut st)?;
            st.overlay
                .runs
                .values()
                .map(|(_, wf)| wf.workflow_type.clone())
                .collect()
        };
        let mut types = self.inner.store.get_workflow_types().await?;
        types.extend(pending);
        types.sort();
        types.dedup();
        Ok(types)
    }

    /// Workflow runs (of `workflow_type`, if given), in the order first stored.
    pub async fn get_workflow_runs(
        &self,
        workflow_type: Option<&str>,
    ) -> Result<Vec<WorkflowIdentity>> {
        let mut pending: Vec<(u64, WorkflowIdentity)> = {
            let mut st = self.inner.lock();
            check_state(&mut st)?;
            st.overlay
                .runs
                .values()
                .filter(|(_, wf)| workflow_type.is_none_or(|ty| wf.workflow_type == ty))
                .cloned()
                .collect()
        };
        pending.sort_by_key(|(seq, _)| *seq);
        let mut runs = self.inner.store.get_workflow_runs(workflow_type).await?;
        let seen: HashSet<String> = runs.iter().map(|wf| wf.workflow_id.clone()).collect();
        runs.extend(
            pending
                .into_iter()
                .map(|(_, wf)| wf)
                .filter(|wf| !seen.contains(&wf.workflow_id)),
        );
        Ok(runs)
    }

    /// Sub-invocation ids of a workflow, in the order first stored.
    pub async fn get_workflow_sub_invocations(&self, workflow_id: &str) -> Result<Vec<String>> {
        let pending = {
            let mut st = self.inner.lock();
            check_state(&mut st)?;
            st.overlay
                .subs
                .get(workflow_id)
                .cloned()
                .unwrap_or_default()
        };
        let mut subs = self
            .inner
            .store
            .get_workflow_sub_invocations(workflow_id)
            .await?;
        for (_, sub) in pending {
            if !subs.contains(&sub) {
                subs.push(sub);
            }
        }
        Ok(subs)
    }

    /// Invocations of `task_id`, newest first, at most `limit`, including pending writes.
    pub async fn get_invocations_by_task(
        &self,
        task_id: &str,
        limit: usize,
    ) -> Result<Vec<Invocation>> {
        // Pending records of the task (newest write first) and status patches of other ids.
        let (mut pending, patches) = {
            let mut st = self.inner.lock();
            check_state(&mut st)?;
            let mut pending: Vec<(u64, Invocation)> = Vec::new();
            let mut patches: HashMap<String, Option<InvocationStatus>> = HashMap::new();
            for (id, p) in &st.overlay.invocations {
                match &p.record {
                    Some(record) if record.task_id == task_id => {
                        pending.push((p.last_seq, record.clone()))
                    }
                    Some(_) => {
                        patches.insert(id.clone(), None);
                    }
                    None => {
                        patches.insert(id.clone(), p.status);
                    }
                }
            }
            (pending, patches)
        };
        pending.sort_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        let stored = self
            .inner
            .store
            .get_invocations_by_task(task_id, limit.saturating_add(pending.len()))
            .await?;
        let pending_ids: HashSet<&str> = pending
            .iter()
            .map(|(_, inv)| inv.invocation_id.as_str())
            .collect();
        let mut merged: Vec<Invocation> = pending.iter().map(|(_, inv)| inv.clone()).collect();
        for mut inv in stored {
            if pending_ids.contains(inv.invocation_id.as_str()) {
                continue;
            }
            match patches.get(&inv.invocation_id) {
                Some(None) => continue, // re-upserted here under another task
                Some(Some(status)) => inv.status = *status,
                None => {}
            }
            merged.push(inv);
        }
        // Stable: among equal created_at, pending (newer) writes stay first.
        merged.sort_by_key(|inv| std::cmp::Reverse(inv.created_at));
        merged.truncate(limit);
        Ok(merged)
    }
}
