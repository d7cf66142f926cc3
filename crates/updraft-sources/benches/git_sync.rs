//! Syncing a git source of 10,000 DAG files over HTTP (`git http-backend`), beside git
//! itself on the same repository and server: the first sync beside `git clone --depth 1`,
//! an update of one changed file beside `git pull`. Each is repeated and the median
//! reported; prints a table and writes `bench/results/git-sync.json`.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use updraft_sources::SourceDir;
use updraft_sources::config::{GitAuth, GitSpec};
use updraft_sources::git;
use updraft_test_servers::git_http;

const FILES: usize = 10_000;
const TENANTS: usize = 100;
const REPEATS: usize = 5;

fn main() {
    let server = git_http();
    let work = server.root().join("bench");
    build_repository(&work);
    let url = server.url("bench");
    let spec = GitSpec {
        url: url.clone(),
        reference: "main".into(),
        depth: 1,
        auth: GitAuth::None,
    };
    let scratch = tempfile::tempdir().unwrap();

    let fetch_only = timed(|| {
        let repo = git2::Repository::init_bare(scratch.path().join("fetch-only.git")).unwrap();
        let mut options = git2::FetchOptions::new();
        options.depth(1);
        let mut remote = repo.remote_anonymous(&url).unwrap();
        remote
            .fetch(&["+refs/heads/main:refs/fetched"], Some(&mut options), None)
            .unwrap();
    });
    let local = SourceDir::new(scratch.path().join("local"));
    let local_spec = GitSpec {
        url: format!("file://{}", work.display()),
        ..spec.clone()
    };
    let local_first = timed(|| {
        git::sync("bench", &local_spec, &local).unwrap();
    });
    println!(
        "(libgit2 fetch alone over HTTP: {:.1} ms; updraft first sync over file://: {:.1} ms)",
        ms(fetch_only),
        ms(local_first)
    );

    let mut first_updraft = Vec::new();
    let mut first_git = Vec::new();
    for round in 0..REPEATS {
        let dir = SourceDir::new(scratch.path().join(format!("first-{round}")));
        first_updraft.push(timed(|| {
            let synced = git::sync("bench", &spec, &dir).unwrap();
            assert_eq!(synced.files_written, FILES);
        }));
        let clone = scratch.path().join(format!("clone-{round}"));
        first_git.push(timed(|| {
            run(
                Path::new("."),
                &[
                    "clone",
                    "-q",
                    "--depth",
                    "1",
                    "--no-tags",
                    &url,
                    &clone.to_string_lossy(),
                ],
            )
        }));
        fs::remove_dir_all(dir.base()).unwrap();
        if round + 1 < REPEATS {
            fs::remove_dir_all(&clone).unwrap();
        }
    }

    let dir = SourceDir::new(scratch.path().join("incremental"));
    git::sync("bench", &spec, &dir).unwrap();
    let clone = scratch.path().join(format!("clone-{}", REPEATS - 1));
    let mut update_updraft = Vec::new();
    let mut update_git = Vec::new();
    for round in 0..REPEATS {
        fs::write(
            work.join("dags/team-042/dag_00042.yaml"),
            dag_file(42, round + 1),
        )
        .unwrap();
        run(&work, &["commit", "-q", "-am", &format!("change {round}")]);
        update_updraft.push(timed(|| {
            let synced = git::sync("bench", &spec, &dir).unwrap();
            assert_eq!((synced.changed, synced.files_written), (true, 1));
        }));
        update_git.push(timed(|| {
            run(&clone, &["pull", "-q", "--ff-only", "--no-tags"])
        }));
    }

    let rows = [
        (
            "first sync (updraft) vs git clone --depth 1",
            median(first_updraft),
            median(first_git),
        ),
        (
            "one file changed (updraft) vs git pull",
            median(update_updraft),
            median(update_git),
        ),
    ];
    println!("{FILES} DAG files over HTTP (git http-backend), median of {REPEATS}");
    println!(
        "{:<46} {:>12} {:>12} {:>8}",
        "scenario", "updraft ms", "git ms", "ratio"
    );
    for (scenario, updraft, git) in &rows {
        println!(
            "{scenario:<46} {:>12.1} {:>12.1} {:>8.2}",
            ms(*updraft),
            ms(*git),
            updraft.as_secs_f64() / git.as_secs_f64()
        );
    }
    write_results(&rows);
}

fn build_repository(work: &Path) {
    fs::create_dir_all(work).unwrap();
    run(work, &["init", "-q", "-b", "main"]);
    run(work, &["config", "user.email", "bench@example.com"]);
    run(work, &["config", "user.name", "bench"]);
    for i in 0..FILES {
        let path = work.join(format!("dags/team-{:03}/dag_{i:05}.yaml", i % TENANTS));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, dag_file(i, 0)).unwrap();
    }
    run(work, &["add", "-A"]);
    // No background `gc --auto` during the timings; packed as a hosting server keeps it.
    run(work, &["config", "gc.auto", "0"]);
    run(work, &["commit", "-q", "-m", "10,000 DAGs"]);
    run(work, &["gc", "-q"]);
}

fn dag_file(i: usize, version: usize) -> String {
    format!(
        "dag_id: dag_{i:05}\nschedule: \"@daily\"\nstart_date: 2026-01-01\ndescription: version {version}\n\
         tasks:\n  - task_id: extract\n    bash: echo extract {i}\n  - task_id: load\n    bash: echo load {i}\n    upstream: [extract]\n"
    )
}

fn run(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(args)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

fn timed(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn write_results(rows: &[(&str, Duration, Duration)]) {
    let results = serde_json::json!({
        "benchmark": "git_sync",
        "files": FILES,
        "repeats": REPEATS,
        "transport": "http (git http-backend)",
        "rows": rows.iter().map(|(scenario, updraft, git)| serde_json::json!({
            "scenario": scenario,
            "updraft_ms": ms(*updraft),
            "limit_ms": ms(*git),
        })).collect::<Vec<_>>(),
    });
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/results");
    fs::create_dir_all(&folder).unwrap();
    let path = folder.join("git-sync.json");
    fs::write(
        &path,
        serde_json::to_string_pretty(&results).unwrap() + "\n",
    )
    .unwrap();
    println!("written to {}", path.display());
}
