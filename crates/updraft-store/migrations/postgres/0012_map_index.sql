-- Dynamic task mapping: a task instance is keyed by (run, task, map index), Airflow's key;
-- map_index -1 is an unmapped instance (or a mapped task's placeholder before it expands).
-- The try history and XComs follow their instance by the same three columns.

ALTER TABLE task_try DROP CONSTRAINT task_try_run_pk_task_id_fkey;
ALTER TABLE xcom DROP CONSTRAINT xcom_run_pk_task_id_fkey;

ALTER TABLE task_instance ADD COLUMN map_index BIGINT NOT NULL DEFAULT -1;
ALTER TABLE task_instance DROP CONSTRAINT task_instance_pkey;
ALTER TABLE task_instance ADD PRIMARY KEY (run_pk, task_id, map_index);

ALTER TABLE task_try ADD COLUMN map_index BIGINT NOT NULL DEFAULT -1;
ALTER TABLE task_try DROP CONSTRAINT task_try_pkey;
ALTER TABLE task_try ADD PRIMARY KEY (run_pk, task_id, map_index, try_number);
ALTER TABLE task_try ADD FOREIGN KEY (run_pk, task_id, map_index)
    REFERENCES task_instance (run_pk, task_id, map_index) ON DELETE CASCADE;

ALTER TABLE xcom ADD FOREIGN KEY (run_pk, task_id, map_index)
    REFERENCES task_instance (run_pk, task_id, map_index) ON DELETE CASCADE;

-- The page order gains the map index, so a mapped task's instances queue in index order.
DROP INDEX task_instance_scheduled_order;
CREATE INDEX task_instance_scheduled_order
    ON task_instance (priority_weight DESC, logical_date, run_pk, task_id, map_index)
    WHERE state = 'scheduled';

-- The change log's statement trigger pairs old and new rows by their whole key.
CREATE OR REPLACE FUNCTION run_change_on_ti_statement() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO run_change (run_pk, seq)
    SELECT changed.run_pk, nextval('run_change_seq_source')
    FROM (
        SELECT DISTINCT n.run_pk
        FROM new_rows n
        JOIN old_rows o ON o.run_pk = n.run_pk AND o.task_id = n.task_id
                       AND o.map_index = n.map_index
        WHERE n.state IS DISTINCT FROM o.state
        ORDER BY n.run_pk
    ) AS changed
    ON CONFLICT (run_pk) DO UPDATE SET seq = excluded.seq;
    RETURN NULL;
END;
$$;
