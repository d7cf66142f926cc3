//! Property tests: random DAGs run to completion through `evaluate_run` and `on_try_finished`,
//! every decision checked against a reference truth table written here, independently of the
//! implementation; queue selection against its limits; timetables against each other.

mod common;

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use common::{cron_dag, dag, task, utc};
use proptest::prelude::*;
use updraft_core::DagIndex;
use updraft_core::evaluate::{TiSnapshot, evaluate_run, evaluate_run_focused, focus};
use updraft_core::queue::{Candidate, Capacity, select_to_queue};
use updraft_core::retry::{TryOutcome, on_try_finished, retry_delay};
use updraft_core::timetable::{
    DataInterval, due_intervals, intervals_between, manual_interval, next_interval,
};
use updraft_core::{RunState, TaskState, UpstreamCounts, trigger_decision};
use updraft_dag::{Dag, Schedule, Task, TriggerRule};

use TaskState as S;

// ---------------------------------------------------------------------------------------------
// Reference truth table.
// ---------------------------------------------------------------------------------------------

/// What the reference says a task in state `none` becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Wait,
    Run,
    Skip,
    UpstreamFailed,
}

/// The trigger rules, stated over the list of direct upstream states, straight from the spec:
/// removed upstreams are dropped first (treated as if the edge did not exist), and a task with
/// no (remaining) upstream runs.
fn reference(rule: TriggerRule, upstream: &[TaskState]) -> Expect {
    let ups: Vec<TaskState> = upstream
        .iter()
        .copied()
        .filter(|s| *s != S::Removed)
        .collect();
    if ups.is_empty() {
        return Expect::Run;
    }
    let any = |wanted: &[TaskState]| ups.iter().any(|s| wanted.contains(s));
    let all = |wanted: &[TaskState]| ups.iter().all(|s| wanted.contains(s));
    let finished = all(&[S::Success, S::Failed, S::UpstreamFailed, S::Skipped]);
    let failure = [S::Failed, S::UpstreamFailed];
    let skipped_or_uf = |all_skipped: bool| {
        if all_skipped {
            Expect::Skip
        } else {
            Expect::UpstreamFailed
        }
    };
    match rule {
        TriggerRule::AllSuccess => {
            if any(&failure) {
                Expect::UpstreamFailed
            } else if any(&[S::Skipped]) {
                Expect::Skip
            } else if all(&[S::Success]) {
                Expect::Run
            } else {
                Expect::Wait
            }
        }
        TriggerRule::AllFailed => {
            if any(&[S::Success, S::Skipped]) {
                Expect::Skip
            } else if all(&failure) {
                Expect::Run
            } else {
                Expect::Wait
            }
        }
        TriggerRule::AllDone => {
            if finished {
                Expect::Run
            } else {
                Expect::Wait
            }
        }
        TriggerRule::AllDoneMinOneSuccess => {
            if any(&[S::Skipped]) {
                Expect::Skip
            } else if !finished {
                Expect::Wait
            } else if any(&[S::Success]) {
                Expect::Run
            } else {
                Expect::UpstreamFailed
            }
        }
        TriggerRule::AllSkipped => {
            if any(&[S::Success, S::Failed, S::UpstreamFailed]) {
                Expect::Skip
            } else if all(&[S::Skipped]) {
                Expect::Run
            } else {
                Expect::Wait
            }
        }
        TriggerRule::OneSuccess => {
            if any(&[S::Success]) {
                Expect::Run
            } else if finished {
                skipped_or_uf(all(&[S::Skipped]))
            } else {
                Expect::Wait
            }
        }
        TriggerRule::OneFailed => {
            if any(&failure) {
                Expect::Run
            } else if finished {
                Expect::Skip
            } else {
                Expect::Wait
            }
        }
        TriggerRule::OneDone => {
            if any(&[S::Success, S::Failed]) {
                Expect::Run
            } else if finished {
                Expect::Skip
            } else {
                Expect::Wait
            }
        }
        TriggerRule::NoneFailed => {
            if any(&failure) {
                Expect::UpstreamFailed
            } else if finished {
                Expect::Run
            } else {
                Expect::Wait
            }
        }
        TriggerRule::NoneFailedMinOneSuccess => {
            if any(&failure) {
                Expect::UpstreamFailed
            } else if !finished {
                Expect::Wait
            } else if all(&[S::Skipped]) {
                Expect::Skip
            } else {
                Expect::Run
            }
        }
        TriggerRule::NoneSkipped => {
            if any(&[S::Skipped]) {
                Expect::Skip
            } else if finished {
                Expect::Run
            } else {
                Expect::Wait
            }
        }
        TriggerRule::Always => Expect::Run,
    }
}

