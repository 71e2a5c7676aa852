//! Write-behind layer over any [`StateStore`].
//!
//! Writes are validated against what this layer knows (its pending writes, else one store read),
//! queued and return at once; one tokio task drains the queue, applying up to
//! [`WriteBehindConfig::max_batch`] writes per transaction. Until a write is durable it also
//! lives in an *overlay* that every read consults before the store, so a reader always sees the
//! writes made through the same [`WriteBehind`] (read-your-writes) without waiting for any batch.
//!
//! Writes replace a value (records, results, workflow values) or add to a set (history entries
//! carry a unique `entry_key`, runs and sub-invocations are keyed), so a read that races with a
//! batch commit never shows a write twice or loses it.
//!
//! A background write that fails (or that the store rejects) is never dropped silently: the next
//! call or `wait_for_*` on this layer returns a `Store` error naming it.

use super::plan::StoredInvocation;
use super::store::{StateStore, ValueKind, WriteOp, closed_error};
use super::{
    AppInfo, ExceptionRecord, Invocation, InvocationHistory, InvocationStatus, WorkflowIdentity,
};
use crate::error::{Error, Result};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// Tuning of the write-behind queue.
#[derive(Debug, Clone)]
pub struct WriteBehindConfig {
    /// Most writes applied in one transaction.
    pub max_batch: usize,
    /// Queued writes beyond which writers wait for the queue to drain (back-pressure).
    pub max_pending: usize,
    /// How many times a batch is tried while the store reports itself unavailable.
    pub unavailable_attempts: u32,
    /// First pause between those tries (doubled each time).
    pub unavailable_backoff: Duration,
}

impl Default for WriteBehindConfig {
    fn default() -> Self {
        WriteBehindConfig {
            max_batch: 100_000,
            max_pending: 1_000_000,
            unavailable_attempts: 5,
            unavailable_backoff: Duration::from_millis(100),
        }
    }
}

/// Most settled statuses remembered (see `State::settled`).
const SETTLED_CAPACITY: usize = 100_000;

/// What a queued write touches in the overlay.
#[derive(Debug, Clone)]
enum Key {
    Invocation(String),
    Value(String, ValueKind, String),
    App(String),
    Run(String),
    Sub(String, String),
}

/// Pending state of one invocation.
#[derive(Debug, Default)]
struct PendingInvocation {
    /// Sequence number of the newest queued write about it.
    last_seq: u64,
    /// The record as last upserted here (its status kept current by later history).
    record: Option<Invocation>,
    /// Its status as this layer knows it (after its pending writes), if known.
    status: Option<InvocationStatus>,
    /// History entries not yet durable, with their sequence numbers.
    history: Vec<(u64, InvocationHistory)>,
    result: Option<String>,
    exception: Option<ExceptionRecord>,
}

#[derive(Debug, Default)]
struct Overlay {
    invocations: HashMap<String, PendingInvocation>,
    values: HashMap<(String, ValueKind, String), (u64, String)>,
    app_infos: HashMap<String, (u64, AppInfo)>,
    runs: HashMap<String, (u64, WorkflowIdentity)>,
    subs: HashMap<String, Vec<(u64, String)>>,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<(u64, WriteOp)>,
    /// Sequence number of the newest queued write (0: none yet).
    last_seq: u64,
    overlay: Overlay,
    /// Statuses of invocations whose writes became durable here, so a later upsert of a stale
    /// copy is refused at call time (bounded: cleared when full).
    settled: HashMap<String, InvocationStatus>,
    /// Background failures not yet reported.
    failures: Vec<String>,
    closing: bool,
    closed: bool,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn StateStore>,
    state: Mutex<State>,
    /// Wakes the writer task when work arrives or the layer closes.
    wake: Notify,
    /// Sequence number up to which every write is durable (or reported failed).
    durable: watch::Sender<u64>,
    config: WriteBehindConfig,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("write-behind state poisoned")
    }
}

