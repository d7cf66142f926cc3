-- Assets (Airflow 3's assets, Airflow 2's datasets), per tenant: a URI names one asset within
-- its tenant. Events are recorded when a task with outlets succeeds or by hand through the API.
CREATE TABLE asset (
    id          INTEGER PRIMARY KEY,
    tenant      TEXT    NOT NULL,
    uri         TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    extra       TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (tenant, uri)
);

CREATE TABLE asset_event (
    id                INTEGER PRIMARY KEY,
    asset_id          INTEGER NOT NULL REFERENCES asset (id) ON DELETE CASCADE,
    extra             TEXT    NOT NULL,
    source_dag_id     TEXT,
    source_run_id     TEXT,
    source_task_id    TEXT,
    source_map_index  INTEGER NOT NULL,
    timestamp         INTEGER NOT NULL
);
CREATE INDEX asset_event_asset ON asset_event (asset_id, id);
CREATE INDEX asset_event_source ON asset_event (source_dag_id, source_run_id);

-- What the loaded DAGs say of assets: the URIs an asset-triggered DAG's condition names
-- (kind `schedule`, task_id '') and each task's outlets (kind `outlet`).
CREATE TABLE asset_reference (
    tenant   TEXT NOT NULL,
    dag_id   TEXT NOT NULL,
    task_id  TEXT NOT NULL,
    kind     TEXT NOT NULL,
    uri      TEXT NOT NULL,
    PRIMARY KEY (dag_id, kind, task_id, uri)
);
CREATE INDEX asset_reference_uri ON asset_reference (tenant, uri, kind);

-- Events waiting for a consumer DAG's condition (Airflow's asset_dag_run_queue).
CREATE TABLE asset_dag_run_queue (
    target_dag_id  TEXT    NOT NULL,
    event_id       INTEGER NOT NULL REFERENCES asset_event (id) ON DELETE CASCADE,
    PRIMARY KEY (target_dag_id, event_id)
);

-- The events an asset-triggered run consumed (Airflow's consumed_asset_events).
CREATE TABLE dag_run_asset_event (
    run_pk    INTEGER NOT NULL REFERENCES dag_run (id) ON DELETE CASCADE,
    event_id  INTEGER NOT NULL REFERENCES asset_event (id) ON DELETE CASCADE,
    PRIMARY KEY (run_pk, event_id)
);
CREATE INDEX dag_run_asset_event_event ON dag_run_asset_event (event_id);
