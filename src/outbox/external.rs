//! The outbox's statements for a connection the core does not own (Django's, psycopg's,
//! another language's driver), so an enqueue commits or rolls back with the caller's
//! transaction. The core validates, encodes and renders each statement with its parameters; the
//! caller only executes it. Placeholders are `%s` (DB-API "format" style), which Django's cursors
//! take on every backend and psycopg takes natively. The semantics match the stores'
//! (`tests/external_sql.rs` runs both side by side on one database).

use super::retry::retry_at_after;
use super::{ClaimFilter, FailureDecision, NewItem, OutboxConfig, OutboxStatus, check_limit};
use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use std::str::FromStr;

/// The SQL dialect of the connection that will run the statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl FromStr for Dialect {
    type Err = Error;

    /// Accepts Django's vendor names (`sqlite`, `postgresql`) and `postgres`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "sqlite" | "sqlite3" => Ok(Dialect::Sqlite),
            "postgresql" | "postgres" => Ok(Dialect::Postgres),
            other => Err(Error::config(format!(
                "unsupported database {other:?} for the outbox: use sqlite or postgresql"
            ))),
        }
    }
}

/// One parameter value. Times are microseconds since the epoch on SQLite (the stored format)
/// and timestamps on PostgreSQL.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Int(i64),
    Text(String),
    Time(DateTime<Utc>),
    /// Arrays, for PostgreSQL's `unnest` of a batch.
    TextArray(Vec<Option<String>>),
    IntArray(Vec<i64>),
    TimeArray(Vec<DateTime<Utc>>),
}

impl From<Option<String>> for SqlValue {
    fn from(value: Option<String>) -> Self {
        value.map_or(SqlValue::Null, SqlValue::Text)
    }
}

/// A statement and its parameters, in placeholder order.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sql: &'static str,
    pub params: Vec<SqlValue>,
}

/// How to enqueue one item: run `insert`; when it returns no row (the dedupe key is taken by a
/// live item), `existing` returns that item's id. Neither statement can fail on a duplicate, so
/// the caller's PostgreSQL transaction is never aborted by one.
#[derive(Debug, Clone, PartialEq)]
pub struct EnqueueSql {
    pub insert: Statement,
    pub existing: Option<Statement>,
}

/// Columns every item query returns, in [`crate::outbox::OutboxItem`] order (payload as text).
pub const ITEM_COLUMNS: [&str; 15] = [
    "id",
    "topic",
    "payload",
    "status",
    "priority",
    "attempts",
    "max_attempts",
    "run_at",
    "lease_owner",
    "lease_expires_at",
    "last_error",
    "dedupe_key",
    "trace_id",
    "created_at",
    "updated_at",
];

macro_rules! insert_columns {
    () => {
        "INSERT INTO headrace_outbox (topic, payload, priority, max_attempts, run_at, dedupe_key, \
         trace_id, created_at, updated_at) "
    };
}

macro_rules! on_dedupe_conflict {
    () => {
        " ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL \
          AND status IN ('pending', 'processing') DO NOTHING"
    };
}

const SQLITE_INSERT: &str = concat!(
    insert_columns!(),
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id"
);
const SQLITE_INSERT_DEDUPE: &str = concat!(
    insert_columns!(),
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
    on_dedupe_conflict!(),
    " RETURNING id"
);
const PG_INSERT: &str = concat!(
    insert_columns!(),
    "VALUES (%s, %s::jsonb, %s, %s, %s, %s, %s, %s, %s) RETURNING id"
);
/// One round trip in the common case: the new id, or the live duplicate's id when it was
/// committed before this statement began.
const PG_INSERT_DEDUPE: &str = concat!(
    "WITH inserted AS (",
    insert_columns!(),
    "VALUES (%s, %s::jsonb, %s, %s, %s, %s, %s, %s, %s)",
    on_dedupe_conflict!(),
    " RETURNING id) SELECT id FROM inserted UNION ALL SELECT id FROM headrace_outbox \
     WHERE dedupe_key = %s AND status IN ('pending', 'processing') \
     AND NOT EXISTS (SELECT 1 FROM inserted) LIMIT 1"
);
const EXISTING: &str = "SELECT id FROM headrace_outbox WHERE dedupe_key = %s \
     AND status IN ('pending', 'processing')";

