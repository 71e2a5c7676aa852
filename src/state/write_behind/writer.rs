//! The writer task: batches, outcomes, and pruning the overlay.

use super::{Inner, Key, Overlay, PendingInvocation, SETTLED_CAPACITY, State};
use crate::error::{Error, Result};
use crate::state::InvocationStatus;
use crate::state::store::{ValueKind, WriteOp, closed_error};
use std::collections::HashMap;
use std::sync::Arc;

pub(super) fn check_state(st: &mut State) -> Result<()> {
    if st.closing {
        return Err(closed_error());
    }
    report(std::mem::take(&mut st.failures))
}

pub(super) fn report(failures: Vec<String>) -> Result<()> {
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

pub(super) fn key_of(op: &WriteOp) -> (&'static str, Key) {
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

pub(super) fn describe(kind: &str, key: &Key) -> String {
    match key {
        Key::Invocation(id) => format!("{kind} for invocation {id:?}"),
        Key::Value(wf, _, key) => format!("{kind} for workflow {wf:?}, key {key:?}"),
        Key::App(app) => format!("{kind} for app {app:?}"),
        Key::Run(wf) => format!("{kind} for workflow {wf:?}"),
        Key::Sub(wf, sub) => format!("{kind} of {sub:?} in workflow {wf:?}"),
    }
}

pub(super) async fn run_writer(inner: Arc<Inner>) {
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

pub(super) fn record_outcome(
    inner: &Inner,
    outcome: Result<Vec<crate::state::Rejected>>,
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

pub(super) async fn apply_with_retry(
    inner: &Inner,
    ops: Vec<WriteOp>,
) -> Result<Vec<crate::state::Rejected>> {
    let attempts = inner.config.unavailable_attempts.max(1);
    let mut pause = inner.config.unavailable_backoff;
    for attempt in 1..attempts {
        match inner.store.apply(ops.clone()).await {
            Err(err) if err.retryable() => {
                tracing::warn!(error = %err, attempt, "state store unavailable; retrying the batch");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(super::MAX_UNAVAILABLE_PAUSE);
            }
            other => return other,
        }
    }
    inner.store.apply(ops).await
}

/// Drops from the overlay what the batch ending at `last` made durable (or failed).
pub(super) fn prune(
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

/// The pending entry of an invocation, created with the `known` stored status when there is none;
/// `None` when there is none and the status must be read first.
pub(super) fn pending_invocation<'a>(
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
