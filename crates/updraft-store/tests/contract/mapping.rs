//! Scenarios of dynamic task mapping: instances keyed by (run, task, map index), a mapped
//! task's placeholder expanded into its instances in one transaction, tries, reports and
//! XComs per map index, and a clear that collapses the instances back into a placeholder.

use std::sync::Mutex;

use updraft_core::TaskState;
use updraft_core::evaluate::EndedInstances;
use updraft_store::{
    Evaluated, RunDecider, RunDecision, RunRead, RunRow, Store, StoreError, TiKey, TiQuery,
    TiTransition, TryReport, TryXComs, XComEntry, XComQuery,
};

use super::{job, key, running_run, t, ti};

fn mapped(run_pk: i64, task_id: &str, map_index: i32) -> TiKey {
    TiKey {
        run_pk,
        task_id: task_id.to_owned(),
        map_index,
    }
}

/// `(map_index, state, try_number)` of every instance of `task_id`, in map index order.
async fn instances(store: &dyn Store, run_pk: i64, task_id: &str) -> Vec<(i32, TaskState, u32)> {
    store
        .task_instances(run_pk)
        .await
        .unwrap()
        .into_iter()
        .filter(|ti| ti.task_id == task_id)
        .map(|ti| (ti.map_index, ti.state, ti.try_number))
        .collect()
}

async fn schedule(store: &dyn Store, run_pk: i64, task_id: &str) {
    let applied = store
        .apply_transitions(
            run_pk,
            &[TiTransition {
                task_id: task_id.to_owned(),
                map_index: -1,
                expected: TaskState::None,
                new: TaskState::Scheduled,
            }],
            t(1),
        )
        .await
        .unwrap();
    assert_eq!(applied, 1);
}

