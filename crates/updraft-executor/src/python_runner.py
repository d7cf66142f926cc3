"""Runs one try of an updraft `python:` task: imports the callable, calls it, pushes XComs.

Embedded in the updraft binary and run as `<interpreter> -u -c <this file>`. The call is
described by the JSON file named in UPDRAFT_PYTHON_CALL_FILE; the run's conf is in the file
named in UPDRAFT_CONF_FILE; XComs go to UPDRAFT_XCOM_PATH as one JSON object.

Exit codes: 0 success, 99 skipped (an exception whose class is named AirflowSkipException),
1 anything else (import error, exception, a value that is not JSON).
Compatible with Python 3.8 and later; uses the standard library only.
"""

import datetime
import importlib
import inspect
import json
import os
import sys
import traceback
import types

SKIP_EXIT_CODE = 99
SKIP_CLASS_NAME = "AirflowSkipException"


def say(message):
    sys.stdout.write("[updraft] " + message + "\n")
    sys.stdout.flush()


def fail(message):
    say(message)
    sys.exit(1)


class AirflowSkipException(Exception):
    """Raise it (or any exception class of this name) to end the try as skipped."""


def skip(reason=""):
    raise AirflowSkipException(reason)


def install_helper_module():
    """`import updraft` in a task gives `updraft.skip()` and `updraft.AirflowSkipException`."""
    module = types.ModuleType("updraft")
    module.__doc__ = "Helpers for updraft python tasks."
    module.AirflowSkipException = AirflowSkipException
    module.skip = skip
    sys.modules["updraft"] = module


def read_json_file(variable, what):
    path = os.environ.get(variable)
    if not path:
        fail("%s is not set: this process was not started by updraft" % variable)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        fail("cannot read %s from %s: %s" % (what, path, e))


def to_json(value, what):
    """`value` as JSON text, or an exit naming `what` when it is not JSON."""
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        fail(
            "%s cannot be pushed as an XCom: it is not JSON serialisable (%s: %s); "
            "return or push JSON values (dict, list, str, int, float, bool, None)"
            % (what, type(e).__name__, e)
        )


class XComs:
    def __init__(self):
        self.values = {}

    def push(self, key, value):
        if not isinstance(key, str) or not key:
            raise ValueError("an XCom key must be a non-empty string, got %r" % (key,))
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise TypeError(
                "XCom %r is not JSON serialisable (%s): push JSON values" % (key, e)
            ) from None
        self.values[key] = value

    def write(self):
        if not self.values:
            return
        path = os.environ.get("UPDRAFT_XCOM_PATH")
        if not path:
            say(
                "XComs not written (%s): this try was given no UPDRAFT_XCOM_PATH"
                % ", ".join(sorted(self.values))
            )
            return
        text = to_json(self.values, "the XComs")
        try:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as e:
            fail("cannot write the XComs to %s: %s" % (path, e))


class DagRun:
    def __init__(self, context, conf):
        self.conf = conf
        self.run_id = context["run_id"]
        self.dag_id = context["dag_id"]
        self.run_type = context["run_type"]
        self.logical_date = context["logical_date"]
        self.data_interval_start = context["data_interval_start"]
        self.data_interval_end = context["data_interval_end"]

    def __repr__(self):
        return "<DagRun %s @ %s: %s>" % (self.dag_id, self.logical_date, self.run_id)


class TaskInstance:
    def __init__(self, context, xcoms):
        self.task_id = context["task_id"]
        self.dag_id = context["dag_id"]
        self.run_id = context["run_id"]
        self.try_number = context["try_number"]
        self.map_index = context["map_index"]
        self._xcoms = xcoms

    def xcom_push(self, key, value):
        self._xcoms.push(key, value)

    def xcom_pull(self, *args, **kwargs):
        raise NotImplementedError(
            "ti.xcom_pull is not available inside a python task: pull in a template "
            "instead, e.g. op_kwargs: {rows: \"{{ ti.xcom_pull(task_ids='extract') }}\"}"
        )

    def __repr__(self):
        return "<TaskInstance: %s.%s %s [running]>" % (self.dag_id, self.task_id, self.run_id)


