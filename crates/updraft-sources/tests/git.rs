//! Git sources against real repositories built with the `git` command: over `file://`, over
//! HTTP through `git http-backend` with basic auth, and over SSH through Debian's `sshd`.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use updraft_sources::config::{GitAuth, GitSpec, TokenSource};
use updraft_sources::git;
use updraft_sources::{SourceDir, SourceError};
use updraft_test_servers::{git_http, sshd};

/// A working repository the tests commit to, served as the remote.
struct Upstream {
    work: PathBuf,
}

impl Upstream {
    fn new(at: &Path) -> Upstream {
        fs::create_dir_all(at).unwrap();
        let upstream = Upstream {
            work: at.to_path_buf(),
        };
        upstream.git(&["init", "-q", "-b", "main"]);
        upstream.git(&["config", "user.email", "dev@example.com"]);
        upstream.git(&["config", "user.name", "dev"]);
        // Served over HTTP and SSH as well: let fetches see the checked-out branch move.
        upstream.git(&["config", "uploadpack.allowAnySHA1InWant", "true"]);
        upstream
    }

    fn git(&self, args: &[&str]) -> String {
        let output = Command::new("git")
            .args(args)
            .current_dir(&self.work)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    }

    fn write(&self, rel: &str, text: &str) {
        let path = self.work.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    /// Commits everything and returns the commit's sha.
    fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }

    fn url(&self) -> String {
        format!("file://{}", self.work.display())
    }
}

fn spec(url: &str) -> GitSpec {
    GitSpec {
        url: url.to_string(),
        reference: "main".into(),
        depth: 1,
        auth: GitAuth::None,
    }
}

fn read(tree: &Path, rel: &str) -> String {
    fs::read_to_string(tree.join(rel)).unwrap()
}

fn current(dir: &SourceDir) -> (String, PathBuf) {
    dir.current().expect("a current tree")
}

