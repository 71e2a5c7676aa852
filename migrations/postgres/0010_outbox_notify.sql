-- Wakes listening workers when outbox rows are inserted by any client (the core, Django, raw
-- SQL, another language). Statement-level, so a multi-row insert notifies once; PostgreSQL
-- delivers notifications only when the transaction commits and folds duplicates within one.
CREATE OR REPLACE FUNCTION headrace_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('headrace_outbox', '');
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS headrace_outbox_notify ON headrace_outbox;
CREATE TRIGGER headrace_outbox_notify AFTER INSERT ON headrace_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION headrace_outbox_notify();
