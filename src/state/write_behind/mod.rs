//! Write-behind layer over any [`StateStore`].
//!
//! Writes are validated against what this layer knows (its pending writes, else one store read),
//! queued and return at once; one tokio task drains the queue, applying up to
//! [`WriteBehindConfig::max_batch`] writes per transaction. Until a write is durable it also
//! lives in an *overlay* that every read consults before the store, so a reader always sees the
//! writes made through the same [`WriteBehind`] (read-your-writes) without waiting for any batch.
//!
//! Writes replace a value (records, results, workflow values) or add to a set (history entries
//! carry a unique `entry_key`, runs and sub-invocations are keyed), so a read that races with a
//! batch commit never shows a write twice or loses it.
//!
//! A background write that fails (or that the store rejects) is never dropped silently: the next

mod durability;
mod reads;
mod writer;
mod writes;

use super::plan::StoredInvocation;
use super::store::{StateStore, ValueKind, WriteOp};
use super::{
    AppInfo, ExceptionRecord, Invocation, InvocationHistory, InvocationStatus, WorkflowIdentity,
};
use crate::clock::{SharedClock, SystemClock};
use crate::error::Result;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use writer::{check_state, run_writer};

/// Tuning of the write-behind queue.
#[derive(Debug, Clone)]
pub struct WriteBehindConfig {
    /// Most writes applied in one transaction.
    pub max_batch: usize,
    /// Queued writes beyond which writers wait for the queue to drain (back-pressure).
    pub max_pending: usize,
    /// How many times a batch is tried while the store reports itself unavailable.
    pub unavailable_attempts: u32,
    /// First pause between those tries (doubled each time, at most [`MAX_UNAVAILABLE_PAUSE`]).
    pub unavailable_backoff: Duration,
    /// Source of "now" for history entries and the stores' `updated_at` stamps.
    pub clock: SharedClock,
}

/// Longest pause between two tries of a batch while the store is unavailable.
pub const MAX_UNAVAILABLE_PAUSE: Duration = Duration::from_secs(5);

impl Default for WriteBehindConfig {
    fn default() -> Self {
        WriteBehindConfig {
            max_batch: 100_000,
            max_pending: 1_000_000,
            // About 20 s of tries (0.1 + 0.2 + … capped at 5 s): a database restart or
            // a failover, not just a blip, is ridden out before a batch is given up on.
            unavailable_attempts: 10,
            unavailable_backoff: Duration::from_millis(100),
            clock: Arc::new(SystemClock),
        }
    }
}

/// Most settled statuses remembered (see `State::settled`).
const SETTLED_CAPACITY: usize = 100_000;

/// What a queued write touches in the overlay.
#[derive(Debug, Clone)]
enum Key {
    Invocation(String),
    Value(String, ValueKind, String),
    App(String),
    Run(String),
    Sub(String, String),
}

/// Pending state of one invocation.
#[derive(Debug, Default)]
struct PendingInvocation {
    /// Sequence number of the newest queued write about it.
    last_seq: u64,
    /// The record as last upserted here (its status kept current by later history).
    record: Option<Invocation>,
    /// Its status as this layer knows it (after its pending writes), if known.
    status: Option<InvocationStatus>,
    /// History entries not yet durable, with their sequence numbers.
    history: Vec<(u64, InvocationHistory)>,
    result: Option<String>,
    exception: Option<ExceptionRecord>,
}

#[derive(Debug, Default)]
struct Overlay {
    invocations: HashMap<String, PendingInvocation>,
    values: HashMap<(String, ValueKind, String), (u64, String)>,
    app_infos: HashMap<String, (u64, AppInfo)>,
    runs: HashMap<String, (u64, WorkflowIdentity)>,
    subs: HashMap<String, Vec<(u64, String)>>,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<(u64, WriteOp)>,
    /// Sequence number of the newest queued write (0: none yet).
    last_seq: u64,
    overlay: Overlay,
    /// Statuses of invocations whose writes became durable here, so a later upsert of a stale
    /// copy is refused at call time (bounded: cleared when full).
    settled: HashMap<String, InvocationStatus>,
    /// Background failures not yet reported.
    failures: Vec<String>,
    closing: bool,
    closed: bool,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn StateStore>,
    state: Mutex<State>,
    /// Wakes the writer task when work arrives or the layer closes.
    wake: Notify,
    /// Sequence number up to which every write is durable (or reported failed).
    durable: watch::Sender<u64>,
    config: WriteBehindConfig,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("write-behind state poisoned")
    }
}

/// Outcome of trying to queue a write without waiting.
enum Attempt {
    Queued,
    /// The invocation's current status (or existence) must be read from the store first.
    NeedsStatus(WriteOp),
    /// The queue is full: wait for the writer.
    Full(WriteOp),
}

/// The write-behind layer. Create it inside a tokio runtime (it spawns its writer task).
#[derive(Debug)]
pub struct WriteBehind {
    inner: Arc<Inner>,
    app_id: Mutex<Option<String>>,
}

impl WriteBehind {
    /// The clock history entries are stamped with (the store was opened with the same one).
    pub fn clock(&self) -> &SharedClock {
        &self.inner.config.clock
    }

    /// Wraps `store`, spawning the writer task on the current tokio runtime.
    pub fn new(store: Arc<dyn StateStore>, config: WriteBehindConfig) -> Self {
        let (durable, _) = watch::channel(0);
        let inner = Arc::new(Inner {
            store,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            durable,
            config,
        });
        tokio::spawn(run_writer(inner.clone()));
        WriteBehind {
            inner,
            app_id: Mutex::new(None),
        }
    }

    /// The wrapped store.
    pub fn store(&self) -> &Arc<dyn StateStore> {
        &self.inner.store
    }

    /// Fails with the background failures not yet reported, or when closed.
    fn check(&self) -> Result<()> {
        check_state(&mut self.inner.lock())
    }
}

impl Drop for WriteBehind {
    fn drop(&mut self) {
        // The writer drains what is queued, then exits and releases the store.
        if let Ok(mut st) = self.inner.state.lock() {
            st.closing = true;
        }
        self.inner.wake.notify_one();
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<WriteBehind>();
    check::<StoredInvocation>();
}
