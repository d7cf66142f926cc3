-- The scheduler reads scheduled instances a page at a time in priority order. A partial index
-- in exactly that order lets the page read stop at its limit instead of sorting every
-- scheduled instance on every step; it holds only the scheduled rows, so the writes of the
-- other states do not maintain it.
CREATE INDEX task_instance_scheduled_order
    ON task_instance (priority_weight DESC, logical_date, run_pk, task_id)
    WHERE state = 'scheduled';
