//! The store contract run against [`PgStore`], each test on a database of its own, plus
//! PostgreSQL-specific checks: concurrent migration, the statement-cache-free mode a
//! transaction-pooling PgBouncer needs, durability across reconnect, and the locks that let
//! several schedulers share the database.
//!
//! Needs a PostgreSQL server: `UPDRAFT_TEST_POSTGRES_URL` names a database on it as a role
//! allowed to create databases (`scripts/test` starts a throwaway server and sets it). Without
//! it these tests fail: they never skip.

#[macro_use]
mod contract;
mod pg_support;

use std::sync::Arc;

use updraft_core::evaluate::TiSnapshot;
use updraft_core::{RunState, RunType, TaskState};
use updraft_store::{
    AdminStore, Evaluated, OperatorStore, PgStore, PgStoreOptions, QueueChoice, QueueRoom,
    QueueSelector, QueueStep, ReadStore, RunDecision, RunRow, ScheduledSkip, SchedulerStore, Store,
    TiRow, TiTransition,
};

use pg_support::{DropDatabase, fresh_database};

async fn fresh_with(options: &PgStoreOptions) -> (Box<dyn Store>, DropDatabase) {
    let (connect, guard) = fresh_database().await;
    let store = PgStore::connect_with(connect, options).await.unwrap();
    store.migrate().await.unwrap();
    (Box::new(store), guard)
}

async fn fresh() -> (Box<dyn Store>, DropDatabase) {
    fresh_with(&PgStoreOptions::default()).await
}

/// As behind a transaction-pooling PgBouncer: no prepared statements kept by name.
async fn fresh_uncached() -> (Box<dyn Store>, DropDatabase) {
    fresh_with(&PgStoreOptions {
        statement_cache: false,
        ..PgStoreOptions::default()
    })
    .await
}

mod cached {
    contract_tests!(super::fresh);
}

mod uncached {
    contract_tests!(super::fresh_uncached);
}

/// Stores migrating one new database at once (as processes starting together) all succeed:
/// the migrator's advisory lock makes them take turns.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_migrations_of_a_new_database_all_succeed() {
    let (connect, _guard) = fresh_database().await;
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let connect = connect.clone();
            tokio::spawn(async move {
                let store = PgStore::connect_with(connect, &PgStoreOptions::default()).await?;
                store.migrate().await?;
                store.pools().await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().len(), 1);
    }
}

#[tokio::test]
async fn data_survives_reconnect_and_is_visible_to_another_store() {
    let (connect, _guard) = fresh_database().await;
    let options = PgStoreOptions::default();
    let writer = PgStore::connect_with(connect.clone(), &options)
        .await
        .unwrap();
    writer.migrate().await.unwrap();
    let other = PgStore::connect_with(connect.clone(), &options)
        .await
        .unwrap();
    let run = contract::durable_write(&writer).await;
    contract::durable_check(&other, &run).await;
    writer.close().await;
    other.close().await;
    let reopened = PgStore::connect_with(connect, &options).await.unwrap();
    reopened.migrate().await.unwrap();
    contract::durable_check(&reopened, &run).await;
}

/// Two schedulers (two stores, as two processes) queueing at once never overflow a pool: the
/// advisory transaction lock serialises their `queue` transactions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_schedulers_never_overflow_a_pool() {
    let (connect, _guard) = fresh_database().await;
    let options = PgStoreOptions::default();
    let a = PgStore::connect_with(connect.clone(), &options)
        .await
        .unwrap();
    a.migrate().await.unwrap();
    let b = PgStore::connect_with(connect, &options).await.unwrap();
    contract::concurrent_queues_never_overflow_a_pool(Arc::new(a), Arc::new(b)).await;
}

/// Two schedulers (two stores) taking their one-transaction steps at once, beside a third
/// party evaluating the same runs, never overflow a pool and never deadlock: each step takes
/// the advisory lock before any row.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_schedulers_step_without_overflowing_a_pool() {
    let (connect, _guard) = fresh_database().await;
    let options = PgStoreOptions::default();
    let a = PgStore::connect_with(connect.clone(), &options)
        .await
        .unwrap();
    a.migrate().await.unwrap();
    let b = PgStore::connect_with(connect, &options).await.unwrap();
    contract::concurrent_steps_never_overflow_a_pool(Arc::new(a), Arc::new(b)).await;
}

/// A selector that tells the test it was reached (inside the step's transaction, with the
/// scheduling lock held) and then stalls its thread, as a scheduler frozen by SIGSTOP or a
/// paused machine would.
struct Stall {
    reached: std::sync::Mutex<Option<std::sync::mpsc::Sender<()>>>,
    for_how_long: std::time::Duration,
}

impl QueueSelector for Stall {
    fn skip(&self, _room: &QueueRoom) -> ScheduledSkip {
        if let Some(reached) = self.reached.lock().unwrap().take() {
            reached.send(()).unwrap();
        }
        std::thread::sleep(self.for_how_long);
        ScheduledSkip::default()
    }

    fn select(&self, _scheduled: &[TiRow], _room: &QueueRoom) -> QueueChoice {
        QueueChoice::default()
    }
}

/// Chooses nothing.
struct TakeNothing;

impl QueueSelector for TakeNothing {
    fn skip(&self, _room: &QueueRoom) -> ScheduledSkip {
        ScheduledSkip::default()
    }

    fn select(&self, _scheduled: &[TiRow], _room: &QueueRoom) -> QueueChoice {
        QueueChoice::default()
    }
}

