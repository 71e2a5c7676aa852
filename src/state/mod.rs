//! State backend (pynenc's `BaseStateBackend` contract): invocations, their status history,
//! results, exceptions, workflow data, app infos and workflow runs.
//!
//! One [`StateStore`] trait with an in-memory, a SQLite and a PostgreSQL implementation (one
//! conformance suite, `tests/state_conformance.rs`, runs against all three), and a
//! [`WriteBehind`] layer that makes writes return at once and batches them into transactions
//! while its own reads see its pending writes.
//!
//! Values (arguments, results, workflow data, execution contexts) are JSON text in the core.

pub mod memory;
mod plan;
pub mod postgres;
pub mod pynenc;
pub mod sqlite;
mod store;
mod write_behind;

pub use plan::{Plan, StoredInvocation};
pub use store::{Rejected, StateStore, ValueKind, WriteOp};
pub use write_behind::{WriteBehind, WriteBehindConfig};

use crate::clock::{SharedClock, SystemClock};
use crate::db::DatabaseUrl;
use crate::error::{Error, Result};
use chrono::{DateTime, FixedOffset, SecondsFormat, Timelike, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// Lifecycle of an invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InvocationStatus {
    /// Known to the system, not yet queued.
    Registered,
    /// Queued, waiting for a runner.
    Pending,
    /// A runner is executing it.
    Running,
    /// Finished with a result (final).
    Success,
    /// Finished with an exception (final).
    Failed,
    /// Failed and will be run again.
    Retry,
    /// Stopped from outside (final).
    Killed,
}

impl InvocationStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [InvocationStatus; 7] = [
        InvocationStatus::Registered,
        InvocationStatus::Pending,
        InvocationStatus::Running,
        InvocationStatus::Success,
        InvocationStatus::Failed,
        InvocationStatus::Retry,
        InvocationStatus::Killed,
    ];

    /// The stored (and Python) name.
    pub fn as_str(self) -> &'static str {
        match self {
            InvocationStatus::Registered => "registered",
            InvocationStatus::Pending => "pending",
            InvocationStatus::Running => "running",
            InvocationStatus::Success => "success",
            InvocationStatus::Failed => "failed",
            InvocationStatus::Retry => "retry",
            InvocationStatus::Killed => "killed",
        }
    }

    /// The transition table: the statuses an invocation in `self` may move to.
    ///
    /// ```text
    /// registered -> pending | running | killed
    /// pending    -> registered | running | killed
    /// running    -> success | failed | retry | killed
    /// retry      -> pending | running | failed | killed
    /// success, failed, killed: final
    /// ```
    pub fn allowed_next(self) -> &'static [InvocationStatus] {
        use InvocationStatus::*;
        match self {
            Registered => &[Pending, Running, Killed],
            Pending => &[Registered, Running, Killed],
            Running => &[Success, Failed, Retry, Killed],
            Retry => &[Pending, Running, Failed, Killed],
            Success | Failed | Killed => &[],
        }
    }

    /// Whether no transition leaves this status.
    pub fn is_final(self) -> bool {
        self.allowed_next().is_empty()
    }

    /// Whether `self -> next` is in the transition table.
    pub fn can_transition_to(self, next: InvocationStatus) -> bool {
        self.allowed_next().contains(&next)
    }

    /// Ok when `self -> next` is allowed, else `InvalidStatusTransition` naming the invocation.
    pub fn check_transition(self, next: InvocationStatus, invocation_id: &str) -> Result<()> {
        if self.can_transition_to(next) {
            return Ok(());
        }
        let allowed = self.allowed_next();
        let allowed = if allowed.is_empty() {
            format!("{self} is final")
        } else {
            let names: Vec<&str> = allowed.iter().map(|s| s.as_str()).collect();
            format!("from {self} only {} are allowed", names.join(", "))
        };
        Err(Error::InvalidStatusTransition(format!(
            "invocation {invocation_id:?} cannot move from {self} to {next}: {allowed}"
        )))
    }
}

