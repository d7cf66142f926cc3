//! A DAGs folder holding what a careless or hostile user may put there: links out of it, link
//! cycles, pipes, sockets, misleading names, too many entries, huge error messages. The walk
//! must stay inside the folder, never block, stay bounded, and say what it did not read.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use tempfile::TempDir;
use updraft_dag::{
    DagBag, DagBagOptions, FOLDER_ERROR_FILENAME, ImportError, MAX_ERROR_MESSAGE_CHARS,
    MAX_ERRORS_PER_FILE,
};

fn write(root: &Path, rel: &str, text: impl AsRef<[u8]>) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn dag(dag_id: &str) -> String {
    format!("dag_id: {dag_id}\ntasks:\n  - task_id: t\n    bash: echo {dag_id}\n")
}

fn dag_ids(bag: &DagBag) -> Vec<(String, String)> {
    bag.dags()
        .map(|d| (d.dag.dag_id.clone(), d.dag.fileloc.clone()))
        .collect()
}

fn error_for<'b>(bag: &'b DagBag, filename: &str) -> &'b ImportError {
    bag.import_errors()
        .iter()
        .find(|e| e.filename == filename)
        .unwrap_or_else(|| panic!("no import error for {filename}: {:#?}", bag.import_errors()))
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
}

/// Every line of `/etc/passwd` long enough to be recognised.
fn passwd_lines() -> Vec<String> {
    fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .filter(|l| l.len() > 8)
        .map(str::to_owned)
        .collect()
}

#[test]
fn links_out_of_the_folder_are_import_errors_that_quote_nothing() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    write(root, "good.yaml", dag("good"));
    symlink("/", root.join("slash")).unwrap();
    symlink("/etc/passwd", root.join("passwd.yaml")).unwrap();
    symlink("/proc/self/status", root.join("status.yaml")).unwrap();
    symlink("/etc", root.join("team_a")).unwrap();
    let outside = TempDir::new().unwrap();
    write(outside.path(), "x.yaml", dag("outside"));
    symlink(
        outside.path().join("x.yaml"),
        root.join("relative_escape.yaml"),
    )
    .unwrap();
    symlink(
        "../../../../../../../../etc/hostname",
        root.join("dotdot.yaml"),
    )
    .unwrap();
    // Not named like a DAG file, to a file: not a DAG file, nothing to report.
    symlink("/etc/passwd", root.join("README.md")).unwrap();

    let mut bag = DagBag::new(root);
    let report = bag.refresh();

    assert_eq!(dag_ids(&bag), [("good".to_owned(), "good.yaml".to_owned())]);
    assert_eq!(report.files_seen, 1, "only good.yaml is a DAG file read");
    for link in [
        "slash",
        "passwd.yaml",
        "status.yaml",
        "team_a",
        "relative_escape.yaml",
        "dotdot.yaml",
    ] {
        let error = error_for(&bag, link);
        assert!(
            error.message.contains("points outside the DAGs folder"),
            "{error}"
        );
        assert_eq!(error.line, None, "{error}");
    }
    assert_eq!(bag.import_errors().len(), 6, "{:#?}", bag.import_errors());
    let all: String = bag.import_errors().iter().map(|e| e.to_string()).collect();
    for line in passwd_lines() {
        assert!(!all.contains(&line), "quotes /etc/passwd: {all}");
    }
    assert!(!all.contains("VmRSS") && !all.contains("/etc") && !all.contains("/proc"));
}

#[test]
fn links_inside_the_folder_are_followed() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    write(root, "shared/base.yaml", dag("base"));
    fs::create_dir(root.join("team_a")).unwrap();
    symlink("../shared/base.yaml", root.join("team_a/alias.yml")).unwrap();
    // A Kubernetes ConfigMap volume: files are links through a hidden, swapped folder.
    write(root, "team_b/..2026_01_01/cm.yaml", dag("from_configmap"));
    symlink("..2026_01_01", root.join("team_b/..data")).unwrap();
    symlink("..data/cm.yaml", root.join("team_b/cm.yaml")).unwrap();
    // The DAGs folder itself may be reached through a link.
    let outer = TempDir::new().unwrap();
    let via = outer.path().join("dags");
    symlink(root, &via).unwrap();

    let bag = DagBag::load(&via);

    assert!(bag.import_errors().len() == 1, "{:#?}", bag.import_errors());
    let duplicate = error_for(&bag, "team_a/alias.yml");
    assert!(
        duplicate
            .message
            .contains("dag_id `base` belongs to another tenant"),
        "{duplicate}"
    );
    assert_eq!(
        dag_ids(&bag),
        [
            ("base".to_owned(), "shared/base.yaml".to_owned()),
            ("from_configmap".to_owned(), "team_b/cm.yaml".to_owned()),
        ]
    );
    assert_eq!(bag.dag("from_configmap").unwrap().dag.tenant, "team_b");
}

