//! PostgreSQL outbox: sqlx pool, batch claims with `FOR UPDATE SKIP LOCKED`. The batch insert
//! lives in `enqueue`, the `LISTEN` wake-ups in `notify`.

mod enqueue;
mod notify;

pub(crate) use enqueue::ENQUEUE_MANY;
pub use notify::NOTIFY_CHANNEL;

use super::lease::{LeaseRow, check_live_lease, not_found, unacknowledged};
use super::{
    ClaimFilter, FailureDecision, NewItem, OutboxConfig, OutboxItem, OutboxStatus, OutboxStore,
    Rescue, check_limit,
};
use crate::db::shelf::ConnectionShelf;
use crate::db::{connect_pg, migrate};
use crate::error::{Error, Result};
use crate::validate;
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{Postgres, Row, Transaction};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::{Notify, OnceCell};

/// The item columns, each qualified by the table alias `o`.
macro_rules! item_columns {
    () => {
        "o.id, o.topic, o.payload::text AS payload, o.status, o.priority, o.attempts, o.max_attempts, \
         o.run_at, o.lease_owner, o.lease_expires_at, o.last_error, o.dedupe_key, o.trace_id, \
         o.created_at, o.updated_at"
    };
}

/// Claims through `headrace_outbox_claim` (migration `0006_claim`), whose plan is an ordered
/// walk of the claim index whatever the table's statistics say.
pub const CLAIM: &str = concat!(
    "SELECT ",
    item_columns!(),
    " FROM headrace_outbox_claim($1, $2, $3, $4, $5, $6, $7) o"
);

/// Acknowledges one batch and claims the next through `headrace_outbox_ack_claim` (migration
/// `0012_outbox_ack_claim`): the acknowledged rows come first with status `completed` (their
/// payload left out), then the claimed ones.
pub const ACK_CLAIM: &str = "SELECT o.id, o.topic, \
     CASE WHEN o.status = 'completed' THEN NULL ELSE o.payload::text END AS payload, o.status, \
     o.priority, o.attempts, o.max_attempts, o.run_at, o.lease_owner, o.lease_expires_at, \
     o.last_error, o.dedupe_key, o.trace_id, o.created_at, o.updated_at \
     FROM headrace_outbox_ack_claim($1, $2, $3, $4, $5, $6, $7, $8) o";

/// Acknowledges through `headrace_outbox_ack` (migration `0006_relaxed_commit`): the items still leased
/// to the worker become completed; returns their ids.
pub const ACK: &str = "SELECT headrace_outbox_ack($1, $2, $3)";

/// Connections in the pool of one store.
const POOL_SIZE: u32 = 8;

/// The PostgreSQL outbox store.
#[derive(Debug)]
pub struct SkipLockedClaimOutboxStore {
    shelf: ConnectionShelf,
    config: OutboxConfig,
    work: Arc<Notify>,
    listening: OnceCell<tokio::task::AbortHandle>,
}

impl SkipLockedClaimOutboxStore {
    /// Connects to `url`, applying migrations when `migrate` is set.
    pub async fn connect(url: &str, config: OutboxConfig, migrate: bool) -> Result<Self> {
        config.validate()?;
        let pool = connect_pg(url, POOL_SIZE).await?;
        if migrate {
            migrate::migrate_postgres(&pool).await?;
        }
        Ok(SkipLockedClaimOutboxStore {
            shelf: ConnectionShelf::new(pool),
            config,
            work: Arc::new(Notify::new()),
            listening: OnceCell::new(),
        })
    }

    /// The underlying pool (for LISTEN/NOTIFY and tests).
    pub fn pool(&self) -> &PgPool {
        self.shelf.pool()
    }

    /// `Ok` when every requested item was acknowledged; else `LeaseLost` (or `NotFound` for an
    /// item that does not exist), found with one more query.
    async fn check_acknowledged(
        &self,
        requested: &[i64],
        acknowledged: &[i64],
        worker_id: &str,
    ) -> Result<()> {
        if acknowledged.len() == requested.len() {
            return Ok(());
        }
        let mut conn = self.shelf.checkout().await?;
        let existing: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM headrace_outbox WHERE id = ANY($1)")
                .bind(requested)
                .fetch_all(&mut *conn)
                .await?;
        conn.park();
        unacknowledged(requested, acknowledged, &existing, worker_id)
    }

    fn now(&self) -> DateTime<Utc> {
        self.config.clock.now()
    }
}

