//! The scheduling core's decision step on large DAGs (10,000 tasks): evaluating a run (fresh,
//! mid-run with mixed trigger rules and retries, and right after one task ended) for several
//! shapes, and choosing what to queue among 10,000 scheduled instances across pools.
//!
//! Run: `cargo bench -p updraft-core --bench decision`. Inputs are built outside the timed
//! part; the DAG index is built once per DAG version, as the scheduler does.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use chrono::{DateTime, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use updraft_core::evaluate::{TiSnapshot, evaluate_run_indexed};
use updraft_core::index::DagIndex;
use updraft_core::queue::{Candidate, Capacity, select_to_queue};
use updraft_core::state::TaskState;
use updraft_dag::{Dag, Schedule, Task, TriggerRule};

use common::{dag, task, utc, with_rule};

const TASKS: usize = 10_000;

fn id(i: usize) -> String {
    format!("t{i:05}")
}

fn build(tasks: Vec<Task>) -> Dag {
    dag(Schedule::None, tasks)
}

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
    const WIDTH: usize = 100;
    let rules = [
        TriggerRule::AllSuccess,
        TriggerRule::AllDone,
        TriggerRule::OneFailed,
        TriggerRule::NoneFailed,
        TriggerRule::OneSuccess,
    ];
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
                with_rule(task(&id(i), &ups), rules[i % rules.len()])
            })
            .collect(),
    )
}

/// 9,999 tasks into one.
fn fan_in() -> Dag {
    let mut tasks: Vec<Task> = (0..TASKS - 1).map(|i| task(&id(i), &[])).collect();
    let ups: Vec<String> = (0..TASKS - 1).map(id).collect();
    let ups: Vec<&str> = ups.iter().map(String::as_str).collect();
    tasks.push(task(&id(TASKS - 1), &ups));
    build(tasks)
}

fn now() -> DateTime<Utc> {
    utc(2026, 1, 1, 12, 0)
}

fn fresh(dag: &Dag) -> Vec<TiSnapshot> {
    dag.tasks
        .iter()
        .map(|t| snapshot(&t.task_id, TaskState::None))
        .collect()
}

fn snapshot(task_id: &str, state: TaskState) -> TiSnapshot {
    TiSnapshot {
        task_id: task_id.to_string(),
        state,
        try_number: u32::from(state != TaskState::None),
        retry_at: (state == TaskState::UpForRetry).then(|| now() - chrono::Duration::seconds(1)),
    }
}

/// The first half done (a few failed, a few waiting for a retry that is due), a band running,
/// the rest not started.
fn mid_run(dag: &Dag) -> Vec<TiSnapshot> {
    let n = dag.tasks.len();
    dag.tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let state = match i {
                i if i < n / 2 && i % 97 == 0 => TaskState::Failed,
                i if i < n / 2 && i % 89 == 0 => TaskState::UpForRetry,
                i if i < n / 2 => TaskState::Success,
                i if i < n / 2 + 200 => TaskState::Running,
                _ => TaskState::None,
            };
            snapshot(&t.task_id, state)
        })
        .collect()
}

/// A chain where everything before task `k` succeeded and `k` just did too: the step that
/// follows one event.
fn one_event(dag: &Dag, k: usize) -> Vec<TiSnapshot> {
    dag.tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let state = if i <= k {
                TaskState::Success
            } else {
                TaskState::None
            };
            snapshot(&t.task_id, state)
        })
        .collect()
}

fn evaluate(c: &mut Criterion) {
    let mut group = c.benchmark_group("evaluate_run (10,000 tasks)");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3));
    let shapes = [
        ("independent", independent()),
        ("chain", chain()),
        ("layered", layered()),
        ("fan_in", fan_in()),
    ];
    for (name, dag) in &shapes {
        let index = DagIndex::new(dag);
        let tis = fresh(dag);
        group.bench_function(format!("fresh/{name}"), |b| {
            b.iter(|| evaluate_run_indexed(dag, &index, black_box(&tis), None, now()))
        });
        let tis = mid_run(dag);
        group.bench_function(format!("mid_run/{name}"), |b| {
            b.iter(|| evaluate_run_indexed(dag, &index, black_box(&tis), None, now()))
        });
    }
    let (_, chain) = &shapes[1];
    let index = DagIndex::new(chain);
    let tis = one_event(chain, TASKS / 2);
    group.bench_function("one_task_ended/chain", |b| {
        b.iter(|| evaluate_run_indexed(chain, &index, black_box(&tis), None, now()))
    });
    group.bench_function("build_index/layered", |b| {
        b.iter(|| DagIndex::new(black_box(&shapes[2].1)))
    });
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
    };
    let mut group = c.benchmark_group("select_to_queue (10,000 scheduled)");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3));
    group.bench_function("8 pools, 20 DAGs", |b| {
        b.iter(|| select_to_queue(black_box(&candidates), black_box(&capacity)))
    });
    group.finish();
}

criterion_group!(benches, evaluate, queue);
criterion_main!(benches);
