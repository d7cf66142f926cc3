//! The scheduling core's decision step on large DAGs (10,000 tasks).
//!
//! Measured:
//!
//! * `evaluate_run`: a fresh run, a run half way through (mixed trigger rules, failures, retries
//!   due and retries waiting, a band running) and the step right after one task ended, for four
//!   shapes: 10,000 independent tasks, a chain of 10,000, 100 layers of 100 (each task depending
//!   on three tasks of the layer above) and a fan-in of 9,999 tasks into one;
//! * `dag_index`: building the per-DAG index those evaluations use (once per DAG version);
//! * `priority_weights`: effective priority weights of every task (computed when a run is
//!   created), with the `downstream` and `upstream` weight rules;
//! * `select_to_queue`: choosing what to queue among 10,000 scheduled instances across pools,
//!   DAG limits and parallelism;
//! * `per_event`: the small per-event decisions: what a finished try becomes, and the data
//!   intervals of the next runs of a cron DAG.
//!
//! Run: `cargo bench -p updraft-core --bench decision` (about a minute and a half; add a filter
//! such as `-- priority_weights` to run one group). Inputs are built outside the timed part; the
//! DAG index is built once per DAG version, as the scheduler does.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use criterion::{
    BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime,
};
use updraft_core::evaluate::{TiSnapshot, evaluate_run_indexed};
use updraft_core::index::DagIndex;
use updraft_core::queue::{Candidate, Capacity, priority_weights_indexed, select_to_queue};
use updraft_core::retry::{TryOutcome, on_try_finished};
use updraft_core::state::TaskState;
use updraft_core::timetable::{DataInterval, due_intervals, manual_interval, next_interval};
use updraft_dag::{Dag, Schedule, Task, TriggerRule, WeightRule};

use common::{cron_dag, dag, task, utc, with_rule};

const TASKS: usize = 10_000;
const WIDTH: usize = 100;

fn id(i: usize) -> String {
    format!("t{i:05}")
}

fn build(tasks: Vec<Task>) -> Dag {
    dag(Schedule::None, tasks)
}

/// Trigger rules handed out round-robin to the tasks of the layered DAG.
const RULES: [TriggerRule; 6] = [
    TriggerRule::AllSuccess,
    TriggerRule::AllDone,
    TriggerRule::OneFailed,
    TriggerRule::NoneFailed,
    TriggerRule::OneSuccess,
    TriggerRule::NoneFailedMinOneSuccess,
];

/// 10,000 tasks without edges.
fn independent() -> Dag {
    build((0..TASKS).map(|i| task(&id(i), &[])).collect())
}

/// 10,000 tasks in a line.
fn chain() -> Dag {
    build(
        (0..TASKS)
            .map(|i| {
                let up = (i > 0).then(|| id(i - 1));
                task(&id(i), &up.iter().map(String::as_str).collect::<Vec<_>>())
            })
            .collect(),
    )
}

/// 100 layers of 100; each task depends on three of the layer above; trigger rules vary.
fn layered() -> Dag {
    build(
        (0..TASKS)
            .map(|i| {
                let (layer, col) = (i / WIDTH, i % WIDTH);
                let ups: Vec<String> = if layer == 0 {
                    Vec::new()
                } else {
                    (0..3)
                        .map(|k| id((layer - 1) * WIDTH + (col + k * 37) % WIDTH))
                        .collect()
                };
                let ups: Vec<&str> = ups.iter().map(String::as_str).collect();
                with_rule(task(&id(i), &ups), RULES[i % RULES.len()])
            })
            .collect(),
    )
}

/// 9,999 tasks into one (`all_success`).
fn fan_in() -> Dag {
    let mut tasks: Vec<Task> = (0..TASKS - 1).map(|i| task(&id(i), &[])).collect();
    let ups: Vec<String> = (0..TASKS - 1).map(id).collect();
    let ups: Vec<&str> = ups.iter().map(String::as_str).collect();
    tasks.push(task(&id(TASKS - 1), &ups));
    build(tasks)
}

fn shapes() -> [(&'static str, Dag); 4] {
    [
        ("independent", independent()),
        ("chain", chain()),
        ("layered", layered()),
        ("fan_in", fan_in()),
    ]
}

fn now() -> DateTime<Utc> {
    utc(2026, 1, 1, 12, 0)
}

fn snapshot(task_id: &str, state: TaskState) -> TiSnapshot {
    TiSnapshot {
        task_id: task_id.to_string(),
        map_index: -1,
        state,
        try_number: u32::from(state != TaskState::None),
        retry_at: None,
    }
}

fn fresh(dag: &Dag) -> Vec<TiSnapshot> {
    dag.tasks
        .iter()
        .map(|t| snapshot(&t.task_id, TaskState::None))
        .collect()
}

/// The first half done (a few failed, a few waiting for a retry, half of those due), a band
/// running, the rest not started. Declaration order is a topological order in every shape.
fn mid_run(dag: &Dag) -> Vec<TiSnapshot> {
    let half = dag.tasks.len() / 2;
    dag.tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let state = match i {
                i if i < half && i % 97 == 0 => TaskState::Failed,
                i if i < half && i % 89 == 0 => TaskState::UpForRetry,
                i if i < half => TaskState::Success,
                i if i < half + 200 => TaskState::Running,
                _ => TaskState::None,
            };
            let mut ti = snapshot(&t.task_id, state);
            if state == TaskState::UpForRetry {
                let secs = if i % 2 == 0 { -1 } else { 60 + i as i64 };
                ti.retry_at = Some(now() + chrono::Duration::seconds(secs));
            }
            ti
        })
        .collect()
}

