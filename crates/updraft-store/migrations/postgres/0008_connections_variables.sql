-- Connections and variables (Airflow's), each of one tenant or shared by all (`tenant = '*'`).
-- A connection's password and extra and a variable's value are Fernet tokens when their
-- `is_*encrypted` flag is set; rows written without encryption keep the value as it is.

-- A connection: where and how to reach an external system.
CREATE TABLE connection (
    tenant              TEXT COLLATE "C" NOT NULL,
    conn_id             TEXT COLLATE "C" NOT NULL,
    conn_type           TEXT COLLATE "C" NOT NULL,
    description         TEXT,
    host                TEXT,
    schema              TEXT,
    login               TEXT,
    password            TEXT,
    port                BIGINT,
    extra               TEXT,
    is_encrypted        BOOLEAN NOT NULL DEFAULT FALSE,
    is_extra_encrypted  BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (tenant, conn_id)
);

-- A variable: a named value.
CREATE TABLE variable (
    tenant        TEXT COLLATE "C" NOT NULL,
    key           TEXT COLLATE "C" NOT NULL,
    val           TEXT NOT NULL,
    description   TEXT,
    is_encrypted  BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (tenant, key)
);
