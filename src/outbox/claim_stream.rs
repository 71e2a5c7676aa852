//! Batches claimed one after another, the next claimed while the caller works on this one. The
//! one claim-ahead loop of headrace: the worker's lanes and Python's `OutboxStore.iter_claims`
//! both run on it.

use super::OutboxItem;
use crate::error::{Error, Result};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// One claim's result, to come.
pub type ClaimFuture = Pin<Box<dyn Future<Output = Result<Vec<OutboxItem>>> + Send>>;

/// Makes one claim; called for every batch (it may record metrics or hold leases too).
pub type ClaimFn = Arc<dyn Fn() -> ClaimFuture + Send + Sync>;

/// Successive claims with the next one made ahead, in the background, while the caller handles
/// the batch it was given. Close it to get back the batch claimed ahead and never handed out.
pub struct ClaimStream {
    claim: ClaimFn,
    ahead: Option<JoinHandle<Result<Vec<OutboxItem>>>>,
    closed: bool,
}

impl ClaimStream {
    /// A stream making its claims with `claim`.
    pub fn new(claim: ClaimFn) -> Self {
        ClaimStream {
            claim,
            ahead: None,
            closed: false,
        }
    }

    /// The next batch: the one claimed ahead, else a fresh claim. A batch claimed ahead came back
    /// empty before the caller settled the previous one, so an empty one is looked at once more.
    /// An empty result means nothing is due; after [`ClaimStream::close`] it is always empty.
    pub async fn next(&mut self) -> Result<Vec<OutboxItem>> {
        if self.closed {
            return Ok(Vec::new());
        }
        let Some(ahead) = self.ahead.take() else {
            return (self.claim)().await;
        };
        let claimed = finish(ahead).await?;
        if claimed.is_empty() {
            return (self.claim)().await;
        }
        Ok(claimed)
    }

    /// Starts claiming the next batch in the background (not after [`ClaimStream::close`], and
    /// not while a claim ahead is already running).
    pub fn claim_ahead(&mut self) {
        if !self.closed && self.ahead.is_none() {
            self.ahead = Some(tokio::spawn((self.claim)()));
        }
    }

    /// Like [`ClaimStream::claim_ahead`], but the claim ahead is `claim` (e.g. one that also
    /// acknowledges the batch just handled, in the same round trip). After
    /// [`ClaimStream::close`], or while a claim ahead is running, `claim` is not started and is
    /// given back.
    pub fn claim_ahead_with(&mut self, claim: ClaimFuture) -> Option<ClaimFuture> {
        if self.closed || self.ahead.is_some() {
            return Some(claim);
        }
        self.ahead = Some(tokio::spawn(claim));
        None
    }

    /// Whether [`ClaimStream::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Ends the stream: no further claim is made. Returns the batch claimed ahead and never
    /// handed out (empty if none, or if that claim failed), for the caller to give back.
    pub async fn close(&mut self) -> Vec<OutboxItem> {
        self.closed = true;
        match self.ahead.take() {
            Some(ahead) => finish(ahead).await.unwrap_or_default(),
            None => Vec::new(),
        }
    }

    /// Ends the stream without waiting: the claim ahead, if any, is returned unfinished.
    pub fn detach_ahead(&mut self) -> Option<JoinHandle<Result<Vec<OutboxItem>>>> {
        self.closed = true;
        self.ahead.take()
    }
}

/// The result of a claim made in the background.
pub async fn finish(task: JoinHandle<Result<Vec<OutboxItem>>>) -> Result<Vec<OutboxItem>> {
    task.await
        .unwrap_or_else(|err| Err(Error::Store(format!("a claim task failed: {err}"))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A claim function handing out the queued batches in order, then empty ones.
    fn scripted(batches: Vec<Vec<i64>>) -> (ClaimFn, Arc<Mutex<usize>>) {
        let queue = Arc::new(Mutex::new(batches.into_iter()));
        let calls = Arc::new(Mutex::new(0));
        let counter = calls.clone();
        let claim: ClaimFn = Arc::new(move || {
            *counter.lock().unwrap() += 1;
            let batch = queue.lock().unwrap().next().unwrap_or_default();
            Box::pin(async move { Ok(batch.into_iter().map(item).collect()) })
        });
        (claim, calls)
    }

    fn item(id: i64) -> OutboxItem {
        OutboxItem {
            id,
            topic: "t".into(),
            payload: "null".into(),
            status: super::super::OutboxStatus::Processing,
            priority: 0,
            attempts: 1,
            max_attempts: 5,
            run_at: chrono::Utc::now(),
            lease_owner: None,
            lease_expires_at: None,
            last_error: None,
            dedupe_key: None,
            trace_id: None,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        }
    }

    fn ids(items: &[OutboxItem]) -> Vec<i64> {
        items.iter().map(|i| i.id).collect()
    }

    #[tokio::test]
    async fn hands_out_batches_in_order_with_the_next_claimed_ahead() {
        let (claim, calls) = scripted(vec![vec![1, 2], vec![3]]);
        let mut stream = ClaimStream::new(claim);
        assert_eq!(ids(&stream.next().await.unwrap()), vec![1, 2]);
        stream.claim_ahead();
        assert_eq!(ids(&stream.next().await.unwrap()), vec![3]);
        assert_eq!(*calls.lock().unwrap(), 2);
    }

    #[tokio::test]
    async fn an_empty_batch_claimed_ahead_is_looked_at_once_more() {
        let (claim, calls) = scripted(vec![vec![1], vec![], vec![2]]);
        let mut stream = ClaimStream::new(claim);
        assert_eq!(ids(&stream.next().await.unwrap()), vec![1]);
        stream.claim_ahead(); // gets the empty batch
        assert_eq!(ids(&stream.next().await.unwrap()), vec![2]);
        assert_eq!(*calls.lock().unwrap(), 3);
        assert!(
            stream.next().await.unwrap().is_empty(),
            "a fresh empty claim ends the look"
        );
    }

    #[tokio::test]
    async fn a_given_claim_ahead_is_handed_out_next_and_refused_once_closed() {
        let (claim, calls) = scripted(vec![vec![1]]);
        let mut stream = ClaimStream::new(claim);
        assert_eq!(ids(&stream.next().await.unwrap()), vec![1]);
        let given: ClaimFuture = Box::pin(async { Ok(vec![item(7), item(8)]) });
        assert!(stream.claim_ahead_with(given).is_none(), "started");
        let second: ClaimFuture = Box::pin(async { Ok(vec![item(9)]) });
        assert!(
            stream.claim_ahead_with(second).is_some(),
            "refused while one is running"
        );
        assert_eq!(ids(&stream.next().await.unwrap()), vec![7, 8]);
        assert_eq!(
            *calls.lock().unwrap(),
            1,
            "the stream's own claim was not used"
        );
        stream.close().await;
        let late: ClaimFuture = Box::pin(async { Ok(vec![item(10)]) });
        assert!(
            stream.claim_ahead_with(late).is_some(),
            "refused once closed"
        );
    }

    #[tokio::test]
    async fn close_returns_the_batch_claimed_ahead_and_stops_claiming() {
        let (claim, calls) = scripted(vec![vec![1], vec![2, 3], vec![4]]);
        let mut stream = ClaimStream::new(claim);
        stream.next().await.unwrap();
        stream.claim_ahead();
        assert_eq!(ids(&stream.close().await), vec![2, 3]);
        assert!(stream.is_closed());
        stream.claim_ahead();
        assert!(stream.next().await.unwrap().is_empty());
        assert_eq!(*calls.lock().unwrap(), 2, "no claim after close");
    }
}
