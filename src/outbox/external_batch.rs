//! A whole batch of new items in one statement on a connection the core does not own
//! ([`super::external`]). On PostgreSQL it is the store's own bulk statement
//! ([`super::postgres::ENQUEUE_MANY`], parallel arrays through `unnest`) rendered in `%s` style;
//! on SQLite one `INSERT … SELECT` over a JSON array. [`EnqueueBatchSql::resolve`] maps the rows
//! it returns to ids in input order; an item whose dedupe key a live item holds (or that lost a
//! race with a concurrent insert of the same key) answers `None`, and [`EnqueueBatchSql::fallback`]
//! renders the single-item statements that settle it.

use super::NewItem;
use super::external::{Dialect, EnqueueSql, ExternalSql, SqlValue, Statement};
use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::OnceLock;

/// Inserts every element of a JSON array `[[topic, payload, priority, max_attempts, run_at,
/// dedupe_key, trace_id], …]` in array order (so ids ascend in input order), skipping rows whose
/// dedupe key is live; returns the inserted rows' ids and keys.
const SQLITE_ENQUEUE_MANY: &str = "INSERT INTO headrace_outbox (topic, payload, priority, \
     max_attempts, run_at, dedupe_key, trace_id, created_at, updated_at) \
     SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), \
       json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]'), \
       json_extract(value, '$[6]'), %s, %s \
     FROM json_each(%s) WHERE true ORDER BY key \
     ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL \
       AND status IN ('pending', 'processing') DO NOTHING \
     RETURNING id, dedupe_key";

/// `sql` with each `$n` replaced by `%s`, and the 1-based parameter number of each placeholder.
fn format_style(sql: &str) -> (String, Vec<usize>) {
    let mut out = String::with_capacity(sql.len());
    let mut order = Vec::new();
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            let mut n = 0usize;
            while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                n = n * 10 + d as usize;
                chars.next();
            }
            out.push_str("%s");
            order.push(n);
        } else {
            out.push(c);
        }
    }
    (out, order)
}

/// [`super::postgres::ENQUEUE_MANY`] in `%s` style, rendered once.
fn pg_enqueue_many() -> &'static (String, Vec<usize>) {
    static RENDERED: OnceLock<(String, Vec<usize>)> = OnceLock::new();
    RENDERED.get_or_init(|| format_style(super::postgres::ENQUEUE_MANY))
}

/// One statement enqueuing a batch, and how to read its rows.
#[derive(Debug, Clone)]
pub struct EnqueueBatchSql {
    pub insert: Statement,
    dialect: Dialect,
    items: Vec<NewItem>,
}

impl ExternalSql {
    /// Validates `items` (topic, size limit, delay, attempts) and renders one statement for all
    /// of them. Nothing is rendered when any item is invalid.
    pub fn enqueue_batch(&self, items: Vec<NewItem>) -> Result<EnqueueBatchSql> {
        let now = self.config.clock.now();
        let resolved = items
            .iter()
            .map(|item| item.resolve(&self.config, now))
            .collect::<Result<Vec<_>>>()?;
        let insert = match self.dialect {
            Dialect::Sqlite => sqlite_statement(&items, &resolved, now),
            Dialect::Postgres => pg_statement(&items, &resolved, now),
        };
        Ok(EnqueueBatchSql {
            insert,
            dialect: self.dialect,
            items,
        })
    }

    /// The single-item statements for item `index` of `batch` (see [`EnqueueBatchSql`]).
    pub fn enqueue_fallback(&self, batch: &EnqueueBatchSql, index: usize) -> Result<EnqueueSql> {
        let item = batch.items.get(index).ok_or_else(|| {
            Error::config(format!(
                "item {index} is out of range: the batch has {} items",
                batch.items.len()
            ))
        })?;
        Ok(self.enqueue(std::slice::from_ref(item))?.remove(0))
    }
}

fn sqlite_statement(
    items: &[NewItem],
    resolved: &[(DateTime<Utc>, i32)],
    now: DateTime<Utc>,
) -> Statement {
    let rows: Vec<serde_json::Value> = items
        .iter()
        .zip(resolved)
        .map(|(item, (run_at, max_attempts))| {
            serde_json::json!([
                item.topic,
                item.payload,
                item.priority,
                max_attempts,
                run_at.timestamp_micros(),
                item.dedupe_key,
                item.trace_id,
            ])
        })
        .collect();
    let now = SqlValue::Int(now.timestamp_micros());
    Statement {
        sql: SQLITE_ENQUEUE_MANY,
        params: vec![
            now.clone(),
            now,
            SqlValue::Text(serde_json::Value::Array(rows).to_string()),
        ],
    }
}

