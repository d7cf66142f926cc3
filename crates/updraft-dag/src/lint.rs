//! DAG warnings: what loads fine but is likely a mistake, with the file, line and task.
//!
//! Three checks. A task with `branch: true` or `short_circuit: true` that no task lists in its
//! `upstream` has nothing to choose or skip (Airflow runs it and changes nothing; so does
//! updraft, but it is most likely a forgotten edge).
//!
//! [`python_module_warnings`]: a `python` task whose callable's module is neither in the DAG
//! file's folder nor at the root of the DAGs folder (it may still be installed in the
//! interpreter, so this is a warning, never an import error).
//!
//! [`lint_dag_file`]: a `bash` script that puts the run's conf in the script unquoted
//! (`{{ params.who }}`, `{{ dag_run.conf.x }}`, `{{ conf }}`) runs whatever shell syntax
//! whoever triggers the run writes there. The `sh` filter (`{{ params.who | sh }}`) quotes the
//! value as one word; environment variables (`env: {WHO: "{{ params.who }}"}`, then `"$WHO"`)
//! work too. Expressions ending in `| sh` pass, and so do those that only test a value inside
//! `{% ... %}`. Values reaching the script through `{% set %}` are not followed.

use std::path::Path;

use serde::Serialize;

use crate::yaml::{self, Node, Value};

/// One warning about a DAG file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DagWarning {
    pub filename: String,
    /// 1-based line of the expression (of the `bash` value when it cannot be told).
    pub line: Option<u32>,
    pub task_id: String,
    pub message: String,
}

/// The warnings of one DAG file's text; none when it is not valid YAML (that is an import
/// error, reported by [`crate::parse_dag`]).
pub fn lint_dag_file(fileloc: &str, text: &str) -> Vec<DagWarning> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let Ok(root) = yaml::parse(text) else {
        return Vec::new();
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut warnings = branching_without_downstream(fileloc, &root);
    for task in get(&root, "tasks").into_iter().flat_map(seq) {
        let task_id = get(task, "task_id")
            .and_then(Node::as_str)
            .unwrap_or("?")
            .to_string();
        // A task's script, or a sensor's: the same shell, the same risk.
        let script_node =
            get(task, "bash").or_else(|| get(task, "sensor").and_then(|s| get(s, "bash")));
        let Some(bash) = script_node else {
            continue;
        };
        let Some(script) = bash.as_str() else {
            continue;
        };
        let first_line = script_first_line(bash, &lines);
        for found in unquoted_conf_expressions(script) {
            let newlines = script[..found.offset].matches('\n').count() as u32;
            warnings.push(DagWarning {
                filename: fileloc.to_string(),
                line: first_line.map(|l| l + newlines),
                task_id: task_id.clone(),
                message: format!(
                    "`bash` puts the run's conf in the script unquoted: `{{{{ {} }}}}`; whoever \
                     triggers a run can make it run any command. Quote it with the sh filter \
                     (`{{{{ {} | sh }}}}`) or pass it through `env` and use \"$VAR\"",
                    found.expression, found.expression
                ),
            });
        }
    }
    warnings
}

/// Tasks with `branch: true` or `short_circuit: true` that no task lists upstream.
fn branching_without_downstream(fileloc: &str, root: &Node) -> Vec<DagWarning> {
    let tasks = get(root, "tasks").map_or(&[][..], seq);
    let listed: Vec<&str> = tasks
        .iter()
        .filter_map(|task| get(task, "upstream"))
        .flat_map(|upstream| match &upstream.value {
            Value::Str(id) => vec![id.as_str()],
            _ => seq(upstream).iter().filter_map(Node::as_str).collect(),
        })
        .collect();
    let mut warnings = Vec::new();
    for task in tasks {
        let Some(task_id) = get(task, "task_id").and_then(Node::as_str) else {
            continue;
        };
        for key in ["branch", "short_circuit"] {
            let Some(node) = get(task, key).filter(|n| n.value == Value::Bool(true)) else {
                continue;
            };
            if !listed.contains(&task_id) {
                warnings.push(DagWarning {
                    filename: fileloc.to_string(),
                    line: Some(node.pos.line).filter(|&l| l > 0),
                    task_id: task_id.to_string(),
                    message: format!(
                        "`{key}: true` on a task without downstream tasks does nothing: no \
                         task lists {task_id:?} in its `upstream`"
                    ),
                });
            }
        }
    }
    warnings
}

