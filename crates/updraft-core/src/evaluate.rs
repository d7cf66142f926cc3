//! A DAG run's next decisions: which task instances become scheduled, skipped or
//! upstream_failed, and whether the run is over (Airflow's `TriggerRuleDep` with
//! `flag_upstream_failed`, `PrevDagrunDep` and `DagRun.update_state`).
//!
//! ## Trigger rules
//!
//! Each rule looks only at the states of the task's *direct* upstream instances, counted into
//! [`UpstreamCounts`]; [`trigger_decision`] maps the counts to [`TriggerDecision`]. Decisions that
//! flag a task (skipped / upstream_failed) are taken as soon as they are certain, even while
//! other upstreams still run, exactly as Airflow does. A task whose rule is `one_success`,
//! `one_failed`, `one_done` or `always` may also *run* before all its upstreams are finished;
//! every other rule runs only once all upstreams are terminal.
//!
//! In the table, *n* is the number of upstreams that are not `removed`, *s* success, *f* failed,
//! *uf* upstream_failed, *k* skipped, and "all done" means *s + f + uf + k = n*:
//!
//! | rule | run when | skipped when | upstream_failed when |
//! |---|---|---|---|
//! | `all_success` | *s = n* | no *f/uf*, *k > 0* | *f + uf > 0* |
//! | `all_failed` | *f + uf = n* | *s + k > 0* | never |
//! | `all_done` | all done | never | never |
//! | `all_done_min_one_success` | all done, *k = 0*, *s > 0* | *k > 0* | all done, *k = 0*, *s = 0* |
//! | `all_skipped` | *k = n* | *s + f + uf > 0* | never |
//! | `one_success` | *s > 0* | all done, *s = 0*, *k = n* | all done, *s = 0*, *k < n* |
//! | `one_failed` | *f + uf > 0* | all done, *f + uf = 0* | never |
//! | `one_done` | *s + f > 0* | all done, *s + f = 0* | never |
//! | `none_failed` | all done, no *f/uf* | never | *f + uf > 0* |
//! | `none_failed_min_one_success` | all done, no *f/uf*, *k < n* | all done, no *f/uf*, *k = n* | *f + uf > 0* |
//! | `none_skipped` | all done, *k = 0* | *k > 0* | never |
//! | `always` | always | never | never |
//!
//! A task with no upstream runs at once whatever its rule. **`removed` upstreams** are terminal
//! and count as neither success nor failure: they are left out of the counts altogether (*n*
//! excludes them), as if the edge did not exist, which is what Airflow sees once a task is
//! removed from the DAG. A task whose upstreams are all removed is runnable like a root task.
//! With this, every combination of terminal upstream states leads to a decision, so without
//! `depends_on_past` a run can never get stuck.
//!
//! **`all_done_min_one_success`** (Airflow 3.1): skipped upstreams are not "done" for this
//! rule, so one skipped upstream skips the task at once; otherwise it waits for every upstream
//! and runs if at least one succeeded, else it is upstream_failed (Airflow's
//! `TriggerRuleDep`, whose tests also skip it after a partly skipped mapped upstream).
//!
//! ## One call resolves a cascade
//!
//! Tasks are visited in topological order on a working copy of the states, so a decision is
//! seen by the task's downstream tasks within the same call: a chain of tasks downstream of a
//! failure is marked upstream_failed by a single [`evaluate_run`]. The transitions come out in
//! that topological order (a task's transition after those of its upstreams).
//!
//! ## Retries and depends_on_past
//!
//! An `up_for_retry` instance is scheduled again once its `retry_at <= now` (no `retry_at` means
//! at once); otherwise its `retry_at` contributes to [`RunEvaluation::wake_at`]. An
//! `up_for_reschedule` instance (a sensor between pokes, see [`crate::sensor`]) is the same,
//! its `retry_at` being its next poke time: it is not terminal, so its downstream tasks wait
//! and the run goes on. A task with
//! `depends_on_past = true` may only go `none → scheduled` if the same task in `previous_run`
//! is success or skipped, or there is no previous run, or the task is absent from it. It does
//! not hold back skipped/upstream_failed decisions (Airflow's default
//! `wait_for_past_depends_before_skipping = false`), nor a retry in the same run (the task
//! already passed the check).
//!
//! ## When the run is over
//!
//! When every instance is terminal, the run is `failed` if any leaf task (no downstream) is
//! failed or upstream_failed, else `success` (Airflow's rule: a failure handled downstream, e.g.
//! by an `all_done` cleanup leaf, leaves the run successful).
//!
//! **Deadlock**: when, after this call's transitions, some instance is still not terminal but
//! none is scheduled, queued, running, up_for_retry or up_for_reschedule, nothing can ever
//! change (the single topological pass has reached the fixpoint), so the run is `failed`; the stuck instances are
//! left in state `none` (as Airflow does). This only happens through `depends_on_past` on a
//! previous run whose task did not succeed. (Airflow itself does not fail runs whose tasks
//! use `depends_on_past`; it leaves them running.)
//!
//! ## Focused evaluation
//!
//! A run's evaluation reaches a fixpoint: afterwards no instance is decidable until some instance
//! changes. When the only changes since are known tries ending, only the instances they can
//! affect need a look: [`focus`] names them (the tasks that changed, their downstream tasks and
//! those tasks' upstreams) and [`evaluate_run_focused`] decides from their snapshots alone, so
//! the cost of a step is that of the tries it records, not of the run's size. It gives up
//! (`None`, read the whole run) where the focus cannot see enough: a skip or upstream_failed that
//! would cascade beyond it, or no instance of the run left scheduled, queued, running or
//! up_for_retry or up_for_reschedule (the run may be over, and only the whole run says how).
//! Retries and pokes that fall due are not its business: the caller evaluates the whole run at their `wake_at`.
//! An expanded task in the focus is read as its instances that have not ended (snapshots) and
//! the ones that have, counted by state ([`EndedInstances`]): trigger rules only count them,
//! and an ended instance has nothing left to decide, so a step after one of 10,000 instances
//! ends reads a few rows and a few counts, not 10,000 snapshots.
//!
//! ## Mapped tasks
//!
//! A mapped task (one with `expand`) has one instance, map index -1 (the placeholder), until it
//! expands; the placeholder is decided like any instance (its trigger rule schedules it), and
//! the caller then expands a scheduled placeholder into its instances (see [`crate::mapping`]).
//! Once expanded, the task's instances (map index >= 0, in `tis` beside the others) are each
//! decided on their own: each may retry, and a cleared one (`none`) is decided by the task's
//! trigger rule. Their transitions come out in [`RunEvaluation::mapped_transitions`]. Trigger
//! rules over a mapped upstream count every one of its instances (Airflow: `all_success` waits
//! for all of them; one failed instance makes the downstream upstream_failed), and the run is
//! over when every instance is terminal; it failed if an instance of a leaf task failed.
//!
//! ## Instances and DAG tasks
//!
//! A DAG task without a snapshot in `tis` is treated as an instance in state `none` (the caller
//! is expected to have created one instance per task; a transition naming such a task means the
//! instance should be created). Snapshots naming no task of the DAG are ignored (the caller
//! should mark them `removed`). If a task has several snapshots, the first one counts.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use updraft_dag::{Dag, TriggerRule};

