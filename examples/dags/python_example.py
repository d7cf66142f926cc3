"""The functions the python_example DAG calls (python_example.yaml).

The DAGs folder is on the import path, so this module is `python_example`. A function gets
the context values it names as parameters (or all of them with `**context`), after its
`op_args`; its return value becomes the task's `return_value` XCom.
"""

import datetime


def extract(table, limit, ds, **context):
    rows = [{"table": table, "row": i, "day": ds} for i in range(int(limit))]
    print("extracted %d rows of %s for %s (run %s)" % (len(rows), table, ds, context["run_id"]))
    return rows


def summarize(ds, ti, logical_date):
    ti.xcom_push(key="checked_at", value=datetime.datetime.now(datetime.timezone.utc).isoformat())
    print("summarizing %s, try %d, logical date %s" % (ds, ti.try_number, logical_date.isoformat()))
    return {"day": ds, "weekday": logical_date.strftime("%A")}


def skip_on_weekends(logical_date):
    if logical_date.weekday() >= 5:
        # Any exception class named AirflowSkipException skips the task, as in Airflow.
        import updraft

        updraft.skip("no reports on weekends")
    print("a weekday: nothing to skip")
