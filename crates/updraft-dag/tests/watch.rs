//! Watching a DAGs folder with the real file-system watcher.

use std::fs;
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use updraft_dag::watch_channel;

#[test]
fn changes_under_the_folder_are_signalled_once_per_burst() {
    let dir = tempfile::TempDir::new().unwrap();
    fs::create_dir(dir.path().join("team_a")).unwrap();
    fs::write(dir.path().join("team_a/old.yaml"), "tasks: []\n").unwrap();
    let (watcher, changes) = watch_channel(dir.path(), Duration::from_millis(100)).unwrap();

    // Nothing changes, files are only read (as a refresh does): no signal.
    let _ = updraft_dag::DagBag::load(dir.path());
    assert_eq!(
        changes.recv_timeout(Duration::from_millis(300)),
        Err(RecvTimeoutError::Timeout)
    );

    // A burst of writes, in a subfolder too, is one signal.
    for i in 0..5 {
        fs::write(dir.path().join(format!("dag_{i}.yaml")), "tasks: []\n").unwrap();
    }
    fs::write(dir.path().join("team_a/x.yaml"), "tasks: []\n").unwrap();
    assert_eq!(changes.recv_timeout(Duration::from_secs(5)), Ok(()));
    assert_eq!(
        changes.recv_timeout(Duration::from_millis(500)),
        Err(RecvTimeoutError::Timeout)
    );

    // Deleting is a change too.
    fs::remove_file(dir.path().join("team_a/x.yaml")).unwrap();
    assert_eq!(changes.recv_timeout(Duration::from_secs(5)), Ok(()));

    // After the watcher is dropped, the channel closes.
    drop(watcher);
    assert_eq!(
        changes.recv_timeout(Duration::from_secs(5)),
        Err(RecvTimeoutError::Disconnected)
    );
}

#[test]
fn links_are_not_followed() {
    let dir = tempfile::TempDir::new().unwrap();
    let outside = tempfile::TempDir::new().unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).unwrap();
    std::os::unix::fs::symlink("/", dir.path().join("slash")).unwrap();
    let (_watcher, changes) = watch_channel(dir.path(), Duration::from_millis(50)).unwrap();
    fs::write(outside.path().join("x.yaml"), "tasks: []\n").unwrap();
    assert_eq!(
        changes.recv_timeout(Duration::from_millis(500)),
        Err(RecvTimeoutError::Timeout),
        "a change outside the folder, behind a link, is not watched"
    );
    fs::write(dir.path().join("inside.yaml"), "tasks: []\n").unwrap();
    assert_eq!(changes.recv_timeout(Duration::from_secs(5)), Ok(()));
}

#[test]
fn watching_a_missing_folder_fails() {
    let dir = tempfile::TempDir::new().unwrap();
    let err = watch_channel(&dir.path().join("nope"), Duration::from_millis(50)).unwrap_err();
    assert!(err.to_string().starts_with("cannot watch "), "{err}");
}
