"""Lints and renders the updraft Helm chart with one values file, through the Helm SDK
(helm-python-sdk, Helm embedded as a library), and checks every rendered object against the
Kubernetes JSON schemas (kubernetes-validate, offline, strict: unknown fields are errors).

    render.py CHART VALUES_FILE [EXTRA_VALUES_JSON]

Prints one JSON document: {"lint": [...], "objects": [...], "schema_skipped": [...],
"secrets": {name: {key: decoded value}}}, the objects in the order of their templates.
Exits 1, saying why, when the lint reports a warning or an error, a template fails, or an
object does not match its schema.
"""

import base64
import json
import sys

import helm_python as helm
import kubernetes_validate
import yaml

KUBERNETES_VERSION = "1.30.0"
# Custom resources: no schema of theirs ships with kubernetes-validate. The test asserts on
# them itself.
CUSTOM_KINDS = {
    ("networking.gke.io/v1", "ManagedCertificate"),
    ("cloud.google.com/v1", "BackendConfig"),
    ("external-secrets.io/v1", "ExternalSecret"),
    ("external-secrets.io/v1beta1", "ExternalSecret"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
}


def merge(base, extra):
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def main():
    chart_dir, values_file = sys.argv[1], sys.argv[2]
    extra = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    with open(values_file) as f:
        values = merge(yaml.safe_load(f) or {}, extra)

    problems = []
    report = helm.lint(chart_dir, values, strict=True, namespace="updraft",
                       kube_version="v" + KUBERNETES_VERSION)
    for message in report["messages"]:
        if message["severity"] >= 2:
            problems.append(f"lint: {message['path']}: {message['error']}")
    problems.extend(f"lint: {error}" for error in report.get("errors") or [])

    chart = helm.Chart.load(chart_dir)
    rendered = chart.render(values, name="updraft", namespace="updraft", is_install=True)
    objects = []
    for path in sorted(rendered):
        if not path.endswith(".yaml"):
            continue
        for document in yaml.safe_load_all(rendered[path]):
            if document:
                document.setdefault("metadata", {}).setdefault("annotations", {})
                document["metadata"]["annotations"].setdefault("test.updraft/template", path)
                objects.append(document)

    skipped = []
    for obj in objects:
        kind = (obj.get("apiVersion"), obj.get("kind"))
        if kind in CUSTOM_KINDS:
            skipped.append(f"{kind[1]}/{obj['metadata'].get('name')}")
            continue
        # The marker annotation is the test's, not the chart's: validate without it.
        check = json.loads(json.dumps(obj))
        annotations = check["metadata"]["annotations"]
        annotations.pop("test.updraft/template")
        if not annotations:
            del check["metadata"]["annotations"]
        try:
            kubernetes_validate.validate(check, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            problems.append(f"schema: {kind[1]}/{obj['metadata'].get('name')}: "
                            f"{'.'.join(str(p) for p in e.path)}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"schema: no schema for {kind[0]} {kind[1]}")

    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)
    secrets = {}
    for obj in objects:
        if obj.get("kind") == "Secret":
            data = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
            data.update(obj.get("stringData") or {})
            secrets[obj["metadata"]["name"]] = data
    json.dump({"lint": report["messages"], "objects": objects, "schema_skipped": skipped,
               "secrets": secrets}, sys.stdout)


if __name__ == "__main__":
    main()
