//! The pynenc store's SQL, shared by SQLite and PostgreSQL: `$n` parameters appear in
//! ascending order, which SQLite binds positionally too.

use super::history::HistoryEntry;
use super::status::PynencStatus;
use super::store::{PynencInvocation, WorkflowRun};
use crate::error::{Error, Result};

// Each write kind's statement around its rows: a one-row `VALUES` (SQLite, one prepared
// statement per write) or a many-row `SELECT … FROM unnest(…)` (PostgreSQL: every column bound
// once as an array, one statement per kind and batch). `$1` is the app id.
macro_rules! upsert_invocations {
    ($rows:literal) => {
        concat!(
            "INSERT INTO headrace_pynenc_invocations (app_id, invocation_id, call_id_key,
             task_id_key, serialized_arguments, parent_invocation_id, parent_event_id,
             workflow_id, workflow_type_key, parent_workflow_id) ",
            $rows,
            " ON CONFLICT (app_id, invocation_id) DO UPDATE SET
             call_id_key = excluded.call_id_key, task_id_key = excluded.task_id_key,
             serialized_arguments = excluded.serialized_arguments,
             parent_invocation_id = excluded.parent_invocation_id,
             parent_event_id = excluded.parent_event_id, workflow_id = excluded.workflow_id,
             workflow_type_key = excluded.workflow_type_key,
             parent_workflow_id = excluded.parent_workflow_id"
        )
    };
}
macro_rules! insert_history {
    ($rows:literal) => {
        concat!(
            "INSERT INTO headrace_pynenc_history (app_id, invocation_id, timestamp_us,
             utc_offset, status, status_runner_id, status_timestamp, runner_context_id,
             registered_by_inv_id) ",
            $rows
        )
    };
}
/// Sets one column of an invocation's outcome row (result or exception).
macro_rules! set_outcome {
    ($column:literal, $rows:literal) => {
        concat!(
            "INSERT INTO headrace_pynenc_outcomes (app_id, invocation_id, ",
            $column,
            ") ",
            $rows,
            " ON CONFLICT (app_id, invocation_id) DO UPDATE SET ",
            $column,
            " = excluded.",
            $column
        )
    };
}
/// Inserts or replaces (`UPDATE SET …`) or keeps the first (`NOTHING`) row of a table.
macro_rules! store {
    ($table:literal, $columns:literal, $rows:literal, $key:literal, $on_conflict:literal) => {
        concat!(
            "INSERT INTO headrace_pynenc_",
            $table,
            " (",
            $columns,
            ") ",
            $rows,
            " ON CONFLICT (",
            $key,
            ") DO ",
            $on_conflict
        )
    };
}
macro_rules! set_workflow_data {
    ($rows:literal) => {
        store!(
            "workflow_data",
            "app_id, workflow_id, data_key, value",
            $rows,
            "app_id, workflow_id, data_key",
            "UPDATE SET value = excluded.value"
        )
    };
}
macro_rules! store_app_info {
    ($rows:literal) => {
        store!(
            "app_infos",
            "app_id, info_json",
            $rows,
            "app_id",
            "UPDATE SET info_json = excluded.info_json"
        )
    };
}
macro_rules! store_workflow_run {
    ($rows:literal) => {
        store!(
            "workflow_runs",
            "app_id, workflow_id, workflow_type_key, parent_workflow_id",
            $rows,
            "app_id, workflow_id",
            "NOTHING"
        )
    };
}
macro_rules! store_sub_invocation {
    ($rows:literal) => {
        store!(
            "sub_invocations",
            "app_id, parent_workflow_id, sub_invocation_id",
            $rows,
            "app_id, parent_workflow_id, sub_invocation_id",
            "NOTHING"
        )
    };
}
macro_rules! store_runner_context {
    ($rows:literal) => {
        store!(
            "runner_contexts",
            "app_id, runner_id, context_json",
            $rows,
            "app_id, runner_id",
            "UPDATE SET context_json = excluded.context_json"
        )
    };
}