/// A scheduler frozen while it holds the scheduling lock loses its session once it has kept
/// its transaction waiting for the idle limit (10 s), so the other schedulers queue again
/// instead of waiting for it for ever; the frozen one's step fails and records nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_holder_of_the_scheduling_lock_does_not_stop_the_others() {
    let (connect, _guard) = fresh_database().await;
    let options = PgStoreOptions::default();
    let frozen = PgStore::connect_with(connect.clone(), &options)
        .await
        .unwrap();
    frozen.migrate().await.unwrap();
    let other = PgStore::connect_with(connect, &options).await.unwrap();
    let now = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    let frozen_job = frozen.register_scheduler("a", 1, now).await.unwrap();
    let other_job = other.register_scheduler("b", 2, now).await.unwrap();
    let decide = |_: &RunRow, _: &[TiSnapshot]| RunDecision::default();

    let (reached, lock_held) = std::sync::mpsc::channel();
    let stall = Stall {
        reached: std::sync::Mutex::new(Some(reached)),
        for_how_long: std::time::Duration::from_secs(13),
    };
    let stalled = tokio::spawn(async move {
        let step = QueueStep {
            owner: frozen_job,
            page: 8,
            selector: &stall,
        };
        frozen
            .record_evaluate_and_queue(&[], "a", &[], &decide, &step, now)
            .await
    });
    tokio::task::spawn_blocking(move || lock_held.recv().unwrap())
        .await
        .unwrap();

    let step = QueueStep {
        owner: other_job,
        page: 8,
        selector: &TakeNothing,
    };
    let outcome = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        other.record_evaluate_and_queue(&[], "b", &[], &decide, &step, now),
    )
    .await
    .expect("the other scheduler gets the lock once the frozen one's session ends")
    .unwrap();
    assert_eq!(outcome.queued.len(), 0);
    assert!(
        stalled.await.unwrap().is_err(),
        "the frozen scheduler's transaction was ended"
    );
}

/// A run whose row another transaction holds is not waited for: `evaluate_runs` reports it
/// busy and changes nothing for it, while evaluating the other runs asked; once the row is
/// free, it evaluates.
#[tokio::test]
async fn evaluate_runs_reports_a_locked_run_busy() {
    use sqlx::Connection;
    let (connect, _guard) = fresh_database().await;
    let store = PgStore::connect_with(connect.clone(), &PgStoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let run = contract::running_run(&store, &[contract::ti("a", 1)]).await;
    let free = store
        .create_run(
            &contract::new_run(&contract::dag("d"), "r2", RunType::Manual, 1),
            &[contract::ti("a", 1)],
            contract::t(1),
        )
        .await
        .unwrap();
    store
        .force_run_state(free.id, RunState::Running, contract::t(1))
        .await
        .unwrap();
    let decide = |_: &RunRow, _: &[TiSnapshot]| RunDecision {
        transitions: vec![TiTransition {
            task_id: "a".into(),
            map_index: -1,
            expected: TaskState::None,
            new: TaskState::Scheduled,
        }],
        run_state: None,
    };
    let applied = Evaluated::Applied {
        decision: decide(&run, &[]),
        applied: 1,
    };

    let mut other = sqlx::PgConnection::connect_with(&connect).await.unwrap();
    let mut tx = other.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM dag_run WHERE id = $1 FOR UPDATE")
        .bind(run.id)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    let outcomes = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        store.evaluate_runs(&[run.id, free.id], &decide, contract::t(2)),
    )
    .await
    .expect("evaluate_runs must not wait for the lock")
    .unwrap();
    assert_eq!(
        outcomes,
        [(run.id, Evaluated::Busy), (free.id, applied.clone())]
    );
    let a = store
        .task_instance(&contract::key(&run, "a"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.state, TaskState::None, "nothing written");
    let a = store
        .task_instance(&contract::key(&free, "a"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.state, TaskState::Scheduled, "the free run evaluated");
    tx.rollback().await.unwrap();

    let outcomes = store
        .evaluate_runs(&[run.id], &decide, contract::t(3))
        .await
        .unwrap();
    assert_eq!(outcomes, [(run.id, applied)]);
}

/// Re-encryption locks the rows it reads until it commits, so no write slips in between a
/// token's read and its rewrite: another connection asking for the row without waiting is
/// refused while the re-encryption runs, and served once it is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reencrypt_locks_the_rows_it_rewrites() {
    use sqlx::Connection;
    use updraft_store::{SecretStore, VariableRow, WriteMode};

    let (connect, _guard) = fresh_database().await;
    let store = PgStore::connect_with(connect.clone(), &PgStoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let row = VariableRow {
        tenant: Some("a".into()),
        key: "k".into(),
        value: "token".into(),
        description: None,
        is_encrypted: true,
    };
    store.write_variable(&row, WriteMode::Create).await.unwrap();

    // The SQLSTATE another connection meets locking the row without waiting (None: it got it).
    let try_lock = || {
        let connect = connect.clone();
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let mut other = sqlx::PgConnection::connect_with(&connect).await.unwrap();
                    let locked =
                        sqlx::query("SELECT key FROM variable WHERE key = 'k' FOR UPDATE NOWAIT")
                            .execute(&mut other)
                            .await;
                    locked
                        .err()
                        .and_then(|e| e.as_database_error()?.code().map(|c| c.into_owned()))
                })
        })
        .join()
        .unwrap()
    };
    let met = std::sync::Mutex::new(Vec::new());
    let rewritten = store
        .reencrypt(&|field| {
            met.lock().unwrap().push(try_lock());
            Ok(format!("re({})", field.token))
        })
        .await
        .unwrap();
    assert_eq!(rewritten, 1);
    assert_eq!(
        met.into_inner().unwrap(),
        [Some("55P03".to_owned())],
        "lock_not_available"
    );
    assert_eq!(try_lock(), None);
    let after = store.variable(Some("a"), "k").await.unwrap().unwrap();
    assert_eq!(after.value, "re(token)");
}
