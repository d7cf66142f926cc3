//! Loading a DAGs folder: tenants, duplicates, refresh, broken files, the bundled examples.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use tempfile::TempDir;
use updraft_dag::{DEFAULT_TENANT, DagBag, DagBagOptions, ImportError};

fn write(root: &Path, rel: &str, text: impl AsRef<[u8]>) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn dag(dag_id: &str) -> String {
    format!("dag_id: {dag_id}\ntasks:\n  - task_id: t\n    bash: echo {dag_id}\n")
}

fn ids(bag: &DagBag) -> Vec<(String, String, String)> {
    bag.dags()
        .map(|d| {
            (
                d.dag.dag_id.clone(),
                d.dag.tenant.clone(),
                d.dag.fileloc.clone(),
            )
        })
        .collect()
}

fn error_files(bag: &DagBag) -> Vec<&str> {
    bag.import_errors()
        .iter()
        .map(|e| e.filename.as_str())
        .collect()
}

fn triple(id: &str, tenant: &str, file: &str) -> (String, String, String) {
    (id.into(), tenant.into(), file.into())
}

#[test]
fn tenants_come_from_the_first_folder() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    write(root, "top.yaml", dag("top"));
    write(root, "short.yml", dag("short"));
    write(root, "team_a/a.yaml", dag("a"));
    write(root, "team_a/deep/er/b.yaml", dag("b"));
    write(root, "team-b.v2/c.yaml", dag("c"));
    let bag = DagBag::load(root);
    assert_eq!(
        ids(&bag),
        vec![
            triple("a", "team_a", "team_a/a.yaml"),
            triple("b", "team_a", "team_a/deep/er/b.yaml"),
            triple("c", "team-b.v2", "team-b.v2/c.yaml"),
            triple("short", DEFAULT_TENANT, "short.yml"),
            triple("top", DEFAULT_TENANT, "top.yaml"),
        ]
    );
    assert!(bag.import_errors().is_empty(), "{:?}", bag.import_errors());
}

#[test]
fn invalid_tenant_folder_is_an_import_error() {
    let dir = TempDir::new().unwrap();
    write(dir.path(), "bad tenant/x.yaml", dag("x"));
    write(dir.path(), "ok.yaml", dag("ok"));
    let bag = DagBag::load(dir.path());
    assert_eq!(ids(&bag), vec![triple("ok", "default", "ok.yaml")]);
    let errors = bag.import_errors();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].filename, "bad tenant/x.yaml");
    assert_eq!((errors[0].line, errors[0].column), (None, None));
    assert!(
        errors[0]
            .message
            .contains("tenant folder name \"bad tenant\""),
        "{}",
        errors[0]
    );
}

#[test]
fn hidden_and_other_files_are_ignored() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    write(root, "real.yaml", dag("real"));
    write(root, ".hidden.yaml", "not: [valid");
    write(root, ".git/config.yaml", "not: [valid");
    write(root, "team_a/.swap/x.yaml", "not: [valid");
    write(root, "notes.txt", "not: [valid");
    write(root, "script.py", "print('hi')");
    let bag = DagBag::load(root);
    assert_eq!(ids(&bag), vec![triple("real", "default", "real.yaml")]);
    assert!(bag.import_errors().is_empty(), "{:?}", bag.import_errors());
    assert_eq!(bag.file_count(), 1);
}

#[test]
fn duplicate_dag_id_goes_to_the_first_file_and_names_both_within_a_tenant() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    write(root, "team_a/b.yaml", dag("shared"));
    write(root, "team_a/a.yaml", dag("shared"));
    write(root, "team_a/sub/z.yaml", "\n\ndag_id: shared\n");
    let bag = DagBag::load(root);
    assert_eq!(ids(&bag), vec![triple("shared", "team_a", "team_a/a.yaml")]);
    let errors = bag.import_errors();
    assert_eq!(error_files(&bag), ["team_a/b.yaml", "team_a/sub/z.yaml"]);
    for error in errors {
        assert!(
            error
                .message
                .contains("dag_id `shared` is already used by team_a/a.yaml"),
            "{error}"
        );
        assert!(
            error
                .message
                .contains(&format!("{} declares it too", error.filename)),
            "{error}"
        );
    }
    assert_eq!(errors[1].tenant, "team_a");
    assert_eq!((errors[1].line, errors[1].column), (Some(3), Some(9)));
}

