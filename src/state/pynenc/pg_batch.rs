//! How the PostgreSQL pynenc store applies a list of writes: at most one statement per write
//! kind, in one transaction when there is more than one statement. A kind with one row uses
//! the plain one-row `VALUES` form (a durable call writes one item: one statement, one round
//! trip, no `BEGIN`/`COMMIT`); with more rows, one multi-row statement (every column bound
//! once as an array, `unnest`ed by the server), so a write-behind flush of thousands of writes
//! costs a handful of round trips instead of one per write.
//!
//! Applying the writes kind by kind gives the rows that applying them one by one gives:
//! - each kind has its own table, or (results and exceptions) its own column of one row;
//! - within a kind the order is kept: an upsert keeps the last write per key (PostgreSQL
//!   refuses to update one row twice in a statement), a first-stored list (workflow runs,
//!   sub-invocations) its first, and history entries are inserted in order (their `seq`);
//! - under [`Transitions::Enforce`] the history entries are checked first, in order, against
//!   the latest stored record of their invocation (read once per batch under a transaction
//!   lock per invocation) and the entries accepted before them in the batch.

use super::history::HistoryEntry;
use super::sql::{self, many};
use super::status::StatusRecord;
use super::store::{PynencInvocation, PynencWrite, Refused, Transitions, WorkflowRun, check_entry};
use crate::error::Result;
use sqlx::postgres::PgArguments;
use sqlx::{Connection, PgConnection, Postgres};
use std::collections::HashSet;
use std::collections::hash_map::{Entry, HashMap};
use std::hash::Hash;

type Statement = sqlx::query::Query<'static, Postgres, PgArguments>;

/// Rows of one kind, one per key.
struct Keyed<K, V> {
    at: HashMap<K, usize>,
    rows: Vec<(K, V)>,
}

impl<K: Hash + Eq + Copy, V> Default for Keyed<K, V> {
    fn default() -> Self {
        Keyed {
            at: HashMap::new(),
            rows: Vec::new(),
        }
    }
}

impl<K: Hash + Eq + Copy, V> Keyed<K, V> {
    /// Stores `value` under `key`; a later write replaces an earlier one (`last_wins`) or is
    /// dropped.
    fn put(&mut self, key: K, value: V, last_wins: bool) {
        match self.at.entry(key) {
            Entry::Occupied(at) if last_wins => self.rows[*at.get()].1 = value,
            Entry::Occupied(_) => {}
            Entry::Vacant(at) => {
                at.insert(self.rows.len());
                self.rows.push((key, value));
            }
        }
    }

    fn column<T>(&self, pick: impl Fn(&(K, V)) -> T) -> Vec<T> {
        self.rows.iter().map(pick).collect()
    }
}

/// The writes of one batch, grouped by kind.
#[derive(Default)]
struct Batch<'a> {
    invocations: Keyed<&'a str, &'a PynencInvocation>,
    history: Vec<&'a HistoryEntry>,
    results: Keyed<&'a str, &'a str>,
    exceptions: Keyed<&'a str, &'a str>,
    workflow_data: Keyed<(&'a str, &'a str), &'a str>,
    app_infos: Keyed<&'a str, &'a str>,
    workflow_runs: Keyed<&'a str, &'a WorkflowRun>,
    sub_invocations: Keyed<(&'a str, &'a str), ()>,
    runner_contexts: Keyed<&'a str, &'a str>,
}

impl<'a> Batch<'a> {
    /// Groups `writes`, leaving out the indexes in `skip`.
    fn new(writes: &'a [PynencWrite], skip: &HashSet<usize>) -> Self {
        let mut b = Batch::default();
        for (index, write) in writes.iter().enumerate() {
            if skip.contains(&index) {
                continue;
            }
            match write {
                PynencWrite::UpsertInvocation(inv) => {
                    b.invocations.put(&inv.invocation_id, inv, true)
                }
                PynencWrite::AddHistory(entry) => b.history.push(entry),
                PynencWrite::SetResult {
                    invocation_id,
                    value,
                } => b.results.put(invocation_id, value, true),
                PynencWrite::SetException {
                    invocation_id,
                    value,
                } => b.exceptions.put(invocation_id, value, true),
                PynencWrite::SetWorkflowData {
                    workflow_id,
                    key,
                    value,
                } => b.workflow_data.put((workflow_id, key), value, true),
                PynencWrite::StoreAppInfo { app_id, info_json } => {
                    b.app_infos.put(app_id, info_json, true)
                }
                PynencWrite::StoreWorkflowRun(run) => {
                    b.workflow_runs.put(&run.workflow_id, run, false)
                }
                PynencWrite::StoreSubInvocation {
                    parent_workflow_id,
                    sub_invocation_id,
                } => b
                    .sub_invocations
                    .put((parent_workflow_id, sub_invocation_id), (), false),
                PynencWrite::StoreRunnerContext {
                    runner_id,
                    context_json,
                } => b.runner_contexts.put(runner_id, context_json, true),
            }
        }
        b
    }

