//! Parsing and validating one DAG file into a [`Dag`].
//!
//! [`parse_dag`] reads the YAML into a span-carrying tree, reads every top-level key with
//! typed accessors that report precise errors, reads the tasks, then checks what needs the
//! whole file (schedule needs a start date, dates in order, graph acyclic). It reports every
//! problem it finds, each located at file, line and column where that is meaningful.

use chrono_tz::Tz;

use crate::diag::{self, Diagnostics, Schema, quoted};
use crate::graph;
use crate::group;
use crate::model::{Dag, ImportError, RunCallbacks, Schedule, TaskGroup};
use crate::notifiers::notifiers;
use crate::params;
use crate::schedule;
use crate::task::{self, KINDS, SETTING_KEYS, Settings, TaskSource};
use crate::yaml::{self, Node, Pos, Value};

/// Keys of the top level of a DAG file.
pub const DAG_KEYS: [&str; 18] = [
    "dag_id",
    "description",
    "schedule",
    "timezone",
    "start_date",
    "end_date",
    "catchup",
    "max_active_runs",
    "max_active_tasks",
    "is_paused_upon_creation",
    "tags",
    "params",
    "env",
    "default_args",
    "tasks",
    "on_failure",
    "on_success",
    "dagrun_timeout",
];

/// Longest dag_id, task_id, tenant or pool name (Airflow's `ID_LEN`).
pub const MAX_IDENTIFIER_LEN: usize = 250;
/// Longest tag (Airflow's `TAG_MAX_LEN`).
pub const MAX_TAG_LEN: usize = 100;
/// Default of `max_active_runs` and `max_active_tasks`.
pub const DEFAULT_MAX_ACTIVE: u32 = 16;

/// Whether `value` is a valid dag_id, task_id, tenant or pool name: 1 to 250 characters among
/// ASCII letters, digits, `_`, `.` and `-`.
pub fn is_valid_identifier(value: &str) -> bool {
    check_identifier("identifier", value).is_ok()
}

/// [`is_valid_identifier`] with a message naming `what` ("dag_id", "tenant", ...) and the
/// problem.
pub fn check_identifier(what: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if value.len() > MAX_IDENTIFIER_LEN {
        return Err(format!(
            "{what} is {} characters long; the limit is {MAX_IDENTIFIER_LEN}",
            value.len()
        ));
    }
    match value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        Some(bad) => Err(format!(
            "{what} {value:?} contains {bad:?}; only ASCII letters, digits, `_`, `.` and `-` are allowed"
        )),
        None => Ok(()),
    }
}

/// Parses and validates the DAG file `fileloc` (relative to the DAGs folder, `/`-separated)
/// of `tenant`. The default `dag_id` is the file name without its extension.
pub fn parse_dag(tenant: &str, fileloc: &str, text: &str) -> Result<Dag, Vec<ImportError>> {
    parse_located(tenant, fileloc, text).map(|parsed| parsed.dag)
}

/// A parsed DAG and where its `dag_id` was declared (`None` when it came from the file name).
#[derive(Debug)]
pub(crate) struct Parsed {
    pub dag: Dag,
    pub dag_id_pos: Option<Pos>,
}

