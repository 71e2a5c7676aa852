-- Transactional outbox. Times are integer microseconds since the Unix epoch (UTC).
CREATE TABLE IF NOT EXISTS headrace_outbox (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    topic            TEXT    NOT NULL,
    payload          TEXT    NOT NULL,
    status           TEXT    NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    priority         INTEGER NOT NULL DEFAULT 0,
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    run_at           INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    last_error       TEXT,
    dedupe_key       TEXT,
    trace_id         TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);

-- Claim order: higher priority first, then earlier run_at, then id.
CREATE INDEX IF NOT EXISTS headrace_outbox_claim
    ON headrace_outbox (priority DESC, run_at, id) WHERE status = 'pending';

-- The reaper looks for expired leases.
CREATE INDEX IF NOT EXISTS headrace_outbox_lease
    ON headrace_outbox (lease_expires_at) WHERE status = 'processing';

-- A dedupe key is unique among items that are not yet terminal.
CREATE UNIQUE INDEX IF NOT EXISTS headrace_outbox_dedupe
    ON headrace_outbox (dedupe_key)
    WHERE dedupe_key IS NOT NULL AND status IN ('pending', 'processing');
