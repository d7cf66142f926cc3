-- Connections and variables (Airflow's), each of one tenant or shared by all (`tenant = '*'`).
-- A connection's password and extra and a variable's value are Fernet tokens when their
-- `is_*encrypted` flag is set; rows written without encryption keep the value as it is.

-- A connection: where and how to reach an external system.
CREATE TABLE connection (
    tenant              TEXT    NOT NULL,
    conn_id             TEXT    NOT NULL,
    conn_type           TEXT    NOT NULL,
    description         TEXT,
    host                TEXT,
    schema              TEXT,
    login               TEXT,
    password            TEXT,
    port                INTEGER,
    extra               TEXT,
    is_encrypted        INTEGER NOT NULL DEFAULT 0 CHECK (is_encrypted IN (0, 1)),
    is_extra_encrypted  INTEGER NOT NULL DEFAULT 0 CHECK (is_extra_encrypted IN (0, 1)),
    PRIMARY KEY (tenant, conn_id)
);

-- A variable: a named value.
CREATE TABLE variable (
    tenant        TEXT    NOT NULL,
    key           TEXT    NOT NULL,
    val           TEXT    NOT NULL,
    description   TEXT,
    is_encrypted  INTEGER NOT NULL DEFAULT 0 CHECK (is_encrypted IN (0, 1)),
    PRIMARY KEY (tenant, key)
);