#[test]
fn another_tenants_claim_names_neither_the_owner_nor_its_file() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    write(root, "team_b/shared.yaml", dag("shared"));
    write(root, "a_first.yaml", dag("shared"));
    write(root, "team_a/z.yaml", "\n\ndag_id: shared\n");
    let bag = DagBag::load(root);
    // No owner registered yet: the first path in sorted order.
    assert_eq!(ids(&bag), vec![triple("shared", "default", "a_first.yaml")]);
    assert_eq!(error_files(&bag), ["team_a/z.yaml", "team_b/shared.yaml"]);
    for error in bag.import_errors() {
        assert_eq!(
            error.message,
            format!(
                "dag_id `shared` belongs to another tenant; {} cannot declare it (a dag_id stays with the tenant that first registered it): choose another dag_id",
                error.filename
            )
        );
    }

    // Registered to team_b: team_b's file keeps it, whatever sorts first.
    let owners = HashMap::from([("shared".to_owned(), "team_b".to_owned())]);
    let (dags, errors) = bag.resolve_with_owners(&owners);
    let files: Vec<&str> = dags.iter().map(|d| d.dag.fileloc.as_str()).collect();
    assert_eq!(files, ["team_b/shared.yaml"]);
    let files: Vec<&str> = errors.iter().map(|e| e.filename.as_str()).collect();
    assert_eq!(files, ["a_first.yaml", "team_a/z.yaml"]);
    assert!(errors.iter().all(|e| !e.message.contains("team_b")));
    assert_eq!((errors[1].line, errors[1].column), (Some(3), Some(9)));

    // Registered to a tenant with no file here: no one gets it.
    let owners = HashMap::from([("shared".to_owned(), "team_z".to_owned())]);
    let (dags, errors) = bag.resolve_with_owners(&owners);
    assert!(dags.is_empty());
    assert_eq!(errors.len(), 3);
    // The bag itself is untouched.
    assert_eq!(ids(&bag), vec![triple("shared", "default", "a_first.yaml")]);
}

#[test]
fn one_broken_file_does_not_stop_the_others() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    write(root, "a.yaml", dag("a"));
    write(root, "b.yaml", "dag_id: b\ntasks: [\n");
    write(root, "c.yaml", dag("c"));
    let bag = DagBag::load(root);
    assert_eq!(bag.dags().len(), 2);
    let errors = bag.import_errors();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].filename, "b.yaml");
    assert_eq!(errors[0].line, Some(2));
}

#[test]
fn non_utf8_is_an_import_error_without_line() {
    let dir = TempDir::new().unwrap();
    write(dir.path(), "latin1.yaml", b"dag_id: caf\xe9\n");
    let bag = DagBag::load(dir.path());
    assert_eq!(bag.dags().len(), 0);
    assert_eq!(
        bag.import_errors(),
        [ImportError {
            tenant: "default".into(),
            filename: "latin1.yaml".into(),
            line: None,
            column: None,
            message: "the file is not valid UTF-8 (invalid byte at offset 11)".into(),
        }]
    );
}

#[test]
fn oversized_files_are_import_errors() {
    let dir = TempDir::new().unwrap();
    let big = format!("{}# {}\n", dag("big"), "x".repeat(200));
    write(dir.path(), "team_a/big.yaml", &big);
    write(dir.path(), "small.yaml", dag("small"));
    let options = DagBagOptions {
        max_file_size: 100,
        ..DagBagOptions::default()
    };
    let mut bag = DagBag::with_options(dir.path(), options);
    bag.refresh();
    assert_eq!(ids(&bag), vec![triple("small", "default", "small.yaml")]);
    let errors = bag.import_errors();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].tenant, "team_a");
    assert_eq!(errors[0].line, None);
    assert_eq!(
        errors[0].message,
        format!(
            "the file is {} bytes, over the 100-byte limit for DAG files",
            big.len()
        )
    );
    // The default limit (1 MiB) lets it through.
    assert_eq!(DagBag::load(dir.path()).dags().len(), 2);
}

