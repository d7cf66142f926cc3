//! DAG sources (`[[sources]]`) through the `updraft` binary: git repositories on this machine
//! (`file://`, built with the `git` command), synced by the running scheduler.
//!
//! - GO Inc.'s layout from one repository mounted at the root (`dags/<tenant>/`,
//!   `templates/<tenant>/<app>/`) beside a team's own repository mounted at its tenant;
//!   `sources list` and `sources sync` against the running scheduler; a sync that fails (the
//!   repository gone) keeps the last good tree and its DAGs running.
//! - A run pinned to revision A keeps A's pod template and A's script after B is synced while
//!   it runs; a run started after the sync reads B.
//! - A git host's webhook (GitLab's token, from `webhook_secret_env`) makes `standalone` sync
//!   its source; a wrong token is refused.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::http::api_address;
use common::{DEFAULT_TIMEOUT, Home, wait_until};
use serde_json::Value;
use updraft_kube_fake::FakeKube;

/// A git working repository on branch `main`, committed to with the `git` command.
struct Repo {
    path: PathBuf,
}

impl Repo {
    fn new(path: PathBuf) -> Repo {
        std::fs::create_dir_all(&path).unwrap();
        let repo = Repo { path };
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(&self.path)
            .output()
            .expect("running git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn write(&self, rel: &str, text: &str) -> &Repo {
        let path = self.path.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        self
    }

    /// Commits everything; returns the commit's sha.
    fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }

    fn url(&self) -> String {
        format!("file://{}", self.path.display())
    }
}

fn write_config(home: &Home, text: &str) {
    std::fs::write(home.path().join("updraft.toml"), text).unwrap();
}

fn source_entry(name: &str, repo: &Repo, extra: &str) -> String {
    format!(
        "[[sources]]\nname = \"{name}\"\ngit = \"{}\"\nref = \"main\"\nsubdir = \"dags\"\nperiod = \"1h\"\n{extra}\n",
        repo.url()
    )
}

fn sources(home: &Home) -> Vec<Value> {
    match home.json(&["sources", "list"]) {
        Value::Array(rows) => rows,
        other => panic!("sources list: {other}"),
    }
}

fn source(home: &Home, name: &str) -> Option<Value> {
    sources(home).into_iter().find(|s| s["name"] == name)
}

fn wait_revision(home: &Home, name: &str, revision: &str) {
    wait_until(
        &format!("source {name} at {revision}"),
        DEFAULT_TIMEOUT,
        || source(home, name).filter(|s| s["revision"] == revision),
    );
}

fn dag<'a>(dags: &'a [Value], dag_id: &str) -> &'a Value {
    dags.iter()
        .find(|d| d["dag_id"] == dag_id)
        .unwrap_or_else(|| panic!("no DAG {dag_id} in {dags:?}"))
}