use crate::index::DagIndex;
use crate::state::{RunState, TaskState};

/// The recorded state of one task instance of the run being evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TiSnapshot {
    pub task_id: String,
    /// Airflow's map index: -1 for an unmapped instance (or a mapped task's placeholder before
    /// it expands), 0.. for the instances of an expanded task.
    pub map_index: i32,
    pub state: TaskState,
    pub try_number: u32,
    /// For `up_for_retry`: the retry time; for `up_for_reschedule`: the next poke time.
    pub retry_at: Option<DateTime<Utc>>,
}

/// The ended (terminal) instances of an expanded task in one state, counted: what a focused
/// read gives instead of their snapshots (see [`evaluate_run_focused`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedInstances {
    pub task_id: String,
    pub state: TaskState,
    pub count: u32,
}

/// What to do next with a run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunEvaluation {
    /// (task_id, from, to): none→scheduled, up_for_retry→scheduled and
    /// up_for_reschedule→scheduled (when retry_at <= now), none→skipped, none→upstream_failed. In topological order.
    pub transitions: Vec<(String, TaskState, TaskState)>,
    /// The same for the instances of expanded tasks: (task_id, map_index, from, to), in
    /// topological order of their tasks, then map index order. Empty for a run of unmapped
    /// tasks.
    pub mapped_transitions: Vec<(String, i32, TaskState, TaskState)>,
    /// Some(Success|Failed) when the run is over after applying `transitions`.
    pub run_state: Option<RunState>,
    /// Earliest future retry_at among up_for_retry and up_for_reschedule instances, to set a
    /// timer.
    pub wake_at: Option<DateTime<Utc>>,
}