#[test]
fn loaded_dags_carry_version_and_source() {
    let dir = TempDir::new().unwrap();
    write(dir.path(), "v.yaml", dag("v"));
    let bag = DagBag::load(dir.path());
    let loaded = bag.dag("v").unwrap();
    assert_eq!(loaded.source, dag("v"));
    assert_eq!(loaded.version, loaded.dag.version());
    assert!(bag.dag("nope").is_none());
}

#[test]
fn refresh_reparses_only_changed_files_and_reports_changes() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    write(root, "a.yaml", dag("a"));
    write(root, "b.yaml", dag("b"));
    write(root, "team_x/c.yaml", dag("c"));
    let mut bag = DagBag::new(root);

    let first = bag.refresh();
    assert_eq!(first.added, ["a", "b", "c"]);
    assert_eq!(first.parsed_files.len(), 3);
    assert_eq!(first.files_seen, 3);
    assert!(first.has_changes());

    let nothing = bag.refresh();
    assert!(!nothing.has_changes(), "{nothing:?}");
    assert!(nothing.parsed_files.is_empty(), "{nothing:?}");
    let version_b = bag.dag("b").unwrap().version.clone();

    // Same length, different content: detected even within the mtime granularity.
    write(root, "b.yaml", dag("b").replace("echo b", "echo B"));
    let changed = bag.refresh();
    assert_eq!(changed.parsed_files, ["b.yaml"]);
    assert_eq!(changed.updated, ["b"]);
    assert!(changed.added.is_empty() && changed.removed.is_empty());
    assert!(!changed.import_errors_changed);
    assert_ne!(bag.dag("b").unwrap().version, version_b);

    // Rewriting identical content re-parses nothing.
    write(root, "a.yaml", dag("a"));
    let same = bag.refresh();
    assert!(same.parsed_files.is_empty(), "{same:?}");
    assert!(!same.has_changes());

    // A comment changes the source but not the version: reported as updated.
    let version_a = bag.dag("a").unwrap().version.clone();
    write(root, "a.yaml", format!("# comment\n{}", dag("a")));
    let comment = bag.refresh();
    assert_eq!(comment.updated, ["a"]);
    assert_eq!(bag.dag("a").unwrap().version, version_a);

    fs::remove_file(root.join("team_x/c.yaml")).unwrap();
    write(root, "d.yaml", dag("d"));
    let moved = bag.refresh();
    assert_eq!(moved.removed, ["c"]);
    assert_eq!(moved.added, ["d"]);
    assert_eq!(moved.parsed_files, ["d.yaml"]);
    assert_eq!(bag.file_count(), 3);
    assert!(bag.dag("c").is_none());
}

#[test]
fn refresh_tracks_import_errors() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    write(root, "a.yaml", dag("a"));
    let mut bag = DagBag::load(root);

    write(root, "a.yaml", "dag_id: a\ntasks: {}\n");
    let broke = bag.refresh();
    assert_eq!(broke.removed, ["a"]);
    assert!(broke.import_errors_changed);
    assert_eq!(error_files(&bag), ["a.yaml"]);

    write(root, "a.yaml", dag("a"));
    let fixed = bag.refresh();
    assert_eq!(fixed.added, ["a"]);
    assert!(fixed.import_errors_changed);
    assert!(bag.import_errors().is_empty());

    // Deleting a broken file removes its import error.
    write(root, "broken.yaml", "tasks: [\n");
    bag.refresh();
    assert_eq!(error_files(&bag), ["broken.yaml"]);
    fs::remove_file(root.join("broken.yaml")).unwrap();
    let gone = bag.refresh();
    assert!(gone.import_errors_changed);
    assert!(bag.import_errors().is_empty());
}

