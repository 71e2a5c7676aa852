//! `PolicyManager`, the run store it records into, `list_runs` and `next_cron_time`.

use super::loader::PyLoader;
use super::models::{PyRun, policy_object};
use super::sinks::core_sink;
use crate::bindings::errors::config_error;
use crate::bindings::json;
use crate::bindings::runtime::{runtime, wait};
use crate::bindings::state::PyStateBackend;
use crate::runner::{
    DEFAULT_CHUNK_BYTES, DEFAULT_MAX_RUNS_PER_POLICY, ManagerConfig, MemoryRunStore, PolicyManager,
    PolicySpec, RunStore, StateRunStore, TickOutcome, parse_policies, parse_policies_yaml,
};
use crate::state::WriteBehindConfig;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString, PyTuple};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// The recorded runs in the database at `url` (a URL or a `StateBackend`; of `policy`, or of
/// every policy), newest first, at most `limit` per policy.
#[pyfunction]
#[pyo3(signature = (url, policy=None, *, limit=20))]
pub(super) fn list_runs(
    py: Python<'_>,
    url: &Bound<'_, PyAny>,
    policy: Option<String>,
    limit: usize,
) -> PyResult<Vec<PyRun>> {
    let store = run_store(py, Some(url), DEFAULT_MAX_RUNS_PER_POLICY)?;
    let runs = wait(py, async move {
        let policies = match policy {
            Some(p) => vec![p],
            None => store.policy_ids().await?,
        };
        let mut all = Vec::new();
        for p in policies {
            all.extend(store.runs(&p).await?.into_iter().take(limit));
        }
        Ok(all)
    })?;
    Ok(runs.into_iter().map(PyRun::from).collect())
}

/// The run store `state` selects: `None` or `"memory://"` keep runs in this process; a
/// `StateBackend` or a database URL (`sqlite:…`, `postgres://…`) keep them in the state backend
/// (durable, shared by every process on that database).
pub(super) fn run_store(
    py: Python<'_>,
    state: Option<&Bound<'_, PyAny>>,
    max_runs: usize,
) -> PyResult<Arc<dyn RunStore>> {
    let state = match state {
        None => return Ok(Arc::new(MemoryRunStore::new(max_runs)?)),
        Some(s) if s.is_none() => return Ok(Arc::new(MemoryRunStore::new(max_runs)?)),
        Some(s) => s,
    };
    if let Ok(backend) = state.cast::<PyStateBackend>() {
        return Ok(Arc::new(StateRunStore::new(
            backend.get().wb.clone(),
            max_runs,
        )?));
    }
    let url: String = state.extract().map_err(|_| {
        config_error(format!(
            "state= takes a StateBackend or a database URL (sqlite:///path.db, postgres://…, \
             memory://), got {}",
            state.repr().map(|r| r.to_string()).unwrap_or_default()
        ))
    })?;
    if let crate::db::DatabaseUrl::Memory = crate::db::DatabaseUrl::parse(&url)? {
        return Ok(Arc::new(MemoryRunStore::new(max_runs)?));
    }
    let wb = wait(py, async move {
        crate::state::connect(&url, WriteBehindConfig::default()).await
    })?;
    Ok(Arc::new(StateRunStore::new(Arc::new(wb), max_runs)?))
}

/// Runs configured policies: loads each backend, schedules it (5-field cron, or once now), and
/// records every run.
#[pyclass(module = "headrace._core", name = "PolicyManager", frozen, subclass)]
pub(crate) struct PyPolicyManager {
    manager: PolicyManager,
    sink: Py<PyAny>,
    state: Py<PyAny>,
}

