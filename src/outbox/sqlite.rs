//! SQLite outbox ("optimistic claim"): rusqlite on a dedicated thread, claims inside
//! `BEGIN IMMEDIATE` so concurrent claimers (threads or processes) never share an item.

use super::lease::{LeaseRow, check_live_lease, not_found, unacknowledged};
use super::{
    ClaimFilter, FailureDecision, NewItem, OutboxConfig, OutboxItem, OutboxStatus, OutboxStore,
    Rescue, check_limit,
};
use crate::db::{SqliteDb, migrate};
use crate::error::{Error, Result};
use crate::validate;
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::Notify;

const COLUMNS: &str = "id, topic, payload, status, priority, attempts, max_attempts, run_at, \
    lease_owner, lease_expires_at, last_error, dedupe_key, trace_id, created_at, updated_at";

/// Busy timeout for concurrent writers on the same file.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The SQLite outbox store.
#[derive(Debug)]
pub struct OptimisticClaimOutboxStore {
    db: SqliteDb,
    config: OutboxConfig,
    work: Arc<Notify>,
}

impl OptimisticClaimOutboxStore {
    /// Opens the database file at `path`, applying migrations when `migrate` is set.
    pub async fn open(path: &str, config: OutboxConfig, migrate: bool) -> Result<Self> {
        config.validate()?;
        let db = SqliteDb::open(path, BUSY_TIMEOUT)?;
        if migrate {
            migrate::migrate_sqlite(&db).await?;
        }
        Ok(OptimisticClaimOutboxStore {
            db,
            config,
            work: Arc::new(Notify::new()),
        })
    }

    /// Closes the connection; later calls fail with a clear error.
    pub fn close(&self) {
        self.db.close();
    }

    fn now(&self) -> DateTime<Utc> {
        self.config.clock.now()
    }
}

/// Microseconds since the epoch, the stored time format.
pub(crate) fn to_us(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn from_us(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn read_item(row: &Row<'_>) -> rusqlite::Result<OutboxItem> {
    let status: String = row.get(3)?;
    Ok(OutboxItem {
        id: row.get(0)?,
        topic: row.get(1)?,
        payload: row.get(2)?,
        status: status.parse().unwrap_or(OutboxStatus::Failed),
        priority: row.get(4)?,
        attempts: row.get(5)?,
        max_attempts: row.get(6)?,
        run_at: from_us(row.get(7)?),
        lease_owner: row.get(8)?,
        lease_expires_at: row.get::<_, Option<i64>>(9)?.map(from_us),
        last_error: row.get(10)?,
        dedupe_key: row.get(11)?,
        trace_id: row.get(12)?,
        created_at: from_us(row.get(13)?),
        updated_at: from_us(row.get(14)?),
    })
}

fn read_lease(conn: &Connection, item_id: i64) -> Result<Option<LeaseRow>> {
    Ok(conn
        .prepare_cached(
            "SELECT status, attempts, max_attempts, lease_owner, lease_expires_at \
             FROM headrace_outbox WHERE id = ?1",
        )?
        .query_row([item_id], |row| {
            Ok(LeaseRow {
                status: row.get(0)?,
                attempts: row.get(1)?,
                max_attempts: row.get(2)?,
                lease_owner: row.get(3)?,
                lease_expires_at: row.get::<_, Option<i64>>(4)?.map(from_us),
            })
        })
        .optional()?)
}

fn ids_json(ids: &[i64]) -> String {
    serde_json::to_string(ids).expect("ids encode")
}

fn existing_ids(conn: &Connection, ids: &[i64]) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id FROM headrace_outbox WHERE id IN (SELECT value FROM json_each(?1))",
    )?;
    let rows = stmt.query_map([ids_json(ids)], |row| row.get(0))?;
    Ok(rows.collect::<rusqlite::Result<Vec<i64>>>()?)
}

#[async_trait]
impl OutboxStore for OptimisticClaimOutboxStore {
    fn config(&self) -> &OutboxConfig {
        &self.config
    }