/// May `rule` schedule the task while some upstream is unfinished, given the upstream states?
fn early_run_allowed(rule: TriggerRule, ups: &[TaskState]) -> bool {
    match rule {
        TriggerRule::Always => true,
        TriggerRule::OneSuccess => ups.contains(&S::Success),
        TriggerRule::OneFailed => ups.contains(&S::Failed) || ups.contains(&S::UpstreamFailed),
        TriggerRule::OneDone => ups.contains(&S::Success) || ups.contains(&S::Failed),
        _ => false,
    }
}

fn terminal(s: TaskState) -> bool {
    matches!(
        s,
        S::Success | S::Failed | S::Skipped | S::UpstreamFailed | S::Removed
    )
}

fn any_state() -> impl Strategy<Value = TaskState> {
    prop::sample::select(TaskState::ALL.to_vec())
}

fn any_rule() -> impl Strategy<Value = TriggerRule> {
    prop::sample::select(TriggerRule::ALL.to_vec())
}

proptest! {
    /// The implementation's table agrees with the reference for arbitrary upstream states.
    #[test]
    fn trigger_table_matches_reference(rule in any_rule(), ups in prop::collection::vec(any_state(), 0..7)) {
        let got = trigger_decision(rule, &UpstreamCounts::from_states(ups.iter().copied()));
        let want = match reference(rule, &ups) {
            Expect::Wait => updraft_core::TriggerDecision::Wait,
            Expect::Run => updraft_core::TriggerDecision::Run,
            Expect::Skip => updraft_core::TriggerDecision::Skip,
            Expect::UpstreamFailed => updraft_core::TriggerDecision::UpstreamFailed,
        };
        prop_assert_eq!(got, want, "rule {:?} upstream {:?}", rule, ups);
    }
}

// ---------------------------------------------------------------------------------------------
// Simulation of whole runs.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct TaskSpec {
    up_mask: u16,
    rule: TriggerRule,
    retries: u32,
    delay_secs: u64,
    exponential: bool,
    removed: bool,
}

fn task_spec() -> impl Strategy<Value = TaskSpec> {
    (
        any::<u16>(),
        any::<u16>(),
        any_rule(),
        0u32..=3,
        0u64..600,
        any::<bool>(),
        prop::bool::weighted(0.08),
    )
        .prop_map(
            |(m1, m2, rule, retries, delay_secs, exponential, removed)| TaskSpec {
                up_mask: m1 & (m2 | 0x5555),
                rule,
                retries,
                delay_secs,
                exponential,
                removed,
            },
        )
}

fn build_dag(specs: &[TaskSpec]) -> Dag {
    let tasks: Vec<Task> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let ups: Vec<String> = (0..i)
                .filter(|j| s.up_mask & (1 << j) != 0)
                .map(|j| format!("t{j}"))
                .collect();
            let ups: Vec<&str> = ups.iter().map(String::as_str).collect();
            let mut t = task(&format!("t{i}"), &ups);
            t.trigger_rule = s.rule;
            t.retries = s.retries;
            t.retry_delay = Duration::from_secs(s.delay_secs);
            t.retry_exponential_backoff = s.exponential;
            t.max_retry_delay = Some(Duration::from_secs(900));
            t
        })
        .collect();
    dag(Schedule::None, tasks)
}

/// splitmix64, for the simulated executor's choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Sim {
    dag: Dag,
    ups: Vec<Vec<usize>>,
    states: Vec<TaskState>,
    tries: Vec<u32>,
    retry_at: Vec<Option<DateTime<Utc>>>,
    now: DateTime<Utc>,
}

