//! Outbox rows and the items callers hand in.

use super::OutboxConfig;
use crate::error::{Error, Result};
use crate::validate;
use chrono::{DateTime, Duration, Utc};
use std::fmt;
use std::str::FromStr;

/// Lifecycle of an outbox item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OutboxStatus {
    Pending,
    Processing,
    Completed,
    Failed,
}

impl OutboxStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [OutboxStatus; 4] = [
        OutboxStatus::Pending,
        OutboxStatus::Processing,
        OutboxStatus::Completed,
        OutboxStatus::Failed,
    ];

    /// The stored (and Python) name.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Pending => "pending",
            OutboxStatus::Processing => "processing",
            OutboxStatus::Completed => "completed",
            OutboxStatus::Failed => "failed",
        }
    }
}

impl fmt::Display for OutboxStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OutboxStatus {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        OutboxStatus::ALL.into_iter().find(|status| status.as_str() == s).ok_or_else(|| {
            Error::config(format!(
                "unknown outbox status {s:?}: expected one of pending, processing, completed, failed"
            ))
        })
    }
}

/// One row of the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem {
    pub id: i64,
    pub topic: String,
    /// The payload as encoded JSON text.
    pub payload: String,
    pub status: OutboxStatus,
    pub priority: i32,
    /// How many times the item was claimed.
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at: DateTime<Utc>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub dedupe_key: Option<String>,
    pub trace_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl OutboxItem {
    /// Sort key of the claim order: higher priority, then earlier run_at, then id.
    pub fn claim_order_key(&self) -> (i32, DateTime<Utc>, i64) {
        (-self.priority, self.run_at, self.id)
    }
}

/// An item to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewItem {
    pub topic: String,
    /// Encoded JSON text.
    pub payload: String,
    pub priority: i32,
    /// When it becomes claimable: `None` is now (plus `delay`).
    pub run_at: Option<DateTime<Utc>>,
    /// Added to now when `run_at` is `None`.
    pub delay: Duration,
    pub dedupe_key: Option<String>,
    /// `None`: the store's retry policy's `max_attempts`.
    pub max_attempts: Option<i32>,
    pub trace_id: Option<String>,
}

impl NewItem {
    /// An item on `topic` with encoded JSON `payload` and every option at its default.
    pub fn new(topic: impl Into<String>, payload: impl Into<String>) -> Self {
        NewItem {
            topic: topic.into(),
            payload: payload.into(),
            priority: 0,
            run_at: None,
            delay: Duration::zero(),
            dedupe_key: None,
            max_attempts: None,
            trace_id: None,
        }
    }

    /// Checks the item against `config` and resolves its run time and attempt limit.
    pub(crate) fn resolve(
        &self,
        config: &OutboxConfig,
        now: DateTime<Utc>,
    ) -> Result<(DateTime<Utc>, i32)> {
        validate::key("topic", &self.topic)?;
        validate::optional_key("dedupe_key", self.dedupe_key.as_deref())?;
        validate::optional_key("trace_id", self.trace_id.as_deref())?;
        if self.payload.len() > config.max_payload_bytes {
            return Err(Error::config(format!(
                "payload for topic {:?} is {} bytes of JSON, over the maximum of {} bytes (max_payload_bytes)",
                self.topic,
                self.payload.len(),
                config.max_payload_bytes
            )));
        }
        validate::jsonb(
            &format!("payload for topic {:?}", self.topic),
            &self.payload,
        )?;
        validate::duration("delay_seconds", self.delay)?;
        let max_attempts = self.max_attempts.unwrap_or(config.retry.max_attempts);
        if max_attempts < 1 {
            return Err(Error::config(format!(
                "max_attempts must be >= 1, got {max_attempts}"
            )));
        }
        let run_at = match self.run_at {
            Some(at) => validate::time("run_at", at)?,
            None => validate::after("run_at (now + delay_seconds)", now, self.delay)?,
        };
        Ok((run_at, max_attempts))
    }
}
