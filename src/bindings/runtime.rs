//! Running core futures from Python: blocking calls release the GIL and run on the one shared
//! tokio runtime of pyo3-async-runtimes; async variants return asyncio awaitables.

use crate::error::Result;
use pyo3::prelude::*;
use std::future::Future;

/// Runs `fut` to completion on the shared runtime with the GIL released.
pub(crate) fn block_on<F, T>(py: Python<'_>, fut: F) -> PyResult<T>
where
    F: Future<Output = Result<T>> + Send,
    T: Send,
{
    py.detach(|| runtime().block_on(fut)).map_err(PyErr::from)
}

/// Runs `fut` as a task on the runtime's worker threads (where its I/O is driven) and waits for
/// it with the GIL released: one cross-thread wake-up instead of one per I/O readiness, which
/// matters for multi-round-trip PostgreSQL calls.
pub(crate) fn block_on_task<F, T>(py: Python<'_>, fut: F) -> PyResult<T>
where
    F: Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    py.detach(|| {
        let task = runtime().spawn(fut);
        runtime().block_on(task).unwrap_or_else(|e| {
            Err(crate::error::Error::Store(format!(
                "a database task failed: {e}"
            )))
        })
    })
    .map_err(PyErr::from)
}

/// Wraps `fut` as an asyncio awaitable resolved on the shared runtime.
pub(crate) fn awaitable<'py, F, T>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = Result<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    pyo3_async_runtimes::tokio::future_into_py(py, async move { fut.await.map_err(PyErr::from) })
}

/// The shared tokio runtime.
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    pyo3_async_runtimes::tokio::get_runtime()
}
