//! The store contract run against [`SqliteStore`] (file and in-memory), plus SQLite-specific
//! checks: durability across reopen, two stores (as two processes would) sharing one file,
//! corrupt data reporting, and an ignored latency measurement.

#[macro_use]
mod contract;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use updraft_core::TaskState;
use updraft_store::{
    AdminStore, OperatorStore, ReadStore, SchedulerStore, SqliteStore, Store, StoreError, TiKey,
};

/// A migrated store over a fresh file in a temporary directory (kept alive by the guard).
async fn fresh_file() -> (Box<dyn Store>, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_migrated(&dir.path().join("updraft.db")).await;
    (Box::new(store), dir)
}

async fn fresh_memory() -> (Box<dyn Store>, ()) {
    (Box::new(SqliteStore::in_memory().await.unwrap()), ())
}

async fn open_migrated(path: &Path) -> SqliteStore {
    let store = SqliteStore::open(path).await.unwrap();
    store.migrate().await.unwrap();
    store
}

mod file {
    contract_tests!(super::fresh_file);
}

mod memory {
    contract_tests!(super::fresh_memory);
}

#[tokio::test]
async fn open_creates_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested-name.db");
    assert!(!path.exists());
    let store = SqliteStore::open(&path).await.unwrap();
    assert!(path.exists());
    store.migrate().await.unwrap();
    store.close().await;
}

/// Tasks may run as other unix users: the database and its WAL are this user's alone, also
/// when the file was made before with looser permissions.
#[tokio::test]
async fn the_database_files_are_readable_by_this_user_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("updraft.db");
    let store = open_migrated(&path).await;
    contract::durable_write(&store).await;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir.path().join("updraft.db-wal")), 0o600);
    store.close().await;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let store = open_migrated(&path).await;
    assert_eq!(mode(&path), 0o600, "tightened on open");
    store.close().await;
}

#[tokio::test]
async fn data_survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("updraft.db");
    let store = open_migrated(&path).await;
    let run = contract::durable_write(&store).await;
    store.close().await;
    drop(store);

    let reopened = open_migrated(&path).await;
    contract::durable_check(&reopened, &run).await;
}

#[tokio::test]
async fn committed_writes_are_visible_to_another_store_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("updraft.db");
    let writer = open_migrated(&path).await;
    let other = SqliteStore::open(&path).await.unwrap();
    let run = contract::durable_write(&writer).await;
    // No close: the second store reads what the first committed (WAL, not yet checkpointed).
    contract::durable_check(&other, &run).await;
}

/// Two schedulers (two stores over one file, as two processes) queueing at once never
/// overflow a pool: `BEGIN IMMEDIATE` serialises them across connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_schedulers_on_one_file_never_overflow_a_pool() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("updraft.db");
    let a: Arc<dyn Store> = Arc::new(open_migrated(&path).await);
    let b: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.unwrap());
    contract::concurrent_queues_never_overflow_a_pool(a, b).await;
}

/// Two schedulers (two stores over one file) taking their one-transaction steps at once never
/// overflow a pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_schedulers_on_one_file_step_without_overflowing_a_pool() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("updraft.db");
    let a: Arc<dyn Store> = Arc::new(open_migrated(&path).await);
    let b: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.unwrap());
    contract::concurrent_steps_never_overflow_a_pool(a, b).await;
}

/// Two stores over one file stand in for two processes (scheduler and CLI): their writes
/// contend for SQLite's lock and must wait for each other, not fail with SQLITE_BUSY.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_file_write_concurrently() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("updraft.db");
    let a: Arc<dyn Store> = Arc::new(open_migrated(&path).await);
    let b: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.unwrap());

    let names: Vec<String> = (0..32).map(|i| format!("t{i}")).collect();
    let tis: Vec<_> = names.iter().map(|n| contract::ti(n, 1)).collect();
    let d = contract::dag("d");
    contract::sync(a.as_ref(), &[&d], false).await;
    let run = a
        .create_run(
            &contract::new_run(&d, "r", updraft_core::RunType::Manual, 0),
            &tis,
            contract::t(0),
        )
        .await
        .unwrap();
    let sched: Vec<_> = names
        .iter()
        .map(|n| updraft_store::TiTransition {
            task_id: n.clone(),
            map_index: -1,
            expected: TaskState::None,
            new: TaskState::Scheduled,
        })
        .collect();
    a.apply_transitions(run.id, &sched, contract::t(0))
        .await
        .unwrap();
    let keys: Vec<TiKey> = names.iter().map(|n| contract::key(&run, n)).collect();
    contract::queue(a.as_ref(), &keys, contract::t(0)).await;

    let mut handles = vec![];
    for (i, chunk) in keys.chunks(4).enumerate() {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let chunk = chunk.to_vec();
        handles.push(tokio::spawn(async move {
            for k in &chunk {
                store.mark_running(k, 1, None, "h", contract::t(1)).await?;
                store
                    .finish_try(k, 1, TaskState::Success, None, contract::t(2))
                    .await?;
                // Read-then-write transactions, the kind that deadlock on lock upgrade.
                store
                    .force_ti_state(k, TaskState::Success, contract::t(3))
                    .await?;
                store
                    .clear_task_instances(
                        k.run_pk,
                        std::slice::from_ref(&k.task_id),
                        contract::t(3),
                    )
                    .await?;
            }
            Ok::<_, StoreError>(())
        }));
    }
    for h in handles {
        h.await.unwrap().unwrap();
    }
    let tis = b.task_instances(run.id).await.unwrap();
    assert!(
        tis.iter()
            .all(|t| t.state == TaskState::None && t.try_number == 1)
    );
    for k in &keys {
        assert_eq!(a.tries(k).await.unwrap()[0].state, TaskState::Success);
    }
}