#[test]
fn file_sync_writes_the_tree_and_links_unchanged_files() {
    let temp = tempfile::tempdir().unwrap();
    let upstream = Upstream::new(&temp.path().join("upstream"));
    upstream.write("dags/team-a/etl.yaml", "dag_id: etl\n");
    upstream.write("dags/team-a/report.yaml", "dag_id: report\n");
    upstream.write("templates/team-a/app/pod.yaml", "kind: Pod\n");
    upstream.write("scripts/run.sh", "#!/bin/sh\necho hi\n");
    fs::set_permissions(
        upstream.work.join("scripts/run.sh"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let first = upstream.commit("first");
    let dir = SourceDir::new(temp.path().join("sources/platform"));
    let synced = git::sync("platform", &spec(&upstream.url()), &dir).unwrap();
    assert_eq!(synced.revision, first);
    assert!(synced.changed);
    assert_eq!(synced.files_written, 4);
    let (revision, tree) = current(&dir);
    assert_eq!(revision, first);
    assert_eq!(read(&tree, "dags/team-a/etl.yaml"), "dag_id: etl\n");
    assert_eq!(read(&tree, "templates/team-a/app/pod.yaml"), "kind: Pod\n");
    assert_eq!(
        fs::metadata(tree.join("scripts/run.sh")).unwrap().mode() & 0o111,
        0o111
    );
    assert_eq!(
        fs::metadata(tree.join("dags/team-a/etl.yaml"))
            .unwrap()
            .mode()
            & 0o111,
        0
    );

    let again = git::sync("platform", &spec(&upstream.url()), &dir).unwrap();
    assert_eq!(
        (again.revision.as_str(), again.changed, again.files_written),
        (first.as_str(), false, 0)
    );

    upstream.write("dags/team-a/etl.yaml", "dag_id: etl\nschedule: '@daily'\n");
    let second = upstream.commit("second");
    let synced = git::sync("platform", &spec(&upstream.url()), &dir).unwrap();
    assert_eq!(
        (
            synced.revision.as_str(),
            synced.changed,
            synced.files_written
        ),
        (second.as_str(), true, 1)
    );
    let (_, new_tree) = current(&dir);
    assert_eq!(
        read(&new_tree, "dags/team-a/etl.yaml"),
        "dag_id: etl\nschedule: '@daily'\n"
    );
    let inode = |t: &Path, rel: &str| fs::metadata(t.join(rel)).unwrap().ino();
    assert_eq!(
        inode(&tree, "dags/team-a/report.yaml"),
        inode(&new_tree, "dags/team-a/report.yaml")
    );
    assert_ne!(
        inode(&tree, "dags/team-a/etl.yaml"),
        inode(&new_tree, "dags/team-a/etl.yaml")
    );
    // The older tree is untouched.
    assert_eq!(read(&tree, "dags/team-a/etl.yaml"), "dag_id: etl\n");
}

#[test]
fn links_out_of_the_tree_are_not_written() {
    let temp = tempfile::tempdir().unwrap();
    let upstream = Upstream::new(&temp.path().join("upstream"));
    upstream.write("dags/a.yaml", "dag_id: a\n");
    let link = |name: &str, target: &str| {
        std::os::unix::fs::symlink(target, upstream.work.join(name)).unwrap()
    };
    link("dags/inside.yaml", "a.yaml");
    link("dags/up.yaml", "../../../../etc/passwd");
    link("dags/absolute.yaml", "/etc/passwd");
    link("here", ".");
    link("dags/through.yaml", "../here/..");
    upstream.commit("links");
    let dir = SourceDir::new(temp.path().join("sources/s"));
    git::sync("s", &spec(&upstream.url()), &dir).unwrap();
    let (_, tree) = current(&dir);
    assert_eq!(read(&tree, "dags/inside.yaml"), "dag_id: a\n");
    for gone in ["dags/up.yaml", "dags/absolute.yaml", "dags/through.yaml"] {
        assert!(
            fs::symlink_metadata(tree.join(gone)).is_err(),
            "{gone} was written"
        );
    }
}

#[test]
fn force_push_is_followed_and_a_deleted_branch_keeps_the_last_tree() {
    let temp = tempfile::tempdir().unwrap();
    let upstream = Upstream::new(&temp.path().join("upstream"));
    upstream.write("dags/a.yaml", "v: 1\n");
    upstream.commit("one");
    upstream.write("dags/a.yaml", "v: 2\n");
    upstream.commit("two");
    let dir = SourceDir::new(temp.path().join("sources/s"));
    git::sync("s", &spec(&upstream.url()), &dir).unwrap();
    upstream.git(&["reset", "-q", "--hard", "HEAD~1"]);
    upstream.write("dags/a.yaml", "v: rewritten\n");
    let rewritten = upstream.commit("rewritten history");
    let synced = git::sync("s", &spec(&upstream.url()), &dir).unwrap();
    assert_eq!(synced.revision, rewritten);
    assert_eq!(read(&current(&dir).1, "dags/a.yaml"), "v: rewritten\n");

    upstream.git(&["checkout", "-q", "-b", "other"]);
    upstream.git(&["branch", "-q", "-D", "main"]);
    let error = git::sync("s", &spec(&upstream.url()), &dir).unwrap_err();
    assert!(
        error.to_string().contains("no branch or tag \"main\""),
        "{error}"
    );
    assert_eq!(current(&dir).0, rewritten);
    assert_eq!(read(&current(&dir).1, "dags/a.yaml"), "v: rewritten\n");
}

#[test]
fn a_repository_gone_fails_and_keeps_the_last_tree() {
    let temp = tempfile::tempdir().unwrap();
    let upstream = Upstream::new(&temp.path().join("upstream"));
    upstream.write("dags/a.yaml", "v: 1\n");
    let first = upstream.commit("one");
    let dir = SourceDir::new(temp.path().join("sources/s"));
    git::sync("s", &spec(&upstream.url()), &dir).unwrap();
    fs::rename(&upstream.work, temp.path().join("moved")).unwrap();
    let error = git::sync("s", &spec(&upstream.url()), &dir).unwrap_err();
    assert!(matches!(error, SourceError::Sync { .. }), "{error}");
    assert_eq!(current(&dir).0, first);
    assert_eq!(read(&current(&dir).1, "dags/a.yaml"), "v: 1\n");
}

#[test]
fn tags_and_commits_as_ref() {
    let temp = tempfile::tempdir().unwrap();
    let upstream = Upstream::new(&temp.path().join("upstream"));
    upstream.write("dags/a.yaml", "v: 1\n");
    let first = upstream.commit("one");
    upstream.git(&["tag", "-a", "v1", "-m", "release 1"]);
    upstream.write("dags/a.yaml", "v: 2\n");
    let second = upstream.commit("two");
    let dir = SourceDir::new(temp.path().join("sources/s"));
    let mut tagged = spec(&upstream.url());
    tagged.reference = "v1".into();
    assert_eq!(git::sync("s", &tagged, &dir).unwrap().revision, first);
    let mut pinned = spec(&upstream.url());
    pinned.reference = second.clone();
    pinned.depth = 0;
    assert_eq!(git::sync("s", &pinned, &dir).unwrap().revision, second);
    assert_eq!(read(&current(&dir).1, "dags/a.yaml"), "v: 2\n");
}

#[test]
fn a_pruned_older_revision_is_restored_without_becoming_current() {
    let temp = tempfile::tempdir().unwrap();
    let upstream = Upstream::new(&temp.path().join("upstream"));
    upstream.write("templates/t/app/pod.yaml", "image: a\n");
    let a = upstream.commit("A");
    let dir = SourceDir::new(temp.path().join("sources/s"));
    git::sync("s", &spec(&upstream.url()), &dir).unwrap();
    upstream.write("templates/t/app/pod.yaml", "image: b\n");
    let b = upstream.commit("B");
    git::sync("s", &spec(&upstream.url()), &dir).unwrap();
    dir.prune(&HashSet::new()).unwrap();
    assert!(dir.tree(&a).is_none());
    git::restore("s", &dir, &a).unwrap();
    assert_eq!(
        read(&dir.tree(&a).unwrap(), "templates/t/app/pod.yaml"),
        "image: a\n"
    );
    assert_eq!(current(&dir).0, b);
    let unknown = "0123456789012345678901234567890123456789";
    assert!(matches!(
        git::restore("s", &dir, unknown),
        Err(SourceError::MissingRevision { .. })
    ));
}

#[test]
fn a_damaged_repository_is_recreated() {
    let temp = tempfile::tempdir().unwrap();
    let upstream = Upstream::new(&temp.path().join("upstream"));
    upstream.write("dags/a.yaml", "v: 1\n");
    upstream.commit("one");
    let dir = SourceDir::new(temp.path().join("sources/s"));
    git::sync("s", &spec(&upstream.url()), &dir).unwrap();
    // What a sync killed at the wrong moment can leave: locks, a broken HEAD, lost objects.
    fs::write(dir.repo_path().join("shallow.lock"), "").unwrap();
    fs::write(dir.repo_path().join("HEAD"), "garbage").unwrap();
    upstream.write("dags/a.yaml", "v: 2\n");
    let second = upstream.commit("two");
    assert_eq!(
        git::sync("s", &spec(&upstream.url()), &dir)
            .unwrap()
            .revision,
        second
    );
    fs::remove_dir_all(dir.repo_path().join("objects")).unwrap();
    fs::create_dir(dir.repo_path().join("objects")).unwrap();
    upstream.write("dags/a.yaml", "v: 3\n");
    let third = upstream.commit("three");
    assert_eq!(
        git::sync("s", &spec(&upstream.url()), &dir)
            .unwrap()
            .revision,
        third
    );
    assert_eq!(read(&current(&dir).1, "dags/a.yaml"), "v: 3\n");
}

#[test]
fn a_missing_token_fails_naming_the_setting() {
    let temp = tempfile::tempdir().unwrap();
    let dir = SourceDir::new(temp.path().join("sources/s"));
    let mut with_token = spec("https://git.invalid/r.git");
    with_token.auth = GitAuth::Token {
        username: "ci".into(),
        token: TokenSource::File(temp.path().join("no-such-token")),
    };
    let error = git::sync("s", &with_token, &dir).unwrap_err().to_string();
    assert!(
        error.contains("token_file") && error.contains("no-such-token"),
        "{error}"
    );
}

fn token_spec(url: &str, token_file: &Path) -> GitSpec {
    GitSpec {
        url: url.to_string(),
        reference: "main".into(),
        depth: 1,
        auth: GitAuth::Token {
            username: "ci".into(),
            token: TokenSource::File(token_file.to_path_buf()),
        },
    }
}

#[test]
fn http_basic_auth_rereads_a_rotated_token_and_keeps_the_last_tree_when_refused() {
    let server = git_http();
    let upstream = Upstream::new(&server.root().join("rotated"));
    upstream.write("dags/a.yaml", "v: 1\n");
    let first = upstream.commit("one");
    server.require_auth("rotated", "ci", "tok-first-8c1f2e");
    let temp = tempfile::tempdir().unwrap();
    let token_file = temp.path().join("token");
    fs::write(&token_file, "tok-first-8c1f2e\n").unwrap();
    let spec = token_spec(&server.url("rotated"), &token_file);
    let dir = SourceDir::new(temp.path().join("sources/s"));
    assert_eq!(git::sync("s", &spec, &dir).unwrap().revision, first);

    // The server moves to a new token; the file still holds the old one.
    server.require_auth("rotated", "ci", "tok-second-77ad90");
    upstream.write("dags/a.yaml", "v: 2\n");
    let second = upstream.commit("two");
    let error = git::sync("s", &spec, &dir).unwrap_err().to_string();
    assert!(error.contains("refused the credentials"), "{error}");
    assert!(
        !error.contains("tok-first") && !error.contains("tok-second"),
        "{error}"
    );
    assert_eq!(current(&dir).0, first);
    assert_eq!(read(&current(&dir).1, "dags/a.yaml"), "v: 1\n");

    // The file is rotated: the next sync reads it again.
    fs::write(&token_file, "tok-second-77ad90\n").unwrap();
    assert_eq!(git::sync("s", &spec, &dir).unwrap().revision, second);
    assert_eq!(read(&current(&dir).1, "dags/a.yaml"), "v: 2\n");

    let error = git::sync("s", &self::spec(&server.url("rotated")), &dir)
        .unwrap_err()
        .to_string();
    assert!(error.contains("set token_file or token_env"), "{error}");
}

/// Set in the child process of the environment token test: `<url>\n<source folder>`; the
/// child is started with the token in its environment (setting a variable in this
/// multi-threaded process would race with libgit2 reading the environment).
const ENV_TOKEN_CHILD: &str = "UPDRAFT_TEST_GIT_ENV_TOKEN_CHILD";

#[test]
fn http_token_from_the_environment() {
    let token_spec = |url: &str| {
        let mut spec = spec(url);
        spec.auth = GitAuth::Token {
            username: "ci".into(),
            token: TokenSource::Env("UPDRAFT_TEST_GIT_TOKEN".into()),
        };
        spec
    };
    if let Ok(job) = std::env::var(ENV_TOKEN_CHILD) {
        let (url, dir) = job.split_once('\n').unwrap();
        git::sync("s", &token_spec(url), &SourceDir::new(dir)).unwrap();
        return;
    }
    let server = git_http();
    let upstream = Upstream::new(&server.root().join("env-token"));
    upstream.write("dags/a.yaml", "v: 1\n");
    let first = upstream.commit("one");
    server.require_auth("env-token", "ci", "tok-env-3b9e41");
    let temp = tempfile::tempdir().unwrap();
    let dir = SourceDir::new(temp.path().join("sources/s"));
    let error = git::sync("s", &token_spec(&server.url("env-token")), &dir).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("token_env UPDRAFT_TEST_GIT_TOKEN is not set"),
        "{error}"
    );
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "http_token_from_the_environment"])
        .env(
            ENV_TOKEN_CHILD,
            format!("{}\n{}", server.url("env-token"), dir.base().display()),
        )
        .env("UPDRAFT_TEST_GIT_TOKEN", "tok-env-3b9e41")
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(
        status.success(),
        "the sync with the token from the environment failed"
    );
    assert_eq!(current(&dir).0, first);
}

