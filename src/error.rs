//! Every failure the core can report, and the one error table: each variant's code, its Python
//! class (`python/headrace/errors.py`) and whether it is retryable. The binding layer maps
//! through [`ERROR_TABLE`] in `bindings/errors.rs`; [`classify_failure`] is the one rule for
//! exceptions raised by user code.

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

/// One row of the error table: the stable code, the class of `headrace.errors` that stands for
/// it in Python, and whether retrying the same operation later may succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorKind {
    pub code: &'static str,
    pub python_class: &'static str,
    pub retryable: bool,
}

const fn kind(code: &'static str, python_class: &'static str, retryable: bool) -> ErrorKind {
    ErrorKind {
        code,
        python_class,
        retryable,
    }
}

/// The error table, in the order of [`Error`]'s variants. The bindings map through it, and
/// `headrace.errors` checks at import that its classes agree with it.
pub const ERROR_TABLE: [ErrorKind; 10] = [
    kind("config_error", "ConfigError", false),
    kind("store_error", "StoreError", false),
    kind("store_unavailable", "StoreUnavailable", true),
    kind("lease_lost", "LeaseLost", false),
    kind("not_found", "NotFoundError", false),
    kind("invocation_not_found", "InvocationNotFoundError", false),
    kind(
        "invalid_status_transition",
        "InvalidStatusTransition",
        false,
    ),
    kind("ingest_error", "IngestError", false),
    kind("ingest_rejected", "IngestRejected", false),
    kind("ingest_unavailable", "IngestUnavailable", true),
];

/// Where a failure of user code happened, which decides how an exception that carries no
/// classification of its own is treated (see [`classify_failure`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureContext {
    /// An outbox handler: the item is retried until its attempts run out.
    Handler,
    /// A backend, sink or ingest callback of the policy runner: the run fails as unexpected
    /// (`Ingest`), never retried on its own.
    Ingest,
}

/// Whether a failure of user code may be retried — the one retry classification rule:
/// 1. an exception with a `retryable` attribute is transient (`True`) or permanent (`False`);
///    every headrace error has one (its row of [`ERROR_TABLE`], unless the instance overrides it);
/// 2. anything else depends on `context`: a handler's failure is retried until the item's
///    attempts run out; an ingest failure is unexpected and not retried.
pub fn failure_is_retryable(retryable: Option<bool>, context: FailureContext) -> bool {
    retryable.unwrap_or(matches!(context, FailureContext::Handler))
}

/// The core error an exception of user code stands for, by the rule of
/// [`failure_is_retryable`]: a headrace error (`code` in [`ERROR_TABLE`]) keeps its class;
/// anything else becomes transient (`IngestUnavailable`), permanent (`IngestRejected`) or, for
/// an ingest failure without a `retryable` attribute, unexpected (`Ingest`). `message` becomes
/// its text.
pub fn classify_failure(
    code: Option<&str>,
    retryable: Option<bool>,
    context: FailureContext,
    message: String,
) -> Error {
    if let Some(error) = code.and_then(|c| Error::from_code(c, message.clone())) {
        return error;
    }
    match (retryable, failure_is_retryable(retryable, context)) {
        (None, false) => Error::Ingest(message),
        (_, true) => Error::IngestUnavailable(message),
        (Some(_), false) => Error::IngestRejected(message),
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
            // Only an explicit close() closes a pool: reconnecting, not retrying, is the fix.
            sqlx::Error::PoolClosed => {
                Error::Store("the PostgreSQL store is closed: connect again to use it".to_string())
            }
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
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

impl Error {
    /// This error's row of [`ERROR_TABLE`].
    pub fn kind(&self) -> &'static ErrorKind {
        let index = match self {
            Error::Config(_) => 0,
            Error::Store(_) => 1,
            Error::StoreUnavailable(_) => 2,
            Error::LeaseLost { .. } => 3,
            Error::NotFound(_) => 4,
            Error::InvocationNotFound(_) => 5,
            Error::InvalidStatusTransition(_) => 6,
            Error::Ingest(_) => 7,
            Error::IngestRejected(_) => 8,
            Error::IngestUnavailable(_) => 9,
        };
        &ERROR_TABLE[index]
    }

    /// The error of table code `code` with `message`; `None` for a code not in the table.
    pub fn from_code(code: &str, message: String) -> Option<Error> {
        Some(match code {
            "config_error" => Error::Config(message),
            "store_error" => Error::Store(message),
            "store_unavailable" => Error::StoreUnavailable(message),
            "lease_lost" => Error::LeaseLost {
                message,
                item_ids: Vec::new(),
            },
            "not_found" => Error::NotFound(message),
            "invocation_not_found" => Error::InvocationNotFound(message),
            "invalid_status_transition" => Error::InvalidStatusTransition(message),
            "ingest_error" => Error::Ingest(message),
            "ingest_rejected" => Error::IngestRejected(message),
            "ingest_unavailable" => Error::IngestUnavailable(message),
            _ => return None,
        })
    }

    /// Stable snake_case code, identical to the Python class's `code`.
    pub fn code(&self) -> &'static str {
        self.kind().code
    }

    /// Whether retrying the same operation later may succeed.
    pub fn retryable(&self) -> bool {
        self.kind().retryable
    }

    /// Shorthand for a configuration error.
    pub fn config(message: impl Into<String>) -> Self {
        Error::Config(message.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_its_own_row_and_round_trips_through_its_code() {
        for row in ERROR_TABLE {
            let error = Error::from_code(row.code, "m".into()).expect(row.code);
            assert_eq!(error.kind(), &row);
            assert_eq!(error.to_string(), "m");
        }
        assert!(Error::from_code("no_such_code", "m".into()).is_none());
    }

    #[test]
    fn the_classification_rule_depends_on_the_context_only_without_a_flag() {
        use FailureContext::{Handler, Ingest};
        let rule = |code, flag, context| classify_failure(code, flag, context, "m".into());
        assert_eq!(
            rule(Some("ingest_rejected"), Some(true), Handler).code(),
            "ingest_rejected"
        );
        assert_eq!(
            rule(Some("store_unavailable"), None, Ingest).code(),
            "store_unavailable"
        );
        assert!(rule(None, Some(true), Ingest).retryable());
        assert!(!rule(None, Some(false), Handler).retryable());
        assert!(rule(None, None, Handler).retryable());
        assert_eq!(rule(None, None, Ingest).code(), "ingest_error");
        assert!(!rule(Some("not_a_headrace_code"), None, Ingest).retryable());
    }
}
