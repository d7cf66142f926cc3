//! Reading the `trigger_dag_run:` task kind (Airflow's `TriggerDagRunOperator`).
//!
//! It is read as a sensor whose check starts the run: its first poke creates another DAG's
//! run (in the same tenant) and, with `wait_for_completion`, the next pokes wait for that run
//! to end, `poke_interval` apart, freeing the slot in between as every updraft sensor does.

use crate::diag::{self, Diagnostics, Schema};
use crate::model::{SensorCheck, SensorTask, SensorTiming, TaskKind, TriggerDagRunCheck};
use crate::parse::check_identifier;
use crate::yaml::{Node, Value};

const KEYS: [&str; 12] = [
    "trigger_dag_id",
    "trigger_run_id",
    "logical_date",
    "conf",
    "reset_dag_run",
    "skip_when_already_exists",
    "wait_for_completion",
    "poke_interval",
    "timeout",
    "allowed_states",
    "failed_states",
    "deferrable",
];

/// What a DAG run can be in, for `allowed_states` / `failed_states`.
const RUN_STATES: [&str; 4] = ["queued", "running", "success", "failed"];

/// Airflow's `poke_interval` of `TriggerDagRunOperator`: a minute.
const DEFAULT_POKE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

fn hint(key: &str) -> Option<String> {
    let advice = match key {
        "execution_date" => "use `logical_date` (Airflow 3's name)",
        "run_id" => "use `trigger_run_id`",
        "dag_id" => "use `trigger_dag_id`",
        "mode" => "the task always frees its slot while it waits",
        "soft_fail" => "use `skip_when_already_exists` or `failed_states`",
        _ => return None,
    };
    Some(advice.to_owned())
}

/// Reads the value of a task's `trigger_dag_run:` key.
pub(crate) fn trigger_dag_run_kind(diags: &mut Diagnostics<'_>, node: &Node) -> Option<TaskKind> {
    let schema = Schema {
        what: "trigger_dag_run",
        keys: &KEYS,
        hint,
    };
    let before = diags.count();
    let fields = diag::fields(diags, node, &schema)?;
    let dag_id = match fields.get("trigger_dag_id") {
        Some(value) => dag_id(diags, value),
        None => {
            diags.at(
                node.pos,
                "`trigger_dag_run` needs a `trigger_dag_id` (the DAG to start)",
            );
            None
        }
    };
    let run_id = fields
        .get("trigger_run_id")
        .and_then(|v| diag::non_empty_string(diags, v, "trigger_dag_run.trigger_run_id"));
    let logical_date = fields
        .get("logical_date")
        .and_then(|v| logical_date(diags, v));
    let conf = match fields.get("conf") {
        Some(value) => conf(diags, value),
        None => Some(serde_json::Value::Null),
    };
    let flag = |diags: &mut Diagnostics<'_>, key: &str| match fields.get(key) {
        Some(value) => diag::boolean(diags, value, &format!("trigger_dag_run.{key}")),
        None => Some(false),
    };
    let reset = flag(diags, "reset_dag_run");
    let skip = flag(diags, "skip_when_already_exists");
    let wait = flag(diags, "wait_for_completion");
    flag(diags, "deferrable");
    if reset == Some(true)
        && skip == Some(true)
        && let Some(key) = fields.key_node("skip_when_already_exists")
    {
        diags.at(
            key.pos,
            "`trigger_dag_run` sets both `reset_dag_run` and `skip_when_already_exists`: \
             an existing run is either run again or skipped; set one",
        );
    }
    let timing = timing(diags, &fields);
    let (allowed, failed) = crate::sensor::allowed_and_failed(
        diags,
        &fields,
        "trigger_dag_run",
        &RUN_STATES,
        ("success", Some("failed")),
    );
    if diags.count() > before {
        return None;
    }
    let check = TriggerDagRunCheck {
        trigger_dag_id: dag_id?,
        trigger_run_id: run_id,
        logical_date,
        conf: conf?,
        reset_dag_run: reset?,
        skip_when_already_exists: skip?,
        wait_for_completion: wait?,
        allowed_states: allowed?,
        failed_states: failed?,
    };
    Some(TaskKind::Sensor(Box::new(SensorTask {
        timing: timing?,
        check: SensorCheck::TriggerDagRun(check),
    })))
}

fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%")
}

/// A template, or a literal DAG id checked now.
fn dag_id(diags: &mut Diagnostics<'_>, node: &Node) -> Option<String> {
    let id = diag::non_empty_string(diags, node, "trigger_dag_run.trigger_dag_id")?;
    if is_template(&id) {
        return Some(id);
    }
    match check_identifier("dag_id", &id) {
        Ok(()) => Some(id),
        Err(message) => {
            diags.at(
                node.pos,
                format!("`trigger_dag_run.trigger_dag_id`: {message}"),
            );
            None
        }
    }
}

/// A template, or a literal date-time checked now.
fn logical_date(diags: &mut Diagnostics<'_>, node: &Node) -> Option<String> {
    let text = diag::non_empty_string(diags, node, "trigger_dag_run.logical_date")?;
    if !is_template(&text)
        && let Err(problem) = crate::parse_datetime(&text, chrono_tz::UTC)
    {
        diags.at(
            node.pos,
            format!("`trigger_dag_run.logical_date`: {problem}"),
        );
        return None;
    }
    Some(text)
}

/// A mapping, as the run's conf (a JSON object; its strings are templates).
fn conf(diags: &mut Diagnostics<'_>, node: &Node) -> Option<serde_json::Value> {
    if !matches!(node.value, Value::Map(_)) {
        diag::wrong_type(
            diags,
            node,
            "trigger_dag_run.conf",
            "a mapping (the new run's conf, a JSON object)",
        );
        return None;
    }
    crate::params::to_json(diags, node, "trigger_dag_run.conf")
}

fn timing(diags: &mut Diagnostics<'_>, fields: &diag::Fields<'_>) -> Option<SensorTiming> {
    let mut timing = SensorTiming {
        poke_interval: DEFAULT_POKE_INTERVAL,
        ..SensorTiming::default()
    };
    if let Some(value) = fields.get("poke_interval") {
        timing.poke_interval = diag::duration(diags, value, "trigger_dag_run.poke_interval", true)?;
    }
    if let Some(value) = fields.get("timeout") {
        timing.timeout = diag::duration(diags, value, "trigger_dag_run.timeout", false)?;
    }
    Some(timing)
}