def utc(text):
    value = datetime.datetime.fromisoformat(text)
    return value.astimezone(datetime.timezone.utc)


def build_context(described, conf, xcoms):
    context = dict(described)
    for name in ("logical_date", "data_interval_start", "data_interval_end"):
        context[name] = utc(described[name])
    context["dag_run"] = DagRun(context, conf)
    ti = TaskInstance(context, xcoms)
    context["ti"] = ti
    context["task_instance"] = ti
    return context


def import_callable(name, folders):
    module_name, _, function_path = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except BaseException as e:
        traceback.print_exc(file=sys.stdout)
        where = " and ".join(folders) or "no DAGs folder (UPDRAFT_DAGS_FOLDER is not set)"
        fail(
            "cannot import module `%s` of callable `%s`: %s: %s (looked in %s, then the Python path)"
            % (module_name, name, type(e).__name__, e, where)
        )
    target = module
    for part in function_path.split("."):
        if not hasattr(target, part):
            where = getattr(module, "__file__", None) or module_name
            fail(
                "module `%s` (%s) has no function `%s`: callable `%s` cannot be called"
                % (module_name, where, function_path, name)
            )
        target = getattr(target, part)
    if not callable(target):
        fail("`%s` is a %s, not a function" % (name, type(target).__name__))
    return target


def keyword_arguments(function, args, kwargs):
    """Airflow's KeywordParameters.determine: all of them for a `**kwargs` callable, else
    only those it names; a positional argument may not take the name of a keyword one."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return kwargs
    parameters = signature.parameters
    for name in list(parameters)[: len(args)]:
        if name in kwargs:
            fail(
                "the key %r in op_args is a part of kwargs and therefore reserved "
                "(the callable's parameter %r takes a positional argument and is also a "
                "context name or an op_kwargs key)" % (name, name)
            )
    if any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
        return kwargs
    return {key: value for key, value in kwargs.items() if key in parameters}


def is_skip(exception):
    return any(cls.__name__ == SKIP_CLASS_NAME for cls in type(exception).__mro__)


def add_import_folders():
    """The DAG file's folder and the DAGs folder, after what is already there (as Airflow
    appends its DAGs folder)."""
    folders = []
    dag_file = os.environ.get("UPDRAFT_DAG_FILE")
    if dag_file:
        folders.append(os.path.dirname(dag_file))
    dags_folder = os.environ.get("UPDRAFT_DAGS_FOLDER")
    if dags_folder:
        folders.append(dags_folder)
    for folder in folders:
        if folder not in sys.path:
            sys.path.append(folder)
    return folders


def main():
    call = read_json_file("UPDRAFT_PYTHON_CALL_FILE", "the call")
    conf = read_json_file("UPDRAFT_CONF_FILE", "the run's conf")
    install_helper_module()
    folders = add_import_folders()
    name = call["callable"]
    function = import_callable(name, folders)
    xcoms = XComs()
    context = build_context(call["context"], conf, xcoms)
    args = list(call["op_args"])
    merged = dict(context)
    merged.update(call["op_kwargs"])
    kwargs = keyword_arguments(function, args, merged)
    say("calling %s" % name)
    try:
        value = function(*args, **kwargs)
    except SystemExit:
        raise
    except BaseException as e:
        traceback.print_exc(file=sys.stdout)
        sys.stdout.flush()
        if is_skip(e):
            say("skipped: %s raised %s" % (name, type(e).__name__))
            sys.exit(SKIP_EXIT_CODE)
        fail("%s raised %s" % (name, type(e).__name__))
    print("Done. Returned value was: %s" % (value,))
    sys.stdout.flush()
    if value is not None:
        to_json(value, "the return value of %s" % name)
        xcoms.values["return_value"] = value
    xcoms.write()


main()
