-- The change log of task-instance states is written once per statement instead of once per
-- row: a statement that changes the states of many instances (a batch of executor reports, a
-- batch queued at once) records each of their runs once, in run order. Besides being cheaper,
-- the fixed order means two schedulers' transactions lock the log's rows in the same order and
-- cannot deadlock on them.

CREATE FUNCTION run_change_on_ti_statement() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO run_change (run_pk, seq)
    SELECT changed.run_pk, nextval('run_change_seq_source')
    FROM (
        SELECT DISTINCT n.run_pk
        FROM new_rows n
        JOIN old_rows o ON o.run_pk = n.run_pk AND o.task_id = n.task_id
        WHERE n.state IS DISTINCT FROM o.state
        ORDER BY n.run_pk
    ) AS changed
    ON CONFLICT (run_pk) DO UPDATE SET seq = excluded.seq;
    RETURN NULL;
END;
$$;

DROP TRIGGER run_change_on_ti_state ON task_instance;

CREATE TRIGGER run_change_on_ti_state AFTER UPDATE ON task_instance
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION run_change_on_ti_statement();

DROP FUNCTION run_change_on_ti();
