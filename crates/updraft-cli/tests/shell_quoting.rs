//! The run's conf in bash scripts, through the binary: `| sh` keeps a crafted conf as text
//! (`dags test` runs the DAG with real bash), and `dags lint` names every unquoted use with its
//! file, line and task without failing.

mod common;

use common::Home;

const QUOTED: &str = r#"dag_id: greet_quoted
params:
  who: {default: world, type: string}
tasks:
  - task_id: greet
    bash: echo hello {{ params.who | sh }}
"#;

const UNQUOTED: &str = r#"dag_id: greet_unquoted
tasks:
  - task_id: safe
    bash: echo {{ ds }}
  - task_id: greet
    bash: |
      set -e
      echo "hello {{ dag_run.conf.who }}"
"#;

#[test]
fn a_crafted_conf_stays_text_through_the_sh_filter() {
    let home = Home::new();
    home.write_dag("greet_quoted.yaml", QUOTED);
    let pwned = home.work().join("pwned");
    let attack = format!("x\"; touch '{}'; echo \"", pwned.display());
    let conf = serde_json::json!({ "who": attack }).to_string();
    let out = home.ok(&["dags", "test", "greet_quoted", "-c", &conf]);
    assert!(!pwned.exists(), "the conf's command ran:\n{out}");
    assert!(
        out.to_string().contains(&format!("hello {attack}")),
        "the conf is printed as text:\n{out}"
    );
}

#[test]
fn dags_lint_warns_about_unquoted_conf_and_exits_0() {
    let home = Home::new();
    home.write_dag("greet_quoted.yaml", QUOTED);
    let unquoted = home.write_dag("team_a/greet_unquoted.yaml", UNQUOTED);
    let warnings = home.json(&["dags", "lint"]);
    let warnings = warnings.as_array().expect("a list of warnings");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let w = &warnings[0];
    assert_eq!(w["filename"], "team_a/greet_unquoted.yaml");
    assert_eq!(w["line"], 8);
    assert_eq!(w["task_id"], "greet");
    assert!(
        w["message"]
            .as_str()
            .unwrap()
            .contains("dag_run.conf.who | sh"),
        "{w}"
    );

    let quoted_only = home.ok(&[
        "dags",
        "lint",
        home.dags().join("greet_quoted.yaml").to_str().unwrap(),
    ]);
    assert!(
        quoted_only.to_string().contains("No DAG warnings"),
        "{quoted_only}"
    );
    let table = home.ok(&["dags", "lint", unquoted.to_str().unwrap()]);
    assert!(table.to_string().contains("greet"), "{table}");
}
