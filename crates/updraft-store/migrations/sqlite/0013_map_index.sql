-- Dynamic task mapping: a task instance is keyed by (run, task, map index), Airflow's key;
-- map_index -1 is an unmapped instance (or a mapped task's placeholder before it expands).
-- The try history and XComs follow their instance by the same three columns.
--
-- SQLite cannot change a primary key in place: the three tables are rebuilt, every column,
-- index and trigger kept. The children are dropped before their parent, so dropping the
-- parent cascades to nothing; renaming the new parent rewrites the children's references.

CREATE TABLE task_instance_new (
    run_pk           INTEGER NOT NULL REFERENCES dag_run (id) ON DELETE CASCADE,
    task_id          TEXT    NOT NULL,
    -- Airflow's map index; -1: not mapped.
    map_index        INTEGER NOT NULL DEFAULT -1,
    tenant           TEXT    NOT NULL,
    dag_id           TEXT    NOT NULL,
    run_id           TEXT    NOT NULL,
    -- The run's logical date (immutable), copied for ordering without a join.
    logical_date     INTEGER NOT NULL,
    state            TEXT    NOT NULL,
    try_number       INTEGER NOT NULL DEFAULT 0,
    max_tries        INTEGER NOT NULL,
    -- Tries granted at creation (the task's retries + 1); clearing grants them again.
    tries_budget     INTEGER NOT NULL,
    pool             TEXT    NOT NULL,
    pool_slots       INTEGER NOT NULL,
    priority_weight  INTEGER NOT NULL,
    queued_at        INTEGER,
    start_date       INTEGER,
    end_date         INTEGER,
    retry_at         INTEGER,
    pid              INTEGER,
    hostname         TEXT,
    queued_by_job_id INTEGER,
    PRIMARY KEY (run_pk, task_id, map_index)
);

INSERT INTO task_instance_new (run_pk, task_id, map_index, tenant, dag_id, run_id,
    logical_date, state, try_number, max_tries, tries_budget, pool, pool_slots,
    priority_weight, queued_at, start_date, end_date, retry_at, pid, hostname,
    queued_by_job_id)
SELECT run_pk, task_id, -1, tenant, dag_id, run_id, logical_date, state, try_number,
    max_tries, tries_budget, pool, pool_slots, priority_weight, queued_at, start_date,
    end_date, retry_at, pid, hostname, queued_by_job_id
FROM task_instance;

CREATE TABLE task_try_new (
    run_pk      INTEGER NOT NULL,
    task_id     TEXT    NOT NULL,
    map_index   INTEGER NOT NULL DEFAULT -1,
    try_number  INTEGER NOT NULL,
    tenant      TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    start_date  INTEGER,
    end_date    INTEGER,
    hostname    TEXT,
    PRIMARY KEY (run_pk, task_id, map_index, try_number),
    FOREIGN KEY (run_pk, task_id, map_index)
        REFERENCES task_instance_new (run_pk, task_id, map_index) ON DELETE CASCADE
);

INSERT INTO task_try_new (run_pk, task_id, map_index, try_number, tenant, state, start_date,
    end_date, hostname)
SELECT run_pk, task_id, -1, try_number, tenant, state, start_date, end_date, hostname
FROM task_try;

-- XComs (Airflow's cross-communication values): what a task instance's try pushed, per key.
-- A row belongs to the try that wrote it (`try_number`): only the rows of a task instance's
-- current try are visible, so a new try hides its predecessor's values from the moment it is
-- queued, and its first push deletes them. The tenant is the run's (join `dag_run`).
CREATE TABLE xcom_new (
    run_pk      INTEGER NOT NULL,
    task_id     TEXT    NOT NULL,
    -- Airflow's map index; -1: not mapped.
    map_index   INTEGER NOT NULL DEFAULT -1,
    key         TEXT    NOT NULL,
    try_number  INTEGER NOT NULL,
    -- The value as JSON text.
    value       TEXT    NOT NULL,
    timestamp   INTEGER NOT NULL,
    PRIMARY KEY (run_pk, task_id, map_index, key),
    FOREIGN KEY (run_pk, task_id, map_index)
        REFERENCES task_instance_new (run_pk, task_id, map_index) ON DELETE CASCADE
);

INSERT INTO xcom_new (run_pk, task_id, map_index, key, try_number, value, timestamp)
SELECT run_pk, task_id, map_index, key, try_number, value, timestamp FROM xcom;

DROP TABLE xcom;
DROP TABLE task_try;
DROP TABLE task_instance;

ALTER TABLE task_instance_new RENAME TO task_instance;
ALTER TABLE task_try_new RENAME TO task_try;
ALTER TABLE xcom_new RENAME TO xcom;

CREATE INDEX task_instance_state ON task_instance (state);

-- The scheduler reads scheduled instances a page at a time in priority order (see
-- 0005_scheduled_order.sql); the map index ends the order, so a mapped task's instances queue
-- in index order.
CREATE INDEX task_instance_scheduled_order
    ON task_instance (priority_weight DESC, logical_date, run_pk, task_id, map_index)
    WHERE state = 'scheduled';

-- See 0006_progressing_by_run.sql.
CREATE INDEX task_instance_progressing
    ON task_instance (run_pk)
    WHERE state IN ('scheduled', 'queued', 'running', 'up_for_retry');

CREATE TRIGGER run_change_on_ti_state AFTER UPDATE OF state ON task_instance
WHEN NEW.state IS NOT OLD.state
BEGIN
    INSERT INTO run_change (run_pk, seq)
    VALUES (NEW.run_pk, (SELECT COALESCE(MAX(seq), 0) + 1 FROM run_change))
    ON CONFLICT (run_pk) DO UPDATE SET seq = excluded.seq;
END;
