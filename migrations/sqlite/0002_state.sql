-- State backend. Times are integer microseconds since the Unix epoch (UTC); values are JSON text.
CREATE TABLE IF NOT EXISTS headrace_invocations (
    seq                  INTEGER PRIMARY KEY,
    invocation_id        TEXT    NOT NULL UNIQUE,
    task_id              TEXT    NOT NULL,
    arguments            TEXT    NOT NULL,
    status               TEXT    NOT NULL
                         CHECK (status IN ('registered', 'pending', 'running', 'success', 'failed', 'retry', 'killed')),
    workflow_id          TEXT,
    workflow_type        TEXT,
    parent_workflow_id   TEXT,
    parent_invocation_id TEXT,
    result               TEXT,
    exception            TEXT,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
);

-- Runs of one task, newest first.
CREATE INDEX IF NOT EXISTS headrace_invocations_task
    ON headrace_invocations (task_id, created_at DESC, seq DESC);

CREATE TABLE IF NOT EXISTS headrace_invocation_history (
    seq               INTEGER PRIMARY KEY,
    invocation_id     TEXT    NOT NULL
                      REFERENCES headrace_invocations (invocation_id) ON DELETE CASCADE,
    entry_key         INTEGER NOT NULL,
    timestamp         INTEGER NOT NULL,
    utc_offset        INTEGER NOT NULL DEFAULT 0,
    status            TEXT,
    execution_context TEXT
);

-- History of one invocation, in timestamp order.
CREATE INDEX IF NOT EXISTS headrace_invocation_history_invocation
    ON headrace_invocation_history (invocation_id, timestamp, seq);

CREATE TABLE IF NOT EXISTS headrace_workflow_values (
    workflow_id TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('data', 'deterministic')),
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (workflow_id, kind, key)
);

CREATE TABLE IF NOT EXISTS headrace_app_infos (
    app_id   TEXT PRIMARY KEY,
    module   TEXT,
    metadata TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS headrace_workflow_runs (
    seq                INTEGER PRIMARY KEY,
    workflow_id        TEXT NOT NULL UNIQUE,
    workflow_type      TEXT NOT NULL,
    parent_workflow_id TEXT
);

CREATE INDEX IF NOT EXISTS headrace_workflow_runs_type
    ON headrace_workflow_runs (workflow_type, seq);

CREATE TABLE IF NOT EXISTS headrace_workflow_sub_invocations (
    seq                INTEGER PRIMARY KEY,
    parent_workflow_id TEXT NOT NULL,
    sub_invocation_id  TEXT NOT NULL,
    UNIQUE (parent_workflow_id, sub_invocation_id)
);
