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
    /// Free `max_active_tasks` per DAG id. A DAG absent here is not limited by
    /// `max_active_tasks` (see [`admits`]).
    pub dag_free: HashMap<String, i64>,
    /// Free global `parallelism`.
    pub parallelism_free: i64,
    /// Free `max_active_tis_per_dag` per (DAG id, task id): tries of the task that may still
    /// be queued across the DAG's runs. A task absent here is not limited.
    pub task_free: HashMap<(String, String), i64>,
}

/// Indices of candidates to queue now, in queueing order: highest `priority_weight` first, then
/// earliest `logical_date`, then `task_id` (then `dag_id`, then input position, so the order is
/// total).
///
/// Greedy in that order: a candidate is taken when [`admits`] admits it into what is left of
/// its pool and DAG, its task is below its `max_active_tis_per_dag` (if in
/// [`Capacity::task_free`]) and the installation has at least one free `parallelism` slot;
/// taking it uses those up. A candidate whose pool is absent from `capacity` is never queued; one whose
/// DAG is absent is not limited by `max_active_tasks`. A candidate that doesn't fit does not
/// block lower-priority ones that do; and since capacity only shrinks along the way, no
/// candidate left out would still fit once the selection is made.
pub fn select_to_queue(candidates: &[Candidate], capacity: &Capacity) -> Vec<usize> {
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    // The input position breaks every tie, so an unstable sort gives the same order.
    order.sort_unstable_by(|&a, &b| {
        let (x, y) = (&candidates[a], &candidates[b]);
        y.priority_weight
            .cmp(&x.priority_weight)
            .then_with(|| x.logical_date.cmp(&y.logical_date))
            .then_with(|| x.task_id.cmp(&y.task_id))
            .then_with(|| x.dag_id.cmp(&y.dag_id))
            .then_with(|| a.cmp(&b))
    });
    // Free capacity left as candidates are taken: one lookup per map and candidate.
    let mut pool_left: HashMap<&str, i64> = capacity
        .pool_free
        .iter()
        .map(|(k, &v)| (k.as_str(), v))
        .collect();
    let mut dag_left: HashMap<&str, i64> = capacity
        .dag_free
        .iter()
        .map(|(k, &v)| (k.as_str(), v))
        .collect();
    let mut parallelism_left = capacity.parallelism_free;
    // Only tasks with `max_active_tis_per_dag` are here; usually none.
    let mut task_left: HashMap<(&str, &str), i64> = capacity
        .task_free
        .iter()
        .map(|((d, t), &v)| ((d.as_str(), t.as_str()), v))
        .collect();
    let mut chosen = Vec::new();
    for i in order {
        if parallelism_left < 1 {
            break;
        }
        let c = &candidates[i];
        let task_free = if task_left.is_empty() {
            None
        } else {
            task_left.get_mut(&(c.dag_id.as_str(), c.task_id.as_str()))
        };
        if task_free.as_deref().is_some_and(|free| *free < 1) {
            continue;
        }
        let slots = i64::from(c.pool_slots);
        let pool_free = pool_left.get_mut(c.pool.as_str());
        let dag_free = dag_left.get_mut(c.dag_id.as_str());
        if !admits(
            pool_free.as_deref().copied(),
            slots,
            dag_free.as_deref().copied(),
        ) {
            continue;
        }
        if let Some(free) = pool_free {
            *free -= slots;
        }
        if let Some(free) = dag_free {
            *free -= 1;
        }
        if let Some(free) = task_free {
            *free -= 1;
        }
        parallelism_left -= 1;
        chosen.push(i);
    }
    chosen
}

