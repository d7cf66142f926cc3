//! The SQLite store on a failing disk: a full file system (a small tmpfs, filled and freed)
//! and a corrupt database file.
//!
//! Mounting a tmpfs needs root, which the test suite has in CI; run as another user, the
//! disk-full tests fail saying so (they never skip).

#[macro_use]
mod contract;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;
use updraft_core::{RunType, TaskState};
use updraft_store::{
    AdminStore, LoadedDagRecord, NewTi, OperatorStore, ReadStore, SchedulerStore, SqliteStore,
    StoreError, TiTransition,
};

/// A small tmpfs mounted on a temporary directory, unmounted when dropped.
struct Tmpfs {
    dir: TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "this test mounts a {size} tmpfs to fill it, which needs root (the test suite runs \
             as root in CI): mount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Write a file until the file system has no byte left; returns its path.
    fn fill(&self) -> PathBuf {
        let path = self.path().join("filler");
        let mut file = fs::File::create(&path).unwrap();
        for chunk in [1 << 20, 4096, 1] {
            let block = vec![0u8; chunk];
            while file.write_all(&block).is_ok() {}
        }
        let _ = file.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a connection still closing must not leave the mount behind.
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

/// Move the WAL's content into the database file and empty it, so that the next write must
/// grow the WAL (with a WAL already grown, a small write may reuse its space on a full disk).
async fn checkpoint(path: &Path) {
    let raw = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
        .fetch_one(&raw)
        .await
        .unwrap();
    assert_eq!(busy, 0, "the checkpoint was blocked");
    raw.close().await;
}

/// Writes of every kind the store makes, each naming itself: a one-statement write, a
/// transaction written once for both backends, and SQLite's own transactions (the DAG sync,
/// transitions, the scheduler's reports). Each writes something new for `round`.
async fn write_each_kind(
    store: &SqliteStore,
    round: i64,
) -> Vec<(&'static str, Result<(), StoreError>)> {
    let d = contract::dag("d");
    let other = contract::dag(&format!("other_{round}"));
    let big: Vec<NewTi> = (0..200)
        .map(|i| contract::ti(&format!("t{i:03}"), 1))
        .collect();
    let created = store
        .create_run(
            &contract::new_run(&d, &format!("r{round}"), RunType::Manual, round),
            &big,
            contract::t(round),
        )
        .await;
    let mut results = vec![(
        "create_run",
        created.as_ref().map(|_| ()).map_err(clone_message),
    )];
    let records = [LoadedDagRecord {
        dag: &other,
        version: &other.version(),
        source: "source",
    }];
    let d_version = d.version();
    let both = [
        records[0].clone(),
        LoadedDagRecord {
            dag: &d,
            version: &d_version,
            source: "source of d",
        },
    ];
    results.push((
        "sync_dags",
        store.sync_dags(&both, &[], false, contract::t(round)).await,
    ));
    results.push((
        "set_paused",
        store.set_paused("d", round % 2 == 0).await.map(|_| ()),
    ));
    if let Ok(run) = created {
        let transitions: Vec<TiTransition> = big
            .iter()
            .map(|ti| TiTransition {
                task_id: ti.task_id.clone(),
                expected: TaskState::None,
                new: TaskState::Skipped,
            })
            .collect();
        results.push((
            "apply_transitions",
            store
                .apply_transitions(run.id, &transitions, contract::t(round))
                .await
                .map(|_| ()),
        ));
    }
    results
}

fn clone_message(e: &StoreError) -> StoreError {
    StoreError::Invalid(e.to_string())
}

/// Fill the disk under a store, then free it: writes fail while it is full, with SQLite's own
/// error, and every kind of write works again once space returns, on the same store (no
/// reopening): no connection is left inside a transaction SQLite already ended.
#[tokio::test]
async fn writes_fail_while_the_disk_is_full_and_work_again_once_space_returns() {
    let tmpfs = Tmpfs::mount("8M");
    let path = tmpfs.path().join("updraft.db");
    let store = SqliteStore::open(&path).await.unwrap();
    store.migrate().await.unwrap();
    contract::sync(&store, &[&contract::dag("d")], false).await;
    for (what, result) in write_each_kind(&store, 0).await {
        result.unwrap_or_else(|e| panic!("{what} before the disk filled: {e}"));
    }

    checkpoint(&path).await;
    let filler = tmpfs.fill();
    let while_full = write_each_kind(&store, 1).await;
    let (what, first) = &while_full[0];
    let message = first
        .as_ref()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        message.contains("disk is full"),
        "{what} on a full disk: {first:?}"
    );
    // A second round while full: each failure leaves its connection usable for the next.
    let again = write_each_kind(&store, 2).await;
    assert!(again[0].1.is_err(), "{again:?}");

    fs::remove_file(&filler).unwrap();
    for (what, result) in write_each_kind(&store, 3).await {
        result.unwrap_or_else(|e| panic!("{what} once space returned: {e}"));
    }
    assert!(store.run("d", "r3").await.unwrap().is_some());
    store.close().await;
}