impl fmt::Display for InvocationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for InvocationStatus {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        InvocationStatus::ALL.into_iter().find(|status| status.as_str() == s).ok_or_else(|| {
            Error::config(format!(
                "unknown invocation status {s:?}: expected one of registered, pending, running, \
                 success, failed, retry, killed"
            ))
        })
    }
}

/// Identity of one workflow run.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WorkflowIdentity {
    pub workflow_id: String,
    /// The workflow's type (pynenc's workflow task id).
    pub workflow_type: String,
    pub parent_workflow_id: Option<String>,
}

impl WorkflowIdentity {
    /// A top-level workflow run.
    pub fn new(workflow_id: impl Into<String>, workflow_type: impl Into<String>) -> Self {
        WorkflowIdentity {
            workflow_id: workflow_id.into(),
            workflow_type: workflow_type.into(),
            parent_workflow_id: None,
        }
    }

    /// Checks the identity, naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        non_empty("workflow_id", &self.workflow_id)?;
        non_empty("workflow_type", &self.workflow_type)?;
        if let Some(parent) = &self.parent_workflow_id {
            non_empty("parent_workflow_id", parent)?;
        }
        Ok(())
    }
}

/// One invocation of a task.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub invocation_id: String,
    pub task_id: String,
    /// The call's arguments: a JSON object, as text.
    pub arguments: String,
    pub status: InvocationStatus,
    pub workflow: Option<WorkflowIdentity>,
    pub parent_invocation_id: Option<String>,
    /// When the invocation was created; "newest first" orders by it.
    pub created_at: DateTime<Utc>,
}

impl Invocation {
    /// A registered invocation of `task_id` with `arguments` (JSON object text), a fresh id
    /// and `created_at` (read by the caller from its store's clock).
    pub fn new(
        task_id: impl Into<String>,
        arguments: impl Into<String>,
        created_at: DateTime<Utc>,
    ) -> Self {
        Invocation {
            invocation_id: new_id(),
            task_id: task_id.into(),
            arguments: arguments.into(),
            status: InvocationStatus::Registered,
            workflow: None,
            parent_invocation_id: None,
            created_at: truncate_to_micros(created_at),
        }
    }

    /// Checks the invocation, naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        non_empty("invocation_id", &self.invocation_id)?;
        non_empty("task_id", &self.task_id)?;
        let args: serde_json::Value = parse_json("arguments", &self.arguments)?;
        if !args.is_object() {
            return Err(Error::config(format!(
                "arguments of invocation {:?} must be a JSON object (a dict of keyword arguments), got {}",
                self.invocation_id,
                json_kind(&args)
            )));
        }
        if let Some(wf) = &self.workflow {
            wf.validate()?;
        }
        if let Some(parent) = &self.parent_invocation_id {
            non_empty("parent_invocation_id", parent)?;
        }
        Ok(())
    }
}

/// One entry of an invocation's status history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationHistory {
    pub invocation_id: String,
    /// When the entry was made (microsecond precision, with its UTC offset).
    pub timestamp: DateTime<FixedOffset>,
    /// The status the invocation moved to, or `None` for an entry without a status change.
    pub status: Option<InvocationStatus>,
    /// Any JSON value, as text (kept verbatim), or `None`.
    pub execution_context: Option<String>,
    /// Internal identity of the entry, so pending and stored copies are never shown twice.
    /// Not part of the JSON form.
    pub entry_key: i64,
}

#[derive(Serialize, Deserialize)]
struct HistoryJson<'a> {
    invocation_id: std::borrow::Cow<'a, str>,
    timestamp: std::borrow::Cow<'a, str>,
    status: Option<InvocationStatus>,
    #[serde(borrow)]
    execution_context: Option<&'a serde_json::value::RawValue>,
}

impl InvocationHistory {
    /// An entry stamped `timestamp` (read by the caller from its store's clock).
    pub fn new(
        invocation_id: impl Into<String>,
        status: Option<InvocationStatus>,
        execution_context: Option<String>,
        timestamp: DateTime<Utc>,
    ) -> Self {
        InvocationHistory {
            invocation_id: invocation_id.into(),
            timestamp: truncate_to_micros(timestamp).fixed_offset(),
            status,
            execution_context,
            entry_key: rand::random(),
        }
    }

