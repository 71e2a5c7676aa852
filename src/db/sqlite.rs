//! SQLite through rusqlite, on a dedicated thread per database handle.
//!
//! Each [`SqliteDb`] owns one connection on its own OS thread; callers send it closures and
//! await the answer, so the tokio workers never block on SQLite. Several handles (threads or
//! processes) on one file coordinate through WAL, `BEGIN IMMEDIATE` and the busy timeout.

use crate::error::{Error, Result};
use rusqlite::{Connection, OpenFlags};
use std::sync::{Mutex, mpsc};
use std::time::Duration;
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Handle to a SQLite connection living on its own thread.
#[derive(Debug)]
pub struct SqliteDb {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    path: String,
}

impl SqliteDb {
    /// Opens (creating if needed) the database at `path` in WAL mode with `busy_timeout`.
    pub fn open(path: &str, busy_timeout: Duration) -> Result<Self> {
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (opened, open_result) = mpsc::channel::<Result<()>>();
        let owned_path = path.to_string();
        std::thread::Builder::new()
            .name("headrace-sqlite".into())
            .spawn(move || {
                let mut conn = match open_connection(&owned_path, busy_timeout) {
                    Ok(conn) => {
                        let _ = opened.send(Ok(()));
                        conn
                    }
                    Err(err) => {
                        let _ = opened.send(Err(err));
                        return;
                    }
                };
                while let Ok(job) = inbox.recv() {
                    job(&mut conn);
                }
            })
            .map_err(|e| Error::Store(format!("could not start the SQLite thread: {e}")))?;
        open_result
            .recv()
            .map_err(|_| Error::Store("the SQLite thread stopped while opening".into()))??;
        Ok(SqliteDb {
            jobs: Mutex::new(Some(jobs)),
            path: path.to_string(),
        })
    }

    /// The file path this handle was opened on.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Runs `work` on the connection's thread and returns its result.
    pub async fn call<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = reply.send(work(conn));
        });
        {
            let guard = self.jobs.lock().expect("sqlite handle poisoned");
            let Some(jobs) = guard.as_ref() else {
                return Err(self.closed_error());
            };
            jobs.send(job).map_err(|_| self.closed_error())?;
        }
        answer.await.map_err(|_| self.closed_error())?
    }

    /// Closes the handle: queued work still runs, later calls fail with a clear error.
    pub fn close(&self) {
        self.jobs.lock().expect("sqlite handle poisoned").take();
    }

    /// Whether [`SqliteDb::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.jobs.lock().expect("sqlite handle poisoned").is_none()
    }

    fn closed_error(&self) -> Error {
        Error::Store(format!(
            "the SQLite database {:?} is closed: connect again to use it",
            self.path
        ))
    }
}

/// Refuses, as a `Config` error (permanent, naming the path), a database path that is a
/// directory or whose folder does not exist; SQLite would report both as "unable to open".
fn check_path(path: &str) -> Result<()> {
    if path == ":memory:" || path.starts_with("file:") {
        return Ok(());
    }
    let file = std::path::Path::new(path);
    if file.is_dir() {
        return Err(Error::config(format!(
            "the SQLite database path {path:?} is a directory: name a file inside it"
        )));
    }
    if let Some(folder) = file.parent()
        && !folder.as_os_str().is_empty()
        && !folder.is_dir()
    {
        return Err(Error::config(format!(
            "the folder {:?} of the SQLite database {path:?} does not exist: create it first",
            folder
        )));
    }
    Ok(())
}

fn open_connection(path: &str, busy_timeout: Duration) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    check_path(path)?;
    // Busy or locked is transient (StoreUnavailable); anything else (not a database, no
    // permission) is permanent: retrying the same open would fail the same way.
    let conn = Connection::open_with_flags(path, flags).map_err(|e| {
        let cause = match Error::from(e) {
            Error::StoreUnavailable(m) if m.contains("locked") || m.contains("busy") => {
                return Error::StoreUnavailable(format!(
                    "could not open SQLite database {path:?}: {m}"
                ));
            }
            Error::StoreUnavailable(m) | Error::Store(m) => m,
            other => other.to_string(),
        };
        Error::Store(format!("could not open SQLite database {path:?}: {cause}"))
    })?;
    conn.busy_timeout(busy_timeout)?;
    if path != ":memory:" {
        // WAL lets readers run beside the one writer; NORMAL is durable across app crashes.
        conn.pragma_update(None, "journal_mode", "WAL")?;
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}
