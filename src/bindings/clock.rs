//! `ManualClock`: a clock for tests, injectable wherever a store takes `clock=`.

use crate::clock::{ManualClock, SharedClock, SystemClock};
use crate::outbox;
use chrono::{DateTime, FixedOffset, Utc};
use pyo3::prelude::*;
use std::sync::Arc;

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyManualClock>()
}

/// A clock that moves only when told to.
#[pyclass(module = "headrace._core", name = "ManualClock", frozen)]
pub(crate) struct PyManualClock(ManualClock);

#[pymethods]
impl PyManualClock {
    /// A clock stopped at `start` (a timezone-aware datetime; default: now).
    #[new]
    #[pyo3(signature = (start=None))]
    fn new(start: Option<DateTime<FixedOffset>>) -> Self {
        PyManualClock(ManualClock::new(
            start
                .map(|s| s.with_timezone(&Utc))
                .unwrap_or_else(Utc::now),
        ))
    }

    fn now(&self) -> DateTime<Utc> {
        self.0.now_for_tests()
    }

    /// Moves the clock forward by `seconds`.
    fn advance(&self, seconds: f64) -> PyResult<()> {
        self.0.advance(outbox::seconds("seconds", seconds, true)?);
        Ok(())
    }

    fn set(&self, to: DateTime<FixedOffset>) {
        self.0.set(to.with_timezone(&Utc));
    }

    fn __repr__(&self) -> String {
        format!("ManualClock({})", self.0.now_for_tests().to_rfc3339())
    }
}

/// The clock a store should use: the given manual clock, else the system clock.
pub(crate) fn shared_clock(clock: Option<&Bound<'_, PyManualClock>>) -> SharedClock {
    match clock {
        Some(manual) => Arc::new(manual.get().0.clone()),
        None => Arc::new(SystemClock),
    }
}
