//! Database access shared by every pillar: URL parsing, the SQLite connection thread
//! (rusqlite), the PostgreSQL pool (sqlx) and the migrations runner.

pub mod migrate;
pub mod nodelay;
pub mod params;
pub mod postgres;
pub mod shelf;
pub mod sqlite;
pub mod url;

pub use self::url::DatabaseUrl;
pub use postgres::connect_pg;
pub use sqlite::SqliteDb;
