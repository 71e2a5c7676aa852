-- Claims and acknowledgements commit without the WAL flush wait (issue #14), and the claim
-- function of 0006_claim is redefined to do so. Kept apart from 0006_claim, which had already
-- landed: a database that recorded 0006_claim still gets these definitions.
--
-- Claims and acknowledgements commit without waiting for the WAL flush (synchronous_commit =
-- off for their own transaction only) unless the setting headrace.durable_acks is 'on'. A
-- PostgreSQL crash can then forget the last fraction of a second of claims and acks: those
-- items are delivered again, exactly as if the worker had died at that moment, which
-- at-least-once delivery already allows. Nothing enqueued is ever lost: enqueue, retry and
-- dead-letter keep durable commits. A queue drain commits once per batch, so waiting for the
-- disk there made the drain as slow as the disk (about 10 ms per commit on a busy machine).
-- Opt out per database or role: ALTER DATABASE db SET headrace.durable_acks = 'on'.
CREATE OR REPLACE FUNCTION headrace_outbox_relax_commit() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('headrace.durable_acks', true), '') <> 'on' THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
END
$$;

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
    PERFORM headrace_outbox_relax_commit();
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

-- Acknowledges the items of p_ids that p_worker still holds a live lease on; returns their ids
-- (found through the primary key or the lease index, never a table scan)
-- (the caller reports the others as lost or unknown).
CREATE OR REPLACE FUNCTION headrace_outbox_ack(p_ids BIGINT[], p_worker TEXT, p_now TIMESTAMPTZ)
RETURNS SETOF BIGINT
LANGUAGE plpgsql
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
BEGIN
    PERFORM headrace_outbox_relax_commit();
    RETURN QUERY
    UPDATE headrace_outbox SET status = 'completed', lease_owner = NULL, lease_expires_at = NULL,
           updated_at = p_now
     WHERE id = ANY (p_ids) AND status = 'processing' AND lease_owner = p_worker
       AND lease_expires_at > p_now
    RETURNING id;
END
$$;
