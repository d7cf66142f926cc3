//! Reading the `pod:` task kind.
//!
//! What can be checked without the templates folder or a cluster is checked here, so a DAG file
//! with a bad pod task is an import error pointing at the field: unknown keys, types, a
//! template path that could leave the tenant's templates folder, a namespace that is not a
//! Kubernetes name. The executor checks the rendered values again before creating anything.

use std::collections::BTreeMap;

use crate::diag::{self, Diagnostics, Schema, quoted};
use crate::model::{DeletePolicy, PodResources, PodTask, TaskKind};
use crate::yaml::{Node, Value};

const POD_KEYS: [&str; 14] = [
    "template",
    "spec",
    "container",
    "image",
    "cmds",
    "args",
    "env",
    "resources",
    "namespace",
    "labels",
    "annotations",
    "delete_pod",
    "startup_timeout",
    "on_finish_action",
];

fn pod_hint(key: &str) -> Option<String> {
    let advice = match key {
        "pod_template_file" | "template_file" => {
            "use `template` (a path inside templates/<tenant>/)"
        }
        "arguments" => "use `args`",
        "command" => "use `cmds` (the container's command) and `args`",
        "env_vars" => "use `env`",
        "container_resources" => "use `resources`",
        "full_pod_spec" | "pod_spec" => "use `spec` for an inline pod spec",
        "name" => "pod names are chosen by updraft so it can find its pods again",
        _ => return None,
    };
    Some(advice.to_owned())
}

/// Reads the value of a task's `pod:` key.
pub(crate) fn pod_kind(diags: &mut Diagnostics<'_>, node: &Node) -> Option<TaskKind> {
    let schema = Schema {
        what: "pod",
        keys: &POD_KEYS,
        hint: pod_hint,
    };
    let before = diags.count();
    let fields = diag::fields(diags, node, &schema)?;
    let mut pod = PodTask::default();
    for (key, value) in fields.iter() {
        read_pod_field(diags, key, value, &mut pod);
    }
    if let (Some(_), Some(_)) = (fields.get("delete_pod"), fields.get("on_finish_action")) {
        let pos = fields
            .key_node("on_finish_action")
            .map_or(node.pos, |k| k.pos);
        diags.at(
            pos,
            "`pod` sets both `delete_pod` and `on_finish_action`; they are the same setting",
        );
    }
    if pod.template.is_some() && pod.spec.is_some() {
        let pos = fields.key_node("spec").map_or(node.pos, |k| k.pos);
        diags.at(
            pos,
            "`pod` sets both `template` and `spec`: use one (a template file, or an inline spec)",
        );
    }
    if ["template", "spec", "image"]
        .iter()
        .all(|key| fields.get(key).is_none())
    {
        diags.at(
            node.pos,
            "`pod` needs a `template` (a Pod manifest in templates/<tenant>/), an inline `spec`, or at least an `image`",
        );
    }
    (diags.count() == before).then_some(TaskKind::Pod(Box::new(pod)))
}

fn read_pod_field(diags: &mut Diagnostics<'_>, key: &str, node: &Node, pod: &mut PodTask) {
    let d = diags;
    match key {
        "template" => pod.template = template_path(d, node),
        "spec" => pod.spec = inline_spec(d, node),
        "container" => pod.container = diag::non_empty_string(d, node, "pod.container"),
        "image" => pod.image = diag::non_empty_string(d, node, "pod.image"),
        "cmds" => pod.cmds = strings(d, node, "pod.cmds"),
        "args" => pod.args = strings(d, node, "pod.args"),
        "env" => pod.env = diag::env_map(d, node, "pod.env").unwrap_or_default(),
        "resources" => pod.resources = resources(d, node),
        "namespace" => pod.namespace = namespace(d, node),
        "labels" => pod.labels = string_map(d, node, "pod.labels").unwrap_or_default(),
        "annotations" => {
            pod.annotations = string_map(d, node, "pod.annotations").unwrap_or_default()
        }
        "delete_pod" | "on_finish_action" => pod.delete_pod = delete_policy(d, node, key),
        "startup_timeout" => {
            pod.startup_timeout = diag::duration(d, node, "pod.startup_timeout", true)
        }
        _ => {}
    }
}

fn strings(diags: &mut Diagnostics<'_>, node: &Node, name: &str) -> Option<Vec<String>> {
    let items = diag::string_list(diags, node, name, false)?;
    Some(items.into_iter().map(|(s, _)| s).collect())
}

