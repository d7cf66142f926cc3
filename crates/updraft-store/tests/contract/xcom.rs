//! Scenarios of [`XComStore`]: what tries push, read back per task, map index and key; a new
//! try hiding and then replacing its predecessor's values; stale tries writing nothing; the
//! API's writes; XComs going with their run.

use chrono::Duration;
use updraft_core::TaskState;
use updraft_store::{
    NOT_MAPPED, Store, StoreError, TryXComs, WriteMode, XComEntry, XComQuery, XComWrite,
};

use super::{key, running_run, start_try, t, ti};

fn entry(key: &str, value: &str) -> XComEntry {
    XComEntry {
        key: key.to_owned(),
        value: value.to_owned(),
    }
}

fn pushed(run_pk: i64, task_id: &str, try_number: u32, entries: &[XComEntry]) -> TryXComs {
    TryXComs {
        run_pk,
        task_id: task_id.to_owned(),
        try_number,
        map_index: NOT_MAPPED,
        entries: entries.to_vec(),
    }
}

fn of_run(run_pk: i64) -> XComQuery {
    XComQuery {
        run_pk,
        ..Default::default()
    }
}

/// `(task_id, key, value)` of each XCom `query` finds, in order.
async fn listed(store: &dyn Store, query: &XComQuery) -> Vec<(String, String, String)> {
    let (rows, _) = store.xcoms(query).await.unwrap();
    rows.into_iter()
        .map(|r| (r.task_id, r.key, r.value))
        .collect()
}

fn row(task_id: &str, key: &str, value: &str) -> (String, String, String) {
    (task_id.to_owned(), key.to_owned(), value.to_owned())
}

pub async fn xcoms_pushed_by_tries_are_read_back_by_task_key_and_page(store: &dyn Store) {
    let run = running_run(store, &[ti("a", 1), ti("b", 1), ti("c", 1)]).await;
    let a = start_try(store, &run, "a", t(2)).await;
    let b = start_try(store, &run, "b", t(2)).await;
    let recorded = store
        .record_xcoms(
            &[
                pushed(
                    run.id,
                    "a",
                    a,
                    &[entry("return_value", "\"hi\""), entry("n", "3")],
                ),
                pushed(run.id, "b", b, &[entry("return_value", "{\"x\":[1,2]}")]),
            ],
            t(3),
        )
        .await
        .unwrap();
    assert_eq!(recorded, [true, true]);

    assert_eq!(
        listed(store, &of_run(run.id)).await,
        [
            row("a", "n", "3"),
            row("a", "return_value", "\"hi\""),
            row("b", "return_value", "{\"x\":[1,2]}"),
        ]
    );
    let (rows, total) = store
        .xcoms(&XComQuery {
            task_ids: Some(vec!["a".into()]),
            limit: Some(1),
            offset: 1,
            ..of_run(run.id)
        })
        .await
        .unwrap();
    assert_eq!(total, 2, "the total counts every match, not the page");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].key, "return_value");
    assert_eq!(rows[0].map_index, NOT_MAPPED);
    assert_eq!(rows[0].timestamp, t(3));
    let by_key = XComQuery {
        key: Some("return_value".into()),
        map_index: Some(NOT_MAPPED),
        ..of_run(run.id)
    };
    assert_eq!(store.xcoms(&by_key).await.unwrap().1, 2);
    let other_index = XComQuery {
        map_index: Some(0),
        ..of_run(run.id)
    };
    assert_eq!(store.xcoms(&other_index).await.unwrap().1, 0);
    assert_eq!(
        store.xcoms(&of_run(run.id + 1000)).await.unwrap().1,
        0,
        "another run has none"
    );
    assert!(
        store.record_xcoms(&[], t(3)).await.unwrap().is_empty(),
        "nothing pushed, nothing written"
    );
}

