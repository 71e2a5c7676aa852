//! SQLite state store: rusqlite on a dedicated thread, one `BEGIN IMMEDIATE` transaction per batch.

use super::plan::{Plan, StoredInvocation};
use super::store::{Rejected, StateStore, ValueKind, WriteOp, invocation_not_found};
use super::{
    AppInfo, ExceptionRecord, Invocation, InvocationHistory, InvocationStatus, WorkflowIdentity,
};
use crate::clock::{SharedClock, SystemClock};
use crate::db::{SqliteDb, migrate};
use crate::error::{Error, Result};
use crate::outbox::sqlite::{from_us, to_us};
use async_trait::async_trait;
use chrono::{DateTime, FixedOffset, Utc};
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use std::collections::HashMap;
use std::sync::Arc;

/// Page cache of a state store connection, in KiB (negative: SQLite's unit for KiB).
const SQLITE_CACHE_KIB: i64 = -65_536;

/// Busy timeout for concurrent writers on the same file.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

macro_rules! invocation_columns {
    () => {
        "invocation_id, task_id, arguments, status, workflow_id, workflow_type, parent_workflow_id, \
         parent_invocation_id, result, exception, created_at"
    };
}

/// The SQLite state store.
#[derive(Debug)]
pub struct SqliteStateStore {
    db: SqliteDb,
    clock: SharedClock,
}

impl SqliteStateStore {
    /// Opens the database file at `path`, applying migrations when `migrate` is set.
    pub async fn open(path: &str, migrate: bool) -> Result<Self> {
        let db = SqliteDb::open(path, BUSY_TIMEOUT)?;
        // Invocation ids are random, so the id indexes are written all over: keep them cached
        // (SQLite's default page cache is 2 MiB).
        db.call(|conn| Ok(conn.pragma_update(None, "cache_size", SQLITE_CACHE_KIB)?))
            .await?;
        if migrate {
            migrate::migrate_sqlite(&db).await?;
        }
        Ok(SqliteStateStore {
            db,
            clock: Arc::new(SystemClock),
        })
    }

    /// This store with `clock` stamping `updated_at`.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }
}

/// An invocation row as SQLite returns it, before its text fields are parsed.
struct RawInvocation {
    invocation_id: String,
    task_id: String,
    arguments: String,
    status: String,
    workflow_id: Option<String>,
    workflow_type: Option<String>,
    parent_workflow_id: Option<String>,
    parent_invocation_id: Option<String>,
    result: Option<String>,
    exception: Option<String>,
    created_at: i64,
}

fn read_raw(row: &Row<'_>) -> rusqlite::Result<RawInvocation> {
    Ok(RawInvocation {
        invocation_id: row.get(0)?,
        task_id: row.get(1)?,
        arguments: row.get(2)?,
        status: row.get(3)?,
        workflow_id: row.get(4)?,
        workflow_type: row.get(5)?,
        parent_workflow_id: row.get(6)?,
        parent_invocation_id: row.get(7)?,
        result: row.get(8)?,
        exception: row.get(9)?,
        created_at: row.get(10)?,
    })
}

impl RawInvocation {
    fn into_stored(self) -> Result<StoredInvocation> {
        Ok(StoredInvocation {
            invocation: Invocation {
                invocation_id: self.invocation_id,
                task_id: self.task_id,
                arguments: self.arguments,
                status: parse_status(&self.status)?,
                workflow: workflow(
                    self.workflow_id,
                    self.workflow_type,
                    self.parent_workflow_id,
                ),
                parent_invocation_id: self.parent_invocation_id,
                created_at: from_us(self.created_at),
            },
            result: self.result,
            exception: self
                .exception
                .as_deref()
                .map(ExceptionRecord::from_json)
                .transpose()?,
        })
    }
}

pub(crate) fn parse_status(text: &str) -> Result<InvocationStatus> {
    text.parse()
        .map_err(|_| Error::Store(format!("stored invocation status {text:?} is unknown")))
}

