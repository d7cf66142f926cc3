//! The SQLite store on a failing disk: a full file system (a small tmpfs, filled and freed)
//! and a corrupt database file.
//!
//! Mounting a tmpfs needs root, which the test suite has in CI; run as another user, the
//! disk-full tests fail saying so (they never skip).

// The fixtures only: the scenarios run in `sqlite.rs`.
#[allow(unused_imports, unused_macros)]
mod contract;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

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
        bundle: None,
    }];
    let d_version = d.version();
    let both = [
        records[0].clone(),
        LoadedDagRecord {
            dag: &d,
            version: &d_version,
            source: "source of d",
            bundle: None,
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
                map_index: -1,
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

/// The health check's view of writes: none failing before, nor on a full disk before a write
/// fails there; then failing with SQLite's words; and working again once space returns, with
/// no other write in between (its own probe finds out).
#[tokio::test]
async fn write_failure_is_reported_while_writes_fail_and_clears_by_itself() {
    let tmpfs = Tmpfs::mount("8M");
    let path = tmpfs.path().join("updraft.db");
    let store = SqliteStore::open(&path).await.unwrap();
    store.migrate().await.unwrap();
    contract::sync(&store, &[&contract::dag("d")], false).await;
    assert_eq!(store.write_failure().await, None);

    checkpoint(&path).await;
    let filler = tmpfs.fill();
    assert_eq!(store.write_failure().await, None, "no write has failed yet");
    let failed = write_each_kind(&store, 1).await;
    assert!(failed[0].1.is_err(), "{failed:?}");
    let failure = store.write_failure().await.unwrap_or_default();
    assert!(failure.contains("disk is full"), "{failure:?}");

    fs::remove_file(&filler).unwrap();
    // Polled: a failure is held for a few seconds, whatever succeeds meanwhile.
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Some(failure) = store.write_failure().await {
        assert!(
            Instant::now() < deadline,
            "writes still reported failing: {failure}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (what, result) in write_each_kind(&store, 2).await {
        result.unwrap_or_else(|e| panic!("{what} once space returned: {e}"));
    }
    store.close().await;
}

// ---- corruption -------------------------------------------------------------------------------

const PAGE: usize = 4096;

/// A closed database file with a few thousand task instances spread over many pages. Returns
/// how many pages the schema alone took (they come first in the file).
async fn database_with_data(path: &Path) -> usize {
    let store = SqliteStore::open(path).await.unwrap();
    store.migrate().await.unwrap();
    let schema_pages = page_count(path).await;
    let d = contract::dag("d");
    contract::sync(&store, &[&d], false).await;
    let tis: Vec<NewTi> = (0..300)
        .map(|i| contract::ti(&format!("t{i:03}"), 1))
        .collect();
    for round in 0..10 {
        store
            .create_run(
                &contract::new_run(&d, &format!("r{round}"), RunType::Manual, round),
                &tis,
                contract::t(round),
            )
            .await
            .unwrap();
    }
    store.close().await;
    schema_pages
}

/// The database's size in pages, as SQLite counts them (its WAL included).
async fn page_count(path: &Path) -> usize {
    use sqlx::Connection as _;
    let url = format!("sqlite://{}", path.display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let (pages,): (i64,) = sqlx::query_as("PRAGMA page_count")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    usize::try_from(pages).unwrap()
}

/// Overwrite the middle half of the data pages with garbage: the pages after the first
/// `schema_pages` (the header and the schema, which every connection reads first).
fn corrupt_middle_pages(path: &Path, schema_pages: usize) {
    let mut bytes = fs::read(path).unwrap();
    let data_pages = bytes.len() / PAGE - schema_pages;
    assert!(
        data_pages >= 16,
        "only {data_pages} data pages: too few to corrupt the middle"
    );
    let first = schema_pages + data_pages / 4;
    let end = schema_pages + 3 * data_pages / 4;
    let mut noise: u32 = 0x9e37_79b9;
    for byte in &mut bytes[first * PAGE..end * PAGE] {
        noise ^= noise << 13;
        noise ^= noise >> 17;
        noise ^= noise << 5;
        *byte = noise as u8;
    }
    fs::write(path, bytes).unwrap();
}

/// Corrupt pages are found by the start-up check and by the first read that meets them, each
/// time as [`StoreError::DatabaseCorrupt`] naming the file and how to recover, and the store
/// remembers it for the process to stop.
#[tokio::test]
async fn corrupt_pages_are_reported_naming_the_file_and_the_way_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("updraft.db");
    let schema_pages = database_with_data(&path).await;
    let healthy = SqliteStore::open(&path).await.unwrap();
    healthy.check_integrity().await.unwrap();
    healthy.close().await;

    corrupt_middle_pages(&path, schema_pages);
    let store = SqliteStore::open(&path).await.unwrap();
    let file = path.display().to_string();
    let checked = store.check_integrity().await.unwrap_err();
    assert!(checked.is_database_corrupt(), "{checked:?}");
    let message = checked.to_string();
    assert!(message.contains(&file), "{message}");
    assert!(message.contains(".recover"), "{message}");

    // A second store (another process) meets it when reading.
    let other = SqliteStore::open(&path).await.unwrap();
    let mut met = None;
    for round in 0..10 {
        let Some(run) = other.run("d", &format!("r{round}")).await.ok().flatten() else {
            continue;
        };
        if let Err(e) = other.task_instances(run.id).await {
            met = Some(e);
            break;
        }
    }
    let met = match met {
        Some(e) => e,
        None => other.runs_page(&Default::default()).await.unwrap_err(),
    };
    assert!(met.is_database_corrupt(), "{met:?}");
    assert!(met.to_string().contains(&file), "{met}");
    let found = tokio::time::timeout(Duration::from_secs(5), other.corruption_found())
        .await
        .expect("the store remembers the corruption it met");
    assert!(found.to_string().contains(&file), "{found}");
}

/// A file that is not a database at all is named corrupt when opened.
#[tokio::test]
async fn a_file_that_is_not_a_database_is_named_corrupt_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("updraft.db");
    fs::write(&path, vec![0x5a; 16 * PAGE]).unwrap();
    let e = SqliteStore::open(&path)
        .await
        .expect_err("a garbage file does not open");
    assert!(e.is_database_corrupt(), "{e:?}");
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
}
