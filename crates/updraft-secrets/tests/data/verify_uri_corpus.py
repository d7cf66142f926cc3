"""Checks uri_corpus.json against Apache Airflow's own Connection.

Run with the Python of a virtualenv where apache-airflow is installed:
    python verify_uri_corpus.py uri_corpus.json
Prints each case that Airflow reads or writes differently, and exits non-zero if any does.
"""

import json
import os
import sys
import tempfile

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp())
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")

from airflow.models import Connection  # noqa: E402


def main(path):
    corpus = json.load(open(path))
    failures = 0
    for case in corpus["from_uri"]:
        try:
            conn = Connection(conn_id="c", uri=case["uri"])
        except Exception as error:  # Airflow raises several kinds
            if "error" not in case:
                failures += 1
                print("unexpected error", case["uri"], error)
            continue
        if "error" in case:
            failures += 1
            print("expected an error", case["uri"])
            continue
        got = {
            "conn_type": conn.conn_type,
            "host": conn.host,
            "login": conn.login,
            "password": conn.password,
            "port": conn.port,
            "schema": conn.schema,
            "extra": conn.extra_dejson,
        }
        if got != case["expect"]:
            failures += 1
            print("differs", case["uri"], got, case["expect"])
    for case in corpus["to_uri"]:
        if case.get("updraft_only"):
            continue
        uri = Connection(conn_id="c", **case["conn"]).get_uri()
        if uri != case["uri"]:
            failures += 1
            print("get_uri differs", case["conn"], uri, case["uri"])
    print(f"{failures} differences")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
