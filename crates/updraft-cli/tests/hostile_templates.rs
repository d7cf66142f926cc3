//! Templates over their budget, through the binary: one tenant's template that would loop for
//! ever or build gigabytes fails its own try with a clear reason, while another tenant's runs
//! finish about as fast as they do alone, and the scheduler stays up.

mod common;

use std::time::Duration;

use chrono::DateTime;
use common::{Home, str_of};

/// A chain of templated tasks: each launch renders, so a renderer held up by another tenant
/// would delay every link.
const GOOD: &str = r#"
dag_id: good_chain
tasks:
  - task_id: a
    bash: echo "a {{ ds }} {{ dag_run.conf.get('n', 0) }}"
  - task_id: b
    upstream: [a]
    bash: echo "b {{ ds_nodash }}"
  - task_id: c
    upstream: [b]
    bash: echo "c {{ run_id }}"
  - task_id: d
    upstream: [c]
    bash: echo "d {{ ts }}"
  - task_id: e
    upstream: [d]
    bash: echo "e {{ macros.ds_add(ds, 1) }}"
"#;

/// Every way a template could hold the renderer or the memory: nested loops of ten billion
/// turns, printing gigabytes, and joining a gigabyte in memory; several of each, in parallel.
fn hostile_dag() -> String {
    let mut yaml = String::from("dag_id: bomb\nmax_active_tasks: 32\ntasks:\n");
    let templates = [
        "{% for i in range(100000) %}{% for j in range(100000) %}{{ '' }}{% endfor %}{% endfor %}",
        "{% for i in range(100000) %}{{ 'x' * 100000000 }}{% endfor %}",
        "{{ (['x' * 1000000] * 100000) | join }}",
    ];
    for copy in 0..4 {
        for (n, template) in templates.iter().enumerate() {
            yaml.push_str(&format!(
                "  - task_id: t{n}_{copy}\n    bash: \"echo {template}\"\n"
            ));
        }
    }
    yaml
}

/// How long a run took, from its recorded start and end.
fn run_duration(home: &Home, dag_id: &str, run_id: &str) -> Duration {
    let row = home.run_row(dag_id, run_id);
    let at = |field: &str| {
        DateTime::parse_from_rfc3339(&str_of(&row[field]))
            .unwrap_or_else(|e| panic!("{field} of {row}: {e}"))
    };
    (at("end_date") - at("start_date")).to_std().unwrap()
}

#[test]
fn a_template_over_budget_fails_its_try_and_delays_no_other_tenant() {
    let home = Home::new();
    home.write_dag("good/chain.yaml", GOOD);
    let mut scheduler = home.start_scheduler();

    let alone = home.trigger("good_chain", Some(r#"{"n": 1}"#));
    assert_eq!(home.wait_run_finished("good_chain", &alone), "success");
    let baseline = run_duration(&home, "good_chain", &alone);

    home.write_dag("evil/bomb.yaml", &hostile_dag());
    home.wait_dag_listed("bomb");
    let bomb = home.trigger("bomb", None);
    let beside = home.trigger("good_chain", Some(r#"{"n": 2}"#));

    // Generous: a renderer held by the bomb would hold this run for as long as the bomb's
    // templates run (hours without a budget), far past this bound.
    let bound = baseline * 5 + Duration::from_secs(10);
    let state = home.wait_run_finished_within("good_chain", &beside, bound);
    assert_eq!(state, "success");
    let took = run_duration(&home, "good_chain", &beside);
    eprintln!("the chain took {baseline:?} alone, {took:?} beside the bomb");
    assert!(
        took <= bound,
        "the chain took {took:?} beside the bomb, {baseline:?} alone"
    );

    assert_eq!(home.wait_run_finished("bomb", &bomb), "failed");
    for (task_id, ti) in home.task_instances("bomb", &bomb) {
        assert_eq!(ti["state"], "failed", "{task_id}: {ti}");
        let log = home.logs("bomb", &bomb, &task_id, None);
        assert!(
            log.contains("template over budget"),
            "{task_id} names its budget in its log:\n{log}"
        );
    }
    let reasons = |prefix: &str, reason: &str| {
        let log = home.logs("bomb", &bomb, &format!("{prefix}_0"), None);
        assert!(log.contains(reason), "{prefix}: {log}");
    };
    reasons("t0", "template instructions");
    reasons("t1", "would render more than 1048576 bytes");
    reasons(
        "t2",
        "`join` would build a string of more than 1048576 bytes",
    );

    // The scheduler is still up, and still schedules.
    let after = home.trigger("good_chain", Some(r#"{"n": 3}"#));
    assert_eq!(home.wait_run_finished("good_chain", &after), "success");
    assert!(
        scheduler.try_wait().is_none(),
        "the scheduler exited:\n{}",
        scheduler.output()
    );
}