fn has_template_syntax(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

/// Checks a template path as written; a path with template syntax is checked once rendered.
fn template_path(diags: &mut Diagnostics<'_>, node: &Node) -> Option<String> {
    let path = diag::non_empty_string(diags, node, "pod.template")?;
    if has_template_syntax(&path) {
        return Some(path);
    }
    match check_template_path(&path) {
        Ok(()) => Some(path),
        Err(message) => {
            diags.at(node.pos, format!("`pod.template` {message}"));
            None
        }
    }
}

/// A template path must stay inside the tenant's templates folder: relative, no `..`, no NUL.
/// (Symbolic links leading out are refused when the file is opened.)
pub fn check_template_path(path: &str) -> Result<(), String> {
    if path.starts_with('/') || path.starts_with('\\') {
        return Err(format!(
            "{} is absolute; it must be relative to templates/<tenant>/",
            quoted(path)
        ));
    }
    if path.contains('\0') {
        return Err("contains a NUL byte".to_owned());
    }
    if path.split(['/', '\\']).any(|part| part == "..") {
        return Err(format!(
            "{} leaves the tenant's templates folder (`..` is not allowed)",
            quoted(path)
        ));
    }
    if path
        .split(['/', '\\'])
        .all(|part| part.is_empty() || part == ".")
    {
        return Err(format!("{} names no file", quoted(path)));
    }
    Ok(())
}

/// A Kubernetes namespace name (RFC 1123 label): at most 63 lowercase letters, digits and
/// `-`, starting and ending with a letter or digit.
pub fn check_namespace(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{} is not a Kubernetes namespace name (at most 63 lowercase letters, digits and `-`, starting and ending with a letter or digit)",
            quoted(name)
        ))
    }
}

fn namespace(diags: &mut Diagnostics<'_>, node: &Node) -> Option<String> {
    let name = diag::non_empty_string(diags, node, "pod.namespace")?;
    if has_template_syntax(&name) {
        return Some(name);
    }
    match check_namespace(&name) {
        Ok(()) => Some(name),
        Err(message) => {
            diags.at(node.pos, format!("`pod.namespace` {message}"));
            None
        }
    }
}

fn delete_policy(diags: &mut Diagnostics<'_>, node: &Node, key: &str) -> Option<DeletePolicy> {
    let name = diag::string(diags, node, key)?;
    if let Some(policy) = DeletePolicy::from_name(&name) {
        return Some(policy);
    }
    let names: Vec<&str> = DeletePolicy::ALL.iter().map(|p| p.as_str()).collect();
    diags.at(
        node.pos,
        format!(
            "unknown `pod.{key}` {}{} (one of: {}; or Airflow's delete_pod, delete_succeeded_pod, keep_pod)",
            quoted(&name),
            diag::did_you_mean(&name, names.iter().copied()),
            names.join(", ")
        ),
    );
    None
}

/// A mapping of strings (numbers and booleans are taken as their text).
fn string_map(
    diags: &mut Diagnostics<'_>,
    node: &Node,
    name: &str,
) -> Option<BTreeMap<String, String>> {
    let entries = diag::mapping(diags, node, name)?;
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (key, _, value) in entries {
        match scalar_text(value) {
            Some(text) => {
                out.insert(key.to_owned(), text);
            }
            None => {
                diag::wrong_type(diags, value, &format!("{name}.{key}"), "a string");
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

fn scalar_text(node: &Node) -> Option<String> {
    match &node.value {
        Value::Str(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn resources(diags: &mut Diagnostics<'_>, node: &Node) -> Option<PodResources> {
    let schema = Schema {
        what: "pod.resources",
        keys: &["requests", "limits"],
        hint: diag::no_hint,
    };
    let fields = diag::fields(diags, node, &schema)?;
    let mut out = PodResources::default();
    if let Some(n) = fields.get("requests") {
        out.requests = string_map(diags, n, "pod.resources.requests")?;
    }
    if let Some(n) = fields.get("limits") {
        out.limits = string_map(diags, n, "pod.resources.limits")?;
    }
    Some(out)
}

/// An inline pod spec: any mapping, kept as JSON (Kubernetes checks the spec itself; a full
/// manifest with `apiVersion`/`kind` belongs in a template file).
fn inline_spec(diags: &mut Diagnostics<'_>, node: &Node) -> Option<serde_json::Value> {
    let Value::Map(entries) = &node.value else {
        diag::wrong_type(diags, node, "pod.spec", "a mapping (a pod spec)");
        return None;
    };
    if let Some((key, _)) = entries
        .iter()
        .find(|(k, _)| matches!(k.as_str(), Some("apiVersion" | "kind" | "metadata")))
    {
        diags.at(
            key.pos,
            "`pod.spec` is a pod's spec (containers, volumes, ...), not a whole manifest: put a manifest in a template file",
        );
        return None;
    }
    let containers = entries
        .iter()
        .find(|(k, _)| k.as_str() == Some("containers"));
    if containers.is_none() {
        diags.at(node.pos, "`pod.spec` has no `containers`");
        return None;
    }
    to_json(diags, node, "pod.spec")
}

pub(crate) fn to_json(
    diags: &mut Diagnostics<'_>,
    node: &Node,
    path: &str,
) -> Option<serde_json::Value> {
    use serde_json::Value as J;
    Some(match &node.value {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => match i64::try_from(*i) {
            Ok(i) => J::from(i),
            Err(_) => {
                diags.at(node.pos, format!("{} is too large", quoted(path)));
                return None;
            }
        },
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Value::Str(s) => J::String(s.clone()),
        Value::Seq(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                out.push(to_json(diags, item, &format!("{path}[{i}]"))?);
            }
            J::Array(out)
        }
        Value::Map(_) => {
            let entries = diag::mapping(diags, node, path)?;
            let mut out = serde_json::Map::new();
            for (key, _, value) in entries {
                out.insert(
                    key.to_owned(),
                    to_json(diags, value, &format!("{path}.{key}"))?,
                );
            }
            J::Object(out)
        }
    })
}