#[tokio::test]
async fn corrupt_rows_are_reported_not_panicked_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("updraft.db");
    let store = open_migrated(&path).await;
    let run = contract::durable_write(&store).await;
    store
        .register_scheduler("host", 1, contract::t(0))
        .await
        .unwrap();

    let raw = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query("UPDATE task_instance SET state = 'exploded' WHERE task_id = 'a'")
        .execute(&raw)
        .await
        .unwrap();
    sqlx::query("UPDATE dag_run SET conf = '{not json'")
        .execute(&raw)
        .await
        .unwrap();
    sqlx::query("UPDATE scheduler_job SET state = 'zombie'")
        .execute(&raw)
        .await
        .unwrap();
    raw.close().await;

    let ti = store.task_instance(&contract::key(&run, "a")).await;
    assert!(
        matches!(ti, Err(StoreError::Corrupt(ref m)) if m.contains("state")),
        "{ti:?}"
    );
    let run_row = store.run_by_pk(run.id).await;
    assert!(
        matches!(run_row, Err(StoreError::Corrupt(ref m)) if m.contains("conf")),
        "{run_row:?}"
    );
    let jobs = store.schedulers(10).await;
    assert!(
        matches!(jobs, Err(StoreError::Corrupt(ref m)) if m.contains("`state`") && m.contains("zombie")),
        "{jobs:?}"
    );
}

/// Latency of the scheduler's hot path on a real file (not tmpfs): queue → mark_running →
/// finish_try for one task, and a `task_instances` read of its run.
/// `cargo test -p updraft-store --release --test sqlite -- --ignored --nocapture hot_path`
#[tokio::test]
#[ignore]
async fn hot_path_latency() {
    const N: usize = 200;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let store = open_migrated(&dir.path().join("bench.db")).await;
    let names: Vec<String> = (0..N).map(|i| format!("task_{i:03}")).collect();
    let d = contract::dag("d");
    contract::sync(&store, &[&d], false).await;
    let tis: Vec<_> = names.iter().map(|n| contract::ti(n, 1)).collect();
    let run = store
        .create_run(
            &contract::new_run(&d, "r", updraft_core::RunType::Manual, 0),
            &tis,
            contract::t(0),
        )
        .await
        .unwrap();
    let sched: Vec<_> = names
        .iter()
        .map(|n| updraft_store::TiTransition {
            task_id: n.clone(),
            map_index: -1,
            expected: TaskState::None,
            new: TaskState::Scheduled,
        })
        .collect();
    store
        .apply_transitions(run.id, &sched, contract::t(0))
        .await
        .unwrap();

    let mut timings: [Vec<Duration>; 4] = Default::default();
    for name in &names {
        let k = contract::key(&run, name);
        let now = contract::t(1);
        let started = Instant::now();
        let q = contract::queue(&store, std::slice::from_ref(&k), now).await;
        timings[0].push(started.elapsed());
        let started = Instant::now();
        assert!(
            store
                .mark_running(&k, q[0].try_number, None, "h", now)
                .await
                .unwrap()
        );
        timings[1].push(started.elapsed());
        let started = Instant::now();
        assert!(
            store
                .finish_try(&k, 1, TaskState::Success, None, now)
                .await
                .unwrap()
        );
        timings[2].push(started.elapsed());
        let started = Instant::now();
        store.task_instances(run.id).await.unwrap();
        timings[3].push(started.elapsed());
    }
    let labels = [
        "queue",
        "mark_running",
        "finish_try",
        &format!("task_instances({N} rows)"),
    ];
    for (label, mut samples) in labels.iter().zip(timings) {
        samples.sort();
        let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
        let p50 = samples[samples.len() / 2];
        let p99 = samples[samples.len() * 99 / 100];
        println!("{label:>24}: mean {mean:?}  p50 {p50:?}  p99 {p99:?}");
    }
}
