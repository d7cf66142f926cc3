//! Assets through a live scheduler on a real SQLite store: a producer's successful try
//! records its outlets' events and triggers the consumers whose conditions they satisfy (`|`
//! at once, `&` once every asset has an event), each event consumed once per consumer; a
//! failed try records nothing; an event recorded by hand triggers like any other; another
//! tenant's DAG naming the same URI is never triggered.

mod common;

use common::eventually;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::oneshot;
use updraft_core::{RunState, RunType};
use updraft_scheduler::{Scheduler, SchedulerConfig};
use updraft_store::{
    AssetEventQuery, AssetStore, NewAssetEvent, NewestRunsFilter, ReadStore, RunRow, SqliteStore,
    Store,
};

const DEADLINE: Duration = Duration::from_secs(60);

fn config(dags: &Path, logs: &Path) -> SchedulerConfig {
    SchedulerConfig {
        // Long: the runs must come from the events, not from a poll.
        poll_interval: Duration::from_secs(600),
        ..common::config(dags, logs, "assets-test")
    }
}

fn write_dag(dags: &Path, tenant: &str, dag_id: &str, body: &str) {
    let dir = dags.join(tenant);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(format!("{dag_id}.yaml")),
        format!("dag_id: {dag_id}\n{body}"),
    )
    .unwrap();
}

async fn asset_runs(store: &SqliteStore, dag_id: &str) -> Vec<RunRow> {
    let mut runs = store
        .newest_runs(&NewestRunsFilter {
            dag_id: Some(dag_id.to_owned()),
            states: vec![],
            limit: None,
        })
        .await
        .unwrap();
    runs.retain(|r| r.run_type == RunType::AssetTriggered);
    runs.sort_by_key(|r| r.id);
    runs
}

/// Waits until `dag_id` has `n` asset-triggered runs, all finished; returns them oldest first.
async fn wait_for_runs(store: &SqliteStore, dag_id: &str, n: usize) -> Vec<RunRow> {
    eventually(
        &format!("{n} finished asset-triggered runs of `{dag_id}`"),
        DEADLINE,
        || async {
            let runs = asset_runs(store, dag_id).await;
            (runs.len() == n && runs.iter().all(|r| r.state.is_finished())).then_some(runs)
        },
    )
    .await
}

/// The (source DAG, URI) of each event a run consumed.
async fn consumed(store: &SqliteStore, run: &RunRow) -> Vec<(String, String)> {
    store
        .consumed_asset_events(run.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.source_dag_id.unwrap_or_default(), e.uri))
        .collect()
}

async fn run_producer(store: &SqliteStore, waker: &tokio::sync::Notify, dag_id: &str) -> RunState {
    let run =
        updraft_runs::trigger_run(store, dag_id, None, None, serde_json::json!({}), Utc::now())
            .await
            .unwrap();
    waker.notify_one();
    eventually(&format!("the run of `{dag_id}`"), DEADLINE, || async {
        let row = store.run_by_pk(run.id).await.unwrap()?;
        row.state.is_finished().then_some(row.state)
    })
    .await
}

