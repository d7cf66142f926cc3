-- Which runs changed, for live views in a process that does not run the scheduler
-- (`updraft server`): one row per run, stamped with a sequence number that grows with every
-- recorded change of the run or of one of its task instances' states. A reader remembers the
-- highest `seq` it saw and asks for the rows above it (an index range scan, usually empty).
--
-- Maintained by triggers so every writer (scheduler, CLI, API) is covered without code of its
-- own. The row of a deleted run stays (its deletion is a change too).

CREATE TABLE run_change (
    run_pk  INTEGER NOT NULL PRIMARY KEY,
    seq     INTEGER NOT NULL
);

CREATE INDEX run_change_seq ON run_change (seq);

CREATE TRIGGER run_change_on_run_insert AFTER INSERT ON dag_run
BEGIN
    INSERT INTO run_change (run_pk, seq)
    VALUES (NEW.id, (SELECT COALESCE(MAX(seq), 0) + 1 FROM run_change))
    ON CONFLICT (run_pk) DO UPDATE SET seq = excluded.seq;
END;

CREATE TRIGGER run_change_on_run_state AFTER UPDATE OF state ON dag_run
WHEN NEW.state IS NOT OLD.state
BEGIN
    INSERT INTO run_change (run_pk, seq)
    VALUES (NEW.id, (SELECT COALESCE(MAX(seq), 0) + 1 FROM run_change))
    ON CONFLICT (run_pk) DO UPDATE SET seq = excluded.seq;
END;

CREATE TRIGGER run_change_on_run_delete AFTER DELETE ON dag_run
BEGIN
    INSERT INTO run_change (run_pk, seq)
    VALUES (OLD.id, (SELECT COALESCE(MAX(seq), 0) + 1 FROM run_change))
    ON CONFLICT (run_pk) DO UPDATE SET seq = excluded.seq;
END;

CREATE TRIGGER run_change_on_ti_state AFTER UPDATE OF state ON task_instance
WHEN NEW.state IS NOT OLD.state
BEGIN
    INSERT INTO run_change (run_pk, seq)
    VALUES (NEW.run_pk, (SELECT COALESCE(MAX(seq), 0) + 1 FROM run_change))
    ON CONFLICT (run_pk) DO UPDATE SET seq = excluded.seq;
END;
