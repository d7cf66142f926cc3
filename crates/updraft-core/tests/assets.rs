//! Asset conditions and asset-triggered runs: Airflow's own cases for `AssetAll` / `AssetAny`
//! evaluation (`airflow-core/tests/unit/assets/test_asset.py`:
//! `test_asset_logical_conditions_evaluation_and_serialization` and
//! `test_nested_asset_conditions_with_serialization`) as the reference, and properties of
//! [`asset_triggered_runs`]: an `any` is satisfied by any member, an `all` by every member,
//! satisfaction is monotone in events, and each event is consumed once per consumer.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use updraft_core::assets::{Consumer, QueuedEvent, asset_triggered_runs, condition_holds};
use updraft_dag::AssetCondition;

use AssetCondition::{All, Any, Asset};

fn uri(i: usize) -> String {
    format!("s3://abc/{}", 123 + i)
}

fn holds(condition: &AssetCondition, statuses: &[bool]) -> bool {
    let updated: BTreeMap<String, bool> = statuses
        .iter()
        .enumerate()
        .map(|(i, s)| (uri(i), *s))
        .collect();
    condition_holds(condition, &|u| updated.get(u).copied().unwrap_or(false))
}

#[test]
fn airflow_logical_conditions_evaluation() {
    let three = || (0..3).map(|i| Asset(uri(i))).collect::<Vec<_>>();
    let cases: [((bool, bool, bool), &str, bool); 16] = [
        ((true, true, true), "any", true),
        ((true, true, false), "any", true),
        ((true, false, true), "any", true),
        ((true, false, false), "any", true),
        ((false, false, true), "any", true),
        ((false, true, false), "any", true),
        ((false, true, true), "any", true),
        ((false, false, false), "any", false),
        ((true, true, true), "all", true),
        ((true, true, false), "all", false),
        ((true, false, true), "all", false),
        ((true, false, false), "all", false),
        ((false, false, true), "all", false),
        ((false, true, false), "all", false),
        ((false, true, true), "all", false),
        ((false, false, false), "all", false),
    ];
    for ((a, b, c), scenario, expected) in cases {
        let condition = match scenario {
            "any" => Any(three()),
            _ => All(three()),
        };
        assert_eq!(
            holds(&condition, &[a, b, c]),
            expected,
            "{scenario} {a} {b} {c}"
        );
        // The condition survives its stored (JSON) form, as Airflow checks serialization.
        let stored: AssetCondition =
            serde_json::from_str(&serde_json::to_string(&condition).unwrap()).unwrap();
        assert_eq!(holds(&stored, &[a, b, c]), expected);
    }
}

#[test]
fn airflow_nested_asset_conditions() {
    // AssetAll(asset1, AssetAny(asset2, asset3))
    let nested = All(vec![Asset(uri(0)), Any(vec![Asset(uri(1)), Asset(uri(2))])]);
    for (statuses, expected) in [
        ([false, true, true], false),
        ([true, true, true], true),
        ([true, false, true], true),
        ([true, true, false], true),
        ([true, false, false], false),
    ] {
        assert_eq!(holds(&nested, &statuses), expected, "{statuses:?}");
    }
}

#[test]
fn an_asset_without_status_is_not_updated() {
    assert!(!holds(&Asset(uri(5)), &[true]));
}

#[test]
fn a_run_consumes_every_queued_event_of_its_consumer() {
    let condition = All(vec![Asset("s3://a".into()), Asset("s3://b".into())]);
    let queued = [
        QueuedEvent {
            event_id: 7,
            uri: "s3://a".into(),
        },
        QueuedEvent {
            event_id: 3,
            uri: "s3://a".into(),
        },
    ];
    let waiting = Consumer {
        dag_id: "c",
        condition: &condition,
        queued: &queued,
    };
    assert!(
        asset_triggered_runs(&[waiting]).is_empty(),
        "b has no event yet"
    );
    let queued = [
        queued[0].clone(),
        queued[1].clone(),
        QueuedEvent {
            event_id: 9,
            uri: "s3://b".into(),
        },
    ];
    let ready = Consumer {
        dag_id: "c",
        condition: &condition,
        queued: &queued,
    };
    let runs = asset_triggered_runs(&[ready]);
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].dag_id, "c");
    assert_eq!(runs[0].consumed, vec![3, 7, 9]);
}