const SQLITE_CLAIM: &str = "UPDATE headrace_outbox SET status = 'processing', \
     attempts = attempts + 1, lease_owner = %s, lease_expires_at = %s, updated_at = %s \
     WHERE id IN (SELECT id FROM headrace_outbox WHERE status = 'pending' AND run_at <= %s \
       AND (%s IS NULL OR topic IN (SELECT value FROM json_each(%s))) \
       AND topic NOT IN (SELECT value FROM json_each(%s)) \
       ORDER BY priority DESC, run_at, id LIMIT %s) \
     RETURNING id, topic, payload, status, priority, attempts, max_attempts, run_at, lease_owner, \
       lease_expires_at, last_error, dedupe_key, trace_id, created_at, updated_at";
/// The stores' own claim function (migration `0006_claim`), so the plan is the same.
const PG_CLAIM: &str = "SELECT o.id, o.topic, o.payload::text, o.status, o.priority, o.attempts, \
     o.max_attempts, o.run_at, o.lease_owner, o.lease_expires_at, o.last_error, o.dedupe_key, \
     o.trace_id, o.created_at, o.updated_at \
     FROM headrace_outbox_claim(%s::text, %s::integer, %s::timestamptz, %s::timestamptz, %s::timestamptz, \
       CASE WHEN %s::jsonb IS NULL THEN NULL \
         ELSE ARRAY(SELECT jsonb_array_elements_text(%s::jsonb)) END, \
       ARRAY(SELECT jsonb_array_elements_text(%s::jsonb))) o";

const SQLITE_ACK: &str = "UPDATE headrace_outbox SET status = 'completed', lease_owner = NULL, \
     lease_expires_at = NULL, updated_at = %s \
     WHERE id IN (SELECT value FROM json_each(%s)) AND status = 'processing' \
     AND lease_owner = %s AND lease_expires_at > %s RETURNING id";
const PG_ACK: &str = "UPDATE headrace_outbox SET status = 'completed', lease_owner = NULL, \
     lease_expires_at = NULL, updated_at = %s \
     WHERE id IN (SELECT jsonb_array_elements_text(%s::jsonb)::bigint) AND status = 'processing' \
     AND lease_owner = %s AND lease_expires_at > %s RETURNING id";

/// Settles one failed attempt: back to pending at a later time, or the dead letter.
const SETTLE_FAILURE: &str = "UPDATE headrace_outbox SET status = %s, \
     run_at = CASE WHEN %s = 'pending' THEN %s ELSE run_at END, last_error = %s, \
     lease_owner = NULL, lease_expires_at = NULL, updated_at = %s \
     WHERE id = %s AND status = 'processing' AND lease_owner = %s RETURNING id";

/// Gives unstarted items back without spending an attempt.
const SQLITE_RELEASE: &str = "UPDATE headrace_outbox SET status = 'pending', \
     attempts = MAX(attempts - 1, 0), lease_owner = NULL, lease_expires_at = NULL, updated_at = %s \
     WHERE id IN (SELECT value FROM json_each(%s)) AND status = 'processing' AND lease_owner = %s";
const PG_RELEASE: &str = "UPDATE headrace_outbox SET status = 'pending', \
     attempts = GREATEST(attempts - 1, 0), lease_owner = NULL, lease_expires_at = NULL, \
     updated_at = %s \
     WHERE id IN (SELECT jsonb_array_elements_text(%s::jsonb)::bigint) AND status = 'processing' \
     AND lease_owner = %s";

const SQLITE_GET: &str = "SELECT id, topic, payload, status, priority, attempts, max_attempts, \
     run_at, lease_owner, lease_expires_at, last_error, dedupe_key, trace_id, created_at, \
     updated_at FROM headrace_outbox WHERE id = %s";
const PG_GET: &str = "SELECT id, topic, payload::text, status, priority, attempts, max_attempts, \
     run_at, lease_owner, lease_expires_at, last_error, dedupe_key, trace_id, created_at, \
     updated_at FROM headrace_outbox WHERE id = %s";

const SQLITE_LIST: &str = "SELECT id, topic, payload, status, priority, attempts, max_attempts, \
     run_at, lease_owner, lease_expires_at, last_error, dedupe_key, trace_id, created_at, \
     updated_at FROM headrace_outbox WHERE (CAST(%s AS TEXT) IS NULL OR topic = %s) \
     AND (CAST(%s AS TEXT) IS NULL OR status = %s) ORDER BY id";
