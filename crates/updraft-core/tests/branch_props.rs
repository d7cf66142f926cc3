//! Property tests of branching and short-circuit ([`branch_skips`]) on random DAGs: a
//! followed task is never skipped, only tasks downstream of the deciding task are touched,
//! runs with branching tasks still end with every instance terminal, and a falsy short circuit
//! that ignores trigger rules leaves nothing downstream to run.

mod common;

use std::collections::{BTreeSet, HashMap};

use common::{dag, run_to_end, task};
use proptest::prelude::*;
use serde_json::{Value, json};
use updraft_core::evaluate::{TiSnapshot, evaluate_run_indexed};
use updraft_core::{DagIndex, TaskState, branch_skips};
use updraft_dag::{Branching, Dag, Schedule, TriggerRule};

#[derive(Debug, Clone)]
struct Spec {
    up_mask: u16,
    rule: TriggerRule,
    branching: Option<Branching>,
}

fn spec() -> impl Strategy<Value = Spec> {
    let branching = prop_oneof![
        3 => Just(None),
        1 => Just(Some(Branching::Branch)),
        1 => any::<bool>().prop_map(|ignore| Some(Branching::ShortCircuit {
            ignore_downstream_trigger_rules: ignore
        })),
    ];
    (
        any::<u16>(),
        prop::sample::select(TriggerRule::ALL.to_vec()),
        branching,
    )
        .prop_map(|(up_mask, rule, branching)| Spec {
            up_mask,
            rule,
            branching,
        })
}

fn build(specs: &[Spec]) -> Dag {
    let tasks = specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let ups: Vec<String> = (0..i.min(16))
                .filter(|j| s.up_mask & (1 << j) != 0)
                .map(|j| format!("t{j}"))
                .collect();
            let ups: Vec<&str> = ups.iter().map(String::as_str).collect();
            let mut t = task(&format!("t{i}"), &ups);
            t.trigger_rule = s.rule;
            t.branching = s.branching;
            t
        })
        .collect();
    dag(Schedule::None, tasks)
}

fn descendants(index: &DagIndex, from: usize) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from];
    while let Some(p) = stack.pop() {
        for &d in index.downstream(p) {
            if seen.insert(index.task_id(d as usize).to_owned()) {
                stack.push(d as usize);
            }
        }
    }
    seen
}

fn direct(index: &DagIndex, p: usize) -> Vec<String> {
    index
        .downstream(p)
        .iter()
        .map(|&d| index.task_id(d as usize).to_owned())
        .collect()
}

