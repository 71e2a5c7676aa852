//! PostgreSQL connections kept at hand between queries.
//!
//! sqlx gives a connection back to its pool from a spawned task that first pings the server (a
//! `Sync` round trip). Until that task has run, the connection is neither usable nor idle, so a
//! store issuing one query after another (a worker's claim, acknowledgement, next claim) finds
//! no idle connection, makes the pool open a new one, and pays an extra round trip per query on
//! the server. Measured here, a worker draining over 127.0.0.1 grew its pool to 7-8 connections,
//! each opening a ~40-100 ms stall.
//!
//! A [`ConnectionShelf`] keeps connections checked out of the pool. A query takes one from the
//! shelf ([`ConnectionShelf::checkout`]) and, once it has completed, puts it back at once
//! ([`Shelved::park`]): no ping, no task. A connection whose query failed, or whose future was
//! dropped half-way, is not parked: it goes back through sqlx's own release, which tests it.

use crate::error::Result;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{Acquire, Postgres};
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

/// A pool with a shelf of connections checked out of it and ready for the next query.
#[derive(Debug)]
pub struct ConnectionShelf {
    pool: PgPool,
    parked: Mutex<Vec<PoolConnection<Postgres>>>,
}

impl ConnectionShelf {
    /// A shelf over `pool`. It holds at most half the pool's `max_connections`, so callers
    /// that take connections from the pool itself (a `LISTEN` connection, say) always find one.
    pub fn new(pool: PgPool) -> Self {
        ConnectionShelf {
            pool,
            parked: Mutex::new(Vec::new()),
        }
    }

    /// The pool the connections come from.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A connection for one query or transaction: the one parked last, else one from the pool.
    pub async fn checkout(&self) -> Result<Shelved<'_>> {
        let parked = self.lock().pop();
        let connection = match parked {
            Some(connection) => connection,
            None => self.pool.acquire().await?,
        };
        Ok(Shelved {
            connection: Some(connection),
            shelf: self,
        })
    }

    /// Gives the parked connections back and closes the pool (waiting for those in use).
    pub async fn close(&self) {
        let parked = std::mem::take(&mut *self.lock());
        drop(parked);
        self.pool.close().await;
    }

    /// How many connections are parked (for tests).
    pub fn parked(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<PoolConnection<Postgres>>> {
        // A panic while holding the lock cannot leave the Vec half-updated.
        self.parked
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

impl Drop for ConnectionShelf {
    /// A parked connection dropped the usual way goes back to its pool through a spawned task,
    /// which needs a Tokio runtime; a store is often dropped by Python, outside one. There the
    /// parked connections are detached from the pool and simply closed.
    fn drop(&mut self) {
        let parked = std::mem::take(&mut *self.lock());
        if tokio::runtime::Handle::try_current().is_err() {
            for connection in parked {
                drop(connection.detach());
            }
        }
    }
}

/// A connection taken from a [`ConnectionShelf`]. Call [`Shelved::park`] once its query has
/// completed; dropped without it, the connection goes back through the pool's tested release.
#[derive(Debug)]
pub struct Shelved<'a> {
    connection: Option<PoolConnection<Postgres>>,
    shelf: &'a ConnectionShelf,
}

impl Shelved<'_> {
    /// Puts the connection back on the shelf for the next query (unless the pool is closing).
    pub fn park(mut self) {
        let Some(connection) = self.connection.take() else {
            return;
        };
        if self.shelf.pool.is_closed() {
            return;
        }
        let capacity = (self.shelf.pool.options().get_max_connections() as usize / 2).max(1);
        let mut parked = self.shelf.lock();
        if parked.len() < capacity {
            parked.push(connection);
        }
    }

    /// Begins a transaction on this connection; park the connection after its commit.
    pub async fn begin(&mut self) -> Result<sqlx::Transaction<'_, Postgres>> {
        Ok(Acquire::begin(&mut **self).await?)
    }
}

impl Deref for Shelved<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        self.connection
            .as_deref()
            .expect("a shelved connection is present until parked")
    }
}

impl DerefMut for Shelved<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.connection
            .as_deref_mut()
            .expect("a shelved connection is present until parked")
    }
}