/// The admission rule for pools and DAG limits, the same for the scheduler's choice
/// ([`select_to_queue`]) and for the store's re-check inside the transaction that queues:
/// whether one more instance taking `pool_slots` fits.
///
/// `pool_free` is what is left of the instance's pool, `None` when the pool does not exist:
/// such an instance is never admitted (Airflow leaves it scheduled). `dag_free` is what is left
/// of its DAG's `max_active_tasks`, `None` when no limit is given for the DAG: it is then not
/// limited by `max_active_tasks` (its pool, and the scheduler's `parallelism`, still apply).
pub fn admits(pool_free: Option<i64>, pool_slots: i64, dag_free: Option<i64>) -> bool {
    pool_free.is_some_and(|free| free >= pool_slots) && dag_free.is_none_or(|free| free >= 1)
}

/// Effective priority of each task under its `weight_rule` (Airflow's `priority_weight_total`):
/// `downstream` = own weight + the weights of all (transitive) downstream tasks, `upstream` = own
/// + all upstream tasks, `absolute` = own. Sums saturate at the `i64` bounds.
pub fn priority_weights(dag: &Dag) -> HashMap<String, i64> {
    priority_weights_indexed(dag, &DagIndex::new(dag))
}

/// [`priority_weights`] with a prebuilt index.
///
/// A task's total counts every task it reaches once, however many paths lead there. Summing
/// each task's relatives one by one is quadratic (a chain of 10,000 tasks visits 50 million
/// relatives), so totals are computed for blocks of 256 target tasks at a time: walking the
/// tasks in topological order, each task that reaches the block gets a bit mask of the block's
/// tasks it reaches (the union of the masks of its direct relatives), and adds their weights in
/// a few table lookups. That is at most about `tasks × edges / 256` word operations (a few
/// milliseconds for 10,000 tasks in a chain or in layers), and linear when few tasks reach each
/// block (independent tasks, a fan-in). The result is exactly the one-by-one saturating sum;
/// in the only cases where that sum's order could matter (weights of both signs whose
/// magnitudes add up past `i64::MAX`), for graphs with a cycle and for small DAGs, the
/// one-by-one walk is used.
pub fn priority_weights_indexed(dag: &Dag, index: &DagIndex) -> HashMap<String, i64> {
    let n = index.len();
    if n <= FAST_WEIGHTS_MIN_TASKS || dag.tasks.len() != n || !sum_is_order_free(dag) {
        return priority_weights_walk(dag, index);
    }
    let Some(order) = Ranked::new(index) else {
        return priority_weights_walk(dag, index);
    };
    let needs = |rule| dag.tasks.iter().any(|t| t.weight_rule == rule);
    let down = needs(WeightRule::Downstream).then(|| order.totals(dag, index, Direction::Down));
    let up = needs(WeightRule::Upstream).then(|| order.totals(dag, index, Direction::Up));
    let mut out = HashMap::with_capacity(n);
    for (p, task) in dag.tasks.iter().enumerate() {
        let total = match (task.weight_rule, &down, &up) {
            (WeightRule::Downstream, Some(totals), _) | (WeightRule::Upstream, _, Some(totals)) => {
                clamp_i64(totals[p])
            }
            _ => task.priority_weight,
        };
        out.insert(task.task_id.clone(), total);
    }
    out
}

/// Below this many tasks the one-by-one walk is cheap enough.
const FAST_WEIGHTS_MIN_TASKS: usize = 64;

/// Whether a saturating sum of any subset of the DAG's weights, in any order, equals the exact
/// sum clamped to `i64`: true when no partial sum can leave the `i64` range, or when all weights
/// have the same sign (the partial sums then move one way and stay at the bound once there).
fn sum_is_order_free(dag: &Dag) -> bool {
    let weights = || dag.tasks.iter().map(|t| t.priority_weight);
    let magnitude: u128 = weights().map(|w| u128::from(w.unsigned_abs())).sum();
    magnitude <= i64::MAX as u128 || weights().all(|w| w >= 0) || weights().all(|w| w <= 0)
}

fn clamp_i64(x: i128) -> i64 {
    i64::try_from(x).unwrap_or(if x < 0 { i64::MIN } else { i64::MAX })
}

