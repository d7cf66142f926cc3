"""Drive updraft's REST API with Apache Airflow's official Python client.

Usage: python check_api.py BASE_URL USERNAME PASSWORD

The client authenticates as Airflow 3's do: a token from `POST /auth/token`, sent as
`Authorization: Bearer`.

Every response goes through the client's pydantic models, so a field missing, mistyped or
null where Airflow's schema forbids it fails here. Exits non-zero (with a traceback) on the
first failed check.
"""

import json
import sys
import time
import urllib.error
import urllib.request

import airflow_client.client as client
from airflow_client.client.api import (
    dag_api,
    dag_run_api,
    dag_source_api,
    dag_version_api,
    import_error_api,
    monitor_api,
    pool_api,
    task_instance_api,
    version_api,
)
from airflow_client.client.exceptions import ApiException
from airflow_client.client.models import (
    ClearTaskInstancesBody,
    DAGPatchBody,
    DAGRunClearBody,
    DAGRunPatchBody,
    PoolBody,
    PatchTaskInstanceBody,
    PoolPatchBody,
    TaskInstanceState,
    TriggerDAGRunPostBody,
)

DAG_ID = "params_example"
DEADLINE_SECONDS = 60


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def expect_status(status, call, *args, **kwargs):
    try:
        call(*args, **kwargs)
    except ApiException as e:
        check(e.status == status, f"expected {status}, got {e.status}: {e.body}")
        return
    raise AssertionError(f"expected HTTP {status}, the call succeeded")