/// A value for the deciding task at `p`: for a branch, a subset of its direct downstream
/// tasks chosen by `pick` (a string when it is one, sometimes), else a JSON value truthy or not.
fn value_for(dag: &Dag, index: &DagIndex, p: usize, pick: u32) -> Option<Value> {
    match dag.tasks[p].branching {
        Some(Branching::Branch) => {
            let chosen: Vec<String> = direct(index, p)
                .into_iter()
                .enumerate()
                .filter(|(i, _)| pick & (1 << (i % 32)) != 0)
                .map(|(_, id)| id)
                .collect();
            Some(match (chosen.as_slice(), pick % 3) {
                (_, 0) if pick.is_multiple_of(7) => return None,
                ([one], 1) => json!(one),
                _ => json!(chosen),
            })
        }
        _ => [
            None,
            Some(json!(false)),
            Some(json!(0)),
            Some(json!("")),
            Some(json!(true)),
            Some(json!("x")),
            Some(json!([1])),
        ][pick as usize % 7]
            .clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn followed_tasks_are_never_skipped_and_only_downstream_is_touched(
        specs in prop::collection::vec(spec(), 1..14),
        at in any::<prop::sample::Index>(),
        pick in any::<u32>(),
    ) {
        let d = build(&specs);
        let index = DagIndex::new(&d);
        let p = at.index(specs.len());
        let value = value_for(&d, &index, p, pick);
        let skips = branch_skips(&d, &index, &format!("t{p}"), value.as_ref())
            .expect("a branch naming its direct downstream tasks is valid");
        let below = descendants(&index, p);
        for s in &skips {
            prop_assert!(below.contains(s), "{s} is not downstream of t{p}");
        }
        prop_assert_eq!(skips.iter().collect::<BTreeSet<_>>().len(), skips.len(), "each once");
        match d.tasks[p].branching {
            None => prop_assert!(skips.is_empty()),
            Some(Branching::Branch) => {
                let followed: Vec<String> = match &value {
                    Some(Value::String(id)) => vec![id.clone()],
                    Some(Value::Array(ids)) => ids.iter().map(|v| v.as_str().unwrap().to_owned()).collect(),
                    _ => Vec::new(),
                };
                let direct = direct(&index, p);
                for f in &followed {
                    prop_assert!(!skips.contains(f), "followed {f} skipped");
                }
                for s in &skips {
                    prop_assert!(direct.contains(s), "a branch skips only direct downstream tasks");
                }
                // Every direct downstream task not followed, nor below a followed one, is skipped.
                let mut kept: BTreeSet<String> = followed.iter().cloned().collect();
                for f in &followed {
                    kept.extend(descendants(&index, index.position(f).unwrap()));
                }
                let expected: BTreeSet<String> = direct.into_iter().filter(|t| !kept.contains(t)).collect();
                prop_assert_eq!(skips.iter().cloned().collect::<BTreeSet<_>>(), expected);
            }
            Some(Branching::ShortCircuit { ignore_downstream_trigger_rules }) => {
                let expected: BTreeSet<String> = if updraft_core::is_truthy(value.as_ref()) {
                    BTreeSet::new()
                } else if ignore_downstream_trigger_rules {
                    below
                } else {
                    direct(&index, p).into_iter().collect()
                };
                prop_assert_eq!(skips.iter().cloned().collect::<BTreeSet<_>>(), expected);
            }
        }
        // In topological order.
        let ranks: Vec<usize> = skips
            .iter()
            .map(|s| index.topological_rank(index.position(s).unwrap()))
            .collect();
        prop_assert!(ranks.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn runs_with_branching_tasks_end_with_every_instance_terminal(
        specs in prop::collection::vec(spec(), 1..14),
        picks in prop::collection::vec(any::<u32>(), 14),
        failing in any::<u16>(),
    ) {
        let d = build(&specs);
        let index = DagIndex::new(&d);
        let ids: Vec<String> = (0..specs.len()).map(|i| format!("t{i}")).collect();
        let mut values = HashMap::new();
        for (p, id) in ids.iter().enumerate() {
            if let Some(v) = value_for(&d, &index, p, picks[p]) {
                values.insert(id.as_str(), v);
            }
        }
        let failing: Vec<&str> = ids
            .iter()
            .enumerate()
            .filter(|(i, _)| failing & (1 << i) != 0 && *i % 3 == 0)
            .map(|(_, id)| id.as_str())
            .collect();
        // `run_to_end` panics if the run does not end.
        let end = run_to_end(&d, &values, &failing);
        for (id, state) in &end {
            prop_assert!(state.is_terminal(), "{id} ended {state}");
        }
    }

    #[test]
    fn a_falsy_short_circuit_ignoring_rules_leaves_nothing_downstream_to_run(
        specs in prop::collection::vec(spec(), 2..14),
        at in any::<prop::sample::Index>(),
        states in prop::collection::vec(prop::sample::select(TaskState::ALL.to_vec()), 14),
        scheduled in any::<u16>(),
        falsy in prop::sample::select(vec![None, Some(json!(false)), Some(json!(0)), Some(json!({}))]),
    ) {
        let mut d = build(&specs);
        let p = at.index(specs.len());
        d.tasks[p].branching = Some(Branching::ShortCircuit { ignore_downstream_trigger_rules: true });
        let index = DagIndex::new(&d);
        let below = descendants(&index, p);
        // The deciding task just succeeded; what is downstream has not started (none or
        // scheduled); anything else may be in any state.
        let mut now: Vec<TaskState> = (0..specs.len())
            .map(|i| {
                let id = format!("t{i}");
                if i == p {
                    TaskState::Success
                } else if below.contains(&id) {
                    if scheduled & (1 << i) != 0 { TaskState::Scheduled } else { TaskState::None }
                } else {
                    states[i]
                }
            })
            .collect();
        let skips = branch_skips(&d, &index, &format!("t{p}"), falsy.as_ref()).unwrap();
        for s in &skips {
            let q = index.position(s).unwrap();
            if matches!(now[q], TaskState::None | TaskState::Scheduled) {
                now[q] = TaskState::Skipped;
            }
        }
        for id in &below {
            prop_assert_eq!(now[index.position(id).unwrap()], TaskState::Skipped, "{}", id);
        }
        let tis: Vec<TiSnapshot> = now
            .iter()
            .enumerate()
            .map(|(i, s)| TiSnapshot {
                task_id: format!("t{i}"),
                map_index: -1,
                state: *s,
                try_number: 1,
                retry_at: None,
            })
            .collect();
        let eval = evaluate_run_indexed(&d, &index, &tis, None, common::utc(2024, 1, 1, 0, 0));
        for (id, from, to) in &eval.transitions {
            prop_assert!(!below.contains(id), "{id} went {from} -> {to} after the short circuit");
        }
    }
}