#[derive(Clone, Copy)]
enum Direction {
    Down,
    Up,
}

/// Each position's rank in the index's topological order.
struct Ranked {
    rank: Vec<u32>,
}

impl Ranked {
    /// None when the index's order is not topological (the graph has a cycle).
    fn new(index: &DagIndex) -> Option<Ranked> {
        let n = index.len();
        let mut rank = vec![0u32; n];
        for (r, &p) in index.topological_order().iter().enumerate() {
            rank[p as usize] = r as u32;
        }
        let acyclic = (0..n).all(|p| {
            index
                .downstream(p)
                .iter()
                .all(|&d| rank[d as usize] > rank[p])
        });
        acyclic.then_some(Ranked { rank })
    }

    /// For each position, the exact sum of the weights of the tasks it reaches following
    /// `direction` (itself included).
    fn totals(&self, dag: &Dag, index: &DagIndex, direction: Direction) -> Vec<i128> {
        // Relabel the tasks so that every followed edge goes from a lower to a higher label:
        // the topological rank going down, the reversed rank going up.
        let n = self.rank.len();
        let label = |p: usize| match direction {
            Direction::Down => self.rank[p] as usize,
            Direction::Up => n - 1 - self.rank[p] as usize,
        };
        let mut by_label = vec![0u32; n];
        for p in 0..n {
            by_label[label(p)] = p as u32;
        }
        let mut start = Vec::with_capacity(n + 1);
        let mut next = Vec::new();
        start.push(0u32);
        for &p in &by_label {
            let relatives = match direction {
                Direction::Down => index.downstream(p as usize),
                Direction::Up => index.upstream(p as usize),
            };
            next.extend(relatives.iter().map(|&q| label(q as usize) as u32));
            start.push(next.len() as u32);
        }
        let weights: Vec<i64> = by_label
            .iter()
            .map(|&p| dag.tasks[p as usize].priority_weight)
            .collect();
        let by_label_totals = reach_sums(&start, &next, &weights);
        let mut totals = vec![0i128; n];
        for (l, &p) in by_label.iter().enumerate() {
            totals[p as usize] = by_label_totals[l];
        }
        totals
    }
}

