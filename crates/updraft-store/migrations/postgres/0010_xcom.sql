-- XComs (Airflow's cross-communication values): what a task instance's try pushed, per key.
-- A row belongs to the try that wrote it (`try_number`): only the rows of a task instance's
-- current try are visible, so a new try hides its predecessor's values from the moment it is
-- queued, and its first push deletes them. The tenant is the run's (join `dag_run`).
CREATE TABLE xcom (
    run_pk      BIGINT  NOT NULL,
    task_id     TEXT COLLATE "C" NOT NULL,
    -- Airflow's map index; -1: not mapped.
    map_index   BIGINT  NOT NULL DEFAULT -1,
    key         TEXT COLLATE "C" NOT NULL,
    try_number  BIGINT  NOT NULL,
    -- The value as JSON text.
    value       TEXT    NOT NULL,
    timestamp   BIGINT  NOT NULL,
    PRIMARY KEY (run_pk, task_id, map_index, key),
    FOREIGN KEY (run_pk, task_id) REFERENCES task_instance (run_pk, task_id) ON DELETE CASCADE
);