pub(crate) fn workflow(
    id: Option<String>,
    ty: Option<String>,
    parent: Option<String>,
) -> Option<WorkflowIdentity> {
    Some(WorkflowIdentity {
        workflow_id: id?,
        workflow_type: ty?,
        parent_workflow_id: parent,
    })
}

pub(crate) fn offset(seconds: i32) -> FixedOffset {
    FixedOffset::east_opt(seconds).unwrap_or_else(|| FixedOffset::east_opt(0).expect("zero offset"))
}

fn json_list<T: serde::Serialize>(items: &[T]) -> String {
    serde_json::to_string(items).expect("list encodes")
}

fn read_rows(conn: &Connection, ids: &[String]) -> Result<HashMap<String, StoredInvocation>> {
    let mut stmt = conn.prepare_cached(concat!(
        "SELECT ",
        invocation_columns!(),
        " FROM headrace_invocations WHERE invocation_id IN (SELECT value FROM json_each(?1))"
    ))?;
    let rows = stmt.query_map([json_list(ids)], read_raw)?;
    let mut out = HashMap::with_capacity(ids.len());
    for raw in rows {
        let row = raw?.into_stored()?;
        out.insert(row.invocation.invocation_id.clone(), row);
    }
    Ok(out)
}

fn read_one(conn: &Connection, invocation_id: &str) -> Result<StoredInvocation> {
    conn.prepare_cached(concat!(
        "SELECT ",
        invocation_columns!(),
        " FROM headrace_invocations WHERE invocation_id = ?1"
    ))?
    .query_row([invocation_id], read_raw)
    .optional()?
    .ok_or_else(|| invocation_not_found(invocation_id))?
    .into_stored()
}

fn write_plan(
    conn: &mut Connection,
    ops: Vec<WriteOp>,
    now: DateTime<Utc>,
) -> Result<Vec<Rejected>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current = read_rows(&tx, &Plan::touched_invocations(&ops))?;
    let plan = Plan::build(ops, current);
    let now = to_us(now);
    {
        let mut upsert = tx.prepare_cached(concat!(
            "INSERT INTO headrace_invocations (",
            invocation_columns!(),
            ", updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
             ON CONFLICT (invocation_id) DO UPDATE SET task_id = excluded.task_id, \
             arguments = excluded.arguments, status = excluded.status, \
             workflow_id = excluded.workflow_id, workflow_type = excluded.workflow_type, \
             parent_workflow_id = excluded.parent_workflow_id, \
             parent_invocation_id = excluded.parent_invocation_id, result = excluded.result, \
             exception = excluded.exception, created_at = excluded.created_at, \
             updated_at = excluded.updated_at"
        ))?;
        for row in &plan.invocations {
            let inv = &row.invocation;
            let wf = inv.workflow.as_ref();
            upsert.execute(params![
                inv.invocation_id,
                inv.task_id,
                inv.arguments,
                inv.status.as_str(),
                wf.map(|w| &w.workflow_id),
                wf.map(|w| &w.workflow_type),
                wf.and_then(|w| w.parent_workflow_id.as_ref()),
                inv.parent_invocation_id,
                row.result,
                row.exception.as_ref().map(ExceptionRecord::to_json),
                to_us(inv.created_at.to_utc()),
                now,
            ])?;
        }
        let mut history = tx.prepare_cached(
            "INSERT INTO headrace_invocation_history (invocation_id, entry_key, timestamp, \
             utc_offset, status, execution_context) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for h in &plan.history {
            history.execute(params![
                h.invocation_id,
                h.entry_key,
                to_us(h.timestamp.to_utc()),
                h.timestamp.offset().local_minus_utc(),
                h.status.map(InvocationStatus::as_str),
                h.execution_context,
            ])?;
        }
        let mut value = tx.prepare_cached(
            "INSERT INTO headrace_workflow_values (workflow_id, kind, key, value) \
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (workflow_id, kind, key) \
             DO UPDATE SET value = excluded.value",
        )?;
        for (workflow_id, kind, key, v) in &plan.values {
            value.execute(params![workflow_id, kind.as_str(), key, v])?;
        }
        let mut app = tx.prepare_cached(
            "INSERT INTO headrace_app_infos (app_id, module, metadata) VALUES (?1, ?2, ?3) \
             ON CONFLICT (app_id) DO UPDATE SET module = excluded.module, metadata = excluded.metadata",
        )?;
        for info in &plan.app_infos {
            app.execute(params![info.app_id, info.module, info.metadata])?;
        }
        let mut run = tx.prepare_cached(
            "INSERT INTO headrace_workflow_runs (workflow_id, workflow_type, parent_workflow_id) \
             VALUES (?1, ?2, ?3) ON CONFLICT (workflow_id) DO NOTHING",
        )?;
        for wf in &plan.workflow_runs {
            run.execute(params![
                wf.workflow_id,
                wf.workflow_type,
                wf.parent_workflow_id
            ])?;
        }
        let mut sub = tx.prepare_cached(
            "INSERT INTO headrace_workflow_sub_invocations (parent_workflow_id, sub_invocation_id) \
             VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        )?;
        for (parent, child) in &plan.sub_invocations {
            sub.execute(params![parent, child])?;
        }
    }
    tx.commit()?;
    Ok(plan.rejected)
}

