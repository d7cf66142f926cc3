//! Builders shared by the integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use updraft_dag::{DEFAULT_POOL, Dag, Schedule, Task, TaskKind, TriggerRule, WeightRule};

pub fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

pub fn task(id: &str, upstream: &[&str]) -> Task {
    Task {
        task_id: id.to_string(),
        upstream: upstream.iter().map(|s| s.to_string()).collect(),
        trigger_rule: TriggerRule::AllSuccess,
        retries: 0,
        retry_delay: Duration::from_secs(300),
        retry_exponential_backoff: false,
        max_retry_delay: None,
        execution_timeout: None,
        pool: DEFAULT_POOL.to_string(),
        pool_slots: 1,
        priority_weight: 1,
        weight_rule: WeightRule::Downstream,
        depends_on_past: false,
        env: BTreeMap::new(),
        cwd: None,
        connections: vec![],
        branching: None,
        do_xcom_push: false,
        callbacks: Default::default(),
        outlets: vec![],
        expand: None,
        max_active_tis_per_dag: None,
        kind: TaskKind::Noop,
    }
}

pub fn with_rule(mut t: Task, rule: TriggerRule) -> Task {
    t.trigger_rule = rule;
    t
}

pub fn dag(schedule: Schedule, tasks: Vec<Task>) -> Dag {
    Dag {
        dag_id: "d".to_string(),
        tenant: "default".to_string(),
        fileloc: "d.yaml".to_string(),
        description: None,
        schedule,
        timezone: Tz::UTC,
        start_date: None,
        end_date: None,
        catchup: true,
        max_active_runs: 16,
        max_active_tasks: 16,
        tags: Vec::new(),
        params: BTreeMap::new(),
        env: BTreeMap::new(),
        is_paused_upon_creation: None,
        groups: Vec::new(),
        run_callbacks: Default::default(),
        dagrun_timeout: None,
        tasks,
    }
}

pub fn cron_dag(expr: &str, tz: Tz, start: Option<DateTime<Utc>>, catchup: bool) -> Dag {
    let mut d = dag(Schedule::Cron(expr.to_string()), vec![task("t", &[])]);
    d.timezone = tz;
    d.start_date = start;
    d.catchup = catchup;
    d
}

/// A run of `dag` driven to its end: every scheduled task succeeds (outcomes in `failing` fail)
/// and a branching task's skips, from the value `values` gives it, are applied to instances
/// still none or scheduled, as the store applies them with its success. A branch task whose
/// value cannot be followed fails. Returns the final state of every task by id.
pub fn run_to_end(
    dag: &Dag,
    values: &std::collections::HashMap<&str, serde_json::Value>,
    failing: &[&str],
) -> BTreeMap<String, updraft_core::TaskState> {
    use updraft_core::evaluate::{TiSnapshot, evaluate_run_indexed};
    use updraft_core::{DagIndex, TaskState, branch_skips};
    let index = DagIndex::new(dag);
    let mut states: BTreeMap<String, TaskState> = dag
        .tasks
        .iter()
        .map(|t| (t.task_id.clone(), TaskState::None))
        .collect();
    let now = utc(2024, 1, 1, 0, 0);
    for _ in 0..=2 * dag.tasks.len() + 2 {
        let tis: Vec<TiSnapshot> = states
            .iter()
            .map(|(id, s)| TiSnapshot {
                task_id: id.clone(),
                map_index: -1,
                state: *s,
                try_number: 1,
                retry_at: None,
            })
            .collect();
        let eval = evaluate_run_indexed(dag, &index, &tis, None, now);
        for (id, _, to) in &eval.transitions {
            states.insert(id.clone(), *to);
        }
        if eval.run_state.is_some() {
            return states;
        }
        let scheduled: Vec<String> = index
            .topological_order()
            .iter()
            .map(|&p| index.task_id(p as usize).to_owned())
            .filter(|id| states[id] == TaskState::Scheduled)
            .collect();
        for id in scheduled {
            // An earlier task's skips this round may have reached it.
            if states[&id] != TaskState::Scheduled {
                continue;
            }
            if failing.contains(&id.as_str()) {
                states.insert(id, TaskState::Failed);
                continue;
            }
            match branch_skips(dag, &index, &id, values.get(id.as_str())) {
                Ok(skips) => {
                    states.insert(id, TaskState::Success);
                    for s in skips {
                        if matches!(states[&s], TaskState::None | TaskState::Scheduled) {
                            states.insert(s, TaskState::Skipped);
                        }
                    }
                }
                Err(_) => {
                    states.insert(id, TaskState::Failed);
                }
            }
        }
    }
    panic!("the run did not end: {states:?}");
}