pub(crate) fn parse_located(
    tenant: &str,
    fileloc: &str,
    text: &str,
) -> Result<Parsed, Vec<ImportError>> {
    let mut diags = Diagnostics::new(tenant, fileloc);
    if let Err(message) = check_identifier("tenant", tenant) {
        diags.file(message);
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let root = match yaml::parse(text) {
        Ok(root) => root,
        Err(err) => {
            let message = format!("invalid YAML: {}", err.message);
            match err.pos {
                Some(pos) => diags.at(pos, message),
                None => diags.file(message),
            }
            return Err(diags.into_errors());
        }
    };
    match read_dag(&mut diags, &root, tenant, fileloc) {
        Some(parsed) if diags.count() == 0 => Ok(parsed),
        _ => Err(diags.into_errors()),
    }
}

fn dag_hint(key: &str) -> Option<String> {
    let advice = match key {
        "schedule_interval" | "timetable" => "use `schedule`".to_owned(),
        "concurrency" => "use `max_active_tasks`".to_owned(),
        "tz" | "time_zone" => "use `timezone`".to_owned(),
        "task_id" | "upstream" | "group_id" => {
            format!("{} belongs to an entry of `tasks`", quoted(key))
        }
        _ if KINDS.iter().any(|(k, _)| *k == key) => {
            format!("{} belongs to an entry of `tasks`", quoted(key))
        }
        _ if SETTING_KEYS.contains(&key) => format!(
            "{} is a task setting: set it on a task, or in `default_args` for every task",
            quoted(key)
        ),
        _ => return None,
    };
    Some(advice)
}

/// The file name without directories and extension.
fn file_stem(fileloc: &str) -> &str {
    let name = fileloc.rsplit('/').next().unwrap_or(fileloc);
    name.rsplit_once('.').map_or(name, |(stem, _)| stem)
}

fn read_dag(
    diags: &mut Diagnostics<'_>,
    root: &Node,
    tenant: &str,
    fileloc: &str,
) -> Option<Parsed> {
    check_root(diags, root)?;
    let schema = Schema {
        what: "the DAG",
        keys: &DAG_KEYS,
        hint: dag_hint,
    };
    let fields = diag::fields(diags, root, &schema)?;
    // Read every part before giving up, so that one pass reports every problem.
    let header = read_header(diags, &fields, tenant, fileloc);
    let defaults = optional(diags, fields.get("default_args"), task::default_args);
    let no_defaults = Settings::default();
    let task_defaults = defaults
        .as_ref()
        .and_then(Option::as_ref)
        .unwrap_or(&no_defaults);
    let tree = tasks(diags, fields.get("tasks"), task_defaults);
    let (dag, _, (sources, groups)) = (header?, defaults?, tree?);
    check_dates_and_schedule(diags, &dag, &fields);
    let mut sources = sources;
    mapped_upstreams(diags, &mut sources);
    graph::check_graph(diags, &sources);
    let dag = Dag {
        tasks: sources.into_iter().map(|s| s.task).collect(),
        groups,
        ..dag
    };
    let dag_id_pos = fields.get("dag_id").map(|n| n.pos);
    Some(Parsed { dag, dag_id_pos })
}

/// The tasks a mapped task's `expand` reads XComs of become its upstreams (Airflow's rule);
/// references to no task are reported.
fn mapped_upstreams(diags: &mut Diagnostics<'_>, sources: &mut [task::TaskSource<'_>]) {
    let ids: std::collections::HashSet<String> =
        sources.iter().map(|s| s.task.task_id.clone()).collect();
    let ids: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
    for source in sources.iter_mut() {
        let refs = std::mem::take(&mut source.xcom_refs);
        for (id, node) in crate::mapping::check_refs(diags, &source.task.task_id, &refs, &ids) {
            if !source.task.upstream.contains(&id) {
                source.task.upstream.push(id.clone());
                source.upstream.push((id, node));
            }
        }
    }
}

/// Reports a top level that is not a mapping.
fn check_root(diags: &mut Diagnostics<'_>, root: &Node) -> Option<()> {
    match &root.value {
        Value::Map(_) => Some(()),
        Value::Null => {
            diags.file("the file is empty; a DAG file is a YAML mapping (see docs/dag-files.md)");
            None
        }
        _ => {
            let found = diag::describe(root);
            diags.at(
                root.pos,
                format!("a DAG file must be a YAML mapping, found {found}"),
            );
            None
        }
    }
}

/// Reads every top-level key but `default_args` and `tasks`, into a DAG without tasks.
fn read_header(
    diags: &mut Diagnostics<'_>,
    fields: &diag::Fields<'_>,
    tenant: &str,
    fileloc: &str,
) -> Option<Dag> {
    let dag_id = dag_id(diags, fields, fileloc);
    let timezone = match fields.get("timezone") {
        Some(node) => schedule::timezone(diags, node),
        None => Some(Tz::UTC),
    };
    let tz = timezone.unwrap_or(Tz::UTC);
    let schedule = match fields.get("schedule") {
        Some(node) => schedule::schedule(diags, node),
        None => Some(Schedule::None),
    };
    let date = |diags: &mut Diagnostics<'_>, key: &str| {
        optional(diags, fields.get(key), |d, n| {
            schedule::datetime(d, n, key, tz)
        })
    };
    let start_date = date(diags, "start_date");
    let end_date = date(diags, "end_date");
    let description = optional(diags, fields.get("description"), |d, n| {
        diag::string(d, n, "description")
    });
    let catchup = flag(diags, fields, "catchup");
    let max_active_runs = limit(diags, fields, "max_active_runs");
    let max_active_tasks = limit(diags, fields, "max_active_tasks");
    let paused = flag(diags, fields, "is_paused_upon_creation");
    let tags = optional(diags, fields.get("tags"), tags);
    let params = optional(diags, fields.get("params"), params::params);
    let env = optional(diags, fields.get("env"), |d, n| diag::env_map(d, n, "env"));
    let run_notifiers = |diags: &mut Diagnostics<'_>, key: &str| {
        optional(diags, fields.get(key), |d, n| notifiers(d, n, key))
    };
    let on_failure = run_notifiers(diags, "on_failure");
    let on_success = run_notifiers(diags, "on_success");
    let dagrun_timeout = optional(diags, fields.get("dagrun_timeout"), |d, n| {
        diag::duration(d, n, "dagrun_timeout", true)
    });
    Some(Dag {
        dag_id: dag_id?,
        tenant: tenant.to_owned(),
        fileloc: fileloc.to_owned(),
        description: description?,
        schedule: schedule?,
        timezone: timezone?,
        start_date: start_date?,
        end_date: end_date?,
        catchup: catchup?.unwrap_or(false),
        max_active_runs: max_active_runs?,
        max_active_tasks: max_active_tasks?,
        tags: tags?.unwrap_or_default(),
        params: params?.unwrap_or_default(),
        env: env?.unwrap_or_default(),
        is_paused_upon_creation: paused?,
        run_callbacks: RunCallbacks {
            on_failure: on_failure?.unwrap_or_default(),
            on_success: on_success?.unwrap_or_default(),
        },
        dagrun_timeout: dagrun_timeout?,
        tasks: Vec::new(),
        groups: Vec::new(),
    })
}

