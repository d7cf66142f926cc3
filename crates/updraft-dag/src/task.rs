//! Reading tasks and `default_args`.
//!
//! The per-task settings (retries, pool, trigger rule, ...) are read by one function into a
//! [`Settings`] of optional values, used both for a task and for `default_args`; a task's value
//! wins over the DAG's `default_args`, which wins over the built-in default (Airflow's rule).
//! What a task runs is its *kind*: exactly one of the keys in [`KINDS`].

use std::collections::BTreeMap;
use std::time::Duration;

use crate::diag::{self, Diagnostics, Schema, describe, quoted};
use crate::model::{
    Branching, DEFAULT_POOL, Notifier, Task, TaskCallbacks, TaskKind, TriggerRule, WeightRule,
};
use crate::notifiers::notifiers;
use crate::parse::{DAG_KEYS, check_identifier};
use crate::yaml::{Node, Value};

/// Airflow's default `retry_delay`.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(300);

/// Settings a task may set and `default_args` may default.
pub(crate) const SETTING_KEYS: [&str; 21] = [
    "trigger_rule",
    "retries",
    "retry_delay",
    "retry_exponential_backoff",
    "max_retry_delay",
    "execution_timeout",
    "pool",
    "pool_slots",
    "priority_weight",
    "weight_rule",
    "depends_on_past",
    "env",
    "cwd",
    "connections",
    "do_xcom_push",
    "owner",
    "on_failure",
    "on_success",
    "on_retry",
    "on_execute",
    "max_active_tis_per_dag",
];

type KindReader = fn(&mut Diagnostics<'_>, &Node) -> Option<TaskKind>;

/// The task kinds: the key that selects each and how its value is read. A new kind is one more
/// entry here and one more [`TaskKind`] variant (`trigger_dag_run` is read as a sensor whose
/// check starts a run: it waits as sensors do).
pub(crate) const KINDS: [(&str, KindReader); 7] = [
    ("bash", bash_kind),
    ("command", command_kind),
    ("pod", crate::pod::pod_kind),
    ("python", crate::python::python_kind),
    ("sensor", crate::sensor::sensor_kind),
    ("trigger_dag_run", crate::trigger::trigger_dag_run_kind),
    ("noop", noop_kind),
];

fn kind_names() -> impl Iterator<Item = &'static str> + Clone {
    KINDS.iter().map(|(name, _)| *name)
}

/// Keys of a task that say how its `return_value` steers its downstream tasks; set on each
/// task, never in `default_args`.
pub(crate) const BRANCHING_KEYS: [&str; 3] =
    ["branch", "short_circuit", "ignore_downstream_trigger_rules"];

fn task_keys() -> Vec<&'static str> {
    let mut keys = vec!["task_id", "upstream", "outlets", "expand"];
    keys.extend(SETTING_KEYS);
    keys.extend(BRANCHING_KEYS);
    keys.extend(kind_names());
    keys
}

/// Optional task settings, as read from a task or from `default_args`. `Some(None)` is an
/// explicit `null` that clears a default.
#[derive(Debug, Default, Clone)]
pub(crate) struct Settings {
    trigger_rule: Option<TriggerRule>,
    retries: Option<u32>,
    retry_delay: Option<Duration>,
    retry_exponential_backoff: Option<bool>,
    max_retry_delay: Option<Option<Duration>>,
    execution_timeout: Option<Option<Duration>>,
    pool: Option<String>,
    pool_slots: Option<u32>,
    priority_weight: Option<i64>,
    weight_rule: Option<WeightRule>,
    depends_on_past: Option<bool>,
    env: Option<BTreeMap<String, String>>,
    cwd: Option<Option<String>>,
    connections: Option<Vec<String>>,
    do_xcom_push: Option<bool>,
    on_failure: Option<Vec<Notifier>>,
    on_success: Option<Vec<Notifier>>,
    on_retry: Option<Vec<Notifier>>,
    on_execute: Option<Vec<Notifier>>,
    max_active_tis_per_dag: Option<Option<u32>>,
}

