//! Entity sources: what a run pulls encoded entities from, batch by batch, lazily.
//!
//! The Python binding feeds a [`ChannelSource`] from a thread that iterates the backend's
//! iterable and encodes each entity once; Rust callers can use [`ValueSource`] or an iterator of
//! encoded text through [`IterSource`].

use super::chunker::stamp_run_id;
use crate::error::{Error, Result};
use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::mpsc;

/// Entities per batch used by the sources in this module.
pub const DEFAULT_BATCH: usize = 256;

/// A batch of encoded entities, `run_id` already stamped: JSON text, or serialised protobuf
/// messages (see [`super::protobuf`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Batch {
    Json(Vec<String>),
    Protobuf(Vec<Vec<u8>>),
}

impl Batch {
    /// How many entities the batch holds.
    pub fn len(&self) -> usize {
        match self {
            Batch::Json(v) => v.len(),
            Batch::Protobuf(v) => v.len(),
        }
    }

    /// Whether the batch holds no entity.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<Vec<String>> for Batch {
    fn from(entities: Vec<String>) -> Self {
        Batch::Json(entities)
    }
}

impl From<Vec<Vec<u8>>> for Batch {
    fn from(entities: Vec<Vec<u8>>) -> Self {
        Batch::Protobuf(entities)
    }
}

/// A lazy, finite stream of encoded entities (`run_id` already stamped).
#[async_trait]
pub trait EntitySource: Send {
    /// The next batch (never empty), `None` at the end, or the error that broke the stream.
    async fn next_batch(&mut self) -> Result<Option<Batch>>;
}

/// Encoded entities from an iterator of `Result<String>`.
pub struct IterSource<I> {
    iter: I,
    batch: usize,
    pending: Option<Error>,
}

impl<I> IterSource<I>
where
    I: Iterator<Item = Result<String>> + Send,
{
    /// Pulls batches of up to `batch` entities from `iter`.
    pub fn new(iter: I, batch: usize) -> Self {
        IterSource {
            iter,
            batch: batch.max(1),
            pending: None,
        }
    }
}

#[async_trait]
impl<I> EntitySource for IterSource<I>
where
    I: Iterator<Item = Result<String>> + Send,
{
    async fn next_batch(&mut self) -> Result<Option<Batch>> {
        if let Some(error) = self.pending.take() {
            return Err(error);
        }
        let mut out = Vec::with_capacity(self.batch);
        for item in self.iter.by_ref() {
            match item {
                Ok(entity) => out.push(entity),
                Err(error) if out.is_empty() => return Err(error),
                // What was produced before the failure is still delivered.
                Err(error) => {
                    self.pending = Some(error);
                    break;
                }
            }
            if out.len() == self.batch {
                break;
            }
        }
        Ok((!out.is_empty()).then_some(Batch::Json(out)))
    }
}

/// JSON values, encoded one by one with `run_id` stamped into each top-level `metadata`.
pub struct ValueSource<I> {
    iter: I,
    run_id: String,
    position: u64,
    pending: Option<Error>,
}

impl<I> ValueSource<I>
where
    I: Iterator<Item = Result<Value>> + Send,
{
    /// Encodes the values of `iter` for the run `run_id`.
    pub fn new(iter: I, run_id: impl Into<String>) -> Self {
        ValueSource {
            iter,
            run_id: run_id.into(),
            position: 0,
            pending: None,
        }
    }
}

#[async_trait]
impl<I> EntitySource for ValueSource<I>
where
    I: Iterator<Item = Result<Value>> + Send,
{
    async fn next_batch(&mut self) -> Result<Option<Batch>> {
        if let Some(error) = self.pending.take() {
            return Err(error);
        }
        let mut out = Vec::with_capacity(DEFAULT_BATCH);
        for item in self.iter.by_ref() {
            let stamped = item.and_then(|mut value| {
                stamp_run_id(&mut value, &self.run_id, self.position).map(|()| value)
            });
            let value = match stamped {
                Ok(value) => value,
                Err(error) if out.is_empty() => return Err(error),
                // What was produced before the failure is still delivered.
                Err(error) => {
                    self.pending = Some(error);
                    break;
                }
            };
            self.position += 1;
            out.push(value.to_string());
            if out.len() == DEFAULT_BATCH {
                break;
            }
        }
        Ok((!out.is_empty()).then_some(Batch::Json(out)))
    }
}

enum Message {
    Batch(Batch),
    Failed(Error),
    End,
}

/// The producing half of a [`ChannelSource`], used from a plain (non-async) thread.
#[derive(Debug, Clone)]
pub struct BatchSender {
    tx: mpsc::Sender<Message>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Message::Batch(b) => write!(f, "Batch({})", b.len()),
            Message::Failed(e) => write!(f, "Failed({e})"),
            Message::End => f.write_str("End"),
        }
    }
}