/// Outcome of trying to queue a write without waiting.
enum Attempt {
    Queued,
    /// The invocation's current status (or existence) must be read from the store first.
    NeedsStatus(WriteOp),
    /// The queue is full: wait for the writer.
    Full(WriteOp),
}

/// The write-behind layer. Create it inside a tokio runtime (it spawns its writer task).
#[derive(Debug)]
pub struct WriteBehind {
    inner: Arc<Inner>,
    app_id: Mutex<Option<String>>,
}

impl WriteBehind {
    /// Wraps `store`, spawning the writer task on the current tokio runtime.
    pub fn new(store: Arc<dyn StateStore>, config: WriteBehindConfig) -> Self {
        let (durable, _) = watch::channel(0);
        let inner = Arc::new(Inner {
            store,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            durable,
            config,
        });
        tokio::spawn(run_writer(inner.clone()));
        WriteBehind {
            inner,
            app_id: Mutex::new(None),
        }
    }

    /// The wrapped store.
    pub fn store(&self) -> &Arc<dyn StateStore> {
        &self.inner.store
    }

    /// Fails with the background failures not yet reported, or when closed.
    fn check(&self) -> Result<()> {
        check_state(&mut self.inner.lock())
    }

    // ----- writes -------------------------------------------------------------------------

    /// Queues `op` if it can be validated without waiting; returns it back otherwise
    /// (`Ok(Some(op))`: call [`WriteBehind::write`] with it). For callers that must not block.
    pub fn try_write(&self, op: WriteOp) -> Result<Option<WriteOp>> {
        op.validate()?;
        match self.enqueue(op, None)? {
            Attempt::Queued => Ok(None),
            Attempt::NeedsStatus(op) | Attempt::Full(op) => Ok(Some(op)),
        }
    }

    /// Validates and queues `op`; returns once it is queued (not durable).
    pub async fn write(&self, op: WriteOp) -> Result<()> {
        op.validate()?;
        let mut op = op;
        let mut known: Option<Option<InvocationStatus>> = None;
        loop {
            match self.enqueue(op, known)? {
                Attempt::Queued => return Ok(()),
                Attempt::NeedsStatus(back) => {
                    let id = back
                        .invocation_id()
                        .expect("status reads are for invocations")
                        .to_string();
                    let stored = self.inner.store.get_invocation(&id).await?;
                    known = Some(Some(stored.status));
                    op = back;
                }
                Attempt::Full(back) => {
                    let slack = (self.inner.config.max_pending / 2) as u64;
                    let target = self.inner.lock().last_seq.saturating_sub(slack);
                    self.wait_durable(target).await?;
                    op = back;
                }
            }
        }
    }

    /// Queues `ops` in order (each validated as by [`WriteBehind::write`]).
    pub async fn write_many(&self, ops: Vec<WriteOp>) -> Result<()> {
        for op in ops {
            self.write(op).await?;
        }
        Ok(())
    }

