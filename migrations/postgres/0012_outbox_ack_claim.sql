-- Acknowledge one batch and claim the next in one statement (issue #14): a worker lane sends
-- one round trip per batch instead of two. Returns the acknowledged rows first (status
-- 'completed': the items of p_ack_ids that p_worker still held a live lease on), then the
-- claimed ones (status 'processing'), exactly as headrace_outbox_ack and headrace_outbox_claim
-- would, in one transaction with a relaxed commit (0006_relaxed_commit). The claim runs
-- through headrace_outbox_claim, so its plan stays the pinned ordered index walk.
CREATE OR REPLACE FUNCTION headrace_outbox_ack_claim(
    p_ack_ids        BIGINT[],
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
AS $$
BEGIN
    PERFORM headrace_outbox_relax_commit();
    IF cardinality(p_ack_ids) > 0 THEN
        RETURN QUERY
        UPDATE headrace_outbox o
           SET status = 'completed', lease_owner = NULL, lease_expires_at = NULL, updated_at = p_now
         WHERE o.id = ANY (p_ack_ids) AND o.status = 'processing' AND o.lease_owner = p_worker
           AND o.lease_expires_at > p_now
        RETURNING o.*;
    END IF;
    IF p_limit > 0 THEN
        RETURN QUERY
        SELECT * FROM headrace_outbox_claim(p_worker, p_limit, p_now, p_lease_expires, p_due_by,
                                            p_topics, p_exclude_topics);
    END IF;
END
$$;