fn read_item(row: &PgRow) -> Result<OutboxItem> {
    let status: String = row.try_get("status")?;
    Ok(OutboxItem {
        id: row.try_get("id")?,
        topic: row.try_get("topic")?,
        payload: row.try_get("payload")?,
        status: status.parse()?,
        priority: row.try_get("priority")?,
        attempts: row.try_get("attempts")?,
        max_attempts: row.try_get("max_attempts")?,
        run_at: row.try_get("run_at")?,
        lease_owner: row.try_get("lease_owner")?,
        lease_expires_at: row.try_get("lease_expires_at")?,
        last_error: row.try_get("last_error")?,
        dedupe_key: row.try_get("dedupe_key")?,
        trace_id: row.try_get("trace_id")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

async fn read_lease(tx: &mut Transaction<'_, Postgres>, item_id: i64) -> Result<Option<LeaseRow>> {
    let row = sqlx::query(
        "SELECT status, attempts, max_attempts, lease_owner, lease_expires_at \
         FROM headrace_outbox WHERE id = $1 FOR UPDATE",
    )
    .bind(item_id)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|row| {
        Ok(LeaseRow {
            status: row.try_get("status")?,
            attempts: row.try_get("attempts")?,
            max_attempts: row.try_get("max_attempts")?,
            lease_owner: row.try_get("lease_owner")?,
            lease_expires_at: row.try_get("lease_expires_at")?,
        })
    })
    .transpose()
}

#[async_trait]
impl OutboxStore for SkipLockedClaimOutboxStore {
    fn config(&self) -> &OutboxConfig {
        &self.config
    }

    fn claim_strategy(&self) -> &'static str {
        "skip_locked"
    }

    async fn enqueue_many(&self, items: Vec<NewItem>) -> Result<Vec<i64>> {
        let now = self.now();
        let resolved = items
            .iter()
            .map(|item| item.resolve(&self.config, now))
            .collect::<Result<Vec<_>>>()?;
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut columns = enqueue::EnqueueColumns::with_capacity(items.len());
        for (item, (run_at, max_attempts)) in items.into_iter().zip(resolved) {
            columns.push(item, run_at, max_attempts);
        }
        let mut conn = self.shelf.checkout().await?;
        let rows = columns.insert(&mut conn, now).await?;
        conn.park();
        let ids = enqueue::resolve_concurrent_duplicates(self.shelf.pool(), rows).await?;
        self.work.notify_waiters();
        Ok(ids)
    }

    async fn work_signal(&self) -> Result<Arc<Notify>> {
        self.listening
            .get_or_init(|| async {
                tokio::spawn(notify::relay_notifications(
                    self.shelf.pool().clone(),
                    Arc::downgrade(&self.work),
                ))
                .abort_handle()
            })
            .await;
        Ok(self.work.clone())
    }

    async fn close(&self) {
        if let Some(listener) = self.listening.get() {
            listener.abort();
        }
        self.shelf.close().await;
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
        let mut conn = self.shelf.checkout().await?;
        let rows = sqlx::query(CLAIM)
            .bind(worker_id)
            .bind(i32::try_from(limit).unwrap_or(i32::MAX))
            .bind(now)
            .bind(now + self.config.lease)
            .bind(filter.due_by.unwrap_or(now))
            .bind(&filter.topics)
            .bind(&filter.exclude_topics)
            .fetch_all(&mut *conn)
            .await?;
        conn.park();
        let mut items = rows.iter().map(read_item).collect::<Result<Vec<_>>>()?;
        items.sort_by_key(OutboxItem::claim_order_key);
        Ok(items)
    }

    async fn mark_success_many(&self, item_ids: &[i64], worker_id: &str) -> Result<()> {
        if item_ids.is_empty() {
            return Ok(());
        }
        let mut conn = self.shelf.checkout().await?;
        let acknowledged: Vec<i64> = sqlx::query_scalar(ACK)
            .bind(item_ids)
            .bind(worker_id)
            .bind(self.now())
            .fetch_all(&mut *conn)
            .await?;
        conn.park();
        self.check_acknowledged(item_ids, &acknowledged, worker_id)
            .await
    }

    async fn complete_and_claim(
        &self,
        completed: &[i64],
        worker_id: &str,
        limit: i64,
        filter: &ClaimFilter,
    ) -> Result<(Result<()>, Vec<OutboxItem>)> {
        validate::key("worker_id", worker_id)?;
        let limit = check_limit(limit)?;
        let now = self.now();
        let mut conn = self.shelf.checkout().await?;
        let rows = sqlx::query(ACK_CLAIM)
            .bind(completed)
            .bind(worker_id)
            .bind(i32::try_from(limit).unwrap_or(i32::MAX))
            .bind(now)
            .bind(now + self.config.lease)
            .bind(filter.due_by.unwrap_or(now))
            .bind(&filter.topics)
            .bind(&filter.exclude_topics)
            .fetch_all(&mut *conn)
            .await?;
        conn.park();
        let mut acknowledged = Vec::with_capacity(completed.len());
        let mut items = Vec::with_capacity(limit);
        for row in &rows {
            let status: &str = row.try_get("status")?;
            if status == "completed" {
                acknowledged.push(row.try_get::<i64, _>("id")?);
            } else {
                items.push(read_item(row)?);
            }
        }
        items.sort_by_key(OutboxItem::claim_order_key);
        let checked = self
            .check_acknowledged(completed, &acknowledged, worker_id)
            .await;
        match checked {
            Err(err @ (Error::LeaseLost { .. } | Error::NotFound(_))) => Ok((Err(err), items)),
            Err(err) => {
                // The claim committed but cannot be handed out with an unknown acknowledgement:
                // give it back rather than leave it leased until the reaper comes.
                let ids: Vec<i64> = items.iter().map(|i| i.id).collect();
                let _ = self.release(&ids, worker_id).await;
                Err(err)
            }
            Ok(()) => Ok((Ok(()), items)),
        }
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
        let error = validate::error_text(error);
        let mut conn = self.shelf.checkout().await?;
        let mut tx = conn.begin().await?;
        let row = check_live_lease(read_lease(&mut tx, item_id).await?, item_id, worker_id, now)?;
        let (status, run_at) =
            match self
                .config
                .retry
                .decide(row.attempts, row.max_attempts, true, next_attempt, now)
            {
                FailureDecision::Retry { at } => (OutboxStatus::Pending, at),
                FailureDecision::DeadLetter => (OutboxStatus::Failed, now),
            };
        sqlx::query(
            "UPDATE headrace_outbox SET status = $1, run_at = CASE WHEN $1 = 'pending' THEN $2 \
             ELSE run_at END, last_error = $3, lease_owner = NULL, lease_expires_at = NULL, \
             updated_at = $4 WHERE id = $5",
        )
        .bind(status.as_str())
        .bind(run_at)
        .bind(error.as_ref())
        .bind(now)
        .bind(item_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        conn.park();
        Ok(status)
    }

    async fn mark_failed(&self, item_id: i64, worker_id: &str, error: &str) -> Result<()> {
        let now = self.now();
        let error = validate::error_text(error);
        let mut conn = self.shelf.checkout().await?;
        let mut tx = conn.begin().await?;
        check_live_lease(read_lease(&mut tx, item_id).await?, item_id, worker_id, now)?;
        sqlx::query(
            "UPDATE headrace_outbox SET status = 'failed', last_error = $1, lease_owner = NULL, \
             lease_expires_at = NULL, updated_at = $2 WHERE id = $3",
        )
        .bind(error.as_ref())
        .bind(now)
        .bind(item_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        conn.park();
        Ok(())
    }

    async fn extend_lease(
        &self,
        item_id: i64,
        worker_id: &str,
        by: Option<Duration>,
    ) -> Result<DateTime<Utc>> {
        let now = self.now();
        let expires = validate::lease_expiry(now, by.unwrap_or(self.config.lease))?;
        let mut conn = self.shelf.checkout().await?;
        let mut tx = conn.begin().await?;
        check_live_lease(read_lease(&mut tx, item_id).await?, item_id, worker_id, now)?;
        sqlx::query(
            "UPDATE headrace_outbox SET lease_expires_at = $1, updated_at = $2 WHERE id = $3",
        )
        .bind(expires)
        .bind(now)
        .bind(item_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        conn.park();
        Ok(expires)
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
        let mut conn = self.shelf.checkout().await?;
        let rows = sqlx::query(
            "UPDATE headrace_outbox SET lease_expires_at = $1, updated_at = $2 \
             WHERE id = ANY($3) AND status = 'processing' AND lease_owner = $4 \
             AND lease_expires_at > $2 RETURNING id",
        )
        .bind(expires)
        .bind(now)
        .bind(item_ids)
        .bind(worker_id)
        .fetch_all(&mut *conn)
        .await?;
        conn.park();
        rows.iter()
            .map(|row| row.try_get::<i64, _>(0).map_err(Error::from))
            .collect()
    }

    async fn release(&self, item_ids: &[i64], worker_id: &str) -> Result<u64> {
        if item_ids.is_empty() {
            return Ok(0);
        }
        let mut conn = self.shelf.checkout().await?;
        let done = sqlx::query(
            "UPDATE headrace_outbox SET status = 'pending', attempts = GREATEST(attempts - 1, 0), \
             lease_owner = NULL, lease_expires_at = NULL, updated_at = $1 \
             WHERE id = ANY($2) AND status = 'processing' AND lease_owner = $3",
        )
        .bind(self.now())
        .bind(item_ids)
        .bind(worker_id)
        .execute(&mut *conn)
        .await?;
        conn.park();
        Ok(done.rows_affected())
    }

    async fn get(&self, item_id: i64) -> Result<OutboxItem> {
        let mut conn = self.shelf.checkout().await?;
        let row = sqlx::query(concat!(
            "SELECT ",
            item_columns!(),
            " FROM headrace_outbox o WHERE o.id = $1"
        ))
        .bind(item_id)
        .fetch_optional(&mut *conn)
        .await?;
        conn.park();
        row.as_ref()
            .map(read_item)
            .transpose()?
            .ok_or_else(|| not_found(item_id))
    }

    async fn get_by_dedupe_key(&self, dedupe_key: &str) -> Result<Option<OutboxItem>> {
        let mut conn = self.shelf.checkout().await?;
        let row = sqlx::query(concat!(
            "SELECT ",
            item_columns!(),
            " FROM headrace_outbox o WHERE o.dedupe_key = $1 ORDER BY o.id DESC LIMIT 1"
        ))
        .bind(dedupe_key)
        .fetch_optional(&mut *conn)
        .await?;
        conn.park();
        row.as_ref().map(read_item).transpose()
    }

    async fn list(
        &self,
        status: Option<OutboxStatus>,
        topic: Option<&str>,
        limit: i64,
    ) -> Result<Vec<OutboxItem>> {
        let limit = check_limit(limit)? as i64;
        let mut conn = self.shelf.checkout().await?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            item_columns!(),
            " FROM headrace_outbox o WHERE ($1::text IS NULL OR o.status = $1) \
              AND ($2::text IS NULL OR o.topic = $2) ORDER BY o.id DESC LIMIT $3"
        ))
        .bind(status.map(OutboxStatus::as_str))
        .bind(topic)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
        conn.park();
        rows.iter().map(read_item).collect()
    }

    async fn stats(&self) -> Result<BTreeMap<String, i64>> {
        let mut conn = self.shelf.checkout().await?;
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM headrace_outbox GROUP BY status")
            .fetch_all(&mut *conn)
            .await?;
        conn.park();
        let mut counts: BTreeMap<String, i64> = OutboxStatus::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), 0))
            .collect();
        for row in rows {
            counts.insert(row.try_get("status")?, row.try_get("n")?);
        }
        Ok(counts)
    }

    async fn release_held(&self, item_ids: &[i64]) -> Result<u64> {
        let mut conn = self.shelf.checkout().await?;
        let done = sqlx::query(
            "UPDATE headrace_outbox SET run_at = $1, updated_at = $1 \
             WHERE id = ANY($2) AND status = 'pending' AND run_at >= $3",
        )
        .bind(self.now())
        .bind(item_ids)
        .bind(super::held_run_at())
        .execute(&mut *conn)
        .await?;
        conn.park();
        Ok(done.rows_affected())
    }

    async fn discard_held(&self, item_ids: &[i64]) -> Result<u64> {
        let mut conn = self.shelf.checkout().await?;
        let done = sqlx::query(
            "DELETE FROM headrace_outbox WHERE id = ANY($1) AND status = 'pending' AND run_at >= $2",
        )
        .bind(item_ids)
        .bind(super::held_run_at())
        .execute(&mut *conn)
        .await?;
        conn.park();
        Ok(done.rows_affected())
    }

    async fn discard_abandoned_held(&self, older_than: Duration) -> Result<u64> {
        let mut conn = self.shelf.checkout().await?;
        let done = sqlx::query(
            "DELETE FROM headrace_outbox WHERE status = 'pending' AND run_at >= $1 AND created_at < $2",
        )
        .bind(super::held_run_at())
        .bind(self.now() - older_than)
        .execute(&mut *conn)
        .await?;
        conn.park();
        Ok(done.rows_affected())
    }

    async fn requeue(&self, item_id: i64) -> Result<()> {
        let mut conn = self.shelf.checkout().await?;
        let done = sqlx::query(
            "UPDATE headrace_outbox SET status = 'pending', attempts = 0, run_at = $1, \
             lease_owner = NULL, lease_expires_at = NULL, updated_at = $1 WHERE id = $2",
        )
        .bind(self.now())
        .bind(item_id)
        .execute(&mut *conn)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => Error::config(format!(
                "outbox item {item_id} cannot be requeued: another pending item has the same dedupe_key"
            )),
            _ => Error::from(e),
        })?;
        conn.park();
        if done.rows_affected() == 0 {
            Err(not_found(item_id))
        } else {
            Ok(())
        }
    }

    async fn requeue_failed(&self, topic: Option<&str>) -> Result<u64> {
        let mut conn = self.shelf.checkout().await?;
        let done = sqlx::query(
            "UPDATE headrace_outbox SET status = 'pending', attempts = 0, run_at = $1, updated_at = $1 \
             WHERE status = 'failed' AND ($2::text IS NULL OR topic = $2)",
        )
        .bind(self.now())
        .bind(topic)
        .execute(&mut *conn)
        .await?;
        conn.park();
        Ok(done.rows_affected())
    }

    async fn purge(&self, older_than: Duration, statuses: &[OutboxStatus]) -> Result<u64> {
        validate::duration("older_than_seconds", older_than)?;
        let statuses: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
        let mut conn = self.shelf.checkout().await?;
        let done =
            sqlx::query("DELETE FROM headrace_outbox WHERE status = ANY($1) AND updated_at < $2")
                .bind(&statuses)
                .bind(validate::before(self.now(), older_than))
                .execute(&mut *conn)
                .await?;
        conn.park();
        Ok(done.rows_affected())
    }

    async fn stuck(
        &self,
        as_of: DateTime<Utc>,
        untouched_since: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OutboxItem>> {
        let mut conn = self.shelf.checkout().await?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            item_columns!(),
            " FROM headrace_outbox o WHERE o.status = 'processing' AND (o.lease_expires_at <= $1 \
               OR (o.lease_expires_at IS NULL AND o.updated_at <= $2)) ORDER BY o.id LIMIT $3"
        ))
        .bind(as_of)
        .bind(untouched_since)
        .bind(check_limit(limit)? as i64)
        .fetch_all(&mut *conn)
        .await?;
        conn.park();
        rows.iter().map(read_item).collect()
    }

    async fn rescue(&self, rescues: &[Rescue], as_of: DateTime<Utc>) -> Result<u64> {
        if rescues.is_empty() {
            return Ok(0);
        }
        let ids: Vec<i64> = rescues.iter().map(|r| r.id).collect();
        let attempts: Vec<i32> = rescues.iter().map(|r| r.attempts).collect();
        let owners: Vec<Option<&str>> = rescues.iter().map(|r| r.lease_owner.as_deref()).collect();
        let expiries: Vec<Option<DateTime<Utc>>> =
            rescues.iter().map(|r| r.lease_expires_at).collect();
        let statuses: Vec<&str> = rescues.iter().map(|r| r.status.as_str()).collect();
        let run_ats: Vec<DateTime<Utc>> = rescues.iter().map(|r| r.run_at).collect();
        let errors: Vec<&str> = rescues.iter().map(|r| r.last_error.as_str()).collect();
        let mut conn = self.shelf.checkout().await?;
        let done = sqlx::query(
            "UPDATE headrace_outbox o SET status = r.status, run_at = r.run_at, \
               last_error = r.last_error, lease_owner = NULL, lease_expires_at = NULL, updated_at = $1 \
             FROM unnest($2::int8[], $3::int4[], $4::text[], $5::timestamptz[], $6::text[], \
                         $7::timestamptz[], $8::text[]) \
                  AS r(id, attempts, lease_owner, lease_expires_at, status, run_at, last_error) \
             WHERE o.id = r.id AND o.status = 'processing' AND o.attempts = r.attempts \
               AND o.lease_owner IS NOT DISTINCT FROM r.lease_owner \
               AND o.lease_expires_at IS NOT DISTINCT FROM r.lease_expires_at",
        )
        .bind(as_of)
        .bind(&ids)
        .bind(&attempts)
        .bind(&owners)
        .bind(&expiries)
        .bind(&statuses)
        .bind(&run_ats)
        .bind(&errors)
        .execute(&mut *conn)
        .await?;
        conn.park();
        Ok(done.rows_affected())
    }
}