    /// Checks the entry, naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        non_empty("invocation_id", &self.invocation_id)?;
        if let Some(ctx) = &self.execution_context {
            parse_json::<serde::de::IgnoredAny>("execution_context", ctx)?;
        }
        Ok(())
    }

    /// The entry as JSON:
    /// `{"invocation_id": …, "timestamp": "<ISO 8601 with offset>", "status": …, "execution_context": …}`.
    /// The timestamp is written like Python's `datetime.isoformat()`.
    pub fn to_json(&self) -> String {
        let ctx = self
            .execution_context
            .as_deref()
            .map(|text| serde_json::value::RawValue::from_string(text.to_string()))
            .transpose()
            .ok()
            .flatten();
        let json = HistoryJson {
            invocation_id: self.invocation_id.as_str().into(),
            timestamp: format_timestamp(&self.timestamp).into(),
            status: self.status,
            execution_context: ctx.as_deref(),
        };
        serde_json::to_string(&json).expect("history encodes")
    }

    /// Parses [`InvocationHistory::to_json`]'s output; anything malformed is a `Config` error.
    pub fn from_json(text: &str) -> Result<Self> {
        let json: HistoryJson<'_> = serde_json::from_str(text).map_err(|e| {
            Error::config(format!(
                "malformed InvocationHistory JSON: {e}: {}",
                preview(text)
            ))
        })?;
        let timestamp = parse_timestamp(&json.timestamp)?;
        let history = InvocationHistory {
            invocation_id: json.invocation_id.into_owned(),
            timestamp,
            status: json.status,
            execution_context: json
                .execution_context
                .filter(|raw| raw.get() != "null")
                .map(|raw| raw.get().to_string()),
            entry_key: rand::random(),
        };
        history.validate()?;
        Ok(history)
    }
}

/// A timestamp written like Python's `datetime.isoformat()`: microseconds only when non-zero,
/// always with the `±HH:MM` offset.
pub fn format_timestamp(t: &DateTime<FixedOffset>) -> String {
    let format = if t.nanosecond() == 0 {
        SecondsFormat::Secs
    } else {
        SecondsFormat::Micros
    };
    let text = t.to_rfc3339_opts(format, false);
    // chrono writes a zero offset as "+00:00" with use_z=false, as Python does.
    text
}

/// Parses an ISO 8601 / RFC 3339 timestamp that carries an offset.
pub fn parse_timestamp(text: &str) -> Result<DateTime<FixedOffset>> {
    let parsed = DateTime::parse_from_rfc3339(text).map_err(|e| {
        Error::config(format!(
            "malformed timestamp {text:?}: {e} (expected ISO 8601 with a UTC offset, e.g. 2030-01-01T12:00:00+00:00)"
        ))
    })?;
    Ok(truncate_to_micros(parsed))
}

/// The exception an invocation raised, as stored: enough to rebuild it or describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExceptionRecord {
    /// Module of the exception's class (`builtins` for built-ins).
    pub type_module: String,
    /// Qualified name of the class within its module.
    pub type_qualname: String,
    /// The exception's `args` as a JSON array, or `None` when they are not JSON-serialisable.
    pub args: Option<String>,
    /// `str(exception)`.
    pub message: String,
    /// The formatted traceback (may be empty).
    pub traceback: String,
}

impl ExceptionRecord {
    /// Checks the record, naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        non_empty("exception type_qualname", &self.type_qualname)?;
        if let Some(args) = &self.args {
            let value: serde_json::Value = parse_json("exception args", args)?;
            if !value.is_array() {
                return Err(Error::config(format!(
                    "exception args must be a JSON array, got {}",
                    json_kind(&value)
                )));
            }
        }
        Ok(())
    }

    /// `module.qualname` (just the qualname for built-ins).
    pub fn type_name(&self) -> String {
        if self.type_module.is_empty() || self.type_module == "builtins" {
            self.type_qualname.clone()
        } else {
            format!("{}.{}", self.type_module, self.type_qualname)
        }
    }

    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).expect("exception record encodes")
    }

    pub(crate) fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text)
            .map_err(|e| Error::Store(format!("stored exception record is corrupt: {e}")))
    }
}