    /// One statement per kind present: the one-row `VALUES` form when the kind has one row
    /// (the durable path writes one item per call: a plain insert is planned and run faster
    /// than `unnest` over one-element arrays), the many-row `unnest` form otherwise.
    fn statements(&self, app: &str) -> Vec<Statement> {
        let mut out = Vec::new();
        let scoped = |sql: &'static str| sqlx::query(sql).bind(app.to_string());
        if let [(id, i)] = self.invocations.rows.as_slice() {
            let w = workflow(i);
            out.push(
                scoped(sql::UPSERT_INVOCATION)
                    .bind(id.to_string())
                    .bind(i.call_id_key.clone())
                    .bind(i.task_id_key.clone())
                    .bind(i.serialized_arguments.clone())
                    .bind(i.parent_invocation_id.clone())
                    .bind(i.parent_event_id.clone())
                    .bind(w.map(|w| w.workflow_id.clone()))
                    .bind(w.map(|w| w.workflow_type_key.clone()))
                    .bind(w.and_then(|w| w.parent_workflow_id.clone())),
            );
        } else if !self.invocations.rows.is_empty() {
            let inv = &self.invocations;
            out.push(
                scoped(many::UPSERT_INVOCATIONS)
                    .bind(inv.column(|(id, _)| id.to_string()))
                    .bind(inv.column(|(_, i)| i.call_id_key.clone()))
                    .bind(inv.column(|(_, i)| i.task_id_key.clone()))
                    .bind(inv.column(|(_, i)| i.serialized_arguments.clone()))
                    .bind(inv.column(|(_, i)| i.parent_invocation_id.clone()))
                    .bind(inv.column(|(_, i)| i.parent_event_id.clone()))
                    .bind(inv.column(|(_, i)| workflow(i).map(|w| w.workflow_id.clone())))
                    .bind(inv.column(|(_, i)| workflow(i).map(|w| w.workflow_type_key.clone())))
                    .bind(
                        inv.column(|(_, i)| workflow(i).and_then(|w| w.parent_workflow_id.clone())),
                    ),
            );
        }
        if let [h] = self.history.as_slice() {
            out.push(
                scoped(sql::INSERT_HISTORY)
                    .bind(h.invocation_id.clone())
                    .bind(h.timestamp_us)
                    .bind(h.utc_offset)
                    .bind(h.status.as_str())
                    .bind(h.status_runner_id.clone())
                    .bind(h.status_timestamp.clone())
                    .bind(h.runner_context_id.clone())
                    .bind(h.registered_by_inv_id.clone()),
            );
        } else if !self.history.is_empty() {
            let h = &self.history;
            out.push(
                scoped(many::INSERT_HISTORY)
                    .bind(each(h, |h| h.invocation_id.clone()))
                    .bind(each(h, |h| h.timestamp_us))
                    .bind(each(h, |h| h.utc_offset))
                    .bind(each(h, |h| h.status.as_str()))
                    .bind(each(h, |h| h.status_runner_id.clone()))
                    .bind(each(h, |h| h.status_timestamp.clone()))
                    .bind(each(h, |h| h.runner_context_id.clone()))
                    .bind(each(h, |h| h.registered_by_inv_id.clone())),
            );
        }
        for (one, sql, rows) in [
            (sql::SET_RESULT, many::SET_RESULTS, &self.results),
            (sql::SET_EXCEPTION, many::SET_EXCEPTIONS, &self.exceptions),
            (
                sql::STORE_RUNNER_CONTEXT,
                many::STORE_RUNNER_CONTEXTS,
                &self.runner_contexts,
            ),
        ] {
            if let [(key, value)] = rows.rows.as_slice() {
                out.push(scoped(one).bind(key.to_string()).bind(value.to_string()));
            } else if !rows.rows.is_empty() {
                let (keys, values) = text_pairs(rows);
                out.push(scoped(sql).bind(keys).bind(values));
            }
        }
        if !self.workflow_data.rows.is_empty() {
            let data = &self.workflow_data;
            out.push(
                scoped(many::SET_WORKFLOW_DATA)
                    .bind(data.column(|((w, _), _)| w.to_string()))
                    .bind(data.column(|((_, k), _)| k.to_string()))
                    .bind(data.column(|(_, v)| v.to_string())),
            );
        }
        if !self.app_infos.rows.is_empty() {
            let (ids, infos) = text_pairs(&self.app_infos);
            out.push(sqlx::query(many::STORE_APP_INFOS).bind(ids).bind(infos));
        }
        if !self.workflow_runs.rows.is_empty() {
            let runs = &self.workflow_runs;
            out.push(
                scoped(many::STORE_WORKFLOW_RUNS)
                    .bind(runs.column(|(id, _)| id.to_string()))
                    .bind(runs.column(|(_, r)| r.workflow_type_key.clone()))
                    .bind(runs.column(|(_, r)| r.parent_workflow_id.clone())),
            );
        }
        if !self.sub_invocations.rows.is_empty() {
            let subs = &self.sub_invocations;
            out.push(
                scoped(many::STORE_SUB_INVOCATIONS)
                    .bind(subs.column(|((w, _), ())| w.to_string()))
                    .bind(subs.column(|((_, s), ())| s.to_string())),
            );
        }
        out
    }
}