/// States of a task's direct upstream instances, counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UpstreamCounts {
    /// Number of direct upstream tasks, removed ones included.
    pub total: u32,
    pub success: u32,
    pub failed: u32,
    pub upstream_failed: u32,
    pub skipped: u32,
    pub removed: u32,
}

impl UpstreamCounts {
    pub fn from_states(states: impl IntoIterator<Item = TaskState>) -> UpstreamCounts {
        let mut c = UpstreamCounts::default();
        for s in states {
            c.add(s);
        }
        c
    }

    pub fn add(&mut self, state: TaskState) {
        self.add_many(state, 1);
    }

    /// Counts `n` upstream instances in `state`.
    pub fn add_many(&mut self, state: TaskState, n: u32) {
        self.total += n;
        match state {
            TaskState::Success => self.success += n,
            TaskState::Failed => self.failed += n,
            TaskState::UpstreamFailed => self.upstream_failed += n,
            TaskState::Skipped => self.skipped += n,
            TaskState::Removed => self.removed += n,
            _ => {}
        }
    }

    /// Adds `other`'s counts to these.
    fn merge(&mut self, other: &UpstreamCounts) {
        self.total += other.total;
        self.success += other.success;
        self.failed += other.failed;
        self.upstream_failed += other.upstream_failed;
        self.skipped += other.skipped;
        self.removed += other.removed;
    }
}

/// What a trigger rule makes of a task in state `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TriggerDecision {
    /// Not decided yet: some upstream must finish first.
    Wait,
    /// May be scheduled.
    Run,
    /// Becomes skipped.
    Skip,
    /// Becomes upstream_failed.
    UpstreamFailed,
}

/// The trigger rule table of the [module documentation](self).
pub fn trigger_decision(rule: TriggerRule, c: &UpstreamCounts) -> TriggerDecision {
    use TriggerDecision::{Run, Skip, UpstreamFailed, Wait};
    let n = c.total.saturating_sub(c.removed);
    if n == 0 {
        return Run;
    }
    let (s, k) = (c.success, c.skipped);
    let fails = c.failed + c.upstream_failed;
    let all_done = s + fails + k >= n;
    // "everything done, nothing succeeded": skipped if all skipped, else upstream_failed.
    let none_succeeded = if k == n { Skip } else { UpstreamFailed };
    match rule {
        TriggerRule::Always => Run,
        TriggerRule::AllSuccess if fails > 0 => UpstreamFailed,
        TriggerRule::AllSuccess if k > 0 => Skip,
        TriggerRule::AllSuccess => pick(s == n, Run, Wait),
        TriggerRule::AllFailed if s + k > 0 => Skip,
        TriggerRule::AllFailed => pick(fails == n, Run, Wait),
        TriggerRule::AllDone => pick(all_done, Run, Wait),
        TriggerRule::AllDoneMinOneSuccess if k > 0 => Skip,
        TriggerRule::AllDoneMinOneSuccess if !all_done => Wait,
        TriggerRule::AllDoneMinOneSuccess => pick(s > 0, Run, UpstreamFailed),
        TriggerRule::AllSkipped if s + fails > 0 => Skip,
        TriggerRule::AllSkipped => pick(k == n, Run, Wait),
        TriggerRule::OneSuccess if s > 0 => Run,
        TriggerRule::OneSuccess => pick(all_done, none_succeeded, Wait),
        TriggerRule::OneFailed if fails > 0 => Run,
        TriggerRule::OneFailed => pick(all_done, Skip, Wait),
        TriggerRule::OneDone if s + c.failed > 0 => Run,
        TriggerRule::OneDone => pick(all_done, Skip, Wait),
        TriggerRule::NoneFailed if fails > 0 => UpstreamFailed,
        TriggerRule::NoneFailed => pick(all_done, Run, Wait),
        TriggerRule::NoneFailedMinOneSuccess if fails > 0 => UpstreamFailed,
        TriggerRule::NoneFailedMinOneSuccess if !all_done => Wait,
        TriggerRule::NoneFailedMinOneSuccess => pick(k == n, Skip, Run),
        TriggerRule::NoneSkipped if k > 0 => Skip,
        TriggerRule::NoneSkipped => pick(all_done, Run, Wait),
    }
}