impl Settings {
    /// Each setting from `self`, else from `defaults`.
    pub(crate) fn or(self, defaults: &Settings) -> Settings {
        let d = defaults.clone();
        Settings {
            trigger_rule: self.trigger_rule.or(d.trigger_rule),
            retries: self.retries.or(d.retries),
            retry_delay: self.retry_delay.or(d.retry_delay),
            retry_exponential_backoff: self
                .retry_exponential_backoff
                .or(d.retry_exponential_backoff),
            max_retry_delay: self.max_retry_delay.or(d.max_retry_delay),
            execution_timeout: self.execution_timeout.or(d.execution_timeout),
            pool: self.pool.or(d.pool),
            pool_slots: self.pool_slots.or(d.pool_slots),
            priority_weight: self.priority_weight.or(d.priority_weight),
            weight_rule: self.weight_rule.or(d.weight_rule),
            depends_on_past: self.depends_on_past.or(d.depends_on_past),
            env: self.env.or(d.env),
            cwd: self.cwd.or(d.cwd),
            connections: self.connections.or(d.connections),
            do_xcom_push: self.do_xcom_push.or(d.do_xcom_push),
            on_failure: self.on_failure.or(d.on_failure),
            on_success: self.on_success.or(d.on_success),
            on_retry: self.on_retry.or(d.on_retry),
            on_execute: self.on_execute.or(d.on_execute),
            max_active_tis_per_dag: self.max_active_tis_per_dag.or(d.max_active_tis_per_dag),
        }
    }
}

/// Reads one setting into `settings`; false when it was invalid (and reported).
fn read_setting(diags: &mut Diagnostics<'_>, key: &str, node: &Node, s: &mut Settings) -> bool {
    let d = diags;
    match key {
        "trigger_rule" => set(&mut s.trigger_rule, trigger_rule(d, node)),
        "retries" => set(&mut s.retries, diag::count(d, node, key, 0)),
        "retry_delay" => set(&mut s.retry_delay, diag::duration(d, node, key, false)),
        "retry_exponential_backoff" => set(
            &mut s.retry_exponential_backoff,
            diag::boolean(d, node, key),
        ),
        "max_retry_delay" => set(
            &mut s.max_retry_delay,
            nullable(node, |n| diag::duration(d, n, key, true)),
        ),
        "execution_timeout" => set(
            &mut s.execution_timeout,
            nullable(node, |n| diag::duration(d, n, key, true)),
        ),
        "pool" => set(&mut s.pool, pool(d, node)),
        "pool_slots" => set(&mut s.pool_slots, diag::count(d, node, key, 1)),
        "priority_weight" => set(&mut s.priority_weight, diag::integer(d, node, key)),
        "weight_rule" => set(&mut s.weight_rule, weight_rule(d, node)),
        "depends_on_past" => set(&mut s.depends_on_past, diag::boolean(d, node, key)),
        "env" => set(&mut s.env, diag::env_map(d, node, key)),
        "cwd" => set(
            &mut s.cwd,
            nullable(node, |n| diag::non_empty_string(d, n, key)),
        ),
        "connections" => set(&mut s.connections, connections(d, node)),
        "do_xcom_push" => set(&mut s.do_xcom_push, diag::boolean(d, node, key)),
        "on_failure" => set(&mut s.on_failure, notifiers(d, node, key)),
        "on_success" => set(&mut s.on_success, notifiers(d, node, key)),
        "on_retry" => set(&mut s.on_retry, notifiers(d, node, key)),
        "on_execute" => set(&mut s.on_execute, notifiers(d, node, key)),
        "max_active_tis_per_dag" => set(
            &mut s.max_active_tis_per_dag,
            nullable(node, |n| diag::count(d, n, key, 1)),
        ),
        // Accepted for Airflow familiarity; checked but not stored.
        "owner" => diag::string(d, node, key).is_some(),
        _ => false,
    }
}

