-- Finds the items holding a dedupe key in any status (get_by_dedupe_key): a producer recognises
-- work it already handed in even after it completed, e.g. a replayed webhook delivery.
CREATE INDEX IF NOT EXISTS headrace_outbox_dedupe_lookup
    ON headrace_outbox (dedupe_key, id) WHERE dedupe_key IS NOT NULL;