/// Reads an optional key: `Some(None)` when absent, `Some(Some(v))` when valid, `None` (after
/// reporting) when invalid.
fn optional<T>(
    diags: &mut Diagnostics<'_>,
    node: Option<&Node>,
    read: impl FnOnce(&mut Diagnostics<'_>, &Node) -> Option<T>,
) -> Option<Option<T>> {
    match node {
        None => Some(None),
        Some(node) => read(diags, node).map(Some),
    }
}

fn flag(diags: &mut Diagnostics<'_>, fields: &diag::Fields<'_>, key: &str) -> Option<Option<bool>> {
    optional(diags, fields.get(key), |d, n| diag::boolean(d, n, key))
}

fn limit(diags: &mut Diagnostics<'_>, fields: &diag::Fields<'_>, key: &str) -> Option<u32> {
    optional(diags, fields.get(key), |d, n| diag::count(d, n, key, 1))
        .map(|v| v.unwrap_or(DEFAULT_MAX_ACTIVE))
}

fn dag_id(diags: &mut Diagnostics<'_>, fields: &diag::Fields<'_>, fileloc: &str) -> Option<String> {
    let Some(node) = fields.get("dag_id") else {
        let stem = file_stem(fileloc);
        if let Err(message) = check_identifier("dag_id", stem) {
            diags.file(format!(
                "no `dag_id` is set and the file name cannot serve as one: {message}"
            ));
            return None;
        }
        return Some(stem.to_owned());
    };
    let id = diag::string(diags, node, "dag_id")?;
    if let Err(message) = check_identifier("dag_id", &id) {
        diags.at(node.pos, message);
        return None;
    }
    Some(id)
}

fn tags(diags: &mut Diagnostics<'_>, node: &Node) -> Option<Vec<String>> {
    let items = diag::string_list(diags, node, "tags", false)?;
    let mut ok = true;
    for (tag, item) in &items {
        if tag.trim().is_empty() || tag.chars().count() > MAX_TAG_LEN {
            diags.at(
                item.pos,
                format!("tags must be 1 to {MAX_TAG_LEN} characters long, found {tag:?}"),
            );
            ok = false;
        }
    }
    ok.then(|| items.into_iter().map(|(tag, _)| tag).collect())
}

fn tasks<'n>(
    diags: &mut Diagnostics<'_>,
    node: Option<&'n Node>,
    defaults: &Settings,
) -> Option<(Vec<TaskSource<'n>>, Vec<TaskGroup>)> {
    group::read_tasks(diags, node, defaults)
}

/// Checks that need several keys: a scheduled DAG needs a start date and must not require
/// params, and the end date must not precede the start date.
fn check_dates_and_schedule(diags: &mut Diagnostics<'_>, dag: &Dag, fields: &diag::Fields<'_>) {
    let pos_of = |key: &str| fields.key_node(key).map(|n| n.pos).unwrap_or_default();
    if dag.schedule.is_scheduled() && dag.start_date.is_none() {
        diags.at(
            pos_of("schedule"),
            format!(
                "the DAG is scheduled ({}) but has no `start_date`; add one, or set `schedule: null` for manual runs only",
                dag.schedule
            ),
        );
    }
    if let (Some(start), Some(end)) = (dag.start_date, dag.end_date)
        && end < start
    {
        let end_node = fields.get("end_date").map(|n| n.pos).unwrap_or_default();
        diags.at(
            end_node,
            format!("`end_date` ({end}) is before `start_date` ({start})"),
        );
    }
    if dag.schedule.is_scheduled()
        && let Some((name, _)) = dag.params.iter().find(|(_, p)| p.default.is_none())
    {
        diags.at(
            pos_of("params"),
            format!(
                "param {} has no default, but the DAG is scheduled and scheduled runs have no conf to supply it; give it a default",
                quoted(name)
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert!(is_valid_identifier("etl_daily.v2-b"));
        assert!(!is_valid_identifier(""));
        assert!(!is_valid_identifier("has space"));
        assert!(!is_valid_identifier("slash/name"));
        assert!(!is_valid_identifier("日本"));
        assert!(is_valid_identifier(&"a".repeat(250)));
        assert!(!is_valid_identifier(&"a".repeat(251)));
    }

    #[test]
    fn stems() {
        assert_eq!(file_stem("team_a/sub/etl.yaml"), "etl");
        assert_eq!(file_stem("hello.yml"), "hello");
        assert_eq!(file_stem("a.b.yaml"), "a.b");
    }
}
