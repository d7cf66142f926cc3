//! Property tests: parsing never panics, graph queries agree with each other, schedules
//! round-trip through their display form.

use std::time::Duration;

use proptest::prelude::*;
use updraft_dag::{Schedule, format_duration, parse_dag, parse_schedule};

const VALID: &str = "\
dag_id: p
schedule: '@daily'
start_date: 2024-01-01
params:
  n: {default: 1, type: integer}
tasks:
  - task_id: a
    bash: echo {{ ds }}
  - task_id: b
    command: [echo, b]
    upstream: [a]
    retries: 2
";

/// DAG text with `n` tasks declared in `order`; task i lists the earlier tasks (by index)
/// chosen in `edges[i]`.
fn dag_text(order: &[usize], edges: &[Vec<bool>]) -> String {
    let mut text = String::from("tasks:\n");
    for &i in order {
        let upstream: Vec<String> = edges[i]
            .iter()
            .enumerate()
            .filter(|(j, chosen)| **chosen && *j < i)
            .map(|(j, _)| format!("t{j}"))
            .collect();
        text.push_str(&format!(
            "  - {{task_id: t{i}, noop: true, upstream: [{}]}}\n",
            upstream.join(", ")
        ));
    }
    text
}

fn graph_strategy() -> impl Strategy<Value = (Vec<usize>, Vec<Vec<bool>>)> {
    (1usize..12).prop_flat_map(|n| {
        (
            Just((0..n).collect::<Vec<usize>>()).prop_shuffle(),
            proptest::collection::vec(proptest::collection::vec(any::<bool>(), n), n),
        )
    })
}

proptest! {
    #[test]
    fn parsing_arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = parse_dag("default", "x.yaml", &text);
    }

    #[test]
    fn parsing_a_damaged_file_never_panics(cut in 0usize..VALID.len(), insert in "[ :\\-\\[\\]{}#'\"a-z0-9\n]{0,8}") {
        let mut text = VALID.to_owned();
        if text.is_char_boundary(cut) {
            text.insert_str(cut, &insert);
        }
        if let Err(errors) = parse_dag("default", "x.yaml", &text) {
            prop_assert!(!errors.is_empty());
            for error in errors {
                prop_assert!(error.line.is_none_or(|l| l >= 1));
                prop_assert!(error.column.is_none_or(|c| c >= 1));
            }
        }
    }

    #[test]
    fn graph_queries_agree((order, edges) in graph_strategy()) {
        let dag = parse_dag("default", "g.yaml", &dag_text(&order, &edges)).unwrap();
        let topo: Vec<&str> = dag.topological_order().iter().map(|t| t.task_id.as_str()).collect();
        prop_assert_eq!(topo.len(), dag.tasks.len());
        for task in &dag.tasks {
            let at = topo.iter().position(|t| *t == task.task_id).unwrap();
            for up in &task.upstream {
                prop_assert!(topo.iter().position(|t| t == up).unwrap() < at);
            }
        }
        for x in &dag.tasks {
            let down = dag.downstream_of(&x.task_id);
            prop_assert!(!down.contains(&x.task_id.as_str()));
            for y in &dag.tasks {
                let x_above_y = dag.upstream_of(&y.task_id).contains(&x.task_id.as_str());
                prop_assert_eq!(down.contains(&y.task_id.as_str()), x_above_y);
            }
            for direct in dag.direct_downstream_of(&x.task_id) {
                prop_assert!(down.contains(&direct));
            }
        }
    }

    #[test]
    fn interval_schedules_round_trip(secs in 1u64..10_000_000) {
        let schedule = Schedule::Every(Duration::from_secs(secs));
        prop_assert_eq!(parse_schedule(&schedule.to_string()), Ok(schedule));
        prop_assert_eq!(
            parse_schedule(&format_duration(Duration::from_secs(secs))),
            Ok(Schedule::Every(Duration::from_secs(secs)))
        );
    }
}

#[test]
fn a_cycle_added_to_a_generated_graph_is_found() {
    let text = "tasks:\n  - {task_id: t0, noop: true, upstream: [t2]}\n  - {task_id: t1, noop: true, upstream: [t0]}\n  - {task_id: t2, noop: true, upstream: [t1]}\n";
    let errors = parse_dag("default", "g.yaml", text).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].message.ends_with("t0 -> t1 -> t2 -> t0"),
        "{}",
        errors[0]
    );
}