#[test]
fn sources_at_the_root_and_at_a_tenant_sync_through_the_scheduler_and_survive_a_failing_sync() {
    let home = Home::new();
    let platform = Repo::new(home.path().join("repos/platform"));
    platform
        .write(
            "dags/team_a/etl.yaml",
            "dag_id: etl\ntasks:\n  - task_id: t\n    bash: echo etl ran\n",
        )
        .write(
            "dags/team_b/report.yaml",
            "dag_id: report\ntasks:\n  - task_id: t\n    bash: echo report\n",
        )
        .write(
            "templates/team_a/app/pod.yaml",
            "apiVersion: v1\nkind: Pod\n",
        );
    let first = platform.commit("first");
    let team = Repo::new(home.path().join("repos/team-c"));
    team.write(
        "dags/hello.yaml",
        "dag_id: hello\ntasks:\n  - task_id: t\n    bash: echo hello\n",
    );
    let team_rev = team.commit("hello");
    write_config(
        &home,
        &format!(
            "{}{}",
            source_entry("platform", &platform, ""),
            source_entry("team-c", &team, "tenant = \"team_c\"")
        ),
    );
    let _scheduler = home.start_scheduler();
    wait_revision(&home, "platform", &first);
    wait_revision(&home, "team-c", &team_rev);
    home.wait_dag_listed("hello");
    home.wait_dag_listed("etl");
    let dags = home.dags_list();
    assert_eq!(dag(&dags, "etl")["tenant"], "team_a");
    assert_eq!(dag(&dags, "report")["tenant"], "team_b");
    assert_eq!(dag(&dags, "hello")["tenant"], "team_c");
    assert_eq!(dag(&dags, "hello")["fileloc"], "team_c/hello.yaml");
    let row = source(&home, "team-c").unwrap();
    assert_eq!(row["kind"], "git");
    assert_eq!(row["tenant"], "team_c");
    assert_eq!(row["failures"], 0);
    assert!(row["error"].is_null(), "{row}");

    // A new commit, synced on request through the running scheduler.
    platform.write(
        "dags/team_a/more.yaml",
        "dag_id: more\ntasks:\n  - task_id: t\n    bash: echo more\n",
    );
    let second = platform.commit("more");
    let synced = home
        .ok(&["sources", "sync", "platform", "-o", "json"])
        .json();
    assert_eq!(synced[0]["revision"], second, "{synced}");
    home.wait_dag_listed("more");

    // The repository disappears: the sync fails, the last good tree stays in use.
    let moved = home.path().join("repos/platform-away");
    std::fs::rename(&platform.path, &moved).unwrap();
    let failed = home.run(&["sources", "sync", "platform", "-o", "json"]);
    assert_eq!(failed.code(), Some(1), "{failed}");
    let row = failed.json()[0].clone();
    assert_eq!(row["failures"], 1, "{row}");
    assert_eq!(row["revision"], second, "{row}");
    let error = row["error"].as_str().unwrap_or_else(|| panic!("{row}"));
    assert!(error.contains("platform"), "{error}");
    let run_id = home.trigger("etl", None);
    assert_eq!(home.wait_run_finished("etl", &run_id), "success");
    assert!(home.logs("etl", &run_id, "t", None).contains("etl ran"));
    assert!(home.dags_list().iter().any(|d| d["dag_id"] == "more"));

    // Back again: the next sync succeeds and clears the failures.
    std::fs::rename(&moved, &platform.path).unwrap();
    let row = home
        .ok(&["sources", "sync", "platform", "-o", "json"])
        .json()[0]
        .clone();
    assert_eq!(row["failures"], 0, "{row}");
    assert!(row["error"].is_null(), "{row}");
}

/// A home whose scheduler reaches the fake cluster through a kubeconfig.
fn cluster_home(rt: &tokio::runtime::Runtime) -> (Home, FakeKube) {
    let fake = rt.block_on(FakeKube::start());
    let home = Home::new();
    let kubeconfig = home.path().join("kubeconfig.yaml");
    fake.write_kubeconfig(&kubeconfig).unwrap();
    let home = home
        .with_env(
            "UPDRAFT__KUBERNETES__KUBECONFIG",
            kubeconfig.to_str().unwrap(),
        )
        .with_env("UPDRAFT__KUBERNETES__ENABLED", "true")
        .with_env("UPDRAFT__KUBERNETES__DELETE_GRACE", "0s");
    (home, fake)
}

fn pod_template(says: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n    - name: base\n      image: busybox\n      command: [\"sh\", \"-c\", \"echo template {says}\"]\n"
    )
}

fn pinned_dag(flag: &Path) -> String {
    format!(
        r#"dag_id: pinned
tasks:
  - task_id: wait
    bash: 'while [ ! -e "{}" ]; do sleep 0.05; done'
  - task_id: script
    upstream: [wait]
    bash: 'sh "$UPDRAFT_DAGS_FOLDER/team_a/step.sh" && echo "version $UPDRAFT_BUNDLE_VERSION"'
  - task_id: deploy
    upstream: [wait]
    pod:
      template: app/pod.yaml
"#,
        flag.display()
    )
}