impl Sim {
    fn new(specs: &[TaskSpec]) -> Sim {
        let dag = build_dag(specs);
        let ups = specs
            .iter()
            .enumerate()
            .map(|(i, s)| (0..i).filter(|j| s.up_mask & (1 << j) != 0).collect())
            .collect();
        let states = specs
            .iter()
            .map(|s| if s.removed { S::Removed } else { S::None })
            .collect();
        Sim {
            dag,
            ups,
            states,
            tries: vec![0; specs.len()],
            retry_at: vec![None; specs.len()],
            now: utc(2024, 1, 1, 0, 0),
        }
    }

    fn snapshots(&self) -> Vec<TiSnapshot> {
        (0..self.states.len())
            .map(|i| TiSnapshot {
                task_id: format!("t{i}"),
                map_index: -1,
                state: self.states[i],
                try_number: self.tries[i],
                retry_at: self.retry_at[i],
            })
            .collect()
    }

    fn upstream_states(&self, states: &[TaskState], i: usize) -> Vec<TaskState> {
        self.ups[i].iter().map(|&u| states[u]).collect()
    }

    /// Applies and checks one evaluation; returns the run state it announced.
    fn evaluate_and_check(&mut self) -> Result<Option<RunState>, TestCaseError> {
        let eval = evaluate_run(&self.dag, &self.snapshots(), None, self.now);
        let mut working = self.states.clone();
        for (id, from, to) in &eval.transitions {
            let i: usize = id[1..].parse().unwrap();
            prop_assert_eq!(working[i], *from, "transition {} from a stale state", id);
            let ups = self.upstream_states(&working, i);
            let rule = self.dag.tasks[i].trigger_rule;
            match (*from, *to) {
                (S::None, to) => {
                    let want = match to {
                        S::Scheduled => Expect::Run,
                        S::Skipped => Expect::Skip,
                        S::UpstreamFailed => Expect::UpstreamFailed,
                        other => return Err(TestCaseError::fail(format!("none -> {other}"))),
                    };
                    prop_assert_eq!(
                        reference(rule, &ups),
                        want,
                        "{} {:?} ups {:?}",
                        id,
                        rule,
                        ups
                    );
                    // (b): scheduled before all upstreams are terminal only where the rule allows.
                    if to == S::Scheduled && !ups.iter().all(|s| terminal(*s)) {
                        prop_assert!(
                            early_run_allowed(rule, &ups),
                            "{} {:?} ran early: {:?}",
                            id,
                            rule,
                            ups
                        );
                    }
                }
                (S::UpForRetry, S::Scheduled) => {
                    prop_assert!(self.retry_at[i].is_none_or(|at| at <= self.now));
                }
                (from, to) => return Err(TestCaseError::fail(format!("{id}: {from} -> {to}"))),
            }
            working[i] = *to;
        }
        // Nothing left undecided that the reference would decide (one call reaches the fixpoint).
        for i in 0..working.len() {
            if working[i] == S::None {
                let ups = self.upstream_states(&working, i);
                prop_assert_eq!(
                    reference(self.dag.tasks[i].trigger_rule, &ups),
                    Expect::Wait,
                    "t{} left undecided",
                    i
                );
            }
            if working[i] == S::UpForRetry {
                prop_assert!(self.retry_at[i].is_some_and(|at| at > self.now));
            }
        }
        let waits: Vec<DateTime<Utc>> = (0..working.len())
            .filter(|&i| working[i] == S::UpForRetry)
            .filter_map(|i| self.retry_at[i])
            .collect();
        prop_assert_eq!(eval.wake_at, waits.iter().min().copied());
        self.states = working;
        let all_terminal = self.states.iter().all(|s| terminal(*s));
        if let Some(rs) = eval.run_state {
            prop_assert!(
                all_terminal,
                "run over with unfinished tasks: {:?}",
                self.states
            );
            let leaf_failed = (0..self.states.len()).any(|i| {
                let is_leaf = !self.ups.iter().any(|u| u.contains(&i));
                is_leaf && matches!(self.states[i], S::Failed | S::UpstreamFailed)
            });
            prop_assert_eq!(
                rs,
                if leaf_failed {
                    RunState::Failed
                } else {
                    RunState::Success
                }
            );
        } else {
            prop_assert!(!all_terminal, "all terminal but no run state");
        }
        Ok(eval.run_state)
    }

