//! Queueing writes: validation against the overlay, then the queue.

use super::writer::{check_state, pending_invocation};
use super::{Attempt, WriteBehind};
use crate::error::Result;
use crate::state::store::{ValueKind, WriteOp};
use crate::state::{
    AppInfo, ExceptionRecord, Invocation, InvocationHistory, InvocationStatus, WorkflowIdentity,
};

impl WriteBehind {
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
    pub(super) fn enqueue(
        &self,
        op: WriteOp,
        known: Option<Option<InvocationStatus>>,
    ) -> Result<Attempt> {
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
        let entry =
            InvocationHistory::new(invocation_id, status, execution_context, self.clock().now());
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
}