fn set<T>(slot: &mut Option<T>, value: Option<T>) -> bool {
    let ok = value.is_some();
    if value.is_some() {
        *slot = value;
    }
    ok
}

/// `null` is `Some(None)`; anything else goes through `read`.
fn nullable<T>(node: &Node, read: impl FnOnce(&Node) -> Option<T>) -> Option<Option<T>> {
    match node.value {
        Value::Null => Some(None),
        _ => read(node).map(Some),
    }
}

fn pool(diags: &mut Diagnostics<'_>, node: &Node) -> Option<String> {
    let name = diag::string(diags, node, "pool")?;
    match check_identifier("pool", &name) {
        Ok(()) => Some(name),
        Err(message) => {
            diags.at(node.pos, message);
            None
        }
    }
}

/// The longest connection id (Airflow's `conn_id` column).
const MAX_CONN_ID_LEN: usize = 250;

/// `connections`: a list of connection ids, each listed once, made of what Airflow allows in
/// a `conn_id` (letters, digits, `_`, `-`, `.`).
fn connections(diags: &mut Diagnostics<'_>, node: &Node) -> Option<Vec<String>> {
    let items = diag::string_list(diags, node, "connections", false)?;
    let mut ids: Vec<String> = Vec::with_capacity(items.len());
    let mut ok = true;
    for (id, item) in items {
        let problem = if let Err(problem) = check_conn_id(&id) {
            Some(problem)
        } else if ids.contains(&id) {
            Some(format!("connection {} is listed twice", quoted(&id)))
        } else {
            None
        };
        match problem {
            Some(problem) => {
                diags.at(item.pos, format!("invalid `connections` entry: {problem}"));
                ok = false;
            }
            None => ids.push(id),
        }
    }
    ok.then_some(ids)
}

pub(crate) fn check_conn_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("a connection id cannot be empty".to_owned());
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(format!(
            "connection id {} contains {bad:?}; use letters, digits, `_`, `-` and `.`",
            quoted(id)
        ));
    }
    // Only ASCII from here on.
    if id.len() > MAX_CONN_ID_LEN {
        return Err(format!(
            "connection id {}... is longer than {MAX_CONN_ID_LEN} characters",
            quoted(&id[..40])
        ));
    }
    Ok(())
}

fn trigger_rule(diags: &mut Diagnostics<'_>, node: &Node) -> Option<TriggerRule> {
    let name = diag::string(diags, node, "trigger_rule")?;
    if let Some(rule) = TriggerRule::from_name(&name) {
        return Some(rule);
    }
    let renamed = match name.as_str() {
        "dummy" => Some(TriggerRule::Always),
        "none_failed_or_skipped" => Some(TriggerRule::NoneFailedMinOneSuccess),
        _ => None,
    };
    let hint = match renamed {
        Some(rule) => format!("; Airflow renamed it {}", quoted(rule.as_str())),
        None => diag::did_you_mean(&name, TriggerRule::ALL.iter().map(|r| r.as_str())),
    };
    let all: Vec<&str> = TriggerRule::ALL.iter().map(|r| r.as_str()).collect();
    diags.at(
        node.pos,
        format!(
            "unknown trigger_rule {}{hint} (one of: {})",
            quoted(&name),
            all.join(", ")
        ),
    );
    None
}

fn weight_rule(diags: &mut Diagnostics<'_>, node: &Node) -> Option<WeightRule> {
    let name = diag::string(diags, node, "weight_rule")?;
    if let Some(rule) = WeightRule::from_name(&name) {
        return Some(rule);
    }
    let hint = diag::did_you_mean(&name, WeightRule::ALL.iter().map(|r| r.as_str()));
    diags.at(
        node.pos,
        format!(
            "unknown weight_rule {}{hint} (one of: downstream, upstream, absolute)",
            quoted(&name)
        ),
    );
    None
}

