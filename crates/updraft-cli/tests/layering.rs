//! The workspace's dependency direction, read from `cargo metadata`: data flows one way, from
//! DAG files through the core and the store to the shells, and no crate depends on one above it.
//!
//! dag <- core <- store <- runs, secrets, sources <- executor <- pods <- scheduler <- cli;
//! objects under sources and logs. The server sees only auth, dag, core, store, runs, secrets,
//! objects and logs (never the scheduler, an executor, a DAG source, notifications or
//! Kubernetes); notify (delivering notifications) sits on secrets, used by the scheduler; the
//! Kubernetes fake and the test servers are dev-dependencies only.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

const AUTH: &str = "updraft-auth";
const DAG: &str = "updraft-dag";
const CORE: &str = "updraft-core";
const STORE: &str = "updraft-store";
const RUNS: &str = "updraft-runs";
const SECRETS: &str = "updraft-secrets";
const OBJECTS: &str = "updraft-objects";
const SOURCES: &str = "updraft-sources";
const LOGS: &str = "updraft-logs";
const NOTIFY: &str = "updraft-notify";
const METRICS: &str = "updraft-metrics";
const TEST_SERVERS: &str = "updraft-test-servers";
const EXECUTOR: &str = "updraft-executor";
const PODS: &str = "updraft-pods";
const SCHEDULER: &str = "updraft-scheduler";
const SERVER: &str = "updraft-server";
const CLI: &str = "updraft-cli";
const KUBE_FAKE: &str = "updraft-kube-fake";
const BENCH: &str = "updraft-bench";

/// Every workspace crate and the workspace crates it may depend on, whatever the kind of
/// dependency (the Kubernetes fake aside: any crate may have it as a dev-dependency).
const ALLOWED: &[(&str, &[&str])] = &[
    (AUTH, &[]),
    (DAG, &[]),
    (CORE, &[DAG]),
    (STORE, &[AUTH, DAG, CORE]),
    (RUNS, &[DAG, CORE, STORE]),
    (SECRETS, &[STORE]),
    (OBJECTS, &[]),
    (METRICS, &[]),
    (SOURCES, &[STORE, OBJECTS, METRICS]),
    (LOGS, &[DAG, OBJECTS]),
    (NOTIFY, &[SECRETS]),
    (EXECUTOR, &[DAG, CORE, STORE, SECRETS]),
    (PODS, &[DAG, CORE, STORE, SECRETS, EXECUTOR]),
    (
        SCHEDULER,
        &[
            DAG, CORE, STORE, RUNS, SECRETS, OBJECTS, SOURCES, LOGS, NOTIFY, EXECUTOR, PODS,
            METRICS,
        ],
    ),
    (
        SERVER,
        &[
            AUTH, DAG, CORE, STORE, RUNS, SECRETS, OBJECTS, LOGS, METRICS,
        ],
    ),
    (
        CLI,
        &[
            AUTH, DAG, CORE, STORE, RUNS, SECRETS, OBJECTS, SOURCES, LOGS, NOTIFY, EXECUTOR, PODS,
            SCHEDULER, SERVER, METRICS,
        ],
    ),
    (KUBE_FAKE, &[]),
    (TEST_SERVERS, &[]),
    (BENCH, &[]),
];

/// The Kubernetes client crates: only the pod executor and the fake use them outside tests.
const KUBERNETES: &[&str] = &["kube", "k8s-openapi"];
/// Crates of tests only: any crate may have them as dev-dependencies, none as more.
const TESTS_ONLY: &[&str] = &[KUBE_FAKE, TEST_SERVERS];

const KUBERNETES_USERS: &[&str] = &[PODS, KUBE_FAKE];

/// What the server must not reach, directly or through any crate it depends on.
const NOT_IN_SERVER: &[&str] = &[
    SCHEDULER,
    NOTIFY,
    EXECUTOR,
    PODS,
    SOURCES,
    "git2",
    "kube",
    "k8s-openapi",
];

/// One dependency of a workspace crate: (name, kind), kind `normal`, `dev` or `build`.
type Dependencies = BTreeMap<String, Vec<(String, String)>>;

fn workspace_dependencies() -> Dependencies {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml");
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--manifest-path",
        ])
        .arg(manifest)
        .output()
        .expect("running cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata's JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    packages
        .iter()
        .map(|package| {
            let name = package["name"].as_str().expect("package name").to_string();
            let dependencies = package["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .map(|d| {
                    let kind = d["kind"].as_str().unwrap_or("normal").to_string();
                    (
                        d["name"].as_str().expect("dependency name").to_string(),
                        kind,
                    )
                })
                .collect();
            (name, dependencies)
        })
        .collect()
}

fn allowed(krate: &str) -> Option<&'static [&'static str]> {
    ALLOWED
        .iter()
        .find(|(name, _)| *name == krate)
        .map(|(_, deps)| *deps)
}

fn assert_none(violations: Vec<String>, what: &str) {
    assert!(
        violations.is_empty(),
        "{what}:\n  {}",
        violations.join("\n  ")
    );
}

