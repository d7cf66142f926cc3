//! Scenarios of [`Store::record_evaluate_and_queue`], the scheduler's step after tries ended:
//! reports recorded, runs evaluated and what became runnable queued, in one transaction.

use std::sync::{Arc, Mutex};

use updraft_core::evaluate::TiSnapshot;
use updraft_core::{RunState, RunType, TaskState};
use updraft_store::{
    Evaluated, PoolRow, QueueChoice, QueueLimits, QueueRoom, QueueSelector, QueueStep, RunDecision,
    RunRow, ScheduledSkip, StepOutcome, Store, TiKey, TiRow, TryReport,
};

use super::{dag, ids, in_pool, job, key, limits, new_run, queue, running_run, sync, t, ti, to};

/// A selector that chooses the whole page (reversed, when asked) plus `extra` keys, with
/// `limits`, leaves out `skip`, and remembers the room and page it was shown.
#[derive(Default)]
struct TakeAll {
    reverse: bool,
    extra: Vec<TiKey>,
    limits: QueueLimits,
    skip: ScheduledSkip,
    shown: Mutex<Vec<(QueueRoom, Vec<String>)>>,
}

impl QueueSelector for TakeAll {
    fn skip(&self, _room: &QueueRoom) -> ScheduledSkip {
        self.skip.clone()
    }

    fn select(&self, scheduled: &[TiRow], room: &QueueRoom) -> QueueChoice {
        let page: Vec<String> = scheduled.iter().map(|ti| ti.task_id.clone()).collect();
        self.shown.lock().unwrap().push((room.clone(), page));
        let mut keys: Vec<TiKey> = scheduled
            .iter()
            .map(|ti| TiKey {
                run_pk: ti.run_pk,
                task_id: ti.task_id.clone(),
                map_index: ti.map_index,
            })
            .collect();
        if self.reverse {
            keys.reverse();
        }
        keys.extend(self.extra.iter().cloned());
        QueueChoice {
            keys,
            limits: self.limits.clone(),
        }
    }
}

impl TakeAll {
    fn shown(&self) -> Vec<(QueueRoom, Vec<String>)> {
        self.shown.lock().unwrap().clone()
    }
}

/// A selector that must not be asked.
struct NeverAsked;

/// A step for `owner` that records and evaluates but queues nothing (a page of zero).
pub fn without_queueing(owner: i64) -> QueueStep<'static> {
    QueueStep {
        owner,
        page: 0,
        selector: &NeverAsked,
    }
}

impl QueueSelector for NeverAsked {
    fn skip(&self, _room: &QueueRoom) -> ScheduledSkip {
        panic!("asked to skip with nothing to queue")
    }

    fn select(&self, _scheduled: &[TiRow], _room: &QueueRoom) -> QueueChoice {
        panic!("asked to select with nothing to queue")
    }
}

/// A decision that schedules every instance still `none`.
fn schedule_all(_: &RunRow, tis: &[TiSnapshot]) -> RunDecision {
    RunDecision {
        transitions: tis
            .iter()
            .filter(|ti| ti.state == TaskState::None)
            .map(|ti| to(&ti.task_id, TaskState::None, TaskState::Scheduled))
            .collect(),
        run_state: None,
    }
}

fn finished(run: &RunRow, task_id: &str, try_number: u32, at: i64) -> TryReport {
    TryReport::Finished {
        key: key(run, task_id),
        try_number,
        new: TaskState::Success,
        retry_at: None,
        at: t(at),
        skip: vec![],
    }
}