    /// `known`: the stored status read for the op's invocation (`Some(..)` once read).
    fn enqueue(&self, op: WriteOp, known: Option<Option<InvocationStatus>>) -> Result<Attempt> {
        let mut st = self.inner.lock();
        check_state(&mut st)?;
        if st.queue.len() >= self.inner.config.max_pending {
            return Ok(Attempt::Full(op));
        }
        let seq = st.last_seq + 1;
        let st = &mut *st;
        let overlay = &mut st.overlay;
        match &op {
            WriteOp::UpsertInvocation(inv) => {
                let current = overlay
                    .invocations
                    .get(&inv.invocation_id)
                    .and_then(|p| p.status);
                let current = current
                    .or(known.flatten())
                    .or_else(|| st.settled.get(&inv.invocation_id).copied());
                if let Some(current) = current
                    && current != inv.status
                {
                    current.check_transition(inv.status, &inv.invocation_id)?;
                }
                // Status not known here: the batch validates it against the stored row.
                let p = overlay
                    .invocations
                    .entry(inv.invocation_id.clone())
                    .or_default();
                p.last_seq = seq;
                p.record = Some(inv.clone());
                p.status = Some(inv.status);
            }
            WriteOp::AddHistory(h) => {
                // Newest first: pending writes, then statuses settled here since `known` was
                // read (another thread's flush may have moved it on), then the store's answer.
                let settled = st.settled.get(&h.invocation_id).copied().map(Some);
                let current = match overlay.invocations.get(&h.invocation_id) {
                    Some(p) if p.status.is_some() => p.status,
                    _ => match settled.or(known) {
                        Some(status) => status,
                        None => return Ok(Attempt::NeedsStatus(op)),
                    },
                };
                if let (Some(current), Some(next)) = (current, h.status) {
                    current.check_transition(next, &h.invocation_id)?;
                }
                let p = overlay
                    .invocations
                    .entry(h.invocation_id.clone())
                    .or_default();
                p.last_seq = seq;
                p.status = h.status.or(current);
                if let (Some(record), Some(next)) = (p.record.as_mut(), h.status) {
                    record.status = next;
                }
                p.history.push((seq, h.clone()));
            }
            WriteOp::SetResult {
                invocation_id,
                value,
            } => {
                let Some(p) = pending_invocation(overlay, invocation_id, known) else {
                    return Ok(Attempt::NeedsStatus(op));
                };
                p.last_seq = seq;
                p.result = Some(value.clone());
            }
            WriteOp::SetException {
                invocation_id,
                exception,
            } => {
                let Some(p) = pending_invocation(overlay, invocation_id, known) else {
                    return Ok(Attempt::NeedsStatus(op));
                };
                p.last_seq = seq;
                p.exception = Some(exception.clone());
            }
            WriteOp::SetWorkflowValue {
                workflow_id,
                kind,
                key,
                value,
            } => {
                overlay.values.insert(
                    (workflow_id.clone(), *kind, key.clone()),
                    (seq, value.clone()),
                );
            }
            WriteOp::StoreAppInfo(info) => {
                overlay
                    .app_infos
                    .insert(info.app_id.clone(), (seq, info.clone()));
            }
            WriteOp::StoreWorkflowRun(wf) => {
                overlay
                    .runs
                    .entry(wf.workflow_id.clone())
                    .or_insert((seq, wf.clone()));
            }
            WriteOp::StoreSubInvocation {
                parent_workflow_id,
                sub_invocation_id,
            } => {
                let subs = overlay.subs.entry(parent_workflow_id.clone()).or_default();
                if !subs.iter().any(|(_, s)| s == sub_invocation_id) {
                    subs.push((seq, sub_invocation_id.clone()));
                }
            }
        }
        st.last_seq = seq;
        st.queue.push_back((seq, op));
        self.inner.wake.notify_one();
        Ok(Attempt::Queued)
    }

    /// Queues an upsert of `invocation`.
    pub async fn upsert_invocation(&self, invocation: Invocation) -> Result<()> {
        self.write(WriteOp::UpsertInvocation(invocation)).await
    }

    /// Queues a history entry stamped now; returns it.
    pub async fn add_history(
        &self,
        invocation_id: &str,
        status: Option<InvocationStatus>,
        execution_context: Option<String>,
    ) -> Result<InvocationHistory> {
        let entry = InvocationHistory::new(invocation_id, status, execution_context);
        self.write(WriteOp::AddHistory(entry.clone())).await?;
        Ok(entry)
    }

    /// Queues the result (JSON text) of an invocation.
    pub async fn set_result(&self, invocation_id: &str, value: String) -> Result<()> {
        self.write(WriteOp::SetResult {
            invocation_id: invocation_id.into(),
            value,
        })
        .await
    }

    /// Queues the exception of an invocation.
    pub async fn set_exception(
        &self,
        invocation_id: &str,
        exception: ExceptionRecord,
    ) -> Result<()> {
        self.write(WriteOp::SetException {
            invocation_id: invocation_id.into(),
            exception,
        })
        .await
    }

