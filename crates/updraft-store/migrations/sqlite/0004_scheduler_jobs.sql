-- Several schedulers on one database: each scheduler process records itself as a job and
-- heartbeats; the tries it queues are its own (`queued_by_job_id`, as in Airflow) until they
-- end, so a scheduler adopts only the tries of jobs that are no longer alive.

CREATE TABLE scheduler_job (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    hostname          TEXT    NOT NULL,
    pid               INTEGER NOT NULL,
    -- `running`, `stopped` (ended cleanly) or `dead` (declared dead by another scheduler).
    state             TEXT    NOT NULL,
    start_date        INTEGER NOT NULL,
    latest_heartbeat  INTEGER NOT NULL,
    end_date          INTEGER
);

CREATE INDEX scheduler_job_state ON scheduler_job (state);

-- The job that queued the current try; kept when the try ends, NULL until the first try and
-- after a clear. No foreign key: finished jobs are cleaned up while the history stays.
ALTER TABLE task_instance ADD COLUMN queued_by_job_id INTEGER;
