//! SQLite pynenc store: rusqlite on its own thread, one `BEGIN IMMEDIATE` transaction per batch.

use super::history::HistoryEntry;
use super::sql;
use super::status::StatusRecord;
use super::store::{
    PynencInvocation, PynencStore, PynencWrite, Refused, Transitions, WorkflowRun, check_entry,
};
use crate::db::{SqliteDb, migrate};
use crate::error::Result;
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};

const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The SQLite pynenc store.
#[derive(Debug)]
pub struct SqlitePynencStore {
    db: SqliteDb,
}

impl SqlitePynencStore {
    /// Opens the database file at `path`, applying headrace's migrations.
    pub async fn open(path: &str) -> Result<Self> {
        let db = SqliteDb::open(path, BUSY_TIMEOUT)?;
        db.call(|conn| Ok(conn.pragma_update(None, "cache_size", -65_536)?))
            .await?;
        migrate::migrate_sqlite(&db).await?;
        Ok(SqlitePynencStore { db })
    }

    async fn query<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        self.db.call(work).await
    }

    async fn strings(&self, sql: &'static str, args: Vec<String>) -> Result<Vec<String>> {
        self.query(move |conn| {
            let mut stmt = conn.prepare_cached(sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })
        .await
    }
}

impl sql::Columns for Row<'_> {
    fn text(&self, index: usize) -> Result<String> {
        Ok(self.get(index)?)
    }
    fn maybe_text(&self, index: usize) -> Result<Option<String>> {
        Ok(self.get(index)?)
    }
    fn int(&self, index: usize) -> Result<i64> {
        Ok(self.get(index)?)
    }
    fn maybe_int(&self, index: usize) -> Result<Option<i32>> {
        Ok(self.get(index)?)
    }
}

