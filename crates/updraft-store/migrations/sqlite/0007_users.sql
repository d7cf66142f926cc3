-- Users, the roles they hold per tenant, and the audit log (Airflow's event log).

-- A user. Local users have an argon2 password hash; users who sign in through OIDC or a
-- trusted proxy have none. `source` is `local`, `oidc` or `proxy`.
CREATE TABLE users (
    username       TEXT    NOT NULL PRIMARY KEY,
    email          TEXT    NOT NULL,
    first_name     TEXT    NOT NULL,
    last_name      TEXT    NOT NULL,
    password_hash  TEXT,
    active         INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    created_at     INTEGER NOT NULL,
    last_login     INTEGER,
    source         TEXT    NOT NULL
);

-- A role held by a user for one tenant, or for every tenant (`tenant = '*'`).
CREATE TABLE user_grant (
    username  TEXT NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    role      TEXT NOT NULL,
    tenant    TEXT NOT NULL,
    PRIMARY KEY (username, role, tenant)
);

-- One audited write: who did what, when, to which object. `tenant` is NULL for objects of no
-- tenant (users, shared pools).
CREATE TABLE event_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    dttm        INTEGER NOT NULL,
    username    TEXT    NOT NULL,
    event       TEXT    NOT NULL,
    tenant      TEXT,
    dag_id      TEXT,
    run_id      TEXT,
    task_id     TEXT,
    map_index   INTEGER,
    try_number  INTEGER,
    extra       TEXT
);

-- The log is read newest first, whole or for one DAG.
CREATE INDEX event_log_newest ON event_log (dttm, id);
CREATE INDEX event_log_dag_newest ON event_log (dag_id, dttm, id);
