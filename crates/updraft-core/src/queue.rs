//! Choosing which scheduled task instances to queue within pools and concurrency limits, and
//! the effective priority weights that order them.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use updraft_dag::{Dag, WeightRule};

use crate::index::DagIndex;

/// A scheduled task instance that could be queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub dag_id: String,
    pub pool: String,
    pub pool_slots: u32,
    /// Effective priority (see [`priority_weights`]).
    pub priority_weight: i64,
    pub logical_date: DateTime<Utc>,
    pub task_id: String,
}

/// Free capacity right now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capacity {
    /// Free slots per pool name. A pool absent here does not exist.
    pub pool_free: HashMap<String, i64>,
    /// Free `max_active_tasks` per DAG id. A DAG absent here gets nothing queued.
    pub dag_free: HashMap<String, i64>,
    /// Free global `parallelism`.
    pub parallelism_free: i64,
}

/// Indices of candidates to queue now, in queueing order: highest `priority_weight` first, then
/// earliest `logical_date`, then `task_id` (then `dag_id`, then input position, so the order is
/// total).
///
/// Greedy in that order: a candidate is taken when its pool has at least `pool_slots` free
/// slots, its DAG at least one free `max_active_tasks` slot and the installation at least one
/// free `parallelism` slot; taking it uses those up. A candidate whose pool or DAG is absent from
/// `capacity` is never queued. A candidate that doesn't fit does not block lower-priority ones
/// that do; and since capacity only shrinks along the way, no candidate left out would still fit
/// once the selection is made.
pub fn select_to_queue(candidates: &[Candidate], capacity: &Capacity) -> Vec<usize> {
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&candidates[a], &candidates[b]);
        y.priority_weight
            .cmp(&x.priority_weight)
            .then_with(|| x.logical_date.cmp(&y.logical_date))
            .then_with(|| x.task_id.cmp(&y.task_id))
            .then_with(|| x.dag_id.cmp(&y.dag_id))
            .then_with(|| a.cmp(&b))
    });
    let mut pool_used: HashMap<&str, i64> = HashMap::new();
    let mut dag_used: HashMap<&str, i64> = HashMap::new();
    let mut parallelism_left = capacity.parallelism_free;
    let mut chosen = Vec::new();
    for i in order {
        if parallelism_left < 1 {
            break;
        }
        let c = &candidates[i];
        let (Some(&pool_free), Some(&dag_free)) = (
            capacity.pool_free.get(&c.pool),
            capacity.dag_free.get(&c.dag_id),
        ) else {
            continue;
        };
        let pool_now = pool_used.get(c.pool.as_str()).copied().unwrap_or(0);
        let dag_now = dag_used.get(c.dag_id.as_str()).copied().unwrap_or(0);
        let slots = i64::from(c.pool_slots);
        if pool_free - pool_now < slots || dag_free - dag_now < 1 {
            continue;
        }
        *pool_used.entry(c.pool.as_str()).or_insert(0) += slots;
        *dag_used.entry(c.dag_id.as_str()).or_insert(0) += 1;
        parallelism_left -= 1;
        chosen.push(i);
    }
    chosen
}

/// Effective priority of each task under its `weight_rule` (Airflow's `priority_weight_total`):
/// `downstream` = own weight + the weights of all (transitive) downstream tasks, `upstream` = own
/// + all upstream tasks, `absolute` = own. Sums saturate at the `i64` bounds.
pub fn priority_weights(dag: &Dag) -> HashMap<String, i64> {
    priority_weights_indexed(dag, &DagIndex::new(dag))
}

/// [`priority_weights`] with a prebuilt index. Quadratic in the worst case (a long chain), like
/// Airflow's; compute it once per DAG version.
pub fn priority_weights_indexed(dag: &Dag, index: &DagIndex) -> HashMap<String, i64> {
    let n = index.len();
    let mut stamp = vec![0u32; n];
    let mut stack = Vec::new();
    let mut out = HashMap::with_capacity(n);
    for (p, task) in dag.tasks.iter().enumerate().take(n) {
        let mut total = task.priority_weight;
        let relatives: fn(&DagIndex, usize) -> &[u32] = match task.weight_rule {
            WeightRule::Absolute => {
                out.insert(task.task_id.clone(), total);
                continue;
            }
            WeightRule::Downstream => DagIndex::downstream,
            WeightRule::Upstream => DagIndex::upstream,
        };
        // Depth-first walk; `stamp[q] == p + 1` marks q as visited for this task.
        let mark = p as u32 + 1;
        stamp[p] = mark;
        stack.push(p);
        while let Some(q) = stack.pop() {
            for &r in relatives(index, q) {
                let r = r as usize;
                if stamp[r] != mark {
                    stamp[r] = mark;
                    total = total.saturating_add(dag.tasks[r].priority_weight);
                    stack.push(r);
                }
            }
        }
        out.insert(task.task_id.clone(), total);
    }
    out
}