/// The run right after task `k` succeeded: the tasks listed before it succeeded, those after it
/// not started, except the ones whose upstreams had all succeeded before: those are running.
/// Only the tasks right downstream of `k` are left to decide.
fn one_event(dag: &Dag, k: usize) -> Vec<TiSnapshot> {
    let index = DagIndex::new(dag);
    let mut states = vec![TaskState::None; dag.tasks.len()];
    for s in &mut states[..=k] {
        *s = TaskState::Success;
    }
    for p in k + 1..dag.tasks.len() {
        let ups = index.upstream(p);
        if ups
            .iter()
            .all(|&u| states[u as usize] == TaskState::Success)
            && !ups.contains(&(k as u32))
        {
            states[p] = TaskState::Running;
        }
    }
    dag.tasks
        .iter()
        .zip(states)
        .map(|(t, s)| snapshot(&t.task_id, s))
        .collect()
}

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
}

fn evaluate(c: &mut Criterion) {
    let mut group = c.benchmark_group("evaluate_run");
    configure(&mut group);
    for (name, dag) in &shapes() {
        let index = DagIndex::new(dag);
        let cases = [
            ("fresh", fresh(dag)),
            ("mid_run", mid_run(dag)),
            ("one_task_ended", one_event(dag, TASKS / 2)),
        ];
        for (case, tis) in &cases {
            group.bench_function(format!("{case}/{name}"), |b| {
                b.iter(|| evaluate_run_indexed(dag, &index, black_box(tis), None, now()))
            });
        }
    }
    group.finish();
}

fn index(c: &mut Criterion) {
    let mut group = c.benchmark_group("dag_index");
    configure(&mut group);
    for (name, dag) in &shapes() {
        group.bench_function(format!("build/{name}"), |b| {
            b.iter(|| DagIndex::new(black_box(dag)))
        });
    }
    group.finish();
}

fn weights(c: &mut Criterion) {
    let mut group = c.benchmark_group("priority_weights");
    configure(&mut group);
    for (name, mut dag) in shapes() {
        for (i, t) in dag.tasks.iter_mut().enumerate() {
            t.priority_weight = 1 + (i % 7) as i64;
        }
        let index = DagIndex::new(&dag);
        group.bench_function(format!("downstream/{name}"), |b| {
            b.iter(|| priority_weights_indexed(black_box(&dag), &index))
        });
        for t in &mut dag.tasks {
            t.weight_rule = WeightRule::Upstream;
        }
        group.bench_function(format!("upstream/{name}"), |b| {
            b.iter(|| priority_weights_indexed(black_box(&dag), &index))
        });
    }
    group.finish();
}

/// 10,000 scheduled instances over 20 DAGs and 8 pools, with room for about a third.
fn queue(c: &mut Criterion) {
    let candidates: Vec<Candidate> = (0..TASKS)
        .map(|i| Candidate {
            dag_id: format!("dag{}", i % 20),
            pool: format!("pool{}", i % 8),
            pool_slots: 1 + (i % 3) as u32,
            priority_weight: (i % 50) as i64,
            logical_date: now() - chrono::Duration::minutes((i % 100) as i64),
            task_id: id(i),
        })
        .collect();
    let capacity = Capacity {
        pool_free: (0..8).map(|p| (format!("pool{p}"), 400)).collect(),
        dag_free: (0..20)
            .map(|d| (format!("dag{d}"), 200))
            .collect::<HashMap<_, _>>(),
        parallelism_free: 3_000,
        task_free: Default::default(),
    };
    let mut group = c.benchmark_group("select_to_queue");
    configure(&mut group);
    group.bench_function("10,000 scheduled, 8 pools, 20 DAGs", |b| {
        b.iter(|| select_to_queue(black_box(&candidates), black_box(&capacity)))
    });
    group.finish();
}

fn per_event(c: &mut Criterion) {
    let mut group = c.benchmark_group("per_event");
    configure(&mut group);
    let mut t = task("t", &[]);
    t.retries = 5;
    t.retry_exponential_backoff = true;
    t.max_retry_delay = Some(Duration::from_secs(3_600));
    group.bench_function("on_try_finished/failed_with_backoff", |b| {
        b.iter(|| on_try_finished(black_box(&t), 3, 6, TryOutcome::Failed, now()))
    });

    let berlin: Tz = "Europe/Berlin".parse().expect("a time zone");
    let hourly = cron_dag("0 * * * *", berlin, Some(utc(2025, 1, 1, 0, 0)), true);
    let last = DataInterval::new(utc(2025, 12, 31, 10, 0), utc(2025, 12, 31, 11, 0));
    group.bench_function("next_interval/hourly_cron", |b| {
        b.iter(|| next_interval(black_box(&hourly), Some(&last), now()))
    });
    group.bench_function("due_intervals/hourly_cron_catchup_16", |b| {
        b.iter(|| due_intervals(black_box(&hourly), Some(&last), now(), 16))
    });
    let no_catchup = cron_dag("*/15 * * * *", berlin, Some(utc(2025, 1, 1, 0, 0)), false);
    group.bench_function("due_intervals/quarter_hourly_no_catchup", |b| {
        b.iter(|| due_intervals(black_box(&no_catchup), Some(&last), now(), 16))
    });
    group.bench_function("manual_interval/hourly_cron", |b| {
        b.iter(|| manual_interval(black_box(&hourly), now()))
    });
    group.finish();
}

criterion_group!(benches, evaluate, index, weights, queue, per_event);
criterion_main!(benches);
