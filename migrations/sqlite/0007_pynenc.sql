-- pynenc 0.4 state backend (headrace.pynenc). Every row belongs to one pynenc app id.
-- Times are integer microseconds since the Unix epoch (UTC); serialized values are kept verbatim.
CREATE TABLE IF NOT EXISTS headrace_pynenc_invocations (
    app_id               TEXT NOT NULL,
    invocation_id        TEXT NOT NULL,
    call_id_key          TEXT NOT NULL,
    task_id_key          TEXT NOT NULL,
    serialized_arguments TEXT NOT NULL,
    parent_invocation_id TEXT,
    parent_event_id      TEXT,
    workflow_id          TEXT,
    workflow_type_key    TEXT,
    parent_workflow_id   TEXT,
    PRIMARY KEY (app_id, invocation_id)
);
-- Lookups by parent, event and workflow; most invocations have none, so the indexes are partial.
CREATE INDEX IF NOT EXISTS headrace_pynenc_invocations_parent
    ON headrace_pynenc_invocations (app_id, parent_invocation_id) WHERE parent_invocation_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS headrace_pynenc_invocations_event
    ON headrace_pynenc_invocations (app_id, parent_event_id) WHERE parent_event_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS headrace_pynenc_invocations_workflow
    ON headrace_pynenc_invocations (app_id, workflow_id) WHERE workflow_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS headrace_pynenc_invocations_workflow_type
    ON headrace_pynenc_invocations (app_id, workflow_type_key) WHERE workflow_type_key IS NOT NULL;

-- pynenc's full status model: the 13 statuses of pynenc.invocation.status.InvocationStatus.
CREATE TABLE IF NOT EXISTS headrace_pynenc_history (
    seq                  INTEGER PRIMARY KEY,
    app_id               TEXT    NOT NULL,
    invocation_id        TEXT    NOT NULL,
    timestamp_us         INTEGER NOT NULL,
    utc_offset           INTEGER,
    status               TEXT    NOT NULL CHECK (status IN (
        'registered', 'concurrency_controlled', 'concurrency_controlled_final', 'rerouted',
        'pending', 'pending_recovery', 'running', 'running_recovery', 'paused', 'killed',
        'success', 'failed', 'retry')),
    status_runner_id     TEXT,
    status_timestamp     TEXT    NOT NULL,
    runner_context_id    TEXT    NOT NULL,
    registered_by_inv_id TEXT
);
CREATE INDEX IF NOT EXISTS headrace_pynenc_history_invocation
    ON headrace_pynenc_history (app_id, invocation_id, timestamp_us, seq);
CREATE INDEX IF NOT EXISTS headrace_pynenc_history_time
    ON headrace_pynenc_history (app_id, timestamp_us, seq);

CREATE TABLE IF NOT EXISTS headrace_pynenc_outcomes (
    app_id        TEXT NOT NULL,
    invocation_id TEXT NOT NULL,
    result        TEXT,
    exception     TEXT,
    PRIMARY KEY (app_id, invocation_id)
);

CREATE TABLE IF NOT EXISTS headrace_pynenc_runner_contexts (
    app_id       TEXT NOT NULL,
    runner_id    TEXT NOT NULL,
    context_json TEXT NOT NULL,
    PRIMARY KEY (app_id, runner_id)
);

CREATE TABLE IF NOT EXISTS headrace_pynenc_app_infos (
    app_id    TEXT PRIMARY KEY,
    info_json TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS headrace_pynenc_workflow_runs (
    seq                INTEGER PRIMARY KEY,
    app_id             TEXT NOT NULL,
    workflow_id        TEXT NOT NULL,
    workflow_type_key  TEXT NOT NULL,
    parent_workflow_id TEXT,
    UNIQUE (app_id, workflow_id)
);
CREATE INDEX IF NOT EXISTS headrace_pynenc_workflow_runs_type
    ON headrace_pynenc_workflow_runs (app_id, workflow_type_key, seq);

CREATE TABLE IF NOT EXISTS headrace_pynenc_workflow_data (
    app_id      TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    data_key    TEXT NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (app_id, workflow_id, data_key)
);

CREATE TABLE IF NOT EXISTS headrace_pynenc_sub_invocations (
    seq                INTEGER PRIMARY KEY,
    app_id             TEXT NOT NULL,
    parent_workflow_id TEXT NOT NULL,
    sub_invocation_id  TEXT NOT NULL,
    UNIQUE (app_id, parent_workflow_id, sub_invocation_id)
);
