//! Sinks: where a run's chunks go. The outbox (one item per chunk), a directory of JSON files
//! (dry runs), a counter (benchmarks), or — through the binding — any Python object with
//! `ingest(entities, *, metadata)`.

use super::chunker::Chunk;
use crate::error::{Error, Result};
use crate::outbox::{NewItem, OutboxStore, held_run_at};
use async_trait::async_trait;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Default outbox topic of [`OutboxSink`].
pub const DEFAULT_TOPIC: &str = "headrace.entities";

/// Receives the chunks of runs.
#[async_trait]
pub trait Sink: Send + Sync + std::fmt::Debug {
    /// Delivers one chunk. Failures should be `IngestRejected` (permanent), `IngestUnavailable`
    /// (transient) or `Ingest` (unexpected); other errors are classified by [`classify_sink_error`].
    async fn ingest(&self, chunk: Chunk) -> Result<()>;

    /// Told when a run fails (optional; failures here are logged, never raised).
    async fn record_failure(&self, _error: &Error, _metadata: &Map<String, Value>) -> Result<()> {
        Ok(())
    }

    /// Bytes this sink adds around a run's protobuf entities in every request it sends (the
    /// other fields of Diode's `IngestRequest`), for a run whose chunk metadata is `metadata`;
    /// chunks are sized so that envelope plus framed entities stays within the bound.
    async fn protobuf_envelope(&self, _metadata: &Map<String, Value>) -> Result<usize> {
        Ok(0)
    }

    /// Told when a run ends, after its last chunk: `completed` releases the chunks the sink
    /// held back (all or nothing), `false` discards them. Default: nothing is held.
    async fn finish_run(&self, _run_id: &str, _completed: bool) -> Result<()> {
        Ok(())
    }

    /// The largest payload this sink accepts, if it has a limit of its own; runs use the smaller
    /// of this and their `chunk_bytes`.
    fn max_chunk_bytes(&self) -> Option<usize> {
        None
    }
}

/// Maps any core error met while delivering to the ingest hierarchy: a store that is unavailable
/// is transient, a rejected payload or a store error is permanent, the rest is unexpected.
pub fn classify_sink_error(error: Error) -> Error {
    match error {
        Error::Ingest(_) | Error::IngestRejected(_) | Error::IngestUnavailable(_) => error,
        Error::StoreUnavailable(m) => Error::IngestUnavailable(m),
        Error::Store(m) | Error::Config(m) => Error::IngestRejected(m),
        other => Error::Ingest(other.to_string()),
    }
}

/// Each chunk becomes one outbox item whose payload is `{"metadata": {…}, "entities": […]}`
/// (protobuf entities: `"entities_protobuf"`, base64), deduplicated by `run_id:chunk_index` and
/// traced by `run_id`. A run delivers all or nothing: its chunks are enqueued *held* (pending
/// with `run_at` in the year 9000, so no worker claims them), released together when the run
/// completes and deleted when it fails. Only the item ids are kept in memory meanwhile.
/// Chunks held by a process that died mid-run are deleted by
/// [`OutboxSink::discard_abandoned`].
#[derive(Debug, Clone)]
pub struct OutboxSink {
    store: Arc<dyn OutboxStore>,
    topic: String,
    held: Arc<Mutex<HashMap<String, Vec<i64>>>>,
}

impl OutboxSink {
    /// A sink enqueueing on `topic` of `store`.
    pub fn new(store: Arc<dyn OutboxStore>, topic: impl Into<String>) -> Result<Self> {
        let topic = topic.into();
        if topic.trim().is_empty() {
            return Err(Error::config("topic must be a non-empty string"));
        }
        Ok(OutboxSink {
            store,
            topic,
            held: Arc::default(),
        })
    }

    /// Deletes chunks held for more than `older_than` by runs that never ended (their process
    /// died); returns how many.
    pub async fn discard_abandoned(&self, older_than: chrono::Duration) -> Result<u64> {
        self.store.discard_abandoned_held(older_than).await
    }

    /// The topic items are enqueued on.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The outbox store.
    pub fn store(&self) -> &Arc<dyn OutboxStore> {
        &self.store
    }
}

#[async_trait]
impl Sink for OutboxSink {
    async fn ingest(&self, chunk: Chunk) -> Result<()> {
        let run_id = chunk
            .metadata
            .get("run_id")
            .and_then(Value::as_str)
            .map(str::to_string);
        let index = chunk.index;
        let mut item = NewItem::new(self.topic.clone(), chunk.into_payload());
        if let Some(run_id) = &run_id {
            item.dedupe_key = Some(format!("{run_id}:{index}"));
            item.trace_id = Some(run_id.clone());
            item.run_at = Some(held_run_at());
        }
        let id = self
            .store
            .enqueue(item)
            .await
            .map_err(classify_sink_error)?;
        if let Some(run_id) = run_id {
            self.held
                .lock()
                .expect("held ids lock")
                .entry(run_id)
                .or_default()
                .push(id);
        }
        Ok(())
    }

