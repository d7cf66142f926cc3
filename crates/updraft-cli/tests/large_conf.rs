//! Large run confs, through the binary: a conf far over what the environment takes reaches
//! its tasks whole through `UPDRAFT_CONF_FILE`, and one over the limit is refused when the
//! run is triggered, naming the limit, instead of failing every task later.

mod common;

use common::Home;
use sha2::Digest as _;

const DAG: &str = r#"
dag_id: big_conf
tasks:
  - task_id: read
    bash: |
      sha256sum < "$UPDRAFT_CONF_FILE"
      echo "in_env=${UPDRAFT_CONF:+yes} n={{ dag_run.conf.n }}"
"#;

/// A conf of `bytes` bytes of compact JSON, and its SHA-256.
fn conf_of(bytes: usize) -> (String, String) {
    // `{"blob":"` and `","n":7}` are 17 bytes.
    let blob: String = (0..bytes - 17)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let conf = serde_json::to_string(&serde_json::json!({ "blob": blob, "n": 7 })).unwrap();
    assert_eq!(conf.len(), bytes);
    let hash = sha2::Sha256::digest(conf.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (conf, hash)
}

#[test]
fn a_500_kib_conf_reaches_a_bash_task_whole_through_its_file() {
    let home = Home::new();
    home.write_dag("big_conf.yaml", DAG);
    let (conf, hash) = conf_of(500 * 1024);
    let file = home.path().join("conf.json");
    std::fs::write(&file, &conf).unwrap();
    let run = home.trigger("big_conf", Some(&format!("@{}", file.display())));
    let _scheduler = home.start_scheduler();
    assert_eq!(home.wait_run_finished("big_conf", &run), "success");
    let log = home.logs("big_conf", &run, "read", None);
    assert!(log.contains(&format!("{hash}  -")), "{log}");
    assert!(log.contains("in_env= n=7"), "{log}");
}

#[test]
fn a_conf_over_the_limit_is_refused_at_trigger_naming_it() {
    let home = Home::new();
    home.write_dag("big_conf.yaml", DAG);
    home.wait_dag_listed("big_conf");
    let (conf, _) = conf_of(1024 * 1024 + 1);
    let file = home.path().join("conf.json");
    std::fs::write(&file, &conf).unwrap();
    let refused = home.fails(&[
        "dags",
        "trigger",
        "big_conf",
        "--conf",
        &format!("@{}", file.display()),
    ]);
    assert!(
        refused
            .stderr
            .contains("conf is 1048577 bytes of JSON, over the limit of 1048576 bytes (1 MiB)"),
        "{refused}"
    );
    assert!(home.runs("big_conf").is_empty());
    let missing = home.fails(&[
        "dags",
        "trigger",
        "big_conf",
        "--conf",
        "@/nonexistent.json",
    ]);
    assert!(
        missing
            .stderr
            .contains("cannot read --conf file /nonexistent.json"),
        "{missing}"
    );
}
