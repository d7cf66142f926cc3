//! `/dags/{dag_id}/tasks`: the tasks of a DAG's latest version, in Airflow 3's `TaskResponse`
//! shape, with the task group each belongs to (an updraft field; Airflow's UI reads groups
//! from a separate structure endpoint).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use updraft_dag::{Dag, Task, TaskKind};
use utoipa::{IntoParams, ToSchema};

use super::doc::{E400, E403, E404, E422};
use super::models::params_json;
use super::params::order_by;
use super::{ApiPath, ApiQuery, load_dag};
use crate::AppState;
use crate::auth::{Action, Caller};
use crate::error::ApiError;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TasksQuery {
    /// A task field to order by (`task_id` by default); `-` in front for descending.
    #[serde(default)]
    #[param(value_type = Option<String>)]
    order_by: Vec<String>,
}

/// Airflow's `TimeDelta` object.
#[derive(Debug, Serialize, ToSchema)]
pub struct TimeDelta {
    #[serde(rename = "__type")]
    pub kind: String,
    pub days: u64,
    pub seconds: u64,
    pub microseconds: u32,
}

impl From<Duration> for TimeDelta {
    fn from(d: Duration) -> Self {
        let secs = d.as_secs();
        TimeDelta {
            kind: "TimeDelta".to_owned(),
            days: secs / 86_400,
            seconds: secs % 86_400,
            microseconds: d.subsec_micros(),
        }
    }
}

/// Airflow 3's `TaskResponse`, plus `task_group_id` (updraft's).
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskResponse {
    pub task_id: String,
    pub task_display_name: String,
    pub owner: Option<String>,
    pub start_date: Option<chrono::DateTime<chrono::Utc>>,
    pub end_date: Option<chrono::DateTime<chrono::Utc>>,
    pub trigger_rule: String,
    pub depends_on_past: bool,
    pub wait_for_downstream: bool,
    pub retries: f64,
    pub queue: Option<String>,
    pub pool: String,
    pub pool_slots: f64,
    pub execution_timeout: Option<TimeDelta>,
    pub retry_delay: Option<TimeDelta>,
    pub retry_exponential_backoff: bool,
    pub priority_weight: f64,
    pub weight_rule: String,
    pub ui_color: Option<String>,
    pub ui_fgcolor: Option<String>,
    pub template_fields: Vec<String>,
    pub downstream_task_ids: Vec<String>,
    pub doc_md: Option<String>,
    /// Airflow's operator for this kind of task (`BashOperator`, `PythonOperator`, ...).
    pub operator_name: String,
    #[schema(value_type = Object)]
    pub params: Value,
    #[schema(value_type = Object)]
    pub class_ref: Value,
    pub is_mapped: bool,
    pub extra_links: Vec<String>,
    /// The full id of the task group the task is directly in; `null` at the top level.
    pub task_group_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskCollectionResponse {
    pub tasks: Vec<TaskResponse>,
    pub total_entries: u64,
}

/// The fields `order_by` accepts.
#[derive(Debug, Clone, Copy)]
enum TaskOrder {
    TaskId,
    PriorityWeight,
    Pool,
    Retries,
}

const ORDERS: &[(&str, TaskOrder)] = &[
    ("task_id", TaskOrder::TaskId),
    ("priority_weight", TaskOrder::PriorityWeight),
    ("pool", TaskOrder::Pool),
    ("retries", TaskOrder::Retries),
];

/// The tasks of a DAG's latest version.
#[utoipa::path(
    get,
    path = "/dags/{dag_id}/tasks",
    tag = "Task",
    params(("dag_id" = String, Path), TasksQuery),
    responses((status = 200, description = "Successful response", body = TaskCollectionResponse), E400, E403, E404, E422)
)]
pub async fn get_tasks(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath(dag_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<TasksQuery>,
) -> Result<Json<TaskCollectionResponse>, ApiError> {
    let (order, descending) = order_by(&query.order_by, ORDERS, TaskOrder::TaskId)?;
    let row = load_dag(&state, &identity, &dag_id, Action::Read).await?;
    let downstream = downstream_ids(&row.dag);
    let mut tasks: Vec<TaskResponse> = row
        .dag
        .tasks
        .iter()
        .map(|task| task_response(&row.dag, task, &downstream))
        .collect();
    tasks.sort_by(|a, b| {
        let ordering = match order {
            TaskOrder::TaskId => a.task_id.cmp(&b.task_id),
            TaskOrder::PriorityWeight => a.priority_weight.total_cmp(&b.priority_weight),
            TaskOrder::Pool => a.pool.cmp(&b.pool),
            TaskOrder::Retries => a.retries.total_cmp(&b.retries),
        }
        .then_with(|| a.task_id.cmp(&b.task_id));
        if descending {
            ordering.reverse()
        } else {
            ordering
        }
    });
    Ok(Json(TaskCollectionResponse {
        total_entries: tasks.len() as u64,
        tasks,
    }))
}

/// One task of a DAG's latest version.
#[utoipa::path(
    get,
    path = "/dags/{dag_id}/tasks/{task_id}",
    tag = "Task",
    params(("dag_id" = String, Path), ("task_id" = String, Path)),
    responses((status = 200, description = "Successful response", body = TaskResponse), E403, E404, E422)
)]
pub async fn get_task(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath((dag_id, task_id)): ApiPath<(String, String)>,
) -> Result<Json<TaskResponse>, ApiError> {
    let row = load_dag(&state, &identity, &dag_id, Action::Read).await?;
    let task = row.dag.task(&task_id).ok_or_else(|| {
        ApiError::not_found(format!(
            "Task with id `{task_id}` not found in DAG `{dag_id}`"
        ))
    })?;
    let downstream = downstream_ids(&row.dag);
    Ok(Json(task_response(&row.dag, task, &downstream)))
}