/// A warning for each `python.callable` whose module is in none of `folders` (the DAG file's
/// folder and the DAGs folder, where the runner looks first): no `a/b.py`, `a/b/__init__.py`
/// or `a/b/` folder for module `a.b`.
pub fn python_module_warnings(fileloc: &str, text: &str, folders: &[&Path]) -> Vec<DagWarning> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let Ok(root) = yaml::parse(text) else {
        return Vec::new();
    };
    let mut warnings = Vec::new();
    for task in get(&root, "tasks").into_iter().flat_map(seq) {
        let Some(callable) = get(task, "python").and_then(|p| get(p, "callable")) else {
            continue;
        };
        let Some((module, _)) = callable.as_str().and_then(|c| c.split_once(':')) else {
            continue;
        };
        if folders.iter().any(|folder| module_exists(folder, module)) {
            continue;
        }
        let relative = module.replace('.', "/");
        let looked: Vec<String> = folders.iter().map(|f| f.display().to_string()).collect();
        warnings.push(DagWarning {
            filename: fileloc.to_string(),
            line: (callable.pos.line > 0).then_some(callable.pos.line),
            task_id: get(task, "task_id")
                .and_then(Node::as_str)
                .unwrap_or("?")
                .to_string(),
            message: format!(
                "`python.callable` names module `{module}`, but neither {relative}.py nor {relative}/ is in {}: unless the interpreter has it installed, the task will fail to import it",
                looked.join(" or ")
            ),
        });
    }
    warnings
}

fn module_exists(folder: &Path, module: &str) -> bool {
    let path = module
        .split('.')
        .fold(folder.to_path_buf(), |path, part| path.join(part));
    path.with_extension("py").is_file() || path.is_dir()
}

/// An expression (`{{ ... }}`) of a script that interpolates the conf unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnquotedExpression {
    /// Byte offset of its `{{` in the script.
    pub offset: usize,
    /// Its text between the braces, trimmed.
    pub expression: String,
}

/// The `{{ ... }}` expressions of `script` that name `params`, `dag_run.conf` or `conf` and
/// do not end with the `sh` filter.
pub fn unquoted_conf_expressions(script: &str) -> Vec<UnquotedExpression> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(start) = script[from..].find("{{").map(|i| from + i) {
        let Some(end) = script[start + 2..].find("}}").map(|i| start + 2 + i) else {
            break;
        };
        let inner = script[start + 2..end]
            .trim_start_matches(['-', '+'])
            .trim_end_matches(['-', '+'])
            .trim();
        if names_conf(inner) && !ends_with_sh_filter(inner) {
            found.push(UnquotedExpression {
                offset: start,
                expression: inner.to_string(),
            });
        }
        from = end + 2;
    }
    found
}

/// Whether `expression` mentions `params`, `conf` (as a name of its own, `dag_run.conf`
/// included) anywhere outside string literals.
fn names_conf(expression: &str) -> bool {
    let code = without_string_literals(expression);
    let bytes = code.as_bytes();
    let is_name_byte = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    ["params", "conf"].iter().any(|name| {
        code.match_indices(name).any(|(i, _)| {
            let before = i.checked_sub(1).map(|j| bytes[j]);
            let after = bytes.get(i + name.len()).copied();
            let starts_name = before.is_none_or(|b| !is_name_byte(b));
            let ends_name = after.is_none_or(|b| !is_name_byte(b));
            // `x.params` is an attribute of something else; `dag_run.conf` is the conf.
            let attribute_of_other = before == Some(b'.') && !code[..i].ends_with("dag_run.");
            starts_name && ends_name && !attribute_of_other
        })
    })
}

fn ends_with_sh_filter(expression: &str) -> bool {
    let code = without_string_literals(expression);
    code.rsplit_once('|')
        .is_some_and(|(_, last)| last.trim() == "sh")
}

/// `expression` with the text of its string literals blanked out.
fn without_string_literals(expression: &str) -> String {
    let mut out = String::with_capacity(expression.len());
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in expression.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                    out.push(c);
                    continue;
                }
                out.push(' ');
            }
            None => {
                if c == '\'' || c == '"' {
                    quote = Some(c);
                }
                out.push(c);
            }
        }
    }
    out
}