/// The chain's edge: the upstream's end recorded, the run evaluated (seeing that end), the
/// downstream it made runnable queued with a new try owned by the caller, all in one call,
/// with the room the selector sees counted after the report.
pub async fn step_records_evaluates_and_queues_in_one_call(store: &dyn Store) {
    let run = running_run(store, &[ti("a", 1), ti("b", 1)]).await;
    super::schedule(store, &run, &["a"], t(2)).await;
    assert_eq!(queue(store, &[key(&run, "a")], t(2)).await.len(), 1);
    let owner = job(store).await;
    let decide = |_: &RunRow, tis: &[TiSnapshot]| {
        let a = tis.iter().find(|ti| ti.task_id == "a").unwrap();
        assert_eq!(a.state, TaskState::Success, "the report is visible");
        RunDecision {
            transitions: vec![to("b", TaskState::None, TaskState::Scheduled)],
            run_state: None,
        }
    };
    let selector = TakeAll::default();
    let step = QueueStep {
        owner,
        page: 10,
        selector: &selector,
    };
    let outcome = store
        .record_evaluate_and_queue(
            &[finished(&run, "a", 1, 3)],
            "host-a",
            &[run.id],
            &decide,
            &step,
            t(4),
        )
        .await
        .unwrap();
    assert_eq!(outcome.applied, [true]);
    assert!(matches!(
        outcome.evaluated.as_slice(),
        [(pk, Evaluated::Applied { applied: 1, .. })] if *pk == run.id
    ));
    assert_eq!(ids(&outcome.queued), ["b"]);
    assert_eq!(outcome.scheduled_read, 1);
    let b = &outcome.queued[0];
    assert_eq!(
        (b.state, b.try_number, b.queued_by_job_id, b.queued_at),
        (TaskState::Queued, 1, Some(owner), Some(t(4)))
    );
    assert_eq!(
        store.task_instance(&key(&run, "b")).await.unwrap().as_ref(),
        Some(b)
    );
    assert_eq!(store.tries(&key(&run, "b")).await.unwrap().len(), 1);
    let a = store.task_instance(&key(&run, "a")).await.unwrap().unwrap();
    assert_eq!((a.state, a.end_date), (TaskState::Success, Some(t(3))));
    let shown = selector.shown();
    assert_eq!(shown.len(), 1);
    let (room, page) = &shown[0];
    assert_eq!(page, &["b"]);
    assert_eq!(
        room.held.total, 0,
        "a's slot is free once its end is recorded"
    );
    assert_eq!(room.pool_slots.get("default_pool"), Some(&128));

    // Nothing new: the same reports no longer apply, nothing is left to queue.
    let outcome = store
        .record_evaluate_and_queue(
            &[finished(&run, "a", 1, 3)],
            "host-a",
            &[run.id],
            &schedule_all,
            &step,
            t(5),
        )
        .await
        .unwrap();
    assert_eq!(outcome.applied, [false]);
    assert!((outcome.queued.is_empty() && outcome.scheduled_read == 0));
}

/// With a page of zero nothing is queued and the selector is not asked; the reports and the
/// evaluation are recorded all the same. A run that is not running is reported so.
pub async fn step_with_an_empty_page_records_and_evaluates_only(store: &dyn Store) {
    let run = running_run(store, &[ti("a", 1), ti("b", 1)]).await;
    super::schedule(store, &run, &["a"], t(2)).await;
    assert_eq!(queue(store, &[key(&run, "a")], t(2)).await.len(), 1);
    let step = QueueStep {
        owner: job(store).await,
        page: 0,
        selector: &NeverAsked,
    };
    let outcome = store
        .record_evaluate_and_queue(
            &[finished(&run, "a", 1, 3)],
            "host-a",
            &[run.id, run.id + 1000],
            &schedule_all,
            &step,
            t(4),
        )
        .await
        .unwrap();
    assert_eq!(
        outcome,
        StepOutcome {
            applied: vec![true],
            evaluated: vec![
                (
                    run.id,
                    Evaluated::Applied {
                        decision: RunDecision {
                            transitions: vec![to("b", TaskState::None, TaskState::Scheduled)],
                            run_state: None,
                        },
                        applied: 1,
                    }
                ),
                (run.id + 1000, Evaluated::NotRunning),
            ],
            queued: vec![],
            scheduled_read: 0,
        }
    );
    assert_eq!(
        super::ti_state(store, &run, "b").await,
        TaskState::Scheduled
    );
}