pub const UPSERT_INVOCATION: &str =
    upsert_invocations!("VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)");
pub const INSERT_HISTORY: &str = insert_history!("VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)");
pub const SET_RESULT: &str = set_outcome!("result", "VALUES ($1, $2, $3)");
pub const SET_EXCEPTION: &str = set_outcome!("exception", "VALUES ($1, $2, $3)");
pub const SET_WORKFLOW_DATA: &str = set_workflow_data!("VALUES ($1, $2, $3, $4)");
pub const STORE_APP_INFO: &str = store_app_info!("VALUES ($1, $2)");
pub const STORE_WORKFLOW_RUN: &str = store_workflow_run!("VALUES ($1, $2, $3, $4)");
pub const STORE_SUB_INVOCATION: &str = store_sub_invocation!("VALUES ($1, $2, $3)");
pub const STORE_RUNNER_CONTEXT: &str = store_runner_context!("VALUES ($1, $2, $3)");

/// The many-row forms (PostgreSQL): after the app id, each array is one column, one element
/// per row. A statement must not update one row twice, so the caller binds one row per key;
/// rows that get a `seq` (history, workflow runs, sub-invocations) are inserted in array order.
pub mod many {
    pub const UPSERT_INVOCATIONS: &str = upsert_invocations!(
        "SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
         $7::text[], $8::text[], $9::text[], $10::text[])"
    );
    pub const INSERT_HISTORY: &str = insert_history!(
        "SELECT $1, i, t, o, s, r, st, c, reg
         FROM unnest($2::text[], $3::bigint[], $4::int[], $5::text[], $6::text[], $7::text[],
                     $8::text[], $9::text[]) WITH ORDINALITY AS u(i, t, o, s, r, st, c, reg, n)
         ORDER BY n"
    );
    pub const SET_RESULTS: &str =
        set_outcome!("result", "SELECT $1, * FROM unnest($2::text[], $3::text[])");
    pub const SET_EXCEPTIONS: &str = set_outcome!(
        "exception",
        "SELECT $1, * FROM unnest($2::text[], $3::text[])"
    );
    pub const SET_WORKFLOW_DATA: &str =
        set_workflow_data!("SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[])");
    /// Each row names its own app id (an app info names its app): no `$1` app id.
    pub const STORE_APP_INFOS: &str =
        store_app_info!("SELECT * FROM unnest($1::text[], $2::text[])");
    pub const STORE_WORKFLOW_RUNS: &str = store_workflow_run!(
        "SELECT $1, w, t, p FROM unnest($2::text[], $3::text[], $4::text[])
         WITH ORDINALITY AS u(w, t, p, n) ORDER BY n"
    );
    pub const STORE_SUB_INVOCATIONS: &str = store_sub_invocation!(
        "SELECT $1, w, s FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS u(w, s, n)
         ORDER BY n"
    );
    pub const STORE_RUNNER_CONTEXTS: &str =
        store_runner_context!("SELECT $1, * FROM unnest($2::text[], $3::text[])");

    /// Takes the transaction's lock on each invocation id (`$2`, sorted, so two batches
    /// never wait on each other in opposite orders).
    pub const LOCK_INVOCATIONS: &str =
        "SELECT pg_advisory_xact_lock(hashtext($1), hashtext(id)) FROM unnest($2::text[]) AS id";

    /// The latest status record (by entry time, then insertion) of each invocation in `$2`,
    /// with its entry time.
    pub const LATEST_RECORDS: &str = "SELECT DISTINCT ON (invocation_id)
        invocation_id, status, status_runner_id, timestamp_us FROM headrace_pynenc_history
        WHERE app_id = $1 AND invocation_id = ANY($2)
        ORDER BY invocation_id, timestamp_us DESC, seq DESC";
}

/// The latest status record of one invocation (by entry time, then insertion).
pub const LATEST_RECORD: &str = "SELECT status, status_runner_id FROM headrace_pynenc_history
    WHERE app_id = $1 AND invocation_id = $2 ORDER BY timestamp_us DESC, seq DESC LIMIT 1";