    /// Queues a workflow value (JSON text).
    pub async fn set_workflow_value(
        &self,
        workflow_id: &str,
        kind: ValueKind,
        key: &str,
        value: String,
    ) -> Result<()> {
        self.write(WriteOp::SetWorkflowValue {
            workflow_id: workflow_id.into(),
            kind,
            key: key.into(),
            value,
        })
        .await
    }

    /// Queues this app's information; it becomes the app [`WriteBehind::get_app_info`] returns.
    pub async fn store_app_info(&self, info: AppInfo) -> Result<()> {
        let app_id = info.app_id.clone();
        self.write(WriteOp::StoreAppInfo(info)).await?;
        *self.app_id.lock().expect("app id poisoned") = Some(app_id);
        Ok(())
    }

    /// Queues a workflow run record.
    pub async fn store_workflow_run(&self, workflow: WorkflowIdentity) -> Result<()> {
        self.write(WriteOp::StoreWorkflowRun(workflow)).await
    }

    /// Queues a sub-invocation record.
    pub async fn store_workflow_sub_invocation(
        &self,
        parent_workflow_id: &str,
        sub_invocation_id: &str,
    ) -> Result<()> {
        self.write(WriteOp::StoreSubInvocation {
            parent_workflow_id: parent_workflow_id.into(),
            sub_invocation_id: sub_invocation_id.into(),
        })
        .await
    }

    /// Deletes invocations (with history, result, exception) once their pending writes are
    /// durable; returns how many existed.
    pub async fn delete_invocations(&self, invocation_ids: &[String]) -> Result<u64> {
        let target = {
            let mut st = self.inner.lock();
            check_state(&mut st)?;
            invocation_ids
                .iter()
                .filter_map(|id| st.overlay.invocations.get(id).map(|p| p.last_seq))
                .max()
                .unwrap_or(0)
        };
        self.wait_durable(target).await?;
        self.check()?;
        let deleted = self.inner.store.delete_invocations(invocation_ids).await?;
        let mut st = self.inner.lock();
        for id in invocation_ids {
            st.settled.remove(id);
        }
        Ok(deleted)
    }

    // ----- reads --------------------------------------------------------------------------

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

    // ----- durability ---------------------------------------------------------------------

    /// Resolves once every write queued before the call is durable; reports background failures.
    pub async fn wait_for_all(&self) -> Result<()> {
        let target = {
            let mut st = self.inner.lock();
            check_state(&mut st)?;
            st.last_seq
        };
        self.wait_durable(target).await?;
        self.check()
    }

    /// Resolves once the writes about `invocation_id` queued before the call are durable.
    pub async fn wait_for_invocation(&self, invocation_id: &str) -> Result<()> {
        let target = {
            let mut st = self.inner.lock();
            check_state(&mut st)?;
            st.overlay
                .invocations
                .get(invocation_id)
                .map_or(0, |p| p.last_seq)
        };
        self.wait_durable(target).await?;
        self.check()
    }

    /// Number of queued writes not yet durable.
    pub fn pending(&self) -> u64 {
        let st = self.inner.lock();
        st.last_seq - *self.inner.durable.borrow()
    }

    async fn wait_durable(&self, target: u64) -> Result<()> {
        if target == 0 {
            return Ok(());
        }
        let mut rx = self.inner.durable.subscribe();
        rx.wait_for(|durable| *durable >= target)
            .await
            .map(|_| ())
            .map_err(|_| Error::Store("the state backend's writer stopped".into()))
    }

    /// Writes everything queued, stops the writer and closes the store. Later calls fail with a
    /// clear `Store` error. Background failures not yet reported are returned.
    pub async fn close(&self) -> Result<()> {
        let target = {
            let mut st = self.inner.lock();
            if st.closing {
                return Ok(());
            }
            st.closing = true;
            st.last_seq
        };
        self.inner.wake.notify_one();
        let flushed = self.wait_durable(target).await;
        let failures = {
            let mut st = self.inner.lock();
            st.closed = true;
            std::mem::take(&mut st.failures)
        };
        self.inner.store.close().await;
        flushed?;
        report(failures)
    }