pub(super) fn document_from_py(
    py: Python<'_>,
    policies: &Bound<'_, PyAny>,
) -> PyResult<Vec<PolicySpec>> {
    if let Ok(text) = policies.cast::<PyString>() {
        return Ok(parse_policies_yaml(
            text.to_str()?,
            &crate::runner::config::process_env,
        )?);
    }
    if let Ok(bytes) = policies.cast::<PyBytes>() {
        let text = std::str::from_utf8(bytes.as_bytes())
            .map_err(|e| config_error(format!("policies YAML is not UTF-8: {e}")))?;
        return Ok(parse_policies_yaml(
            text,
            &crate::runner::config::process_env,
        )?);
    }
    if policies.cast::<PyDict>().is_ok() {
        let text = json::dumps(policies, "policies")?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| config_error(format!("policies are not JSON-like: {e}")))?;
        let _ = py;
        return Ok(parse_policies(value, &crate::runner::config::process_env)?);
    }
    Err(config_error(format!(
        "start_policies takes YAML text (str or bytes) or a dict, got {}",
        policies.get_type().name()?
    )))
}

#[pymethods]
impl PyPolicyManager {
    #[new]
    #[pyo3(signature = (state=None, sink=None, *, chunk_bytes=DEFAULT_CHUNK_BYTES, max_runs_per_policy=DEFAULT_MAX_RUNS_PER_POLICY))]
    fn new(
        py: Python<'_>,
        state: Option<Bound<'_, PyAny>>,
        sink: Option<Bound<'_, PyAny>>,
        #[pyo3(from_py_with = crate::bindings::checked::size)] chunk_bytes: usize,
        #[pyo3(from_py_with = crate::bindings::checked::size)] max_runs_per_policy: usize,
    ) -> PyResult<Self> {
        let Some(sink) = sink.filter(|s| !s.is_none()) else {
            return Err(config_error(
                "PolicyManager needs a sink: OutboxSink(store), DryRunSink(directory), or any \
                 object with ingest(entities, *, metadata)",
            ));
        };
        let store = run_store(py, state.as_ref(), max_runs_per_policy)?;
        let core = core_sink(&sink)?;
        let manager = PolicyManager::new(
            store,
            core,
            Arc::new(PyLoader),
            ManagerConfig {
                chunk_bytes,
                ..ManagerConfig::default()
            },
        )?;
        Ok(PyPolicyManager {
            manager,
            sink: sink.unbind(),
            // A URL is kept with its password hidden: the getter must not hand the secret on.
            state: match state {
                Some(s) if s.is_instance_of::<PyString>() => {
                    PyString::new(py, &crate::db::url::redact(s.cast::<PyString>()?.to_str()?))
                        .into_any()
                        .unbind()
                }
                other => other.map_or_else(|| py.None(), Bound::unbind),
            },
        })
    }

    /// Policy executions counted in this process: `(policy, completed, failed, ticks_skipped,
    /// run_seconds)` per policy, `run_seconds` being the backend time of its finished runs.
    fn metrics_snapshot(&self) -> Vec<(String, u64, u64, u64, f64)> {
        self.manager
            .executor()
            .metrics()
            .snapshot()
            .into_iter()
            .map(|(policy, c)| {
                (
                    policy,
                    c.completed,
                    c.failed,
                    c.ticks_skipped,
                    c.run_seconds,
                )
            })
            .collect()
    }

    /// Loads, constructs and schedules every policy of `policies` (YAML text or a dict); when
    /// one fails, none of them starts. Returns their names. With `schedule=False` nothing is
    /// scheduled: run them with `run_now`.
    #[pyo3(signature = (policies, *, schedule=true))]
    fn start_policies(
        &self,
        py: Python<'_>,
        policies: &Bound<'_, PyAny>,
        schedule: bool,
    ) -> PyResult<Vec<String>> {
        let specs = document_from_py(py, policies)?;
        let manager = self.manager.clone();
        wait(
            py,
            async move { manager.start_policies(specs, schedule).await },
        )
    }

    /// Stops scheduling `name`; a run in flight finishes and is recorded.
    fn delete_policy(&self, py: Python<'_>, name: String) -> PyResult<()> {
        let manager = self.manager.clone();
        wait(py, async move { manager.delete_policy(&name).await })
    }

    /// Runs `name` now and returns the finished run (completed or failed).
    fn run_now(&self, py: Python<'_>, name: String) -> PyResult<PyRun> {
        let manager = self.manager.clone();
        wait(py, async move { manager.run_now(&name).await }).map(PyRun::from)
    }

