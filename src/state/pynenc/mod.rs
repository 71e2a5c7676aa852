//! The store behind `headrace.pynenc`: pynenc 0.4's state-backend contract (its status records,
//! runner contexts, time-range queries, child and parent-event lookups, workflow data, app
//! infos, purge) on memory, SQLite and PostgreSQL, with pynenc's full status model.
//!
//! It is separate from headrace's own seed-shaped store ([`crate::state::StateStore`]), whose
//! documented rules (unknown invocations are errors, 7 statuses) stay as they are; here the
//! rules are pynenc's (a result or history may precede its invocation, 13 statuses).

mod history;
mod memory;
mod pg_batch;
mod postgres;
mod sql;
mod sqlite;
pub mod status;
mod store;
mod writer;

pub use history::{HistoryEntry, format_iso, parse_iso};
pub use memory::MemoryPynencStore;
pub use postgres::PostgresPynencStore;
pub use sqlite::SqlitePynencStore;
pub use status::{PynencStatus, StatusRecord, TransitionRefusal, status_record_transition};
pub use store::{
    PynencInvocation, PynencStore, PynencWrite, Refused, Transitions, WorkflowRun, check_entry,
};
pub use writer::{Durability, PynencState};

use crate::db::DatabaseUrl;
use crate::error::Result;
use std::sync::Arc;

/// Opens the store `url` selects (`memory://`, `sqlite:…`, `postgres…`), migrating SQL stores.
pub async fn open_store(url: &str) -> Result<Arc<dyn PynencStore>> {
    Ok(match DatabaseUrl::parse(url)? {
        DatabaseUrl::Memory => Arc::new(MemoryPynencStore::new()),
        DatabaseUrl::Sqlite { path } => Arc::new(SqlitePynencStore::open(&path).await?),
        DatabaseUrl::Postgres { url } => Arc::new(PostgresPynencStore::connect(&url).await?),
    })
}
