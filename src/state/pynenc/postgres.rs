//! PostgreSQL pynenc store: a sqlx pool; writes are applied by [`super::pg_batch`] (one
//! statement per write kind, one transaction per batch), on the store's own write connection
//! when it is free (see [`WriteConnection`]).

use super::history::HistoryEntry;
use super::store::{
    PynencInvocation, PynencStore, PynencWrite, Refused, Transitions, WorkflowRun, closed_error,
};
use super::{pg_batch, sql};
use crate::db::{connect_pg, migrate};
use crate::error::Result;
use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{Connection, PgConnection, PgPool, Row};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Connections a pynenc store opens at most.
const MAX_CONNECTIONS: u32 = 8;

/// The PostgreSQL pynenc store.
#[derive(Debug)]
pub struct PostgresPynencStore {
    pool: PgPool,
    writer: WriteConnection,
}

/// One connection kept outside the pool for writes, used by whichever write finds it free
/// (the others take a pool connection, so concurrent writers still run side by side).
///
/// A durable call is one statement, so its cost is its round trip and the commit's WAL flush.
/// A pool connection adds work around that: sqlx tests every connection it takes back with a
/// round trip of its own (a `Sync` on release, in a task it spawns), and while that runs the
/// next call takes another connection. Keeping a connection makes a durable write exactly one
/// round trip. A connection that failed, or whose call was cut short, is dropped, and the next
/// write opens a new one.
#[derive(Debug, Default)]
struct WriteConnection {
    busy: AtomicBool,
    idle: Mutex<Option<PgConnection>>,
}

/// The write connection, taken by one write (released on drop).
struct Lease<'a> {
    owner: &'a WriteConnection,
    /// The connection to give back (set only once the write went through).
    give_back: Option<PgConnection>,
}

impl WriteConnection {
    fn lease(&self) -> Option<(Lease<'_>, Option<PgConnection>)> {
        if self.busy.swap(true, Ordering::Acquire) {
            return None;
        }
        let conn = self.slot().take();
        let lease = Lease {
            owner: self,
            give_back: None,
        };
        Some((lease, conn))
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<PgConnection>> {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.give_back.take() {
            *self.owner.slot() = Some(conn);
        }
        self.owner.busy.store(false, Ordering::Release);
    }
}

impl PostgresPynencStore {
    /// Connects to `url`, applying headrace's migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        let pool = connect_pg(url, MAX_CONNECTIONS).await?;
        migrate::migrate_postgres(&pool).await?;
        Ok(PostgresPynencStore {
            pool,
            writer: WriteConnection::default(),
        })
    }

    fn pool(&self) -> Result<&PgPool> {
        if self.pool.is_closed() {
            return Err(closed_error());
        }
        Ok(&self.pool)
    }

    async fn strings(&self, query: &'static str, args: &[&str]) -> Result<Vec<String>> {
        let mut q = sqlx::query_scalar::<_, String>(query);
        for arg in args {
            q = q.bind(*arg);
        }
        Ok(q.fetch_all(self.pool()?).await?)
    }
}

impl sql::Columns for PgRow {
    fn text(&self, index: usize) -> Result<String> {
        Ok(self.try_get(index)?)
    }
    fn maybe_text(&self, index: usize) -> Result<Option<String>> {
        Ok(self.try_get(index)?)
    }
    fn int(&self, index: usize) -> Result<i64> {
        Ok(self.try_get(index)?)
    }
    fn maybe_int(&self, index: usize) -> Result<Option<i32>> {
        Ok(self.try_get(index)?)
    }
}

#[async_trait]
impl PynencStore for PostgresPynencStore {
    async fn apply(
        &self,
        app: &str,
        writes: Vec<PynencWrite>,
        transitions: Transitions,
    ) -> Result<Vec<Refused>> {
        let pool = self.pool()?;
        let Some((mut lease, conn)) = self.writer.lease() else {
            let mut conn = pool.acquire().await?;
            return pg_batch::apply(&mut conn, app, &writes, transitions).await;
        };
        let mut conn = match conn {
            Some(conn) => conn,
            None => {
                let options = pool.connect_options();
                let conn = PgConnection::connect_with(&options).await?;
                crate::db::nodelay::disable_nagle_towards(options.get_port());
                conn
            }
        };
        let applied = pg_batch::apply(&mut conn, app, &writes, transitions).await;
        if applied.is_ok() && !pool.is_closed() {
            lease.give_back = Some(conn);
        }
        applied
    }

    async fn get_invocation(
        &self,
        app: &str,
        invocation_id: &str,
    ) -> Result<Option<PynencInvocation>> {
        let row = sqlx::query(sql::GET_INVOCATION)
            .bind(app)
            .bind(invocation_id)
            .fetch_optional(self.pool()?)
            .await?;
        row.as_ref().map(sql::invocation).transpose()
    }

