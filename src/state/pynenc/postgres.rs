//! PostgreSQL pynenc store: a sqlx pool; writes are applied by [`super::pg_batch`] (one
//! multi-row statement per write kind, one transaction per batch).

use super::history::HistoryEntry;
use super::store::{
    PynencInvocation, PynencStore, PynencWrite, Refused, Transitions, WorkflowRun, closed_error,
};
use super::{pg_batch, sql};
use crate::db::{connect_pg, migrate};
use crate::error::Result;
use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

/// Connections a pynenc store opens at most.
const MAX_CONNECTIONS: u32 = 8;

/// The PostgreSQL pynenc store.
#[derive(Debug)]
pub struct PostgresPynencStore {
    pool: PgPool,
}

impl PostgresPynencStore {
    /// Connects to `url`, applying headrace's migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        let pool = connect_pg(url, MAX_CONNECTIONS).await?;
        migrate::migrate_postgres(&pool).await?;
        Ok(PostgresPynencStore { pool })
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
        pg_batch::apply(self.pool()?, app, &writes, transitions).await
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
    }
}
