//! Connections in templates through the binary: `tasks render`, `tasks test` and `dags test`
//! read them from the configured backends (here the environment, `AIRFLOW_CONN_MY_DB`) and
//! never print a password.

mod common;

use common::Home;

const PASSWORD: &str = "cli-s3cr3t-pw";

const DAG: &str = r#"dag_id: uses_db
tasks:
  - task_id: show
    connections: [my_db]
    env: {PGPASSWORD: "{{ conn.my_db.password }}"}
    bash: |
      echo "host {{ conn.my_db.host }} password {{ conn.my_db.password }}"
      echo "env $AIRFLOW_CONN_MY_DB $PGPASSWORD"
"#;

fn home() -> Home {
    let home = Home::new().with_env(
        "AIRFLOW_CONN_MY_DB",
        &format!("postgres://app:{PASSWORD}@db.example:5432/shop"),
    );
    home.write_dag("uses_db.yaml", DAG);
    home
}

#[test]
fn tasks_render_shows_the_rendered_fields_with_secrets_masked() {
    let home = home();
    let out = home.ok(&["tasks", "render", "uses_db", "show"]).to_string();
    assert!(!out.contains(PASSWORD), "{out}");
    assert!(out.contains("# property: bash\n"), "{out}");
    assert!(
        out.contains("echo \"host db.example password ***\"\n"),
        "{out}"
    );
    let rule = "# ----------------------------------------------------------";
    for name in ["env.PGPASSWORD", "env.AIRFLOW_CONN_MY_DB"] {
        let field = format!("# property: {name}\n{rule}\n***\n");
        assert!(out.contains(&field), "{out}");
    }
}

#[test]
fn tasks_test_and_dags_test_print_logs_with_secrets_masked() {
    let home = home();
    for args in [
        &["tasks", "test", "uses_db", "show"][..],
        &["dags", "test", "uses_db"][..],
    ] {
        let out = home.ok(args).to_string();
        assert!(!out.contains(PASSWORD), "{args:?}: {out}");
        assert!(
            out.contains("host db.example password ***\n"),
            "{args:?}: {out}"
        );
        assert!(out.contains("env *** ***\n"), "{args:?}: {out}");
    }
}

#[test]
fn a_connection_that_does_not_exist_is_named() {
    let home = Home::new();
    home.write_dag("uses_db.yaml", DAG);
    let out = home
        .fails(&["tasks", "render", "uses_db", "show"])
        .to_string();
    assert!(
        out.contains("connection `my_db` does not exist (tenant `default`)"),
        "{out}"
    );
}
