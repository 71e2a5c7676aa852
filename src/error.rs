//! Every failure the core can report. The binding layer maps each variant to one
//! Python exception class (see `python/headrace/errors.py`) in a single place.

use thiserror::Error;

/// The core's error type: one variant per Python exception class.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum Error {
    /// Invalid URL, argument, policy, schedule or setting.
    #[error("{0}")]
    Config(String),
    /// A database failure that retrying will not fix (bad SQL, constraint, corrupt data).
    #[error("{0}")]
    Store(String),
    /// The database could not be reached or was busy; retrying later may succeed.
    #[error("{0}")]
    StoreUnavailable(String),
    /// An acknowledgement or lease extension by a worker that no longer holds the lease.
    #[error("{message}")]
    LeaseLost { message: String, item_ids: Vec<i64> },
    /// A record that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// An invocation id the state backend does not know.
    #[error("{0}")]
    InvocationNotFound(String),
    /// A status change the transition table forbids.
    #[error("{0}")]
    InvalidStatusTransition(String),
    /// Unexpected ingest failure (neither clearly permanent nor clearly transient).
    #[error("{0}")]
    Ingest(String),
    /// Permanent ingest failure: do not retry.
    #[error("{0}")]
    IngestRejected(String),
    /// Transient ingest failure: retrying later may succeed.
    #[error("{0}")]
    IngestUnavailable(String),
}

impl Error {
    /// Stable snake_case code, identical to the Python class's `code`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Config(_) => "config_error",
            Error::Store(_) => "store_error",
            Error::StoreUnavailable(_) => "store_unavailable",
            Error::LeaseLost { .. } => "lease_lost",
            Error::NotFound(_) => "not_found",
            Error::InvocationNotFound(_) => "invocation_not_found",
            Error::InvalidStatusTransition(_) => "invalid_status_transition",
            Error::Ingest(_) => "ingest_error",
            Error::IngestRejected(_) => "ingest_rejected",
            Error::IngestUnavailable(_) => "ingest_unavailable",
        }
    }

    /// Whether retrying the same operation later may succeed.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Error::StoreUnavailable(_) | Error::IngestUnavailable(_)
        )
    }

    /// Shorthand for a configuration error.
    pub fn config(message: impl Into<String>) -> Self {
        Error::Config(message.into())
    }
}

impl From<rusqlite::Error> for Error {
    fn from(err: rusqlite::Error) -> Self {
        use rusqlite::ffi::ErrorCode;
        match &err {
            rusqlite::Error::SqliteFailure(code, _)
                if matches!(
                    code.code,
                    ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::CannotOpen
                ) =>
            {
                Error::StoreUnavailable(format!("SQLite is unavailable: {err}"))
            }
            _ => Error::Store(format!("SQLite error: {err}")),
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => {
                Error::StoreUnavailable(format!("PostgreSQL is unavailable: {err}"))
            }
            sqlx::Error::Database(db)
                if db.code().is_some_and(|c| {
                    // 08: connection exception, 53: insufficient resources, 57P: operator intervention
                    c.starts_with("08") || c.starts_with("53") || c.starts_with("57P")
                }) =>
            {
                Error::StoreUnavailable(format!("PostgreSQL is unavailable: {err}"))
            }
            _ => Error::Store(format!("PostgreSQL error: {err}")),
        }
    }
}

/// Result alias used throughout the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;