def wait_for(what, probe):
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def access_token(base_url, username, password):
    request = urllib.request.Request(
        f"{base_url}/auth/token",
        data=json.dumps({"username": username, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request) as response:
        check(response.status == 201, f"POST /auth/token: {response.status}")
        return json.load(response)["access_token"]


def main(base_url, username, password):
    # Without a token the API refuses.
    anonymous = dag_api.DAGApi(client.ApiClient(client.Configuration(host=base_url)))
    expect_status(401, anonymous.get_dags)
    token = access_token(base_url, username, password)
    api = client.ApiClient(client.Configuration(host=base_url, access_token=token))
    dags = dag_api.DAGApi(api)
    runs = dag_run_api.DagRunApi(api)
    tis = task_instance_api.TaskInstanceApi(api)

    # DAGs: listed (once the scheduler has loaded the folder), paused at creation, unpaused.
    def loaded():
        found = dags.get_dags(limit=100)
        return found if DAG_ID in [d.dag_id for d in found.dags] else None

    listing = wait_for("the example DAGs to be loaded", loaded)
    ids = [d.dag_id for d in listing.dags]
    check(listing.total_entries == len(ids), "total_entries counts the DAGs")
    dag = dags.get_dag(DAG_ID)
    check(dag.is_paused, "new DAGs start paused")
    check(dag.bundle_name == "dags-folder", dag.bundle_name)
    check([t.name for t in dag.tags] == ["example", "params"], dag.tags)
    tagged = dags.get_dags(tags=["params"], limit=10)
    check([d.dag_id for d in tagged.dags] == [DAG_ID], tagged)
    check(not dags.patch_dag(DAG_ID, DAGPatchBody(is_paused=False)).is_paused, "unpaused")
    check(not dags.get_dag(DAG_ID).is_paused, "the pause flag was recorded")
    details = dags.get_dag_details(DAG_ID)
    check(details.params["limit"]["value"] == 10, details.params)
    check(details.latest_dag_version.version_number == 1, details.latest_dag_version)
    versions = dag_version_api.DagVersionApi(api).get_dag_versions(DAG_ID)
    check(versions.total_entries == 1, versions)
    source = dag_source_api.DagSourceApi(api).get_dag_source(DAG_ID)
    check("params_example" in source.content, source.content)

    # Conf is validated against the DAG's params.
    expect_status(
        400,
        runs.trigger_dag_run,
        DAG_ID,
        TriggerDAGRunPostBody(conf={"limit": 1000}),
    )
    expect_status(404, dags.get_dag, "no_such_dag")

    # A run with conf, to success.
    run = runs.trigger_dag_run(
        DAG_ID,
        TriggerDAGRunPostBody(
            dag_run_id="client_run",
            conf={"region": "eu", "limit": 50, "mode": "slow"},
            note="from the official client",
        ),
    )
    check(run.dag_run_id == "client_run", run)
    check(run.conf == {"region": "eu", "limit": 50, "mode": "slow"}, run.conf)
    check(run.note == "from the official client", run.note)
    expect_status(
        409,
        runs.trigger_dag_run,
        DAG_ID,
        TriggerDAGRunPostBody(dag_run_id="client_run"),
    )

    def finished():
        current = runs.get_dag_run(DAG_ID, "client_run")
        state = current.state.value
        return current if state in ("success", "failed") else None

    done = wait_for("the run to finish", finished)
    check(done.state.value == "success", f"run ended {done.state}")
    check(done.end_date is not None and done.start_date is not None, done)
    listed = runs.get_dag_runs(DAG_ID, state=["success"], limit=10)
    check("client_run" in [r.dag_run_id for r in listed.dag_runs], listed)
    everywhere = runs.get_dag_runs("~", limit=100)
    check(everywhere.total_entries >= 1, everywhere)

    # Task instances and their states.
    instances = tis.get_task_instances(DAG_ID, "client_run")
    states = {ti.task_id: ti.state.value for ti in instances.task_instances}
    check(states == {"show_params": "success", "process": "success"}, states)
    one = tis.get_task_instance(DAG_ID, "client_run", "show_params")
    check(one.try_number == 1 and one.map_index == -1, one)
    tries = tis.get_task_instance_tries(DAG_ID, "client_run", "show_params")
    check(tries.total_entries == 1 and tries.task_instances[0].state.value == "success", tries)

    # The log of the first try shows the conf's values.
    log = tis.get_log(DAG_ID, "client_run", "show_params", 1)
    lines = [m.event for m in log.content.actual_instance]
    check(any("region=eu limit=50 mode=slow" in line for line in lines), lines)
    check(log.continuation_token is not None, "a continuation token")
    tail = tis.get_log(DAG_ID, "client_run", "show_params", 1, token=log.continuation_token)
    check(tail.content.actual_instance == [], tail)

    # Marking and clearing.
    cleared = tis.post_clear_task_instances(
        DAG_ID,
        ClearTaskInstancesBody(dag_run_id="client_run", only_failed=False, dry_run=True),
    )
    check(cleared.total_entries == 2, cleared)
    marked = tis.patch_task_instance(
        DAG_ID,
        "client_run",
        "process",
        PatchTaskInstanceBody(new_state=TaskInstanceState.FAILED),
    )
    check(marked.task_instances[0].state.value == "failed", marked)
    patched = runs.patch_dag_run(DAG_ID, "client_run", DAGRunPatchBody(note="checked"))
    check(patched.note == "checked", patched)
    # The client cannot deserialize a dry run's instances (each matches both members of its
    # `oneOf`, whatever the server), so this one is read as plain JSON.
    raw = runs.clear_dag_run_without_preload_content(
        DAG_ID, "client_run", DAGRunClearBody(dry_run=True, only_failed=True)
    )
    check(raw.status == 200, raw.status)
    dry = json.loads(raw.data)
    check([ti["task_id"] for ti in dry["task_instances"]] == ["process"], dry)
    rerun = runs.clear_dag_run(DAG_ID, "client_run", DAGRunClearBody(dry_run=False))
    check(rerun.actual_instance.state.value == "queued", rerun)
    wait_for("the cleared run to finish again", finished)

    # Pools, import errors, health, version.
    pools = pool_api.PoolApi(api)
    created = pools.post_pool(PoolBody(name="client_pool", slots=3, description="test"))
    check(created.open_slots == 3, created)
    check(pools.patch_pool("client_pool", PoolPatchBody(slots=4)).slots == 4, "patched")
    check("client_pool" in [p.name for p in pools.get_pools().pools], "listed")
    pools.delete_pool("client_pool")
    expect_status(404, pools.get_pool, "client_pool")
    expect_status(400, pools.delete_pool, "default_pool")
    import_errors = import_error_api.ImportErrorApi(api)

    def broken_file_found():
        found = import_errors.get_import_errors()
        return found if found.total_entries >= 1 else None

    errors = wait_for("the broken DAG file's import error", broken_file_found)
    error = errors.import_errors[0]
    check(error.filename == "broken.yaml", error)
    check(import_errors.get_import_error(error.import_error_id) == error, "by id")
    expect_status(404, import_errors.get_import_error, error.import_error_id + 1000)
    health = monitor_api.MonitorApi(api).get_health()
    check(health.metadatabase.status == "healthy", health)
    check(health.scheduler.status == "healthy", health)
    # Airflow's client declares /version public, so it sends no token: updraft keeps only the
    # health check open, and the token goes in by hand.
    version = version_api.VersionApi(api).get_version(
        _headers={"Authorization": f"Bearer {token}"}
    )
    check(version.version, version)
    print("official client checks passed")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
