//! Operator statements over chosen items (the Django admin's actions): requeue, run now, mark
//! failed and purge, for a connection the core does not own. Each statement is one
//! `UPDATE`/`DELETE … RETURNING id`, so the caller learns which of the chosen items changed and
//! the rest are left as they were:
//!
//! - **requeue**: back to `pending`, due now, attempts reset — except items a worker still holds
//!   a live lease on, held chunks of a running run, and items whose dedupe key a live item holds
//!   (requeueing them would break the dedupe rule, and on PostgreSQL abort the caller's
//!   transaction). Of chosen items sharing one dedupe key only the newest is requeued.
//! - **run now**: a `pending` item due later (scheduled, or waiting out a retry's backoff) is due
//!   now; attempts are kept.
//! - **fail**: a `pending` or `processing` item becomes `failed` (the dead letter) with `error`;
//!   a worker still holding it then loses its lease (its ack is refused).
//! - **purge**: deletes terminal (`completed` or `failed`) items only; live work is never deleted.

use super::external::{Dialect, ExternalSql, SqlValue, Statement};

macro_rules! ids {
    (sqlite) => {
        "(SELECT value FROM json_each(%s))"
    };
    (postgres) => {
        "(SELECT jsonb_array_elements_text(%s::jsonb)::bigint)"
    };
}

macro_rules! requeue_sql {
    ($ids:expr) => {
        concat!(
            "UPDATE headrace_outbox SET status = 'pending', attempts = 0, run_at = %s, \
             lease_owner = NULL, lease_expires_at = NULL, updated_at = %s \
             WHERE id IN ",
            $ids,
            " AND run_at < %s \
             AND NOT (status = 'processing' AND lease_expires_at > %s) \
             AND (dedupe_key IS NULL OR status IN ('pending', 'processing') OR (\
               NOT EXISTS (SELECT 1 FROM headrace_outbox live WHERE live.dedupe_key = headrace_outbox.dedupe_key \
                 AND live.status IN ('pending', 'processing') AND live.id <> headrace_outbox.id) \
               AND id = (SELECT MAX(chosen.id) FROM headrace_outbox chosen \
                 WHERE chosen.dedupe_key = headrace_outbox.dedupe_key AND chosen.id IN ",
            $ids,
            "))) RETURNING id"
        )
    };
}

macro_rules! run_now_sql {
    ($ids:expr) => {
        concat!(
            "UPDATE headrace_outbox SET run_at = %s, updated_at = %s WHERE id IN ",
            $ids,
            " AND status = 'pending' AND run_at > %s AND run_at < %s RETURNING id"
        )
    };
}

macro_rules! fail_sql {
    ($ids:expr) => {
        concat!(
            "UPDATE headrace_outbox SET status = 'failed', last_error = %s, lease_owner = NULL, \
             lease_expires_at = NULL, updated_at = %s WHERE id IN ",
            $ids,
            " AND status IN ('pending', 'processing') AND run_at < %s RETURNING id"
        )
    };
}

macro_rules! purge_sql {
    ($ids:expr) => {
        concat!(
            "DELETE FROM headrace_outbox WHERE id IN ",
            $ids,
            " AND status IN ('completed', 'failed') RETURNING id"
        )
    };
}

const SQLITE_REQUEUE: &str = requeue_sql!(ids!(sqlite));
const PG_REQUEUE: &str = requeue_sql!(ids!(postgres));
const SQLITE_RUN_NOW: &str = run_now_sql!(ids!(sqlite));
const PG_RUN_NOW: &str = run_now_sql!(ids!(postgres));
const SQLITE_FAIL: &str = fail_sql!(ids!(sqlite));
const PG_FAIL: &str = fail_sql!(ids!(postgres));
const SQLITE_PURGE: &str = purge_sql!(ids!(sqlite));
const PG_PURGE: &str = purge_sql!(ids!(postgres));

impl ExternalSql {
    fn ids(item_ids: &[i64]) -> SqlValue {
        SqlValue::Text(serde_json::to_string(item_ids).expect("ids encode"))
    }

    fn pick(&self, sqlite: &'static str, postgres: &'static str) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => sqlite,
            Dialect::Postgres => postgres,
        }
    }

    fn held(&self) -> SqlValue {
        match self.dialect {
            Dialect::Sqlite => SqlValue::Int(super::held_run_at().timestamp_micros()),
            Dialect::Postgres => SqlValue::Time(super::held_run_at()),
        }
    }

    fn now_value(&self) -> SqlValue {
        let now = self.config.clock.now();
        match self.dialect {
            Dialect::Sqlite => SqlValue::Int(now.timestamp_micros()),
            Dialect::Postgres => SqlValue::Time(now),
        }
    }

    /// Requeues the chosen items (see the module documentation); returns the ids requeued.
    pub fn requeue_items(&self, item_ids: &[i64]) -> Statement {
        let now = self.now_value();
        Statement {
            sql: self.pick(SQLITE_REQUEUE, PG_REQUEUE),
            params: vec![
                now.clone(),
                now.clone(),
                Self::ids(item_ids),
                self.held(),
                now,
                Self::ids(item_ids),
            ],
        }
    }

    /// Makes the chosen pending items due now; returns the ids changed.
    pub fn run_items_now(&self, item_ids: &[i64]) -> Statement {
        let now = self.now_value();
        Statement {
            sql: self.pick(SQLITE_RUN_NOW, PG_RUN_NOW),
            params: vec![
                now.clone(),
                now.clone(),
                Self::ids(item_ids),
                now,
                self.held(),
            ],
        }
    }

    /// Dead-letters the chosen live items with `error`; returns the ids failed.
    pub fn fail_items(&self, item_ids: &[i64], error: &str) -> Statement {
        Statement {
            sql: self.pick(SQLITE_FAIL, PG_FAIL),
            params: vec![
                SqlValue::Text(error.to_string()),
                self.now_value(),
                Self::ids(item_ids),
                self.held(),
            ],
        }
    }

    /// Deletes the chosen terminal items; returns the ids deleted.
    pub fn purge_items(&self, item_ids: &[i64]) -> Statement {
        Statement {
            sql: self.pick(SQLITE_PURGE, PG_PURGE),
            params: vec![Self::ids(item_ids)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::OutboxConfig;

    #[test]
    fn placeholders_match_parameters() {
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            let sql = ExternalSql::new(dialect, OutboxConfig::default()).unwrap();
            for s in [
                sql.requeue_items(&[1, 2]),
                sql.run_items_now(&[1]),
                sql.fail_items(&[1], "stopped by an operator"),
                sql.purge_items(&[3]),
            ] {
                assert_eq!(s.sql.matches("%s").count(), s.params.len(), "{}", s.sql);
                assert!(s.sql.ends_with("RETURNING id"), "{}", s.sql);
            }
        }
    }

    #[test]
    fn ids_travel_as_one_json_array() {
        let sql = ExternalSql::new(Dialect::Sqlite, OutboxConfig::default()).unwrap();
        assert_eq!(
            sql.purge_items(&[4, 5]).params,
            vec![SqlValue::Text("[4,5]".into())]
        );
    }
}
