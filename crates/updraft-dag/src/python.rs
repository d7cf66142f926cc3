//! Reading the `python:` task kind.
//!
//! The callable's name is checked for shape (`module.path:function`), the interpreter choice
//! for exclusivity, and the arguments are kept as JSON (their strings are templates, rendered
//! when a try starts). Whether the module exists is a question for the try (or `dags lint`):
//! the DAG file is valid without it.

use std::collections::BTreeMap;

use crate::diag::{self, Diagnostics, Schema, quoted};
use crate::model::{PythonInterpreter, PythonTask, TaskKind};
use crate::pod::to_json;
use crate::yaml::{Node, Value};

const PYTHON_KEYS: [&str; 6] = [
    "callable",
    "op_args",
    "op_kwargs",
    "interpreter",
    "venv",
    "requirements",
];

/// The keys choosing the interpreter: at most one of them.
const INTERPRETER_KEYS: [&str; 3] = ["interpreter", "venv", "requirements"];

fn python_hint(key: &str) -> Option<String> {
    let advice = match key {
        "python_callable" | "function" | "func" => "use `callable: \"module.path:function\"`",
        "args" => "use `op_args`",
        "kwargs" => "use `op_kwargs`",
        "python" | "python_bin" | "executable" => {
            "use `interpreter` (a program name or an absolute path)"
        }
        "venv_path" | "virtualenv" => "use `venv` (a virtual environment's folder)",
        "templates_dict" => "put templated values in `op_kwargs`: its strings are templates",
        _ => return None,
    };
    Some(advice.to_owned())
}

/// Reads the value of a task's `python:` key.
pub(crate) fn python_kind(diags: &mut Diagnostics<'_>, node: &Node) -> Option<TaskKind> {
    let schema = Schema {
        what: "python",
        keys: &PYTHON_KEYS,
        hint: python_hint,
    };
    let before = diags.count();
    let fields = diag::fields(diags, node, &schema)?;
    let callable = match fields.get("callable") {
        Some(value) => callable(diags, value),
        None => {
            diags.at(
                node.pos,
                "`python` needs a `callable`, such as \"etl.transform:run\" (a function `run` of the module etl/transform.py in the DAGs folder)",
            );
            None
        }
    };
    let op_args = match fields.get("op_args") {
        Some(value) => op_args(diags, value),
        None => Some(Vec::new()),
    };
    let op_kwargs = match fields.get("op_kwargs") {
        Some(value) => op_kwargs(diags, value),
        None => Some(BTreeMap::new()),
    };
    let python = interpreter(diags, node, &fields);
    let task = PythonTask {
        callable: callable?,
        op_args: op_args?,
        op_kwargs: op_kwargs?,
        python: python?,
    };
    (diags.count() == before).then_some(TaskKind::Python(Box::new(task)))
}

fn callable(diags: &mut Diagnostics<'_>, node: &Node) -> Option<String> {
    let text = diag::non_empty_string(diags, node, "python.callable")?;
    match check_callable(&text) {
        Ok(()) => Some(text),
        Err(problem) => {
            diags.at(node.pos, format!("`python.callable` {problem}"));
            None
        }
    }
}

