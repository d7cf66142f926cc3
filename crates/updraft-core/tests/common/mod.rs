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
        do_xcom_push: false,
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