fn workflow(invocation: &PynencInvocation) -> Option<&WorkflowRun> {
    invocation.workflow.as_ref()
}

fn each<T>(entries: &[&HistoryEntry], pick: impl Fn(&HistoryEntry) -> T) -> Vec<T> {
    entries.iter().map(|h| pick(h)).collect()
}

fn text_pairs(rows: &Keyed<&str, &str>) -> (Vec<String>, Vec<String>) {
    rows.rows
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .unzip()
}

/// Applies `writes` for `app` on `conn` (see the module documentation); returns the refused
/// entries.
pub(super) async fn apply(
    conn: &mut PgConnection,
    app: &str,
    writes: &[PynencWrite],
    transitions: Transitions,
) -> Result<Vec<Refused>> {
    let enforce = transitions == Transitions::Enforce
        && writes
            .iter()
            .any(|w| matches!(w, PynencWrite::AddHistory(_)));
    if !enforce {
        let mut statements = Batch::new(writes, &HashSet::new()).statements(app);
        if statements.len() == 1 {
            // One statement is atomic by itself: one round trip, no transaction.
            statements.remove(0).execute(&mut *conn).await?;
            return Ok(Vec::new());
        }
        let mut tx = conn.begin().await?;
        for statement in statements {
            statement.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        return Ok(Vec::new());
    }
    let mut tx = conn.begin().await?;
    let refused = check_history(&mut tx, app, writes).await?;
    let skip = refused.iter().map(|r| r.index).collect();
    for statement in Batch::new(writes, &skip).statements(app) {
        statement.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(refused)
}

/// Checks every history entry of `writes` in order (see the module documentation).
async fn check_history(
    conn: &mut PgConnection,
    app: &str,
    writes: &[PynencWrite],
) -> Result<Vec<Refused>> {
    let mut ids: Vec<&str> = writes
        .iter()
        .filter_map(|w| match w {
            PynencWrite::AddHistory(entry) => Some(entry.invocation_id.as_str()),
            _ => None,
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    sqlx::query(many::LOCK_INVOCATIONS)
        .bind(app)
        .bind(&ids)
        .execute(&mut *conn)
        .await?;
    let rows: Vec<(String, String, Option<String>, i64)> = sqlx::query_as(many::LATEST_RECORDS)
        .bind(app)
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
    let mut latest: HashMap<String, (StatusRecord, i64)> = HashMap::with_capacity(rows.len());
    for (id, status, runner_id, at) in rows {
        let status = sql::stored_status(&status)?;
        latest.insert(id, (StatusRecord { status, runner_id }, at));
    }
    let mut refused = Vec::new();
    for (index, write) in writes.iter().enumerate() {
        let PynencWrite::AddHistory(entry) = write else {
            continue;
        };
        let current = latest.get(entry.invocation_id.as_str());
        if let Err(refusal) = check_entry(current.map(|(record, _)| record), entry) {
            refused.push(Refused {
                index,
                invocation_id: entry.invocation_id.clone(),
                refusal,
            });
            continue;
        }
        // The entry is inserted after every stored one: it is the latest unless older.
        if current.is_none_or(|(_, at)| entry.timestamp_us >= *at) {
            let record = StatusRecord {
                status: entry.status,
                runner_id: entry.status_runner_id.clone(),
            };
            latest.insert(entry.invocation_id.clone(), (record, entry.timestamp_us));
        }
    }
    Ok(refused)
}
