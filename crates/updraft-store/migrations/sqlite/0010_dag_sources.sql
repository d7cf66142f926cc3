-- DAG sources (Airflow's DAG bundles): a git repository or an object-store prefix synced by
-- the schedulers, each sync recorded here; requests to sync now wait in `sync_requested_at`.
CREATE TABLE dag_source (
    name               TEXT    NOT NULL PRIMARY KEY,
    -- NULL: mounted at the root, folder names give tenants.
    tenant             TEXT,
    kind               TEXT    NOT NULL,
    -- Without credentials.
    url                TEXT    NOT NULL,
    reference          TEXT,
    revision           TEXT,
    revision_url       TEXT,
    last_sync_at       INTEGER,
    last_success_at    INTEGER,
    failures           INTEGER NOT NULL DEFAULT 0,
    error              TEXT,
    sync_requested_at  INTEGER
);

-- The source and revision a DAG was last read at (NULL: the plain DAGs folder), the source and
-- revision each version was first read at, and the revision a run reads its files from.
ALTER TABLE dag ADD COLUMN bundle_name TEXT;
ALTER TABLE dag ADD COLUMN bundle_version TEXT;
ALTER TABLE dag_version ADD COLUMN bundle_name TEXT;
ALTER TABLE dag_version ADD COLUMN bundle_version TEXT;
ALTER TABLE dag_run ADD COLUMN bundle_version TEXT;