/// What the selector chooses is queued only as `queue` would: in its order, once, only from
/// the page, within pool slots and `max_active_tasks`; the page holds at most `page`
/// instances, in priority order, without the DAGs and pools the selector leaves out, and only
/// of running runs.
pub async fn step_queues_only_what_the_room_admits(store: &dyn Store) {
    store
        .upsert_pool(&PoolRow {
            name: "p".into(),
            slots: 3,
            description: String::new(),
            tenant: None,
        })
        .await
        .unwrap();
    let (d, e, f) = (dag("d"), dag("e"), dag("f"));
    sync(store, &[&d, &e, &f], false).await;
    let weighted = |task_id: &str, pool: &str, slots: u32, weight: i64| {
        let mut new = in_pool(task_id, pool, slots);
        new.priority_weight = weight;
        new
    };
    let mut runs = Vec::new();
    for (hour, (dag, tis)) in [
        (
            &d,
            vec![
                weighted("a", "p", 2, 9),
                weighted("b", "p", 2, 8),
                weighted("c", "p", 1, 7),
                weighted("x", "default_pool", 1, 6),
                weighted("y", "default_pool", 1, 5),
                weighted("z", "default_pool", 1, 1),
            ],
        ),
        (&e, vec![weighted("e1", "default_pool", 1, 100)]),
        (&f, vec![weighted("f1", "default_pool", 1, 100)]),
    ]
    .into_iter()
    .enumerate()
    {
        let run = store
            .create_run(&new_run(dag, "r", RunType::Manual, hour as i64), &tis, t(0))
            .await
            .unwrap();
        runs.push(run);
    }
    // f's run stays queued: its instance is never on the page.
    for run in &runs[..2] {
        store
            .force_run_state(run.id, RunState::Running, t(1))
            .await
            .unwrap();
    }
    let rd = runs[0].clone();
    let owner = job(store).await;
    let selector = TakeAll {
        extra: vec![
            key(&rd, "a"),
            key(&rd, "z"),
            key(&runs[1], "e1"),
            key(&runs[2], "f1"),
        ],
        limits: limits(&[("d", 3)]),
        skip: ScheduledSkip {
            dags: vec!["e".into()],
            pools: vec![],
        },
        ..TakeAll::default()
    };
    let step = QueueStep {
        owner,
        page: 5,
        selector: &selector,
    };
    let run_pks: Vec<i64> = runs.iter().map(|r| r.id).collect();
    let outcome = store
        .record_evaluate_and_queue(&[], "host-a", &run_pks, &schedule_all, &step, t(2))
        .await
        .unwrap();
    assert_eq!(
        outcome
            .evaluated
            .iter()
            .map(|(pk, e)| (*pk, matches!(e, Evaluated::Applied { .. })))
            .collect::<Vec<_>>(),
        [(runs[0].id, true), (runs[1].id, true), (runs[2].id, false)]
    );
    let (_, page) = &selector.shown()[0];
    assert_eq!(
        page,
        &["a", "b", "c", "x", "y"],
        "priority order, e left out"
    );
    assert_eq!(outcome.scheduled_read, 5);
    // a (2 of p's 3 slots), not b (2 more), c (the last slot), x; then d's limit of 3 is
    // reached: not y, nor z (not on the page anyway), nor a again; e1 and f1 not on the page.
    assert_eq!(ids(&outcome.queued), ["a", "c", "x"]);
    let counts = store.active_counts().await.unwrap();
    assert_eq!((counts.per_pool["p"], counts.total), (3, 3));
    for (run, task_id, state) in [
        (&rd, "b", TaskState::Scheduled),
        (&rd, "y", TaskState::Scheduled),
        (&rd, "z", TaskState::Scheduled),
        (&runs[1], "e1", TaskState::Scheduled),
        (&runs[2], "f1", TaskState::None),
    ] {
        assert_eq!(
            super::ti_state(store, run, task_id).await,
            state,
            "{task_id}"
        );
    }
}