fn bash_kind(diags: &mut Diagnostics<'_>, node: &Node) -> Option<TaskKind> {
    diag::non_empty_string(diags, node, "bash").map(TaskKind::Bash)
}

fn command_kind(diags: &mut Diagnostics<'_>, node: &Node) -> Option<TaskKind> {
    if let Value::Str(_) = node.value {
        diags.at(
            node.pos,
            format!(
                "`command` must be a list of arguments such as [\"python3\", \"job.py\"], found {}; use `bash:` to run a shell script",
                describe(node)
            ),
        );
        return None;
    }
    let argv = diag::string_list(diags, node, "command", false)?;
    if argv.is_empty() {
        diags.at(
            node.pos,
            "`command` must name a program to run; it is empty",
        );
        return None;
    }
    Some(TaskKind::Command(
        argv.into_iter().map(|(arg, _)| arg).collect(),
    ))
}

fn noop_kind(diags: &mut Diagnostics<'_>, node: &Node) -> Option<TaskKind> {
    match node.value {
        Value::Bool(true) => Some(TaskKind::Noop),
        _ => {
            diag::wrong_type(diags, node, "noop", "true");
            None
        }
    }
}

fn default_args_hint(key: &str) -> Option<String> {
    if key == "task_id"
        || key == "upstream"
        || key == "expand"
        || kind_names().any(|k| k == key)
        || BRANCHING_KEYS.contains(&key)
    {
        return Some(format!(
            "{} is set on each task, not in default_args",
            quoted(key)
        ));
    }
    DAG_KEYS.contains(&key).then(|| {
        format!(
            "{} is a DAG-level key in updraft: set it at the top level of the file",
            quoted(key)
        )
    })
}

fn task_hint(key: &str) -> Option<String> {
    let advice = match key {
        "bash_command" => "use `bash`",
        "depends_on" | "dependencies" | "deps" | "after" | "upstream_task_ids" | "upstreams" => {
            "use `upstream`"
        }
        "downstream" => {
            "updraft only has `upstream`: list this task in the other task's `upstream`"
        }
        "timeout" => "use `execution_timeout` (a sensor's `timeout` goes inside `sensor:`)",
        "poke_interval" | "soft_fail" | "exponential_backoff" | "max_wait" | "mode" => {
            "a sensor's timing goes inside `sensor:`"
        }
        "python_callable" => "a Python callable is the `python:` kind (with `callable:` inside it)",
        "pod_template_file" | "kubernetes" | "k8s" => {
            "a Kubernetes pod is the `pod:` kind (with `template:` inside it)"
        }
        "operator" | "type" => {
            "the kind of a task is its key: one of `bash`, `command`, `pod`, `python`, `sensor`, `trigger_dag_run`, `noop`"
        }
        "trigger_dag_id" | "wait_for_completion" | "reset_dag_run" => {
            "another DAG is started by the `trigger_dag_run:` kind (with `trigger_dag_id:` inside it)"
        }
        _ if DAG_KEYS.contains(&key) => "this is a DAG-level key, not a task key",
        _ => return None,
    };
    Some(advice.to_owned())
}

/// Reads `default_args`.
pub(crate) fn default_args(diags: &mut Diagnostics<'_>, node: &Node) -> Option<Settings> {
    let schema = Schema {
        what: "default_args",
        keys: &SETTING_KEYS,
        hint: default_args_hint,
    };
    let before = diags.count();
    let fields = diag::fields(diags, node, &schema)?;
    let mut settings = Settings::default();
    for (key, value) in fields.iter() {
        read_setting(diags, key, value, &mut settings);
    }
    (diags.count() == before).then_some(settings)
}