    /// Whether [`WriteBehind::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.inner.lock().closing
    }
}

impl Drop for WriteBehind {
    fn drop(&mut self) {
        // The writer drains what is queued, then exits and releases the store.
        if let Ok(mut st) = self.inner.state.lock() {
            st.closing = true;
        }
        self.inner.wake.notify_one();
    }
}

fn check_state(st: &mut State) -> Result<()> {
    if st.closing {
        return Err(closed_error());
    }
    report(std::mem::take(&mut st.failures))
}

fn report(failures: Vec<String>) -> Result<()> {
    match failures.len() {
        0 => Ok(()),
        1 => Err(Error::Store(format!(
            "a background write failed: {}",
            failures[0]
        ))),
        n => Err(Error::Store(format!(
            "{n} background writes failed: {}",
            failures.join("; ")
        ))),
    }
}

fn key_of(op: &WriteOp) -> (&'static str, Key) {
    match op {
        WriteOp::UpsertInvocation(inv) => (
            "upsert_invocation",
            Key::Invocation(inv.invocation_id.clone()),
        ),
        WriteOp::AddHistory(h) => ("add_history", Key::Invocation(h.invocation_id.clone())),
        WriteOp::SetResult { invocation_id, .. } => {
            ("set_result", Key::Invocation(invocation_id.clone()))
        }
        WriteOp::SetException { invocation_id, .. } => {
            ("set_exception", Key::Invocation(invocation_id.clone()))
        }
        WriteOp::SetWorkflowValue {
            workflow_id,
            kind,
            key,
            ..
        } => (
            match kind {
                ValueKind::Data => "set_workflow_data",
                ValueKind::Deterministic => "set_workflow_deterministic_value",
            },
            Key::Value(workflow_id.clone(), *kind, key.clone()),
        ),
        WriteOp::StoreAppInfo(info) => ("store_app_info", Key::App(info.app_id.clone())),
        WriteOp::StoreWorkflowRun(wf) => ("store_workflow_run", Key::Run(wf.workflow_id.clone())),
        WriteOp::StoreSubInvocation {
            parent_workflow_id,
            sub_invocation_id,
        } => (
            "store_workflow_sub_invocation",
            Key::Sub(parent_workflow_id.clone(), sub_invocation_id.clone()),
        ),
    }
}

fn describe(kind: &str, key: &Key) -> String {
    match key {
        Key::Invocation(id) => format!("{kind} for invocation {id:?}"),
        Key::Value(wf, _, key) => format!("{kind} for workflow {wf:?}, key {key:?}"),
        Key::App(app) => format!("{kind} for app {app:?}"),
        Key::Run(wf) => format!("{kind} for workflow {wf:?}"),
        Key::Sub(wf, sub) => format!("{kind} of {sub:?} in workflow {wf:?}"),
    }
}