pub async fn xcoms_of_a_new_try_hide_then_replace_the_previous_try(store: &dyn Store) {
    let run = running_run(store, &[ti("a", 3)]).await;
    let first = start_try(store, &run, "a", t(2)).await;
    store
        .record_xcoms(
            &[pushed(
                run.id,
                "a",
                first,
                &[entry("old", "1"), entry("k", "1")],
            )],
            t(2),
        )
        .await
        .unwrap();
    store
        .finish_try(&key(&run, "a"), first, TaskState::Failed, None, t(3))
        .await
        .unwrap();
    assert_eq!(listed(store, &of_run(run.id)).await.len(), 2);

    let second = start_try(store, &run, "a", t(4)).await;
    assert_eq!(second, first + 1);
    assert!(
        listed(store, &of_run(run.id)).await.is_empty(),
        "a new try does not see the values of the one before"
    );
    let stale = store
        .record_xcoms(&[pushed(run.id, "a", first, &[entry("late", "1")])], t(4))
        .await
        .unwrap();
    assert_eq!(stale, [false], "a try no longer current writes nothing");
    store
        .record_xcoms(&[pushed(run.id, "a", second, &[entry("k", "2")])], t(5))
        .await
        .unwrap();
    assert_eq!(listed(store, &of_run(run.id)).await, [row("a", "k", "2")]);
}

pub async fn xcoms_written_by_users_need_their_task_instance_and_respect_modes(store: &dyn Store) {
    let run = running_run(store, &[ti("a", 1)]).await;
    let write = |key: &'static str, value: &'static str| XComWrite {
        run_pk: run.id,
        task_id: "a",
        map_index: NOT_MAPPED,
        key,
        value,
    };
    let created = store
        .write_xcom(&write("k", "1"), WriteMode::Create, t(1))
        .await
        .unwrap();
    assert_eq!((created.key.as_str(), created.value.as_str()), ("k", "1"));
    assert!(matches!(
        store
            .write_xcom(&write("k", "2"), WriteMode::Create, t(1))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store
            .write_xcom(&write("nope", "2"), WriteMode::Update, t(1))
            .await,
        Err(StoreError::NotFound(_))
    ));
    let updated = store
        .write_xcom(
            &write("k", "[2]"),
            WriteMode::Update,
            t(1) + Duration::seconds(1),
        )
        .await
        .unwrap();
    assert_eq!(updated.value, "[2]");
    assert_eq!(listed(store, &of_run(run.id)).await, [row("a", "k", "[2]")]);
    let missing = XComWrite {
        task_id: "ghost",
        ..write("k", "1")
    };
    assert!(matches!(
        store.write_xcom(&missing, WriteMode::Create, t(1)).await,
        Err(StoreError::NotFound(_))
    ));

    // A value of an earlier try is invisible and does not conflict with a new one.
    let first = start_try(store, &run, "a", t(2)).await;
    store
        .record_xcoms(
            &[pushed(run.id, "a", first, &[entry("k", "\"try\"")])],
            t(2),
        )
        .await
        .unwrap();
    store
        .finish_try(&key(&run, "a"), first, TaskState::Failed, None, t(3))
        .await
        .unwrap();
    store
        .clear_task_instances(run.id, &["a".to_owned()], t(3))
        .await
        .unwrap();
    let again = start_try(store, &run, "a", t(4)).await;
    assert!(again > first);
    store
        .write_xcom(&write("k", "\"user\""), WriteMode::Create, t(4))
        .await
        .unwrap();
    assert_eq!(
        listed(store, &of_run(run.id)).await,
        [row("a", "k", "\"user\"")]
    );
}

pub async fn xcoms_go_with_their_run(store: &dyn Store) {
    let run = running_run(store, &[ti("a", 1)]).await;
    let a = start_try(store, &run, "a", t(2)).await;
    store
        .record_xcoms(&[pushed(run.id, "a", a, &[entry("k", "1")])], t(2))
        .await
        .unwrap();
    assert!(store.delete_run(run.id).await.unwrap());
    assert_eq!(store.xcoms(&of_run(run.id)).await.unwrap().1, 0);
    let again = running_run_named(store, "r2").await;
    assert_eq!(
        store.xcoms(&of_run(again.id)).await.unwrap().1,
        0,
        "a new run (perhaps reusing the primary key) starts with none"
    );
}

async fn running_run_named(store: &dyn Store, run_id: &str) -> updraft_store::RunRow {
    let d = super::dag("d");
    let run = store
        .create_run(
            &super::new_run(&d, run_id, updraft_core::RunType::Manual, 5),
            &[ti("a", 1)],
            t(6),
        )
        .await
        .unwrap();
    run
}
