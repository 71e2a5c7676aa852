-- A claim whose plan does not depend on table statistics (issue #14).
--
-- A queue table's statistics are stale by nature: it fills in bursts and empties again. On a
-- table just filled and not yet analyzed, the planner guessed that few rows were pending and
-- chose a bitmap scan of every pending row plus a sort, which made each claim cost the whole
-- backlog. The claim index (priority DESC, run_at, id) WHERE status = 'pending' already holds
-- the claim order, so the only sensible plan is an ordered walk of it that stops after
-- p_limit rows. The function pins that plan: with sequential scans, bitmap scans, sorts and
-- hash/merge joins disabled for its own statements, the ordered index walk (and a primary-key
-- lookup per picked row) is the only plan left, fresh, analyzed or full of completed rows.
-- tests/python/test_outbox_claim_plan.py checks the plan through auto_explain.
CREATE OR REPLACE FUNCTION headrace_outbox_claim(
    p_worker         TEXT,
    p_limit          INTEGER,
    p_now            TIMESTAMPTZ,
    p_lease_expires  TIMESTAMPTZ,
    p_due_by         TIMESTAMPTZ,
    p_topics         TEXT[],
    p_exclude_topics TEXT[]
) RETURNS SETOF headrace_outbox
LANGUAGE plpgsql
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
BEGIN
    RETURN QUERY
    WITH picked AS (
        SELECT id FROM headrace_outbox
        WHERE status = 'pending' AND run_at <= p_due_by
          AND (p_topics IS NULL OR topic = ANY (p_topics))
          AND NOT (topic = ANY (p_exclude_topics))
        ORDER BY priority DESC, run_at, id
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED)
    UPDATE headrace_outbox o
       SET status = 'processing', attempts = o.attempts + 1, lease_owner = p_worker,
           lease_expires_at = p_lease_expires, updated_at = p_now
      FROM picked
     WHERE o.id = picked.id
    RETURNING o.*;
END
$$;