fn pick(cond: bool, yes: TriggerDecision, no: TriggerDecision) -> TriggerDecision {
    if cond { yes } else { no }
}

/// Whether `rule` lets a task run before all of its upstreams are terminal.
pub fn runs_early(rule: TriggerRule) -> bool {
    matches!(
        rule,
        TriggerRule::OneSuccess
            | TriggerRule::OneFailed
            | TriggerRule::OneDone
            | TriggerRule::Always
    )
}

/// A run's next decisions; see the [module documentation](self). Builds a [`DagIndex`]; callers
/// evaluating many runs of one DAG version should build it once and use
/// [`evaluate_run_indexed`].
pub fn evaluate_run(
    dag: &Dag,
    tis: &[TiSnapshot],
    previous_run: Option<&HashMap<String, TaskState>>,
    now: DateTime<Utc>,
) -> RunEvaluation {
    evaluate_run_indexed(dag, &DagIndex::new(dag), tis, previous_run, now)
}

/// [`evaluate_run`] with a prebuilt index of `dag`. Linear in tasks + edges + snapshots.
pub fn evaluate_run_indexed(
    dag: &Dag,
    index: &DagIndex,
    tis: &[TiSnapshot],
    previous_run: Option<&HashMap<String, TaskState>>,
    now: DateTime<Utc>,
) -> RunEvaluation {
    debug_assert_eq!(index.len(), dag.tasks.len(), "index built for another DAG");
    let n = index.len();
    let mut states = vec![TaskState::None; n];
    let mut retry_at: Vec<Option<DateTime<Utc>>> = vec![None; n];
    let mut known = vec![false; n];
    let mut mapped = Mapped::new();
    for ti in tis {
        let Some(p) = index.position(&ti.task_id) else {
            continue;
        };
        if ti.map_index >= 0 {
            mapped.entry(p).or_default().push(Inst::of(ti));
        } else if !known[p] {
            known[p] = true;
            states[p] = ti.state;
            retry_at[p] = ti.retry_at;
        }
    }
    for insts in mapped.values_mut() {
        insts.sort_unstable_by_key(|i| i.map_index);
    }

    let mut eval = RunEvaluation::default();
    for &p in index.topological_order() {
        let p = p as usize;
        if mapped.contains_key(&p) {
            decide_mapped(
                dag,
                index,
                &states,
                &mut mapped,
                p,
                previous_run,
                now,
                &mut eval,
            );
            continue;
        }
        let to = match states[p] {
            TaskState::None => {
                let counts = upstream_counts(index, p, |u| states[u], &mapped);
                decide_none(dag, &counts, p, previous_run)
            }
            state => due(state, retry_at[p], now, &mut eval.wake_at),
        };
        if let Some(to) = to {
            let from = std::mem::replace(&mut states[p], to);
            eval.transitions
                .push((index.task_id(p).to_owned(), from, to));
        }
    }
    eval.run_state = run_state(index, &states, &mapped);
    eval
}

