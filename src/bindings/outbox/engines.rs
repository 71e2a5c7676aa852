//! The two concrete stores and the reaper.

use super::args::{ConnectOptions, open_engine};
use super::retry_policy::PyRetryPolicy;
use super::store::PyOutboxStore;
use crate::bindings::clock::PyManualClock;
use crate::bindings::twins::pymethods_with_twins;
use crate::outbox::{DEFAULT_MAX_PAYLOAD_BYTES, OutboxReaper, seconds};
use pyo3::prelude::*;

/// One concrete store class: a subclass of `OutboxStore` whose constructor opens its engine
/// (`postgres` says which one `open_engine` requires of the URL).
macro_rules! engine_class {
    ($(#[$doc:meta])* $rust:ident, $name:literal, postgres = $postgres:literal) => {
        $(#[$doc])*
        #[pyclass(module = "headrace._core", name = $name, extends = PyOutboxStore, frozen)]
        pub(crate) struct $rust;

        #[pymethods]
        impl $rust {
            #[new]
            #[pyo3(signature = (url=None, *, lease_seconds=300.0, retry=None, migrate=true, max_payload_bytes=DEFAULT_MAX_PAYLOAD_BYTES, clock=None))]
            fn new(
                py: Python<'_>,
                url: Option<Bound<'_, PyAny>>,
                #[pyo3(from_py_with = crate::bindings::checked::number)] lease_seconds: f64,
                retry: Option<PyRetryPolicy>,
                migrate: bool,
                #[pyo3(from_py_with = crate::bindings::checked::size)] max_payload_bytes: usize,
                clock: Option<&Bound<'_, PyManualClock>>,
            ) -> PyResult<PyClassInitializer<Self>> {
                let options =
                    ConnectOptions::new(lease_seconds, retry, migrate, max_payload_bytes, clock);
                let base = open_engine(py, url, $postgres, $name, options)?;
                Ok(PyClassInitializer::from(base).add_subclass($rust))
            }
        }
    };
}

engine_class!(
    /// PostgreSQL store: batch claims with `FOR UPDATE SKIP LOCKED`.
    PySkipLockedClaimOutboxStore,
    "SkipLockedClaimOutboxStore",
    postgres = true
);

engine_class!(
    /// SQLite store: claims inside `BEGIN IMMEDIATE` transactions.
    PyOptimisticClaimOutboxStore,
    "OptimisticClaimOutboxStore",
    postgres = false
);

/// Returns items with expired leases to `pending` (or `failed` once out of attempts).
#[pyclass(module = "headrace._core", name = "OutboxReaper", frozen)]
pub(crate) struct PyOutboxReaper {
    reaper: OutboxReaper,
}

pymethods_with_twins! {
    PyOutboxReaper;
    plain {
        #[new]
        #[pyo3(signature = (store, stale_threshold_seconds=600.0))]
        fn new(
            store: &Bound<'_, PyOutboxStore>,
            #[pyo3(from_py_with = crate::bindings::checked::number)] stale_threshold_seconds: f64,
        ) -> PyResult<Self> {
            let threshold = seconds("stale_threshold_seconds", stale_threshold_seconds, true)?;
            Ok(PyOutboxReaper {
                reaper: OutboxReaper::new(store.get().store.clone(), threshold),
            })
        }
    }
    twins {
        /// Reaps once; returns how many items were recovered.
        fn reap_stale_items / areap_stale_items<'py>(&self, py: Python<'py>) -> u64 {
            let reaper = self.reaper.clone();
            async move { reaper.reap_stale_items().await }
        }
    }
}
