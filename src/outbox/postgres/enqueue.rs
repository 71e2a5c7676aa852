//! The PostgreSQL batch insert: one statement for the whole batch, dedupe keys answered with
//! the live item's id, and the rare race with a concurrent insert resolved afterwards.

use crate::error::{Error, Result};
use crate::outbox::NewItem;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnection, PgPool};

/// Inserts a batch in one statement: one row per element of the parallel arrays, ids drawn in
/// input order. A row whose `dedupe_key` matches a live (pending or processing) item is not
/// inserted and answers with that item's id — an earlier row of the same batch, or a row that
/// was live before the statement. A row that lost a race with a concurrent insert of the same
/// key answers `NULL` (the statement's snapshot cannot see it) and is resolved by the caller.
/// Also rendered for connections the core does not own ([`crate::outbox::external`]).
pub(crate) const ENQUEUE_MANY: &str = "\
WITH input AS MATERIALIZED ( \
  SELECT nextval('headrace_outbox_id_seq'::regclass) AS id, t.* \
  FROM unnest($1::text[], $2::text[], $3::int4[], $4::int4[], $5::timestamptz[], $6::text[], \
              $7::text[]) \
       WITH ORDINALITY AS t(topic, payload, priority, max_attempts, run_at, dedupe_key, trace_id, ord) \
  ORDER BY t.ord), \
inserted AS ( \
  INSERT INTO headrace_outbox (id, topic, payload, priority, max_attempts, run_at, dedupe_key, \
                               trace_id, created_at, updated_at) \
  SELECT id, topic, payload::jsonb, priority, max_attempts, run_at, dedupe_key, trace_id, $8, $8 \
  FROM input ORDER BY ord \
  ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL AND status IN ('pending', 'processing') \
  DO NOTHING \
  RETURNING id, dedupe_key), \
first_of_key AS ( \
  SELECT dedupe_key, min(id) AS id FROM inserted WHERE dedupe_key IS NOT NULL GROUP BY dedupe_key) \
SELECT COALESCE(own.id, batch.id, live.id) AS id, input.dedupe_key \
FROM input \
LEFT JOIN inserted own ON own.id = input.id \
LEFT JOIN first_of_key batch ON batch.dedupe_key = input.dedupe_key \
LEFT JOIN headrace_outbox live ON own.id IS NULL AND live.dedupe_key = input.dedupe_key \
  AND live.status IN ('pending', 'processing') \
ORDER BY input.ord";

/// The id of the live item holding a dedupe key, read in a fresh snapshot.
const LIVE_ID_OF_KEY: &str = "SELECT id FROM headrace_outbox WHERE dedupe_key = $1 \
    AND status IN ('pending', 'processing')";

/// A batch of new items as the parallel arrays [`ENQUEUE_MANY`] binds.
#[derive(Default)]
pub(super) struct EnqueueColumns {
    topic: Vec<String>,
    payload: Vec<String>,
    priority: Vec<i32>,
    max_attempts: Vec<i32>,
    run_at: Vec<DateTime<Utc>>,
    dedupe_key: Vec<Option<String>>,
    trace_id: Vec<Option<String>>,
}

impl EnqueueColumns {
    pub(super) fn with_capacity(n: usize) -> Self {
        EnqueueColumns {
            topic: Vec::with_capacity(n),
            payload: Vec::with_capacity(n),
            priority: Vec::with_capacity(n),
            max_attempts: Vec::with_capacity(n),
            run_at: Vec::with_capacity(n),
            dedupe_key: Vec::with_capacity(n),
            trace_id: Vec::with_capacity(n),
        }
    }

    pub(super) fn push(&mut self, item: NewItem, run_at: DateTime<Utc>, max_attempts: i32) {
        self.topic.push(item.topic);
        self.payload.push(item.payload);
        self.priority.push(item.priority);
        self.max_attempts.push(max_attempts);
        self.run_at.push(run_at);
        self.dedupe_key.push(item.dedupe_key);
        self.trace_id.push(item.trace_id);
    }

    /// Runs [`ENQUEUE_MANY`] on `conn`: per input row, its id (`None` after a lost race) and
    /// dedupe key, in input order.
    pub(super) async fn insert(
        &self,
        conn: &mut PgConnection,
        now: DateTime<Utc>,
    ) -> Result<Vec<(Option<i64>, Option<String>)>> {
        Ok(sqlx::query_as(ENQUEUE_MANY)
            .bind(&self.topic)
            .bind(&self.payload)
            .bind(&self.priority)
            .bind(&self.max_attempts)
            .bind(&self.run_at)
            .bind(&self.dedupe_key)
            .bind(&self.trace_id)
            .bind(now)
            .fetch_all(conn)
            .await?)
    }
}

/// Fills in the ids [`ENQUEUE_MANY`] could not see: keys a concurrent transaction inserted
/// and committed while the statement ran.
pub(super) async fn resolve_concurrent_duplicates(
    pool: &PgPool,
    rows: Vec<(Option<i64>, Option<String>)>,
) -> Result<Vec<i64>> {
    let mut ids = Vec::with_capacity(rows.len());
    for (id, dedupe_key) in rows {
        let id = match (id, dedupe_key) {
            (Some(id), _) => id,
            (None, Some(key)) => sqlx::query_scalar(LIVE_ID_OF_KEY)
                .bind(&key)
                .fetch_optional(pool)
                .await?
                .ok_or_else(|| {
                    Error::Store(format!(
                        "the live item with dedupe_key {key:?} was settled by another worker \
                         while this enqueue ran; enqueue it again"
                    ))
                })?,
            (None, None) => {
                return Err(Error::Store(
                    "enqueue returned no id for an item without a dedupe_key".into(),
                ));
            }
        };
        ids.push(id);
    }
    Ok(ids)
}
