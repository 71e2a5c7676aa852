//! Lease checks shared by the store implementations, so both report the same errors.

use crate::error::{Error, Result};
use chrono::{DateTime, Utc};

/// The lease columns of one row, as read before changing it.
#[derive(Debug, Clone)]
pub(crate) struct LeaseRow {
    pub status: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
}

/// Ok when `row` is processing and leased to `worker_id` past `now`; else `NotFound` or `LeaseLost`.
pub(crate) fn check_live_lease(
    row: Option<LeaseRow>,
    item_id: i64,
    worker_id: &str,
    now: DateTime<Utc>,
) -> Result<LeaseRow> {
    let Some(row) = row else {
        return Err(not_found(item_id));
    };
    let live = row.status == "processing"
        && row.lease_owner.as_deref() == Some(worker_id)
        && row.lease_expires_at.is_some_and(|expires| expires > now);
    if live {
        Ok(row)
    } else {
        Err(lease_lost(&[item_id], worker_id))
    }
}

/// The error for ids that were asked for but not acknowledged: unknown ids win over lost leases.
pub(crate) fn unacknowledged(
    requested: &[i64],
    acknowledged: &[i64],
    existing: &[i64],
    worker_id: &str,
) -> Result<()> {
    let missing: Vec<i64> = requested
        .iter()
        .copied()
        .filter(|id| !acknowledged.contains(id))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if let Some(unknown) = missing.iter().find(|id| !existing.contains(id)) {
        return Err(not_found(*unknown));
    }
    let mut err = lease_lost(&missing, worker_id);
    if let Error::LeaseLost { message, .. } = &mut err
        && !acknowledged.is_empty()
    {
        let note = format!(" ({} other item(s) were acknowledged)", acknowledged.len());
        message.push_str(&note);
    }
    Err(err)
}

pub(crate) fn not_found(item_id: i64) -> Error {
    Error::NotFound(format!("outbox item {item_id} does not exist"))
}

pub(crate) fn lease_lost(item_ids: &[i64], worker_id: &str) -> Error {
    Error::LeaseLost {
        message: format!(
            "worker {worker_id:?} does not hold a live lease on outbox item(s) {item_ids:?}: the lease \
             expired or another worker claimed the item; nothing was changed for them"
        ),
        item_ids: item_ids.to_vec(),
    }
}
