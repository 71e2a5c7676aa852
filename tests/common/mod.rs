//! Fixtures shared by the conformance suites: one fresh database per test, on SQLite always and
//! on PostgreSQL when `HEADRACE_TEST_PG_URL` is set (always under `CI=true`).
#![allow(dead_code)]

use _core::clock::ManualClock;
use chrono::{DateTime, TimeZone, Utc};
use std::sync::Arc;

/// Where PostgreSQL tests run, or `None` to skip them (never under CI).
pub fn pg_admin_url() -> Option<String> {
    match std::env::var("HEADRACE_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            Some("postgres://postgres@127.0.0.1:5432/test".to_string())
        }
        _ => None,
    }
}

/// A fixed starting instant for manual clocks.
pub fn epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).unwrap()
}

/// Which database a fixture uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// In-process storage (`memory://`), for stores that offer it.
    Memory,
    Sqlite,
    Postgres,
}

/// A fresh, empty database: a temporary SQLite file or a PostgreSQL schema of its own.
pub struct Database {
    pub engine: Engine,
    pub url: String,
    pub clock: ManualClock,
    _dir: Option<tempfile::TempDir>,
}

impl Database {
    /// A fresh database on `engine`, or `None` when PostgreSQL tests are not configured.
    pub async fn fresh(engine: Engine) -> Option<Database> {
        let clock = ManualClock::new(epoch());
        match engine {
            Engine::Memory => Some(Database {
                engine,
                url: "memory://".into(),
                clock,
                _dir: None,
            }),
            Engine::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("test.db").display());
                Some(Database {
                    engine,
                    url,
                    clock,
                    _dir: Some(dir),
                })
            }
            Engine::Postgres => {
                let admin = pg_admin_url()?;
                let schema = format!("headrace_test_{}", unique_suffix());
                let pool = sqlx::PgPool::connect(&admin).await.unwrap_or_else(|e| {
                    panic!("PostgreSQL test server unreachable at {admin}: {e}")
                });
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                    .execute(&pool)
                    .await
                    .unwrap();
                pool.close().await;
                let sep = if admin.contains('?') { '&' } else { '?' };
                let url = format!("{admin}{sep}options=-c%20search_path%3D{schema}");
                Some(Database {
                    engine,
                    url,
                    clock,
                    _dir: None,
                })
            }
        }
    }

    /// The manual clock as a shared clock.
    pub fn shared_clock(&self) -> _core::clock::SharedClock {
        Arc::new(self.clock.clone())
    }
}

fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Declares each listed `async fn case(engine: Engine)` as a test on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case($crate::common::Engine::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case($crate::common::Engine::Postgres).await
                }
            )*
        }
    };
}