/// A task as read, with what graph validation needs to point at its nodes.
#[derive(Debug)]
pub(crate) struct TaskSource<'n> {
    pub task: Task,
    /// The `task_id` value.
    pub id_node: &'n Node,
    /// Each `upstream` entry and its node, in file order.
    pub upstream: Vec<(String, &'n Node)>,
    /// The tasks whose XComs `expand` maps over, with the nodes naming them (full ids).
    pub xcom_refs: Vec<crate::mapping::XComRef<'n>>,
}

/// Reads one entry of `tasks:`. `index` is 0-based, used to name tasks without an id.
pub(crate) fn task<'n>(
    diags: &mut Diagnostics<'_>,
    node: &'n Node,
    index: usize,
    defaults: &Settings,
) -> Option<TaskSource<'n>> {
    let provisional = format!("tasks[{index}]");
    let label = match &node.value {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.as_str() == Some("task_id"))
            .and_then(|(_, v)| v.as_str())
            .map_or(provisional, |id| format!("task {}", quoted(id))),
        _ => provisional,
    };
    let keys = task_keys();
    let schema = Schema {
        what: &label,
        keys: &keys,
        hint: task_hint,
    };
    let before = diags.count();
    let fields = diag::fields(diags, node, &schema)?;

    let id = task_id(diags, node, &fields, &label);
    let upstream = match fields.get("upstream") {
        Some(n) => diag::string_list(diags, n, "upstream", true).unwrap_or_default(),
        None => Vec::new(),
    };
    let kind = task_kind(diags, node, &fields, &label);
    let branching = branching(diags, &fields, &label);
    let outlets = match fields.get("outlets") {
        Some(n) => crate::assets::outlets(diags, n).unwrap_or_default(),
        None => Vec::new(),
    };
    let expand = fields
        .get("expand")
        .map(|n| (crate::mapping::expand(diags, n), n));
    let mut settings = Settings::default();
    for (key, value) in fields.iter() {
        if SETTING_KEYS.contains(&key) {
            read_setting(diags, key, value, &mut settings);
        }
    }
    let (task_id, id_node) = id?;
    let kind = kind?;
    let (expand, xcom_refs) = match expand {
        Some((read, node)) => {
            let (expand, refs) = read?;
            let branches = branching.is_some();
            crate::mapping::check_task(diags, &label, &expand, node, &kind, branches);
            (Some(expand), refs)
        }
        None => (None, Vec::new()),
    };
    if diags.count() > before {
        return None;
    }
    let mut task = build_task(task_id, &upstream, kind, settings.or(defaults));
    task.branching = branching;
    task.outlets = outlets;
    task.expand = expand;
    Some(TaskSource {
        task,
        id_node,
        upstream,
        xcom_refs,
    })
}

fn task_id<'n>(
    diags: &mut Diagnostics<'_>,
    node: &Node,
    fields: &diag::Fields<'n>,
    label: &str,
) -> Option<(String, &'n Node)> {
    let Some(id_node) = fields.get("task_id") else {
        diags.at(node.pos, format!("{label} has no `task_id`"));
        return None;
    };
    let id = diag::string(diags, id_node, "task_id")?;
    if let Err(message) = check_identifier("task_id", &id) {
        diags.at(id_node.pos, message);
        return None;
    }
    Some((id, id_node))
}

fn task_kind(
    diags: &mut Diagnostics<'_>,
    node: &Node,
    fields: &diag::Fields<'_>,
    label: &str,
) -> Option<TaskKind> {
    let present: Vec<(&str, KindReader)> = KINDS
        .iter()
        .copied()
        .filter(|(name, _)| fields.get(name).is_some())
        .collect();
    let names: Vec<String> = kind_names().map(quoted).collect();
    match present.as_slice() {
        [] => {
            diags.at(
                node.pos,
                format!(
                    "{label} does not say what to run: set exactly one of {}",
                    names.join(", ")
                ),
            );
            None
        }
        [(name, read)] => fields.get(name).and_then(|value| read(diags, value)),
        [(first, _), (second, _), ..] => {
            let pos = fields.key_node(second).map_or(node.pos, |k| k.pos);
            diags.at(
                pos,
                format!(
                    "{label} sets both {} and {}; a task has exactly one of {}",
                    quoted(first),
                    quoted(second),
                    names.join(", ")
                ),
            );
            None
        }
    }
}