/// Two schedulers (`store` and `other`: one database, the same store or two as two processes
/// would have) take steps at once, each recording the ends of its own tries, evaluating both
/// runs and queueing the whole page (one in order, the other reversed), while a third party
/// evaluates the same runs on its own: a pool never holds more than its slots, no instance is
/// queued twice, every instance runs once, and no call fails (no deadlock).
pub async fn concurrent_steps_never_overflow_a_pool(store: Arc<dyn Store>, other: Arc<dyn Store>) {
    const SLOTS: i64 = 5;
    const TASKS: usize = 30;
    store
        .upsert_pool(&PoolRow {
            name: "p".into(),
            slots: SLOTS,
            description: String::new(),
            tenant: None,
        })
        .await
        .unwrap();
    let d = dag("d");
    sync(store.as_ref(), &[&d], false).await;
    let mut runs = Vec::new();
    for (hour, run_id) in ["r1", "r2"].into_iter().enumerate() {
        let names: Vec<String> = (0..TASKS / 2).map(|i| format!("t{i:02}")).collect();
        let tis: Vec<_> = names.iter().map(|n| in_pool(n, "p", 1)).collect();
        let run = store
            .create_run(
                &new_run(&d, run_id, RunType::Manual, hour as i64),
                &tis,
                t(0),
            )
            .await
            .unwrap();
        store
            .force_run_state(run.id, RunState::Running, t(1))
            .await
            .unwrap();
        runs.push(run);
    }
    let run_pks: Arc<Vec<i64>> = Arc::new(runs.iter().map(|r| r.id).collect());
    let a = store.register_scheduler("a", 1, t(1)).await.unwrap();
    let b = store.register_scheduler("b", 2, t(1)).await.unwrap();
    let mut running: [Vec<TiRow>; 2] = [Vec::new(), Vec::new()];
    let mut done = 0;
    for round in 0..TASKS * 2 {
        let now = t(2 + round as i64);
        let mut calls = Vec::new();
        for (i, (s, owner)) in [(store.clone(), a), (other.clone(), b)]
            .into_iter()
            .enumerate()
        {
            let reports: Vec<TryReport> = running[i]
                .drain(..)
                .map(|ti| TryReport::Finished {
                    key: TiKey {
                        run_pk: ti.run_pk,
                        task_id: ti.task_id,
                        map_index: ti.map_index,
                    },
                    try_number: ti.try_number,
                    new: TaskState::Success,
                    retry_at: None,
                    at: now,
                    skip: vec![],
                })
                .collect();
            let run_pks = run_pks.clone();
            calls.push(tokio::spawn(async move {
                let selector = TakeAll {
                    reverse: i == 1,
                    ..TakeAll::default()
                };
                let step = QueueStep {
                    owner,
                    page: 100,
                    selector: &selector,
                };
                let outcome = s
                    .record_evaluate_and_queue(
                        &reports,
                        "host",
                        &run_pks,
                        &schedule_all,
                        &step,
                        now,
                    )
                    .await?;
                assert!(
                    outcome.applied.iter().all(|&applied| applied),
                    "round {round}"
                );
                Ok::<_, updraft_store::StoreError>(outcome.queued)
            }));
        }
        let third = {
            let (s, run_pks) = (other.clone(), run_pks.clone());
            tokio::spawn(async move {
                let nothing = |_: &RunRow, _: &[TiSnapshot]| RunDecision::default();
                s.evaluate_runs(&run_pks, &nothing, now).await
            })
        };
        for (i, call) in calls.into_iter().enumerate() {
            running[i] = call.await.unwrap().unwrap();
        }
        third.await.unwrap().unwrap();
        let held = store.active_counts().await.unwrap();
        let held_p = held.per_pool.get("p").copied().unwrap_or(0);
        assert!(held_p <= SLOTS, "round {round}: {held_p} slots held");
        assert_eq!(
            held_p as usize,
            running[0].len() + running[1].len(),
            "round {round}"
        );
        let mut queued: Vec<(i64, &str)> = running
            .iter()
            .flatten()
            .map(|r| (r.run_pk, r.task_id.as_str()))
            .collect();
        queued.sort_unstable();
        queued.dedup();
        assert_eq!(
            queued.len(),
            running[0].len() + running[1].len(),
            "queued twice"
        );
        assert!(running[0].iter().all(|r| r.queued_by_job_id == Some(a)));
        assert!(running[1].iter().all(|r| r.queued_by_job_id == Some(b)));
        done += running[0].len() + running[1].len();
        if done == TASKS {
            break;
        }
    }
    assert_eq!(done, TASKS, "every instance ran once");
    for run in &runs {
        for ti in store.task_instances(run.id).await.unwrap() {
            assert_eq!(ti.try_number, 1, "{} ran once", ti.task_id);
        }
    }
}

