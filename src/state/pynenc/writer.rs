//! [`PynencState`]: one app's handle on a pynenc store, in one of two durability modes.
//!
//! - [`Durability::Durable`] (pynenc's promise, the default): a write is committed when the
//!   call returns.
//! - [`Durability::WriteBehind`]: a write is queued and returns at once; a background task
//!   applies queued writes in batches of one transaction. Reads, [`PynencState::flush`] and
//!   [`PynencState::close`] wait for every earlier write first, so a reader always sees its
//!   own writes, and a write that failed in the background is raised by the next call.

use super::history::HistoryEntry;
use super::store::{PynencInvocation, PynencStore, PynencWrite, Refused, Transitions, WorkflowRun};
use crate::error::{Error, Result};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// When a write is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Committed before the call returns.
    #[default]
    Durable,
    /// Queued; committed in batches of at most `max_batch` writes.
    WriteBehind { max_batch: usize },
}

enum Message {
    Writes(Vec<PynencWrite>),
    Flush(oneshot::Sender<()>),
}

/// A failure of the background writer, kept until a call can raise it.
#[derive(Debug, Default)]
struct Failure {
    error: Option<Error>,
    refused: Vec<Refused>,
}

/// One app's handle on a pynenc store.
#[derive(Debug)]
pub struct PynencState {
    store: Arc<dyn PynencStore>,
    app: String,
    transitions: Transitions,
    queue: Option<mpsc::UnboundedSender<Message>>,
    failure: Arc<Mutex<Failure>>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Message::Writes(w) => write!(f, "Writes({})", w.len()),
            Message::Flush(_) => f.write_str("Flush"),
        }
    }
}

/// What a write call reports: refusals of the status model (durable mode only; in
/// write-behind mode they are raised by a later call).
pub type Outcome = Vec<Refused>;

impl PynencState {
    /// A handle for `app` on `store` (needs a tokio runtime for write-behind).
    pub fn new(
        store: Arc<dyn PynencStore>,
        app: impl Into<String>,
        durability: Durability,
        transitions: Transitions,
    ) -> Self {
        let failure = Arc::new(Mutex::new(Failure::default()));
        let app = app.into();
        let queue = match durability {
            Durability::Durable => None,
            Durability::WriteBehind { max_batch } => {
                let (sender, receiver) = mpsc::unbounded_channel();
                tokio::spawn(run_writer(
                    store.clone(),
                    app.clone(),
                    transitions,
                    receiver,
                    max_batch.max(1),
                    failure.clone(),
                ));
                Some(sender)
            }
        };
        PynencState {
            store,
            app,
            transitions,
            queue,
            failure,
        }
    }

    /// The app id every call is scoped to.
    pub fn app(&self) -> &str {
        &self.app
    }

    /// The store itself (unscoped reads such as every app's info).
    pub fn store(&self) -> &Arc<dyn PynencStore> {
        &self.store
    }

    /// Whether writes are queued for the background writer ([`Durability::WriteBehind`]).
    pub fn is_write_behind(&self) -> bool {
        self.queue.is_some()
    }

    /// Writes `writes` (validated first: a bad one fails the call and nothing is written).
    pub async fn write(&self, writes: Vec<PynencWrite>) -> Result<Outcome> {
        if self.queue.is_some() {
            return self.enqueue(writes).map(|()| Vec::new());
        }
        for write in &writes {
            write.validate()?;
        }
        self.raise_failure()?;
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        self.store.apply(&self.app, writes, self.transitions).await
    }

    /// Write-behind: validates and queues `writes` without waiting for anything (no runtime
    /// needed), raising an earlier background failure first.
    pub fn enqueue(&self, writes: Vec<PynencWrite>) -> Result<()> {
        let Some(queue) = &self.queue else {
            return Err(Error::Store(
                "enqueue needs a write-behind pynenc state; this one is durable".into(),
            ));
        };
        for write in &writes {
            write.validate()?;
        }
        self.raise_failure()?;
        if writes.is_empty() {
            return Ok(());
        }
        queue
            .send(Message::Writes(writes))
            .map_err(|_| writer_stopped())
    }

    /// Waits until every earlier write is committed, raising a background failure.
    pub async fn flush(&self) -> Result<()> {
        if let Some(queue) = &self.queue {
            let (done, wait) = oneshot::channel();
            queue
                .send(Message::Flush(done))
                .map_err(|_| writer_stopped())?;
            wait.await.map_err(|_| writer_stopped())?;
        }
        self.raise_failure()
    }

    /// Refusals of the status model that the background writer met (drained).
    pub fn take_refused(&self) -> Vec<Refused> {
        std::mem::take(&mut self.failure.lock().expect("failure slot poisoned").refused)
    }

    fn raise_failure(&self) -> Result<()> {
        let mut failure = self.failure.lock().expect("failure slot poisoned");
        if let Some(error) = failure.error.take() {
            return Err(error);
        }
        if let Some(first) = failure.refused.first() {
            let error = first.to_error();
            failure.refused.clear();
            return Err(error);
        }
        Ok(())
    }