/// One instance of an expanded task.
#[derive(Debug, Clone, Copy)]
struct Inst {
    map_index: i32,
    state: TaskState,
    retry_at: Option<DateTime<Utc>>,
}

impl Inst {
    fn of(ti: &TiSnapshot) -> Inst {
        Inst {
            map_index: ti.map_index,
            state: ti.state,
            retry_at: ti.retry_at,
        }
    }
}

/// Position → the instances of an expanded task (map index >= 0), in map index order. Only
/// expanded tasks are here: for a run without them it stays empty (and allocates nothing).
type Mapped = HashMap<usize, Vec<Inst>>;

/// An `up_for_retry`/`up_for_reschedule` instance due at `retry_at` is scheduled (else its
/// time joins `wake_at`); other states do not change here.
fn due(
    state: TaskState,
    retry_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    wake_at: &mut Option<DateTime<Utc>>,
) -> Option<TaskState> {
    match state {
        TaskState::UpForRetry | TaskState::UpForReschedule => match retry_at {
            Some(at) if at > now => {
                *wake_at = Some(wake_at.map_or(at, |w| w.min(at)));
                None
            }
            _ => Some(TaskState::Scheduled),
        },
        _ => None,
    }
}

/// The upstream states of the task at `p`, counted: every instance of an expanded upstream.
fn upstream_counts(
    index: &DagIndex,
    p: usize,
    state_of: impl Fn(usize) -> TaskState,
    mapped: &Mapped,
) -> UpstreamCounts {
    let mut counts = UpstreamCounts::default();
    for &u in index.upstream(p) {
        let u = u as usize;
        match mapped.get(&u) {
            Some(insts) => insts.iter().for_each(|i| counts.add(i.state)),
            None => counts.add(state_of(u)),
        }
    }
    counts
}

/// Decides each instance of the expanded task at `p`, updating `mapped`.
#[allow(clippy::too_many_arguments)]
fn decide_mapped(
    dag: &Dag,
    index: &DagIndex,
    states: &[TaskState],
    mapped: &mut Mapped,
    p: usize,
    previous_run: Option<&HashMap<String, TaskState>>,
    now: DateTime<Utc>,
    eval: &mut RunEvaluation,
) {
    let cleared = mapped[&p].iter().any(|i| i.state == TaskState::None);
    let none_to = if cleared {
        let counts = upstream_counts(index, p, |u| states[u], mapped);
        decide_none(dag, &counts, p, previous_run)
    } else {
        None
    };
    let task_id = index.task_id(p);
    for inst in mapped.get_mut(&p).into_iter().flatten() {
        let to = match inst.state {
            TaskState::None => none_to,
            state => due(state, inst.retry_at, now, &mut eval.wake_at),
        };
        if let Some(to) = to {
            let from = std::mem::replace(&mut inst.state, to);
            eval.mapped_transitions
                .push((task_id.to_owned(), inst.map_index, from, to));
        }
    }
}

/// The transition of an instance in state `none` whose upstream states are `counts`, if any.
fn decide_none(
    dag: &Dag,
    counts: &UpstreamCounts,
    p: usize,
    previous_run: Option<&HashMap<String, TaskState>>,
) -> Option<TaskState> {
    let task = &dag.tasks[p];
    match trigger_decision(task.trigger_rule, counts) {
        TriggerDecision::Wait => None,
        TriggerDecision::Skip => Some(TaskState::Skipped),
        TriggerDecision::UpstreamFailed => Some(TaskState::UpstreamFailed),
        TriggerDecision::Run => {
            let past_ok = !task.depends_on_past || past_allows(previous_run, &task.task_id);
            past_ok.then_some(TaskState::Scheduled)
        }
    }
}

/// `depends_on_past`: the previous run's instance of the task succeeded or was skipped (or
/// there is none).
pub fn past_allows(previous_run: Option<&HashMap<String, TaskState>>, task_id: &str) -> bool {
    match previous_run.and_then(|prev| prev.get(task_id)) {
        None => true,
        Some(s) => matches!(s, TaskState::Success | TaskState::Skipped),
    }
}