const PG_LIST: &str = "SELECT id, topic, payload::text, status, priority, attempts, max_attempts, \
     run_at, lease_owner, lease_expires_at, last_error, dedupe_key, trace_id, created_at, \
     updated_at FROM headrace_outbox WHERE (CAST(%s AS TEXT) IS NULL OR topic = %s) \
     AND (CAST(%s AS TEXT) IS NULL OR status = %s) ORDER BY id";

/// Renders outbox statements for one dialect under one outbox configuration.
#[derive(Debug, Clone)]
pub struct ExternalSql {
    pub dialect: Dialect,
    pub config: OutboxConfig,
}

/// What one failed attempt becomes.
#[derive(Debug, Clone, PartialEq)]
pub struct FailureSettlement {
    pub status: OutboxStatus,
    pub statement: Statement,
}

impl ExternalSql {
    pub fn new(dialect: Dialect, config: OutboxConfig) -> Result<Self> {
        config.validate()?;
        Ok(ExternalSql { dialect, config })
    }

    fn time(&self, t: DateTime<Utc>) -> SqlValue {
        match self.dialect {
            Dialect::Sqlite => SqlValue::Int(t.timestamp_micros()),
            Dialect::Postgres => SqlValue::Time(t),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.config.clock.now()
    }

    /// Validates `items` (topic, size limit, delay, attempts) and renders one enqueue each.
    /// Nothing is rendered when any item is invalid.
    pub fn enqueue(&self, items: &[NewItem]) -> Result<Vec<EnqueueSql>> {
        let now = self.now();
        items
            .iter()
            .map(|item| {
                let (run_at, max_attempts) = item.resolve(&self.config, now)?;
                let mut params = vec![
                    SqlValue::Text(item.topic.clone()),
                    SqlValue::Text(item.payload.clone()),
                    SqlValue::Int(item.priority.into()),
                    SqlValue::Int(max_attempts.into()),
                    self.time(run_at),
                    item.dedupe_key.clone().into(),
                    item.trace_id.clone().into(),
                    self.time(now),
                    self.time(now),
                ];
                let Some(key) = item.dedupe_key.clone() else {
                    let sql = match self.dialect {
                        Dialect::Sqlite => SQLITE_INSERT,
                        Dialect::Postgres => PG_INSERT,
                    };
                    return Ok(EnqueueSql {
                        insert: Statement { sql, params },
                        existing: None,
                    });
                };
                let sql = match self.dialect {
                    Dialect::Sqlite => SQLITE_INSERT_DEDUPE,
                    Dialect::Postgres => {
                        params.push(SqlValue::Text(key.clone()));
                        PG_INSERT_DEDUPE
                    }
                };
                Ok(EnqueueSql {
                    insert: Statement { sql, params },
                    existing: Some(Statement {
                        sql: EXISTING,
                        params: vec![SqlValue::Text(key)],
                    }),
                })
            })
            .collect()
    }

    /// Claims up to `limit` due items for `worker_id` under the configured lease; the rows come
    /// back in [`ITEM_COLUMNS`] order.
    pub fn claim(&self, worker_id: &str, limit: i64, filter: &ClaimFilter) -> Result<Statement> {
        let limit = check_limit(limit)? as i64;
        let now = self.now();
        let topics: SqlValue = filter
            .topics
            .as_ref()
            .map(|t| serde_json::to_string(t).expect("topics encode"))
            .into();
        let excluded =
            SqlValue::Text(serde_json::to_string(&filter.exclude_topics).expect("topics encode"));
        let due_by = self.time(filter.due_by.unwrap_or(now));
        let worker = SqlValue::Text(worker_id.to_string());
        let expires = self.time(now + self.config.lease);
        Ok(match self.dialect {
            Dialect::Sqlite => Statement {
                sql: SQLITE_CLAIM,
                params: vec![
                    worker,
                    expires,
                    self.time(now),
                    due_by,
                    topics.clone(),
                    topics,
                    excluded,
                    SqlValue::Int(limit),
                ],
            },
            Dialect::Postgres => Statement {
                sql: PG_CLAIM,
                params: vec![
                    worker,
                    SqlValue::Int(limit),
                    self.time(now),
                    expires,
                    due_by,
                    topics.clone(),
                    topics,
                    excluded,
                ],
            },
        })
    }

    /// Completes the items still leased to `worker_id`; returns the ids it acknowledged.
    pub fn ack(&self, item_ids: &[i64], worker_id: &str) -> Statement {
        let now = self.time(self.now());
        Statement {
            sql: match self.dialect {
                Dialect::Sqlite => SQLITE_ACK,
                Dialect::Postgres => PG_ACK,
            },
            params: vec![
                now.clone(),
                SqlValue::Text(serde_json::to_string(item_ids).expect("ids encode")),
                SqlValue::Text(worker_id.to_string()),
                now,
            ],
        }
    }

    /// Settles a failed attempt the way the stores' `mark_retry`/`mark_failed` do: a
    /// non-retryable error, or the last attempt, dead-letters; otherwise the item waits
    /// `retry_after` (from the store clock's now) or the retry policy's backoff. Returns no row
    /// when the lease was lost.
    #[allow(clippy::too_many_arguments)] // the item's lease fields and the failure's
    pub fn settle_failure(
        &self,
        item_id: i64,
        worker_id: &str,
        attempts: i32,
        max_attempts: i32,
        error: &str,
        retryable: bool,
        retry_after: Option<std::time::Duration>,
    ) -> FailureSettlement {
        let now = self.now();
        let retry_at = retry_after.and_then(|after| retry_at_after(now, after));
        let (status, run_at) =
            match self
                .config
                .retry
                .decide(attempts, max_attempts, retryable, retry_at, now)
            {
                FailureDecision::Retry { at } => (OutboxStatus::Pending, at),
                FailureDecision::DeadLetter => (OutboxStatus::Failed, now),
            };
        FailureSettlement {
            status,
            statement: Statement {
                sql: SETTLE_FAILURE,
                params: vec![
                    SqlValue::Text(status.as_str().to_string()),
                    SqlValue::Text(status.as_str().to_string()),
                    self.time(run_at),
                    SqlValue::Text(error.to_string()),
                    self.time(now),
                    SqlValue::Int(item_id),
                    SqlValue::Text(worker_id.to_string()),
                ],
            },
        }
    }

    /// Gives items back to pending without spending the attempt their claim counted.
    pub fn release(&self, item_ids: &[i64], worker_id: &str) -> Statement {
        Statement {
            sql: match self.dialect {
                Dialect::Sqlite => SQLITE_RELEASE,
                Dialect::Postgres => PG_RELEASE,
            },
            params: vec![
                self.time(self.now()),
                SqlValue::Text(serde_json::to_string(item_ids).expect("ids encode")),
                SqlValue::Text(worker_id.to_string()),
            ],
        }
    }

    /// Items of `topic` and `status` (each `None`: any), oldest first, in [`ITEM_COLUMNS`] order.
    pub fn list(&self, topic: Option<&str>, status: Option<OutboxStatus>) -> Statement {
        let topic: SqlValue = topic.map(str::to_string).into();
        let status: SqlValue = status.map(|s| s.as_str().to_string()).into();
        Statement {
            sql: match self.dialect {
                Dialect::Sqlite => SQLITE_LIST,
                Dialect::Postgres => PG_LIST,
            },
            params: vec![topic.clone(), topic, status.clone(), status],
        }
    }

    /// Reads one item, in [`ITEM_COLUMNS`] order.
    pub fn get(&self, item_id: i64) -> Statement {
        Statement {
            sql: match self.dialect {
                Dialect::Sqlite => SQLITE_GET,
                Dialect::Postgres => PG_GET,
            },
            params: vec![SqlValue::Int(item_id)],
        }
    }
}

/// Splits a schema script into single statements for drivers that run one at a time (Django's
/// SQLite cursor). Semicolons inside quotes, comments, dollar quotes and `BEGIN … END` trigger
/// bodies do not split.
pub fn split_statements(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = script.chars().peekable();
    let mut depth = 0usize; // BEGIN/CASE … END nesting (SQLite trigger bodies)
    let mut word = String::new();
    while let Some(c) = chars.next() {
        let word_char = c.is_alphanumeric() || c == '_';
        if !word_char {
            flush_word(&mut word, &mut depth);
        }
        match c {
            '\'' | '"' => {
                current.push(c);
                for d in chars.by_ref() {
                    current.push(d);
                    if d == c {
                        break;
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                for d in chars.by_ref() {
                    if d == '\n' {
                        current.push('\n');
                        break;
                    }
                }
            }
            '$' => {
                // $tag$ … $tag$ (PostgreSQL function bodies)
                let mut tag = String::from("$");
                while let Some(&d) = chars.peek() {
                    chars.next();
                    tag.push(d);
                    if d == '$' || !(d.is_alphanumeric() || d == '_') {
                        break;
                    }
                }
                current.push_str(&tag);
                if tag.len() >= 2 && tag.ends_with('$') {
                    let mut body = String::new();
                    for d in chars.by_ref() {
                        body.push(d);
                        if body.ends_with(&tag) {
                            break;
                        }
                    }
                    current.push_str(&body);
                }
            }
            ';' if depth == 0 => {
                let stmt = current.trim();
                if !stmt.is_empty() {
                    out.push(stmt.to_string());
                }
                current.clear();
            }
            _ => {
                current.push(c);
                if word_char {
                    word.push(c);
                }
            }
        }
    }
    flush_word(&mut word, &mut depth);
    let stmt = current.trim();
    if !stmt.is_empty() {
        out.push(stmt.to_string());
    }
    out
}

fn flush_word(word: &mut String, depth: &mut usize) {
    if word.eq_ignore_ascii_case("BEGIN") || word.eq_ignore_ascii_case("CASE") {
        *depth += 1;
    } else if word.eq_ignore_ascii_case("END") && *depth > 0 {
        *depth -= 1;
    }
    word.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialects_parse_from_django_vendor_names() {
        assert_eq!("sqlite".parse::<Dialect>().unwrap(), Dialect::Sqlite);
        assert_eq!("postgresql".parse::<Dialect>().unwrap(), Dialect::Postgres);
        let err = "oracle".parse::<Dialect>().unwrap_err().to_string();
        assert!(err.contains("oracle"), "{err}");
    }

    #[test]
    fn placeholders_match_parameters() {
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            let sql = ExternalSql::new(dialect, OutboxConfig::default()).unwrap();
            let mut keyed = NewItem::new("t", "{}");
            keyed.dedupe_key = Some("k".into());
            for e in sql.enqueue(&[NewItem::new("t", "{}"), keyed]).unwrap() {
                for s in std::iter::once(&e.insert).chain(e.existing.as_ref()) {
                    assert_eq!(s.sql.matches("%s").count(), s.params.len(), "{}", s.sql);
                }
            }
            let statements = [
                sql.claim("w", 10, &ClaimFilter::default()).unwrap(),
                sql.ack(&[1, 2], "w"),
                sql.release(&[1], "w"),
                sql.get(1),
                sql.list(Some("t"), None),
                sql.settle_failure(1, "w", 1, 3, "boom", true, None)
                    .statement,
            ];
            for s in statements {
                assert_eq!(s.sql.matches("%s").count(), s.params.len(), "{}", s.sql);
            }
        }
    }

    #[test]
    fn invalid_items_render_nothing() {
        let config = OutboxConfig {
            max_payload_bytes: 4,
            ..OutboxConfig::default()
        };
        let sql = ExternalSql::new(Dialect::Sqlite, config).unwrap();
        let err = sql
            .enqueue(&[NewItem::new("t", "{}"), NewItem::new("t", "[1,2,3]")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_payload_bytes"), "{err}");
    }

    #[test]
    fn failures_retry_until_attempts_run_out_then_dead_letter() {
        let sql = ExternalSql::new(Dialect::Postgres, OutboxConfig::default()).unwrap();
        let retry = sql.settle_failure(1, "w", 1, 2, "e", true, None);
        assert_eq!(retry.status, OutboxStatus::Pending);
        assert_eq!(
            sql.settle_failure(1, "w", 2, 2, "e", true, None).status,
            OutboxStatus::Failed
        );
        assert_eq!(
            sql.settle_failure(1, "w", 1, 5, "e", false, None).status,
            OutboxStatus::Failed
        );
    }

    #[test]
    fn scripts_split_outside_quotes_bodies_and_comments() {
        let script = "-- a; comment\nCREATE TABLE a (x TEXT DEFAULT ';');\n\
            CREATE TRIGGER t AFTER INSERT ON a BEGIN SELECT CASE WHEN 1 THEN 2 END; SELECT 2; END;\n\
            CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;\nSELECT 3";
        let parts = split_statements(script);
        assert_eq!(parts.len(), 4, "{parts:#?}");
        assert!(parts[1].ends_with("END"), "{}", parts[1]);
        assert!(parts[2].contains("$$ SELECT 1; $$"), "{}", parts[2]);
    }
}
