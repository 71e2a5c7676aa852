//! A policy run: one execution of a backend (scheduled, manual or through the ingest callback),
//! recorded RUNNING before any entity is produced and finished COMPLETED or FAILED.

use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use std::fmt;
use std::str::FromStr;

/// Lifecycle of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    Running,
    Completed,
    Failed,
}

impl RunStatus {
    /// Every status.
    pub const ALL: [RunStatus; 3] = [RunStatus::Running, RunStatus::Completed, RunStatus::Failed];

    /// The stored (and Python) name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
        }
    }

    /// Whether the run is over.
    pub fn is_final(self) -> bool {
        self != RunStatus::Running
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        RunStatus::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                Error::config(format!(
                    "unknown run status {s:?}: expected running, completed or failed"
                ))
            })
    }
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunSource {
    /// The policy's schedule (a cron tick, or the single run of a policy without schedule).
    Schedule,
    /// The backend's `ingest_callback`.
    Callback,
    /// `PolicyManager.run_now`.
    Manual,
}

impl RunSource {
    /// Every source.
    pub const ALL: [RunSource; 3] = [RunSource::Schedule, RunSource::Callback, RunSource::Manual];

    /// The stored (and Python) name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunSource::Schedule => "schedule",
            RunSource::Callback => "callback",
            RunSource::Manual => "manual",
        }
    }
}

impl fmt::Display for RunSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunSource {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        RunSource::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                Error::config(format!(
                    "unknown run source {s:?}: expected schedule, callback or manual"
                ))
            })
    }
}

/// One recorded run of a policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// A UUID (version 4), also stamped into every entity as `metadata.run_id`.
    pub id: String,
    /// The policy's name.
    pub policy_id: String,
    pub status: RunStatus,
    /// Why the run failed (`None` unless FAILED).
    pub reason: Option<String>,
    /// Entities delivered to the sink.
    pub entity_count: u64,
    /// The backend's identity (`worker_backend`, `app_name`, `app_version`) and, once finished,
    /// `chunk_count`.
    pub metadata: Map<String, Value>,
    pub source: RunSource,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Run {
    /// A run of `policy_id` that starts now: RUNNING, nothing delivered yet.
    pub fn started(
        id: String,
        policy_id: &str,
        source: RunSource,
        metadata: Map<String, Value>,
        now: DateTime<Utc>,
    ) -> Run {
        Run {
            id,
            policy_id: policy_id.to_string(),
            status: RunStatus::Running,
            reason: None,
            entity_count: 0,
            metadata,
            source,
            created_at: now,
            updated_at: now,
        }
    }
}

/// A fresh random UUID (version 4, RFC 9562) as lowercase hyphenated text.
pub fn new_run_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_distinct_v4_uuids() {
        let a = new_run_id();
        let b = new_run_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
        assert_eq!(a.matches('-').count(), 4);
    }

    #[test]
    fn names_round_trip() {
        for s in RunStatus::ALL {
            assert_eq!(s.as_str().parse::<RunStatus>().unwrap(), s);
        }
        for s in RunSource::ALL {
            assert_eq!(s.as_str().parse::<RunSource>().unwrap(), s);
        }
        assert_eq!(
            "bogus".parse::<RunStatus>().unwrap_err().code(),
            "config_error"
        );
        assert!("bogus".parse::<RunSource>().is_err());
    }
}