    /// Starts scheduled instances and finishes some running ones with random outcomes; returns
    /// the positions of the tries that finished.
    fn execute(&mut self, rng: &mut Rng) -> Result<Vec<usize>, TestCaseError> {
        for i in 0..self.states.len() {
            if self.states[i] == S::Scheduled {
                self.states[i] = S::Running;
                self.tries[i] += 1;
                // (d)
                prop_assert!(self.tries[i] <= self.dag.tasks[i].retries + 1);
            }
        }
        let running: Vec<usize> = (0..self.states.len())
            .filter(|&i| self.states[i] == S::Running)
            .collect();
        if running.is_empty() {
            return Ok(Vec::new());
        }
        let mut finishing: Vec<usize> = running
            .iter()
            .copied()
            .filter(|_| rng.below(3) != 0)
            .collect();
        if finishing.is_empty() {
            finishing.push(running[rng.below(running.len() as u64) as usize]);
        }
        for &i in &finishing {
            let outcome = [
                TryOutcome::Success,
                TryOutcome::Failed,
                TryOutcome::Skipped,
                TryOutcome::TimedOut,
            ][rng.below(4) as usize];
            let t = &self.dag.tasks[i];
            let max_tries = t.retries + 1;
            let (state, at) = on_try_finished(t, self.tries[i], max_tries, outcome, self.now);
            let expect = match outcome {
                TryOutcome::Success => S::Success,
                TryOutcome::Skipped => S::Skipped,
                _ if self.tries[i] <= t.retries => S::UpForRetry,
                _ => S::Failed,
            };
            prop_assert_eq!(state, expect);
            if state == S::UpForRetry {
                let delay = TimeDelta::from_std(retry_delay(t, self.tries[i])).unwrap();
                prop_assert_eq!(at, Some(self.now + delay));
                prop_assert!(delay <= TimeDelta::seconds(900) || !t.retry_exponential_backoff);
            } else {
                prop_assert_eq!(at, None);
            }
            self.states[i] = state;
            self.retry_at[i] = at;
        }
        Ok(finishing)
    }