    async fn finish_run(&self, run_id: &str, completed: bool) -> Result<()> {
        let ids = self
            .held
            .lock()
            .expect("held ids lock")
            .remove(run_id)
            .unwrap_or_default();
        if ids.is_empty() {
            return Ok(());
        }
        if completed {
            let released = self.store.release_held(&ids).await;
            if matches!(released, Ok(n) if n == ids.len() as u64) {
                return Ok(());
            }
            // Whatever could not be released is never delivered.
            let _ = self.store.discard_held(&ids).await;
            return Err(match released {
                Ok(n) => Error::IngestRejected(format!(
                    "run {run_id}: only {n} of its {} held outbox items could be released (the others were removed meanwhile)",
                    ids.len()
                )),
                Err(e) => e,
            });
        } else {
            self.store.discard_held(&ids).await?;
        }
        Ok(())
    }

    fn max_chunk_bytes(&self) -> Option<usize> {
        Some(self.store.config().max_payload_bytes)
    }
}

/// Writes each chunk's payload to its own JSON file in a directory (nothing is sent anywhere):
/// `<policy>-<run_id>-<chunk_index>.json`.
#[derive(Debug, Clone)]
pub struct DryRunSink {
    directory: PathBuf,
}

impl DryRunSink {
    /// A sink writing into `directory` (created when missing).
    pub fn new(directory: impl Into<PathBuf>) -> Result<Self> {
        let directory = directory.into();
        std::fs::create_dir_all(&directory).map_err(|e| {
            Error::config(format!(
                "cannot create dry-run directory {}: {e}",
                directory.display()
            ))
        })?;
        Ok(DryRunSink { directory })
    }

    /// Where the files go.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// The file a chunk is written to.
    pub fn file_for(&self, chunk: &Chunk) -> PathBuf {
        let text = |key: &str| {
            chunk
                .metadata
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_string()
        };
        let name = format!(
            "{}-{}-{:05}.json",
            safe_file_part(&text("policy_name")),
            safe_file_part(&text("run_id")),
            chunk.index
        );
        self.directory.join(name)
    }
}

fn safe_file_part(raw: &str) -> String {
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim_start_matches('.')
        .to_string()
}

#[async_trait]
impl Sink for DryRunSink {
    async fn ingest(&self, chunk: Chunk) -> Result<()> {
        let path = self.file_for(&chunk);
        tokio::task::spawn_blocking(move || {
            std::fs::write(&path, chunk.payload().as_bytes()).map_err(|e| {
                Error::IngestUnavailable(format!("cannot write {}: {e}", path.display()))
            })
        })
        .await
        .map_err(|e| Error::Ingest(format!("dry-run writer stopped: {e}")))?
    }
}

/// Discards chunks, counting them (benchmarks, tests).
#[derive(Debug, Default)]
pub struct NullSink {
    chunks: AtomicU64,
    entities: AtomicU64,
    bytes: AtomicU64,
}

impl NullSink {
    /// A fresh counter.
    pub fn new() -> Self {
        Self::default()
    }

    /// (chunks, entities, payload bytes) seen so far.
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.chunks.load(Ordering::Relaxed),
            self.entities.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

#[async_trait]
impl Sink for NullSink {
    async fn ingest(&self, chunk: Chunk) -> Result<()> {
        self.chunks.fetch_add(1, Ordering::Relaxed);
        self.entities
            .fetch_add(chunk.entity_count() as u64, Ordering::Relaxed);
        self.bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_keeps_ingest_errors_and_maps_the_rest() {
        let c = |e| classify_sink_error(e).code();
        assert_eq!(c(Error::IngestRejected("x".into())), "ingest_rejected");
        assert_eq!(
            c(Error::IngestUnavailable("x".into())),
            "ingest_unavailable"
        );
        assert_eq!(c(Error::Ingest("x".into())), "ingest_error");
        assert_eq!(c(Error::StoreUnavailable("x".into())), "ingest_unavailable");
        assert_eq!(c(Error::Store("x".into())), "ingest_rejected");
        assert_eq!(c(Error::Config("x".into())), "ingest_rejected");
        assert_eq!(c(Error::NotFound("x".into())), "ingest_error");
    }

    #[test]
    fn file_names_are_safe() {
        assert_eq!(safe_file_part("../etc/passwd"), "_etc_passwd");
        assert_eq!(safe_file_part("host inventory"), "host_inventory");
    }
}