impl BatchSender {
    /// Sends one batch, blocking while the run is `capacity` batches behind. Returns `false`
    /// when the run stopped reading (it failed): the producer should stop.
    pub fn send_blocking(&self, batch: impl Into<Batch>) -> bool {
        let batch = batch.into();
        batch.is_empty() || self.tx.blocking_send(Message::Batch(batch)).is_ok()
    }

    /// Ends the stream with an error (the run fails with it).
    pub fn fail_blocking(self, error: Error) {
        let _ = self.tx.blocking_send(Message::Failed(error));
    }

    /// Ends the stream normally.
    pub fn finish_blocking(self) {
        let _ = self.tx.blocking_send(Message::End);
    }

    /// Async twin of [`BatchSender::send_blocking`].
    pub async fn send(&self, batch: impl Into<Batch>) -> bool {
        let batch = batch.into();
        batch.is_empty() || self.tx.send(Message::Batch(batch)).await.is_ok()
    }

    /// Async twin of [`BatchSender::fail_blocking`].
    pub async fn fail(self, error: Error) {
        let _ = self.tx.send(Message::Failed(error)).await;
    }

    /// Async twin of [`BatchSender::finish_blocking`].
    pub async fn finish(self) {
        let _ = self.tx.send(Message::End).await;
    }

    /// Whether the run stopped reading.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// Batches arriving over a bounded channel: the producer runs at most `capacity` batches ahead,
/// so a run never holds more than that many batches plus the chunk being filled.
#[derive(Debug)]
pub struct ChannelSource {
    rx: mpsc::Receiver<Message>,
    ended: bool,
}

/// A bounded batch channel.
pub fn channel(capacity: usize) -> (BatchSender, ChannelSource) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (BatchSender { tx }, ChannelSource { rx, ended: false })
}

#[async_trait]
impl EntitySource for ChannelSource {
    async fn next_batch(&mut self) -> Result<Option<Batch>> {
        if self.ended {
            return Ok(None);
        }
        match self.rx.recv().await {
            Some(Message::Batch(batch)) => Ok(Some(batch)),
            Some(Message::Failed(error)) => {
                self.ended = true;
                Err(error)
            }
            Some(Message::End) => {
                self.ended = true;
                Ok(None)
            }
            None => {
                self.ended = true;
                Err(Error::Ingest(
                    "the entity producer stopped without finishing its stream".into(),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn channel_source_delivers_batches_then_ends() {
        let (tx, mut rx) = channel(2);
        let producer = std::thread::spawn(move || {
            assert!(tx.send_blocking(vec!["1".to_string(), "2".to_string()]));
            assert!(tx.send_blocking(vec!["3".to_string()]));
            tx.finish_blocking();
        });
        assert_eq!(
            rx.next_batch().await.unwrap().unwrap(),
            Batch::Json(vec!["1".into(), "2".into()])
        );
        assert_eq!(
            rx.next_batch().await.unwrap().unwrap(),
            Batch::Json(vec!["3".into()])
        );
        assert!(rx.next_batch().await.unwrap().is_none());
        assert!(rx.next_batch().await.unwrap().is_none());
        producer.join().unwrap();
    }

    #[tokio::test]
    async fn a_producer_that_vanishes_is_an_error_not_an_end() {
        let (tx, mut rx) = channel(2);
        std::thread::spawn(move || {
            assert!(tx.send_blocking(vec!["1".to_string()]));
            drop(tx);
        })
        .join()
        .unwrap();
        assert!(rx.next_batch().await.unwrap().is_some());
        assert_eq!(rx.next_batch().await.unwrap_err().code(), "ingest_error");
    }

    #[tokio::test]
    async fn a_dropped_source_tells_the_producer_to_stop() {
        let (tx, rx) = channel(1);
        drop(rx);
        assert!(tx.is_closed());
        assert!(!tx.send(vec!["1".to_string()]).await);
    }

    #[tokio::test]
    async fn value_source_stamps_run_id() {
        let values = vec![Ok(json!({"a": 1})), Ok(json!({"metadata": {"x": 1}}))];
        let mut src = ValueSource::new(values.into_iter(), "rid");
        let Batch::Json(batch) = src.next_batch().await.unwrap().unwrap() else {
            panic!("JSON expected")
        };
        assert_eq!(batch[0], r#"{"a":1,"metadata":{"run_id":"rid"}}"#);
        assert_eq!(batch[1], r#"{"metadata":{"x":1,"run_id":"rid"}}"#);
        assert!(src.next_batch().await.unwrap().is_none());
    }
}