fn condition_strategy() -> impl Strategy<Value = AssetCondition> {
    let leaf = (0..5usize).prop_map(|i| Asset(uri(i)));
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..4).prop_map(All),
            prop::collection::vec(inner, 1..4).prop_map(Any),
        ]
    })
}

/// Events over the five URIs: (event id, URI index).
fn events_strategy() -> impl Strategy<Value = Vec<(i64, usize)>> {
    prop::collection::btree_map(0i64..1000, 0..5usize, 0..12).prop_map(|m| m.into_iter().collect())
}

fn updated_set(events: &[(i64, usize)]) -> BTreeSet<String> {
    events.iter().map(|(_, i)| uri(*i)).collect()
}

proptest! {
    #[test]
    fn any_is_satisfied_by_any_member_all_by_every(
        items in prop::collection::vec(condition_strategy(), 1..4),
        events in events_strategy(),
    ) {
        let updated = updated_set(&events);
        let f = |u: &str| updated.contains(u);
        let each: Vec<bool> = items.iter().map(|c| condition_holds(c, &f)).collect();
        prop_assert_eq!(condition_holds(&Any(items.clone()), &f), each.iter().any(|b| *b));
        prop_assert_eq!(condition_holds(&All(items), &f), each.iter().all(|b| *b));
    }

    #[test]
    fn satisfaction_is_monotone_in_events(
        condition in condition_strategy(),
        events in events_strategy(),
        more in events_strategy(),
    ) {
        let before = updated_set(&events);
        let mut after = before.clone();
        after.extend(updated_set(&more));
        if condition_holds(&condition, &|u| before.contains(u)) {
            prop_assert!(condition_holds(&condition, &|u| after.contains(u)));
        }
    }

    #[test]
    fn every_uri_updated_satisfies_any_condition(condition in condition_strategy()) {
        prop_assert!(condition_holds(&condition, &|_| true));
        prop_assert!(!condition_holds(&condition, &|_| false));
    }

    /// Events arrive in batches; after each batch the consumers that are due get a run and
    /// their consumed events leave their queues (what the store does). Every event is consumed
    /// at most once per consumer, a run happens exactly when the condition holds over the
    /// queue, and nothing a run consumed was never queued.
    #[test]
    fn each_event_is_consumed_once_per_consumer(
        conditions in prop::collection::vec(condition_strategy(), 1..4),
        batches in prop::collection::vec(events_strategy(), 1..5),
    ) {
        let dag_ids: Vec<String> = (0..conditions.len()).map(|i| format!("dag_{i}")).collect();
        let mut queues: Vec<Vec<QueuedEvent>> = vec![Vec::new(); conditions.len()];
        let mut consumed: Vec<BTreeSet<i64>> = vec![BTreeSet::new(); conditions.len()];
        let mut next_id = 0i64;
        for batch in batches {
            for (_, i) in &batch {
                next_id += 1;
                let event = QueuedEvent { event_id: next_id, uri: uri(*i) };
                for (c, condition) in conditions.iter().enumerate() {
                    if condition.uris().contains(&event.uri.as_str()) {
                        queues[c].push(event.clone());
                    }
                }
            }
            let consumers: Vec<Consumer<'_>> = conditions
                .iter()
                .enumerate()
                .map(|(c, condition)| Consumer { dag_id: &dag_ids[c], condition, queued: &queues[c] })
                .collect();
            let runs = asset_triggered_runs(&consumers);
            for (c, condition) in conditions.iter().enumerate() {
                let queue_uris: BTreeSet<&str> = queues[c].iter().map(|e| e.uri.as_str()).collect();
                let due = condition_holds(condition, &|u| queue_uris.contains(u));
                let run = runs.iter().find(|r| r.dag_id == dag_ids[c]);
                prop_assert_eq!(run.is_some(), due);
                if let Some(run) = run {
                    let queued_ids: BTreeSet<i64> = queues[c].iter().map(|e| e.event_id).collect();
                    prop_assert_eq!(run.consumed.iter().copied().collect::<BTreeSet<_>>(), queued_ids);
                    for id in &run.consumed {
                        prop_assert!(consumed[c].insert(*id), "event {} consumed twice", id);
                    }
                }
            }
            for run in &runs {
                let c = dag_ids.iter().position(|d| *d == run.dag_id).unwrap();
                queues[c].retain(|e| !run.consumed.contains(&e.event_id));
            }
        }
    }
}