/// The line the script's text starts on: the line after a block scalar's `|` or `>`.
fn script_first_line(node: &Node, lines: &[&str]) -> Option<u32> {
    if node.pos.line == 0 {
        return None;
    }
    let line = lines.get(node.pos.line as usize - 1)?;
    let at = line
        .char_indices()
        .nth(node.pos.column.saturating_sub(1) as usize)
        .map_or("", |(i, _)| &line[i..]);
    let block = at.starts_with('|') || at.starts_with('>');
    Some(node.pos.line + u32::from(block))
}

fn get<'n>(node: &'n Node, key: &str) -> Option<&'n Node> {
    match &node.value {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v),
        _ => None,
    }
}

fn seq(node: &Node) -> &[Node] {
    match &node.value {
        Value::Seq(items) => items,
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exprs(script: &str) -> Vec<String> {
        unquoted_conf_expressions(script)
            .into_iter()
            .map(|e| e.expression)
            .collect()
    }

    #[test]
    fn conf_in_a_script_needs_the_sh_filter() {
        assert_eq!(exprs(r#"echo "hello {{ params.who }}""#), ["params.who"]);
        assert_eq!(exprs("echo {{dag_run.conf['x']}}"), ["dag_run.conf['x']"]);
        assert_eq!(exprs("echo {{- conf.get('x') -}}"), ["conf.get('x')"]);
        assert_eq!(exprs("echo {{ params.n + 1 }}"), ["params.n + 1"]);
        assert_eq!(
            exprs("echo {{ params.who | upper }}"),
            ["params.who | upper"]
        );
        assert_eq!(
            exprs("echo {{ params.a | sh }} {{ params.b }}"),
            ["params.b"]
        );
    }

    #[test]
    fn quoted_and_unrelated_expressions_pass() {
        for script in [
            "echo {{ params.who | sh }}",
            "echo {{ params.who|sh }}",
            "echo {{ dag_run.conf | tojson | sh }}",
            "echo {{ ds }} {{ run_id }} {{ dag.dag_id }}",
            "echo {{ 'params' }} {{ ti.params }}",
            "echo {{ config_path }} {{ myparams }}",
            "{% if params.loud %}echo LOUD{% endif %}",
            "echo ${HOME} {{ params.who | replace('|', 'sh') | sh }}",
        ] {
            assert_eq!(exprs(script), Vec::<String>::new(), "{script}");
        }
    }

    #[test]
    fn warnings_name_file_line_and_task() {
        let text = "dag_id: hello\ntasks:\n  - task_id: safe\n    bash: echo {{ params.who | sh }}\n  - task_id: greet\n    bash: |\n      set -e\n      echo \"hello {{ params.who }}\"\n  - task_id: inline\n    bash: echo {{ dag_run.conf.x }}\n";
        let warnings = lint_dag_file("team/hello.yaml", text);
        let found: Vec<(Option<u32>, &str)> = warnings
            .iter()
            .map(|w| (w.line, w.task_id.as_str()))
            .collect();
        assert_eq!(found, [(Some(8), "greet"), (Some(10), "inline")]);
        assert_eq!(warnings[0].filename, "team/hello.yaml");
        assert!(
            warnings[0].message.contains("| sh"),
            "{}",
            warnings[0].message
        );
        assert!(lint_dag_file("x.yaml", "tasks: [").is_empty());
    }

    #[test]
    fn python_modules_are_looked_for_in_the_folders() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("team/etl")).unwrap();
        std::fs::write(root.join("team/etl/steps.py"), "").unwrap();
        std::fs::write(root.join("shared.py"), "").unwrap();
        std::fs::create_dir_all(root.join("pkg/sub")).unwrap();
        let text = "tasks:\n  - task_id: a\n    python: {callable: 'etl.steps:run'}\n  - task_id: b\n    python: {callable: 'shared:run'}\n  - task_id: c\n    python: {callable: 'pkg.sub:run'}\n  - task_id: d\n    python:\n      callable: 'etl.missing:run'\n  - task_id: e\n    bash: echo\n";
        let team = root.join("team");
        let warnings = python_module_warnings("team/x.yaml", text, &[&team, root]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].task_id, "d");
        assert_eq!(warnings[0].line, Some(10));
        assert_eq!(warnings[0].filename, "team/x.yaml");
        assert!(
            warnings[0].message.contains("module `etl.missing`")
                && warnings[0].message.contains("etl/missing.py"),
            "{}",
            warnings[0].message
        );
    }
}