/// `sums[v]` = the sum of `weights[u]` over every `u` reachable from `v` (itself included) in
/// the graph `v → next[start[v]..start[v + 1]]`, whose edges all go to higher labels.
///
/// Targets are taken in blocks of [`BLOCK`] labels `[lo, hi)`. `mask[v]` = the block's labels
/// `v` reaches = its own bit or'ed with the masks of its successors; it is computed for the
/// block's tasks and, from the top label down, for every predecessor of a task already found to
/// reach the block (`pending`, a bit set scanned a word at a time), so a block costs about the
/// number of tasks that reach it times their edges. A mask's weight is added a 64-bit word at a
/// time: a full word from its precomputed sum, a single bit directly, anything else through
/// eight 256-entry tables, one per byte, built for that word of the block when first needed.
fn reach_sums(start: &[u32], next: &[u32], weights: &[i64]) -> Vec<i128> {
    let n = weights.len();
    let (pred_start, pred) = crate::index::invert(n, start, next);
    let mut sums = vec![0i128; n];
    // Zero outside the tasks visited for the current block.
    let mut mask = vec![[0u64; WORDS]; n];
    let mut visited: Vec<u32> = Vec::new();
    let mut pending = vec![0u64; n.div_ceil(64)];
    let mut tables = vec![[[0i128; 256]; 8]; WORDS];
    for lo in (0..n).step_by(BLOCK) {
        let hi = (lo + BLOCK).min(n);
        let mut full = [0u64; WORDS];
        let mut full_sum = [0i128; WORDS];
        for (k, (f, s)) in full.iter_mut().zip(&mut full_sum).enumerate() {
            let (a, b) = ((lo + 64 * k).min(hi), (lo + 64 * k + 64).min(hi));
            *f = if b - a == 64 {
                u64::MAX
            } else {
                (1u64 << (b - a)) - 1
            };
            *s = weights[a..b].iter().map(|&w| i128::from(w)).sum();
            if b > a {
                pending[a / 64] |= *f;
            }
        }
        let mut tables_built = [false; WORDS];
        let mut word = (hi - 1) / 64;
        loop {
            let bits = pending[word];
            if bits == 0 {
                if word == 0 {
                    break;
                }
                word -= 1;
                continue;
            }
            let bit = 63 - bits.leading_zeros() as usize;
            pending[word] &= !(1u64 << bit);
            let v = word * 64 + bit;
            let mut m = [0u64; WORDS];
            if v >= lo {
                m[(v - lo) / 64] = 1u64 << ((v - lo) % 64);
            }
            for &u in &next[start[v] as usize..start[v + 1] as usize] {
                for (x, y) in m.iter_mut().zip(&mask[u as usize]) {
                    *x |= y;
                }
            }
            mask[v] = m;
            visited.push(v as u32);
            for &p in &pred[pred_start[v] as usize..pred_start[v + 1] as usize] {
                pending[p as usize / 64] |= 1u64 << (p % 64);
            }
            let mut sum = 0i128;
            for k in 0..WORDS {
                let w = m[k];
                if w == 0 {
                    continue;
                }
                if w == full[k] {
                    sum += full_sum[k];
                } else if w & (w - 1) == 0 {
                    sum += i128::from(weights[lo + 64 * k + w.trailing_zeros() as usize]);
                } else {
                    if !tables_built[k] {
                        tables_built[k] = true;
                        let base = lo + 64 * k;
                        for (byte, t) in tables[k].iter_mut().enumerate() {
                            for x in 1..256usize {
                                let u = base + 8 * byte + x.trailing_zeros() as usize;
                                let w = if u < hi { i128::from(weights[u]) } else { 0 };
                                t[x] = t[x & (x - 1)] + w;
                            }
                        }
                    }
                    sum += tables[k]
                        .iter()
                        .enumerate()
                        .map(|(byte, t)| t[((w >> (8 * byte)) & 0xff) as usize])
                        .sum::<i128>();
                }
            }
            sums[v] += sum;
        }
        for v in visited.drain(..) {
            mask[v as usize] = [0; WORDS];
        }
    }
    sums
}

/// 64-bit words per block of targets in [`reach_sums`].
const WORDS: usize = 4;
const BLOCK: usize = 64 * WORDS;

