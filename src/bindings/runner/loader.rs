//! The core's backend-loading traits implemented over Python classes.

use super::CHANNEL_BATCHES;
use super::diagnostics::{error_from_py, load_error};
use super::ingest::{PumpEnd, PyIngestCallback, PyIngestSink, end_stream, pump};
use super::models::{metadata_from_py, policy_object};
use crate::bindings::errors::describe_exception;
use crate::error::{Error, Result};
use crate::runner::source::{self};
use crate::runner::{
    BackendLoader, BackendMetadata, BoxFuture, EntitySource, IngestHandle, PolicyBackend,
    PolicySpec, ResolvedBackend, RunContext,
};
use async_trait::async_trait;
use pyo3::prelude::*;
use std::sync::Arc;

pub(super) fn runner_module(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    py.import("headrace.runner")
}

pub(super) struct PyLoader;

pub(super) struct PyResolved {
    name: String,
    class: Arc<Py<PyAny>>,
    metadata: BackendMetadata,
    policy: Arc<Py<PyAny>>,
}

pub(super) struct PyPolicyBackend {
    name: String,
    instance: Arc<Py<PyAny>>,
    policy: Arc<Py<PyAny>>,
}

pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Ingest(format!("a backend thread failed: {e}")))?
}

#[async_trait]
impl BackendLoader for PyLoader {
    async fn resolve(&self, spec: &PolicySpec) -> Result<Box<dyn ResolvedBackend>> {
        let spec = spec.clone();
        blocking(move || {
            Python::attach(|py| {
                let package = spec.config.package.clone();
                let found = runner_module(py)
                    .and_then(|m| m.call_method1("_resolve_backend", (&package,)))
                    .map_err(|e| load_error(py, &e, &format!("cannot load backend {package:?}")))?;
                let (class, metadata): (Bound<'_, PyAny>, Bound<'_, PyAny>) = found
                    .extract()
                    .map_err(|e| load_error(py, &e, "unexpected _resolve_backend result"))?;
                let class_name = class
                    .getattr("__qualname__")
                    .map(|n| n.to_string())
                    .unwrap_or_default();
                let metadata = metadata_from_py(&metadata, &class_name)?;
                let policy = policy_object(py, &spec)
                    .map_err(|e| load_error(py, &e, "cannot build the Policy object"))?;
                Ok(Box::new(PyResolved {
                    name: spec.name.clone(),
                    class: Arc::new(class.unbind()),
                    metadata,
                    policy: Arc::new(policy),
                }) as Box<dyn ResolvedBackend>)
            })
        })
        .await
    }
}

#[async_trait]
impl ResolvedBackend for PyResolved {
    fn metadata(&self) -> &BackendMetadata {
        &self.metadata
    }

    async fn construct(self: Box<Self>, ingest: IngestHandle) -> Result<Arc<dyn PolicyBackend>> {
        let PyResolved {
            name,
            class,
            policy,
            ..
        } = *self;
        blocking(move || {
            Python::attach(|py| {
                let callback = Py::new(
                    py,
                    PyIngestCallback {
                        handle: ingest.clone(),
                    },
                )
                .map_err(|e| error_from_py(py, &e))?;
                let sink = Py::new(py, PyIngestSink { handle: ingest })
                    .map_err(|e| error_from_py(py, &e))?;
                let instance = runner_module(py)
                    .and_then(|m| {
                        m.call_method1("_construct_backend", (class.bind(py), callback, sink))
                    })
                    .map_err(|e| {
                        load_error(
                            py,
                            &e,
                            &format!("constructing backend {} failed", class.bind(py)),
                        )
                    })?;
                Ok(Arc::new(PyPolicyBackend {
                    name,
                    instance: Arc::new(instance.unbind()),
                    policy,
                }) as Arc<dyn PolicyBackend>)
            })
        })
        .await
    }
}

impl PolicyBackend for PyPolicyBackend {
    fn produce(&self, context: RunContext) -> BoxFuture<'static, Result<Box<dyn EntitySource>>> {
        let (sender, source) = source::channel(CHANNEL_BATCHES);
        let instance = self.instance.clone();
        let policy = self.policy.clone();
        let name = self.name.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("headrace-run-{}", self.name))
            .spawn(move || {
                Python::attach(|py| {
                    let produced = instance
                        .bind(py)
                        .call_method1("run", (&name, policy.bind(py)));
                    let outcome = match produced {
                        Ok(iterable) => pump(py, &iterable, &context.run_id, &sender),
                        Err(e) => Err(PumpEnd::Failed(
                            Error::Ingest(describe_exception(e.value(py))),
                            Some(e),
                        )),
                    };
                    end_stream(py, sender, outcome);
                })
            });
        Box::pin(async move {
            spawned
                .map_err(|e| Error::Ingest(format!("cannot start the backend's thread: {e}")))?;
            Ok(Box::new(source) as Box<dyn EntitySource>)
        })
    }
}