fn latest_record(
    tx: &Transaction<'_>,
    app: &str,
    invocation_id: &str,
) -> Result<Option<StatusRecord>> {
    let row: Option<(String, Option<String>)> = tx
        .prepare_cached(sql::LATEST_RECORD)?
        .query_row(params![app, invocation_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    row.map(|(status, runner_id)| {
        Ok(StatusRecord {
            status: sql::stored_status(&status)?,
            runner_id,
        })
    })
    .transpose()
}

fn apply_one(tx: &Transaction<'_>, app: &str, write: &PynencWrite) -> Result<()> {
    match write {
        PynencWrite::UpsertInvocation(inv) => {
            let wf = inv.workflow.as_ref();
            tx.prepare_cached(sql::UPSERT_INVOCATION)?.execute(params![
                app,
                inv.invocation_id,
                inv.call_id_key,
                inv.task_id_key,
                inv.serialized_arguments,
                inv.parent_invocation_id,
                inv.parent_event_id,
                wf.map(|w| &w.workflow_id),
                wf.map(|w| &w.workflow_type_key),
                wf.and_then(|w| w.parent_workflow_id.as_ref()),
            ])?;
        }
        PynencWrite::AddHistory(h) => {
            tx.prepare_cached(sql::INSERT_HISTORY)?.execute(params![
                app,
                h.invocation_id,
                h.timestamp_us,
                h.utc_offset,
                h.status.as_str(),
                h.status_runner_id,
                h.status_timestamp,
                h.runner_context_id,
                h.registered_by_inv_id,
            ])?;
        }
        PynencWrite::SetResult {
            invocation_id,
            value,
        } => {
            tx.prepare_cached(sql::SET_RESULT)?
                .execute(params![app, invocation_id, value])?;
        }
        PynencWrite::SetException {
            invocation_id,
            value,
        } => {
            tx.prepare_cached(sql::SET_EXCEPTION)?
                .execute(params![app, invocation_id, value])?;
        }
        PynencWrite::SetWorkflowData {
            workflow_id,
            key,
            value,
        } => {
            tx.prepare_cached(sql::SET_WORKFLOW_DATA)?.execute(params![
                app,
                workflow_id,
                key,
                value
            ])?;
        }
        PynencWrite::StoreAppInfo { app_id, info_json } => {
            tx.prepare_cached(sql::STORE_APP_INFO)?
                .execute(params![app_id, info_json])?;
        }
        PynencWrite::StoreWorkflowRun(run) => {
            tx.prepare_cached(sql::STORE_WORKFLOW_RUN)?
                .execute(params![
                    app,
                    run.workflow_id,
                    run.workflow_type_key,
                    run.parent_workflow_id
                ])?;
        }
        PynencWrite::StoreSubInvocation {
            parent_workflow_id,
            sub_invocation_id,
        } => {
            tx.prepare_cached(sql::STORE_SUB_INVOCATION)?
                .execute(params![app, parent_workflow_id, sub_invocation_id])?;
        }
        PynencWrite::StoreRunnerContext {
            runner_id,
            context_json,
        } => {
            tx.prepare_cached(sql::STORE_RUNNER_CONTEXT)?
                .execute(params![app, runner_id, context_json])?;
        }
    }
    Ok(())
}

#[async_trait]
impl PynencStore for SqlitePynencStore {
    async fn apply(
        &self,
        app: &str,
        writes: Vec<PynencWrite>,
        transitions: Transitions,
    ) -> Result<Vec<Refused>> {
        let app = app.to_string();
        self.query(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut refused = Vec::new();
            for (index, write) in writes.iter().enumerate() {
                if let (Transitions::Enforce, PynencWrite::AddHistory(entry)) = (transitions, write)
                {
                    let current = latest_record(&tx, &app, &entry.invocation_id)?;
                    if let Err(refusal) = check_entry(current.as_ref(), entry) {
                        refused.push(Refused {
                            index,
                            invocation_id: entry.invocation_id.clone(),
                            refusal,
                        });
                        continue;
                    }
                }
                apply_one(&tx, &app, write)?;
            }
            tx.commit()?;
            Ok(refused)
        })
        .await
    }

    async fn get_invocation(
        &self,
        app: &str,
        invocation_id: &str,
    ) -> Result<Option<PynencInvocation>> {
        let (app, id) = (app.to_string(), invocation_id.to_string());
        self.query(move |conn| {
            let mut stmt = conn.prepare_cached(sql::GET_INVOCATION)?;
            let mut rows = stmt.query_and_then(params![app, id], |r| sql::invocation(r))?;
            rows.next().transpose()
        })
        .await
    }

    async fn get_history(&self, app: &str, invocation_id: &str) -> Result<Vec<HistoryEntry>> {
        let (app, id) = (app.to_string(), invocation_id.to_string());
        self.query(move |conn| {
            let mut stmt = conn.prepare_cached(sql::GET_HISTORY)?;
            let rows = stmt.query_and_then(params![app, id], |r| sql::history_entry(r))?;
            rows.collect()
        })
        .await
    }

    async fn get_result(&self, app: &str, invocation_id: &str) -> Result<Option<String>> {
        let (app, id) = (app.to_string(), invocation_id.to_string());
        self.query(move |conn| {
            let value: Option<Option<String>> = conn
                .prepare_cached(sql::GET_RESULT)?
                .query_row(params![app, id], |r| r.get(0))
                .optional()?;
            Ok(value.flatten())
        })
        .await
    }

    async fn get_exception(&self, app: &str, invocation_id: &str) -> Result<Option<String>> {
        let (app, id) = (app.to_string(), invocation_id.to_string());
        self.query(move |conn| {
            let value: Option<Option<String>> = conn
                .prepare_cached(sql::GET_EXCEPTION)?
                .query_row(params![app, id], |r| r.get(0))
                .optional()?;
            Ok(value.flatten())
        })
        .await
    }

    async fn get_workflow_data(
        &self,
        app: &str,
        workflow_id: &str,
        key: &str,
    ) -> Result<Option<String>> {
        let args = vec![app.to_string(), workflow_id.to_string(), key.to_string()];
        Ok(self.strings(sql::GET_WORKFLOW_DATA, args).await?.pop())
    }

    async fn get_app_info(&self, app_id: &str) -> Result<Option<String>> {
        Ok(self
            .strings(sql::GET_APP_INFO, vec![app_id.to_string()])
            .await?
            .pop())
    }

    async fn all_app_infos(&self) -> Result<Vec<(String, String)>> {
        self.query(|conn| {
            let mut stmt = conn.prepare_cached(sql::ALL_APP_INFOS)?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn workflow_types(&self, app: &str) -> Result<Vec<String>> {
        self.strings(sql::WORKFLOW_TYPES, vec![app.to_string()])
            .await
    }

    async fn workflow_runs(
        &self,
        app: &str,
        workflow_type_key: Option<&str>,
    ) -> Result<Vec<WorkflowRun>> {
        let app = app.to_string();
        let ty = workflow_type_key.map(str::to_string);
        self.query(move |conn| {
            let mut stmt = conn.prepare_cached(sql::WORKFLOW_RUNS)?;
            let rows = stmt.query_and_then(params![app, ty], |r| sql::workflow_run(r))?;
            rows.collect()
        })
        .await
    }

    async fn sub_invocations(&self, app: &str, workflow_id: &str) -> Result<Vec<String>> {
        self.strings(
            sql::SUB_INVOCATIONS,
            vec![app.to_string(), workflow_id.to_string()],
        )
        .await
    }

    async fn child_invocations(
        &self,
        app: &str,
        parent_invocation_id: &str,
    ) -> Result<Vec<String>> {
        self.strings(
            sql::CHILD_INVOCATIONS,
            vec![app.to_string(), parent_invocation_id.to_string()],
        )
        .await
    }

    async fn invocations_by_parent_event(
        &self,
        app: &str,
        parent_event_id: &str,
    ) -> Result<Vec<String>> {
        self.strings(
            sql::BY_PARENT_EVENT,
            vec![app.to_string(), parent_event_id.to_string()],
        )
        .await
    }

    async fn invocations_by_workflow(
        &self,
        app: &str,
        workflow_id: Option<&str>,
        workflow_type_key: Option<&str>,
    ) -> Result<Vec<String>> {
        let app = app.to_string();
        let (wf, ty) = (
            workflow_id.map(str::to_string),
            workflow_type_key.map(str::to_string),
        );
        self.query(move |conn| {
            let mut stmt = conn.prepare_cached(sql::BY_WORKFLOW)?;
            let rows = stmt.query_map(params![app, wf, ty], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })
        .await
    }

    async fn history_in_range(
        &self,
        app: &str,
        start_us: i64,
        end_us: i64,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<HistoryEntry>> {
        let app = app.to_string();
        self.query(move |conn| {
            let mut stmt = conn.prepare_cached(sql::HISTORY_IN_RANGE)?;
            let rows = stmt.query_and_then(
                params![app, start_us, end_us, limit as i64, offset as i64],
                |r| sql::history_entry(r),
            )?;
            rows.collect()
        })
        .await
    }

    async fn invocations_in_range(
        &self,
        app: &str,
        start_us: i64,
        end_us: i64,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<String>> {
        let app = app.to_string();
        self.query(move |conn| {
            let mut stmt = conn.prepare_cached(sql::INVOCATIONS_IN_RANGE)?;
            let rows = stmt.query_map(
                params![app, start_us, end_us, limit as i64, offset as i64],
                |r| r.get(0),
            )?;
            Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })
        .await
    }

    async fn runner_contexts(&self, app: &str, runner_ids: &[String]) -> Result<Vec<String>> {
        let app = app.to_string();
        let ids = runner_ids.to_vec();
        self.query(move |conn| {
            let mut stmt = conn.prepare_cached(sql::RUNNER_CONTEXT)?;
            let mut found = Vec::new();
            for id in &ids {
                if let Some(json) = stmt.query_row(params![app, id], |r| r.get(0)).optional()? {
                    found.push(json);
                }
            }
            Ok(found)
        })
        .await
    }

    async fn matching_runner_contexts(&self, app: &str, partial_id: &str) -> Result<Vec<String>> {
        self.strings(
            sql::MATCHING_RUNNER_CONTEXTS_SQLITE,
            vec![app.to_string(), partial_id.to_string()],
        )
        .await
    }

    async fn purge(&self, app: &str) -> Result<()> {
        let app = app.to_string();
        self.query(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for statement in sql::PURGE {
                tx.execute(statement, params![app])?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn close(&self) {
        self.db.close();
    }
}
