//! Reading a task's `expand:` (Airflow's dynamic task mapping) and checking what it names.
//!
//! Each key of `expand:` is an argument name; its value is a literal list, a template string
//! rendering to a JSON list or object, or `{xcom: {task_id: ..., key: ...}}` (`{xcom: id}` for
//! the `return_value` key). The task an XCom reference names becomes an upstream of the mapped
//! task, as in Airflow; it is checked once the graph's ids are known ([`check_refs`]).

use crate::diag::{self, Diagnostics, quoted};
use crate::model::{Expand, MapSource, MappedArg, TaskKind};
use crate::pod::to_json;
use crate::yaml::{Node, Value};

/// Airflow's default XCom key.
const RETURN_VALUE: &str = "return_value";

/// An XCom reference as written: the task id and the node naming it.
pub(crate) type XComRef<'n> = (String, &'n Node);

/// Reads the value of `expand:`; the XCom references come back with their nodes.
pub(crate) fn expand<'n>(
    diags: &mut Diagnostics<'_>,
    node: &'n Node,
) -> Option<(Expand, Vec<XComRef<'n>>)> {
    let entries = diag::mapping(diags, node, "expand")?;
    if entries.is_empty() {
        diags.at(
            node.pos,
            "`expand` is empty: name at least one argument and the values to map over",
        );
        return None;
    }
    let before = diags.count();
    let mut args = Vec::with_capacity(entries.len());
    let mut refs = Vec::new();
    for (name, key, value) in entries {
        if let Err(message) = check_arg_name(name) {
            diags.at(key.pos, message);
            continue;
        }
        if let Some(source) = map_source(diags, name, value, &mut refs) {
            args.push(MappedArg {
                name: name.to_owned(),
                source,
            });
        }
    }
    (diags.count() == before).then_some((Expand { args }, refs))
}

/// An argument name must be a Python identifier: it becomes a keyword argument and
/// `{{ mapped.<name> }}`.
fn check_arg_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(format!(
            "`expand` argument {} must be an identifier (letters, digits and `_`, not starting with a digit)",
            quoted(name)
        ))
    }
}

fn map_source<'n>(
    diags: &mut Diagnostics<'_>,
    name: &str,
    node: &'n Node,
    refs: &mut Vec<XComRef<'n>>,
) -> Option<MapSource> {
    let path = format!("expand.{name}");
    match &node.value {
        Value::Seq(_) => match to_json(diags, node, &path)? {
            serde_json::Value::Array(items) => Some(MapSource::Literal(items)),
            _ => None,
        },
        Value::Str(text) if text.contains("{{") => Some(MapSource::Template(text.clone())),
        Value::Map(_) => xcom_ref(diags, &path, node, refs),
        _ => {
            diags.at(
                node.pos,
                format!(
                    "{} must be a list, a template string such as \"{{{{ params.files }}}}\" or \
                     {{xcom: {{task_id: ..., key: ...}}}}, found {}",
                    quoted(&path),
                    diag::describe(node)
                ),
            );
            None
        }
    }
}

/// `{xcom: task_id}` or `{xcom: {task_id: ..., key: ...}}`.
fn xcom_ref<'n>(
    diags: &mut Diagnostics<'_>,
    path: &str,
    node: &'n Node,
    refs: &mut Vec<XComRef<'n>>,
) -> Option<MapSource> {
    let schema = diag::Schema {
        what: path,
        keys: &["xcom"],
        hint: diag::no_hint,
    };
    let fields = diag::fields(diags, node, &schema)?;
    let Some(inner) = fields.get("xcom") else {
        diags.at(
            node.pos,
            format!(
                "{} maps over an upstream's XCom with {{xcom: {{task_id: ..., key: ...}}}}",
                quoted(path)
            ),
        );
        return None;
    };
    let (task_id, id_node, key) = match &inner.value {
        Value::Str(id) => (id.clone(), inner, RETURN_VALUE.to_owned()),
        _ => {
            let what = format!("{path}.xcom");
            let schema = diag::Schema {
                what: &what,
                keys: &["task_id", "key"],
                hint: diag::no_hint,
            };
            let fields = diag::fields(diags, inner, &schema)?;
            let Some(id_node) = fields.get("task_id") else {
                diags.at(inner.pos, format!("{} has no `task_id`", quoted(&what)));
                return None;
            };
            let id = diag::non_empty_string(diags, id_node, &format!("{what}.task_id"))?;
            let key = match fields.get("key") {
                Some(k) => diag::non_empty_string(diags, k, &format!("{what}.key"))?,
                None => RETURN_VALUE.to_owned(),
            };
            (id, id_node, key)
        }
    };
    refs.push((task_id.clone(), id_node));
    Some(MapSource::XCom { task_id, key })
}

/// What a mapped task may not also be: a branch or short circuit (their `return_value` steers
/// one set of downstream tasks, not one per map index), a pod (not supported yet: its pod's
/// name and labels do not carry a map index), and a python task whose `op_kwargs`
/// name an expanded argument (Airflow refuses a partial and an expanded value of one name).
pub(crate) fn check_task(
    diags: &mut Diagnostics<'_>,
    label: &str,
    expand: &Expand,
    expand_node: &Node,
    kind: &TaskKind,
    branching: bool,
) {
    if branching {
        diags.at(
            expand_node.pos,
            format!(
                "{label} sets `expand` and `branch`/`short_circuit`; a mapped task cannot branch in updraft"
            ),
        );
    }
    if let TaskKind::Pod(_) = kind {
        diags.at(
            expand_node.pos,
            format!(
                "{label} sets `expand` on a `pod` task; mapped pod tasks are not supported yet"
            ),
        );
    }
    if let TaskKind::Python(python) = kind {
        for arg in &expand.args {
            if python.op_kwargs.contains_key(&arg.name) {
                diags.at(
                    expand_node.pos,
                    format!(
                        "{label} maps {} in `expand` and also sets it in `python.op_kwargs`; \
                         an argument is either expanded or partial",
                        quoted(&arg.name)
                    ),
                );
            }
        }
    }
}

/// Reports XCom references naming no task of the DAG (at the `task_id` node) or the task
/// itself. Returns the references that name another task, to become upstreams.
pub(crate) fn check_refs<'n>(
    diags: &mut Diagnostics<'_>,
    task_id: &str,
    refs: &[XComRef<'n>],
    ids: &std::collections::HashSet<&str>,
) -> Vec<XComRef<'n>> {
    let mut found = Vec::new();
    for (id, node) in refs {
        if id == task_id {
            diags.at(
                node.pos,
                format!("task {} cannot map over its own XCom", quoted(task_id)),
            );
        } else if ids.contains(id.as_str()) {
            found.push((id.clone(), *node));
        } else {
            let hint = diag::did_you_mean(id, ids.iter().copied());
            diags.at(
                node.pos,
                format!(
                    "`expand` of task {} maps over the XCom of task {}, which does not exist in this DAG{hint}",
                    quoted(task_id),
                    quoted(id)
                ),
            );
        }
    }
    found
}