/// `module.path:function`: a dotted module name, a colon, and a function (or a dotted
/// attribute path such as `Class.method`), each part a Python identifier (ASCII letters,
/// digits and `_`, not starting with a digit).
pub fn check_callable(text: &str) -> Result<(), String> {
    let shape = "must look like \"module.path:function\" (e.g. \"etl.transform:run\" for the function `run` of etl/transform.py)";
    let Some((module, function)) = text.split_once(':') else {
        return Err(format!("{} has no `:`; it {shape}", quoted(text)));
    };
    for (what, part) in [("module", module), ("function", function)] {
        if let Some(bad) = part.split('.').find(|name| !is_identifier(name)) {
            let which = if bad.is_empty() {
                format!("an empty name in the {what} part")
            } else {
                format!("{} in the {what} part is not a Python name", quoted(bad))
            };
            return Err(format!("{}: {which}; it {shape}", quoted(text)));
        }
    }
    Ok(())
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn op_args(diags: &mut Diagnostics<'_>, node: &Node) -> Option<Vec<serde_json::Value>> {
    let Value::Seq(items) = &node.value else {
        diag::wrong_type(diags, node, "python.op_args", "a list");
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        out.push(to_json(diags, item, &format!("python.op_args[{i}]"))?);
    }
    Some(out)
}

fn op_kwargs(
    diags: &mut Diagnostics<'_>,
    node: &Node,
) -> Option<BTreeMap<String, serde_json::Value>> {
    let entries = diag::mapping(diags, node, "python.op_kwargs")?;
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (key, key_node, value) in entries {
        if !is_identifier(key) {
            diags.at(
                key_node.pos,
                format!(
                    "`python.op_kwargs` key {} is not a Python parameter name (ASCII letters, digits and `_`, not starting with a digit)",
                    quoted(key)
                ),
            );
            ok = false;
            continue;
        }
        match to_json(diags, value, &format!("python.op_kwargs.{key}")) {
            Some(v) => {
                out.insert(key.to_owned(), v);
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn interpreter(
    diags: &mut Diagnostics<'_>,
    node: &Node,
    fields: &diag::Fields<'_>,
) -> Option<PythonInterpreter> {
    let present: Vec<&str> = INTERPRETER_KEYS
        .iter()
        .copied()
        .filter(|key| fields.get(key).is_some())
        .collect();
    // `interpreter` with `requirements` is the base the environment is made from.
    let exclusive = present != ["interpreter", "requirements"];
    if let [first, second, ..] = present.as_slice()
        && exclusive
    {
        let pos = fields.key_node(second).map_or(node.pos, |k| k.pos);
        diags.at(
            pos,
            format!(
                "`python` sets both {} and {}: set at most one of `interpreter`, `venv`, `requirements` (or `interpreter` as the base of `requirements`)",
                quoted(first),
                quoted(second)
            ),
        );
        return None;
    }
    let program = match fields.get("interpreter") {
        Some(value) => Some(interpreter_program(diags, value)?),
        None => None,
    };
    if let Some(value) = fields.get("requirements") {
        let requirements = requirements(diags, value)?;
        return Some(PythonInterpreter::Requirements {
            base: program.unwrap_or_else(|| "python3".to_owned()),
            requirements,
        });
    }
    if let Some(program) = program {
        return Some(PythonInterpreter::Interpreter(program));
    }
    let Some(value) = fields.get("venv") else {
        return Some(PythonInterpreter::Default);
    };
    let folder = diag::non_empty_string(diags, value, "python.venv")?;
    if !folder.starts_with('/') {
        diags.at(
            value.pos,
            format!(
                "`python.venv` {} must be an absolute path (the virtual environment's folder)",
                quoted(&folder)
            ),
        );
        return None;
    }
    Some(PythonInterpreter::Venv(folder))
}

fn interpreter_program(diags: &mut Diagnostics<'_>, value: &Node) -> Option<String> {
    let program = diag::non_empty_string(diags, value, "python.interpreter")?;
    if program.contains('/') && !program.starts_with('/') {
        diags.at(
            value.pos,
            format!(
                "`python.interpreter` {} is a relative path: give a program name found on PATH (\"python3.11\") or an absolute path",
                quoted(&program)
            ),
        );
        return None;
    }
    Some(program)
}

/// `requirements:` a non-empty list of requirement specifiers (`pandas==2.2.3`, `six`), given
/// to `pip install` as they are. pip options (`-r`, `--index-url`, ...) are refused: the
/// environment is made by updraft's own user, so a DAG file chooses packages, not how pip runs.
fn requirements(diags: &mut Diagnostics<'_>, value: &Node) -> Option<Vec<String>> {
    let items = diag::string_list(diags, value, "python.requirements", false)?;
    if items.is_empty() {
        diags.at(value.pos, "`python.requirements` must not be empty");
        return None;
    }
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (requirement, node) in items {
        let trimmed = requirement.trim();
        if trimmed.is_empty() || trimmed.starts_with('-') || trimmed.contains(" -") {
            diags.at(
                node.pos,
                format!(
                    "{} is not a requirement specifier: give a package with an optional version (\"pandas==2.2.3\", \"six>=1.16\"); pip options are not accepted",
                    quoted(&requirement)
                ),
            );
            ok = false;
            continue;
        }
        out.push(trimmed.to_owned());
    }
    ok.then_some(out)
}