fn git_dir(repo: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

#[test]
fn http_fetches_are_shallow_and_follow_force_pushes() {
    let server = git_http();
    let upstream = Upstream::new(&server.root().join("shallow"));
    for i in 0..5 {
        upstream.write("dags/a.yaml", &format!("v: {i}\n"));
        upstream.commit(&format!("commit {i}"));
    }
    let temp = tempfile::tempdir().unwrap();
    let dir = SourceDir::new(temp.path().join("sources/shallow"));
    git::sync("s", &spec(&server.url("shallow")), &dir).unwrap();
    let repo = dir.repo_path();
    assert_eq!(
        git_dir(&repo, &["rev-parse", "--is-shallow-repository"]),
        "true"
    );
    assert_eq!(
        git_dir(&repo, &["rev-list", "--count", "refs/updraft/current"]),
        "1"
    );

    upstream.git(&["reset", "-q", "--hard", "HEAD~2"]);
    upstream.write("dags/a.yaml", "v: forced\n");
    let forced = upstream.commit("force-pushed");
    assert_eq!(
        git::sync("s", &spec(&server.url("shallow")), &dir)
            .unwrap()
            .revision,
        forced
    );
    assert_eq!(read(&current(&dir).1, "dags/a.yaml"), "v: forced\n");
    assert_eq!(
        git_dir(&repo, &["rev-list", "--count", "refs/updraft/current"]),
        "1"
    );

    let by_sha = SourceDir::new(temp.path().join("sources/by-sha"));
    let mut pinned = spec(&server.url("shallow"));
    pinned.reference = forced.clone();
    assert_eq!(git::sync("s", &pinned, &by_sha).unwrap().revision, forced);
    assert_eq!(
        git_dir(
            &by_sha.repo_path(),
            &["rev-parse", "--is-shallow-repository"]
        ),
        "true"
    );

    let full = SourceDir::new(temp.path().join("sources/full"));
    let mut whole = spec(&server.url("shallow"));
    whole.depth = 0;
    git::sync("s", &whole, &full).unwrap();
    assert_eq!(
        git_dir(&full.repo_path(), &["rev-parse", "--is-shallow-repository"]),
        "false"
    );
    assert_eq!(
        git_dir(
            &full.repo_path(),
            &["rev-list", "--count", "refs/updraft/current"]
        ),
        "4"
    );
}

#[test]
fn http_repository_gone_or_branch_deleted_keeps_the_last_tree() {
    let server = git_http();
    let upstream = Upstream::new(&server.root().join("vanishing"));
    upstream.write("dags/a.yaml", "v: 1\n");
    let first = upstream.commit("one");
    let temp = tempfile::tempdir().unwrap();
    let dir = SourceDir::new(temp.path().join("sources/s"));
    git::sync("s", &spec(&server.url("vanishing")), &dir).unwrap();

    upstream.git(&["checkout", "-q", "-b", "other"]);
    upstream.git(&["branch", "-q", "-D", "main"]);
    let error = git::sync("s", &spec(&server.url("vanishing")), &dir)
        .unwrap_err()
        .to_string();
    assert!(error.contains("no branch or tag \"main\""), "{error}");
    assert_eq!(current(&dir).0, first);

    fs::rename(&upstream.work, temp.path().join("taken-away")).unwrap();
    let error = git::sync("s", &spec(&server.url("vanishing")), &dir).unwrap_err();
    assert!(matches!(error, SourceError::Sync { .. }), "{error}");
    assert_eq!(current(&dir).0, first);
    assert_eq!(read(&current(&dir).1, "dags/a.yaml"), "v: 1\n");
}

fn ssh_spec(url: &str, known_hosts: Option<PathBuf>, check_host_key: bool) -> GitSpec {
    GitSpec {
        url: url.to_string(),
        reference: "main".into(),
        depth: 1,
        auth: GitAuth::Ssh {
            key_file: sshd().client_key(),
            known_hosts_file: known_hosts,
            check_host_key,
        },
    }
}

fn ssh_upstream(temp: &Path) -> (Upstream, String) {
    let upstream = Upstream::new(&temp.join("upstream"));
    upstream.write("dags/a.yaml", "over: ssh\n");
    let revision = upstream.commit("one");
    (upstream, revision)
}

#[test]
fn ssh_with_a_key_and_known_hosts_plain_or_hashed() {
    let server = sshd();
    let temp = tempfile::tempdir().unwrap();
    let (upstream, revision) = ssh_upstream(temp.path());
    let url = server.url(&upstream.work);
    for (n, known_hosts) in [server.known_hosts(), server.hashed_known_hosts()]
        .into_iter()
        .enumerate()
    {
        let dir = SourceDir::new(temp.path().join(format!("sources/s{n}")));
        let synced = git::sync("s", &ssh_spec(&url, Some(known_hosts), true), &dir).unwrap();
        assert_eq!(synced.revision, revision);
        assert_eq!(read(&current(&dir).1, "dags/a.yaml"), "over: ssh\n");
    }
}

#[test]
fn ssh_refuses_a_wrong_or_unknown_host_key_unless_checking_is_off() {
    let server = sshd();
    let temp = tempfile::tempdir().unwrap();
    let (upstream, revision) = ssh_upstream(temp.path());
    let url = server.url(&upstream.work);
    let dir = SourceDir::new(temp.path().join("sources/s"));
    let error = git::sync(
        "s",
        &ssh_spec(&url, Some(server.wrong_known_hosts()), true),
        &dir,
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("does not match known_hosts_file"), "{error}");
    assert!(dir.current().is_none());

    let empty = temp.path().join("empty_known_hosts");
    fs::write(&empty, "").unwrap();
    let error = git::sync("s", &ssh_spec(&url, Some(empty), true), &dir)
        .unwrap_err()
        .to_string();
    assert!(error.contains("is not in known_hosts_file"), "{error}");
    assert!(dir.current().is_none());

    let synced = git::sync(
        "s",
        &ssh_spec(&url, Some(server.wrong_known_hosts()), false),
        &dir,
    )
    .unwrap();
    assert_eq!(synced.revision, revision);
}

#[test]
fn ssh_with_a_key_the_server_does_not_know_gives_up() {
    let server = sshd();
    let temp = tempfile::tempdir().unwrap();
    let (upstream, _) = ssh_upstream(temp.path());
    let stranger = temp.path().join("stranger");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&stranger)
        .status()
        .unwrap();
    assert!(status.success());
    let mut spec = ssh_spec(
        &server.url(&upstream.work),
        Some(server.known_hosts()),
        true,
    );
    spec.auth = GitAuth::Ssh {
        key_file: stranger,
        known_hosts_file: Some(server.known_hosts()),
        check_host_key: true,
    };
    let dir = SourceDir::new(temp.path().join("sources/s"));
    let error = git::sync("s", &spec, &dir).unwrap_err().to_string();
    assert!(error.contains("refused the credentials"), "{error}");
    assert!(dir.current().is_none());
}