/// [`priority_weights_indexed`] one task at a time: a depth-first walk over each task's
/// relatives, adding their weights in walk order (saturating).
fn priority_weights_walk(dag: &Dag, index: &DagIndex) -> HashMap<String, i64> {
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use proptest::prelude::*;
    use updraft_dag::{DEFAULT_POOL, Schedule, Task, TaskKind, TriggerRule};

    use super::*;

    #[test]
    fn an_instance_is_admitted_only_into_an_existing_pool_with_room() {
        assert!(admits(Some(3), 3, Some(1)));
        assert!(!admits(Some(2), 3, Some(1)), "pool too small");
        assert!(!admits(None, 1, Some(1)), "no such pool");
        assert!(!admits(None, 0, None), "no such pool, even for no slots");
    }

    #[test]
    fn a_dag_limit_admits_while_one_slot_is_left_and_no_limit_admits_always() {
        assert!(admits(Some(1), 1, Some(1)));
        assert!(!admits(Some(1), 1, Some(0)), "DAG full");
        assert!(!admits(Some(1), 1, Some(-2)), "DAG over its limit");
        assert!(admits(Some(1), 1, None), "no limit given for the DAG");
    }

    fn dag(tasks: Vec<Task>) -> Dag {
        Dag {
            dag_id: "d".to_string(),
            tenant: "default".to_string(),
            fileloc: "d.yaml".to_string(),
            description: None,
            schedule: Schedule::None,
            timezone: chrono_tz::Tz::UTC,
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

    fn task(id: String, upstream: Vec<String>, priority_weight: i64, rule: WeightRule) -> Task {
        Task {
            task_id: id,
            upstream,
            trigger_rule: TriggerRule::AllSuccess,
            retries: 0,
            retry_delay: Duration::from_secs(300),
            retry_exponential_backoff: false,
            max_retry_delay: None,
            execution_timeout: None,
            pool: DEFAULT_POOL.to_string(),
            pool_slots: 1,
            priority_weight,
            weight_rule: rule,
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

    /// Up to 700 tasks (some ids repeated); each lists up to 4 upstream ids, mostly of earlier
    /// tasks, sometimes of any task (cycles, self-loops) or of no task.
    fn dags() -> impl Strategy<Value = Dag> {
        // Per DAG: small weights of both signs, huge ones of one sign (sums saturate), or
        // anything (the walk's order then matters and it is used instead).
        let weights = prop_oneof![
            3 => Just((-5i64, 20i64)),
            1 => Just((0, i64::MAX)),
            1 => Just((i64::MIN, 0)),
            1 => Just((i64::MIN, i64::MAX)),
        ];
        let rule = prop_oneof![
            4 => Just(WeightRule::Downstream),
            2 => Just(WeightRule::Upstream),
            1 => Just(WeightRule::Absolute),
        ];
        let edges = prop::collection::vec((0.0f64..1.0, 0u8..20), 0..4);
        let specs = weights.prop_flat_map(move |(lo, hi)| {
            prop::collection::vec((lo..=hi, rule.clone(), edges.clone()), 0..700)
        });
        (specs, prop::bool::weighted(0.1)).prop_map(|(specs, cyclic)| {
            let n = specs.len();
            let name = |i: usize| format!("t{}", if i % 53 == 52 { i - 1 } else { i });
            let tasks = specs
                .into_iter()
                .enumerate()
                .map(|(i, (w, rule, edges))| {
                    let ups = edges
                        .into_iter()
                        .filter_map(|(f, kind)| match kind {
                            0 => Some("missing".to_string()),
                            1 if cyclic => Some(name((f * n as f64) as usize)),
                            _ if i > 0 => Some(name((f * i as f64) as usize)),
                            _ => None,
                        })
                        .collect();
                    task(name(i), ups, w, rule)
                })
                .collect();
            dag(tasks)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn blockwise_weights_equal_the_walk(d in dags()) {
            let index = DagIndex::new(&d);
            prop_assert_eq!(priority_weights_indexed(&d, &index), priority_weights_walk(&d, &index));
        }

        /// Small weights of one sign, no cycles: the block-wise sums are always used.
        #[test]
        fn blockwise_sums_on_acyclic_graphs(d in dags().prop_filter("acyclic", |d| {
            Ranked::new(&DagIndex::new(d)).is_some()
        })) {
            let mut d = d;
            for (i, t) in d.tasks.iter_mut().enumerate() {
                t.priority_weight = (i % 11) as i64;
            }
            let index = DagIndex::new(&d);
            let ranked = Ranked::new(&index).expect("acyclic");
            let walk = priority_weights_walk(&d, &index);
            let down = ranked.totals(&d, &index, Direction::Down);
            let up = ranked.totals(&d, &index, Direction::Up);
            for (p, t) in d.tasks.iter().enumerate() {
                let expect = match t.weight_rule {
                    WeightRule::Downstream => down[p],
                    WeightRule::Upstream => up[p],
                    WeightRule::Absolute => i128::from(t.priority_weight),
                };
                // With duplicate ids the walk keeps the last task of that id.
                if d.tasks[p + 1..].iter().all(|u| u.task_id != t.task_id) {
                    prop_assert_eq!(i128::from(walk[&t.task_id]), expect);
                }
            }
        }
    }
}
