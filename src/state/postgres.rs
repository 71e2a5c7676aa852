//! PostgreSQL state store: statements run on connections kept on a [`ConnectionShelf`]; a batch
//! is one transaction that locks the touched invocation rows, then writes every table with one
//! `UNNEST` statement each.

use super::plan::{Plan, StoredInvocation};
use super::sqlite::{offset, parse_status, workflow};
use super::store::{Rejected, StateStore, ValueKind, WriteOp, closed_error, invocation_not_found};
use super::{
    AppInfo, ExceptionRecord, Invocation, InvocationHistory, InvocationStatus, WorkflowIdentity,
};
use crate::clock::{SharedClock, SystemClock};
use crate::db::shelf::ConnectionShelf;
use crate::db::{connect_pg, migrate};
use crate::error::Result;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{Postgres, Row, Transaction};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Connections in the pool of one store.
const POOL_SIZE: u32 = 4;

macro_rules! invocation_columns {
    () => {
        "invocation_id, task_id, arguments::text AS arguments, status, workflow_id, workflow_type, \
         parent_workflow_id, parent_invocation_id, result::text AS result, \
         exception::text AS exception, created_at"
    };
}

/// The PostgreSQL state store.
#[derive(Debug)]
pub struct PostgresStateStore {
    shelf: ConnectionShelf,
    closed: AtomicBool,
    clock: SharedClock,
}

impl PostgresStateStore {
    /// Connects to `url`, applying migrations when `migrate` is set.
    pub async fn connect(url: &str, migrate: bool) -> Result<Self> {
        let pool = connect_pg(url, POOL_SIZE).await?;
        if migrate {
            migrate::migrate_postgres(&pool).await?;
        }
        Ok(PostgresStateStore {
            shelf: ConnectionShelf::new(pool),
            closed: AtomicBool::new(false),
            clock: Arc::new(SystemClock),
        })
    }

    /// This store with `clock` stamping `updated_at`.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The underlying pool.
    pub fn pool(&self) -> &PgPool {
        self.shelf.pool()
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            Err(closed_error())
        } else {
            Ok(())
        }
    }

    async fn row(&self, invocation_id: &str) -> Result<StoredInvocation> {
        self.check_open()?;
        let mut conn = self.shelf.checkout().await?;
        let row = sqlx::query(concat!(
            "SELECT ",
            invocation_columns!(),
            " FROM headrace_invocations WHERE invocation_id = $1"
        ))
        .bind(invocation_id)
        .fetch_optional(&mut *conn)
        .await?;
        conn.park();
        match row {
            Some(row) => read_row(&row),
            None => Err(invocation_not_found(invocation_id)),
        }
    }
}

fn read_row(row: &PgRow) -> Result<StoredInvocation> {
    let status: String = row.try_get("status")?;
    let exception: Option<String> = row.try_get("exception")?;
    Ok(StoredInvocation {
        invocation: Invocation {
            invocation_id: row.try_get("invocation_id")?,
            task_id: row.try_get("task_id")?,
            arguments: row.try_get("arguments")?,
            status: parse_status(&status)?,
            workflow: workflow(
                row.try_get("workflow_id")?,
                row.try_get("workflow_type")?,
                row.try_get("parent_workflow_id")?,
            ),
            parent_invocation_id: row.try_get("parent_invocation_id")?,
            created_at: row.try_get("created_at")?,
        },
        result: row.try_get("result")?,
        exception: exception
            .as_deref()
            .map(ExceptionRecord::from_json)
            .transpose()?,
    })
}