/// `branch`, `short_circuit` and `ignore_downstream_trigger_rules` (Airflow's default: true),
/// which only a short-circuit task may set; a task is a branch or a short circuit, not both.
fn branching(
    diags: &mut Diagnostics<'_>,
    fields: &diag::Fields<'_>,
    label: &str,
) -> Option<Branching> {
    let flag = |diags: &mut Diagnostics<'_>, key: &str| {
        fields
            .get(key)
            .and_then(|node| diag::boolean(diags, node, key))
            .unwrap_or(false)
    };
    let branch = flag(diags, "branch");
    let short_circuit = flag(diags, "short_circuit");
    let ignore = match fields.get("ignore_downstream_trigger_rules") {
        Some(node) => {
            let value = diag::boolean(diags, node, "ignore_downstream_trigger_rules");
            if !short_circuit {
                let pos = fields
                    .key_node("ignore_downstream_trigger_rules")
                    .map_or(node.pos, |k| k.pos);
                diags.at(
                    pos,
                    format!(
                        "{label} sets `ignore_downstream_trigger_rules` without `short_circuit: true`; \
                         it only says what a short circuit skips"
                    ),
                );
            }
            value.unwrap_or(true)
        }
        None => true,
    };
    match (branch, short_circuit) {
        (true, true) => {
            if let Some(key) = fields.key_node("short_circuit") {
                diags.at(
                    key.pos,
                    format!(
                        "{label} sets both `branch: true` and `short_circuit: true`; a task \
                         either chooses its downstream tasks or short-circuits them"
                    ),
                );
            }
            None
        }
        (true, false) => Some(Branching::Branch),
        (false, true) => Some(Branching::ShortCircuit {
            ignore_downstream_trigger_rules: ignore,
        }),
        (false, false) => None,
    }
}

fn build_task(task_id: String, upstream: &[(String, &Node)], kind: TaskKind, s: Settings) -> Task {
    let mut upstream_ids: Vec<String> = Vec::with_capacity(upstream.len());
    for (id, _) in upstream {
        if !upstream_ids.contains(id) {
            upstream_ids.push(id.clone());
        }
    }
    Task {
        task_id,
        upstream: upstream_ids,
        trigger_rule: s.trigger_rule.unwrap_or_default(),
        retries: s.retries.unwrap_or(0),
        retry_delay: s.retry_delay.unwrap_or(DEFAULT_RETRY_DELAY),
        retry_exponential_backoff: s.retry_exponential_backoff.unwrap_or(false),
        max_retry_delay: s.max_retry_delay.flatten(),
        execution_timeout: s.execution_timeout.flatten(),
        pool: s.pool.unwrap_or_else(|| DEFAULT_POOL.to_owned()),
        pool_slots: s.pool_slots.unwrap_or(1),
        priority_weight: s.priority_weight.unwrap_or(1),
        weight_rule: s.weight_rule.unwrap_or_default(),
        depends_on_past: s.depends_on_past.unwrap_or(false),
        env: s.env.unwrap_or_default(),
        cwd: s.cwd.flatten(),
        connections: s.connections.unwrap_or_default(),
        branching: None,
        do_xcom_push: s.do_xcom_push.unwrap_or(false),
        callbacks: TaskCallbacks {
            on_failure: s.on_failure.unwrap_or_default(),
            on_success: s.on_success.unwrap_or_default(),
            on_retry: s.on_retry.unwrap_or_default(),
            on_execute: s.on_execute.unwrap_or_default(),
        },
        outlets: Vec::new(),
        expand: None,
        max_active_tis_per_dag: s.max_active_tis_per_dag.flatten(),
        kind,
    }
}
