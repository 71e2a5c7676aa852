//! Running core futures from Python: blocking calls release the GIL, run on the one shared tokio
//! runtime of pyo3-async-runtimes and stay interruptible (Ctrl-C); async variants return asyncio
//! awaitables.

use crate::error::{Error, Result};
use pyo3::IntoPyObjectExt;
use pyo3::prelude::*;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::task::JoinHandle;

/// How often a blocking wait wakes up to run Python's signal handlers.
const SIGNAL_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// The one blocking wait of the bindings: runs `fut` as a task on the runtime's worker threads
/// (where its I/O is driven) and waits for it with the GIL released, running Python's signal
/// handlers every [`SIGNAL_CHECK_INTERVAL`]. Ctrl-C raises `KeyboardInterrupt` here; the task
/// itself is not cancelled (the work finishes in the background, only the waiting stops).
pub(crate) fn wait<F, T>(py: Python<'_>, fut: F) -> PyResult<T>
where
    F: Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let mut task = runtime().spawn(fut);
    wait_interruptibly(py, &mut task)?
}

/// Waits for `task` with the GIL released, running Python's signal handlers in between. `Ok`
/// holds the task's result; `Err` is the exception a signal handler raised (the task keeps
/// running: the caller decides whether to stop it and wait again).
pub(crate) fn wait_interruptibly<T: Send + 'static>(
    py: Python<'_>,
    task: &mut JoinHandle<Result<T>>,
) -> std::result::Result<PyResult<T>, PyErr> {
    loop {
        let finished = py.detach(|| {
            runtime()
                .block_on(async { tokio::time::timeout(SIGNAL_CHECK_INTERVAL, &mut *task).await })
        });
        match finished {
            Ok(Ok(result)) => return Ok(result.map_err(PyErr::from)),
            Ok(Err(join)) => {
                return Ok(Err(Error::Store(format!(
                    "a task of the core failed: {join}"
                ))
                .into()));
            }
            Err(_still_running) => py.check_signals()?,
        }
    }
}

/// Wraps `fut` as an asyncio awaitable (the async twin of [`wait`]): an `asyncio.Future` of
/// the running loop, settled from the runtime through `call_soon_threadsafe`.
///
/// What cancelling means (`task.cancel()`, `asyncio.wait_for` timing out): the awaiting stops
/// at once, but the call itself is never cut in half. It runs to its end in the background,
/// exactly as if it had been awaited (each store call is one transaction: it is stored whole
/// or not at all), and its result is dropped. So a cancelled `aenqueue` may still have stored
/// its item: give it a `dedupe_key` to make a retry safe.
///
/// A call that panics raises `StoreError` ("internal error") instead of taking the process
/// down. Calls still running when the interpreter exits get up to [`EXIT_DRAIN`] to finish
/// (see [`drain_at_exit`]); none touches Python after that.
pub(crate) fn awaitable<'py, F, T>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = Result<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let event_loop = py.import("asyncio")?.call_method0("get_running_loop")?;
    let future = event_loop.call_method0("create_future")?;
    let (loop_ref, future_ref) = (event_loop.unbind(), future.clone().unbind());
    let call = InFlight::enter();
    runtime().spawn(async move {
        let joined = runtime().spawn(fut).await;
        // Settling needs the GIL: on a blocking thread, never on a runtime worker.
        let _ = tokio::task::spawn_blocking(move || {
            let _call = call;
            settle(loop_ref, future_ref, joined);
        })
        .await;
    });
    Ok(future)
}

/// Hands a finished call's outcome to its asyncio future (unless the interpreter is exiting).
fn settle<T>(
    event_loop: Py<PyAny>,
    future: Py<PyAny>,
    joined: std::result::Result<Result<T>, tokio::task::JoinError>,
) where
    T: for<'a> IntoPyObject<'a>,
{
    if EXITING.load(Ordering::SeqCst) {
        return; // the objects are released later by pyo3's pool, without calling Python
    }
    let _ = Python::try_attach(|py| {
        let outcome = match joined {
            Ok(Ok(value)) => value.into_py_any(py),
            Ok(Err(error)) => Err(PyErr::from(error)),
            Err(join) => Err(Error::Store(format!(
                "internal error: a call of the core {} (a bug in headrace; please report it)",
                if join.is_panic() {
                    "panicked"
                } else {
                    "was cancelled"
                }
            ))
            .into()),
        };
        let (ok, value) = match outcome {
            Ok(value) => (true, value),
            Err(err) => (false, err.into_value(py).into_any()),
        };
        let settler = Settle {
            future,
            ok,
            value: Some(value).into(),
        };
        // A closed loop (the program moved on) raises RuntimeError: nobody waits any more.
        let _ = event_loop
            .bind(py)
            .call_method1("call_soon_threadsafe", (settler,));
    });
}

/// Run by the event loop: sets the future's result or exception unless it is already done
/// (cancelled while the call was running).
#[pyclass(module = "headrace._core", name = "_Settle")]
struct Settle {
    future: Py<PyAny>,
    ok: bool,
    value: std::sync::Mutex<Option<Py<PyAny>>>,
}

#[pymethods]
impl Settle {
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        let future = self.future.bind(py);
        if future.call_method0("done")?.is_truthy()? {
            return Ok(());
        }
        let Some(value) = self.value.lock().expect("settle poisoned").take() else {
            return Ok(());
        };
        let method = if self.ok {
            "set_result"
        } else {
            "set_exception"
        };
        future.call_method1(method, (value,))?;
        Ok(())
    }
}

/// Set when the interpreter starts exiting: no call settles into Python after that.
static EXITING: AtomicBool = AtomicBool::new(false);
/// Awaitable calls not yet settled.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
/// How long the interpreter's exit waits for awaitable calls still running.
const EXIT_DRAIN: Duration = Duration::from_secs(5);

/// Counts one awaitable call in flight until dropped.
struct InFlight;

impl InFlight {
    fn enter() -> Self {
        IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Registered with `atexit`: lets awaitable calls still running (a cancelled `aenqueue`, say)
/// finish for up to [`EXIT_DRAIN`] with the GIL released, then stops every later settling.
/// Threads of the runtime that reached for the GIL after this used to abort the process.
#[pyfunction]
fn drain_at_exit(py: Python<'_>) -> usize {
    let deadline = std::time::Instant::now() + EXIT_DRAIN;
    py.detach(|| {
        while IN_FLIGHT.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    EXITING.store(true, Ordering::SeqCst);
    IN_FLIGHT.load(Ordering::SeqCst)
}

/// Whether the interpreter is exiting: code on runtime threads must not reach for the GIL.
pub(crate) fn exiting() -> bool {
    EXITING.load(Ordering::SeqCst)
}

/// Test hook of the crash-at-exit regression test (issue #9, defect 1): an awaitable whose
/// future panics, standing for any bug of the core reached through an async call.
#[pyfunction]
fn _panic_in_async_call(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    awaitable(py, async {
        if std::hint::black_box(true) {
            panic!("deliberate panic of the test hook");
        }
        Ok(())
    })
}

/// Registers [`drain_at_exit`] with `atexit` (`headrace._core._drain_at_exit`).
pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_panic_in_async_call, m)?)?;
    let drain = wrap_pyfunction!(drain_at_exit, m)?;
    m.add("_drain_at_exit", &drain)?;
    m.py()
        .import("atexit")?
        .call_method1("register", (drain,))?;
    Ok(())
}

/// The shared tokio runtime.
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    pyo3_async_runtimes::tokio::get_runtime()
}