    async fn get_history(&self, app: &str, invocation_id: &str) -> Result<Vec<HistoryEntry>> {
        let rows = sqlx::query(sql::GET_HISTORY)
            .bind(app)
            .bind(invocation_id)
            .fetch_all(self.pool()?)
            .await?;
        rows.iter().map(sql::history_entry).collect()
    }

    async fn get_result(&self, app: &str, invocation_id: &str) -> Result<Option<String>> {
        let value: Option<Option<String>> = sqlx::query_scalar(sql::GET_RESULT)
            .bind(app)
            .bind(invocation_id)
            .fetch_optional(self.pool()?)
            .await?;
        Ok(value.flatten())
    }

    async fn get_exception(&self, app: &str, invocation_id: &str) -> Result<Option<String>> {
        let value: Option<Option<String>> = sqlx::query_scalar(sql::GET_EXCEPTION)
            .bind(app)
            .bind(invocation_id)
            .fetch_optional(self.pool()?)
            .await?;
        Ok(value.flatten())
    }

    async fn get_workflow_data(
        &self,
        app: &str,
        workflow_id: &str,
        key: &str,
    ) -> Result<Option<String>> {
        Ok(self
            .strings(sql::GET_WORKFLOW_DATA, &[app, workflow_id, key])
            .await?
            .pop())
    }

    async fn get_app_info(&self, app_id: &str) -> Result<Option<String>> {
        Ok(self.strings(sql::GET_APP_INFO, &[app_id]).await?.pop())
    }

    async fn all_app_infos(&self) -> Result<Vec<(String, String)>> {
        Ok(sqlx::query_as(sql::ALL_APP_INFOS)
            .fetch_all(self.pool()?)
            .await?)
    }

    async fn workflow_types(&self, app: &str) -> Result<Vec<String>> {
        self.strings(sql::WORKFLOW_TYPES, &[app]).await
    }

    async fn workflow_runs(
        &self,
        app: &str,
        workflow_type_key: Option<&str>,
    ) -> Result<Vec<WorkflowRun>> {
        let rows = sqlx::query(sql::WORKFLOW_RUNS)
            .bind(app)
            .bind(workflow_type_key)
            .fetch_all(self.pool()?)
            .await?;
        rows.iter().map(sql::workflow_run).collect()
    }

    async fn sub_invocations(&self, app: &str, workflow_id: &str) -> Result<Vec<String>> {
        self.strings(sql::SUB_INVOCATIONS, &[app, workflow_id])
            .await
    }

    async fn child_invocations(
        &self,
        app: &str,
        parent_invocation_id: &str,
    ) -> Result<Vec<String>> {
        self.strings(sql::CHILD_INVOCATIONS, &[app, parent_invocation_id])
            .await
    }

    async fn invocations_by_parent_event(
        &self,
        app: &str,
        parent_event_id: &str,
    ) -> Result<Vec<String>> {
        self.strings(sql::BY_PARENT_EVENT, &[app, parent_event_id])
            .await
    }

    async fn invocations_by_workflow(
        &self,
        app: &str,
        workflow_id: Option<&str>,
        workflow_type_key: Option<&str>,
    ) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(sql::BY_WORKFLOW)
            .bind(app)
            .bind(workflow_id)
            .bind(workflow_type_key)
            .fetch_all(self.pool()?)
            .await?)
    }

    async fn history_in_range(
        &self,
        app: &str,
        start_us: i64,
        end_us: i64,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<HistoryEntry>> {
        let rows = sqlx::query(sql::HISTORY_IN_RANGE)
            .bind(app)
            .bind(start_us)
            .bind(end_us)
            .bind(limit as i64)
            .bind(offset as i64)
            .fetch_all(self.pool()?)
            .await?;
        rows.iter().map(sql::history_entry).collect()
    }

    async fn invocations_in_range(
        &self,
        app: &str,
        start_us: i64,
        end_us: i64,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(sql::INVOCATIONS_IN_RANGE)
            .bind(app)
            .bind(start_us)
            .bind(end_us)
            .bind(limit as i64)
            .bind(offset as i64)
            .fetch_all(self.pool()?)
            .await?)
    }

    async fn runner_contexts(&self, app: &str, runner_ids: &[String]) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT context_json FROM headrace_pynenc_runner_contexts
             WHERE app_id = $1 AND runner_id = ANY($2)",
        )
        .bind(app)
        .bind(runner_ids)
        .fetch_all(self.pool()?)
        .await?)
    }

    async fn matching_runner_contexts(&self, app: &str, partial_id: &str) -> Result<Vec<String>> {
        self.strings(sql::MATCHING_RUNNER_CONTEXTS_POSTGRES, &[app, partial_id])
            .await
    }

    async fn purge(&self, app: &str) -> Result<()> {
        let mut tx = self.pool()?.begin().await?;
        for statement in sql::PURGE {
            sqlx::query(statement).bind(app).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
        let kept = self.writer.slot().take();
        if let Some(conn) = kept {
            let _ = conn.close().await;
        }
    }
}