async fn write_plan(
    tx: &mut Transaction<'_, Postgres>,
    plan: &Plan,
    now: DateTime<Utc>,
) -> Result<()> {
    if !plan.invocations.is_empty() {
        let n = plan.invocations.len();
        let mut ids = Vec::with_capacity(n);
        let mut tasks = Vec::with_capacity(n);
        let mut args = Vec::with_capacity(n);
        let mut statuses = Vec::with_capacity(n);
        let mut wf_ids: Vec<Option<&str>> = Vec::with_capacity(n);
        let mut wf_types: Vec<Option<&str>> = Vec::with_capacity(n);
        let mut wf_parents: Vec<Option<&str>> = Vec::with_capacity(n);
        let mut parents: Vec<Option<&str>> = Vec::with_capacity(n);
        let mut results: Vec<Option<&str>> = Vec::with_capacity(n);
        let mut exceptions: Vec<Option<String>> = Vec::with_capacity(n);
        let mut created: Vec<DateTime<Utc>> = Vec::with_capacity(n);
        for row in &plan.invocations {
            let inv = &row.invocation;
            let wf = inv.workflow.as_ref();
            ids.push(inv.invocation_id.as_str());
            tasks.push(inv.task_id.as_str());
            args.push(inv.arguments.as_str());
            statuses.push(inv.status.as_str());
            wf_ids.push(wf.map(|w| w.workflow_id.as_str()));
            wf_types.push(wf.map(|w| w.workflow_type.as_str()));
            wf_parents.push(wf.and_then(|w| w.parent_workflow_id.as_deref()));
            parents.push(inv.parent_invocation_id.as_deref());
            results.push(row.result.as_deref());
            exceptions.push(row.exception.as_ref().map(ExceptionRecord::to_json));
            created.push(inv.created_at);
        }
        sqlx::query(
            "INSERT INTO headrace_invocations (invocation_id, task_id, arguments, status, workflow_id, \
               workflow_type, parent_workflow_id, parent_invocation_id, result, exception, created_at, \
               updated_at) \
             SELECT u.id, u.task, u.args::json, u.status, u.wid, u.wtype, u.wparent, u.parent, \
               u.result::json, u.exc::json, u.created, $12 \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
               $7::text[], $8::text[], $9::text[], $10::text[], $11::timestamptz[]) WITH ORDINALITY \
               AS u(id, task, args, status, wid, wtype, wparent, parent, result, exc, created, ord) \
             ORDER BY u.ord \
             ON CONFLICT (invocation_id) DO UPDATE SET task_id = excluded.task_id, \
               arguments = excluded.arguments, status = excluded.status, \
               workflow_id = excluded.workflow_id, workflow_type = excluded.workflow_type, \
               parent_workflow_id = excluded.parent_workflow_id, \
               parent_invocation_id = excluded.parent_invocation_id, result = excluded.result, \
               exception = excluded.exception, created_at = excluded.created_at, \
               updated_at = excluded.updated_at",
        )
        .bind(ids)
        .bind(tasks)
        .bind(args)
        .bind(statuses)
        .bind(wf_ids)
        .bind(wf_types)
        .bind(wf_parents)
        .bind(parents)
        .bind(results)
        .bind(exceptions)
        .bind(created)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    if !plan.history.is_empty() {
        let h = &plan.history;
        sqlx::query(
            "INSERT INTO headrace_invocation_history (invocation_id, entry_key, timestamp, utc_offset, \
               status, execution_context) \
             SELECT u.id, u.key, u.ts, u.off, u.status, u.ctx::json \
             FROM UNNEST($1::text[], $2::int8[], $3::timestamptz[], $4::int4[], $5::text[], $6::text[]) \
               WITH ORDINALITY AS u(id, key, ts, off, status, ctx, ord) ORDER BY u.ord",
        )
        .bind(h.iter().map(|e| e.invocation_id.as_str()).collect::<Vec<_>>())
        .bind(h.iter().map(|e| e.entry_key).collect::<Vec<_>>())
        .bind(h.iter().map(|e| e.timestamp.to_utc()).collect::<Vec<_>>())
        .bind(h.iter().map(|e| e.timestamp.offset().local_minus_utc()).collect::<Vec<_>>())
        .bind(h.iter().map(|e| e.status.map(InvocationStatus::as_str)).collect::<Vec<_>>())
        .bind(h.iter().map(|e| e.execution_context.as_deref()).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }
    if !plan.values.is_empty() {
        let v = &plan.values;
        sqlx::query(
            "INSERT INTO headrace_workflow_values (workflow_id, kind, key, value) \
             SELECT u.wid, u.kind, u.key, u.value::json \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) AS u(wid, kind, key, value) \
             ON CONFLICT (workflow_id, kind, key) DO UPDATE SET value = excluded.value",
        )
        .bind(v.iter().map(|x| x.0.as_str()).collect::<Vec<_>>())
        .bind(v.iter().map(|x| x.1.as_str()).collect::<Vec<_>>())
        .bind(v.iter().map(|x| x.2.as_str()).collect::<Vec<_>>())
        .bind(v.iter().map(|x| x.3.as_str()).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }
    if !plan.app_infos.is_empty() {
        let a = &plan.app_infos;
        sqlx::query(
            "INSERT INTO headrace_app_infos (app_id, module, metadata) \
             SELECT u.id, u.module, u.meta::json FROM UNNEST($1::text[], $2::text[], $3::text[]) \
               AS u(id, module, meta) \
             ON CONFLICT (app_id) DO UPDATE SET module = excluded.module, metadata = excluded.metadata",
        )
        .bind(a.iter().map(|x| x.app_id.as_str()).collect::<Vec<_>>())
        .bind(a.iter().map(|x| x.module.as_deref()).collect::<Vec<_>>())
        .bind(a.iter().map(|x| x.metadata.as_str()).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }
    if !plan.workflow_runs.is_empty() {
        let r = &plan.workflow_runs;
        sqlx::query(
            "INSERT INTO headrace_workflow_runs (workflow_id, workflow_type, parent_workflow_id) \
             SELECT u.id, u.ty, u.parent FROM UNNEST($1::text[], $2::text[], $3::text[]) \
               WITH ORDINALITY AS u(id, ty, parent, ord) ORDER BY u.ord \
             ON CONFLICT (workflow_id) DO NOTHING",
        )
        .bind(r.iter().map(|x| x.workflow_id.as_str()).collect::<Vec<_>>())
        .bind(
            r.iter()
                .map(|x| x.workflow_type.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            r.iter()
                .map(|x| x.parent_workflow_id.as_deref())
                .collect::<Vec<_>>(),
        )
        .execute(&mut **tx)
        .await?;
    }
    if !plan.sub_invocations.is_empty() {
        let s = &plan.sub_invocations;
        sqlx::query(
            "INSERT INTO headrace_workflow_sub_invocations (parent_workflow_id, sub_invocation_id) \
             SELECT u.parent, u.sub FROM UNNEST($1::text[], $2::text[]) WITH ORDINALITY \
               AS u(parent, sub, ord) ORDER BY u.ord \
             ON CONFLICT DO NOTHING",
        )
        .bind(s.iter().map(|x| x.0.as_str()).collect::<Vec<_>>())
        .bind(s.iter().map(|x| x.1.as_str()).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

fn read_workflow(row: &PgRow) -> Result<WorkflowIdentity> {
    Ok(WorkflowIdentity {
        workflow_id: row.try_get("workflow_id")?,
        workflow_type: row.try_get("workflow_type")?,
        parent_workflow_id: row.try_get("parent_workflow_id")?,
    })
}

fn read_app_info(row: &PgRow) -> Result<AppInfo> {
    Ok(AppInfo {
        app_id: row.try_get("app_id")?,
        module: row.try_get("module")?,
        metadata: row.try_get("metadata")?,
    })
}

#[async_trait]
impl StateStore for PostgresStateStore {
    async fn apply(&self, ops: Vec<WriteOp>) -> Result<Vec<Rejected>> {
        self.check_open()?;
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.shelf.checkout().await?;
        let mut tx = conn.begin().await?;
        let ids = Plan::touched_invocations(&ops);
        let mut current = HashMap::with_capacity(ids.len());
        if !ids.is_empty() {
            // Locking in id order keeps two concurrent batches from deadlocking.
            let rows = sqlx::query(concat!(
                "SELECT ",
                invocation_columns!(),
                " FROM headrace_invocations WHERE invocation_id = ANY($1) \
                 ORDER BY invocation_id FOR UPDATE"
            ))
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await?;
            for row in &rows {
                let stored = read_row(row)?;
                current.insert(stored.invocation.invocation_id.clone(), stored);
            }
        }
        let plan = Plan::build(ops, current);
        write_plan(&mut tx, &plan, self.clock.now()).await?;
        tx.commit().await?;
        conn.park();
        Ok(plan.rejected)
    }

    async fn get_invocation(&self, invocation_id: &str) -> Result<Invocation> {
        Ok(self.row(invocation_id).await?.invocation)
    }

    async fn get_history(&self, invocation_id: &str) -> Result<Vec<InvocationHistory>> {
        self.check_open()?;
        let mut conn = self.shelf.checkout().await?;
        let rows = sqlx::query(
            "SELECT entry_key, timestamp, utc_offset, status, execution_context::text AS ctx \
             FROM headrace_invocation_history WHERE invocation_id = $1 ORDER BY timestamp, seq",
        )
        .bind(invocation_id)
        .fetch_all(&mut *conn)
        .await?;
        let exists = if rows.is_empty() {
            sqlx::query_scalar(
                "SELECT EXISTS(SELECT 1 FROM headrace_invocations WHERE invocation_id = $1)",
            )
            .bind(invocation_id)
            .fetch_one(&mut *conn)
            .await?
        } else {
            true
        };
        conn.park();
        if !exists {
            return Err(invocation_not_found(invocation_id));
        }
        rows.iter()
            .map(|row| {
                let ts: DateTime<Utc> = row.try_get("timestamp")?;
                let status: Option<String> = row.try_get("status")?;
                Ok(InvocationHistory {
                    invocation_id: invocation_id.to_string(),
                    timestamp: ts.with_timezone(&offset(row.try_get("utc_offset")?)),
                    status: status.as_deref().map(parse_status).transpose()?,
                    execution_context: row.try_get("ctx")?,
                    entry_key: row.try_get("entry_key")?,
                })
            })
            .collect()
    }

    async fn get_result(&self, invocation_id: &str) -> Result<Option<String>> {
        Ok(self.row(invocation_id).await?.result)
    }

    async fn get_exception(&self, invocation_id: &str) -> Result<Option<ExceptionRecord>> {
        Ok(self.row(invocation_id).await?.exception)
    }

    async fn get_workflow_value(
        &self,
        workflow_id: &str,
        kind: ValueKind,
        key: &str,
    ) -> Result<Option<String>> {
        self.check_open()?;
        let mut conn = self.shelf.checkout().await?;
        let value = sqlx::query_scalar(
            "SELECT value::text FROM headrace_workflow_values \
             WHERE workflow_id = $1 AND kind = $2 AND key = $3",
        )
        .bind(workflow_id)
        .bind(kind.as_str())
        .bind(key)
        .fetch_optional(&mut *conn)
        .await?;
        conn.park();
        Ok(value)
    }

    async fn get_app_info(&self, app_id: &str) -> Result<Option<AppInfo>> {
        self.check_open()?;
        let mut conn = self.shelf.checkout().await?;
        let row = sqlx::query("SELECT app_id, module, metadata::text AS metadata FROM headrace_app_infos WHERE app_id = $1")
            .bind(app_id)
            .fetch_optional(&mut *conn)
            .await?;
        conn.park();
        row.as_ref().map(read_app_info).transpose()
    }

    async fn get_all_app_infos(&self) -> Result<Vec<AppInfo>> {
        self.check_open()?;
        let mut conn = self.shelf.checkout().await?;
        let rows = sqlx::query("SELECT app_id, module, metadata::text AS metadata FROM headrace_app_infos ORDER BY app_id")
            .fetch_all(&mut *conn)
            .await?;
        conn.park();
        rows.iter().map(read_app_info).collect()
    }

    async fn get_workflow_types(&self) -> Result<Vec<String>> {
        self.check_open()?;
        let mut conn = self.shelf.checkout().await?;
        let types = sqlx::query_scalar(
            "SELECT DISTINCT workflow_type FROM headrace_workflow_runs ORDER BY workflow_type",
        )
        .fetch_all(&mut *conn)
        .await?;
        conn.park();
        Ok(types)
    }

    async fn get_workflow_runs(
        &self,
        workflow_type: Option<&str>,
    ) -> Result<Vec<WorkflowIdentity>> {
        self.check_open()?;
        let mut conn = self.shelf.checkout().await?;
        let rows = sqlx::query(
            "SELECT workflow_id, workflow_type, parent_workflow_id FROM headrace_workflow_runs \
             WHERE $1::text IS NULL OR workflow_type = $1 ORDER BY seq",
        )
        .bind(workflow_type)
        .fetch_all(&mut *conn)
        .await?;
        conn.park();
        rows.iter().map(read_workflow).collect()
    }

    async fn get_workflow_sub_invocations(&self, workflow_id: &str) -> Result<Vec<String>> {
        self.check_open()?;
        let mut conn = self.shelf.checkout().await?;
        let ids = sqlx::query_scalar(
            "SELECT sub_invocation_id FROM headrace_workflow_sub_invocations \
             WHERE parent_workflow_id = $1 ORDER BY seq",
        )
        .bind(workflow_id)
        .fetch_all(&mut *conn)
        .await?;
        conn.park();
        Ok(ids)
    }

    async fn get_invocations_by_task(
        &self,
        task_id: &str,
        limit: usize,
    ) -> Result<Vec<Invocation>> {
        self.check_open()?;
        let mut conn = self.shelf.checkout().await?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            invocation_columns!(),
            " FROM headrace_invocations WHERE task_id = $1 ORDER BY created_at DESC, seq DESC LIMIT $2"
        ))
        .bind(task_id)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *conn)
        .await?;
        conn.park();
        rows.iter()
            .map(|row| Ok(read_row(row)?.invocation))
            .collect()
    }

    async fn delete_invocations(&self, invocation_ids: &[String]) -> Result<u64> {
        self.check_open()?;
        if invocation_ids.is_empty() {
            return Ok(0);
        }
        let mut conn = self.shelf.checkout().await?;
        let mut tx = conn.begin().await?;
        sqlx::query("DELETE FROM headrace_invocation_history WHERE invocation_id = ANY($1)")
            .bind(invocation_ids)
            .execute(&mut *tx)
            .await?;
        let deleted = sqlx::query("DELETE FROM headrace_invocations WHERE invocation_id = ANY($1)")
            .bind(invocation_ids)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        conn.park();
        Ok(deleted)
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.shelf.close().await;
    }
}