async fn run_writer(inner: Arc<Inner>) {
    loop {
        let taken: Option<Vec<(u64, WriteOp)>> = {
            let mut st = inner.lock();
            if st.queue.is_empty() {
                if st.closing {
                    break;
                }
                None
            } else {
                let n = st.queue.len().min(inner.config.max_batch.max(1));
                Some(st.queue.drain(..n).collect())
            }
        };
        let Some(batch) = taken else {
            inner.wake.notified().await;
            continue;
        };
        let last = batch.last().map_or(0, |(seq, _)| *seq);
        let keys: Vec<(u64, &'static str, Key)> = batch
            .iter()
            .map(|(seq, op)| {
                let (kind, key) = key_of(op);
                (*seq, kind, key)
            })
            .collect();
        let ops: Vec<WriteOp> = batch.into_iter().map(|(_, op)| op).collect();
        let outcome = apply_with_retry(&inner, ops).await;
        record_outcome(&inner, outcome, &keys, last);
        inner.durable.send_replace(last);
    }
    let last = inner.lock().last_seq;
    inner.durable.send_replace(last);
}

fn record_outcome(
    inner: &Inner,
    outcome: Result<Vec<super::Rejected>>,
    keys: &[(u64, &'static str, Key)],
    last: u64,
) {
    let mut st = inner.lock();
    match outcome {
        Ok(rejected) => {
            for r in rejected {
                let (_, kind, key) = &keys[r.index];
                st.failures.push(format!(
                    "{} was not stored: {}",
                    describe(kind, key),
                    r.error
                ));
            }
        }
        Err(err) => {
            let mut named: Vec<String> = keys
                .iter()
                .take(3)
                .map(|(_, k, key)| describe(k, key))
                .collect();
            if keys.len() > 3 {
                named.push(format!("and {} more", keys.len() - 3));
            }
            st.failures.push(format!(
                "{} queued write(s) were not stored ({}): {err}",
                keys.len(),
                named.join(", ")
            ));
            tracing::error!(error = %err, writes = keys.len(), "state write-behind batch failed");
        }
    }
    let st = &mut *st;
    prune(&mut st.overlay, &mut st.settled, keys, last);
}

async fn apply_with_retry(inner: &Inner, ops: Vec<WriteOp>) -> Result<Vec<super::Rejected>> {
    let attempts = inner.config.unavailable_attempts.max(1);
    let mut pause = inner.config.unavailable_backoff;
    for attempt in 1..attempts {
        match inner.store.apply(ops.clone()).await {
            Err(err) if err.retryable() => {
                tracing::warn!(error = %err, attempt, "state store unavailable; retrying the batch");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            other => return other,
        }
    }
    inner.store.apply(ops).await
}

/// Drops from the overlay what the batch ending at `last` made durable (or failed).
fn prune(
    overlay: &mut Overlay,
    settled: &mut HashMap<String, InvocationStatus>,
    keys: &[(u64, &'static str, Key)],
    last: u64,
) {
    for (_, _, key) in keys {
        match key {
            Key::Invocation(id) => {
                if let Some(p) = overlay.invocations.get_mut(id) {
                    if p.last_seq <= last {
                        if let Some(status) = p.status {
                            if settled.len() >= SETTLED_CAPACITY {
                                settled.clear();
                            }
                            settled.insert(id.clone(), status);
                        }
                        overlay.invocations.remove(id);
                    } else {
                        p.history.retain(|(seq, _)| *seq > last);
                    }
                }
            }
            Key::Value(wf, kind, k) => {
                let slot = (wf.clone(), *kind, k.clone());
                if overlay
                    .values
                    .get(&slot)
                    .is_some_and(|(seq, _)| *seq <= last)
                {
                    overlay.values.remove(&slot);
                }
            }
            Key::App(app) => {
                if overlay
                    .app_infos
                    .get(app)
                    .is_some_and(|(seq, _)| *seq <= last)
                {
                    overlay.app_infos.remove(app);
                }
            }
            Key::Run(wf) => {
                if overlay.runs.get(wf).is_some_and(|(seq, _)| *seq <= last) {
                    overlay.runs.remove(wf);
                }
            }
            Key::Sub(parent, _) => {
                if let Some(subs) = overlay.subs.get_mut(parent) {
                    subs.retain(|(seq, _)| *seq > last);
                    if subs.is_empty() {
                        overlay.subs.remove(parent);
                    }
                }
            }
        }
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<WriteBehind>();
    check::<StoredInvocation>();
}

/// The pending entry of an invocation, created with the `known` stored status when there is none;
/// `None` when there is none and the status must be read first.
fn pending_invocation<'a>(
    overlay: &'a mut Overlay,
    invocation_id: &str,
    known: Option<Option<InvocationStatus>>,
) -> Option<&'a mut PendingInvocation> {
    if !overlay.invocations.contains_key(invocation_id) {
        let status = known?;
        overlay
            .invocations
            .entry(invocation_id.to_string())
            .or_default()
            .status = status;
    }
    overlay.invocations.get_mut(invocation_id)
}