pub const GET_INVOCATION: &str = "SELECT invocation_id, call_id_key, task_id_key,
    serialized_arguments, parent_invocation_id, parent_event_id, workflow_id, workflow_type_key,
    parent_workflow_id FROM headrace_pynenc_invocations WHERE app_id = $1 AND invocation_id = $2";

/// The columns every history query selects, in this order (checked by a test).
#[cfg(test)]
const HISTORY_COLUMNS: &str = "invocation_id, timestamp_us, utc_offset, status, status_runner_id,
    status_timestamp, runner_context_id, registered_by_inv_id";

pub const GET_HISTORY: &str =
    "SELECT invocation_id, timestamp_us, utc_offset, status, status_runner_id, status_timestamp,
     runner_context_id, registered_by_inv_id FROM headrace_pynenc_history
     WHERE app_id = $1 AND invocation_id = $2 ORDER BY timestamp_us, seq";

pub const HISTORY_IN_RANGE: &str =
    "SELECT invocation_id, timestamp_us, utc_offset, status, status_runner_id, status_timestamp,
     runner_context_id, registered_by_inv_id FROM headrace_pynenc_history
     WHERE app_id = $1 AND timestamp_us >= $2 AND timestamp_us <= $3
     ORDER BY timestamp_us, seq LIMIT $4 OFFSET $5";

pub const INVOCATIONS_IN_RANGE: &str = "SELECT DISTINCT invocation_id FROM headrace_pynenc_history
    WHERE app_id = $1 AND timestamp_us >= $2 AND timestamp_us <= $3
    ORDER BY invocation_id LIMIT $4 OFFSET $5";

pub const GET_RESULT: &str =
    "SELECT result FROM headrace_pynenc_outcomes WHERE app_id = $1 AND invocation_id = $2";

pub const GET_EXCEPTION: &str =
    "SELECT exception FROM headrace_pynenc_outcomes WHERE app_id = $1 AND invocation_id = $2";

pub const GET_WORKFLOW_DATA: &str = "SELECT value FROM headrace_pynenc_workflow_data
    WHERE app_id = $1 AND workflow_id = $2 AND data_key = $3";

pub const GET_APP_INFO: &str = "SELECT info_json FROM headrace_pynenc_app_infos WHERE app_id = $1";

pub const ALL_APP_INFOS: &str =
    "SELECT app_id, info_json FROM headrace_pynenc_app_infos ORDER BY app_id";

pub const WORKFLOW_TYPES: &str =
    "SELECT DISTINCT workflow_type_key FROM headrace_pynenc_workflow_runs
    WHERE app_id = $1 ORDER BY workflow_type_key";

pub const WORKFLOW_RUNS: &str = "SELECT workflow_id, workflow_type_key, parent_workflow_id
    FROM headrace_pynenc_workflow_runs
    WHERE app_id = $1 AND (CAST($2 AS TEXT) IS NULL OR workflow_type_key = $2) ORDER BY seq";

pub const SUB_INVOCATIONS: &str = "SELECT sub_invocation_id FROM headrace_pynenc_sub_invocations
    WHERE app_id = $1 AND parent_workflow_id = $2 ORDER BY seq";

pub const CHILD_INVOCATIONS: &str = "SELECT invocation_id FROM headrace_pynenc_invocations
    WHERE app_id = $1 AND parent_invocation_id = $2 ORDER BY invocation_id";

pub const BY_PARENT_EVENT: &str = "SELECT invocation_id FROM headrace_pynenc_invocations
    WHERE app_id = $1 AND parent_event_id = $2 ORDER BY invocation_id";

pub const BY_WORKFLOW: &str = "SELECT invocation_id FROM headrace_pynenc_invocations
    WHERE app_id = $1 AND (CAST($2 AS TEXT) IS NULL OR workflow_id = $2)
      AND (CAST($3 AS TEXT) IS NULL OR workflow_type_key = $3) ORDER BY invocation_id";

pub const RUNNER_CONTEXT: &str = "SELECT context_json FROM headrace_pynenc_runner_contexts
    WHERE app_id = $1 AND runner_id = $2";

