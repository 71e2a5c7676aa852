//! Applies the schema in `migrations/{sqlite,postgres}/`, the one schema source shared by the
//! core, the CLI and Django. Safe when several processes migrate at once: PostgreSQL takes a
//! transaction-scoped advisory lock, SQLite a `BEGIN IMMEDIATE` write lock.

use crate::db::SqliteDb;
use crate::error::{Error, Result};
use sqlx::PgPool;

/// One schema step: a stable version name and its SQL.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: &'static str,
    pub sql: &'static str,
}

macro_rules! migration {
    ($dialect:literal, $name:literal) => {
        Migration {
            version: $name,
            sql: include_str!(concat!("../../migrations/", $dialect, "/", $name, ".sql")),
        }
    };
}

/// SQLite schema steps, in order.
pub const SQLITE: &[Migration] = &[
    migration!("sqlite", "0001_outbox"),
    migration!("sqlite", "0002_state"),
    migration!("sqlite", "0007_pynenc"),
    migration!("sqlite", "0011_outbox_dedupe_lookup"),
];

/// PostgreSQL schema steps, in order.
pub const POSTGRES: &[Migration] = &[
    migration!("postgres", "0001_outbox"),
    migration!("postgres", "0002_state"),
    migration!("postgres", "0006_claim"),
    migration!("postgres", "0006_relaxed_commit"),
    migration!("postgres", "0007_pynenc"),
    migration!("postgres", "0010_outbox_notify"),
    migration!("postgres", "0011_outbox_dedupe_lookup"),
    migration!("postgres", "0012_outbox_ack_claim"),
];

const LEDGER: &str = "CREATE TABLE IF NOT EXISTS headrace_schema_migrations (
    version TEXT PRIMARY KEY,
    applied_at TEXT NOT NULL
)";

/// Key of the PostgreSQL advisory lock that serialises concurrent migrations.
const PG_MIGRATION_LOCK: i64 = 0x6865_6164_7261_6365; // "headrace"

/// Applies every SQLite step not yet recorded; returns the versions applied now.
pub async fn migrate_sqlite(db: &SqliteDb) -> Result<Vec<String>> {
    db.call(|conn| {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(LEDGER)?;
        let mut applied = Vec::new();
        for step in SQLITE {
            let done: bool = tx.query_row(
                "SELECT EXISTS(SELECT 1 FROM headrace_schema_migrations WHERE version = ?1)",
                [step.version],
                |row| row.get(0),
            )?;
            if !done {
                tx.execute_batch(step.sql).map_err(|e| migration_error(step.version, e))?;
                tx.execute(
                    "INSERT INTO headrace_schema_migrations (version, applied_at) VALUES (?1, datetime('now'))",
                    [step.version],
                )?;
                applied.push(step.version.to_string());
            }
        }
        tx.commit()?;
        Ok(applied)
    })
    .await
}

/// Applies every PostgreSQL step not yet recorded; returns the versions applied now.
pub async fn migrate_postgres(pool: &PgPool) -> Result<Vec<String>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(PG_MIGRATION_LOCK)
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(LEDGER).execute(&mut *tx).await?;
    let mut applied = Vec::new();
    for step in POSTGRES {
        let done: bool = sqlx::query_scalar(
            "SELECT EXISTS(SELECT 1 FROM headrace_schema_migrations WHERE version = $1)",
        )
        .bind(step.version)
        .fetch_one(&mut *tx)
        .await?;
        if !done {
            sqlx::raw_sql(step.sql)
                .execute(&mut *tx)
                .await
                .map_err(|e| migration_error(step.version, e))?;
            sqlx::query(
                "INSERT INTO headrace_schema_migrations (version, applied_at) VALUES ($1, now()::text)",
            )
            .bind(step.version)
            .execute(&mut *tx)
            .await?;
            applied.push(step.version.to_string());
        }
    }
    tx.commit().await?;
    Ok(applied)
}

/// The schema steps and ledger statements for a connection the core does not own (Django's
/// `migrate`), so both sides record steps in one ledger and never apply one twice.
#[derive(Debug, Clone)]
pub struct ExternalPlan {
    /// Creates the ledger table if needed.
    pub ledger: &'static str,
    /// Serialises concurrent migrators (PostgreSQL; SQLite's write lock does it there).
    pub lock: Option<String>,
    /// Returns the applied versions, one per row.
    pub applied: &'static str,
    /// Records one applied version (one `%s` placeholder).
    pub record: &'static str,
    pub steps: &'static [Migration],
}

/// The plan for PostgreSQL (`postgres`) or SQLite.
pub fn external_plan(postgres: bool) -> ExternalPlan {
    ExternalPlan {
        ledger: LEDGER,
        lock: postgres.then(|| format!("SELECT pg_advisory_xact_lock({PG_MIGRATION_LOCK})")),
        applied: "SELECT version FROM headrace_schema_migrations",
        record: if postgres {
            "INSERT INTO headrace_schema_migrations (version, applied_at) VALUES (%s, now()::text)"
        } else {
            "INSERT INTO headrace_schema_migrations (version, applied_at) VALUES (%s, datetime('now'))"
        },
        steps: if postgres { POSTGRES } else { SQLITE },
    }
}

fn migration_error(version: &str, err: impl Into<Error>) -> Error {
    match err.into() {
        Error::Store(msg) => Error::Store(format!("migration {version} failed: {msg}")),
        other => other,
    }
}
