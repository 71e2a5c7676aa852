//! `RetryPolicy`: backoff and the attempt limit.

use crate::outbox::RetryPolicy;
use pyo3::prelude::*;

/// Exponential, capped, jittered backoff and the attempt limit.
#[pyclass(
    module = "headrace._core",
    name = "RetryPolicy",
    frozen,
    get_all,
    from_py_object
)]
#[derive(Clone)]
pub(crate) struct PyRetryPolicy {
    pub(super) max_attempts: i32,
    pub(super) base_seconds: f64,
    pub(super) factor: f64,
    pub(super) max_seconds: f64,
    pub(super) jitter: f64,
}

impl PyRetryPolicy {
    pub(crate) fn core(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts,
            base_seconds: self.base_seconds,
            factor: self.factor,
            max_seconds: self.max_seconds,
            jitter: self.jitter,
        }
    }
}

#[pymethods]
impl PyRetryPolicy {
    #[new]
    #[pyo3(signature = (max_attempts=5, base_seconds=2.0, factor=2.0, max_seconds=3600.0, jitter=0.1))]
    fn new(
        #[pyo3(from_py_with = crate::bindings::checked::int32)] max_attempts: i32,
        #[pyo3(from_py_with = crate::bindings::checked::number)] base_seconds: f64,
        #[pyo3(from_py_with = crate::bindings::checked::number)] factor: f64,
        #[pyo3(from_py_with = crate::bindings::checked::number)] max_seconds: f64,
        #[pyo3(from_py_with = crate::bindings::checked::number)] jitter: f64,
    ) -> PyResult<Self> {
        let policy = PyRetryPolicy {
            max_attempts,
            base_seconds,
            factor,
            max_seconds,
            jitter,
        };
        policy.core().validate()?;
        Ok(policy)
    }

    /// Seconds to wait after attempt number `attempt` (1-based), jitter included.
    fn delay_seconds(&self, attempt: i32) -> f64 {
        self.core().delay(attempt).as_seconds_f64()
    }

    fn __repr__(&self) -> String {
        format!(
            "RetryPolicy(max_attempts={}, base_seconds={}, factor={}, max_seconds={}, jitter={})",
            self.max_attempts, self.base_seconds, self.factor, self.max_seconds, self.jitter
        )
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyRetryPolicy>()
            .is_ok_and(|o| o.get().core() == self.core())
    }
}