pub const MATCHING_RUNNER_CONTEXTS_SQLITE: &str = "SELECT context_json
    FROM headrace_pynenc_runner_contexts WHERE app_id = $1 AND instr(runner_id, $2) > 0
    ORDER BY runner_id";

pub const MATCHING_RUNNER_CONTEXTS_POSTGRES: &str = "SELECT context_json
    FROM headrace_pynenc_runner_contexts WHERE app_id = $1 AND strpos(runner_id, $2) > 0
    ORDER BY runner_id";

/// Everything of one app, table by table.
pub const PURGE: [&str; 8] = [
    "DELETE FROM headrace_pynenc_invocations WHERE app_id = $1",
    "DELETE FROM headrace_pynenc_history WHERE app_id = $1",
    "DELETE FROM headrace_pynenc_outcomes WHERE app_id = $1",
    "DELETE FROM headrace_pynenc_runner_contexts WHERE app_id = $1",
    "DELETE FROM headrace_pynenc_app_infos WHERE app_id = $1",
    "DELETE FROM headrace_pynenc_workflow_runs WHERE app_id = $1",
    "DELETE FROM headrace_pynenc_workflow_data WHERE app_id = $1",
    "DELETE FROM headrace_pynenc_sub_invocations WHERE app_id = $1",
];

/// A status read back from the database.
pub fn stored_status(text: &str) -> Result<PynencStatus> {
    text.parse()
        .map_err(|_| Error::Store(format!("stored pynenc status {text:?} is unknown")))
}

/// A result row of either database, read by column index: each store implements it for its
/// row type, and the mappings below turn rows into records once for both.
pub trait Columns {
    fn text(&self, index: usize) -> Result<String>;
    fn maybe_text(&self, index: usize) -> Result<Option<String>>;
    fn int(&self, index: usize) -> Result<i64>;
    fn maybe_int(&self, index: usize) -> Result<Option<i32>>;
}

/// An invocation from [`GET_INVOCATION`]'s columns.
pub fn invocation(r: &impl Columns) -> Result<PynencInvocation> {
    let workflow = match (r.maybe_text(6)?, r.maybe_text(7)?) {
        (Some(workflow_id), Some(workflow_type_key)) => Some(WorkflowRun {
            workflow_id,
            workflow_type_key,
            parent_workflow_id: r.maybe_text(8)?,
        }),
        _ => None,
    };
    Ok(PynencInvocation {
        invocation_id: r.text(0)?,
        call_id_key: r.text(1)?,
        task_id_key: r.text(2)?,
        serialized_arguments: r.text(3)?,
        parent_invocation_id: r.maybe_text(4)?,
        parent_event_id: r.maybe_text(5)?,
        workflow,
    })
}

/// A history entry from the columns of [`GET_HISTORY`] and [`HISTORY_IN_RANGE`].
pub fn history_entry(r: &impl Columns) -> Result<HistoryEntry> {
    Ok(HistoryEntry {
        invocation_id: r.text(0)?,
        timestamp_us: r.int(1)?,
        utc_offset: r.maybe_int(2)?,
        status: stored_status(&r.text(3)?)?,
        status_runner_id: r.maybe_text(4)?,
        status_timestamp: r.text(5)?,
        runner_context_id: r.text(6)?,
        registered_by_inv_id: r.maybe_text(7)?,
    })
}

/// A workflow run from [`WORKFLOW_RUNS`]'s columns.
pub fn workflow_run(r: &impl Columns) -> Result<WorkflowRun> {
    Ok(WorkflowRun {
        workflow_id: r.text(0)?,
        workflow_type_key: r.text(1)?,
        parent_workflow_id: r.maybe_text(2)?,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn history_queries_select_the_history_columns() {
        let normalize = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        for query in [super::GET_HISTORY, super::HISTORY_IN_RANGE] {
            assert!(
                normalize(query).contains(&normalize(super::HISTORY_COLUMNS)),
                "{query}"
            );
        }
    }
}