/// Information an app registers for discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppInfo {
    pub app_id: String,
    /// The module defining the app, if known.
    pub module: Option<String>,
    /// Anything else, as a JSON object (text).
    pub metadata: String,
}

impl AppInfo {
    /// An app with no module and empty metadata.
    pub fn new(app_id: impl Into<String>) -> Self {
        AppInfo {
            app_id: app_id.into(),
            module: None,
            metadata: "{}".into(),
        }
    }

    /// Checks the info, naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        non_empty("app_id", &self.app_id)?;
        if let Some(module) = &self.module {
            crate::validate::text("app info module", module, crate::validate::MAX_KEY_BYTES)?;
        }
        let meta: serde_json::Value = parse_json("app info metadata", &self.metadata)?;
        if !meta.is_object() {
            return Err(Error::config(format!(
                "app info metadata must be a JSON object, got {}",
                json_kind(&meta)
            )));
        }
        Ok(())
    }
}

/// Opens the store `url` selects (`memory://`, `sqlite:…`, `postgres…`), migrating SQL stores,
/// on the system clock.
pub async fn connect_store(url: &str) -> Result<Arc<dyn StateStore>> {
    connect_store_with_clock(url, Arc::new(SystemClock)).await
}

/// [`connect_store`] with the clock that stamps `updated_at`.
pub async fn connect_store_with_clock(
    url: &str,
    clock: SharedClock,
) -> Result<Arc<dyn StateStore>> {
    match DatabaseUrl::parse(url)? {
        DatabaseUrl::Memory => Ok(Arc::new(memory::MemoryStateStore::new())),
        DatabaseUrl::Sqlite { path } => Ok(Arc::new(
            sqlite::SqliteStateStore::open(&path, true)
                .await?
                .with_clock(clock),
        )),
        DatabaseUrl::Postgres { url } => Ok(Arc::new(
            postgres::PostgresStateStore::connect(&url, true)
                .await?
                .with_clock(clock),
        )),
    }
}

/// Opens the store `url` selects behind a [`WriteBehind`] layer (needs a tokio runtime); the
/// store and the layer share `config.clock`.
pub async fn connect(url: &str, config: WriteBehindConfig) -> Result<WriteBehind> {
    let store = connect_store_with_clock(url, config.clock.clone()).await?;
    Ok(WriteBehind::new(store, config))
}