pub async fn a_scheduled_placeholder_expands_into_its_instances_once(store: &dyn Store) {
    let run = running_run(store, &[ti("m", 2), ti("other", 1)]).await;
    // Not scheduled yet: nothing expands.
    assert!(!store.expand_task(run.id, "m", 3).await.unwrap());
    assert_eq!(
        instances(store, run.id, "m").await,
        [(-1, TaskState::None, 0)]
    );
    schedule(store, run.id, "m").await;
    assert!(matches!(
        store.expand_task(run.id, "m", 0).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(store.expand_task(run.id, "m", 3).await.unwrap());
    let expected: Vec<(i32, TaskState, u32)> =
        (0..3).map(|i| (i, TaskState::Scheduled, 0)).collect();
    assert_eq!(instances(store, run.id, "m").await, expected);
    // The copies carry the placeholder's tries, pool and priority.
    for ti in store.task_instances(run.id).await.unwrap() {
        if ti.task_id == "m" {
            assert_eq!((ti.max_tries, ti.pool.as_str()), (2, "default_pool"));
        }
    }
    // Expanded once: the placeholder is gone, a second expansion does nothing.
    assert!(!store.expand_task(run.id, "m", 5).await.unwrap());
    assert_eq!(instances(store, run.id, "m").await.len(), 3);
    // Another task is untouched; an unknown one expands nothing.
    assert_eq!(
        instances(store, run.id, "other").await,
        [(-1, TaskState::None, 0)]
    );
    assert!(!store.expand_task(run.id, "nope", 2).await.unwrap());
    // One instance is found by its key, and the API query filters by map index.
    let one = store.task_instance(&mapped(run.id, "m", 2)).await.unwrap();
    assert_eq!(one.map(|ti| ti.map_index), Some(2));
    assert!(
        store
            .task_instance(&mapped(run.id, "m", -1))
            .await
            .unwrap()
            .is_none()
    );
    let page = store
        .task_instances_page(&TiQuery {
            run_pk: Some(run.id),
            task_ids: vec!["m".into()],
            map_index: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    let got: Vec<i32> = page.items.iter().map(|ti| ti.map_index).collect();
    assert_eq!((got, page.total), (vec![1], 1));
}

pub async fn mapped_instances_queue_run_and_finish_each_on_its_own(store: &dyn Store) {
    let run = running_run(store, &[ti("m", 1)]).await;
    schedule(store, run.id, "m").await;
    assert!(store.expand_task(run.id, "m", 3).await.unwrap());
    let owner = job(store).await;
    let keys: Vec<TiKey> = (0..3).map(|i| mapped(run.id, "m", i)).collect();
    let queued = store
        .queue(&keys, owner, &Default::default(), t(2))
        .await
        .unwrap();
    let got: Vec<(i32, u32)> = queued
        .iter()
        .map(|ti| (ti.map_index, ti.try_number))
        .collect();
    assert_eq!(got, [(0, 1), (1, 1), (2, 1)]);
    let reports = [
        TryReport::Started {
            key: mapped(run.id, "m", 1),
            try_number: 1,
            pid: Some(7),
            at: t(3),
        },
        TryReport::Finished {
            key: mapped(run.id, "m", 1),
            try_number: 1,
            new: TaskState::Success,
            retry_at: None,
            at: t(4),
            skip: vec![],
        },
        TryReport::Finished {
            key: mapped(run.id, "m", 2),
            try_number: 1,
            new: TaskState::Failed,
            retry_at: None,
            at: t(4),
            skip: vec![],
        },
        // A report naming an index that does not exist applies to nothing.
        TryReport::Finished {
            key: mapped(run.id, "m", 9),
            try_number: 1,
            new: TaskState::Failed,
            retry_at: None,
            at: t(4),
            skip: vec![],
        },
    ];
    let applied = store.record_try_reports(&reports, "host").await.unwrap();
    assert_eq!(applied, [true, true, true, false]);
    assert_eq!(
        instances(store, run.id, "m").await,
        [
            (0, TaskState::Queued, 1),
            (1, TaskState::Success, 1),
            (2, TaskState::Failed, 1)
        ]
    );
    // Each index has its own try history.
    let tries = store.tries(&mapped(run.id, "m", 1)).await.unwrap();
    let got: Vec<(i32, u32, TaskState)> = tries
        .iter()
        .map(|r| (r.map_index, r.try_number, r.state))
        .collect();
    assert_eq!(got, [(1, 1, TaskState::Success)]);
    // The evaluation reads every instance with its index.
    let snapshots = store.task_instances(run.id).await.unwrap();
    assert_eq!(snapshots.len(), 3);
    // Forcing one index changes only it.
    assert!(
        store
            .force_ti_state(&mapped(run.id, "m", 0), TaskState::Success, t(5))
            .await
            .unwrap()
    );
    assert_eq!(
        instances(store, run.id, "m").await[0],
        (0, TaskState::Success, 1)
    );
}

pub async fn xcoms_are_kept_per_map_index_and_listed_in_index_order(store: &dyn Store) {
    let run = running_run(store, &[ti("m", 1)]).await;
    schedule(store, run.id, "m").await;
    assert!(store.expand_task(run.id, "m", 3).await.unwrap());
    let owner = job(store).await;
    let keys: Vec<TiKey> = (0..3).rev().map(|i| mapped(run.id, "m", i)).collect();
    store
        .queue(&keys, owner, &Default::default(), t(2))
        .await
        .unwrap();
    let pushed: Vec<TryXComs> = [2, 0, 1]
        .into_iter()
        .map(|i| TryXComs {
            run_pk: run.id,
            task_id: "m".into(),
            try_number: 1,
            map_index: i,
            entries: vec![XComEntry {
                key: "return_value".into(),
                value: format!("{}", i * 10),
            }],
        })
        .collect();
    let recorded = store.record_xcoms(&pushed, t(3)).await.unwrap();
    assert_eq!(recorded, [true, true, true]);
    let (rows, total) = store
        .xcoms(&XComQuery {
            run_pk: run.id,
            task_ids: Some(vec!["m".into()]),
            key: Some("return_value".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let got: Vec<(i64, String)> = rows.into_iter().map(|r| (r.map_index, r.value)).collect();
    assert_eq!(
        got,
        [
            (0, "0".to_owned()),
            (1, "10".to_owned()),
            (2, "20".to_owned())
        ]
    );
    assert_eq!(total, 3);
    // A push for an index the task does not have is not recorded.
    let stray = TryXComs {
        map_index: 7,
        ..pushed[0].clone()
    };
    assert_eq!(store.record_xcoms(&[stray], t(3)).await.unwrap(), [false]);
}

pub async fn clearing_a_mapped_task_collapses_it_into_a_placeholder(store: &dyn Store) {
    let run = running_run(store, &[ti("m", 2), ti("a", 1)]).await;
    schedule(store, run.id, "m").await;
    assert!(store.expand_task(run.id, "m", 3).await.unwrap());
    let owner = job(store).await;
    let keys: Vec<TiKey> = (0..3).map(|i| mapped(run.id, "m", i)).collect();
    store
        .queue(&keys, owner, &Default::default(), t(2))
        .await
        .unwrap();
    // Index 1 is on its second try when the task is cleared.
    store
        .record_try_reports(
            &[TryReport::Finished {
                key: mapped(run.id, "m", 1),
                try_number: 1,
                new: TaskState::UpForRetry,
                retry_at: None,
                at: t(3),
                skip: vec![],
            }],
            "host",
        )
        .await
        .unwrap();
    store
        .apply_transitions(
            run.id,
            &[TiTransition {
                task_id: "m".into(),
                map_index: 1,
                expected: TaskState::UpForRetry,
                new: TaskState::Scheduled,
            }],
            t(3),
        )
        .await
        .unwrap();
    store
        .queue(&[mapped(run.id, "m", 1)], owner, &Default::default(), t(3))
        .await
        .unwrap();
    let cleared = store
        .clear_task_instances(run.id, &["m".into()], t(4))
        .await
        .unwrap();
    assert_eq!(cleared, 1);
    // One placeholder, its try number the highest of the instances', with the full budget.
    assert_eq!(
        instances(store, run.id, "m").await,
        [(-1, TaskState::None, 2)]
    );
    let placeholder = store.task_instance(&key(&run, "m")).await.unwrap().unwrap();
    assert_eq!(placeholder.max_tries, 4);
    // The instances' tries went with them.
    assert!(
        store
            .tries(&mapped(run.id, "m", 1))
            .await
            .unwrap()
            .is_empty()
    );
    // It expands again when scheduled again, continuing the try numbers.
    schedule(store, run.id, "m").await;
    assert!(store.expand_task(run.id, "m", 2).await.unwrap());
    assert_eq!(
        instances(store, run.id, "m").await,
        [(0, TaskState::Scheduled, 2), (1, TaskState::Scheduled, 2)]
    );
    // Clearing an unmapped task is unchanged.
    assert_eq!(
        store
            .clear_task_instances(run.id, &["a".into()], t(5))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        instances(store, run.id, "a").await,
        [(-1, TaskState::None, 0)]
    );
}

/// What a focused read gave a decider: (task, map index, state) of each snapshot, the ended
/// instances counted, and whether the run was progressing.
type FocusedRead = (
    Vec<(String, i32, TaskState)>,
    Vec<EndedInstances>,
    Option<bool>,
);

/// A decider whose focus is `m` and `after`, keeping what each read gave it.
#[derive(Default)]
struct FocusOnMapped {
    reads: Mutex<Vec<FocusedRead>>,
}

impl RunDecider for FocusOnMapped {
    fn focus(&self, _run: &RunRow) -> Option<Vec<String>> {
        Some(vec!["after".to_owned(), "m".to_owned()])
    }

    fn decide(&self, _run: &RunRow, read: &RunRead<'_>) -> Option<RunDecision> {
        let tis = read
            .tis
            .iter()
            .map(|ti| (ti.task_id.clone(), ti.map_index, ti.state))
            .collect();
        let mut ended = read.ended.to_vec();
        ended.sort_by(|a, b| (&a.task_id, a.state.as_str()).cmp(&(&b.task_id, b.state.as_str())));
        self.reads
            .lock()
            .unwrap()
            .push((tis, ended, read.progressing));
        Some(RunDecision::default())
    }
}

pub async fn a_focused_read_counts_a_mapped_task_s_ended_instances(store: &dyn Store) {
    let run = running_run(store, &[ti("m", 1), ti("after", 1), ti("other", 1)]).await;
    schedule(store, run.id, "m").await;
    assert!(store.expand_task(run.id, "m", 6).await.unwrap());
    let ended = [
        (0, TaskState::Success),
        (1, TaskState::Success),
        (2, TaskState::Failed),
        (4, TaskState::Skipped),
    ];
    for (map_index, state) in ended {
        assert!(
            store
                .force_ti_state(&mapped(run.id, "m", map_index), state, t(2))
                .await
                .unwrap()
        );
    }
    let decider = FocusOnMapped::default();
    let outcome = store
        .evaluate_runs(&[run.id], &decider, t(3))
        .await
        .unwrap();
    assert!(matches!(
        outcome.as_slice(),
        [(pk, Evaluated::Applied { .. })] if *pk == run.id
    ));
    let reads = decider.reads.lock().unwrap();
    let count = |state, count| EndedInstances {
        task_id: "m".to_owned(),
        state,
        count,
    };
    assert_eq!(
        *reads,
        [(
            vec![
                ("after".to_owned(), -1, TaskState::None),
                ("m".to_owned(), 3, TaskState::Scheduled),
                ("m".to_owned(), 5, TaskState::Scheduled),
            ],
            vec![
                count(TaskState::Failed, 1),
                count(TaskState::Skipped, 1),
                count(TaskState::Success, 2),
            ],
            Some(true),
        )],
        "the instances that have not ended, in map index order, and the others counted"
    );
}