/// Each task's downstream task ids, sorted (Airflow returns them as a set).
fn downstream_ids(dag: &Dag) -> BTreeMap<&str, Vec<String>> {
    let mut downstream: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for task in &dag.tasks {
        for upstream in &task.upstream {
            downstream
                .entry(upstream.as_str())
                .or_default()
                .push(task.task_id.clone());
        }
    }
    for ids in downstream.values_mut() {
        ids.sort();
    }
    downstream
}

fn task_response(dag: &Dag, task: &Task, downstream: &BTreeMap<&str, Vec<String>>) -> TaskResponse {
    let (operator, template_fields) = operator_of(&task.kind);
    TaskResponse {
        task_id: task.task_id.clone(),
        task_display_name: task.task_id.clone(),
        owner: None,
        start_date: dag.start_date,
        end_date: dag.end_date,
        trigger_rule: enum_name(&task.trigger_rule),
        depends_on_past: task.depends_on_past,
        wait_for_downstream: false,
        retries: f64::from(task.retries),
        queue: None,
        pool: task.pool.clone(),
        pool_slots: f64::from(task.pool_slots),
        execution_timeout: task.execution_timeout.map(TimeDelta::from),
        retry_delay: Some(TimeDelta::from(task.retry_delay)),
        retry_exponential_backoff: task.retry_exponential_backoff,
        priority_weight: task.priority_weight as f64,
        weight_rule: enum_name(&task.weight_rule),
        ui_color: None,
        ui_fgcolor: None,
        template_fields: template_fields.iter().map(|f| (*f).to_owned()).collect(),
        downstream_task_ids: downstream
            .get(task.task_id.as_str())
            .cloned()
            .unwrap_or_default(),
        doc_md: None,
        operator_name: operator.to_owned(),
        params: params_json(dag),
        class_ref: serde_json::json!({
            "module_path": "updraft",
            "class_name": task.kind.name(),
        }),
        is_mapped: false,
        extra_links: Vec::new(),
        task_group_id: dag.group_of(&task.task_id).map(|g| g.group_id.clone()),
    }
}

/// Airflow's operator for a kind of task, and the fields of it that are templates.
fn operator_of(kind: &TaskKind) -> (&'static str, &'static [&'static str]) {
    let fields: &'static [&'static str] = match kind {
        TaskKind::Bash(_) => &["bash_command", "env", "cwd"],
        TaskKind::Command(_) => &["command", "env", "cwd"],
        TaskKind::Noop => &[],
        TaskKind::Pod(_) => &["pod_template_file", "env"],
        TaskKind::Python(_) => &["op_args", "op_kwargs", "env"],
        TaskKind::Sensor(sensor) => match sensor.check {
            updraft_dag::SensorCheck::TriggerDagRun(_) => {
                &["trigger_dag_id", "trigger_run_id", "logical_date", "conf"]
            }
            _ => &["sensor"],
        },
    };
    (super::models::operator_of(kind), fields)
}

/// An enum's name as it is written in DAG files (its serde name).
fn enum_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(name)) => name,
        _ => String::new(),
    }
}