#[test]
fn link_cycles_are_import_errors_not_loops() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    write(root, "team_a/sub/ok.yaml", dag("ok"));
    symlink("..", root.join("team_a/sub/up")).unwrap();
    symlink(".", root.join("self")).unwrap();
    symlink("ping", root.join("pong")).unwrap();
    symlink("pong", root.join("ping")).unwrap();
    symlink("nowhere.yaml", root.join("dangling.yaml")).unwrap();

    let bag = DagBag::load(root);

    assert_eq!(
        dag_ids(&bag),
        [("ok".to_owned(), "team_a/sub/ok.yaml".to_owned())]
    );
    for (link, says) in [
        ("team_a/sub/up", "cycle"),
        ("self", "cycle"),
        ("ping", "cycle"),
        ("pong", "cycle"),
        ("dangling.yaml", "dangling"),
    ] {
        let error = error_for(&bag, link);
        assert!(error.message.contains(says), "{error}");
    }
    assert_eq!(bag.import_errors().len(), 5, "{:#?}", bag.import_errors());
}

#[test]
fn pipes_and_sockets_are_import_errors_and_never_opened() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    write(root, "good.yaml", dag("good"));
    mkfifo(&root.join("pipe.yaml"));
    mkfifo(&root.join("plain_pipe"));
    fs::create_dir(root.join("team_a")).unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(root.join("team_a/sock.yaml")).unwrap();
    symlink("pipe.yaml", root.join("link_to_pipe.yaml")).unwrap();

    // Opening a FIFO for reading would block until a writer comes: this returns.
    let bag = DagBag::load(root);

    assert_eq!(dag_ids(&bag), [("good".to_owned(), "good.yaml".to_owned())]);
    for (name, what) in [
        ("pipe.yaml", "named pipe"),
        ("plain_pipe", "named pipe"),
        ("link_to_pipe.yaml", "named pipe"),
        ("team_a/sock.yaml", "socket"),
    ] {
        let error = error_for(&bag, name);
        assert!(
            error.message.contains(what) && error.message.contains("only regular files"),
            "{error}"
        );
    }
    assert_eq!(error_for(&bag, "team_a/sock.yaml").tenant, "team_a");
    assert_eq!(bag.import_errors().len(), 4, "{:#?}", bag.import_errors());
}

#[test]
fn names_with_bidi_controls_are_refused_and_shown_escaped() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    write(root, "good.yaml", dag("good"));
    // Displays as "evilyaml.exe"-like nonsense in a terminal; must not load.
    write(root, "evil\u{202e}lmay.yaml", dag("evil"));
    write(root, "team_a/x\u{2066}y/inner.yaml", dag("inner"));
    write(root, "mark\u{200f}.yaml", dag("mark"));

    let bag = DagBag::load(root);

    assert_eq!(dag_ids(&bag), [("good".to_owned(), "good.yaml".to_owned())]);
    for (escaped, code) in [
        ("evil\\u{202e}lmay.yaml", "U+202E"),
        ("team_a/x\\u{2066}y", "U+2066"),
        ("mark\\u{200f}.yaml", "U+200F"),
    ] {
        let error = error_for(&bag, escaped);
        assert!(error.message.contains(code), "{error}");
        let name = escaped.rsplit('/').next().unwrap();
        assert!(error.message.contains(&format!("`{name}`")), "{error}");
    }
    for error in bag.import_errors() {
        let shown = error.to_string();
        assert!(
            !shown.chars().any(updraft_dag::is_bidi_control),
            "raw bidi control in {shown:?}"
        );
    }
}

#[test]
fn the_walk_is_bounded_in_entries_and_depth() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    for i in 0..30 {
        write(root, &format!("d{i:02}.yaml"), dag(&format!("d{i:02}")));
    }
    let options = DagBagOptions {
        max_entries: 10,
        ..DagBagOptions::default()
    };
    let mut bag = DagBag::with_options(root, options);
    let report = bag.refresh();
    assert_eq!(
        report.files_seen, 0,
        "the limit is hit while listing the root"
    );
    let error = error_for(&bag, FOLDER_ERROR_FILENAME);
    assert!(
        error.message.contains("more than 10 entries")
            && error.message.contains("core.max_dag_folder_entries"),
        "{error}"
    );

    let dir = TempDir::new().unwrap();
    let root = dir.path();
    write(root, "team_a/one/two/deep.yaml", dag("deep"));
    write(root, "team_a/one/shallow.yaml", dag("shallow"));
    let options = DagBagOptions {
        max_depth: 2,
        ..DagBagOptions::default()
    };
    let bag = DagBag::with_options(root, options);
    let mut bag = bag;
    bag.refresh();
    assert_eq!(
        dag_ids(&bag),
        [("shallow".to_owned(), "team_a/one/shallow.yaml".to_owned())]
    );
    let error = error_for(&bag, "team_a/one/two");
    assert!(
        error.message.contains("more than 2 levels")
            && error.message.contains("core.max_dag_folder_depth"),
        "{error}"
    );
}

