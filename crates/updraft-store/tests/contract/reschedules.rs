//! Scenarios of sensors' reschedules (Airflow's `task_reschedule`): a poke that reschedules
//! keeps its next poke in `retry_at`, writes its row in the same transaction and keeps its try
//! when queued again; a retry is a new try with no rows; clearing and deleting a run remove the
//! rows; and the read an `external_task` sensor makes stays within its tenant.

use chrono::Duration;
use updraft_core::TaskState;
use updraft_store::{Store, TiKey, TiTransition, TryReport};

use super::{key, queue, running_run, start_try, t, ti};

fn poked(
    k: &TiKey,
    try_number: u32,
    new: TaskState,
    next: Option<chrono::DateTime<chrono::Utc>>,
    at: chrono::DateTime<chrono::Utc>,
) -> TryReport {
    TryReport::Finished {
        key: k.clone(),
        try_number,
        new,
        retry_at: next,
        at,
        skip: Vec::new(),
    }
}

/// `up_for_reschedule` → `scheduled` → `queued` → `running`, as the next poke goes.
async fn poke_again(store: &dyn Store, k: &TiKey, now: chrono::DateTime<chrono::Utc>) -> u32 {
    let applied = store
        .apply_transitions(
            k.run_pk,
            &[TiTransition {
                task_id: k.task_id.clone(),
                map_index: k.map_index,
                expected: TaskState::UpForReschedule,
                new: TaskState::Scheduled,
            }],
            now,
        )
        .await
        .unwrap();
    assert_eq!(applied, 1);
    let queued = queue(store, std::slice::from_ref(k), now).await;
    assert_eq!(queued.len(), 1);
    let try_number = queued[0].try_number;
    assert!(
        store
            .mark_running(k, try_number, None, "host-a", now)
            .await
            .unwrap()
    );
    try_number
}

pub async fn a_poke_that_reschedules_keeps_its_try_and_writes_its_row(store: &dyn Store) {
    let run = running_run(store, &[ti("s", 3)]).await;
    let k = key(&run, "s");
    let first = start_try(store, &run, "s", t(2)).await;
    let next = t(3) + Duration::minutes(1);
    let applied = store
        .record_try_reports(
            &[poked(
                &k,
                first,
                TaskState::UpForReschedule,
                Some(next),
                t(3),
            )],
            "host-a",
        )
        .await
        .unwrap();
    assert_eq!(applied, vec![true]);
    let row = store.task_instance(&k).await.unwrap().unwrap();
    assert_eq!(
        (row.state, row.retry_at, row.end_date),
        (TaskState::UpForReschedule, Some(next), Some(t(3)))
    );
    let rows = store.reschedules(&k, first).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (
            rows[0].start_date,
            rows[0].end_date,
            rows[0].reschedule_date,
            rows[0].map_index
        ),
        (t(2), t(3), next, -1)
    );

    let second = poke_again(store, &k, t(4)).await;
    assert_eq!(second, first, "the next poke is the same try");
    let row = store.task_instance(&k).await.unwrap().unwrap();
    assert_eq!(
        (row.retry_at, row.end_date),
        (None, None),
        "the poke starts clean"
    );
    assert!(
        store
            .finish_try(&k, second, TaskState::UpForReschedule, Some(t(6)), t(5))
            .await
            .unwrap()
    );
    let rows = store.reschedules(&k, first).await.unwrap();
    let dates: Vec<_> = rows
        .iter()
        .map(|r| (r.start_date, r.reschedule_date))
        .collect();
    assert_eq!(
        dates,
        vec![(t(2), next), (t(4), t(6))],
        "oldest first: the first is the first poke"
    );

    let third = poke_again(store, &k, t(6)).await;
    assert!(
        store
            .finish_try(&k, third, TaskState::Success, None, t(7))
            .await
            .unwrap()
    );
    assert_eq!(
        store.reschedules(&k, first).await.unwrap().len(),
        2,
        "success writes no row"
    );
    let tries = store.tries(&k).await.unwrap();
    assert_eq!(
        tries
            .iter()
            .map(|t| (t.try_number, t.state))
            .collect::<Vec<_>>(),
        vec![(1, TaskState::Success)],
        "the pokes were one try"
    );
    assert_eq!(
        store.task_instance(&k).await.unwrap().unwrap().max_tries,
        3,
        "no try spent"
    );
}

