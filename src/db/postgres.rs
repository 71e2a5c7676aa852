//! PostgreSQL through a sqlx pool.

use crate::db::url::redact;
use crate::error::{Error, Result};
use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::str::FromStr;
use std::time::Duration;

/// Opens a pool on `url`, failing with `StoreUnavailable` (password hidden) when unreachable.
pub async fn connect_pg(url: &str, max_connections: u32) -> Result<PgPool> {
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| Error::config(format!("invalid PostgreSQL URL {:?}: {e}", redact(url))))?
        // Batched writes are slow by design; headrace logs its own events, not every statement.
        .disable_statement_logging();
    let port = options.get_port();
    PgPoolOptions::new()
        .max_connections(max_connections)
        .after_connect(move |_conn, _meta| {
            Box::pin(async move {
                crate::db::nodelay::disable_nagle_towards(port);
                Ok(())
            })
        })
        .acquire_timeout(Duration::from_secs(10))
        // No ping before every acquire (a round trip per call); a dead connection surfaces as
        // StoreUnavailable on its query, is dropped by the pool, and the caller retries.
        .test_before_acquire(false)
        .connect_with(options)
        .await
        // Unreachable or busy stays StoreUnavailable (retryable); a refusal by the server (bad
        // password, no such database or role) is permanent: StoreError, retryable=False.
        .map_err(|e| match Error::from(e) {
            Error::StoreUnavailable(msg) => Error::StoreUnavailable(format!(
                "could not connect to PostgreSQL at {:?}: {msg}",
                redact(url)
            )),
            Error::Store(msg) => Error::Store(format!(
                "could not connect to PostgreSQL at {:?}: {msg}",
                redact(url)
            )),
            other => other,
        })
}