#[test]
fn a_stopped_refresh_changes_nothing() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    write(root, "a.yaml", dag("a"));
    let mut bag = DagBag::load(root);
    write(root, "b.yaml", dag("b"));
    fs::remove_file(root.join("a.yaml")).unwrap();

    let stop = AtomicBool::new(true);
    assert!(bag.refresh_unless_stopped(&stop).is_none());
    assert_eq!(dag_ids(&bag), [("a".to_owned(), "a.yaml".to_owned())]);

    let go = AtomicBool::new(false);
    let report = bag.refresh_unless_stopped(&go).unwrap();
    assert_eq!(
        (report.added, report.removed),
        (vec!["b".to_owned()], vec!["a".to_owned()])
    );
}

#[test]
fn parse_errors_quote_a_bounded_excerpt() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    // YAML keys longer than 1024 characters are syntax errors; this one is an unknown key,
    // quoted in its message.
    let long_key = "k".repeat(1000);
    write(
        root,
        "long.yaml",
        format!("dag_id: long\n{long_key}: 1\ntasks: []\n"),
    );
    let many: String = (0..500).map(|i| format!("unknown_{i}: 1\n")).collect();
    write(
        root,
        "many.yaml",
        format!("dag_id: many\n{many}tasks: []\n"),
    );
    write(
        root,
        "ansi.yaml",
        "dag_id: ansi\n\"\\e[31mred\": 1\ntasks: []\n",
    );

    let bag = DagBag::load(root);

    let long: Vec<_> = bag
        .import_errors()
        .iter()
        .filter(|e| e.filename == "long.yaml")
        .collect();
    assert_eq!(long.len(), 1, "{long:#?}");
    assert!(
        long[0].message.starts_with("unknown key `kkk"),
        "{}",
        long[0]
    );
    assert!(long[0].message.ends_with("… (cut)"), "{}", long[0]);
    assert!(long[0].message.chars().count() <= MAX_ERROR_MESSAGE_CHARS + 10);
    let many = bag
        .import_errors()
        .iter()
        .filter(|e| e.filename == "many.yaml")
        .count();
    assert_eq!(many, MAX_ERRORS_PER_FILE);
    let ansi = error_for(&bag, "ansi.yaml");
    assert!(!ansi.message.contains('\u{1b}'), "{ansi:?}");
}

#[test]
fn an_empty_or_truncated_file_is_an_import_error() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    write(root, "a.yaml", dag("a"));
    let mut bag = DagBag::load(root);
    // An editor saving in place: truncate, then write.
    fs::write(root.join("a.yaml"), "").unwrap();
    let report = bag.refresh();
    assert_eq!(report.removed, ["a"]);
    assert_eq!(error_for(&bag, "a.yaml").line, None);
    let half = &dag("a")[..20];
    fs::write(root.join("a.yaml"), half).unwrap();
    bag.refresh();
    assert!(bag.dag("a").is_none());
    assert_eq!(bag.import_errors().len(), 1, "{:#?}", bag.import_errors());
}

#[test]
fn excerpts_are_read_only_inside_the_folder() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    write(root, "team_a/bad.yaml", "a: 1\nb: [\nc: 3\n");
    symlink("/etc/passwd", root.join("passwd.yaml")).unwrap();
    fs::create_dir(root.join("team_b")).unwrap();
    symlink("/etc", root.join("team_b/etc")).unwrap();
    mkfifo(&root.join("pipe.yaml"));

    let lines = updraft_dag::excerpt(root, "team_a/bad.yaml", 2, 1);
    let numbered: Vec<(u32, &str)> = lines.iter().map(|l| (l.number, l.text.as_str())).collect();
    assert_eq!(numbered, [(1, "a: 1"), (2, "b: ["), (3, "c: 3")]);
    for name in [
        "passwd.yaml",
        "team_b/etc/passwd",
        "../etc/passwd",
        "/etc/passwd",
        "pipe.yaml",
    ] {
        assert!(updraft_dag::excerpt(root, name, 1, 3).is_empty(), "{name}");
    }
}