    /// After `changed` finished on a run at its fixpoint: the focused evaluation either asks
    /// for the whole run or agrees with the whole run's evaluation, retries falling due
    /// outside the focus aside (the caller's timer evaluates the whole run for those).
    fn check_focused(&self, changed: &[usize]) -> Result<(), TestCaseError> {
        let index = DagIndex::new(&self.dag);
        let wanted = focus(&index, changed.iter().copied());
        let all = self.snapshots();
        let tis: Vec<TiSnapshot> = wanted.iter().map(|&p| all[p].clone()).collect();
        let progressing = self
            .states
            .iter()
            .any(|s| matches!(s, S::Scheduled | S::Queued | S::Running | S::UpForRetry));
        let whole = evaluate_run(&self.dag, &all, None, self.now);
        let Some(focused) =
            evaluate_run_focused(&self.dag, &index, &tis, &[], progressing, None, self.now)
        else {
            return Ok(());
        };
        let expected: Vec<_> = whole
            .transitions
            .iter()
            .filter(|(id, from, _)| {
                let p: usize = id[1..].parse().unwrap();
                *from != S::UpForRetry || wanted.contains(&p)
            })
            .cloned()
            .collect();
        prop_assert_eq!(&focused.transitions, &expected, "focus {:?}", wanted);
        prop_assert_eq!(focused.run_state, None);
        prop_assert_eq!(
            whole.run_state,
            None,
            "the run is over but the focus went on"
        );
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// (a) every run finishes in bounded steps with every instance terminal, (b)/(c) every
    /// decision matches the reference table, (d) tries never exceed retries + 1.
    #[test]
    fn random_runs_finish_and_follow_the_rules(
        specs in prop::collection::vec(task_spec(), 1..=12),
        seed in any::<u64>(),
    ) {
        let mut sim = Sim::new(&specs);
        let mut rng = Rng(seed);
        let total_tries: usize = specs.iter().map(|s| s.retries as usize + 1).sum();
        let bound = 3 * total_tries + 2 * specs.len() + 5;
        let mut finished = false;
        for _ in 0..bound {
            if sim.evaluate_and_check()?.is_some() {
                finished = true;
                break;
            }
            let active = sim.states.iter().any(|s| matches!(s, S::Scheduled | S::Running));
            if active {
                sim.execute(&mut rng)?;
                sim.now += TimeDelta::seconds(rng.below(120) as i64);
            } else {
                // Only retries wait: jump to the earliest.
                let next = sim.retry_at.iter().zip(&sim.states)
                    .filter(|(_, s)| **s == S::UpForRetry)
                    .filter_map(|(at, _)| *at)
                    .min();
                prop_assert!(next.is_some(), "stuck: {:?}", sim.states);
                sim.now = sim.now.max(next.unwrap());
            }
        }
        prop_assert!(finished, "not finished in {} steps: {:?}", bound, sim.states);
        for (i, t) in sim.dag.tasks.iter().enumerate() {
            prop_assert!(sim.tries[i] <= t.retries + 1);
        }
    }

    /// A focused evaluation after tries ended decides exactly what the whole run's
    /// evaluation decides, or asks for the whole run.
    #[test]
    fn focused_evaluations_agree_with_whole_ones(
        specs in prop::collection::vec(task_spec(), 1..=12),
        seed in any::<u64>(),
    ) {
        let mut sim = Sim::new(&specs);
        let mut rng = Rng(seed);
        let total_tries: usize = specs.iter().map(|s| s.retries as usize + 1).sum();
        let bound = 3 * total_tries + 2 * specs.len() + 5;
        for _ in 0..bound {
            if sim.evaluate_and_check()?.is_some() {
                break;
            }
            if sim.states.iter().any(|s| matches!(s, S::Scheduled | S::Running)) {
                let changed = sim.execute(&mut rng)?;
                sim.now += TimeDelta::seconds(rng.below(120) as i64);
                sim.check_focused(&changed)?;
            } else {
                let next = sim.retry_at.iter().zip(&sim.states)
                    .filter(|(_, s)| **s == S::UpForRetry)
                    .filter_map(|(at, _)| *at)
                    .min();
                prop_assert!(next.is_some(), "stuck: {:?}", sim.states);
                sim.now = sim.now.max(next.unwrap());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Queue selection.
// ---------------------------------------------------------------------------------------------

fn candidate() -> impl Strategy<Value = Candidate> {
    (
        prop::sample::select(vec!["a", "b", "c"]),
        prop::sample::select(vec!["p", "q", "r", "unknown"]),
        0u32..4,
        -3i64..4,
        0u32..3,
        prop::sample::select(vec!["x", "y", "z"]),
    )
        .prop_map(|(dag_id, pool, slots, prio, day, task_id)| Candidate {
            dag_id: dag_id.to_string(),
            pool: pool.to_string(),
            pool_slots: slots,
            priority_weight: prio,
            logical_date: utc(2024, 1, 1 + day, 0, 0),
            task_id: task_id.to_string(),
        })
}

fn capacity() -> impl Strategy<Value = Capacity> {
    (
        prop::collection::vec(-1i64..7, 3),
        prop::collection::vec(-1i64..6, 2),
        -1i64..9,
    )
        .prop_map(|(pools, dags, parallelism)| Capacity {
            pool_free: ["p", "q", "r"]
                .iter()
                .zip(pools)
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            // DAG "c" has no entry: no `max_active_tasks` limit for it.
            dag_free: ["a", "b"]
                .iter()
                .zip(dags)
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            parallelism_free: parallelism,
            task_free: Default::default(),
        })
}

proptest! {
    /// (e) select_to_queue respects pools, DAG limits and parallelism, is maximal, and is ordered.
    #[test]
    fn queue_selection_is_within_limits_and_maximal(
        cands in prop::collection::vec(candidate(), 0..25),
        cap in capacity(),
    ) {
        let chosen = select_to_queue(&cands, &cap);
        let mut seen = vec![false; cands.len()];
        let mut pool_left = cap.pool_free.clone();
        let mut dag_left = cap.dag_free.clone();
        let mut par_left = cap.parallelism_free;
        // Taken in order, each candidate fits what the earlier ones left.
        for &i in &chosen {
            prop_assert!(!seen[i], "chosen twice");
            seen[i] = true;
            let c = &cands[i];
            let pool = pool_left.get_mut(&c.pool).expect("unknown pool queued");
            prop_assert!(*pool >= i64::from(c.pool_slots), "pool {} exceeded", c.pool);
            *pool -= i64::from(c.pool_slots);
            // A DAG without an entry is not limited by `max_active_tasks`.
            if let Some(dag) = dag_left.get_mut(&c.dag_id) {
                prop_assert!(*dag >= 1, "dag {} exceeded", c.dag_id);
                *dag -= 1;
            }
            prop_assert!(par_left >= 1, "parallelism exceeded");
            par_left -= 1;
        }
        // Maximal: no unchosen candidate fits what is left.
        for (i, c) in cands.iter().enumerate().filter(|(i, _)| !seen[*i]) {
            let fits = pool_left.get(&c.pool).is_some_and(|l| *l >= i64::from(c.pool_slots))
                && dag_left.get(&c.dag_id).is_none_or(|l| *l >= 1)
                && par_left >= 1;
            prop_assert!(!fits, "candidate {} {:?} would still fit", i, c);
        }
        // Queueing order: priority desc, then logical date, then task id.
        for w in chosen.windows(2) {
            let (x, y) = (&cands[w[0]], &cands[w[1]]);
            let kx = (-x.priority_weight, x.logical_date, &x.task_id);
            let ky = (-y.priority_weight, y.logical_date, &y.task_id);
            prop_assert!(kx <= ky, "out of order: {:?} before {:?}", x, y);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Timetables: the incremental creation path against the enumeration path.
// ---------------------------------------------------------------------------------------------

fn cron_expr() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "0 0 * * *",
        "30 2 * * *",
        "15 2 * * *",
        "0 2 * * *",
        "30 1 * * *",
        "0 * * * *",
        "*/20 * * * *",
        "15 3,14 * * 1-5",
        "0 0 1 * *",
        "0 1,2 * * *",
        "*/15 2 * * *",
    ])
    .prop_map(str::to_string)
}

/// A time zone with a start date a little before one of its 2024 DST transitions (or an
/// ordinary day for zones without DST).
fn zone_and_start() -> impl Strategy<Value = (Tz, DateTime<Utc>)> {
    (
        prop::sample::select(vec![
            ("Europe/Berlin", utc(2024, 3, 29, 0, 0)),
            ("Europe/Berlin", utc(2024, 10, 25, 0, 0)),
            ("America/New_York", utc(2024, 3, 8, 0, 0)),
            ("America/New_York", utc(2024, 11, 1, 0, 0)),
            ("Australia/Lord_Howe", utc(2024, 4, 5, 0, 0)),
            ("Australia/Lord_Howe", utc(2024, 10, 4, 0, 0)),
            ("Asia/Tokyo", utc(2024, 1, 1, 0, 0)),
            ("UTC", utc(2024, 2, 27, 0, 0)),
        ]),
        0i64..(3 * 24 * 60),
    )
        .prop_map(|((zone, base), mins)| (zone.parse().unwrap(), base + TimeDelta::minutes(mins)))
}

fn start_date() -> impl Strategy<Value = DateTime<Utc>> {
    zone_and_start().prop_map(|(_, start)| start)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn cron_creation_agrees_with_enumeration(
        expr in cron_expr(),
        (tz, start) in zone_and_start(),
        span_mins in 0i64..(5 * 24 * 60),
        batch in 1usize..4,
    ) {
        let now = start + TimeDelta::minutes(span_mins);
        let d = cron_dag(&expr, tz, Some(start), true);
        let all = due_intervals(&d, None, now, usize::MAX);
        // Enumeration: intervals starting in [start, now] that are complete.
        let listed: Vec<DataInterval> = intervals_between(&d, start, now).into_iter().filter(|i| i.end <= now).collect();
        prop_assert_eq!(&all, &listed);
        for w in all.windows(2) {
            prop_assert_eq!(w[0].end, w[1].start);
        }
        for i in &all {
            prop_assert!(i.start < i.end && i.start >= start && i.end <= now);
        }
        // Batches of `batch` give the same sequence.
        let mut batched = Vec::new();
        loop {
            let more = due_intervals(&d, batched.last(), now, batch);
            prop_assert!(more.len() <= batch);
            if more.is_empty() { break; }
            batched.extend(more);
        }
        prop_assert_eq!(&batched, &all);
        // The next one is not yet due.
        if let Some(next) = next_interval(&d, all.last(), now) {
            prop_assert!(next.end > now);
            if let Some(l) = all.last() {
                prop_assert_eq!(next.start, l.end);
            }
        }
        // Without catchup: exactly the latest complete interval (if it starts after start_date).
        let mut nc = d.clone();
        nc.catchup = false;
        let latest = due_intervals(&nc, None, now, usize::MAX);
        prop_assert_eq!(latest.as_slice(), all.last().map(std::slice::from_ref).unwrap_or(&[]));
        // A manual run at `now` covers that same latest complete interval.
        if let Some(l) = all.last() {
            prop_assert_eq!(manual_interval(&d, now), *l);
        }
        // A manual interval is never empty and never ends after its logical date (Airflow's
        // test_cron_infer_manual_data_interval_dst), and ends on a tick.
        let m = manual_interval(&d, now);
        prop_assert!(m.start < m.end && m.end <= now, "{:?} at {}", m, now);
        // The scheduled interval after it starts where it ends (no period skipped; Airflow's
        // test_cron_next_dagrun_info_after_dst_manual_run).
        let unbounded = cron_dag(&expr, tz, None, true);
        prop_assert_eq!(next_interval(&unbounded, Some(&m), now).map(|n| n.start), Some(m.end));
    }

    #[test]
    fn duration_intervals_stay_on_the_start_date_grid(
        step_mins in 1u64..(3 * 24 * 60),
        start in start_date(),
        span_mins in 0i64..(10 * 24 * 60),
        catchup in any::<bool>(),
    ) {
        let now = start + TimeDelta::minutes(span_mins);
        let mut d = dag(Schedule::Every(Duration::from_secs(step_mins * 60)), vec![task("t", &[])]);
        d.start_date = Some(start);
        d.catchup = catchup;
        let got = due_intervals(&d, None, now, usize::MAX);
        let step = TimeDelta::minutes(step_mins as i64);
        let complete = span_mins / step_mins as i64;
        if catchup {
            prop_assert_eq!(got.len() as i64, complete);
            for (k, i) in got.iter().enumerate() {
                prop_assert_eq!(i.start, start + step * k as i32);
                prop_assert_eq!(i.end, i.start + step);
            }
        } else if complete == 0 {
            prop_assert!(got.is_empty());
        } else {
            prop_assert_eq!(got.len(), 1);
            prop_assert_eq!(got[0].end, start + step * complete as i32);
            prop_assert_eq!(got[0].start, got[0].end - step);
        }
        let m = manual_interval(&d, now);
        prop_assert!(m.end <= now && now < m.end + step && m.end - m.start == step);
        prop_assert_eq!((m.end - start).num_minutes() % step_mins as i64, 0);
    }
}

#[test]
fn reference_table_spot_checks() {
    // The reference itself, pinned on a few hand-picked cases from the spec.
    use TriggerRule as R;
    assert_eq!(
        reference(R::AllSuccess, &[S::Success, S::Running]),
        Expect::Wait
    );
    assert_eq!(
        reference(R::AllSuccess, &[S::Skipped, S::Failed]),
        Expect::UpstreamFailed
    );
    assert_eq!(
        reference(R::OneSuccess, &[S::Success, S::Running]),
        Expect::Run
    );
    assert_eq!(
        reference(R::OneSuccess, &[S::Skipped, S::Failed]),
        Expect::UpstreamFailed
    );
    assert_eq!(
        reference(R::OneSuccess, &[S::Skipped, S::Skipped]),
        Expect::Skip
    );
    assert_eq!(
        reference(R::NoneFailedMinOneSuccess, &[S::Skipped, S::Success]),
        Expect::Run
    );
    // Airflow 3.1: a skipped upstream skips an all_done_min_one_success task, even before
    // the others finish.
    assert_eq!(
        reference(R::AllDoneMinOneSuccess, &[S::Failed, S::Skipped]),
        Expect::Skip
    );
    assert_eq!(
        reference(R::AllDoneMinOneSuccess, &[S::Running, S::Skipped]),
        Expect::Skip
    );
    assert_eq!(
        reference(R::AllDoneMinOneSuccess, &[S::Failed, S::UpstreamFailed]),
        Expect::UpstreamFailed
    );
    assert_eq!(
        reference(R::AllDoneMinOneSuccess, &[S::Failed, S::Success]),
        Expect::Run
    );
    assert_eq!(reference(R::AllSuccess, &[S::Removed]), Expect::Run);
    assert_eq!(reference(R::Always, &[S::None]), Expect::Run);
}
