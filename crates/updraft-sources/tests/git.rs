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