fn pg_statement(
    items: &[NewItem],
    resolved: &[(DateTime<Utc>, i32)],
    now: DateTime<Utc>,
) -> Statement {
    let text = |f: fn(&NewItem) -> Option<String>| {
        SqlValue::TextArray(items.iter().map(f).collect::<Vec<_>>())
    };
    let columns = [
        text(|i| Some(i.topic.clone())),
        text(|i| Some(i.payload.clone())),
        SqlValue::IntArray(items.iter().map(|i| i.priority.into()).collect()),
        SqlValue::IntArray(resolved.iter().map(|(_, m)| (*m).into()).collect()),
        SqlValue::TimeArray(resolved.iter().map(|(t, _)| *t).collect()),
        text(|i| i.dedupe_key.clone()),
        text(|i| i.trace_id.clone()),
        SqlValue::Time(now),
    ];
    let (sql, order) = pg_enqueue_many();
    Statement {
        sql: sql.as_str(),
        params: order.iter().map(|n| columns[n - 1].clone()).collect(),
    }
}

impl EnqueueBatchSql {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Ids in input order from the insert's rows (`(id, dedupe_key)` each); `None` where the
    /// item's dedupe key was held by an item the statement could not see as its own.
    pub fn resolve(&self, rows: &[(Option<i64>, Option<String>)]) -> Result<Vec<Option<i64>>> {
        match self.dialect {
            Dialect::Postgres => {
                if rows.len() != self.items.len() {
                    return Err(Error::config(format!(
                        "the batch insert returned {} rows for {} items",
                        rows.len(),
                        self.items.len()
                    )));
                }
                Ok(rows.iter().map(|(id, _)| *id).collect())
            }
            Dialect::Sqlite => {
                // Rows were inserted in input order, so ascending ids follow it.
                let mut inserted: Vec<(i64, Option<&str>)> = rows
                    .iter()
                    .map(|(id, key)| {
                        id.map(|id| (id, key.as_deref()))
                            .ok_or_else(|| Error::config("the batch insert returned a NULL id"))
                    })
                    .collect::<Result<_>>()?;
                inserted.sort_unstable_by_key(|(id, _)| *id);
                let mut by_key: HashMap<&str, i64> = HashMap::new();
                let mut unkeyed = Vec::new();
                for (id, key) in inserted {
                    match key {
                        Some(key) => {
                            by_key.entry(key).or_insert(id);
                        }
                        None => unkeyed.push(id),
                    }
                }
                let mut unkeyed = unkeyed.into_iter();
                self.items
                    .iter()
                    .map(|item| match &item.dedupe_key {
                        Some(key) => Ok(by_key.get(key.as_str()).copied()),
                        None => unkeyed.next().map(Some).ok_or_else(|| {
                            Error::config("the batch insert returned fewer rows than it inserted")
                        }),
                    })
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::OutboxConfig;

    #[test]
    fn pg_placeholders_follow_the_store_statement() {
        let (sql, order) = format_style("SELECT $1, $2, $10, $2");
        assert_eq!(sql, "SELECT %s, %s, %s, %s");
        assert_eq!(order, vec![1, 2, 10, 2]);
        let ext = ExternalSql::new(Dialect::Postgres, OutboxConfig::default()).unwrap();
        let batch = ext.enqueue_batch(vec![NewItem::new("t", "{}")]).unwrap();
        assert!(!batch.insert.sql.contains('$'), "{}", batch.insert.sql);
        assert_eq!(
            batch.insert.sql.matches("%s").count(),
            batch.insert.params.len()
        );
        assert!(
            !batch.insert.sql.contains("pg_notify"),
            "the trigger notifies"
        );
    }

    #[test]
    fn sqlite_rows_map_back_to_input_order() {
        let ext = ExternalSql::new(Dialect::Sqlite, OutboxConfig::default()).unwrap();
        let keyed = |key: &str| {
            let mut item = NewItem::new("t", "1");
            item.dedupe_key = Some(key.into());
            item
        };
        let items = vec![
            NewItem::new("t", "1"),
            keyed("k"),
            keyed("k"),
            keyed("live"),
            NewItem::new("t", "2"),
        ];
        let batch = ext.enqueue_batch(items).unwrap();
        assert_eq!(
            batch.insert.sql.matches("%s").count(),
            batch.insert.params.len()
        );
        // RETURNING order is arbitrary: the ids are what orders them.
        let rows = vec![
            (Some(9), None),
            (Some(3), Some("k".to_string())),
            (Some(2), None),
        ];
        assert_eq!(
            batch.resolve(&rows).unwrap(),
            vec![Some(2), Some(3), Some(3), None, Some(9)]
        );
        let fallback = ext.enqueue_fallback(&batch, 3).unwrap();
        assert!(fallback.existing.is_some());
        assert!(ext.enqueue_fallback(&batch, 5).is_err());
    }

    #[test]
    fn invalid_items_render_no_batch() {
        let config = OutboxConfig {
            max_payload_bytes: 4,
            ..OutboxConfig::default()
        };
        let ext = ExternalSql::new(Dialect::Postgres, config).unwrap();
        let err = ext
            .enqueue_batch(vec![NewItem::new("t", "{}"), NewItem::new("t", "[1,2,3]")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_payload_bytes"), "{err}");
    }
}
