//! `trigger_dag_run` tasks through a live scheduler on a real SQLite store: the task starts
//! another DAG's run with its rendered conf and pushes the run's id (`trigger_run_id`); with
//! `wait_for_completion` it frees its slot and follows that run to its end; an existing run
//! fails it, skips it or is cleared to run again; another tenant's DAG cannot be started.
//! Also mapped sensors: each instance pokes and reschedules on its own.

mod common;

use common::live::{Ctx, DEADLINE, with_scheduler};

use chrono::{TimeZone, Utc};
use updraft_core::{RunState, TaskState};
use updraft_store::{NewestRunsFilter, ReadStore, RunRow, TiKey, XComQuery, XComStore};

const CHILD: &str = "dag_id: child\nparams:\n  day: \"none\"\ntasks:\n  - task_id: work\n    bash: \"echo working on {{ params.day }}\"\n";

/// The runs of `dag_id`, oldest first.
async fn runs_of(ctx: &Ctx, dag_id: &str) -> Vec<RunRow> {
    let filter = NewestRunsFilter {
        dag_id: Some(dag_id.to_owned()),
        states: vec![],
        limit: None,
    };
    let mut runs = ctx.store.newest_runs(&filter).await.unwrap();
    runs.reverse();
    runs
}

/// The `trigger_run_id` XCom `task_id` (at `map_index`) of `run` pushed.
async fn trigger_run_id(ctx: &Ctx, run: &RunRow, task_id: &str, map_index: i64) -> String {
    let query = XComQuery {
        run_pk: run.id,
        task_ids: Some(vec![task_id.to_owned()]),
        map_index: Some(map_index),
        key: Some("trigger_run_id".to_owned()),
        limit: None,
        offset: 0,
    };
    let (rows, _) = ctx.store.xcoms(&query).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    serde_json::from_str(&rows[0].value).unwrap()
}