    /// The recorded runs of `name`, newest first.
    fn runs(&self, py: Python<'_>, name: String) -> PyResult<Vec<PyRun>> {
        let manager = self.manager.clone();
        let runs = wait(py, async move { manager.runs(&name).await })?;
        Ok(runs.into_iter().map(PyRun::from).collect())
    }

    /// Stops every schedule and waits up to `timeout` seconds for runs in flight; returns
    /// whether they all finished.
    #[pyo3(signature = (timeout=30.0))]
    fn stop(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        let timeout = seconds(timeout)?;
        let manager = self.manager.clone();
        wait(py, async move { Ok(manager.stop(timeout).await) })
    }

    /// Waits up to `timeout` seconds until no run is in flight; returns whether that happened.
    #[pyo3(signature = (timeout=30.0))]
    fn wait_idle(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        let timeout = seconds(timeout)?;
        let manager = self.manager.clone();
        wait(py, async move { Ok(manager.wait_idle(timeout).await) })
    }

    /// Names of the running policies, sorted.
    #[getter]
    fn policies(&self) -> Vec<String> {
        self.manager.policy_names()
    }

    /// The `Policy` a running policy was started with.
    fn policy(&self, py: Python<'_>, name: &str) -> PyResult<Py<PyAny>> {
        policy_object(py, &self.manager.policy(name)?)
    }

    /// Whether a scheduled or manual run of `name` is in flight.
    fn is_running(&self, name: &str) -> PyResult<bool> {
        Ok(self.manager.is_running(name)?)
    }

    /// Runs in flight (scheduled, manual and callback).
    #[getter]
    fn inflight(&self) -> usize {
        self.manager.inflight()
    }

    /// The effective chunk bound (the sink's own limit may lower `chunk_bytes`).
    #[getter]
    fn chunk_bytes(&self) -> usize {
        self.manager.executor().chunk_bytes()
    }

    #[getter]
    fn sink(&self, py: Python<'_>) -> Py<PyAny> {
        self.sink.clone_ref(py)
    }

    #[getter]
    fn state(&self, py: Python<'_>) -> Py<PyAny> {
        self.state.clone_ref(py)
    }

    /// What a schedule fire does (for tests and tools): `"started"` or `"skipped"`.
    fn _tick(&self, py: Python<'_>, name: String) -> PyResult<&'static str> {
        let manager = self.manager.clone();
        let outcome = py.detach(|| {
            let _guard = runtime().enter();
            manager.tick(&name)
        })?;
        Ok(match outcome {
            TickOutcome::Started => "started",
            TickOutcome::Skipped => "skipped",
        })
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.stop(py, 30.0)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!("PolicyManager(policies={:?})", self.manager.policy_names())
    }
}

pub(super) fn seconds(value: f64) -> PyResult<Duration> {
    Ok(crate::validate::seconds("timeout", value, true)?
        .to_std()
        .expect("non-negative"))
}

/// The first time a 5-field cron `expression` fires strictly after `after`, evaluated in UTC;
/// with `local=True` in the process's local time zone (`TZ`); with `timezone=` in the zone a
/// policy's `config.timezone` names (`"UTC"`, `"local"` or an IANA name), by the same rule.
#[pyfunction]
#[pyo3(signature = (expression, after, *, local=false, timezone=None))]
pub(super) fn next_cron_time(
    expression: &str,
    after: chrono::DateTime<chrono::FixedOffset>,
    local: bool,
    timezone: Option<&str>,
) -> PyResult<chrono::DateTime<chrono::Utc>> {
    use crate::runner::schedule::{CronZone, Schedule};
    let zone = match (timezone, local) {
        (Some(name), _) => CronZone::parse(Some(name))?,
        (None, true) => CronZone::Local,
        (None, false) => CronZone::Utc,
    };
    let schedule = Schedule::parse_in(Some(expression), zone)?;
    if schedule.expression().is_none() {
        return Err(crate::bindings::errors::config_error(
            "a cron expression is required",
        ));
    }
    schedule
        .next_after(after.with_timezone(&chrono::Utc))
        .ok_or_else(|| {
            crate::bindings::errors::config_error(format!(
                "cron schedule {expression:?} never fires again"
            ))
        })
}
