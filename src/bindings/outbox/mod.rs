//! Python classes of `headrace.outbox`: stores, items, the retry policy and the reaper.

mod args;
mod claim_iterator;
mod engines;
mod item;
mod retry_policy;
mod store;

pub(crate) use args::{new_item, new_item_from_dict};
use claim_iterator::PyClaimIterator;
use engines::{PyOptimisticClaimOutboxStore, PyOutboxReaper, PySkipLockedClaimOutboxStore};
pub(crate) use item::PyOutboxItem;
use pyo3::prelude::*;
pub(crate) use retry_policy::PyRetryPolicy;
pub(crate) use store::PyOutboxStore;

/// Environment variable consulted when a store is created without a URL.
const URL_ENV: &str = "HEADRACE_DATABASE_URL";

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyRetryPolicy>()?;
    m.add_class::<PyOutboxItem>()?;
    m.add_class::<PyOutboxStore>()?;
    m.add_class::<PySkipLockedClaimOutboxStore>()?;
    m.add_class::<PyOptimisticClaimOutboxStore>()?;
    m.add_class::<PyOutboxReaper>()?;
    m.add_class::<PyClaimIterator>()?;
    Ok(())
}