/// The run's final state, if it is over (see the module documentation).
fn run_state(index: &DagIndex, states: &[TaskState], mapped: &Mapped) -> Option<RunState> {
    if mapped.is_empty() {
        return run_state_of(index, || states.iter().copied().enumerate());
    }
    // An expanded task's instances stand for it.
    let instances: Vec<(usize, TaskState)> = states
        .iter()
        .enumerate()
        .flat_map(|(p, s)| match mapped.get(&p) {
            Some(insts) => insts.iter().map(|i| (p, i.state)).collect(),
            None => vec![(p, *s)],
        })
        .collect();
    run_state_of(index, || instances.iter().copied())
}

fn run_state_of<I: Iterator<Item = (usize, TaskState)>>(
    index: &DagIndex,
    instances: impl Fn() -> I,
) -> Option<RunState> {
    if instances().all(|(_, s)| s.is_terminal()) {
        let leaf_failed = instances().any(|(p, s)| {
            index.is_leaf(p) && matches!(s, TaskState::Failed | TaskState::UpstreamFailed)
        });
        return Some(if leaf_failed {
            RunState::Failed
        } else {
            RunState::Success
        });
    }
    let progressing = instances().any(|(_, s)| s.is_progressing());
    (!progressing).then_some(RunState::Failed)
}

/// The positions whose instances [`evaluate_run_focused`] needs after the instances at
/// `changed` changed: those, their downstream tasks and every upstream of those, in
/// topological order, each once.
pub fn focus(index: &DagIndex, changed: impl IntoIterator<Item = usize>) -> Vec<usize> {
    let mut wanted: Vec<usize> = Vec::new();
    for c in changed {
        wanted.push(c);
        for &d in index.downstream(c) {
            wanted.push(d as usize);
            wanted.extend(index.upstream(d as usize).iter().map(|&u| u as usize));
        }
    }
    wanted.sort_unstable_by_key(|&p| index.topological_rank(p));
    wanted.dedup();
    wanted
}

/// [`evaluate_run_indexed`] from the snapshots of a [`focus`] alone, for a run that was at its
/// fixpoint before the focus's tries changed (see the [module documentation](self)).
/// `tis`: the focus's unmapped instances and the instances of its expanded tasks that have not
/// ended; `ended`: those tasks' ended instances, counted by state (an expanded task all of
/// whose instances ended is known by its counts alone). `progressing`: whether some instance
/// of the run, read or not, is scheduled, queued, running, up_for_retry or up_for_reschedule.
/// Only tasks whose upstreams were all read are decided (an up_for_retry or up_for_reschedule
/// one whatever its upstreams); `wake_at` covers the instances read. `None` when the whole run
/// must be read instead. Linear in the snapshots, the counts and their edges, whatever the
/// run's size.
pub fn evaluate_run_focused(
    dag: &Dag,
    index: &DagIndex,
    tis: &[TiSnapshot],
    ended: &[EndedInstances],
    progressing: bool,
    previous_run: Option<&HashMap<String, TaskState>>,
    now: DateTime<Utc>,
) -> Option<RunEvaluation> {
    let mut read = FocusRead::new(index, tis, ended);
    let mut order: Vec<usize> = read
        .unmapped
        .keys()
        .chain(read.expanded.keys())
        .copied()
        .collect();
    order.sort_unstable_by_key(|&p| index.topological_rank(p));
    let mut eval = RunEvaluation::default();
    let mut scheduled_any = false;
    for p in order {
        // A terminal decision here cascades to downstream tasks this read cannot decide.
        let cascades_unseen = index
            .downstream(p)
            .iter()
            .any(|&d| !read.has(d as usize) || !read.all_upstream_read(index, d as usize));
        if read.expanded.contains_key(&p) {
            let none_to = if read.expanded[&p]
                .live
                .iter()
                .any(|i| i.state == TaskState::None)
                && read.all_upstream_read(index, p)
            {
                decide_none(dag, &read.counts(index, p), p, previous_run)
            } else {
                None
            };
            let task_id = index.task_id(p);
            for inst in read
                .expanded
                .get_mut(&p)
                .into_iter()
                .flat_map(|e| &mut e.live)
            {
                let to = match inst.state {
                    TaskState::None => none_to,
                    state => due(state, inst.retry_at, now, &mut eval.wake_at),
                };
                let Some(to) = to else { continue };
                if to.is_terminal() && cascades_unseen {
                    return None;
                }
                scheduled_any |= to == TaskState::Scheduled;
                let from = std::mem::replace(&mut inst.state, to);
                eval.mapped_transitions
                    .push((task_id.to_owned(), inst.map_index, from, to));
            }
            continue;
        }
        let (state, retry_at) = read.unmapped[&p];
        let to = match state {
            TaskState::None if read.all_upstream_read(index, p) => {
                decide_none(dag, &read.counts(index, p), p, previous_run)
            }
            TaskState::None => None,
            state => due(state, retry_at, now, &mut eval.wake_at),
        };
        let Some(to) = to else { continue };
        if to.is_terminal() && cascades_unseen {
            return None;
        }
        scheduled_any |= to == TaskState::Scheduled;
        if let Some(entry) = read.unmapped.get_mut(&p) {
            entry.0 = to;
        }
        eval.transitions
            .push((index.task_id(p).to_owned(), state, to));
    }
    // A transition never takes an instance out of the progressing states, so the run goes on
    // if one was there before or one was scheduled now; otherwise it may be over.
    (progressing || scheduled_any).then_some(eval)
}