    /// Flushes, then closes the store.
    pub async fn close(&self) -> Result<()> {
        let flushed = self.flush().await;
        self.store.close().await;
        flushed
    }

    pub async fn get_invocation(&self, id: &str) -> Result<Option<PynencInvocation>> {
        self.flush().await?;
        self.store.get_invocation(&self.app, id).await
    }

    pub async fn get_history(&self, id: &str) -> Result<Vec<HistoryEntry>> {
        self.flush().await?;
        self.store.get_history(&self.app, id).await
    }

    pub async fn get_result(&self, id: &str) -> Result<Option<String>> {
        self.flush().await?;
        self.store.get_result(&self.app, id).await
    }

    pub async fn get_exception(&self, id: &str) -> Result<Option<String>> {
        self.flush().await?;
        self.store.get_exception(&self.app, id).await
    }

    pub async fn get_workflow_data(&self, workflow_id: &str, key: &str) -> Result<Option<String>> {
        self.flush().await?;
        self.store
            .get_workflow_data(&self.app, workflow_id, key)
            .await
    }

    pub async fn get_app_info(&self, app_id: &str) -> Result<Option<String>> {
        self.flush().await?;
        self.store.get_app_info(app_id).await
    }

    pub async fn all_app_infos(&self) -> Result<Vec<(String, String)>> {
        self.flush().await?;
        self.store.all_app_infos().await
    }

    pub async fn workflow_types(&self) -> Result<Vec<String>> {
        self.flush().await?;
        self.store.workflow_types(&self.app).await
    }

    pub async fn workflow_runs(&self, workflow_type_key: Option<&str>) -> Result<Vec<WorkflowRun>> {
        self.flush().await?;
        self.store.workflow_runs(&self.app, workflow_type_key).await
    }

    pub async fn sub_invocations(&self, workflow_id: &str) -> Result<Vec<String>> {
        self.flush().await?;
        self.store.sub_invocations(&self.app, workflow_id).await
    }

    pub async fn child_invocations(&self, parent_invocation_id: &str) -> Result<Vec<String>> {
        self.flush().await?;
        self.store
            .child_invocations(&self.app, parent_invocation_id)
            .await
    }

    pub async fn invocations_by_parent_event(&self, parent_event_id: &str) -> Result<Vec<String>> {
        self.flush().await?;
        self.store
            .invocations_by_parent_event(&self.app, parent_event_id)
            .await
    }

    pub async fn invocations_by_workflow(
        &self,
        workflow_id: Option<&str>,
        workflow_type_key: Option<&str>,
    ) -> Result<Vec<String>> {
        self.flush().await?;
        self.store
            .invocations_by_workflow(&self.app, workflow_id, workflow_type_key)
            .await
    }

    pub async fn history_in_range(
        &self,
        start_us: i64,
        end_us: i64,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<HistoryEntry>> {
        self.flush().await?;
        self.store
            .history_in_range(&self.app, start_us, end_us, limit, offset)
            .await
    }

    pub async fn invocations_in_range(
        &self,
        start_us: i64,
        end_us: i64,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<String>> {
        self.flush().await?;
        self.store
            .invocations_in_range(&self.app, start_us, end_us, limit, offset)
            .await
    }

    pub async fn runner_contexts(&self, runner_ids: &[String]) -> Result<Vec<String>> {
        self.flush().await?;
        self.store.runner_contexts(&self.app, runner_ids).await
    }

    pub async fn matching_runner_contexts(&self, partial_id: &str) -> Result<Vec<String>> {
        self.flush().await?;
        self.store
            .matching_runner_contexts(&self.app, partial_id)
            .await
    }

    /// Deletes everything of this app (after the queued writes, which it deletes too).
    pub async fn purge(&self) -> Result<()> {
        self.flush().await?;
        self.store.purge(&self.app).await
    }
}

fn writer_stopped() -> Error {
    Error::Store("the pynenc write-behind writer has stopped: connect again".into())
}

async fn run_writer(
    store: Arc<dyn PynencStore>,
    app: String,
    transitions: Transitions,
    mut inbox: mpsc::UnboundedReceiver<Message>,
    max_batch: usize,
    failure: Arc<Mutex<Failure>>,
) {
    while let Some(first) = inbox.recv().await {
        let mut batch = Vec::new();
        let mut waiters = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Writes(writes) => batch.extend(writes),
                Message::Flush(done) => waiters.push(done),
            }
            if batch.len() < max_batch {
                next = inbox.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            let result = store.apply(&app, batch, transitions).await;
            let mut slot = failure.lock().expect("failure slot poisoned");
            match result {
                Ok(refused) => slot.refused.extend(refused),
                Err(error) => {
                    tracing::error!(app = %app, %error, "pynenc write-behind batch failed");
                    slot.error.get_or_insert(error);
                }
            }
        }
        for waiter in waiters {
            let _ = waiter.send(());
        }
    }
}
