-- For the REST API: import errors get stable ids and a timestamp, runs and task instances
-- get notes.

-- An import error keeps its id (never reused: AUTOINCREMENT) and timestamp while a load keeps
-- finding it; `position` is its place in the list of the last load.
CREATE TABLE import_error_v2 (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant      TEXT    NOT NULL,
    filename    TEXT    NOT NULL,
    line        INTEGER,
    col         INTEGER,
    message     TEXT    NOT NULL,
    position    INTEGER NOT NULL,
    -- When the error was first recorded.
    created_at  INTEGER NOT NULL
);

INSERT INTO import_error_v2 (id, tenant, filename, line, col, message, position, created_at)
SELECT id, tenant, filename, line, col, message, id,
       CAST(strftime('%s', 'now') AS INTEGER) * 1000000
FROM import_error;

DROP TABLE import_error;
ALTER TABLE import_error_v2 RENAME TO import_error;

-- A note on a run (task_id = '') or on one of its task instances.
CREATE TABLE note (
    run_pk   INTEGER NOT NULL REFERENCES dag_run (id) ON DELETE CASCADE,
    task_id  TEXT    NOT NULL,
    note     TEXT    NOT NULL,
    PRIMARY KEY (run_pk, task_id)
);