/// What a focused evaluation read: unmapped instances by position, and for each expanded task
/// its instances that have not ended and the counts of those that have.
struct FocusRead {
    /// Position → (state, retry_at); the first snapshot of a task counts.
    unmapped: HashMap<usize, (TaskState, Option<DateTime<Utc>>)>,
    expanded: HashMap<usize, ExpandedRead>,
}

#[derive(Default)]
struct ExpandedRead {
    /// In map index order.
    live: Vec<Inst>,
    ended: UpstreamCounts,
}

impl FocusRead {
    fn new(index: &DagIndex, tis: &[TiSnapshot], ended: &[EndedInstances]) -> FocusRead {
        let mut unmapped = HashMap::with_capacity(tis.len());
        let mut expanded: HashMap<usize, ExpandedRead> = HashMap::new();
        for ti in tis {
            let Some(p) = index.position(&ti.task_id) else {
                continue;
            };
            if ti.map_index >= 0 {
                expanded.entry(p).or_default().live.push(Inst::of(ti));
            } else {
                unmapped.entry(p).or_insert((ti.state, ti.retry_at));
            }
        }
        for e in ended {
            if let Some(p) = index.position(&e.task_id) {
                expanded
                    .entry(p)
                    .or_default()
                    .ended
                    .add_many(e.state, e.count);
            }
        }
        for (p, task) in expanded.iter_mut() {
            // As in a whole evaluation, an expanded task's instances stand for it.
            unmapped.remove(p);
            task.live.sort_unstable_by_key(|i| i.map_index);
        }
        FocusRead { unmapped, expanded }
    }

    fn has(&self, p: usize) -> bool {
        self.unmapped.contains_key(&p) || self.expanded.contains_key(&p)
    }

    fn all_upstream_read(&self, index: &DagIndex, p: usize) -> bool {
        index.upstream(p).iter().all(|&u| self.has(u as usize))
    }

    /// The upstream states of the task at `p`, every one of them read: an expanded upstream's
    /// ended instances by their counts, the others by their current states.
    fn counts(&self, index: &DagIndex, p: usize) -> UpstreamCounts {
        let mut counts = UpstreamCounts::default();
        for &u in index.upstream(p) {
            let u = u as usize;
            match self.expanded.get(&u) {
                Some(task) => {
                    counts.merge(&task.ended);
                    task.live.iter().for_each(|i| counts.add(i.state));
                }
                None => counts.add(self.unmapped[&u].0),
            }
        }
        counts
    }
}