    fn claim_strategy(&self) -> &'static str {
        "optimistic"
    }

    async fn enqueue_many(&self, items: Vec<NewItem>) -> Result<Vec<i64>> {
        let now = self.now();
        let resolved = items
            .iter()
            .map(|item| item.resolve(&self.config, now))
            .collect::<Result<Vec<_>>>()?;
        self.db
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let mut ids = Vec::with_capacity(items.len());
                {
                    let mut insert = tx.prepare_cached(
                        "INSERT INTO headrace_outbox (topic, payload, priority, max_attempts, run_at, \
                         dedupe_key, trace_id, created_at, updated_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8) \
                         ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL \
                           AND status IN ('pending', 'processing') DO NOTHING",
                    )?;
                    let mut existing = tx.prepare_cached(
                        "SELECT id FROM headrace_outbox WHERE dedupe_key = ?1 \
                         AND status IN ('pending', 'processing')",
                    )?;
                    for (item, (run_at, max_attempts)) in items.iter().zip(resolved) {
                        // No `RETURNING`: SQLite buffers returned rows in an ephemeral
                        // table opened per execution, which cost more than the insert. The
                        // change count says whether the row went in, and its rowid is the
                        // connection's last insert (a trigger's inserts do not change it).
                        let inserted = insert.execute(params![
                            item.topic,
                            item.payload,
                            item.priority,
                            max_attempts,
                            to_us(run_at),
                            item.dedupe_key,
                            item.trace_id,
                            to_us(now)
                        ])?;
                        let id = match inserted {
                            0 => existing.query_row([&item.dedupe_key], |row| row.get(0))?,
                            _ => tx.last_insert_rowid(),
                        };
                        ids.push(id);
                    }
                }
                tx.commit()?;
                Ok(ids)
            })
            .await
            .inspect(|_| self.work.notify_waiters())
    }

    async fn close(&self) {
        self.db.close();
    }

    async fn work_signal(&self) -> Result<Arc<Notify>> {
        Ok(self.work.clone())
    }

    async fn claim(
        &self,
        worker_id: &str,
        limit: i64,
        filter: &ClaimFilter,
    ) -> Result<Vec<OutboxItem>> {
        validate::key("worker_id", worker_id)?;
        let limit = check_limit(limit)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now = self.now();
        let expires = now + self.config.lease;
        let worker_id = worker_id.to_string();
        let topics = filter
            .topics
            .as_ref()
            .map(|t| serde_json::to_string(t).expect("topics encode"));
        let excluded = serde_json::to_string(&filter.exclude_topics).expect("topics encode");
        let due_by = filter.due_by;
        self.db
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let mut items = {
                    let mut claim = tx.prepare_cached(&format!(
                        "UPDATE headrace_outbox SET status = 'processing', attempts = attempts + 1, \
                         lease_owner = ?1, lease_expires_at = ?2, updated_at = ?3 \
                         WHERE id IN (SELECT id FROM headrace_outbox \
                           WHERE status = 'pending' AND run_at <= ?6 \
                           AND (?4 IS NULL OR topic IN (SELECT value FROM json_each(?4))) \
                           AND topic NOT IN (SELECT value FROM json_each(?7)) \
                           ORDER BY priority DESC, run_at, id LIMIT ?5) \
                         RETURNING {COLUMNS}"
                    ))?;
                    let rows = claim.query_map(
                        params![
                            worker_id,
                            to_us(expires),
                            to_us(now),
                            topics,
                            limit as i64,
                            to_us(due_by.unwrap_or(now)),
                            excluded
                        ],
                        read_item,
                    )?;
                    rows.collect::<rusqlite::Result<Vec<_>>>()?
                };
                tx.commit()?;
                items.sort_by_key(OutboxItem::claim_order_key);
                Ok(items)
            })
            .await
    }

    async fn mark_success_many(&self, item_ids: &[i64], worker_id: &str) -> Result<()> {
        if item_ids.is_empty() {
            return Ok(());
        }
        let now = to_us(self.now());
        let ids = item_ids.to_vec();
        let worker_id = worker_id.to_string();
        self.db
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let acknowledged: Vec<i64> = {
                    let mut ack = tx.prepare_cached(
                        "UPDATE headrace_outbox SET status = 'completed', lease_owner = NULL, \
                         lease_expires_at = NULL, updated_at = ?1 \
                         WHERE id IN (SELECT value FROM json_each(?2)) AND status = 'processing' \
                         AND lease_owner = ?3 AND lease_expires_at > ?1 RETURNING id",
                    )?;
                    let rows =
                        ack.query_map(params![now, ids_json(&ids), worker_id], |r| r.get(0))?;
                    rows.collect::<rusqlite::Result<_>>()?
                };
                let outcome = if acknowledged.len() == ids.len() {
                    Ok(())
                } else {
                    unacknowledged(&ids, &acknowledged, &existing_ids(&tx, &ids)?, &worker_id)
                };
                tx.commit()?;
                outcome
            })
            .await
    }

    async fn mark_retry(
        &self,
        item_id: i64,
        worker_id: &str,
        next_attempt: Option<DateTime<Utc>>,
        error: &str,
    ) -> Result<OutboxStatus> {
        let now = self.now();
        validate::retry_time(next_attempt)?;
        let worker_id = worker_id.to_string();
        let error = validate::error_text(error).into_owned();
        let retry = self.config.retry.clone();
        self.db
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let row = check_live_lease(read_lease(&tx, item_id)?, item_id, &worker_id, now)?;
                let (status, run_at) =
                    match retry.decide(row.attempts, row.max_attempts, true, next_attempt, now) {
                        FailureDecision::Retry { at } => (OutboxStatus::Pending, at),
                        FailureDecision::DeadLetter => (OutboxStatus::Failed, now),
                    };
                tx.prepare_cached(
                    "UPDATE headrace_outbox SET status = ?1, run_at = CASE WHEN ?1 = 'pending' \
                     THEN ?2 ELSE run_at END, last_error = ?3, lease_owner = NULL, \
                     lease_expires_at = NULL, updated_at = ?4 WHERE id = ?5",
                )?
                .execute(params![
                    status.as_str(),
                    to_us(run_at),
                    error,
                    to_us(now),
                    item_id
                ])?;
                tx.commit()?;
                Ok(status)
            })
            .await
    }

    async fn mark_failed(&self, item_id: i64, worker_id: &str, error: &str) -> Result<()> {
        let now = self.now();
        let worker_id = worker_id.to_string();
        let error = validate::error_text(error).into_owned();
        self.db
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                check_live_lease(read_lease(&tx, item_id)?, item_id, &worker_id, now)?;
                tx.prepare_cached(
                    "UPDATE headrace_outbox SET status = 'failed', last_error = ?1, lease_owner = NULL, \
                     lease_expires_at = NULL, updated_at = ?2 WHERE id = ?3",
                )?
                .execute(params![error, to_us(now), item_id])?;
                tx.commit()?;
                Ok(())
            })
            .await
    }

    async fn extend_lease(
        &self,
        item_id: i64,
        worker_id: &str,
        by: Option<Duration>,
    ) -> Result<DateTime<Utc>> {
        let now = self.now();
        let expires = validate::lease_expiry(now, by.unwrap_or(self.config.lease))?;
        let worker_id = worker_id.to_string();
        self.db
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                check_live_lease(read_lease(&tx, item_id)?, item_id, &worker_id, now)?;
                tx.prepare_cached(
                    "UPDATE headrace_outbox SET lease_expires_at = ?1, updated_at = ?2 WHERE id = ?3",
                )?
                .execute(params![to_us(expires), to_us(now), item_id])?;
                tx.commit()?;
                Ok(expires)
            })
            .await
    }

    async fn extend_leases(
        &self,
        item_ids: &[i64],
        worker_id: &str,
        by: Option<Duration>,
    ) -> Result<Vec<i64>> {
        if item_ids.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now();
        let expires = validate::lease_expiry(now, by.unwrap_or(self.config.lease))?;
        let ids = ids_json(item_ids);
        let worker_id = worker_id.to_string();
        self.db
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let extended = tx
                    .prepare_cached(
                        "UPDATE headrace_outbox SET lease_expires_at = ?1, updated_at = ?2 \
                         WHERE id IN (SELECT value FROM json_each(?3)) AND status = 'processing' \
                         AND lease_owner = ?4 AND lease_expires_at > ?2 RETURNING id",
                    )?
                    .query_map(params![to_us(expires), to_us(now), ids, worker_id], |row| {
                        row.get(0)
                    })?
                    .collect::<rusqlite::Result<Vec<i64>>>()?;
                tx.commit()?;
                Ok(extended)
            })
            .await
    }

    async fn release(&self, item_ids: &[i64], worker_id: &str) -> Result<u64> {
        if item_ids.is_empty() {
            return Ok(0);
        }
        let now = to_us(self.now());
        let ids = ids_json(item_ids);
        let worker_id = worker_id.to_string();
        self.db
            .call(move |conn| {
                let released = conn
                    .prepare_cached(
                        "UPDATE headrace_outbox SET status = 'pending', attempts = MAX(attempts - 1, 0), \
                         lease_owner = NULL, lease_expires_at = NULL, updated_at = ?1 \
                         WHERE id IN (SELECT value FROM json_each(?2)) AND status = 'processing' \
                         AND lease_owner = ?3",
                    )?
                    .execute(params![now, ids, worker_id])?;
                Ok(released as u64)
            })
            .await
    }

    async fn get(&self, item_id: i64) -> Result<OutboxItem> {
        self.db
            .call(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM headrace_outbox WHERE id = ?1"
                ))?
                .query_row([item_id], read_item)
                .optional()?
                .ok_or_else(|| not_found(item_id))
            })
            .await
    }

    async fn get_by_dedupe_key(&self, dedupe_key: &str) -> Result<Option<OutboxItem>> {
        let key = dedupe_key.to_string();
        self.db
            .call(move |conn| {
                Ok(conn
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM headrace_outbox WHERE dedupe_key = ?1 \
                         ORDER BY id DESC LIMIT 1"
                    ))?
                    .query_row([key], read_item)
                    .optional()?)
            })
            .await
    }

    async fn list(
        &self,
        status: Option<OutboxStatus>,
        topic: Option<&str>,
        limit: i64,
    ) -> Result<Vec<OutboxItem>> {
        let limit = check_limit(limit)? as i64;
        let status = status.map(OutboxStatus::as_str);
        let topic = topic.map(str::to_string);
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM headrace_outbox WHERE (?1 IS NULL OR status = ?1) \
                     AND (?2 IS NULL OR topic = ?2) ORDER BY id DESC LIMIT ?3"
                ))?;
                let rows = stmt.query_map(params![status, topic, limit], read_item)?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await
    }

    async fn stats(&self) -> Result<BTreeMap<String, i64>> {
        self.db
            .call(|conn| {
                let mut counts: BTreeMap<String, i64> = OutboxStatus::ALL
                    .iter()
                    .map(|s| (s.as_str().to_string(), 0))
                    .collect();
                let mut stmt = conn.prepare_cached(
                    "SELECT status, COUNT(*) FROM headrace_outbox GROUP BY status",
                )?;
                let rows = stmt.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get(1)?)))?;
                for row in rows {
                    let (status, count) = row?;
                    counts.insert(status, count);
                }
                Ok(counts)
            })
            .await
    }

    async fn release_held(&self, item_ids: &[i64]) -> Result<u64> {
        let now = to_us(self.now());
        let held = to_us(super::held_run_at());
        let ids = item_ids.to_vec();
        self.db
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let mut changed = 0u64;
                {
                    let mut update = tx.prepare_cached(
                        "UPDATE headrace_outbox SET run_at = ?1, updated_at = ?1 \
                         WHERE id = ?2 AND status = 'pending' AND run_at >= ?3",
                    )?;
                    for id in ids {
                        changed += update.execute(params![now, id, held])? as u64;
                    }
                }
                tx.commit()?;
                Ok(changed)
            })
            .await
    }

    async fn discard_held(&self, item_ids: &[i64]) -> Result<u64> {
        let held = to_us(super::held_run_at());
        let ids = item_ids.to_vec();
        self.db
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let mut changed = 0u64;
                {
                    let mut delete = tx.prepare_cached(
                        "DELETE FROM headrace_outbox WHERE id = ?1 AND status = 'pending' AND run_at >= ?2",
                    )?;
                    for id in ids {
                        changed += delete.execute(params![id, held])? as u64;
                    }
                }
                tx.commit()?;
                Ok(changed)
            })
            .await
    }

    async fn discard_abandoned_held(&self, older_than: Duration) -> Result<u64> {
        let held = to_us(super::held_run_at());
        let before = to_us(self.now() - older_than);
        self.db
            .call(move |conn| {
                let changed = conn
                    .prepare_cached(
                        "DELETE FROM headrace_outbox WHERE status = 'pending' AND run_at >= ?1 \
                         AND created_at < ?2",
                    )?
                    .execute(params![held, before])?;
                Ok(changed as u64)
            })
            .await
    }

    async fn requeue(&self, item_id: i64) -> Result<()> {
        let now = to_us(self.now());
        self.db
            .call(move |conn| {
                let changed = conn
                    .prepare_cached(
                        "UPDATE headrace_outbox SET status = 'pending', attempts = 0, run_at = ?1, \
                         lease_owner = NULL, lease_expires_at = NULL, updated_at = ?1 WHERE id = ?2",
                    )?
                    .execute(params![now, item_id])
                    .map_err(|e| requeue_conflict(e, item_id))?;
                if changed == 0 { Err(not_found(item_id)) } else { Ok(()) }
            })
            .await
    }

    async fn requeue_failed(&self, topic: Option<&str>) -> Result<u64> {
        let now = to_us(self.now());
        let topic = topic.map(str::to_string);
        self.db
            .call(move |conn| {
                let changed = conn
                    .prepare_cached(
                        "UPDATE headrace_outbox SET status = 'pending', attempts = 0, run_at = ?1, \
                         updated_at = ?1 WHERE status = 'failed' AND (?2 IS NULL OR topic = ?2)",
                    )?
                    .execute(params![now, topic])?;
                Ok(changed as u64)
            })
            .await
    }

    async fn purge(&self, older_than: Duration, statuses: &[OutboxStatus]) -> Result<u64> {
        validate::duration("older_than_seconds", older_than)?;
        let cutoff = to_us(validate::before(self.now(), older_than));
        let statuses =
            serde_json::to_string(&statuses.iter().map(|s| s.as_str()).collect::<Vec<_>>())
                .expect("statuses encode");
        self.db
            .call(move |conn| {
                let deleted = conn
                    .prepare_cached(
                        "DELETE FROM headrace_outbox WHERE status IN (SELECT value FROM json_each(?1)) \
                         AND updated_at < ?2",
                    )?
                    .execute(params![statuses, cutoff])?;
                Ok(deleted as u64)
            })
            .await
    }

    async fn stuck(
        &self,
        as_of: DateTime<Utc>,
        untouched_since: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OutboxItem>> {
        let limit = check_limit(limit)? as i64;
        let (as_of, untouched_since) = (to_us(as_of), to_us(untouched_since));
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM headrace_outbox WHERE status = 'processing' \
                     AND (lease_expires_at <= ?1 OR (lease_expires_at IS NULL AND updated_at <= ?2)) \
                     ORDER BY id LIMIT ?3"
                ))?;
                let rows = stmt.query_map(params![as_of, untouched_since, limit], read_item)?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await
    }

    async fn rescue(&self, rescues: &[Rescue], as_of: DateTime<Utc>) -> Result<u64> {
        if rescues.is_empty() {
            return Ok(0);
        }
        let rescues = rescues.to_vec();
        let as_of = to_us(as_of);
        self.db
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let mut moved = 0;
                {
                    let mut stmt = tx.prepare_cached(
                        "UPDATE headrace_outbox SET status = ?1, run_at = ?2, last_error = ?3, \
                         lease_owner = NULL, lease_expires_at = NULL, updated_at = ?4 \
                         WHERE id = ?5 AND status = 'processing' AND attempts = ?6 \
                           AND lease_owner IS ?7 AND lease_expires_at IS ?8",
                    )?;
                    for r in &rescues {
                        moved += stmt.execute(params![
                            r.status.as_str(),
                            to_us(r.run_at),
                            r.last_error,
                            as_of,
                            r.id,
                            r.attempts,
                            r.lease_owner,
                            r.lease_expires_at.map(to_us),
                        ])? as u64;
                    }
                }
                tx.commit()?;
                Ok(moved)
            })
            .await
    }
}

fn requeue_conflict(err: rusqlite::Error, item_id: i64) -> Error {
    match err {
        rusqlite::Error::SqliteFailure(code, _)
            if code.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Error::config(format!(
                "outbox item {item_id} cannot be requeued: another pending item has the same dedupe_key"
            ))
        }
        other => other.into(),
    }
}