fn read_workflow(row: &Row<'_>) -> rusqlite::Result<WorkflowIdentity> {
    Ok(WorkflowIdentity {
        workflow_id: row.get(0)?,
        workflow_type: row.get(1)?,
        parent_workflow_id: row.get(2)?,
    })
}

#[async_trait]
impl StateStore for SqliteStateStore {
    async fn apply(&self, ops: Vec<WriteOp>) -> Result<Vec<Rejected>> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.clock.now();
        self.db.call(move |conn| write_plan(conn, ops, now)).await
    }

    async fn get_invocation(&self, invocation_id: &str) -> Result<Invocation> {
        let id = invocation_id.to_string();
        self.db
            .call(move |conn| Ok(read_one(conn, &id)?.invocation))
            .await
    }

    async fn get_history(&self, invocation_id: &str) -> Result<Vec<InvocationHistory>> {
        let id = invocation_id.to_string();
        self.db
            .call(move |conn| {
                let exists: bool = conn
                    .prepare_cached("SELECT EXISTS(SELECT 1 FROM headrace_invocations WHERE invocation_id = ?1)")?
                    .query_row([&id], |row| row.get(0))?;
                if !exists {
                    return Err(invocation_not_found(&id));
                }
                let mut stmt = conn.prepare_cached(
                    "SELECT entry_key, timestamp, utc_offset, status, execution_context \
                     FROM headrace_invocation_history WHERE invocation_id = ?1 ORDER BY timestamp, seq",
                )?;
                let rows = stmt.query_map([&id], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, i32>(2)?,
                        row.get::<_, Option<String>>(3)?,
                        row.get::<_, Option<String>>(4)?,
                    ))
                })?;
                let mut out = Vec::new();
                for row in rows {
                    let (entry_key, ts, off, status, execution_context) = row?;
                    out.push(InvocationHistory {
                        invocation_id: id.clone(),
                        timestamp: from_us(ts).with_timezone(&offset(off)),
                        status: status.as_deref().map(parse_status).transpose()?,
                        execution_context,
                        entry_key,
                    });
                }
                Ok(out)
            })
            .await
    }

    async fn get_result(&self, invocation_id: &str) -> Result<Option<String>> {
        let id = invocation_id.to_string();
        self.db
            .call(move |conn| Ok(read_one(conn, &id)?.result))
            .await
    }

    async fn get_exception(&self, invocation_id: &str) -> Result<Option<ExceptionRecord>> {
        let id = invocation_id.to_string();
        self.db
            .call(move |conn| Ok(read_one(conn, &id)?.exception))
            .await
    }

    async fn get_workflow_value(
        &self,
        workflow_id: &str,
        kind: ValueKind,
        key: &str,
    ) -> Result<Option<String>> {
        let (workflow_id, key) = (workflow_id.to_string(), key.to_string());
        self.db
            .call(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT value FROM headrace_workflow_values \
                         WHERE workflow_id = ?1 AND kind = ?2 AND key = ?3",
                    )?
                    .query_row(params![workflow_id, kind.as_str(), key], |row| row.get(0))
                    .optional()?)
            })
            .await
    }

    async fn get_app_info(&self, app_id: &str) -> Result<Option<AppInfo>> {
        let app_id = app_id.to_string();
        self.db
            .call(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT app_id, module, metadata FROM headrace_app_infos WHERE app_id = ?1",
                    )?
                    .query_row([app_id], |row| {
                        Ok(AppInfo {
                            app_id: row.get(0)?,
                            module: row.get(1)?,
                            metadata: row.get(2)?,
                        })
                    })
                    .optional()?)
            })
            .await
    }

    async fn get_all_app_infos(&self) -> Result<Vec<AppInfo>> {
        self.db
            .call(|conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT app_id, module, metadata FROM headrace_app_infos ORDER BY app_id",
                )?;
                let rows = stmt.query_map([], |row| {
                    Ok(AppInfo {
                        app_id: row.get(0)?,
                        module: row.get(1)?,
                        metadata: row.get(2)?,
                    })
                })?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })
            .await
    }

    async fn get_workflow_types(&self) -> Result<Vec<String>> {
        self.db
            .call(|conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT DISTINCT workflow_type FROM headrace_workflow_runs ORDER BY workflow_type",
                )?;
                let rows = stmt.query_map([], |row| row.get(0))?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })
            .await
    }

    async fn get_workflow_runs(
        &self,
        workflow_type: Option<&str>,
    ) -> Result<Vec<WorkflowIdentity>> {
        let workflow_type = workflow_type.map(str::to_string);
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT workflow_id, workflow_type, parent_workflow_id FROM headrace_workflow_runs \
                     WHERE ?1 IS NULL OR workflow_type = ?1 ORDER BY seq",
                )?;
                let rows = stmt.query_map([workflow_type], read_workflow)?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })
            .await
    }

    async fn get_workflow_sub_invocations(&self, workflow_id: &str) -> Result<Vec<String>> {
        let workflow_id = workflow_id.to_string();
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT sub_invocation_id FROM headrace_workflow_sub_invocations \
                     WHERE parent_workflow_id = ?1 ORDER BY seq",
                )?;
                let rows = stmt.query_map([workflow_id], |row| row.get(0))?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })
            .await
    }

    async fn get_invocations_by_task(
        &self,
        task_id: &str,
        limit: usize,
    ) -> Result<Vec<Invocation>> {
        let task_id = task_id.to_string();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(concat!(
                    "SELECT ",
                    invocation_columns!(),
                    " FROM headrace_invocations WHERE task_id = ?1 \
                     ORDER BY created_at DESC, seq DESC LIMIT ?2"
                ))?;
                let rows = stmt.query_map(params![task_id, limit], read_raw)?;
                let mut out = Vec::new();
                for raw in rows {
                    out.push(raw?.into_stored()?.invocation);
                }
                Ok(out)
            })
            .await
    }

    async fn delete_invocations(&self, invocation_ids: &[String]) -> Result<u64> {
        if invocation_ids.is_empty() {
            return Ok(0);
        }
        let ids = json_list(invocation_ids);
        self.db
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                tx.prepare_cached(
                    "DELETE FROM headrace_invocation_history \
                     WHERE invocation_id IN (SELECT value FROM json_each(?1))",
                )?
                .execute([&ids])?;
                let deleted = tx
                    .prepare_cached(
                        "DELETE FROM headrace_invocations \
                         WHERE invocation_id IN (SELECT value FROM json_each(?1))",
                    )?
                    .execute([&ids])?;
                tx.commit()?;
                Ok(deleted as u64)
            })
            .await
    }

    async fn close(&self) {
        self.db.close();
    }
}