/// A branch's success skips, in the same step, the instances its report names that have not
/// started (`none` or `scheduled`), before the run is evaluated; a started one (`queued`), an
/// instance not named and the same task in another run are left alone. A report that does not
/// apply skips nothing.
pub async fn step_applies_a_branch_skips_with_its_success(store: &dyn Store) {
    let tis = [
        ti("pick", 1),
        ti("b", 1),
        ti("c", 1),
        ti("d", 1),
        ti("e", 1),
    ];
    let run = running_run(store, &tis).await;
    let other = store
        .create_run(
            &super::new_run(&dag("d"), "r2", RunType::Manual, 1),
            &tis,
            t(1),
        )
        .await
        .unwrap();
    super::schedule(store, &run, &["pick", "c", "d"], t(2)).await;
    super::schedule(store, &other, &["c"], t(2)).await;
    assert_eq!(
        queue(store, &[key(&run, "pick"), key(&run, "d")], t(2))
            .await
            .len(),
        2
    );
    let branch_end = TryReport::Finished {
        key: key(&run, "pick"),
        try_number: 1,
        new: TaskState::Success,
        retry_at: None,
        at: t(3),
        skip: vec!["b".into(), "c".into(), "d".into()],
    };
    let seen = Mutex::new(Vec::new());
    let decide = |_: &RunRow, tis: &[TiSnapshot]| {
        *seen.lock().unwrap() = tis
            .iter()
            .map(|ti| (ti.task_id.clone(), ti.state))
            .collect();
        RunDecision::default()
    };
    let outcome = store
        .record_evaluate_and_queue(
            &[branch_end],
            "host-a",
            &[run.id],
            &decide,
            &without_queueing(job(store).await),
            t(4),
        )
        .await
        .unwrap();
    assert_eq!(outcome.applied, [true]);
    let expected = [
        ("b", TaskState::Skipped),
        ("c", TaskState::Skipped),
        ("d", TaskState::Queued),
        ("e", TaskState::None),
        ("pick", TaskState::Success),
    ];
    let expected: Vec<(String, TaskState)> = expected
        .iter()
        .map(|(id, s)| (id.to_string(), *s))
        .collect();
    assert_eq!(
        *seen.lock().unwrap(),
        expected,
        "the evaluation sees the skips"
    );
    for (task_id, state) in &expected {
        assert_eq!(
            &super::ti_state(store, &run, task_id).await,
            state,
            "{task_id}"
        );
    }
    let b = store.task_instance(&key(&run, "b")).await.unwrap().unwrap();
    assert_eq!(
        (b.start_date, b.end_date, b.try_number),
        (Some(t(3)), Some(t(3)), 0),
        "skipped at the branch's end, never tried"
    );
    assert!(store.tries(&key(&run, "b")).await.unwrap().is_empty());
    assert_eq!(
        super::ti_state(store, &other, "c").await,
        TaskState::Scheduled,
        "another run's instance is not touched"
    );
    assert_eq!(super::ti_state(store, &other, "b").await, TaskState::None);

    // The end of a try that is not the current one applies nothing, its skips included.
    let stale = TryReport::Finished {
        key: key(&other, "c"),
        try_number: 7,
        new: TaskState::Success,
        retry_at: None,
        at: t(5),
        skip: vec!["e".into(), "b".into()],
    };
    assert_eq!(
        store.record_try_reports(&[stale], "host-a").await.unwrap(),
        [false]
    );
    assert_eq!(super::ti_state(store, &other, "e").await, TaskState::None);
    assert_eq!(super::ti_state(store, &other, "b").await, TaskState::None);
}
