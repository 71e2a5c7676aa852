//! PostgreSQL outbox: sqlx pool, batch claims with `FOR UPDATE SKIP LOCKED`.

use super::lease::{LeaseRow, check_live_lease, not_found, unacknowledged};
use super::{
    ClaimFilter, NewItem, OutboxConfig, OutboxItem, OutboxStatus, OutboxStore, check_limit,
};
use crate::db::{connect_pg, migrate};
use crate::error::{Error, Result};
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{Postgres, Row, Transaction};
use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use tokio::sync::{Notify, OnceCell};

/// The item columns, each qualified by the table alias `o`.
macro_rules! item_columns {
    () => {
        "o.id, o.topic, o.payload::text AS payload, o.status, o.priority, o.attempts, o.max_attempts, \
         o.run_at, o.lease_owner, o.lease_expires_at, o.last_error, o.dedupe_key, o.trace_id, \
         o.created_at, o.updated_at"
    };
}

/// Channel notified on every enqueue, so idle workers can wake without polling.
pub const NOTIFY_CHANNEL: &str = "headrace_outbox";

/// Connections in the pool of one store.
const POOL_SIZE: u32 = 8;

/// The PostgreSQL outbox store.
#[derive(Debug)]
pub struct SkipLockedClaimOutboxStore {
    pool: PgPool,
    config: OutboxConfig,
    work: Arc<Notify>,
    listening: OnceCell<()>,
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
            pool,
            config,
            work: Arc::new(Notify::new()),
            listening: OnceCell::new(),
        })
    }

    /// The underlying pool (for LISTEN/NOTIFY and tests).
    pub fn pool(&self) -> &PgPool {
        &self.pool
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
        let mut tx = self.pool.begin().await?;
        let mut ids = Vec::with_capacity(items.len());
        for (item, (run_at, max_attempts)) in items.iter().zip(resolved) {
            let inserted: Option<i64> = sqlx::query_scalar(
                "INSERT INTO headrace_outbox (topic, payload, priority, max_attempts, run_at, \
                 dedupe_key, trace_id, created_at, updated_at) \
                 VALUES ($1, $2::jsonb, $3, $4, $5, $6, $7, $8, $8) \
                 ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL \
                   AND status IN ('pending', 'processing') DO NOTHING \
                 RETURNING id",
            )
            .bind(&item.topic)
            .bind(&item.payload)
            .bind(item.priority)
            .bind(max_attempts)
            .bind(run_at)
            .bind(&item.dedupe_key)
            .bind(&item.trace_id)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let id = match inserted {
                Some(id) => id,
                None => {
                    sqlx::query_scalar(
                        "SELECT id FROM headrace_outbox WHERE dedupe_key = $1 \
                         AND status IN ('pending', 'processing')",
                    )
                    .bind(&item.dedupe_key)
                    .fetch_one(&mut *tx)
                    .await?
                }
            };
            ids.push(id);
        }
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(NOTIFY_CHANNEL)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.work.notify_waiters();
        Ok(ids)
    }

    async fn work_signal(&self) -> Result<Arc<Notify>> {
        self.listening
            .get_or_init(|| async {
                tokio::spawn(relay_notifications(
                    self.pool.clone(),
                    Arc::downgrade(&self.work),
                ));
            })
            .await;
        Ok(self.work.clone())
    }

    async fn claim(
        &self,
        worker_id: &str,
        limit: i64,
        filter: &ClaimFilter,
    ) -> Result<Vec<OutboxItem>> {
        let limit = check_limit(limit)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now = self.now();
        let rows = sqlx::query(concat!(
            "WITH picked AS ( \
               SELECT id FROM headrace_outbox \
               WHERE status = 'pending' AND run_at <= $6 AND ($4::text[] IS NULL OR topic = ANY($4)) \
               AND NOT (topic = ANY($7)) \
               ORDER BY priority DESC, run_at, id LIMIT $5 FOR UPDATE SKIP LOCKED) \
             UPDATE headrace_outbox o SET status = 'processing', attempts = o.attempts + 1, \
               lease_owner = $2, lease_expires_at = $3, updated_at = $1 \
             FROM picked WHERE o.id = picked.id RETURNING ",
            item_columns!()
        ))
        .bind(now)
        .bind(worker_id)
        .bind(now + self.config.lease)
        .bind(&filter.topics)
        .bind(limit as i64)
        .bind(filter.due_by.unwrap_or(now))
        .bind(&filter.exclude_topics)
        .fetch_all(&self.pool)
        .await?;
        let mut items = rows.iter().map(read_item).collect::<Result<Vec<_>>>()?;
        items.sort_by_key(OutboxItem::claim_order_key);
        Ok(items)
    }

    async fn mark_success_many(&self, item_ids: &[i64], worker_id: &str) -> Result<()> {
        if item_ids.is_empty() {
            return Ok(());
        }
        let acknowledged: Vec<i64> = sqlx::query_scalar(
            "UPDATE headrace_outbox SET status = 'completed', lease_owner = NULL, \
             lease_expires_at = NULL, updated_at = $1 \
             WHERE id = ANY($2) AND status = 'processing' AND lease_owner = $3 \
             AND lease_expires_at > $1 RETURNING id",
        )
        .bind(self.now())
        .bind(item_ids)
        .bind(worker_id)
        .fetch_all(&self.pool)
        .await?;
        if acknowledged.len() == item_ids.len() {
            return Ok(());
        }
        let existing: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM headrace_outbox WHERE id = ANY($1)")
                .bind(item_ids)
                .fetch_all(&self.pool)
                .await?;
        unacknowledged(item_ids, &acknowledged, &existing, worker_id)
    }

    async fn mark_retry(
        &self,
        item_id: i64,
        worker_id: &str,
        next_attempt: Option<DateTime<Utc>>,
        error: &str,
    ) -> Result<OutboxStatus> {
        let now = self.now();
        let mut tx = self.pool.begin().await?;
        let row = check_live_lease(read_lease(&mut tx, item_id).await?, item_id, worker_id, now)?;
        let status = if row.attempts >= row.max_attempts {
            OutboxStatus::Failed
        } else {
            OutboxStatus::Pending
        };
        let run_at = next_attempt.unwrap_or_else(|| now + self.config.retry.delay(row.attempts));
        sqlx::query(
            "UPDATE headrace_outbox SET status = $1, run_at = CASE WHEN $1 = 'pending' THEN $2 \
             ELSE run_at END, last_error = $3, lease_owner = NULL, lease_expires_at = NULL, \
             updated_at = $4 WHERE id = $5",
        )
        .bind(status.as_str())
        .bind(run_at)
        .bind(error)
        .bind(now)
        .bind(item_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(status)
    }

    async fn mark_failed(&self, item_id: i64, worker_id: &str, error: &str) -> Result<()> {
        let now = self.now();
        let mut tx = self.pool.begin().await?;
        check_live_lease(read_lease(&mut tx, item_id).await?, item_id, worker_id, now)?;
        sqlx::query(
            "UPDATE headrace_outbox SET status = 'failed', last_error = $1, lease_owner = NULL, \
             lease_expires_at = NULL, updated_at = $2 WHERE id = $3",
        )
        .bind(error)
        .bind(now)
        .bind(item_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn extend_lease(
        &self,
        item_id: i64,
        worker_id: &str,
        by: Option<Duration>,
    ) -> Result<DateTime<Utc>> {
        let by = by.unwrap_or(self.config.lease);
        if by <= Duration::zero() {
            return Err(Error::config(format!(
                "lease seconds must be > 0, got {}",
                by.as_seconds_f64()
            )));
        }
        let now = self.now();
        let expires = now + by;
        let mut tx = self.pool.begin().await?;
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
        Ok(expires)
    }

    async fn release(&self, item_ids: &[i64], worker_id: &str) -> Result<u64> {
        if item_ids.is_empty() {
            return Ok(0);
        }
        let done = sqlx::query(
            "UPDATE headrace_outbox SET status = 'pending', attempts = GREATEST(attempts - 1, 0), \
             lease_owner = NULL, lease_expires_at = NULL, updated_at = $1 \
             WHERE id = ANY($2) AND status = 'processing' AND lease_owner = $3",
        )
        .bind(self.now())
        .bind(item_ids)
        .bind(worker_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn get(&self, item_id: i64) -> Result<OutboxItem> {
        let row = sqlx::query(concat!(
            "SELECT ",
            item_columns!(),
            " FROM headrace_outbox o WHERE o.id = $1"
        ))
        .bind(item_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(read_item)
            .transpose()?
            .ok_or_else(|| not_found(item_id))
    }

    async fn list(
        &self,
        status: Option<OutboxStatus>,
        topic: Option<&str>,
        limit: i64,
    ) -> Result<Vec<OutboxItem>> {
        let limit = check_limit(limit)? as i64;
        let rows = sqlx::query(concat!(
            "SELECT ",
            item_columns!(),
            " FROM headrace_outbox o WHERE ($1::text IS NULL OR o.status = $1) \
              AND ($2::text IS NULL OR o.topic = $2) ORDER BY o.id DESC LIMIT $3"
        ))
        .bind(status.map(OutboxStatus::as_str))
        .bind(topic)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(read_item).collect()
    }

    async fn stats(&self) -> Result<BTreeMap<String, i64>> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM headrace_outbox GROUP BY status")
            .fetch_all(&self.pool)
            .await?;
        let mut counts: BTreeMap<String, i64> = OutboxStatus::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), 0))
            .collect();
        for row in rows {
            counts.insert(row.try_get("status")?, row.try_get("n")?);
        }
        Ok(counts)
    }

    async fn requeue(&self, item_id: i64) -> Result<()> {
        let done = sqlx::query(
            "UPDATE headrace_outbox SET status = 'pending', attempts = 0, run_at = $1, \
             lease_owner = NULL, lease_expires_at = NULL, updated_at = $1 WHERE id = $2",
        )
        .bind(self.now())
        .bind(item_id)
        .execute(&self.pool)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => Error::config(format!(
                "outbox item {item_id} cannot be requeued: another pending item has the same dedupe_key"
            )),
            _ => Error::from(e),
        })?;
        if done.rows_affected() == 0 {
            Err(not_found(item_id))
        } else {
            Ok(())
        }
    }

    async fn requeue_failed(&self, topic: Option<&str>) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE headrace_outbox SET status = 'pending', attempts = 0, run_at = $1, updated_at = $1 \
             WHERE status = 'failed' AND ($2::text IS NULL OR topic = $2)",
        )
        .bind(self.now())
        .bind(topic)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn purge(&self, older_than: Duration, statuses: &[OutboxStatus]) -> Result<u64> {
        if older_than < Duration::zero() {
            return Err(Error::config("older_than_seconds must be >= 0"));
        }
        let statuses: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
        let done =
            sqlx::query("DELETE FROM headrace_outbox WHERE status = ANY($1) AND updated_at < $2")
                .bind(&statuses)
                .bind(self.now() - older_than)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected())
    }

    async fn reap_stale(&self, stale_after: Duration) -> Result<u64> {
        let now = self.now();
        let done = sqlx::query(
            "UPDATE headrace_outbox SET \
               status = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'pending' END, \
               last_error = 'lease of worker ' || COALESCE(lease_owner, '(none)') \
                 || ' expired after attempt ' || attempts || ' of ' || max_attempts, \
               lease_owner = NULL, lease_expires_at = NULL, updated_at = $1 \
             WHERE status = 'processing' AND (lease_expires_at <= $1 \
               OR (lease_expires_at IS NULL AND updated_at <= $2))",
        )
        .bind(now)
        .bind(now - stale_after)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

/// Forwards `NOTIFY headrace_outbox` to `work` until the store (and so `work`) is dropped,
/// reconnecting after connection failures. Polling covers any gap.
async fn relay_notifications(pool: PgPool, work: Weak<Notify>) {
    const RECHECK: std::time::Duration = std::time::Duration::from_secs(5);
    while work.strong_count() > 0 {
        let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(mut listener) => match listener.listen(NOTIFY_CHANNEL).await {
                Ok(()) => listener,
                Err(err) => {
                    tracing::warn!(target: "headrace.outbox", %err, "LISTEN failed; polling until it works");
                    tokio::time::sleep(RECHECK).await;
                    continue;
                }
            },
            Err(err) => {
                tracing::warn!(target: "headrace.outbox", %err, "LISTEN connection failed; polling until it works");
                tokio::time::sleep(RECHECK).await;
                continue;
            }
        };
        loop {
            match tokio::time::timeout(RECHECK, listener.recv()).await {
                Ok(Ok(_)) => match work.upgrade() {
                    Some(work) => work.notify_waiters(),
                    None => return,
                },
                Ok(Err(err)) => {
                    tracing::warn!(target: "headrace.outbox", %err, "LISTEN connection lost; reconnecting");
                    break;
                }
                Err(_) if work.strong_count() == 0 => return,
                Err(_) => {}
            }
        }
    }
}