/// Waits until `run` of `dag_id` (by run id) has finished.
async fn finished_run(ctx: &Ctx, dag_id: &str, run_id: &str) -> RunRow {
    common::eventually(&format!("run {run_id} to finish"), DEADLINE, || async {
        let row = ctx.store.run(dag_id, run_id).await.unwrap()?;
        row.state.is_finished().then_some(row)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_starts_another_dag_s_run_with_its_rendered_conf() {
    let parent = "dag_id: parent\ntasks:\n  - task_id: start\n    trigger_dag_run:\n      trigger_dag_id: child\n      conf:\n        day: \"{{ ds }}\"\n        parent_run: \"{{ run_id }}\"\n  - task_id: fan\n    expand:\n      day: [\"2024-02-01\", \"2024-02-02\"]\n    trigger_dag_run:\n      trigger_dag_id: child\n      trigger_run_id: \"fan_{{ mapped.day }}\"\n      conf: {day: \"{{ mapped.day }}\"}\n  - task_id: after\n    bash: echo after\n    upstream: [start, fan]\n";
    with_scheduler(
        &[("parent.yaml", parent), ("child.yaml", CHILD)],
        &[],
        |ctx| async move {
            let logical = Utc.with_ymd_and_hms(2024, 1, 15, 0, 0, 0).unwrap();
            let run = ctx
                .trigger("parent", Some(logical), serde_json::json!({}))
                .await;
            let (state, tasks) = ctx.finished(&run).await;
            assert_eq!(state, RunState::Success, "{tasks:?}");
            assert_eq!(
                ctx.reschedules(&run, "start", 1).await,
                0,
                "without wait_for_completion the first poke is the whole try"
            );

            let started = trigger_run_id(&ctx, &run, "start", -1).await;
            let child = finished_run(&ctx, "child", &started).await;
            assert_eq!(child.state, RunState::Success);
            assert_eq!(child.run_type, updraft_core::RunType::Manual);
            assert!(child.run_id.starts_with("manual__"), "{}", child.run_id);
            assert_eq!(
                child.conf,
                serde_json::json!({"day": "2024-01-15", "parent_run": run.run_id})
            );

            for (index, day) in [(0, "2024-02-01"), (1, "2024-02-02")] {
                let run_id = trigger_run_id(&ctx, &run, "fan", index).await;
                assert_eq!(run_id, format!("fan_{day}"));
                let fanned = finished_run(&ctx, "child", &run_id).await;
                assert_eq!(fanned.conf, serde_json::json!({"day": day}));
            }
            assert_eq!(runs_of(&ctx, "child").await.len(), 3);
            let work = ctx.log(&child, "work", 1);
            assert!(work.contains("working on 2024-01-15"), "{work}");
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_completion_frees_the_slot_and_follows_the_run_to_its_end() {
    let parent = "dag_id: parent\ntasks:\n  - task_id: start\n    trigger_dag_run:\n      trigger_dag_id: gated\n      wait_for_completion: true\n      poke_interval: 1s\n  - task_id: after\n    bash: echo after\n    upstream: [start]\n";
    let gated = "dag_id: gated\ntasks:\n  - task_id: gate\n    sensor:\n      path: \"{data}/go\"\n      poke_interval: 1s\n";
    with_scheduler(
        &[("parent.yaml", parent), ("gated.yaml", gated)],
        &[],
        |ctx| async move {
            let run = ctx.trigger("parent", None, serde_json::json!({})).await;
            let waiting = ctx.until(&run, "start", TaskState::UpForReschedule).await;
            assert_eq!(waiting.pid, None, "waiting holds no process");
            let started = trigger_run_id(&ctx, &run, "start", -1).await;
            let child = ctx.store.run("gated", &started).await.unwrap().unwrap();
            assert!(
                !child.state.is_finished(),
                "the started run waits for its file"
            );
            common::eventually("a second poke of the trigger", DEADLINE, || async {
                (ctx.reschedules(&run, "start", 1).await >= 2).then_some(())
            })
            .await;
            assert_eq!(runs_of(&ctx, "gated").await.len(), 1, "pokes start no run");

            std::fs::write(ctx.data.join("go"), "").unwrap();
            let (state, tasks) = ctx.finished(&run).await;
            assert_eq!(state, RunState::Success, "{tasks:?}");
            let child = ctx.store.run("gated", &started).await.unwrap().unwrap();
            assert_eq!(child.state, RunState::Success);
            let start = ctx.ti(&run, "start").await;
            assert!(
                start.end_date >= child.end_date,
                "the trigger ended after its run"
            );
            assert_eq!(trigger_run_id(&ctx, &run, "start", -1).await, started);
            let log = ctx.log(&run, "start", 1);
            assert!(
                log.contains(&format!("run {started} of DAG gated is success")),
                "{log}"
            );
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_ending_in_a_failed_state_fails_the_waiting_trigger() {
    let parent = "dag_id: parent\ntasks:\n  - task_id: start\n    trigger_dag_run:\n      trigger_dag_id: broken\n      wait_for_completion: true\n      poke_interval: 1s\n";
    let broken = "dag_id: broken\ntasks:\n  - task_id: fail\n    bash: exit 3\n";
    with_scheduler(
        &[("parent.yaml", parent), ("broken.yaml", broken)],
        &[],
        |ctx| async move {
            let run = ctx.trigger("parent", None, serde_json::json!({})).await;
            let (state, tasks) = ctx.finished(&run).await;
            assert_eq!(state, RunState::Failed, "{tasks:?}");
            assert_eq!(tasks["start"], TaskState::Failed);
            let started = trigger_run_id(&ctx, &run, "start", -1).await;
            let child = ctx.store.run("broken", &started).await.unwrap().unwrap();
            assert_eq!(child.state, RunState::Failed);
            let log = ctx.log(&run, "start", 1);
            assert!(log.contains("one of the failed_states"), "{log}");
        },
    )
    .await;
}

/// A parent whose `start` triggers run `fixed` of `child`, with `extra` trigger keys.
fn fixed_run_parent(dag_id: &str, extra: &str) -> String {
    format!(
        "dag_id: {dag_id}\ntasks:\n  - task_id: start\n    trigger_dag_run:\n      trigger_dag_id: child\n      trigger_run_id: fixed\n      wait_for_completion: true\n      poke_interval: 1s\n{extra}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_run_fails_the_trigger_skips_it_or_runs_again() {
    let refuse = fixed_run_parent("refuse", "");
    let skip = fixed_run_parent("skip", "      skip_when_already_exists: true\n");
    let reset = fixed_run_parent("reset", "      reset_dag_run: true\n");
    let files = [
        ("child.yaml", CHILD),
        ("refuse.yaml", refuse.as_str()),
        ("skip.yaml", skip.as_str()),
        ("reset.yaml", reset.as_str()),
    ];
    with_scheduler(&files, &[], |ctx| async move {
        ctx.trigger("child", None, serde_json::json!({})).await;
        let first = runs_of(&ctx, "child").await.remove(0);
        let existing = updraft_runs::trigger_run(
            ctx.store.as_ref(),
            "child",
            Some("fixed".to_owned()),
            Some(first.logical_date + chrono::TimeDelta::days(1)),
            serde_json::json!({}),
            Utc::now(),
        )
        .await
        .unwrap();
        ctx.waker.notify_one();
        let (state, _) = ctx.finished(&existing).await;
        assert_eq!(state, RunState::Success);
        let key = TiKey {
            run_pk: existing.id,
            task_id: "work".to_owned(),
            map_index: -1,
        };
        assert_eq!(
            ctx.store
                .task_instance(&key)
                .await
                .unwrap()
                .unwrap()
                .try_number,
            1
        );

        let refused = ctx.trigger("refuse", None, serde_json::json!({})).await;
        let (_, tasks) = ctx.finished(&refused).await;
        assert_eq!(tasks["start"], TaskState::Failed);
        let log = ctx.log(&refused, "start", 1);
        assert!(log.contains("DAG child already has run fixed"), "{log}");

        let skipped = ctx.trigger("skip", None, serde_json::json!({})).await;
        let (_, tasks) = ctx.finished(&skipped).await;
        assert_eq!(tasks["start"], TaskState::Skipped);

        let reset = ctx.trigger("reset", None, serde_json::json!({})).await;
        let (state, tasks) = ctx.finished(&reset).await;
        assert_eq!(state, RunState::Success, "{tasks:?}");
        let work = ctx.store.task_instance(&key).await.unwrap().unwrap();
        assert_eq!(
            (work.state, work.try_number),
            (TaskState::Success, 2),
            "reset_dag_run cleared the run, which ran again"
        );
        assert_eq!(runs_of(&ctx, "child").await.len(), 2, "no run was added");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenant_s_dag_cannot_be_triggered() {
    let parent = "dag_id: parent\ntasks:\n  - task_id: start\n    trigger_dag_run:\n      trigger_dag_id: private\n";
    let private = "dag_id: private\ntasks:\n  - task_id: work\n    bash: echo private\n";
    with_scheduler(
        &[
            ("alpha/parent.yaml", parent),
            ("beta/private.yaml", private),
        ],
        &[],
        |ctx| async move {
            common::eventually("`private` to be loaded", DEADLINE, || async {
                ctx.store.dag("private").await.unwrap()
            })
            .await;
            let run = ctx.trigger("parent", None, serde_json::json!({})).await;
            assert_eq!(run.tenant, "alpha");
            let (state, tasks) = ctx.finished(&run).await;
            assert_eq!(state, RunState::Failed);
            assert_eq!(tasks["start"], TaskState::Failed);
            let log = ctx.log(&run, "start", 1);
            assert!(log.contains("tenant alpha has no DAG private"), "{log}");
            assert!(runs_of(&ctx, "private").await.is_empty());
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_instance_of_a_mapped_sensor_pokes_on_its_own() {
    let dag = "dag_id: mapped_wait\ntasks:\n  - task_id: wait\n    expand:\n      name: [one, two]\n    sensor:\n      path: \"{data}/{{ mapped.name }}\"\n      poke_interval: 1s\n";
    with_scheduler(&[("mapped_wait.yaml", dag)], &[], |ctx| async move {
        std::fs::write(ctx.data.join("one"), "").unwrap();
        let run = ctx
            .trigger("mapped_wait", None, serde_json::json!({}))
            .await;
        let key = |map_index| TiKey {
            run_pk: run.id,
            task_id: "wait".to_owned(),
            map_index,
        };
        let waiting = common::eventually("instance 1 to wait", DEADLINE, || async {
            let ti = ctx.store.task_instance(&key(1)).await.unwrap()?;
            (ti.state == TaskState::UpForReschedule).then_some(ti)
        })
        .await;
        assert_eq!(waiting.try_number, 1);
        let first = common::eventually("instance 0 to succeed", DEADLINE, || async {
            let ti = ctx.store.task_instance(&key(0)).await.unwrap()?;
            (ti.state == TaskState::Success).then_some(ti)
        })
        .await;
        assert_eq!(first.try_number, 1);
        assert!(ctx.store.reschedules(&key(0), 1).await.unwrap().is_empty());
        let pokes = ctx.store.reschedules(&key(1), 1).await.unwrap();
        assert!(!pokes.is_empty());
        assert!(pokes.iter().all(|row| row.map_index == 1), "{pokes:?}");

        std::fs::write(ctx.data.join("two"), "").unwrap();
        let (state, _) = ctx.finished(&run).await;
        assert_eq!(state, RunState::Success);
    })
    .await;
}