#[test]
fn losing_the_duplicate_owner_hands_the_dag_id_over() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    write(root, "a.yaml", dag("shared"));
    write(root, "b.yaml", dag("shared"));
    let mut bag = DagBag::load(root);
    assert_eq!(bag.dag("shared").unwrap().dag.fileloc, "a.yaml");
    fs::remove_file(root.join("a.yaml")).unwrap();
    let report = bag.refresh();
    assert_eq!(report.updated, ["shared"]);
    assert!(report.parsed_files.is_empty(), "b.yaml had not changed");
    assert_eq!(bag.dag("shared").unwrap().dag.fileloc, "b.yaml");
    assert!(bag.import_errors().is_empty());
}

#[test]
fn a_missing_folder_is_reported() {
    let dir = TempDir::new().unwrap();
    let bag = DagBag::load(dir.path().join("nope"));
    assert_eq!(bag.dags().len(), 0);
    assert_eq!(error_files(&bag), ["."]);
    assert!(bag.import_errors()[0].message.contains("cannot scan"));
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/dags")
}

#[test]
fn the_examples_load_without_errors() {
    let bag = DagBag::load(examples());
    assert!(bag.import_errors().is_empty(), "{:#?}", bag.import_errors());
    let loaded: Vec<(String, String)> = bag
        .dags()
        .map(|d| (d.dag.tenant.clone(), d.dag.dag_id.clone()))
        .collect();
    for (tenant, id) in [
        ("default", "hello_world"),
        ("default", "retry_chain"),
        ("default", "fan_out_fan_in"),
        ("default", "params_example"),
        ("default", "branch_example"),
        ("default", "python_example"),
        ("default", "xcom_example"),
        ("default", "task_groups"),
        ("default", "trigger_example"),
        ("team_a", "team_a_nightly_report"),
    ] {
        assert!(
            loaded.contains(&(tenant.to_owned(), id.to_owned())),
            "{tenant}/{id} missing from {loaded:?}"
        );
    }
    let groups = &bag.dag("task_groups").unwrap().dag;
    assert_eq!(groups.groups.len(), 3);
    assert_eq!(
        groups.task("transform.join").unwrap().upstream,
        ["extract.orders", "extract.customers.dedupe"]
    );
    let params = bag.dag("params_example").unwrap();
    assert!(updraft_dag::resolve_params(&params.dag, &serde_json::Map::new()).is_ok());
}

/// Loads 10,000 small DAG files. Run with
/// `cargo test --release -p updraft-dag --test dag_bag -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark; run in release mode"]
fn load_10k_files() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    for i in 0..10_000 {
        let rel = if i % 2 == 0 {
            format!("dag_{i}.yaml")
        } else {
            format!("tenant_{}/dag_{i}.yaml", i % 10)
        };
        let text = format!(
            "dag_id: dag_{i}\nschedule: '@daily'\nstart_date: 2024-01-01\ndefault_args: {{retries: 1}}\n\
             tasks:\n  - task_id: extract\n    bash: echo {{{{ ds }}}}\n  - task_id: load\n    \
             command: [echo, load]\n    upstream: extract\n"
        );
        write(root, &rel, text);
        // Old files, as in steady state: a rescan then trusts size and mtime.
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        let file = fs::File::options()
            .write(true)
            .open(root.join(&rel))
            .unwrap();
        file.set_modified(hour_ago).unwrap();
    }
    let mut bag = DagBag::new(root);
    let started = Instant::now();
    let report = bag.refresh();
    let full = started.elapsed();
    assert_eq!(bag.dags().len(), 10_000);
    assert!(bag.import_errors().is_empty());
    assert_eq!(report.parsed_files.len(), 10_000);

    let started = Instant::now();
    let again = bag.refresh();
    let rescan = started.elapsed();
    assert!(again.parsed_files.is_empty());
    println!("load 10,000 files: {full:?}; refresh with nothing changed: {rescan:?}");
}