/// Set in the child process of the killed-sync test: `<url>\n<source folder>`.
const CHILD_SYNC: &str = "UPDRAFT_TEST_GIT_CHILD_SYNC";

#[test]
fn a_sync_killed_while_fetching_leaves_the_last_tree_and_the_next_sync_works() {
    if let Ok(job) = std::env::var(CHILD_SYNC) {
        let (url, dir) = job.split_once('\n').unwrap();
        let _ = git::sync("s", &spec(url), &SourceDir::new(dir));
        return;
    }
    let server = git_http();
    let upstream = Upstream::new(&server.root().join("killed"));
    upstream.write("dags/a.yaml", "v: small\n");
    let first = upstream.commit("small");
    let temp = tempfile::tempdir().unwrap();
    let dir = SourceDir::new(temp.path().join("sources/s"));
    git::sync("s", &spec(&server.url("killed")), &dir).unwrap();

    // About 12 MB that does not compress, served 16 KiB every 5 ms: seconds of fetching.
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for i in 0..3000 {
        let bytes: Vec<u8> = (0..4096)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let path = upstream.work.join(format!("data/{:02}/{i}.bin", i % 50));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    }
    upstream.write("dags/a.yaml", "v: big\n");
    let big = upstream.commit("big");
    server.throttle("killed", std::time::Duration::from_millis(5));

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_sync_killed_while_fetching_leaves_the_last_tree_and_the_next_sync_works",
        ])
        .env(
            CHILD_SYNC,
            format!("{}\n{}", server.url("killed"), dir.base().display()),
        )
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let packs = dir.repo_path().join("objects/pack");
    let receiving = || {
        fs::read_dir(&packs)
            .into_iter()
            .flatten()
            .flatten()
            .any(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                !name.ends_with(".idx")
                    && !name.ends_with(".pack")
                    && entry.metadata().is_ok_and(|m| m.len() > 0)
            })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !receiving() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child sync ended before it was killed"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the child sync never started receiving"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    assert_eq!(current(&dir).0, first);
    assert_eq!(read(&current(&dir).1, "dags/a.yaml"), "v: small\n");
    assert!(dir.tree(&big).is_none());

    server.throttle("killed", std::time::Duration::ZERO);
    let synced = git::sync("s", &spec(&server.url("killed")), &dir).unwrap();
    assert_eq!(synced.revision, big);
    let (_, tree) = current(&dir);
    assert_eq!(read(&tree, "dags/a.yaml"), "v: big\n");
    assert_eq!(
        fs::metadata(tree.join("data/07/2957.bin")).unwrap().len(),
        4096
    );
}

#[test]
fn the_repository_does_not_grow_without_bound() {
    let temp = tempfile::tempdir().unwrap();
    let upstream = Upstream::new(&temp.path().join("upstream"));
    let dir = SourceDir::new(temp.path().join("sources/s"));
    let packs = |dir: &SourceDir| {
        fs::read_dir(dir.repo_path().join("objects/pack"))
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|ext| ext == "pack"))
            .count()
    };
    let loose = |dir: &SourceDir| {
        fs::read_dir(dir.repo_path().join("objects"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().len() == 2)
            .count()
    };
    let mut most = 0;
    for i in 0..110 {
        upstream.write("dags/a.yaml", &format!("v: {i}\n"));
        let revision = upstream.commit(&format!("commit {i}"));
        assert_eq!(
            git::sync("s", &spec(&upstream.url()), &dir)
                .unwrap()
                .revision,
            revision
        );
        most = most.max(packs(&dir));
        assert_eq!(loose(&dir), 0, "fetches write packs, not loose objects");
    }
    assert!(most > 50, "each changed fetch adds a pack ({most})");
    assert!(packs(&dir) <= 101, "{}", packs(&dir));
    assert_eq!(read(&current(&dir).1, "dags/a.yaml"), "v: 109\n");
}
