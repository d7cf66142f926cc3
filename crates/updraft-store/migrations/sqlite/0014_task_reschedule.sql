-- Sensors' pokes that rescheduled (Airflow's `task_reschedule`): one row per poke of a try
-- that ended `up_for_reschedule`, written in the transaction that records the poke. The first
-- row of a try is its first poke, from which the sensor's `timeout` counts; the number of rows
-- of a try is its number of pokes so far (`exponential_backoff`). Rows go with their task
-- instance (a deleted run) and are deleted when it is cleared.
CREATE TABLE task_reschedule (
    id              INTEGER PRIMARY KEY,
    run_pk          INTEGER NOT NULL,
    task_id         TEXT    NOT NULL,
    -- Airflow's map index; -1: not mapped.
    map_index       INTEGER NOT NULL DEFAULT -1,
    try_number      INTEGER NOT NULL,
    start_date      INTEGER NOT NULL,
    end_date        INTEGER NOT NULL,
    reschedule_date INTEGER NOT NULL,
    FOREIGN KEY (run_pk, task_id, map_index)
        REFERENCES task_instance (run_pk, task_id, map_index) ON DELETE CASCADE
);
CREATE INDEX task_reschedule_ti ON task_reschedule (run_pk, task_id, map_index, try_number);