pub async fn a_poke_that_does_not_apply_writes_no_row(store: &dyn Store) {
    let run = running_run(store, &[ti("s", 1)]).await;
    let k = key(&run, "s");
    let first = start_try(store, &run, "s", t(2)).await;
    let stale = store
        .record_try_reports(
            &[poked(
                &k,
                first + 1,
                TaskState::UpForReschedule,
                Some(t(4)),
                t(3),
            )],
            "host-a",
        )
        .await
        .unwrap();
    assert_eq!(stale, vec![false]);
    assert!(store.reschedules(&k, first).await.unwrap().is_empty());
    assert!(store.reschedules(&k, first + 1).await.unwrap().is_empty());
    assert_eq!(
        store.task_instance(&k).await.unwrap().unwrap().state,
        TaskState::Running
    );
}

pub async fn a_sensor_s_retry_after_pokes_is_a_new_try_without_rows(store: &dyn Store) {
    let run = running_run(store, &[ti("s", 2)]).await;
    let k = key(&run, "s");
    let first = start_try(store, &run, "s", t(2)).await;
    assert!(
        store
            .finish_try(&k, first, TaskState::UpForReschedule, Some(t(3)), t(2))
            .await
            .unwrap()
    );
    let again = poke_again(store, &k, t(3)).await;
    assert!(
        store
            .finish_try(&k, again, TaskState::UpForRetry, Some(t(4)), t(3))
            .await
            .unwrap()
    );
    let second = start_try(store, &run, "s", t(4)).await;
    assert_eq!(second, first + 1, "a retry is a new try");
    assert!(store.reschedules(&k, second).await.unwrap().is_empty());
    assert_eq!(store.reschedules(&k, first).await.unwrap().len(), 1);
}

pub async fn clearing_or_deleting_removes_reschedules(store: &dyn Store) {
    let run = running_run(store, &[ti("s", 1), ti("other", 1)]).await;
    let k = key(&run, "s");
    let other = key(&run, "other");
    let n = start_try(store, &run, "s", t(2)).await;
    assert!(
        store
            .finish_try(&k, n, TaskState::UpForReschedule, Some(t(3)), t(2))
            .await
            .unwrap()
    );
    let m = start_try(store, &run, "other", t(2)).await;
    assert!(
        store
            .finish_try(&other, m, TaskState::UpForReschedule, Some(t(3)), t(2))
            .await
            .unwrap()
    );
    store
        .clear_task_instances(run.id, &["s".to_owned()], t(3))
        .await
        .unwrap();
    assert!(
        store.reschedules(&k, n).await.unwrap().is_empty(),
        "cleared: its rows go"
    );
    assert_eq!(
        store.reschedules(&other, m).await.unwrap().len(),
        1,
        "the other instance keeps its own"
    );
    assert!(store.delete_run(run.id).await.unwrap());
    assert!(
        store.reschedules(&other, m).await.unwrap().is_empty(),
        "they go with their run"
    );
}

pub async fn external_state_reads_one_run_of_the_tenant(store: &dyn Store) {
    let run = running_run(store, &[ti("a", 1)]).await;
    let n = start_try(store, &run, "a", t(2)).await;
    assert!(
        store
            .finish_try(&key(&run, "a"), n, TaskState::Success, None, t(3))
            .await
            .unwrap()
    );
    let at = run.logical_date;
    assert_eq!(
        store
            .external_state("acme", "d", at, None)
            .await
            .unwrap()
            .as_deref(),
        Some("running")
    );
    assert_eq!(
        store
            .external_state("acme", "d", at, Some("a"))
            .await
            .unwrap()
            .as_deref(),
        Some("success")
    );
    assert_eq!(
        store
            .external_state("acme", "d", at, Some("missing"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .external_state("acme", "d", at + Duration::hours(1), None)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.external_state("globex", "d", at, None).await.unwrap(),
        None,
        "another tenant's run"
    );
    assert_eq!(
        store
            .external_state("globex", "d", at, Some("a"))
            .await
            .unwrap(),
        None
    );
}
