-- A focused evaluation asks whether any instance of a run is still scheduled, queued, running or
-- up_for_retry, once per run per step: this partial index answers it with one seek, however
-- big the run. It holds only the rows in those states (the same condition, written the same
-- way, as the query's, so the planners match them).
CREATE INDEX task_instance_progressing
    ON task_instance (run_pk)
    WHERE state IN ('scheduled', 'queued', 'running', 'up_for_retry');