/// A fresh random id in the UUID v4 text form.
pub fn new_id() -> String {
    let bits: u128 = rand::random();
    let bits = (bits & !(0xF000 << 64) | (0x4000 << 64)) & !(0xC000 << 48) | (0x8000 << 48);
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// `t` with sub-microsecond digits dropped (the stores keep microseconds).
pub fn truncate_to_micros<Tz: chrono::TimeZone>(t: DateTime<Tz>) -> DateTime<Tz> {
    let nanos = t.nanosecond();
    let micros_only = nanos - nanos % 1000;
    t.with_nanosecond(micros_only).expect("valid nanosecond")
}

/// Checks an identifier the same way on every database (see [`crate::validate::key`]).
pub(crate) fn non_empty(what: &str, value: &str) -> Result<()> {
    crate::validate::key(what, value)
}

/// Checks that `text` is JSON, naming `what` when it is not.
pub fn check_json(what: &str, text: &str) -> Result<()> {
    parse_json::<serde::de::IgnoredAny>(what, text).map(|_| ())
}

fn parse_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T> {
    serde_json::from_str(text)
        .map_err(|e| Error::config(format!("{what} is not valid JSON: {e}: {}", preview(text))))
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn preview(text: &str) -> String {
    let mut shown: String = text.chars().take(80).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    format!("{shown:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_table_allows_the_lifecycle_and_forbids_leaving_final_states() {
        use InvocationStatus::*;
        for (from, to) in [
            (Registered, Pending),
            (Pending, Running),
            (Running, Success),
            (Running, Retry),
            (Retry, Pending),
        ] {
            assert!(from.can_transition_to(to), "{from} -> {to}");
        }
        for status in [Success, Failed, Killed] {
            assert!(status.is_final());
            for next in InvocationStatus::ALL {
                let err = status.check_transition(next, "i1").unwrap_err();
                assert_eq!(err.code(), "invalid_status_transition");
            }
        }
        let err = Registered.check_transition(Success, "inv-7").unwrap_err();
        assert!(
            err.to_string().contains("inv-7") && err.to_string().contains("registered to success"),
            "{err}"
        );
        assert!(!Running.can_transition_to(Running));
    }

    #[test]
    fn statuses_parse_from_their_names() {
        for status in InvocationStatus::ALL {
            assert_eq!(status.as_str().parse::<InvocationStatus>().unwrap(), status);
        }
        assert_eq!(
            "done".parse::<InvocationStatus>().unwrap_err().code(),
            "config_error"
        );
    }

    #[test]
    fn history_json_round_trips_exactly() {
        let mut h = InvocationHistory::new(
            "inv-1",
            Some(InvocationStatus::Running),
            Some(r#"{"b": 1, "a": [1.5, "x"]}"#.into()),
            DateTime::<Utc>::UNIX_EPOCH,
        );
        h.timestamp = parse_timestamp("2030-01-02T03:04:05.000007+02:00").unwrap();
        let text = h.to_json();
        assert_eq!(
            text,
            r#"{"invocation_id":"inv-1","timestamp":"2030-01-02T03:04:05.000007+02:00","status":"running","execution_context":{"b": 1, "a": [1.5, "x"]}}"#
        );
        let back = InvocationHistory::from_json(&text).unwrap();
        assert_eq!(back.to_json(), text);
        assert_eq!(back.timestamp, h.timestamp);
        assert_eq!(back.timestamp.offset().local_minus_utc(), 7200);
        assert_eq!(
            (back.status, back.execution_context.as_deref()),
            (h.status, h.execution_context.as_deref())
        );

        let plain = InvocationHistory::from_json(
            r#"{"invocation_id":"i","timestamp":"2030-01-01T00:00:00+00:00","status":null,"execution_context":null}"#,
        )
        .unwrap();
        assert_eq!(plain.status, None);
        assert_eq!(plain.execution_context, None);
        assert_eq!(
            plain.to_json(),
            r#"{"invocation_id":"i","timestamp":"2030-01-01T00:00:00+00:00","status":null,"execution_context":null}"#
        );
    }

    #[test]
    fn malformed_history_json_is_a_config_error() {
        for bad in [
            "",
            "{",
            "[]",
            r#"{"invocation_id":"i","timestamp":"yesterday","status":null,"execution_context":null}"#,
            r#"{"invocation_id":"i","timestamp":"2030-01-01T00:00:00","status":null,"execution_context":null}"#,
            r#"{"invocation_id":"i","timestamp":"2030-01-01T00:00:00+00:00","status":"done","execution_context":null}"#,
            r#"{"invocation_id":"","timestamp":"2030-01-01T00:00:00+00:00","status":null,"execution_context":null}"#,
            r#"{"timestamp":"2030-01-01T00:00:00+00:00","status":null,"execution_context":null}"#,
        ] {
            let err = InvocationHistory::from_json(bad).unwrap_err();
            assert_eq!(err.code(), "config_error", "{bad}: {err}");
        }
    }

    #[test]
    fn invocation_validation_names_the_bad_field() {
        let mut inv = Invocation::new("t", "{}", DateTime::<Utc>::UNIX_EPOCH);
        inv.validate().unwrap();
        inv.arguments = "[1]".into();
        assert!(
            inv.validate()
                .unwrap_err()
                .to_string()
                .contains("JSON object")
        );
        inv.arguments = "{".into();
        assert!(
            inv.validate()
                .unwrap_err()
                .to_string()
                .contains("arguments")
        );
        inv = Invocation::new(" ", "{}", DateTime::<Utc>::UNIX_EPOCH);
        assert!(inv.validate().unwrap_err().to_string().contains("task_id"));
    }

    #[test]
    fn new_ids_look_like_uuid4() {
        let id = new_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
        assert_ne!(id, new_id());
    }
}
