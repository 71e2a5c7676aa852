//! PostgreSQL through a sqlx pool.

use crate::db::url::redact;
use crate::error::{Error, Result};
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::time::Duration;

/// Opens a pool on `url`, failing with `StoreUnavailable` (password hidden) when unreachable.
pub async fn connect_pg(url: &str, max_connections: u32) -> Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        // No ping before every acquire (a round trip per call); a dead connection surfaces as
        // StoreUnavailable on its query, is dropped by the pool, and the caller retries.
        .test_before_acquire(false)
        .connect(url)
        .await
        .map_err(|e| match Error::from(e) {
            Error::Store(msg) | Error::StoreUnavailable(msg) => Error::StoreUnavailable(format!(
                "could not connect to PostgreSQL at {:?}: {msg}",
                redact(url)
            )),
            other => other,
        })
}
