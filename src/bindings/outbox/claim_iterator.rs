//! `ClaimIterator`: claims the next batch while the caller works on this one (the core's
//! [`ClaimStream`], driven from Python).

use super::args::items;
use super::item::PyOutboxItem;
use crate::bindings::runtime::{runtime, wait};
use crate::outbox::claim_stream::{ClaimStream, finish};
use crate::outbox::{ClaimFilter, OutboxItem, OutboxStore};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use std::sync::{Arc, Mutex};

/// Iterator over claimed batches with the next claim overlapped (see `OutboxStore.iter_claims`).
#[pyclass(module = "headrace._core", name = "ClaimIterator", frozen)]
pub(crate) struct PyClaimIterator {
    store: Arc<dyn OutboxStore>,
    worker_id: String,
    /// Locked only with the GIL released (a claim may take a while).
    stream: Mutex<ClaimStream>,
}

impl PyClaimIterator {
    pub(super) fn new(
        store: Arc<dyn OutboxStore>,
        worker_id: String,
        limit: i64,
        filter: ClaimFilter,
    ) -> Self {
        let (claim_store, claim_worker) = (store.clone(), worker_id.clone());
        let stream = ClaimStream::new(Arc::new(move || {
            let (store, worker_id, filter) =
                (claim_store.clone(), claim_worker.clone(), filter.clone());
            Box::pin(async move { store.claim(&worker_id, limit, &filter).await })
        }));
        PyClaimIterator {
            store,
            worker_id,
            stream: Mutex::new(stream),
        }
    }

    /// Gives items claimed ahead and never handed out back to `pending`.
    async fn give_back(
        store: Arc<dyn OutboxStore>,
        worker_id: String,
        ahead: Vec<OutboxItem>,
    ) -> crate::error::Result<u64> {
        let ids: Vec<i64> = ahead.iter().map(|i| i.id).collect();
        store.release(&ids, &worker_id).await
    }
}

#[pymethods]
impl PyClaimIterator {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Vec<PyOutboxItem>>> {
        let claimed = py.detach(|| {
            let mut stream = self.stream.lock().expect("claim iterator poisoned");
            runtime().block_on(async {
                let claimed = stream.next().await?;
                if !claimed.is_empty() {
                    stream.claim_ahead();
                }
                Ok::<_, crate::error::Error>(claimed)
            })
        })?;
        Ok((!claimed.is_empty()).then(|| items(claimed)))
    }

    /// Ends the iteration (later `next()` calls raise `StopIteration`, no further batch is
    /// claimed) and gives an unused prefetched batch back to `pending`; returns how many items
    /// it held. Closing twice is harmless.
    fn close(&self, py: Python<'_>) -> PyResult<u64> {
        let ahead = py.detach(|| {
            self.stream
                .lock()
                .expect("claim iterator poisoned")
                .detach_ahead()
        });
        let Some(ahead) = ahead else {
            return Ok(0);
        };
        let (store, worker_id) = (self.store.clone(), self.worker_id.clone());
        wait(py, async move {
            Self::give_back(store, worker_id, finish(ahead).await.unwrap_or_default()).await
        })
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }
}

impl Drop for PyClaimIterator {
    fn drop(&mut self) {
        let ahead = self
            .stream
            .get_mut()
            .map(|stream| stream.detach_ahead())
            .unwrap_or(None);
        if let Some(ahead) = ahead {
            let (store, worker_id) = (self.store.clone(), self.worker_id.clone());
            runtime().spawn(async move {
                if let Ok(claimed) = finish(ahead).await {
                    let _ = Self::give_back(store, worker_id, claimed).await;
                }
            });
        }
    }
}