#[test]
fn workspace_crates_depend_only_on_crates_below_them() {
    let deps = workspace_dependencies();
    let mut violations = Vec::new();
    for (krate, dependencies) in &deps {
        let Some(may) = allowed(krate) else {
            violations.push(format!(
                "{krate} is not in the layering table of crates/updraft-cli/tests/layering.rs: \
                 add it with the crates it may depend on"
            ));
            continue;
        };
        for (dep, kind) in dependencies {
            let in_workspace = deps.contains_key(dep);
            if !in_workspace || (TESTS_ONLY.contains(&dep.as_str()) && kind == "dev") {
                continue;
            }
            if !may.contains(&dep.as_str()) {
                violations.push(format!(
                    "forbidden edge {krate} -> {dep} ({kind} dependency); {krate} may depend on: {}",
                    if may.is_empty() { "no workspace crate".to_string() } else { may.join(", ") }
                ));
            }
        }
    }
    assert_none(violations, "dependencies against the workspace's direction");
}

#[test]
fn test_servers_are_only_dev_dependencies() {
    let deps = workspace_dependencies();
    let violations = deps
        .iter()
        .flat_map(|(krate, dependencies)| {
            dependencies
                .iter()
                .filter(|(dep, kind)| TESTS_ONLY.contains(&dep.as_str()) && kind != "dev")
                .map(move |(dep, kind)| {
                    format!("forbidden edge {krate} -> {dep} ({kind} dependency): tests only")
                })
        })
        .collect();
    assert_none(violations, "test servers outside tests");
}

#[test]
fn only_the_pod_executor_uses_the_kubernetes_client() {
    let deps = workspace_dependencies();
    let violations = deps
        .iter()
        .filter(|(krate, _)| !KUBERNETES_USERS.contains(&krate.as_str()))
        .flat_map(|(krate, dependencies)| {
            dependencies
                .iter()
                .filter(|(dep, kind)| KUBERNETES.contains(&dep.as_str()) && kind != "dev")
                .map(move |(dep, kind)| {
                    format!(
                        "forbidden edge {krate} -> {dep} ({kind} dependency): only {} may use it",
                        KUBERNETES_USERS.join(" and ")
                    )
                })
        })
        .collect();
    assert_none(violations, "the Kubernetes client outside the pod executor");
}

#[test]
fn the_server_reaches_no_scheduler_executor_or_kubernetes() {
    let deps = workspace_dependencies();
    // Every crate the server builds with, and through which workspace crate it came. The
    // server's own dev-dependencies count (its tests must not need a scheduler either); those
    // of the crates it depends on are not built.
    let mut reached: BTreeMap<String, String> = BTreeMap::new();
    let mut todo = vec![SERVER.to_string()];
    while let Some(krate) = todo.pop() {
        for (dep, kind) in deps.get(&krate).into_iter().flatten() {
            if reached.contains_key(dep) || (kind == "dev" && krate != SERVER) {
                continue;
            }
            reached.insert(dep.clone(), krate.clone());
            if deps.contains_key(dep) {
                todo.push(dep.clone());
            }
        }
    }
    let violations = NOT_IN_SERVER
        .iter()
        .filter_map(|forbidden| {
            let through = reached.get(*forbidden)?;
            Some(format!(
                "{SERVER} reaches {forbidden} through the edge {through} -> {forbidden}"
            ))
        })
        .collect();
    assert_none(
        violations,
        "the server must know nothing of scheduling or executors",
    );
}

#[test]
fn workspace_dependencies_have_no_cycle() {
    let deps = workspace_dependencies();
    let edges: BTreeMap<&str, BTreeSet<&str>> = deps
        .iter()
        .map(|(krate, dependencies)| {
            let inside = dependencies
                .iter()
                .filter(|(dep, kind)| kind != "dev" && deps.contains_key(dep))
                .map(|(dep, _)| dep.as_str())
                .collect();
            (krate.as_str(), inside)
        })
        .collect();
    let mut finished = BTreeSet::new();
    for start in edges.keys() {
        let mut path = Vec::new();
        if let Some(cycle) = find_cycle(start, &edges, &mut path, &mut finished) {
            panic!("dependency cycle: {}", cycle.join(" -> "));
        }
    }
}

/// Depth-first search from `krate`; the cycle as a list of crates when one is found.
fn find_cycle<'a>(
    krate: &'a str,
    edges: &BTreeMap<&'a str, BTreeSet<&'a str>>,
    path: &mut Vec<&'a str>,
    finished: &mut BTreeSet<&'a str>,
) -> Option<Vec<&'a str>> {
    if let Some(at) = path.iter().position(|k| *k == krate) {
        let mut cycle = path[at..].to_vec();
        cycle.push(krate);
        return Some(cycle);
    }
    if finished.contains(krate) {
        return None;
    }
    path.push(krate);
    for dep in edges.get(krate).into_iter().flatten() {
        if let Some(cycle) = find_cycle(dep, edges, path, finished) {
            return Some(cycle);
        }
    }
    path.pop();
    finished.insert(krate);
    None
}