fn pair(dag: &str, uri: &str) -> (String, String) {
    (dag.to_owned(), uri.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_trigger_their_tenants_consumers_once_per_event() {
    let dir = tempfile::tempdir().unwrap();
    let dags = dir.path().join("dags");
    let logs = dir.path().join("logs");
    let store = common::migrated_store(dir.path()).await;
    let task = |outlets: &str, script: &str| {
        format!("tasks:\n  - task_id: t\n    bash: '{script}'\n    outlets: {outlets}\n")
    };
    write_dag(&dags, "a", "producer_x", &task("[s3://x]", "true"));
    write_dag(
        &dags,
        "a",
        "producer_y",
        &task("[{uri: s3://y, extra: {rows: 3}}]", "true"),
    );
    write_dag(&dags, "a", "failing_y", &task("[s3://y]", "exit 1"));
    let consumer = "tasks:\n  - task_id: t\n    bash: 'true'\n";
    write_dag(
        &dags,
        "a",
        "on_either",
        &format!("schedule: \"s3://x | s3://y\"\n{consumer}"),
    );
    write_dag(
        &dags,
        "a",
        "on_both",
        &format!("schedule: [s3://x, s3://y]\n{consumer}"),
    );
    write_dag(
        &dags,
        "b",
        "other_tenant",
        &format!("schedule: [s3://x]\n{consumer}"),
    );

    let dyn_store: Arc<dyn Store> = store.clone();
    let mut scheduler = Scheduler::new(dyn_store, config(&dags, &logs)).unwrap();
    let waker = scheduler.waker();
    let (stop, stopped) = oneshot::channel::<()>();
    let scheduling = scheduler.run(async {
        let _ = stopped.await;
    });
    let checks = async {
        for dag_id in [
            "producer_x",
            "producer_y",
            "failing_y",
            "on_either",
            "on_both",
            "other_tenant",
        ] {
            eventually(&format!("`{dag_id}` to be loaded"), DEADLINE, || async {
                store.dag(dag_id).await.unwrap()
            })
            .await;
        }

        // `|`: one producer is enough; `&` waits for the other asset.
        assert_eq!(
            run_producer(&store, &waker, "producer_x").await,
            RunState::Success
        );
        let either = wait_for_runs(&store, "on_either", 1).await;
        assert_eq!(either[0].state, RunState::Success);
        assert_eq!(
            consumed(&store, &either[0]).await,
            [pair("producer_x", "s3://x")]
        );
        // The same step decided on_both: nothing yet.
        assert!(asset_runs(&store, "on_both").await.is_empty());

        // A failed try records no event.
        assert_eq!(
            run_producer(&store, &waker, "failing_y").await,
            RunState::Failed
        );
        let y_events = |store: Arc<SqliteStore>| async move {
            let (events, _) = store
                .asset_events(&AssetEventQuery {
                    source_dag_id: Some("failing_y".into()),
                    ..Default::default()
                })
                .await
                .unwrap();
            events
        };
        assert!(y_events(store.clone()).await.is_empty());
        assert!(asset_runs(&store, "on_both").await.is_empty());

        // The second asset completes `&`, consuming the x event kept queued since; `|` runs
        // again for y alone (x was consumed by its first run).
        assert_eq!(
            run_producer(&store, &waker, "producer_y").await,
            RunState::Success
        );
        let both = wait_for_runs(&store, "on_both", 1).await;
        assert_eq!(
            consumed(&store, &both[0]).await,
            [pair("producer_x", "s3://x"), pair("producer_y", "s3://y")]
        );
        let either = wait_for_runs(&store, "on_either", 2).await;
        let second = store.consumed_asset_events(either[1].id).await.unwrap();
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].uri, "s3://y");
        assert_eq!(second[0].extra, serde_json::json!({"rows": 3}));
        assert_eq!(second[0].source_task_id.as_deref(), Some("t"));
        assert_eq!(
            second[0].source_run_id.as_deref(),
            Some(
                store
                    .newest_runs(&NewestRunsFilter {
                        dag_id: Some("producer_y".into()),
                        states: vec![],
                        limit: None
                    })
                    .await
                    .unwrap()[0]
                    .run_id
                    .as_str()
            )
        );

        // An event recorded by hand (as the API does) triggers like any other.
        store
            .record_asset_events(&[NewAssetEvent {
                tenant: "a".into(),
                uri: "s3://y".into(),
                source_map_index: -1,
                timestamp: Utc::now(),
                ..Default::default()
            }])
            .await
            .unwrap();
        waker.notify_one();
        let either = wait_for_runs(&store, "on_either", 3).await;
        let third = consumed(&store, &either[2]).await;
        assert_eq!(third, [pair("", "s3://y")]);
        // on_both has a y but no new x: still one run.
        assert_eq!(asset_runs(&store, "on_both").await.len(), 1);

        // Tenant b's DAG names s3://x too, and never ran: its x is another asset.
        assert!(asset_runs(&store, "other_tenant").await.is_empty());
        assert!(
            store
                .queued_asset_events()
                .await
                .unwrap()
                .iter()
                .all(|q| q.dag_id == "on_both")
        );
        stop.send(()).unwrap();
    };
    let (scheduled, ()) = tokio::join!(scheduling, checks);
    scheduled.unwrap();
}