#[test]
fn a_run_pinned_to_revision_a_keeps_its_template_and_script_after_b_is_synced() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (home, _fake) = cluster_home(&rt);
    let flag = home.path().join("go");
    let repo = Repo::new(home.path().join("repos/platform"));
    repo.write("dags/team_a/pinned.yaml", &pinned_dag(&flag))
        .write("dags/team_a/step.sh", "echo script A\n")
        .write("templates/team_a/app/pod.yaml", &pod_template("A"));
    let rev_a = repo.commit("A");
    write_config(&home, &source_entry("platform", &repo, ""));
    let _scheduler = home.start_scheduler();
    wait_revision(&home, "platform", &rev_a);
    home.wait_dag_listed("pinned");

    let run_a = home.trigger("pinned", None);
    home.wait_task_state("pinned", &run_a, "wait", "running");
    repo.write("dags/team_a/step.sh", "echo script B\n")
        .write("templates/team_a/app/pod.yaml", &pod_template("B"));
    let rev_b = repo.commit("B");
    let synced = home
        .ok(&["sources", "sync", "platform", "-o", "json"])
        .json();
    assert_eq!(synced[0]["revision"], rev_b, "{synced}");
    std::fs::write(&flag, "").unwrap();
    assert_eq!(home.wait_run_finished("pinned", &run_a), "success");
    let script = home.logs("pinned", &run_a, "script", None);
    assert!(script.contains("script A"), "{script}");
    assert!(script.contains(&format!("version {rev_a}")), "{script}");
    let deploy = home.logs("pinned", &run_a, "deploy", None);
    assert!(deploy.contains("template A"), "{deploy}");

    // A run started after the sync reads B.
    let run_b = home.trigger("pinned", None);
    assert_eq!(home.wait_run_finished("pinned", &run_b), "success");
    let script = home.logs("pinned", &run_b, "script", None);
    assert!(script.contains("script B"), "{script}");
    let deploy = home.logs("pinned", &run_b, "deploy", None);
    assert!(deploy.contains("template B"), "{deploy}");
}

#[test]
fn sources_sync_here_needs_no_scheduler_and_dags_commands_read_the_synced_tree() {
    let home = Home::new();
    let repo = Repo::new(home.path().join("repos/platform"));
    repo.write(
        "dags/team_a/etl.yaml",
        "dag_id: etl\ntasks:\n  - task_id: t\n    bash: echo etl\n",
    );
    let rev = repo.commit("first");
    // A DAG in the plain folder is not read once sources replace it.
    home.write_dag("team_z/plain.yaml", "dag_id: plain\ntasks: []\n");
    write_config(&home, &source_entry("platform", &repo, ""));
    let unknown = home.fails(&["sources", "sync", "nope", "--here"]);
    assert!(unknown.stderr.contains("nope"), "{unknown}");
    let synced = home.json(&["sources", "sync", "--here"]);
    assert_eq!(synced[0]["revision"], rev, "{synced}");
    assert_eq!(source(&home, "platform").unwrap()["revision"], rev);
    let dags = home.dags_list();
    assert_eq!(dag(&dags, "etl")["tenant"], "team_a");
    assert!(dags.iter().all(|d| d["dag_id"] != "plain"), "{dags:?}");

    write_config(
        &home,
        "[[sources]]\nname = \"bad\"\ngit = \"file:///nowhere\"\nperiod = \"soon\"\n",
    );
    let refused = home.fails(&["dags", "list"]);
    assert!(refused.stderr.contains("bad"), "{refused}");
    assert!(refused.stderr.contains("period"), "{refused}");
}

/// `POST /api/v2/sources/{name}/sync` as GitLab's webhook sends it: no user, the secret token
/// in `X-Gitlab-Token`. The status.
fn gitlab_push(address: &str, name: &str, token: &str) -> u16 {
    use std::io::{Read as _, Write as _};
    let body = r#"{"object_kind":"push","ref":"refs/heads/main"}"#;
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "POST /api/v2/sources/{name}/sync HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nX-Gitlab-Token: {token}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.split(' ').nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_git_hosts_webhook_makes_standalone_sync_its_source() {
    let home = Home::new().with_env("PLATFORM_WEBHOOK", "hook-secret-4711");
    let platform = Repo::new(home.path().join("repos/platform"));
    platform.write(
        "dags/team_a/etl.yaml",
        "dag_id: etl\ntasks:\n  - task_id: t\n    bash: echo etl\n",
    );
    let first = platform.commit("first");
    write_config(
        &home,
        &source_entry(
            "platform",
            &platform,
            "webhook_secret_env = \"PLATFORM_WEBHOOK\"",
        ),
    );
    let service = home.start_standalone();
    let api = api_address(&service);
    wait_revision(&home, "platform", &first);
    platform.write(
        "dags/team_a/more.yaml",
        "dag_id: more\ntasks:\n  - task_id: t\n    bash: echo more\n",
    );
    let second = platform.commit("more");

    assert_eq!(gitlab_push(&api, "platform", "a-wrong-token"), 401);
    // The period is an hour: only the webhook's request can bring the new commit in.
    assert_eq!(gitlab_push(&api, "platform", "hook-secret-4711"), 202);
    wait_revision(&home, "platform", &second);
    home.wait_dag_listed("more");
}
