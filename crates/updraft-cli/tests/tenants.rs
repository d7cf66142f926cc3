//! Tenants below the API: a file in one tenant's folder declaring the dag_id of another
//! tenant's DAG takes nothing over, under a running scheduler and across its restart.

mod common;

use common::{DEFAULT_TIMEOUT, Home, as_array, str_of, wait_until};
use serde_json::Value;

const OWNED: &str = "dag_id: etl\ntasks:\n  - task_id: load\n    bash: echo loaded by team_b\n";
const CLAIM: &str = "dag_id: etl\nis_paused_upon_creation: true\ntasks:\n  - task_id: load\n    bash: echo stolen by a_evil\n";

fn the_dag(home: &Home, dag_id: &str) -> Value {
    home.dags_list()
        .into_iter()
        .find(|d| d["dag_id"] == dag_id)
        .unwrap_or_else(|| panic!("{dag_id} is listed"))
}

fn import_errors(home: &Home) -> Vec<Value> {
    as_array(home.json(&["dags", "list-import-errors"]))
}

fn run_and_log(home: &Home) -> (String, String) {
    let run_id = home.trigger("etl", None);
    assert_eq!(home.wait_run_finished("etl", &run_id), "success");
    let log = home.logs("etl", &run_id, "load", None);
    (run_id, log)
}

#[test]
fn another_tenants_file_cannot_take_a_dag_id_over() {
    let home = Home::new();
    home.write_dag("team_b/etl.yaml", OWNED);
    let mut scheduler = home.start_scheduler();
    home.wait_dag_listed("etl");
    let (first_run, log) = run_and_log(&home);
    assert!(log.contains("loaded by team_b"), "{log}");
    let before = the_dag(&home, "etl");
    assert_eq!(before["tenant"], "team_b");
    assert_eq!(before["is_paused"], false);

    // `a_evil/` sorts before `team_b/`.
    home.write_dag("a_evil/etl.yaml", CLAIM);
    let error = wait_until("the claim's import error", DEFAULT_TIMEOUT, || {
        import_errors(&home)
            .into_iter()
            .find(|e| e["filename"] == "a_evil/etl.yaml")
    });
    assert_eq!(error["tenant"], "a_evil");
    let message = str_of(&error["message"]);
    assert!(
        message.contains("dag_id `etl` belongs to another tenant"),
        "{message}"
    );
    assert!(
        !message.contains("team_b"),
        "the owner is not named: {message}"
    );
    assert_eq!(
        import_errors(&home).len(),
        1,
        "team_b's file is no import error"
    );

    let check = |home: &Home| {
        let after = the_dag(home, "etl");
        for field in ["tenant", "fileloc", "is_paused"] {
            assert_eq!(after[field], before[field], "{field}");
        }
        assert!(
            home.runs("etl").iter().any(|r| r["run_id"] == first_run),
            "team_b's history stays"
        );
        let (_, log) = run_and_log(home);
        assert!(log.contains("loaded by team_b"), "{log}");
        assert!(!log.contains("stolen"), "{log}");
    };
    check(&home);

    // A restart reads the folder afresh: the dag_id is still team_b's.
    scheduler.terminate();
    scheduler.wait_exit(DEFAULT_TIMEOUT);
    let _scheduler = home.start_scheduler();
    check(&home);
}
