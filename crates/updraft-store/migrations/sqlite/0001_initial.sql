-- updraft schema, SQLite flavour.
--
-- Conventions:
--   * Timestamps are INTEGER microseconds since the Unix epoch, UTC (sort and compare as numbers).
--   * States are the lowercase names of updraft_core's TaskState / RunState / RunType.
--   * JSON documents (DAG definitions, run conf) are TEXT.
--   * Every row that names DAG data carries its tenant.

CREATE TABLE dag (
    dag_id          TEXT    NOT NULL PRIMARY KEY,
    tenant          TEXT    NOT NULL,
    fileloc         TEXT    NOT NULL,
    is_paused       INTEGER NOT NULL CHECK (is_paused IN (0, 1)),
    is_active       INTEGER NOT NULL CHECK (is_active IN (0, 1)),
    -- Latest parsed version; a row in dag_version.
    version         TEXT    NOT NULL,
    last_parsed_at  INTEGER NOT NULL
);

CREATE TABLE dag_version (
    dag_id      TEXT    NOT NULL REFERENCES dag (dag_id) ON DELETE CASCADE,
    version     TEXT    NOT NULL,
    tenant      TEXT    NOT NULL,
    -- The serialized updraft_dag::Dag.
    definition  TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (dag_id, version)
);

CREATE TABLE import_error (
    id        INTEGER PRIMARY KEY,
    tenant    TEXT    NOT NULL,
    filename  TEXT    NOT NULL,
    line      INTEGER,
    col       INTEGER,
    message   TEXT    NOT NULL
);

CREATE TABLE dag_run (
    id                   INTEGER PRIMARY KEY,
    dag_id               TEXT    NOT NULL,
    tenant               TEXT    NOT NULL,
    run_id               TEXT    NOT NULL,
    run_type             TEXT    NOT NULL,
    state                TEXT    NOT NULL,
    version              TEXT    NOT NULL,
    logical_date         INTEGER NOT NULL,
    data_interval_start  INTEGER NOT NULL,
    data_interval_end    INTEGER NOT NULL,
    conf                 TEXT    NOT NULL,
    queued_at            INTEGER NOT NULL,
    start_date           INTEGER,
    end_date             INTEGER,
    UNIQUE (dag_id, run_id),
    FOREIGN KEY (dag_id, version) REFERENCES dag_version (dag_id, version)
);

-- Active runs (all DAGs / one DAG), a DAG's history and timetable, all runs newest first.
CREATE INDEX dag_run_state ON dag_run (state);
CREATE INDEX dag_run_dag_state ON dag_run (dag_id, state);
CREATE INDEX dag_run_dag_logical_date ON dag_run (dag_id, logical_date);
CREATE INDEX dag_run_dag_interval ON dag_run (dag_id, data_interval_end);
CREATE INDEX dag_run_logical_date ON dag_run (logical_date);

CREATE TABLE task_instance (
    run_pk           INTEGER NOT NULL REFERENCES dag_run (id) ON DELETE CASCADE,
    task_id          TEXT    NOT NULL,
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
    PRIMARY KEY (run_pk, task_id)
);

CREATE INDEX task_instance_state ON task_instance (state);

CREATE TABLE task_try (
    run_pk      INTEGER NOT NULL,
    task_id     TEXT    NOT NULL,
    try_number  INTEGER NOT NULL,
    tenant      TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    start_date  INTEGER,
    end_date    INTEGER,
    hostname    TEXT,
    PRIMARY KEY (run_pk, task_id, try_number),
    FOREIGN KEY (run_pk, task_id) REFERENCES task_instance (run_pk, task_id) ON DELETE CASCADE
);

CREATE TABLE pool (
    name         TEXT    NOT NULL PRIMARY KEY,
    slots        INTEGER NOT NULL,
    description  TEXT    NOT NULL
);

INSERT INTO pool (name, slots, description) VALUES ('default_pool', 128, 'Default pool');
