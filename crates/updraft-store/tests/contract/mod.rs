//! The backend-neutral contract of [`Store`]: scenarios every backend must pass.
//!
//! Each scenario is an `async fn` taking a freshly migrated, empty store. A backend's test
//! file declares `#[macro_use] mod contract;` and invokes [`contract_tests!`] with an async
//! function returning `(Box<dyn Store>, guard)`, which generates one test per scenario. The
//! scenarios that need more than one store (durability across reopen, several processes)
//! are exposed as building blocks for the backend file to wire up.

#![allow(dead_code)] // each backend test file uses what it needs

mod assets;
mod mapping;
mod reschedules;
mod secrets;
mod sources;
mod step;
mod users;
mod xcom;
pub use assets::*;
pub use mapping::*;
pub use reschedules::*;
pub use secrets::*;
pub use sources::*;
pub use step::*;
pub use users::*;
pub use xcom::*;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use updraft_core::evaluate::TiSnapshot;
use updraft_core::{RunState, RunType, TaskState};
use updraft_dag::{Dag, ImportError, Schedule};
use updraft_store::{
    Evaluated, JobState, LoadedDagRecord, NewRun, NewTi, NewestRunsFilter, PoolRow, QueueLimits,
    RunDecider, RunDecision, RunRead, RunRow, ScheduledSkip, Store, StoreError, TiKey, TiRow,
    TiTransition, TryReport,
};

/// Generates one `#[tokio::test]` per contract scenario, each on a fresh store from `$fresh`
/// (an async fn returning `(Box<dyn Store>, G)`; `G` is kept alive for the test).
///
/// `contract_tests!(@transaction_pooled $fresh)` generates every scenario but
/// `migrate_is_idempotent_and_seeds_default_pool`, for a store behind a transaction-pooling
/// PgBouncer: sqlx's migrator holds a session-level advisory lock from one statement to a
/// later one (and prepares its statements by name), which a transaction pooler may run on
/// different server connections, so such a store is migrated over a direct connection.
macro_rules! contract_tests {
    ($fresh:path) => {
        contract_tests!(@each $fresh; migrate_is_idempotent_and_seeds_default_pool);
        contract_tests!(@transaction_pooled $fresh);
    };
    (@transaction_pooled $fresh:path) => {
        contract_tests!(@each $fresh;
            new_dags_follow_paused_by_default,
            dag_heads_mirror_dags_without_definitions,
            is_paused_upon_creation_overrides_default,
            existing_dag_keeps_paused_flag_and_tracks_latest_version,
            versions_are_inserted_once,
            missing_dags_become_inactive_and_keep_history,
            dags_of_a_file_that_fails_to_load_stay_active,
            import_errors_are_replaced,
            a_dag_id_stays_with_the_tenant_that_registered_it,
            set_paused_reports_unknown_dag,
            create_run_creates_queued_run_with_none_instances,
            create_run_conflicts_on_duplicate_run_id,
            create_run_needs_a_recorded_version,
            newest_runs_filter_and_order,
            latest_scheduled_run_ignores_manual_runs,
            force_run_state_maintains_dates,
            delete_run_removes_instances_and_history,
            apply_transitions_is_conditional,
            scheduled_task_instances_only_from_running_runs_in_priority_order,
            queue_starts_a_try_only_for_scheduled_instances,
            mark_running_is_conditional_on_queued_and_try,
            finish_try_records_history_and_refuses_stale_tries,
            finish_try_rejects_states_that_do_not_end_a_try,
            try_reports_apply_in_order_in_one_batch,
            retry_cycle_keeps_every_try,
            force_ti_state_overrides_and_closes_live_try,
            clear_task_instances_resets_them_and_requeues_run,
            clear_task_instances_abandons_live_try,
            clear_task_instances_of_unknown_tasks_leaves_run_alone,
            active_counts_sum_queued_and_running,
            orphaned_task_instances_belong_to_jobs_not_alive,
            an_orphan_is_adopted_once_and_only_while_orphaned,
            previous_run_states_finds_the_run_just_before,
            pools_crud,
            pools_belong_to_a_tenant_or_to_all,
            timestamps_keep_microseconds,
            // several schedulers on one database
            queue_respects_pool_slots_and_max_active_tasks,
            start_runs_respects_max_active_runs_and_starts_only_queued_runs,
            evaluate_runs_records_the_decision_of_a_running_run,
            evaluate_runs_evaluates_several_runs_at_once,
            evaluate_runs_reads_only_a_deciders_focus_unless_asked_for_all,
            step_sees_the_reports_it_records,
            step_records_evaluates_and_queues_in_one_call,
            step_with_an_empty_page_records_and_evaluates_only,
            step_queues_only_what_the_room_admits,
            step_applies_a_branch_skips_with_its_success,
            scheduler_jobs_heartbeat_and_silent_ones_are_reaped,
            // web UI reads
            recent_runs_are_bounded_per_dag_and_newest_first,
            latest_scheduled_runs_skip_manual_runs,
            task_instances_of_runs_and_tries_of_run_batch,
            dag_versions_are_listed_newest_first,
            run_changes_follow_every_state_change,
        );
        // REST API queries and writes.
        contract_tests!(@each $fresh;
            api_import_errors_keep_ids_and_timestamps,
            api_dags_page_filters_orders_pages_and_counts,
            api_runs_page_filters_orders_pages_and_counts,
            api_task_instances_page_filters_and_counts,
            api_mark_run_and_instances_success_and_failed,
            time_out_run_fails_it_skips_unfinished_and_names_live_tries,
            api_force_ti_states_in_one_go,
            api_create_pool_conflicts_and_pool_usage_counts_slots,
            api_notes_set_replace_remove_and_go_with_the_run,
        );
        // Users, grants and the audit log.
        contract_tests!(@each $fresh;
            users_create_get_list_delete,
            users_duplicate_username_is_a_conflict_and_changes_nothing,
            users_grants_are_added_and_removed_once,
            users_external_sign_in_creates_then_replaces_names_and_grants,
            users_logins_and_passwords_are_recorded,
            events_are_recorded_and_listed_newest_first_with_filters,
            events_default_to_now_and_keep_order_within_one_instant,
        );
        // Connections and variables.
        contract_tests!(@each $fresh;
            secrets_tenant_and_shared_rows_with_one_id_are_distinct,
            secrets_unencrypted_and_empty_fields_read_back_as_written,
            secrets_write_modes_create_update_upsert,
            secrets_listings_filter_order_page_and_count,
            secrets_delete_removes_only_the_named_row,
            secrets_reencrypt_rewrites_every_encrypted_field,
            secrets_reencrypt_is_all_or_nothing,
            secrets_reencrypt_of_nothing_rewrites_nothing,
        );
        // DAG sources and the revisions runs are pinned to.
        contract_tests!(@each $fresh;
            sources_are_recorded_listed_and_replaced,
            source_sync_requests_are_kept_until_taken_once,
            source_sync_requests_taken_at_once_go_to_one_taker_each,
            dags_and_versions_record_the_bundle_they_were_read_from,
            runs_are_pinned_to_the_revision_their_dag_was_loaded_from,
        );
        // XComs.
        contract_tests!(@each $fresh;
            xcoms_pushed_by_tries_are_read_back_by_task_key_and_page,
            xcoms_of_a_new_try_hide_then_replace_the_previous_try,
            xcoms_written_by_users_need_their_task_instance_and_respect_modes,
            xcoms_go_with_their_run,
        );
        // Sensors' reschedules.
        contract_tests!(@each $fresh;
            a_poke_that_reschedules_keeps_its_try_and_writes_its_row,
            a_poke_that_does_not_apply_writes_no_row,
            a_sensor_s_retry_after_pokes_is_a_new_try_without_rows,
            clearing_or_deleting_removes_reschedules,
            external_state_reads_one_run_of_the_tenant,
        );
        // Dynamic task mapping.
        contract_tests!(@each $fresh;
            a_scheduled_placeholder_expands_into_its_instances_once,
            mapped_instances_queue_run_and_finish_each_on_its_own,
            xcoms_are_kept_per_map_index_and_listed_in_index_order,
            clearing_a_mapped_task_collapses_it_into_a_placeholder,
            a_focused_read_counts_a_mapped_task_s_ended_instances,
        );
        // Assets and asset-triggered runs.
        contract_tests!(@each $fresh;
            asset_events_are_queued_for_their_tenants_unpaused_consumers,
            an_asset_triggered_run_consumes_its_events_once,
            assets_and_events_are_listed_by_tenant_and_filters,
        );
        // Housekeeping (`db clean`).
        contract_tests!(@each $fresh;
            purge_history_deletes_old_finished_runs_with_their_instances_tries_and_notes,
            purge_history_dry_run_counts_and_changes_nothing,
            purge_history_keeps_versions_pinned_by_remaining_runs_or_current,
            purge_history_removes_scheduler_jobs_that_ended_before,
        );
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn concurrent_finishers() {
            let (store, _guard) = $fresh().await;
            crate::contract::concurrent_finishers(std::sync::Arc::from(store)).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn concurrent_queues_never_overflow_a_pool() {
            let (store, _guard) = $fresh().await;
            let store: std::sync::Arc<dyn updraft_store::Store> = std::sync::Arc::from(store);
            crate::contract::concurrent_queues_never_overflow_a_pool(store.clone(), store).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn concurrent_steps_never_overflow_a_pool() {
            let (store, _guard) = $fresh().await;
            let store: std::sync::Arc<dyn updraft_store::Store> = std::sync::Arc::from(store);
            crate::contract::concurrent_steps_never_overflow_a_pool(store.clone(), store).await;
        }
    };
    (@each $fresh:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (store, _guard) = $fresh().await;
                crate::contract::$name(store.as_ref()).await;
            }
        )*
    };
}

// ---- fixtures -----------------------------------------------------------------------------

/// `2024-01-01T00:00Z` plus `hours`.
pub fn t(hours: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap() + Duration::hours(hours)
}

pub fn dag(dag_id: &str) -> Dag {
    Dag {
        dag_id: dag_id.to_string(),
        tenant: "acme".to_string(),
        fileloc: format!("acme/{dag_id}.yaml"),
        description: None,
        schedule: Schedule::None,
        timezone: chrono_tz::UTC,
        start_date: Some(t(0)),
        end_date: None,
        catchup: false,
        max_active_runs: 16,
        max_active_tasks: 16,
        tags: vec![],
        params: Default::default(),
        env: Default::default(),
        is_paused_upon_creation: None,
        groups: Vec::new(),
        run_callbacks: Default::default(),
        dagrun_timeout: None,
        tasks: vec![],
    }
}

/// Sync exactly `dags` (each with source `source of <dag_id>`); returns their versions.
pub async fn sync(store: &dyn Store, dags: &[&Dag], paused_by_default: bool) -> Vec<String> {
    sync_at(store, dags, paused_by_default, t(0)).await
}

pub async fn sync_at(
    store: &dyn Store,
    dags: &[&Dag],
    paused_by_default: bool,
    now: DateTime<Utc>,
) -> Vec<String> {
    let versions: Vec<String> = dags.iter().map(|d| d.version()).collect();
    let sources: Vec<String> = dags
        .iter()
        .map(|d| format!("source of {}", d.dag_id))
        .collect();
    let records: Vec<LoadedDagRecord<'_>> = dags
        .iter()
        .zip(&versions)
        .zip(&sources)
        .map(|((dag, version), source)| LoadedDagRecord {
            dag,
            version,
            source,
            bundle: None,
        })
        .collect();
    store
        .sync_dags(&records, &[], paused_by_default, now)
        .await
        .unwrap();
    versions
}

pub fn new_run(dag: &Dag, run_id: &str, run_type: RunType, logical_hour: i64) -> NewRun {
    NewRun {
        dag_id: dag.dag_id.clone(),
        tenant: dag.tenant.clone(),
        run_id: run_id.to_string(),
        run_type,
        version: dag.version(),
        logical_date: t(logical_hour),
        data_interval_start: t(logical_hour),
        data_interval_end: t(logical_hour + 1),
        conf: serde_json::json!({"k": run_id}),
    }
}

pub fn ti(task_id: &str, max_tries: u32) -> NewTi {
    NewTi {
        task_id: task_id.to_string(),
        max_tries,
        pool: "default_pool".to_string(),
        pool_slots: 1,
        priority_weight: 1,
    }
}

pub fn key(run: &RunRow, task_id: &str) -> TiKey {
    TiKey {
        run_pk: run.id,
        task_id: task_id.to_string(),
        map_index: -1,
    }
}

fn to(task_id: &str, expected: TaskState, new: TaskState) -> TiTransition {
    TiTransition {
        task_id: task_id.to_string(),
        map_index: -1,
        expected,
        new,
    }
}

/// A synced DAG `d` and one running run `r1` with the given instances.
pub async fn running_run(store: &dyn Store, tis: &[NewTi]) -> RunRow {
    let d = dag("d");
    sync(store, &[&d], false).await;
    let run = store
        .create_run(&new_run(&d, "r1", RunType::Manual, 0), tis, t(1))
        .await
        .unwrap();
    store
        .force_run_state(run.id, RunState::Running, t(1))
        .await
        .unwrap();
    run
}

/// The scheduler job the scenarios queue as: the newest job if it is `running`, else a new one.
pub async fn job(store: &dyn Store) -> i64 {
    match store.schedulers(1).await.unwrap().first() {
        Some(newest) if newest.state == JobState::Running => newest.id,
        _ => store
            .register_scheduler("contract-host", 4242, t(0))
            .await
            .unwrap(),
    }
}

/// [`SchedulerStore::queue`] as scheduler job `owner`, without DAG limits.
pub async fn queue_as(
    store: &dyn Store,
    owner: i64,
    keys: &[TiKey],
    now: DateTime<Utc>,
) -> Vec<TiRow> {
    store
        .queue(keys, owner, &QueueLimits::default(), now)
        .await
        .unwrap()
}

/// [`SchedulerStore::queue`] as [`job`], without DAG limits.
pub async fn queue(store: &dyn Store, keys: &[TiKey], now: DateTime<Utc>) -> Vec<TiRow> {
    let owner = job(store).await;
    queue_as(store, owner, keys, now).await
}

/// Move instances of `run` from `none` to `scheduled`.
async fn schedule(store: &dyn Store, run: &RunRow, task_ids: &[&str], now: DateTime<Utc>) {
    let sched: Vec<_> = task_ids
        .iter()
        .map(|id| to(id, TaskState::None, TaskState::Scheduled))
        .collect();
    let applied = store.apply_transitions(run.id, &sched, now).await.unwrap();
    assert_eq!(applied, task_ids.len());
}

/// none → scheduled → queued (new try) → running; returns the try number.
pub(crate) async fn start_try(
    store: &dyn Store,
    run: &RunRow,
    task_id: &str,
    now: DateTime<Utc>,
) -> u32 {
    let expected = store
        .task_instance(&key(run, task_id))
        .await
        .unwrap()
        .unwrap()
        .state;
    if expected != TaskState::Scheduled {
        let applied = store
            .apply_transitions(run.id, &[to(task_id, expected, TaskState::Scheduled)], now)
            .await
            .unwrap();
        assert_eq!(
            applied, 1,
            "{task_id} should become scheduled from {expected}"
        );
    }
    let queued = queue(store, &[key(run, task_id)], now).await;
    assert_eq!(queued.len(), 1);
    let try_number = queued[0].try_number;
    assert!(
        store
            .mark_running(&key(run, task_id), try_number, Some(42), "host-a", now)
            .await
            .unwrap()
    );
    try_number
}

async fn ti_state(store: &dyn Store, run: &RunRow, task_id: &str) -> TaskState {
    store
        .task_instance(&key(run, task_id))
        .await
        .unwrap()
        .unwrap()
        .state
}

// ---- schema and DAGs ----------------------------------------------------------------------

pub async fn migrate_is_idempotent_and_seeds_default_pool(store: &dyn Store) {
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    let pools = store.pools().await.unwrap();
    assert_eq!(pools.len(), 1);
    assert_eq!(pools[0].name, "default_pool");
    assert_eq!(pools[0].slots, 128);
}

pub async fn new_dags_follow_paused_by_default(store: &dyn Store) {
    sync(store, &[&dag("a")], true).await;
    assert!(store.dag("a").await.unwrap().unwrap().is_paused);

    let (a, b) = (dag("a"), dag("b"));
    sync(store, &[&a, &b], false).await;
    assert!(
        store.dag("a").await.unwrap().unwrap().is_paused,
        "existing keeps"
    );
    assert!(!store.dag("b").await.unwrap().unwrap().is_paused);
}

pub async fn dag_heads_mirror_dags_without_definitions(store: &dyn Store) {
    let (a, b) = (dag("a"), dag("b"));
    sync(store, &[&a, &b], true).await;
    store.set_paused("b", false).await.unwrap();
    sync(store, &[&a], true).await; // b's file is gone: inactive
    let heads = store.dag_heads().await.unwrap();
    let from_dags: Vec<updraft_store::DagHead> = store
        .dags()
        .await
        .unwrap()
        .into_iter()
        .map(|row| updraft_store::DagHead {
            dag_id: row.dag.dag_id,
            version: row.version,
            is_paused: row.is_paused,
            is_active: row.is_active,
        })
        .collect();
    assert_eq!(heads, from_dags);
    assert_eq!(heads.len(), 2);
    assert!(heads[0].is_paused && heads[0].is_active, "{heads:?}");
    assert!(!heads[1].is_paused && !heads[1].is_active, "{heads:?}");
}

pub async fn is_paused_upon_creation_overrides_default(store: &dyn Store) {
    let mut eager = dag("eager");
    eager.is_paused_upon_creation = Some(false);
    let mut careful = dag("careful");
    careful.is_paused_upon_creation = Some(true);
    sync(store, &[&eager], true).await;
    sync(store, &[&eager, &careful], false).await;
    assert!(!store.dag("eager").await.unwrap().unwrap().is_paused);
    assert!(store.dag("careful").await.unwrap().unwrap().is_paused);
}

pub async fn existing_dag_keeps_paused_flag_and_tracks_latest_version(store: &dyn Store) {
    let v1_dag = dag("a");
    let [v1] = sync_at(store, &[&v1_dag], true, t(0))
        .await
        .try_into()
        .unwrap();
    assert!(store.set_paused("a", false).await.unwrap());

    let mut v2_dag = dag("a");
    v2_dag.description = Some("changed".into());
    let [v2] = sync_at(store, &[&v2_dag], true, t(5))
        .await
        .try_into()
        .unwrap();
    assert_ne!(v1, v2);

    let row = store.dag("a").await.unwrap().unwrap();
    assert!(!row.is_paused, "re-sync must not re-pause");
    assert!(row.is_active);
    assert_eq!(row.version, v2);
    assert_eq!(row.dag, v2_dag);
    assert_eq!(row.last_parsed_at, t(5));
    assert_eq!(store.dag_version("a", &v1).await.unwrap(), Some(v1_dag));
    assert_eq!(store.dag_version("a", &v2).await.unwrap(), Some(v2_dag));
    assert_eq!(store.dags().await.unwrap(), vec![row]);

    assert!(store.set_paused("a", true).await.unwrap());
    assert!(store.dag("a").await.unwrap().unwrap().is_paused);
}

pub async fn versions_are_inserted_once(store: &dyn Store) {
    let d = dag("a");
    let version = d.version();
    let sync_source = |source: &'static str| {
        let record = LoadedDagRecord {
            dag: &d,
            version: &version,
            source,
            bundle: None,
        };
        async move { store.sync_dags(&[record], &[], false, t(0)).await }
    };
    sync_source("# first formatting").await.unwrap();
    sync_source("# second formatting, same definition")
        .await
        .unwrap();
    assert_eq!(
        store.dag_source("a", &version).await.unwrap().as_deref(),
        Some("# first formatting")
    );
    assert_eq!(store.dag_source("a", "nope").await.unwrap(), None);
    assert_eq!(store.dag_source("zz", &version).await.unwrap(), None);
    assert_eq!(store.dag_version("a", "nope").await.unwrap(), None);
}

pub async fn missing_dags_become_inactive_and_keep_history(store: &dyn Store) {
    let (a, b) = (dag("a"), dag("b"));
    sync(store, &[&a, &b], false).await;
    store.set_paused("b", true).await.unwrap();
    let run = store
        .create_run(&new_run(&b, "r1", RunType::Manual, 0), &[ti("x", 1)], t(1))
        .await
        .unwrap();

    sync_at(store, &[&a], false, t(9)).await;
    let dags = store.dags().await.unwrap();
    assert_eq!(dags.len(), 2, "inactive DAGs stay listed");
    let gone = store.dag("b").await.unwrap().unwrap();
    assert!(!gone.is_active);
    assert_eq!(gone.last_parsed_at, t(0), "not parsed since");
    assert!(store.dag("a").await.unwrap().unwrap().is_active);
    assert_eq!(store.run_by_pk(run.id).await.unwrap(), Some(run.clone()));
    assert_eq!(store.task_instances(run.id).await.unwrap().len(), 1);
    assert_eq!(
        store.dag_version("b", &b.version()).await.unwrap(),
        Some(b.clone())
    );

    sync(store, &[&a, &b], false).await;
    let back = store.dag("b").await.unwrap().unwrap();
    assert!(back.is_active);
    assert!(back.is_paused, "paused flag survives absence");

    sync(store, &[], false).await;
    assert!(store.dags().await.unwrap().iter().all(|d| !d.is_active));
}

/// Airflow's behaviour: a file that fails to parse keeps its DAGs scheduled on their last good
/// version while its import error is shown; only a deleted file deactivates its DAGs.
pub async fn dags_of_a_file_that_fails_to_load_stay_active(store: &dyn Store) {
    let a = dag("a");
    let b = dag("b");
    let c = Dag {
        fileloc: "acme/sub/c.yaml".into(),
        ..dag("c")
    };
    let d = Dag {
        fileloc: "acme_other/d.yaml".into(),
        ..dag("d")
    };
    let error = |filename: &str| ImportError {
        tenant: "acme".into(),
        filename: filename.into(),
        line: Some(1),
        column: None,
        message: "broken".into(),
    };
    let active = || async {
        let mut ids: Vec<String> = store
            .dags()
            .await
            .unwrap()
            .into_iter()
            .filter(|d| d.is_active)
            .map(|d| d.dag.dag_id)
            .collect();
        ids.sort();
        ids
    };
    sync_at(store, &[&a, &b, &c, &d], false, t(0)).await;

    // a.yaml broken, the folder sub/ unreadable, b.yaml and d.yaml deleted.
    let errors = [error("acme/a.yaml"), error("acme/sub")];
    store.sync_dags(&[], &errors, false, t(1)).await.unwrap();
    assert_eq!(active().await, ["a", "c"]);
    let kept = store.dag("a").await.unwrap().unwrap();
    assert_eq!(
        (kept.version, kept.last_parsed_at),
        (a.version(), t(0)),
        "last good version"
    );
    assert_eq!(store.import_errors().await.unwrap(), errors);

    // A folder's error covers what is under it, not a folder sharing its prefix.
    sync_at(store, &[&a, &b, &c, &d], false, t(2)).await;
    store
        .sync_dags(&[], &[error("acme")], false, t(3))
        .await
        .unwrap();
    assert_eq!(active().await, ["a", "b", "c"]);

    // The folder could not be read in full: nothing is taken for deleted.
    store
        .sync_dags(
            &[],
            &[error(updraft_dag::FOLDER_ERROR_FILENAME)],
            false,
            t(4),
        )
        .await
        .unwrap();
    assert_eq!(active().await, ["a", "b", "c"]);

    // Deleted: inactive.
    store.sync_dags(&[], &[], false, t(5)).await.unwrap();
    assert!(active().await.is_empty());
}

/// Another tenant's file declaring a registered dag_id changes nothing of the owner's DAG and
/// becomes an import error in that file, naming neither the owner nor its file.
pub async fn a_dag_id_stays_with_the_tenant_that_registered_it(store: &dyn Store) {
    let mut owned = dag("etl");
    owned.tenant = "team_b".into();
    owned.fileloc = "team_b/etl.yaml".into();
    let [version] = sync_at(store, &[&owned], true, t(0))
        .await
        .try_into()
        .unwrap();
    assert!(store.set_paused("etl", false).await.unwrap());
    let run = store
        .create_run(
            &new_run(&owned, "r1", RunType::Manual, 0),
            &[ti("x", 1)],
            t(1),
        )
        .await
        .unwrap();
    let before = store.dag("etl").await.unwrap().unwrap();

    let mut claim = dag("etl");
    claim.tenant = "a_evil".into();
    claim.fileloc = "a_evil/etl.yaml".into();
    claim.description = Some("taken over".into());
    // Twice: the second load finds the claim already refused.
    for now in [t(2), t(3)] {
        sync_at(store, &[&claim, &owned], true, now).await;
        let after = store.dag("etl").await.unwrap().unwrap();
        assert_eq!(after.dag, before.dag, "the owner's definition stays");
        assert_eq!(
            (after.dag.tenant.as_str(), after.version.as_str()),
            ("team_b", version.as_str())
        );
        assert!(!after.is_paused, "the owner's paused flag stays");
        assert!(after.is_active);
        assert_eq!(
            store.dag_version("etl", &claim.version()).await.unwrap(),
            None,
            "no version of the claimer's definition"
        );
        assert_eq!(store.run_by_pk(run.id).await.unwrap(), Some(run.clone()));
        let errors = store.import_errors().await.unwrap();
        assert_eq!(errors.len(), 1, "{errors:?}");
        let error = &errors[0];
        assert_eq!(
            (error.tenant.as_str(), error.filename.as_str()),
            ("a_evil", "a_evil/etl.yaml")
        );
        assert!(
            error
                .message
                .contains("dag_id `etl` belongs to another tenant"),
            "{error}"
        );
        assert!(error.message.contains("a_evil/etl.yaml"), "{error}");
        assert!(
            !error.message.contains("team_b"),
            "the owner is not named: {error}"
        );
    }
    let owners = store.dag_owners().await.unwrap();
    assert_eq!(owners.get("etl").map(String::as_str), Some("team_b"));

    // The owner's file gone: its DAG goes inactive, still the owner's.
    sync_at(store, &[&claim], true, t(4)).await;
    let gone = store.dag("etl").await.unwrap().unwrap();
    assert!(!gone.is_active);
    assert_eq!(gone.dag.tenant, "team_b");
    assert_eq!(store.dag_owners().await.unwrap()["etl"], "team_b");
}

pub async fn import_errors_are_replaced(store: &dyn Store) {
    let err = |filename: &str, line: Option<u32>, column: Option<u32>| ImportError {
        tenant: "acme".into(),
        filename: filename.into(),
        line,
        column,
        message: format!("bad {filename}"),
    };
    let first = vec![err("b.yaml", Some(3), Some(7)), err("a.yaml", None, None)];
    store.sync_dags(&[], &first, false, t(0)).await.unwrap();
    assert_eq!(store.import_errors().await.unwrap(), first);

    let second = vec![err("c.yaml", Some(1), None)];
    store.sync_dags(&[], &second, false, t(1)).await.unwrap();
    assert_eq!(store.import_errors().await.unwrap(), second);

    store.sync_dags(&[], &[], false, t(2)).await.unwrap();
    assert!(store.import_errors().await.unwrap().is_empty());
}

pub async fn set_paused_reports_unknown_dag(store: &dyn Store) {
    assert!(!store.set_paused("ghost", true).await.unwrap());
    assert_eq!(store.dag("ghost").await.unwrap(), None);
}

// ---- runs ---------------------------------------------------------------------------------

pub async fn create_run_creates_queued_run_with_none_instances(store: &dyn Store) {
    let d = dag("d");
    sync(store, &[&d], false).await;
    let spec = new_run(&d, "manual__1", RunType::Manual, 3);
    let mut heavy = ti("heavy", 3);
    heavy.pool = "big".into();
    heavy.pool_slots = 4;
    heavy.priority_weight = 10;
    let run = store
        .create_run(&spec, &[ti("light", 1), heavy], t(4))
        .await
        .unwrap();

    assert_eq!(run.dag_id, "d");
    assert_eq!(run.tenant, "acme");
    assert_eq!(run.run_id, "manual__1");
    assert_eq!(run.run_type, RunType::Manual);
    assert_eq!(run.state, RunState::Queued);
    assert_eq!(run.version, d.version());
    assert_eq!(run.logical_date, t(3));
    assert_eq!(run.data_interval_start, t(3));
    assert_eq!(run.data_interval_end, t(4));
    assert_eq!(run.conf, serde_json::json!({"k": "manual__1"}));
    assert_eq!(run.queued_at, t(4));
    assert_eq!((run.start_date, run.end_date), (None, None));
    assert_eq!(
        store.run("d", "manual__1").await.unwrap(),
        Some(run.clone())
    );
    assert_eq!(store.run_by_pk(run.id).await.unwrap(), Some(run.clone()));
    assert_eq!(store.run("d", "other").await.unwrap(), None);
    assert_eq!(store.run_by_pk(run.id + 1000).await.unwrap(), None);

    let tis = store.task_instances(run.id).await.unwrap();
    assert_eq!(tis.len(), 2);
    let heavy = tis.iter().find(|t| t.task_id == "heavy").unwrap();
    assert_eq!(heavy.run_pk, run.id);
    assert_eq!(heavy.dag_id, "d");
    assert_eq!(heavy.run_id, "manual__1");
    assert_eq!(heavy.tenant, "acme");
    assert_eq!(heavy.state, TaskState::None);
    assert_eq!(heavy.try_number, 0);
    assert_eq!(heavy.max_tries, 3);
    assert_eq!(heavy.pool, "big");
    assert_eq!(heavy.pool_slots, 4);
    assert_eq!(heavy.priority_weight, 10);
    assert_eq!(heavy.logical_date, t(3));
    assert_eq!(
        (
            heavy.queued_at,
            heavy.start_date,
            heavy.end_date,
            heavy.retry_at
        ),
        (None, None, None, None)
    );
    assert_eq!((heavy.pid, heavy.hostname.as_deref()), (None, None));
    assert_eq!(
        store
            .task_instance(&key(&run, "heavy"))
            .await
            .unwrap()
            .as_ref(),
        Some(heavy)
    );
    assert_eq!(store.task_instance(&key(&run, "nope")).await.unwrap(), None);
    assert!(store.tries(&key(&run, "heavy")).await.unwrap().is_empty());
}

pub async fn create_run_conflicts_on_duplicate_run_id(store: &dyn Store) {
    let (d, e) = (dag("d"), dag("e"));
    sync(store, &[&d, &e], false).await;
    let spec = new_run(&d, "r1", RunType::Manual, 0);
    let first = store.create_run(&spec, &[ti("a", 1)], t(1)).await.unwrap();

    let again = store
        .create_run(&spec, &[ti("a", 1), ti("b", 1)], t(2))
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(
        store
            .newest_runs(&NewestRunsFilter::default())
            .await
            .unwrap(),
        vec![first.clone()]
    );
    assert_eq!(store.task_instances(first.id).await.unwrap().len(), 1);

    // Duplicate task ids roll the whole run back.
    let dup = store
        .create_run(
            &new_run(&d, "r2", RunType::Manual, 1),
            &[ti("a", 1), ti("a", 1)],
            t(2),
        )
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    assert_eq!(store.run("d", "r2").await.unwrap(), None);

    // The same run_id in another DAG is fine.
    store
        .create_run(&new_run(&e, "r1", RunType::Manual, 0), &[], t(1))
        .await
        .unwrap();

    // One run per logical date of a DAG, whatever the run id.
    let same_date = store
        .create_run(
            &new_run(&d, "r3", RunType::Backfill, 0),
            &[ti("a", 1)],
            t(2),
        )
        .await;
    assert!(
        matches!(same_date, Err(StoreError::Conflict(_))),
        "{same_date:?}"
    );
    assert_eq!(store.run("d", "r3").await.unwrap(), None);
}

pub async fn create_run_needs_a_recorded_version(store: &dyn Store) {
    let d = dag("d");
    let missing = store
        .create_run(&new_run(&d, "r1", RunType::Manual, 0), &[ti("a", 1)], t(1))
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
    assert!(
        store
            .newest_runs(&NewestRunsFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn newest_runs_filter_and_order(store: &dyn Store) {
    let (d, e) = (dag("d"), dag("e"));
    sync(store, &[&d, &e], false).await;
    let mut made = HashMap::new();
    for (dag, run_id, hour) in [(&d, "d1", 1), (&d, "d3", 3), (&d, "d2", 2), (&e, "e1", 5)] {
        let run = store
            .create_run(
                &new_run(dag, run_id, RunType::Scheduled, hour),
                &[],
                t(hour),
            )
            .await
            .unwrap();
        made.insert(run_id, run.id);
    }
    store
        .force_run_state(made["d2"], RunState::Success, t(9))
        .await
        .unwrap();
    let ids = |runs: Vec<RunRow>| runs.into_iter().map(|r| r.run_id).collect::<Vec<_>>();

    let all = store
        .newest_runs(&NewestRunsFilter::default())
        .await
        .unwrap();
    assert_eq!(ids(all), ["e1", "d3", "d2", "d1"]);
    let only_d = NewestRunsFilter {
        dag_id: Some("d".into()),
        ..Default::default()
    };
    assert_eq!(
        ids(store.newest_runs(&only_d).await.unwrap()),
        ["d3", "d2", "d1"]
    );
    let limited = NewestRunsFilter {
        limit: Some(2),
        ..only_d.clone()
    };
    assert_eq!(
        ids(store.newest_runs(&limited).await.unwrap()),
        ["d3", "d2"]
    );
    let queued = NewestRunsFilter {
        states: vec![RunState::Queued],
        ..only_d.clone()
    };
    assert_eq!(ids(store.newest_runs(&queued).await.unwrap()), ["d3", "d1"]);
    let finished = NewestRunsFilter {
        states: vec![RunState::Success, RunState::Failed],
        ..Default::default()
    };
    assert_eq!(ids(store.newest_runs(&finished).await.unwrap()), ["d2"]);
    let nothing = NewestRunsFilter {
        dag_id: Some("ghost".into()),
        ..Default::default()
    };
    assert!(store.newest_runs(&nothing).await.unwrap().is_empty());
}

pub async fn latest_scheduled_run_ignores_manual_runs(store: &dyn Store) {
    let d = dag("d");
    sync(store, &[&d], false).await;
    assert_eq!(store.latest_scheduled_run("d").await.unwrap(), None);
    store
        .create_run(&new_run(&d, "s1", RunType::Scheduled, 1), &[], t(1))
        .await
        .unwrap();
    let backfill = store
        .create_run(&new_run(&d, "b5", RunType::Backfill, 5), &[], t(2))
        .await
        .unwrap();
    store
        .create_run(&new_run(&d, "s3", RunType::Scheduled, 3), &[], t(3))
        .await
        .unwrap();
    store
        .create_run(&new_run(&d, "m9", RunType::Manual, 9), &[], t(4))
        .await
        .unwrap();
    assert_eq!(
        store.latest_scheduled_run("d").await.unwrap(),
        Some(backfill)
    );
    assert_eq!(store.latest_scheduled_run("other").await.unwrap(), None);
}

pub async fn force_run_state_maintains_dates(store: &dyn Store) {
    let d = dag("d");
    sync(store, &[&d], false).await;
    let run = store
        .create_run(&new_run(&d, "r", RunType::Manual, 0), &[], t(1))
        .await
        .unwrap();
    let get = || async { store.run_by_pk(run.id).await.unwrap().unwrap() };

    store
        .force_run_state(run.id, RunState::Running, t(2))
        .await
        .unwrap();
    let r = get().await;
    assert_eq!(
        (r.state, r.start_date, r.end_date),
        (RunState::Running, Some(t(2)), None)
    );

    store
        .force_run_state(run.id, RunState::Running, t(3))
        .await
        .unwrap();
    assert_eq!(get().await.start_date, Some(t(2)), "start_date set once");

    store
        .force_run_state(run.id, RunState::Failed, t(4))
        .await
        .unwrap();
    let r = get().await;
    assert_eq!(
        (r.state, r.start_date, r.end_date),
        (RunState::Failed, Some(t(2)), Some(t(4)))
    );

    store
        .force_run_state(run.id, RunState::Queued, t(5))
        .await
        .unwrap();
    let r = get().await;
    assert_eq!((r.state, r.end_date), (RunState::Queued, None));
    assert_eq!(r.queued_at, t(5), "re-queued");

    store
        .force_run_state(run.id, RunState::Running, t(6))
        .await
        .unwrap();
    store
        .force_run_state(run.id, RunState::Success, t(7))
        .await
        .unwrap();
    let r = get().await;
    assert_eq!(
        (r.state, r.start_date, r.end_date),
        (RunState::Success, Some(t(2)), Some(t(7)))
    );

    let missing = store
        .force_run_state(run.id + 99, RunState::Running, t(8))
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
}

pub async fn delete_run_removes_instances_and_history(store: &dyn Store) {
    let run = running_run(store, &[ti("a", 1), ti("b", 1)]).await;
    let try_number = start_try(store, &run, "a", t(2)).await;
    store
        .finish_try(&key(&run, "a"), try_number, TaskState::Success, None, t(3))
        .await
        .unwrap();

    assert!(store.delete_run(run.id).await.unwrap());
    assert_eq!(store.run_by_pk(run.id).await.unwrap(), None);
    assert!(store.task_instances(run.id).await.unwrap().is_empty());
    assert!(store.tries(&key(&run, "a")).await.unwrap().is_empty());
    assert!(!store.delete_run(run.id).await.unwrap());

    // The run_id is free again.
    let d = dag("d");
    store
        .create_run(&new_run(&d, "r1", RunType::Manual, 0), &[ti("a", 1)], t(4))
        .await
        .unwrap();
}

// ---- task instances -----------------------------------------------------------------------

pub async fn apply_transitions_is_conditional(store: &dyn Store) {
    let run = running_run(store, &[ti("a", 1), ti("b", 1), ti("c", 1)]).await;
    let applied = store
        .apply_transitions(
            run.id,
            &[
                to("a", TaskState::None, TaskState::Scheduled),
                to("b", TaskState::None, TaskState::Skipped),
                to("c", TaskState::Scheduled, TaskState::UpstreamFailed), // stale: c is none
                to("ghost", TaskState::None, TaskState::Scheduled),
            ],
            t(2),
        )
        .await
        .unwrap();
    assert_eq!(applied, 2);
    let tis = store.task_instances(run.id).await.unwrap();
    let by_id: HashMap<_, _> = tis.iter().map(|t| (t.task_id.as_str(), t)).collect();
    assert_eq!(by_id["a"].state, TaskState::Scheduled);
    assert_eq!(by_id["a"].end_date, None, "non-terminal: no end_date");
    assert_eq!(by_id["b"].state, TaskState::Skipped);
    assert_eq!(by_id["b"].end_date, Some(t(2)), "terminal: end_date");
    assert_eq!(by_id["c"].state, TaskState::None);

    // Applying the same decision twice: the second is stale.
    let again = store
        .apply_transitions(
            run.id,
            &[to("a", TaskState::None, TaskState::Scheduled)],
            t(3),
        )
        .await
        .unwrap();
    assert_eq!(again, 0);
    assert_eq!(store.apply_transitions(run.id, &[], t(3)).await.unwrap(), 0);

    // Transitions are scoped to their run.
    let other = store
        .apply_transitions(
            run.id + 1,
            &[to("c", TaskState::None, TaskState::Removed)],
            t(3),
        )
        .await
        .unwrap();
    assert_eq!(other, 0);
    assert_eq!(ti_state(store, &run, "c").await, TaskState::None);
}

pub async fn scheduled_task_instances_only_from_running_runs_in_priority_order(store: &dyn Store) {
    let d = dag("d");
    sync(store, &[&d], false).await;
    let weighted = |id: &str, w: i64| NewTi {
        priority_weight: w,
        ..ti(id, 1)
    };
    let mut runs = vec![];
    for (run_id, hour) in [("late", 5), ("early", 1), ("idle", 0)] {
        let run = store
            .create_run(
                &new_run(&d, run_id, RunType::Scheduled, hour),
                &[weighted("lo", 1), weighted("hi", 9), weighted("none", 50)],
                t(hour),
            )
            .await
            .unwrap();
        let sched = [
            to("lo", TaskState::None, TaskState::Scheduled),
            to("hi", TaskState::None, TaskState::Scheduled),
        ];
        store.apply_transitions(run.id, &sched, t(6)).await.unwrap();
        runs.push(run);
    }
    for run in &runs[..2] {
        store
            .force_run_state(run.id, RunState::Running, t(6))
            .await
            .unwrap();
    }
    let page = async |limit: u32, offset: u32| -> Vec<(String, String)> {
        store
            .scheduled_task_instances(limit, offset, &ScheduledSkip::default())
            .await
            .unwrap()
            .into_iter()
            .map(|ti| (ti.task_id, ti.run_id))
            .collect()
    };
    let want = [
        ("hi", "early"),
        ("hi", "late"),
        ("lo", "early"),
        ("lo", "late"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(page(100, 0).await, want);
    // Pages of the same order.
    assert_eq!(page(3, 0).await, want[..3]);
    assert_eq!(page(3, 3).await, want[3..]);
    assert!(page(3, 4).await.is_empty());
    // DAGs and pools without room are left out.
    let skipping = async |dags: &[&str], pools: &[&str]| {
        let skip = ScheduledSkip {
            dags: dags.iter().map(|d| d.to_string()).collect(),
            pools: pools.iter().map(|p| p.to_string()).collect(),
        };
        store
            .scheduled_task_instances(100, 0, &skip)
            .await
            .unwrap()
            .len()
    };
    let dag_id = store
        .scheduled_task_instances(1, 0, &ScheduledSkip::default())
        .await
        .unwrap()[0]
        .dag_id
        .clone();
    assert_eq!(skipping(&["another"], &["another_pool"]).await, 4);
    assert_eq!(skipping(&[dag_id.as_str()], &[]).await, 0);
    assert_eq!(skipping(&[], &["default_pool"]).await, 0);
}

pub async fn queue_starts_a_try_only_for_scheduled_instances(store: &dyn Store) {
    let run = running_run(store, &[ti("a", 2), ti("b", 2)]).await;
    store
        .apply_transitions(
            run.id,
            &[to("a", TaskState::None, TaskState::Scheduled)],
            t(2),
        )
        .await
        .unwrap();
    let queued = queue(
        store,
        &[key(&run, "a"), key(&run, "b"), key(&run, "ghost")],
        t(3),
    )
    .await;
    assert_eq!(queued.len(), 1, "b was not scheduled");
    let a = &queued[0];
    assert_eq!(
        (a.task_id.as_str(), a.state, a.try_number),
        ("a", TaskState::Queued, 1)
    );
    assert_eq!(a.queued_at, Some(t(3)));
    assert_eq!(
        a.queued_by_job_id,
        Some(job(store).await),
        "owned by the queueing job"
    );
    assert_eq!(
        store.task_instance(&key(&run, "a")).await.unwrap().as_ref(),
        Some(a)
    );
    assert_eq!(ti_state(store, &run, "b").await, TaskState::None);

    let tries = store.tries(&key(&run, "a")).await.unwrap();
    assert_eq!(tries.len(), 1, "the current try is in the history");
    assert_eq!(
        (tries[0].try_number, tries[0].state),
        (1, TaskState::Queued)
    );

    assert!(queue(store, &[key(&run, "a")], t(4)).await.is_empty());
    assert!(queue(store, &[], t(4)).await.is_empty());
}

pub async fn mark_running_is_conditional_on_queued_and_try(store: &dyn Store) {
    let run = running_run(store, &[ti("a", 2)]).await;
    let k = key(&run, "a");
    assert!(
        !store.mark_running(&k, 0, None, "h", t(2)).await.unwrap(),
        "not queued"
    );
    store
        .apply_transitions(
            run.id,
            &[to("a", TaskState::None, TaskState::Scheduled)],
            t(2),
        )
        .await
        .unwrap();
    queue(store, std::slice::from_ref(&k), t(2)).await;

    assert!(
        !store.mark_running(&k, 2, Some(1), "h", t(3)).await.unwrap(),
        "wrong try"
    );
    assert!(
        store
            .mark_running(&k, 1, Some(4242), "worker-1", t(3))
            .await
            .unwrap()
    );
    let row = store.task_instance(&k).await.unwrap().unwrap();
    assert_eq!(row.state, TaskState::Running);
    assert_eq!(row.start_date, Some(t(3)));
    assert_eq!(row.pid, Some(4242));
    assert_eq!(row.hostname.as_deref(), Some("worker-1"));
    assert!(
        !store.mark_running(&k, 1, Some(1), "h", t(4)).await.unwrap(),
        "already running"
    );

    let tries = store.tries(&k).await.unwrap();
    assert_eq!(tries.len(), 1);
    assert_eq!(tries[0].state, TaskState::Running);
    assert_eq!(tries[0].start_date, Some(t(3)));
    assert_eq!(tries[0].hostname.as_deref(), Some("worker-1"));
}

pub async fn finish_try_records_history_and_refuses_stale_tries(store: &dyn Store) {
    let run = running_run(store, &[ti("a", 1), ti("q", 1)]).await;
    let k = key(&run, "a");
    let n = start_try(store, &run, "a", t(2)).await;

    assert!(
        !store
            .finish_try(&k, n + 1, TaskState::Success, None, t(3))
            .await
            .unwrap()
    );
    assert_eq!(ti_state(store, &run, "a").await, TaskState::Running);

    assert!(
        store
            .finish_try(&k, n, TaskState::Success, None, t(3))
            .await
            .unwrap()
    );
    let row = store.task_instance(&k).await.unwrap().unwrap();
    assert_eq!(
        (row.state, row.end_date, row.retry_at),
        (TaskState::Success, Some(t(3)), None)
    );
    let tries = store.tries(&k).await.unwrap();
    assert_eq!(tries.len(), 1);
    let tr = &tries[0];
    assert_eq!(
        (tr.run_pk, tr.task_id.as_str(), tr.try_number),
        (run.id, "a", n)
    );
    assert_eq!(tr.state, TaskState::Success);
    assert_eq!((tr.start_date, tr.end_date), (Some(t(2)), Some(t(3))));
    assert_eq!(tr.hostname.as_deref(), Some("host-a"));

    // Finished already: a late second report does not apply.
    assert!(
        !store
            .finish_try(&k, n, TaskState::Failed, None, t(4))
            .await
            .unwrap()
    );
    assert_eq!(ti_state(store, &run, "a").await, TaskState::Success);

    // A queued try may finish without having run (the executor could not start it).
    store
        .apply_transitions(
            run.id,
            &[to("q", TaskState::None, TaskState::Scheduled)],
            t(5),
        )
        .await
        .unwrap();
    let q = queue(store, &[key(&run, "q")], t(5)).await.remove(0);
    assert!(
        store
            .finish_try(&key(&run, "q"), q.try_number, TaskState::Failed, None, t(6))
            .await
            .unwrap()
    );
    let tries = store.tries(&key(&run, "q")).await.unwrap();
    assert_eq!(
        (tries[0].state, tries[0].start_date),
        (TaskState::Failed, None)
    );
}

pub async fn try_reports_apply_in_order_in_one_batch(store: &dyn Store) {
    let run = running_run(store, &[ti("a", 1), ti("b", 1)]).await;
    for task in ["a", "b"] {
        store
            .apply_transitions(
                run.id,
                &[to(task, TaskState::None, TaskState::Scheduled)],
                t(2),
            )
            .await
            .unwrap();
    }
    let queued = queue(store, &[key(&run, "a"), key(&run, "b")], t(2)).await;
    assert_eq!(queued.len(), 2);
    let reports = [
        TryReport::Started {
            key: key(&run, "a"),
            try_number: 1,
            pid: Some(7),
            at: t(3),
        },
        TryReport::Finished {
            key: key(&run, "a"),
            try_number: 1,
            new: TaskState::Success,
            retry_at: None,
            at: t(5),
            skip: vec![],
        },
        // A stale try number does not apply, and does not stop the rest.
        TryReport::Started {
            key: key(&run, "b"),
            try_number: 2,
            pid: Some(8),
            at: t(3),
        },
        TryReport::Started {
            key: key(&run, "b"),
            try_number: 1,
            pid: Some(9),
            at: t(4),
        },
    ];
    let applied = store.record_try_reports(&reports, "host-b").await.unwrap();
    assert_eq!(applied, [true, true, false, true]);
    assert_eq!(ti_state(store, &run, "a").await, TaskState::Success);
    let b = store.task_instance(&key(&run, "b")).await.unwrap().unwrap();
    assert_eq!(
        (b.state, b.pid, b.hostname.as_deref(), b.start_date),
        (TaskState::Running, Some(9), Some("host-b"), Some(t(4)))
    );
    // Dates are the reports' own, not the time of recording.
    let a = store.task_instance(&key(&run, "a")).await.unwrap().unwrap();
    assert_eq!((a.start_date, a.end_date), (Some(t(3)), Some(t(5))));
    let tries = store.tries(&key(&run, "a")).await.unwrap();
    assert_eq!(tries.len(), 1);
    assert_eq!(
        (tries[0].state, tries[0].start_date, tries[0].end_date),
        (TaskState::Success, Some(t(3)), Some(t(5)))
    );

    let bad = [TryReport::Finished {
        key: key(&run, "b"),
        try_number: 1,
        new: TaskState::Running,
        retry_at: None,
        at: t(6),
        skip: vec![],
    }];
    assert!(store.record_try_reports(&bad, "host-b").await.is_err());
    assert_eq!(ti_state(store, &run, "b").await, TaskState::Running);
}

pub async fn finish_try_rejects_states_that_do_not_end_a_try(store: &dyn Store) {
    let run = running_run(store, &[ti("a", 1)]).await;
    let n = start_try(store, &run, "a", t(2)).await;
    for bad in [
        TaskState::Running,
        TaskState::None,
        TaskState::Scheduled,
        TaskState::Queued,
    ] {
        let res = store.finish_try(&key(&run, "a"), n, bad, None, t(3)).await;
        assert!(matches!(res, Err(StoreError::Invalid(_))), "{bad}: {res:?}");
    }
    assert_eq!(ti_state(store, &run, "a").await, TaskState::Running);
}

pub async fn retry_cycle_keeps_every_try(store: &dyn Store) {
    let run = running_run(store, &[ti("a", 2)]).await;
    let k = key(&run, "a");
    let first = start_try(store, &run, "a", t(2)).await;
    assert_eq!(first, 1);
    let retry_at = t(3) + Duration::minutes(5);
    assert!(
        store
            .finish_try(&k, first, TaskState::UpForRetry, Some(retry_at), t(3))
            .await
            .unwrap()
    );
    let row = store.task_instance(&k).await.unwrap().unwrap();
    assert_eq!(
        (row.state, row.retry_at),
        (TaskState::UpForRetry, Some(retry_at))
    );
    assert_eq!(row.end_date, Some(t(3)));

    let second = start_try(store, &run, "a", t(4)).await;
    assert_eq!(second, 2);
    let row = store.task_instance(&k).await.unwrap().unwrap();
    assert_eq!(
        (row.retry_at, row.end_date),
        (None, None),
        "a new try starts clean"
    );
    assert_eq!(row.start_date, Some(t(4)));
    assert_eq!(row.max_tries, 2);

    assert!(
        store
            .finish_try(&k, second, TaskState::Failed, None, t(5))
            .await
            .unwrap()
    );
    let tries = store.tries(&k).await.unwrap();
    let summary: Vec<_> = tries
        .iter()
        .map(|t| (t.try_number, t.state, t.end_date))
        .collect();
    assert_eq!(
        summary,
        [
            (1, TaskState::UpForRetry, Some(t(3))),
            (2, TaskState::Failed, Some(t(5)))
        ]
    );
}

pub async fn force_ti_state_overrides_and_closes_live_try(store: &dyn Store) {
    let run = running_run(store, &[ti("a", 1), ti("b", 1)]).await;
    let k = key(&run, "a");
    let n = start_try(store, &run, "a", t(2)).await;

    assert!(
        store
            .force_ti_state(&k, TaskState::Success, t(3))
            .await
            .unwrap()
    );
    let row = store.task_instance(&k).await.unwrap().unwrap();
    assert_eq!((row.state, row.end_date), (TaskState::Success, Some(t(3))));
    let tries = store.tries(&k).await.unwrap();
    assert_eq!(
        (tries[0].state, tries[0].end_date),
        (TaskState::Success, Some(t(3)))
    );
    // The process reporting afterwards is too late.
    assert!(
        !store
            .finish_try(&k, n, TaskState::Failed, None, t(4))
            .await
            .unwrap()
    );

    // Never-run instances can be forced too; no try appears.
    assert!(
        store
            .force_ti_state(&key(&run, "b"), TaskState::Failed, t(4))
            .await
            .unwrap()
    );
    assert_eq!(ti_state(store, &run, "b").await, TaskState::Failed);
    assert!(store.tries(&key(&run, "b")).await.unwrap().is_empty());

    assert!(
        !store
            .force_ti_state(&key(&run, "ghost"), TaskState::Failed, t(4))
            .await
            .unwrap()
    );
}

pub async fn clear_task_instances_resets_them_and_requeues_run(store: &dyn Store) {
    let run = running_run(store, &[ti("a", 2), ti("b", 1), ti("c", 1)]).await;
    let ka = key(&run, "a");
    let n1 = start_try(store, &run, "a", t(2)).await;
    store
        .finish_try(&ka, n1, TaskState::UpForRetry, None, t(3))
        .await
        .unwrap();
    let n2 = start_try(store, &run, "a", t(4)).await;
    store
        .finish_try(&ka, n2, TaskState::Failed, None, t(5))
        .await
        .unwrap();
    let nb = start_try(store, &run, "b", t(4)).await;
    store
        .finish_try(&key(&run, "b"), nb, TaskState::Success, None, t(5))
        .await
        .unwrap();
    store
        .force_run_state(run.id, RunState::Failed, t(6))
        .await
        .unwrap();
    let owner = job(store).await;
    assert_eq!(
        store
            .task_instance(&ka)
            .await
            .unwrap()
            .unwrap()
            .queued_by_job_id,
        Some(owner),
        "a finished try keeps who ran it"
    );

    let cleared = store
        .clear_task_instances(run.id, &["a".to_string(), "ghost".to_string()], t(7))
        .await
        .unwrap();
    assert_eq!(cleared, 1);

    let a = store.task_instance(&ka).await.unwrap().unwrap();
    assert_eq!(a.state, TaskState::None);
    assert_eq!(a.try_number, 2, "try numbers keep counting");
    assert_eq!(
        a.max_tries, 4,
        "two more tries: the task's full retries again"
    );
    assert_eq!(
        (a.queued_at, a.start_date, a.end_date, a.retry_at, a.pid),
        (None, None, None, None, None)
    );
    assert_eq!((a.hostname, a.queued_by_job_id), (None, None));
    assert_eq!(store.tries(&ka).await.unwrap().len(), 2, "history kept");
    assert_eq!(
        ti_state(store, &run, "b").await,
        TaskState::Success,
        "not cleared"
    );

    let r = store.run_by_pk(run.id).await.unwrap().unwrap();
    assert_eq!((r.state, r.end_date), (RunState::Queued, None));
    assert_eq!(r.queued_at, t(7));
    assert_eq!(
        r.start_date, None,
        "a finished run starts afresh, as Airflow's clear_task_instances"
    );

    // The cleared instance runs again as try 3; the run's start is its new one.
    store
        .force_run_state(run.id, RunState::Running, t(8))
        .await
        .unwrap();
    assert_eq!(start_try(store, &run, "a", t(8)).await, 3);
    let r = store.run_by_pk(run.id).await.unwrap().unwrap();
    assert_eq!(r.start_date, Some(t(8)));

    // Clearing a never-run instance keeps its original budget; a run still going keeps its
    // start.
    store
        .clear_task_instances(run.id, &["c".to_string()], t(9))
        .await
        .unwrap();
    let r = store.run_by_pk(run.id).await.unwrap().unwrap();
    assert_eq!((r.state, r.start_date), (RunState::Queued, Some(t(8))));
    assert_eq!(
        store
            .task_instance(&key(&run, "c"))
            .await
            .unwrap()
            .unwrap()
            .max_tries,
        1
    );
}

pub async fn clear_task_instances_abandons_live_try(store: &dyn Store) {
    let run = running_run(store, &[ti("a", 1)]).await;
    let k = key(&run, "a");
    let n = start_try(store, &run, "a", t(2)).await;
    assert_eq!(
        store
            .clear_task_instances(run.id, &["a".to_string()], t(3))
            .await
            .unwrap(),
        1
    );

    let tries = store.tries(&k).await.unwrap();
    assert_eq!(tries.len(), 1);
    assert_eq!(
        (tries[0].state, tries[0].end_date),
        (TaskState::Running, Some(t(3)))
    );
    // The abandoned process's report must not touch the cleared instance.
    assert!(
        !store
            .finish_try(&k, n, TaskState::Success, None, t(4))
            .await
            .unwrap()
    );
    let row = store.task_instance(&k).await.unwrap().unwrap();
    assert_eq!((row.state, row.max_tries), (TaskState::None, 2));
}

pub async fn clear_task_instances_of_unknown_tasks_leaves_run_alone(store: &dyn Store) {
    let run = running_run(store, &[ti("a", 1)]).await;
    store
        .force_run_state(run.id, RunState::Success, t(5))
        .await
        .unwrap();
    assert_eq!(
        store
            .clear_task_instances(run.id, &["ghost".to_string()], t(6))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store.clear_task_instances(run.id, &[], t(6)).await.unwrap(),
        0
    );
    let r = store.run_by_pk(run.id).await.unwrap().unwrap();
    assert_eq!((r.state, r.end_date), (RunState::Success, Some(t(5))));
}

pub async fn active_counts_sum_queued_and_running(store: &dyn Store) {
    assert_eq!(store.active_counts().await.unwrap().total, 0);
    store
        .upsert_pool(&PoolRow {
            name: "big".into(),
            slots: 10,
            description: String::new(),
            tenant: None,
        })
        .await
        .unwrap();
    let (d, e) = (dag("d"), dag("e"));
    sync(store, &[&d, &e], false).await;
    let big = |id: &str| NewTi {
        pool: "big".into(),
        pool_slots: 3,
        ..ti(id, 1)
    };
    let rd = store
        .create_run(
            &new_run(&d, "r", RunType::Manual, 0),
            &[big("q"), ti("r", 1), ti("s", 1), ti("done", 1)],
            t(0),
        )
        .await
        .unwrap();
    let re = store
        .create_run(&new_run(&e, "r", RunType::Manual, 0), &[big("x")], t(0))
        .await
        .unwrap();
    for run in [&rd, &re] {
        store
            .force_run_state(run.id, RunState::Running, t(1))
            .await
            .unwrap();
    }
    // d: q queued (big, 3), r running (default, 1), s scheduled, done success. e: x running.
    let sched: Vec<_> = ["q", "r", "s", "done"]
        .iter()
        .map(|id| to(id, TaskState::None, TaskState::Scheduled))
        .collect();
    store.apply_transitions(rd.id, &sched, t(1)).await.unwrap();
    queue(store, &[key(&rd, "q")], t(1)).await;
    start_try(store, &rd, "r", t(1)).await;
    let n = start_try(store, &rd, "done", t(1)).await;
    store
        .finish_try(&key(&rd, "done"), n, TaskState::Success, None, t(2))
        .await
        .unwrap();
    start_try(store, &re, "x", t(1)).await;

    let counts = store.active_counts().await.unwrap();
    assert_eq!(counts.total, 3);
    assert_eq!(
        counts.per_pool,
        HashMap::from([("big".into(), 6), ("default_pool".into(), 1)])
    );
    assert_eq!(
        counts.per_dag,
        HashMap::from([("d".into(), 2), ("e".into(), 1)])
    );
}

pub async fn orphaned_task_instances_belong_to_jobs_not_alive(store: &dyn Store) {
    let names = ["aq", "ar", "bq", "br", "bf", "gq", "n"];
    let tis: Vec<NewTi> = names.iter().map(|n| ti(n, 1)).collect();
    let run = running_run(store, &tis).await;
    schedule(store, &run, &names, t(1)).await;
    let a = store.register_scheduler("host-a", 1, t(1)).await.unwrap();
    let b = store.register_scheduler("host-b", 2, t(1)).await.unwrap();
    // a: aq queued, ar running. b: bq queued, br running, bf failed. A job that never
    // existed: gq queued. n never queued.
    queue_as(store, a, &[key(&run, "aq"), key(&run, "ar")], t(2)).await;
    queue_as(
        store,
        b,
        &[key(&run, "bq"), key(&run, "br"), key(&run, "bf")],
        t(2),
    )
    .await;
    queue_as(store, 999_999, &[key(&run, "gq")], t(2)).await;
    for id in ["ar", "br", "bf"] {
        assert!(
            store
                .mark_running(&key(&run, id), 1, Some(7), "h", t(2))
                .await
                .unwrap()
        );
    }
    assert!(
        store
            .finish_try(&key(&run, "bf"), 1, TaskState::Failed, None, t(3))
            .await
            .unwrap()
    );
    assert_eq!(orphan_ids(store).await, ["gq"], "both jobs are alive");

    // b falls silent and is declared dead: its live instances are orphans, by task id.
    assert_eq!(store.reap_schedulers(t(5), a, t(6)).await.unwrap(), [b]);
    assert_eq!(orphan_ids(store).await, ["bq", "br", "gq"]);

    // a stops cleanly: its live instances are orphans too.
    store.stop_scheduler(a, t(7)).await.unwrap();
    assert_eq!(orphan_ids(store).await, ["aq", "ar", "bq", "br", "gq"]);
    let states: Vec<(String, TaskState, Option<i64>)> = store
        .orphaned_task_instances()
        .await
        .unwrap()
        .into_iter()
        .map(|ti| (ti.task_id, ti.state, ti.queued_by_job_id))
        .collect();
    assert_eq!(states[1], ("ar".into(), TaskState::Running, Some(a)));

    // An instance that lost its owner by a clear is an orphan only while live; clearing
    // leaves it `none`.
    store
        .clear_task_instances(run.id, &["aq".to_string()], t(8))
        .await
        .unwrap();
    assert_eq!(orphan_ids(store).await, ["ar", "bq", "br", "gq"]);
}

pub async fn an_orphan_is_adopted_once_and_only_while_orphaned(store: &dyn Store) {
    let names = ["p", "q"];
    let tis: Vec<NewTi> = names.iter().map(|n| ti(n, 1)).collect();
    let run = running_run(store, &tis).await;
    schedule(store, &run, &names, t(1)).await;
    let old = store.register_scheduler("host-a", 1, t(1)).await.unwrap();
    queue_as(store, old, &[key(&run, "p"), key(&run, "q")], t(2)).await;
    assert!(
        store
            .mark_running(&key(&run, "p"), 1, None, "h", t(2))
            .await
            .unwrap()
    );
    let new = store.register_scheduler("host-b", 2, t(3)).await.unwrap();
    assert!(
        !store.adopt_orphan(&key(&run, "p"), 1, new).await.unwrap(),
        "its scheduler is alive: not an orphan"
    );
    store.stop_scheduler(old, t(4)).await.unwrap();
    assert!(
        !store.adopt_orphan(&key(&run, "p"), 2, new).await.unwrap(),
        "another try"
    );
    assert!(store.adopt_orphan(&key(&run, "p"), 1, new).await.unwrap());
    let third = store.register_scheduler("host-c", 3, t(5)).await.unwrap();
    assert!(
        !store.adopt_orphan(&key(&run, "p"), 1, third).await.unwrap(),
        "adopted by a live scheduler already"
    );
    assert_eq!(orphan_ids(store).await, ["q"]);
    let p = store.task_instance(&key(&run, "p")).await.unwrap().unwrap();
    assert_eq!(
        (p.state, p.queued_by_job_id),
        (TaskState::Running, Some(new))
    );
    // Its end is recorded as usual afterwards.
    assert!(
        store
            .finish_try(&key(&run, "p"), 1, TaskState::Success, None, t(6))
            .await
            .unwrap()
    );
    assert!(
        !store.adopt_orphan(&key(&run, "p"), 1, new).await.unwrap(),
        "not live"
    );
}

/// Task ids of [`SchedulerStore::orphaned_task_instances`], in the order returned.
async fn orphan_ids(store: &dyn Store) -> Vec<String> {
    let rows = store.orphaned_task_instances().await.unwrap();
    rows.into_iter().map(|ti| ti.task_id).collect()
}

pub async fn previous_run_states_finds_the_run_just_before(store: &dyn Store) {
    let (d, e) = (dag("d"), dag("e"));
    sync(store, &[&d, &e], false).await;
    assert_eq!(store.previous_run_states("d", t(10)).await.unwrap(), None);

    let mk = |dag: &Dag, run_id: &str, hour: i64, tis: Vec<NewTi>| {
        let spec = new_run(dag, run_id, RunType::Scheduled, hour);
        async move { store.create_run(&spec, &tis, t(hour)).await.unwrap() }
    };
    let older = mk(&d, "h1", 1, vec![ti("a", 1)]).await;
    let prev = mk(&d, "h3", 3, vec![ti("a", 1), ti("b", 1)]).await;
    mk(&d, "h5", 5, vec![ti("a", 1)]).await;
    mk(&e, "h4", 4, vec![ti("z", 1)]).await;
    store
        .force_ti_state(&key(&older, "a"), TaskState::Failed, t(6))
        .await
        .unwrap();
    store
        .force_ti_state(&key(&prev, "a"), TaskState::Success, t(6))
        .await
        .unwrap();

    let states = store.previous_run_states("d", t(5)).await.unwrap().unwrap();
    assert_eq!(
        states,
        HashMap::from([
            ("a".into(), TaskState::Success),
            ("b".into(), TaskState::None)
        ])
    );
    let first = store.previous_run_states("d", t(3)).await.unwrap().unwrap();
    assert_eq!(first, HashMap::from([("a".into(), TaskState::Failed)]));
    assert_eq!(
        store.previous_run_states("d", t(1)).await.unwrap(),
        None,
        "strictly before"
    );

    // A previous run without task instances is still a previous run.
    mk(&e, "h6", 6, vec![]).await;
    assert_eq!(
        store.previous_run_states("e", t(7)).await.unwrap(),
        Some(HashMap::new())
    );
}

// ---- pools --------------------------------------------------------------------------------

pub async fn pools_crud(store: &dyn Store) {
    let pool = |name: &str, slots: i64, description: &str| PoolRow {
        name: name.into(),
        slots,
        description: description.into(),
        tenant: None,
    };
    store
        .upsert_pool(&pool("default_pool", 32, "from config"))
        .await
        .unwrap();
    store.upsert_pool(&pool("gpu", 2, "GPUs")).await.unwrap();
    store
        .upsert_pool(&pool("api", 5, "rate limited"))
        .await
        .unwrap();
    store
        .upsert_pool(&pool("gpu", 4, "more GPUs"))
        .await
        .unwrap();
    assert_eq!(
        store.pools().await.unwrap(),
        [
            pool("api", 5, "rate limited"),
            pool("default_pool", 32, "from config"),
            pool("gpu", 4, "more GPUs")
        ]
    );
    assert!(store.delete_pool("api").await.unwrap());
    assert!(!store.delete_pool("api").await.unwrap());
    let res = store.delete_pool("default_pool").await;
    assert!(matches!(res, Err(StoreError::Invalid(_))), "{res:?}");
    assert_eq!(store.pools().await.unwrap().len(), 2);
}

pub async fn pools_belong_to_a_tenant_or_to_all(store: &dyn Store) {
    let own = PoolRow {
        name: "a_gpu".into(),
        slots: 2,
        description: "team a's GPUs".into(),
        tenant: Some("team_a".into()),
    };
    store.create_pool(&own).await.unwrap();
    let taken = store
        .create_pool(&PoolRow {
            tenant: Some("team_b".into()),
            ..own.clone()
        })
        .await;
    assert!(matches!(taken, Err(StoreError::Conflict(_))), "{taken:?}");
    // Updates change slots and description, never the owner.
    store
        .upsert_pool(&PoolRow {
            slots: 3,
            tenant: None,
            ..own.clone()
        })
        .await
        .unwrap();
    let pools = store.pools().await.unwrap();
    let stored = pools.iter().find(|p| p.name == "a_gpu").unwrap();
    assert_eq!(
        (stored.slots, stored.tenant.as_deref()),
        (3, Some("team_a"))
    );
    let default = pools.iter().find(|p| p.name == "default_pool").unwrap();
    assert_eq!(default.tenant, None, "default_pool is shared");
}

pub async fn timestamps_keep_microseconds(store: &dyn Store) {
    let precise = t(2) + Duration::nanoseconds(123_456_789);
    let micros = t(2) + Duration::microseconds(123_456);
    let run = running_run(store, &[ti("a", 1)]).await;
    store
        .apply_transitions(
            run.id,
            &[to("a", TaskState::None, TaskState::Scheduled)],
            t(1),
        )
        .await
        .unwrap();
    let queued = queue(store, &[key(&run, "a")], precise).await;
    assert_eq!(queued[0].queued_at, Some(micros));
    let stored = store.task_instance(&key(&run, "a")).await.unwrap().unwrap();
    assert_eq!(stored.queued_at, Some(micros));
}

// ---- several schedulers on one database --------------------------------------------------

fn in_pool(task_id: &str, pool: &str, pool_slots: u32) -> NewTi {
    NewTi {
        pool: pool.to_string(),
        pool_slots,
        ..ti(task_id, 1)
    }
}

fn limits(max_active_tasks: &[(&str, i64)]) -> QueueLimits {
    QueueLimits {
        max_active_tasks: max_active_tasks
            .iter()
            .map(|(dag_id, max)| (dag_id.to_string(), *max))
            .collect(),
    }
}

fn ids(rows: &[TiRow]) -> Vec<&str> {
    rows.iter().map(|r| r.task_id.as_str()).collect()
}

pub async fn queue_respects_pool_slots_and_max_active_tasks(store: &dyn Store) {
    store
        .upsert_pool(&PoolRow {
            name: "p".into(),
            slots: 3,
            description: String::new(),
            tenant: None,
        })
        .await
        .unwrap();
    let (d, e) = (dag("d"), dag("e"));
    sync(store, &[&d, &e], false).await;
    let rd = store
        .create_run(
            &new_run(&d, "r", RunType::Manual, 0),
            &[
                in_pool("a", "p", 2),
                in_pool("b", "p", 2),
                in_pool("c", "p", 1),
                in_pool("g", "ghost", 1),
                ti("x", 1),
            ],
            t(0),
        )
        .await
        .unwrap();
    let re = store
        .create_run(
            &new_run(&e, "r", RunType::Manual, 0),
            &[ti("e0", 1), ti("e1", 1), ti("e2", 1), ti("e3", 1)],
            t(0),
        )
        .await
        .unwrap();
    for run in [&rd, &re] {
        store
            .force_run_state(run.id, RunState::Running, t(0))
            .await
            .unwrap();
    }
    schedule(store, &rd, &["a", "b", "c", "g"], t(1)).await;
    schedule(store, &re, &["e0", "e1", "e2", "e3"], t(1)).await;
    let owner = store.register_scheduler("host", 1, t(0)).await.unwrap();

    // a takes 2 of p's 3 slots, b (2) would overflow, c (1) fits; g's pool does not exist;
    // x is not scheduled.
    let keys: Vec<TiKey> = ["a", "b", "c", "g", "x"]
        .iter()
        .map(|id| key(&rd, id))
        .collect();
    let queued = store
        .queue(&keys, owner, &limits(&[("e", 1)]), t(2))
        .await
        .unwrap();
    assert_eq!(ids(&queued), ["a", "c"]);
    assert!(queued.iter().all(|r| r.queued_by_job_id == Some(owner)
        && r.state == TaskState::Queued
        && r.try_number == 1));
    for (id, state) in [
        ("b", TaskState::Scheduled),
        ("g", TaskState::Scheduled),
        ("x", TaskState::None),
    ] {
        assert_eq!(ti_state(store, &rd, id).await, state, "{id}");
    }
    // Running instances hold their slots too: with a running, p is still full.
    assert!(
        store
            .mark_running(&key(&rd, "a"), 1, None, "h", t(3))
            .await
            .unwrap()
    );
    assert!(
        queue_as(store, owner, &[key(&rd, "b")], t(3))
            .await
            .is_empty()
    );
    // Freed slots are taken again.
    store
        .finish_try(&key(&rd, "a"), 1, TaskState::Success, None, t(4))
        .await
        .unwrap();
    assert_eq!(
        ids(&queue_as(store, owner, &[key(&rd, "b")], t(4)).await),
        ["b"]
    );

    // e may have 2 active instances: e0 runs, so only e1 of e1..e3 is queued. The limit of
    // another DAG does not apply to e.
    assert_eq!(
        ids(&queue_as(store, owner, &[key(&re, "e0")], t(5)).await),
        ["e0"]
    );
    store
        .mark_running(&key(&re, "e0"), 1, None, "h", t(5))
        .await
        .unwrap();
    let keys: Vec<TiKey> = ["e1", "e2", "e3"].iter().map(|id| key(&re, id)).collect();
    let queued = store
        .queue(&keys, owner, &limits(&[("e", 2), ("d", 0)]), t(6))
        .await
        .unwrap();
    assert_eq!(ids(&queued), ["e1"]);
    // Without a limit for e, the rest go (the default pool has room).
    assert_eq!(
        ids(&queue_as(store, owner, &keys, t(7)).await),
        ["e2", "e3"]
    );
}

pub async fn start_runs_respects_max_active_runs_and_starts_only_queued_runs(store: &dyn Store) {
    let (d, e) = (dag("d"), dag("e"));
    sync(store, &[&d, &e], false).await;
    let mut runs = vec![];
    for (hour, run_id) in ["running", "done", "q1", "q2", "q3"].iter().enumerate() {
        let run = store
            .create_run(
                &new_run(&d, run_id, RunType::Manual, hour as i64),
                &[],
                t(0),
            )
            .await
            .unwrap();
        runs.push(run);
    }
    let [running, done, q1, q2, q3] = &runs[..] else {
        unreachable!()
    };
    let other = store
        .create_run(&new_run(&e, "q", RunType::Manual, 0), &[], t(0))
        .await
        .unwrap();
    store
        .force_run_state(running.id, RunState::Running, t(1))
        .await
        .unwrap();
    store
        .force_run_state(done.id, RunState::Success, t(1))
        .await
        .unwrap();

    // d may run 2: `running` holds one, q1 takes the other; `done` is not queued; e counts
    // on its own.
    let started = store
        .start_runs(
            &[
                (done.id, 2),
                (q1.id, 2),
                (q2.id, 2),
                (other.id, 1),
                (q3.id, 2),
                (4242, 2),
            ],
            t(2),
        )
        .await
        .unwrap();
    assert_eq!(started, [q1.id, other.id]);
    let r = store.run_by_pk(q1.id).await.unwrap().unwrap();
    assert_eq!(
        (r.state, r.start_date, r.end_date),
        (RunState::Running, Some(t(2)), None)
    );
    for (run, state) in [
        (done, RunState::Success),
        (q2, RunState::Queued),
        (q3, RunState::Queued),
    ] {
        let r = store.run_by_pk(run.id).await.unwrap().unwrap();
        assert_eq!(r.state, state, "{}", r.run_id);
    }
    assert_eq!(
        store.run_by_pk(done.id).await.unwrap().unwrap().end_date,
        Some(t(1)),
        "a run that was not started keeps its dates"
    );

    // A higher limit starts one more; a run listed twice starts once.
    let started = store
        .start_runs(&[(q2.id, 3), (q2.id, 3), (q3.id, 3)], t(3))
        .await
        .unwrap();
    assert_eq!(started, [q2.id]);
    assert!(store.start_runs(&[], t(3)).await.unwrap().is_empty());
}

/// [`SchedulerStore::evaluate_runs`] of one run, as the only outcome.
async fn evaluate_one(
    store: &dyn Store,
    run_pk: i64,
    decide: &dyn RunDecider,
    now: DateTime<Utc>,
) -> Evaluated {
    let mut outcomes = store.evaluate_runs(&[run_pk], decide, now).await.unwrap();
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    let (pk, outcome) = outcomes.remove(0);
    assert_eq!(pk, run_pk);
    outcome
}

fn snapshot_ids(tis: &[TiSnapshot]) -> Vec<&str> {
    tis.iter().map(|ti| ti.task_id.as_str()).collect()
}

pub async fn evaluate_runs_records_the_decision_of_a_running_run(store: &dyn Store) {
    let run = running_run(store, &[ti("b", 1), ti("a", 1), ti("c", 1)]).await;
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let run_pk = run.id;
    let decide = |r: &RunRow, tis: &[TiSnapshot]| {
        calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(r.id, run_pk);
        assert_eq!(r.state, RunState::Running);
        assert_eq!(snapshot_ids(tis), ["a", "b", "c"], "ordered by task_id");
        assert!(
            tis.iter().all(|ti| ti.state == TaskState::None
                && ti.try_number == 0
                && ti.retry_at.is_none()),
            "{tis:?}"
        );
        RunDecision {
            transitions: vec![
                to("a", TaskState::None, TaskState::Scheduled),
                to("b", TaskState::Success, TaskState::Failed),
                to("c", TaskState::None, TaskState::Skipped),
            ],
            run_state: None,
        }
    };
    let outcome = evaluate_one(store, run.id, &decide, t(2)).await;
    let Evaluated::Applied { decision, applied } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(applied, 2, "b was not in the expected state");
    assert_eq!(decision.transitions.len(), 3);
    assert_eq!(decision.run_state, None);
    assert_eq!(ti_state(store, &run, "a").await, TaskState::Scheduled);
    assert_eq!(ti_state(store, &run, "b").await, TaskState::None);
    let c = store.task_instance(&key(&run, "c")).await.unwrap().unwrap();
    assert_eq!((c.state, c.end_date), (TaskState::Skipped, Some(t(2))));
    assert_eq!(
        store.run_by_pk(run.id).await.unwrap().unwrap().state,
        RunState::Running
    );

    // The run finishes, with dates as force_run_state sets them; the snapshots show the
    // instances as they now are.
    let finish = |_: &RunRow, tis: &[TiSnapshot]| {
        let states: Vec<TaskState> = tis.iter().map(|ti| ti.state).collect();
        if !tis.is_empty() {
            assert_eq!(
                states,
                [TaskState::Scheduled, TaskState::None, TaskState::Skipped]
            );
        }
        RunDecision {
            transitions: vec![to("b", TaskState::None, TaskState::Skipped)],
            run_state: Some(RunState::Failed),
        }
    };
    let outcome = evaluate_one(store, run.id, &finish, t(3)).await;
    assert_eq!(
        outcome,
        Evaluated::Applied {
            decision: finish(&run, &[]),
            applied: 1
        }
    );
    let r = store.run_by_pk(run.id).await.unwrap().unwrap();
    assert_eq!(
        (r.state, r.start_date, r.end_date),
        (RunState::Failed, Some(t(1)), Some(t(3)))
    );

    // Finished, queued and unknown runs are not evaluated.
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(
        evaluate_one(store, run.id, &decide, t(4)).await,
        Evaluated::NotRunning
    );
    store
        .force_run_state(run.id, RunState::Queued, t(4))
        .await
        .unwrap();
    assert_eq!(
        evaluate_one(store, run.id, &decide, t(4)).await,
        Evaluated::NotRunning
    );
    assert_eq!(
        evaluate_one(store, run.id + 1000, &decide, t(4)).await,
        Evaluated::NotRunning
    );
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(ti_state(store, &run, "a").await, TaskState::Scheduled);
    assert!(
        store
            .evaluate_runs(&[], &decide, t(4))
            .await
            .unwrap()
            .is_empty(),
        "nothing to evaluate"
    );
}

/// A decider that reads one task's instance, then asks for the whole run when `whole_too`.
struct Focused {
    task_id: &'static str,
    whole_too: bool,
    reads: std::sync::Mutex<Vec<(Vec<String>, Option<bool>)>>,
}

impl RunDecider for Focused {
    fn focus(&self, _run: &RunRow) -> Option<Vec<String>> {
        Some(vec![self.task_id.to_string(), "missing".to_string()])
    }

    fn decide(&self, _run: &RunRow, read: &RunRead<'_>) -> Option<RunDecision> {
        let ids = read.tis.iter().map(|ti| ti.task_id.clone()).collect();
        self.reads.lock().unwrap().push((ids, read.progressing));
        if self.whole_too && read.progressing.is_some() {
            return None;
        }
        Some(RunDecision {
            transitions: vec![to(self.task_id, TaskState::None, TaskState::Scheduled)],
            run_state: None,
        })
    }
}

pub async fn evaluate_runs_reads_only_a_deciders_focus_unless_asked_for_all(store: &dyn Store) {
    let run = running_run(store, &[ti("a", 1), ti("b", 1), ti("c", 1)]).await;
    let focused = Focused {
        task_id: "b",
        whole_too: false,
        reads: Default::default(),
    };
    let outcome = evaluate_one(store, run.id, &focused, t(2)).await;
    assert!(
        matches!(outcome, Evaluated::Applied { applied: 1, .. }),
        "{outcome:?}"
    );
    assert_eq!(
        *focused.reads.lock().unwrap(),
        [(vec!["b".to_string()], Some(false))],
        "only the focus, and nothing progressing before the decision"
    );
    assert_eq!(ti_state(store, &run, "b").await, TaskState::Scheduled);

    // Asked for the whole run, the store reads every instance and asks again.
    let focused = Focused {
        task_id: "c",
        whole_too: true,
        reads: Default::default(),
    };
    let outcome = evaluate_one(store, run.id, &focused, t(3)).await;
    assert!(
        matches!(outcome, Evaluated::Applied { applied: 1, .. }),
        "{outcome:?}"
    );
    let abc = ["a", "b", "c"].map(String::from).to_vec();
    assert_eq!(
        *focused.reads.lock().unwrap(),
        [(vec!["c".to_string()], Some(true)), (abc, None)],
        "b is scheduled: the run is progressing"
    );
    assert_eq!(ti_state(store, &run, "c").await, TaskState::Scheduled);
}

/// The evaluation reads what the reports of the same step recorded.
pub async fn step_sees_the_reports_it_records(store: &dyn Store) {
    let run = running_run(store, &[ti("a", 1), ti("b", 1)]).await;
    store
        .apply_transitions(
            run.id,
            &[to("a", TaskState::None, TaskState::Scheduled)],
            t(2),
        )
        .await
        .unwrap();
    let queued = queue(store, &[key(&run, "a")], t(2)).await;
    assert_eq!(queued.len(), 1);
    let reports = [
        TryReport::Started {
            key: key(&run, "a"),
            try_number: 1,
            pid: Some(7),
            at: t(3),
        },
        TryReport::Finished {
            key: key(&run, "a"),
            try_number: 1,
            new: TaskState::Success,
            retry_at: None,
            at: t(4),
            skip: vec![],
        },
    ];
    let decide = |_: &RunRow, tis: &[TiSnapshot]| {
        let a = tis.iter().find(|ti| ti.task_id == "a").unwrap();
        assert_eq!(a.state, TaskState::Success, "the report is visible");
        RunDecision {
            transitions: vec![to("b", TaskState::None, TaskState::Scheduled)],
            run_state: None,
        }
    };
    let no_queueing = step::without_queueing(job(store).await);
    let outcome = store
        .record_evaluate_and_queue(&reports, "host-a", &[run.id], &decide, &no_queueing, t(5))
        .await
        .unwrap();
    let (applied, outcomes) = (outcome.applied, outcome.evaluated);
    assert_eq!(applied, [true, true]);
    assert!(matches!(
        outcomes.as_slice(),
        [(pk, Evaluated::Applied { applied: 1, .. })] if *pk == run.id
    ));
    assert_eq!(ti_state(store, &run, "b").await, TaskState::Scheduled);
    let a = store.task_instance(&key(&run, "a")).await.unwrap().unwrap();
    assert_eq!((a.start_date, a.end_date), (Some(t(3)), Some(t(4))));

    // Reports alone, nothing to evaluate.
    let outcome = store
        .record_evaluate_and_queue(&reports, "host-a", &[], &decide, &no_queueing, t(6))
        .await
        .unwrap();
    assert_eq!(
        (outcome.applied, outcome.evaluated.len()),
        (vec![false, false], 0)
    );
}

pub async fn evaluate_runs_evaluates_several_runs_at_once(store: &dyn Store) {
    let d = dag("d");
    sync(store, &[&d], false).await;
    let mut runs = Vec::new();
    for (hour, run_id) in ["r1", "r2", "r3"].into_iter().enumerate() {
        let run = store
            .create_run(
                &new_run(&d, run_id, RunType::Manual, hour as i64),
                &[ti("b", 1), ti("a", 1)],
                t(1),
            )
            .await
            .unwrap();
        store
            .force_run_state(run.id, RunState::Running, t(1))
            .await
            .unwrap();
        runs.push(run);
    }
    let (r1, r2, r3) = (&runs[0], &runs[1], &runs[2]);
    // r2 already finished: it is not evaluated.
    store
        .force_run_state(r2.id, RunState::Success, t(2))
        .await
        .unwrap();
    let seen = std::sync::Mutex::new(Vec::new());
    let decide = |r: &RunRow, tis: &[TiSnapshot]| {
        seen.lock().unwrap().push(r.id);
        assert_eq!(r.state, RunState::Running);
        assert_eq!(snapshot_ids(tis), ["a", "b"], "only this run's, by task_id");
        RunDecision {
            transitions: vec![to("a", TaskState::None, TaskState::Scheduled)],
            // r3 finishes; r1 goes on.
            run_state: (r.id == r3.id).then_some(RunState::Success),
        }
    };
    let unknown = r3.id + 1000;
    // Asked in an order of its own, r1 twice.
    let outcomes = store
        .evaluate_runs(&[r3.id, unknown, r1.id, r2.id, r1.id], &decide, t(3))
        .await
        .unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [r1.id, r3.id],
        "each once, in pk order"
    );
    let applied = |finished: bool| Evaluated::Applied {
        decision: RunDecision {
            transitions: vec![to("a", TaskState::None, TaskState::Scheduled)],
            run_state: finished.then_some(RunState::Success),
        },
        applied: 1,
    };
    assert_eq!(
        outcomes,
        [
            (r3.id, applied(true)),
            (unknown, Evaluated::NotRunning),
            (r1.id, applied(false)),
            (r2.id, Evaluated::NotRunning),
        ],
        "in the order asked, a pk listed again once"
    );
    for (run, a, state) in [
        (r1, TaskState::Scheduled, RunState::Running),
        (r2, TaskState::None, RunState::Success),
        (r3, TaskState::Scheduled, RunState::Success),
    ] {
        assert_eq!(ti_state(store, run, "a").await, a, "{}", run.run_id);
        assert_eq!(ti_state(store, run, "b").await, TaskState::None);
        let row = store.run_by_pk(run.id).await.unwrap().unwrap();
        assert_eq!(row.state, state, "{}", run.run_id);
    }
    assert_eq!(
        store.run_by_pk(r3.id).await.unwrap().unwrap().end_date,
        Some(t(3))
    );
}

pub async fn scheduler_jobs_heartbeat_and_silent_ones_are_reaped(store: &dyn Store) {
    assert!(store.schedulers(10).await.unwrap().is_empty());
    let j1 = store.register_scheduler("host-1", 101, t(0)).await.unwrap();
    let j2 = store.register_scheduler("host-2", 102, t(0)).await.unwrap();
    let me = store.register_scheduler("host-3", 103, t(0)).await.unwrap();
    assert!(j1 < j2 && j2 < me, "ids grow");

    let jobs = store.schedulers(10).await.unwrap();
    assert_eq!(
        jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
        [me, j2, j1],
        "newest first"
    );
    let first = &jobs[2];
    assert_eq!(
        (first.hostname.as_str(), first.pid, first.state.as_str()),
        ("host-1", 101, "running")
    );
    assert_eq!(
        (first.start_date, first.latest_heartbeat, first.end_date),
        (t(0), t(0), None)
    );

    assert!(store.heartbeat(j2, t(5)).await.unwrap());
    // j1 is silent since t(0); `me` too, but it is the reaper.
    assert_eq!(store.reap_schedulers(t(3), me, t(6)).await.unwrap(), [j1]);
    assert!(
        !store.heartbeat(j1, t(7)).await.unwrap(),
        "a reaped job's heartbeat no longer applies"
    );
    assert!(store.heartbeat(me, t(7)).await.unwrap());
    let jobs = store.schedulers(10).await.unwrap();
    let dead = jobs.iter().find(|j| j.id == j1).unwrap();
    assert_eq!(
        (dead.state.as_str(), dead.latest_heartbeat, dead.end_date),
        ("dead", t(0), Some(t(6)))
    );
    let alive = jobs.iter().find(|j| j.id == j2).unwrap();
    assert_eq!(
        (alive.state.as_str(), alive.latest_heartbeat),
        ("running", t(5))
    );

    // A clean stop; a stopped job is not reaped, nor does it heartbeat.
    store.stop_scheduler(j2, t(8)).await.unwrap();
    assert!(!store.heartbeat(j2, t(9)).await.unwrap());
    assert!(
        store
            .reap_schedulers(t(100), me, t(100))
            .await
            .unwrap()
            .is_empty(),
        "only `me` is running, and it is spared"
    );
    let jobs = store.schedulers(2).await.unwrap();
    assert_eq!(jobs.len(), 2);
    assert_eq!((jobs[0].id, jobs[0].state.as_str()), (me, "running"));
    assert_eq!(
        (jobs[1].id, jobs[1].state.as_str(), jobs[1].end_date),
        (j2, "stopped", Some(t(8)))
    );
    assert!(!store.heartbeat(9_999, t(9)).await.unwrap(), "unknown job");
}

// ---- multi-store building blocks ----------------------------------------------------------

/// 8 tasks finish 8 tries each at the same time, reading as they go; none may fail
/// (e.g. with SQLITE_BUSY) and every finish must land.
pub async fn concurrent_finishers(store: Arc<dyn Store>) {
    const WORKERS: usize = 8;
    const EACH: usize = 8;
    let names: Vec<String> = (0..WORKERS * EACH).map(|i| format!("t{i:02}")).collect();
    let tis: Vec<NewTi> = names.iter().map(|n| ti(n, 1)).collect();
    let run = running_run(store.as_ref(), &tis).await;
    let sched: Vec<_> = names
        .iter()
        .map(|n| to(n, TaskState::None, TaskState::Scheduled))
        .collect();
    store.apply_transitions(run.id, &sched, t(1)).await.unwrap();
    let keys: Vec<TiKey> = names.iter().map(|n| key(&run, n)).collect();
    assert_eq!(queue(store.as_ref(), &keys, t(1)).await.len(), names.len());

    let mut handles = vec![];
    for (worker, chunk) in keys.chunks(EACH).enumerate() {
        let store = store.clone();
        let chunk = chunk.to_vec();
        handles.push(tokio::spawn(async move {
            for (i, k) in chunk.iter().enumerate() {
                assert!(store.mark_running(k, 1, Some(7), "h", t(2)).await?);
                store.task_instances(k.run_pk).await?;
                assert!(
                    store
                        .finish_try(k, 1, TaskState::Success, None, t(3))
                        .await?
                );
                store.active_counts().await?;
                // Writes that read before they write (a lock upgrade without BEGIN IMMEDIATE).
                assert!(store.force_ti_state(k, TaskState::Success, t(4)).await?);
                let hour = (100 + worker * EACH + i) as i64;
                let spec = new_run(&dag("d"), &format!("w{worker}-{i}"), RunType::Manual, hour);
                store.create_run(&spec, &[ti("x", 1)], t(4)).await?;
            }
            Ok::<_, StoreError>(())
        }));
    }
    for h in handles {
        h.await.unwrap().unwrap();
    }
    let tis = store.task_instances(run.id).await.unwrap();
    assert!(tis.iter().all(|t| t.state == TaskState::Success));
    assert_eq!(store.active_counts().await.unwrap().total, 0);
    for k in &keys {
        assert_eq!(store.tries(k).await.unwrap().len(), 1);
    }
    let all_runs = store
        .newest_runs(&NewestRunsFilter::default())
        .await
        .unwrap();
    assert_eq!(all_runs.len(), 1 + WORKERS * EACH);
}

/// Two schedulers queue from the same candidates at once (one in order, the other in reverse,
/// as schedulers with different views would), round after round: a pool never holds more
/// than its slots, and no instance is queued twice. `store` and `other` are one database (the
/// same store, or two stores as two processes would have).
pub async fn concurrent_queues_never_overflow_a_pool(store: Arc<dyn Store>, other: Arc<dyn Store>) {
    const SLOTS: usize = 5;
    const TASKS: usize = 40;
    store
        .upsert_pool(&PoolRow {
            name: "p".into(),
            slots: SLOTS as i64,
            description: String::new(),
            tenant: None,
        })
        .await
        .unwrap();
    let names: Vec<String> = (0..TASKS).map(|i| format!("t{i:02}")).collect();
    let tis: Vec<NewTi> = names.iter().map(|n| in_pool(n, "p", 1)).collect();
    let run = running_run(store.as_ref(), &tis).await;
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    schedule(store.as_ref(), &run, &all, t(1)).await;
    let a = store.register_scheduler("a", 1, t(1)).await.unwrap();
    let b = store.register_scheduler("b", 2, t(1)).await.unwrap();

    let mut done = 0;
    for round in 0..TASKS {
        let candidates: Vec<TiKey> = store
            .scheduled_task_instances(u32::MAX, 0, &ScheduledSkip::default())
            .await
            .unwrap()
            .iter()
            .map(|ti| key(&run, &ti.task_id))
            .collect();
        if candidates.is_empty() {
            break;
        }
        let reversed: Vec<TiKey> = candidates.iter().rev().cloned().collect();
        let (sa, sb) = (store.clone(), other.clone());
        let now = t(2 + round as i64);
        let ta =
            tokio::spawn(
                async move { sa.queue(&candidates, a, &QueueLimits::default(), now).await },
            );
        let tb =
            tokio::spawn(async move { sb.queue(&reversed, b, &QueueLimits::default(), now).await });
        let (qa, qb) = (ta.await.unwrap().unwrap(), tb.await.unwrap().unwrap());
        let held = store.active_counts().await.unwrap().per_pool["p"];
        assert!(held <= SLOTS as i64, "round {round}: {held} slots held");
        assert_eq!(held as usize, qa.len() + qb.len(), "round {round}");
        assert!(held > 0, "round {round}: the pool had room");
        let mut queued: Vec<&str> = ids(&qa).into_iter().chain(ids(&qb)).collect();
        queued.sort_unstable();
        queued.dedup();
        assert_eq!(queued.len(), qa.len() + qb.len(), "queued twice");
        assert!(qa.iter().all(|r| r.queued_by_job_id == Some(a)));
        assert!(qb.iter().all(|r| r.queued_by_job_id == Some(b)));
        // Their tries end, freeing the slots for the next round.
        for row in qa.iter().chain(&qb) {
            let k = key(&run, &row.task_id);
            assert!(
                store
                    .finish_try(&k, row.try_number, TaskState::Success, None, now)
                    .await
                    .unwrap()
            );
        }
        done += qa.len() + qb.len();
    }
    assert_eq!(done, TASKS, "every instance ran once");
}

/// First half of the durability check: commit a representative state. Returns the run.
pub async fn durable_write(store: &dyn Store) -> RunRow {
    let run = running_run(store, &[ti("a", 2), ti("b", 1)]).await;
    let n = start_try(store, &run, "a", t(2)).await;
    store
        .finish_try(&key(&run, "a"), n, TaskState::UpForRetry, Some(t(3)), t(2))
        .await
        .unwrap();
    store
        .upsert_pool(&PoolRow {
            name: "kept".into(),
            slots: 3,
            description: String::new(),
            tenant: None,
        })
        .await
        .unwrap();
    run
}

/// Second half, on a store reopened over the same database.
pub async fn durable_check(store: &dyn Store, run: &RunRow) {
    store.migrate().await.unwrap();
    let mut expected_run = run.clone();
    expected_run.state = RunState::Running;
    expected_run.start_date = Some(t(1));
    assert_eq!(store.run_by_pk(run.id).await.unwrap(), Some(expected_run));
    let a = store.task_instance(&key(run, "a")).await.unwrap().unwrap();
    assert_eq!(
        (a.state, a.try_number, a.retry_at),
        (TaskState::UpForRetry, 1, Some(t(3)))
    );
    assert_eq!(store.tries(&key(run, "a")).await.unwrap().len(), 1);
    assert!(store.dag("d").await.unwrap().is_some());
    assert!(
        store
            .pools()
            .await
            .unwrap()
            .iter()
            .any(|p| p.name == "kept")
    );
}

// ---- web UI: bounded, batched reads and the change log -----------------------------------

pub async fn recent_runs_are_bounded_per_dag_and_newest_first(store: &dyn Store) {
    let (a, b, c) = (dag("a"), dag("b"), dag("c"));
    sync(store, &[&a, &b, &c], false).await;
    for h in 0..5 {
        store
            .create_run(
                &new_run(&a, &format!("a{h}"), RunType::Scheduled, h),
                &[],
                t(h),
            )
            .await
            .unwrap();
    }
    store
        .create_run(&new_run(&b, "b0", RunType::Manual, 0), &[], t(0))
        .await
        .unwrap();
    let ids = |runs: &[RunRow]| -> Vec<String> { runs.iter().map(|r| r.run_id.clone()).collect() };
    let wanted = [
        "c".to_string(),
        "b".to_string(),
        "a".to_string(),
        "nope".to_string(),
    ];
    let recent = store.recent_runs(&wanted, 3).await.unwrap();
    assert_eq!(ids(&recent), ["a4", "a3", "a2", "b0"]);
    assert_eq!(recent[0], store.run("a", "a4").await.unwrap().unwrap());
    assert!(store.recent_runs(&wanted, 0).await.unwrap().is_empty());
    assert!(store.recent_runs(&[], 3).await.unwrap().is_empty());
    let only_b = store.recent_runs(&["b".to_string()], 10).await.unwrap();
    assert_eq!(ids(&only_b), ["b0"]);
}

pub async fn latest_scheduled_runs_skip_manual_runs(store: &dyn Store) {
    let (a, b, m) = (dag("a"), dag("b"), dag("m"));
    sync(store, &[&a, &b, &m], false).await;
    store
        .create_run(&new_run(&a, "a1", RunType::Scheduled, 1), &[], t(1))
        .await
        .unwrap();
    store
        .create_run(&new_run(&a, "a2", RunType::Backfill, 2), &[], t(2))
        .await
        .unwrap();
    store
        .create_run(&new_run(&a, "a9", RunType::Manual, 9), &[], t(9))
        .await
        .unwrap();
    store
        .create_run(&new_run(&b, "b1", RunType::Scheduled, 1), &[], t(1))
        .await
        .unwrap();
    store
        .create_run(&new_run(&m, "m1", RunType::Manual, 1), &[], t(1))
        .await
        .unwrap();
    let ids = ["m".to_string(), "b".to_string(), "a".to_string()];
    let latest: Vec<(String, String)> = store
        .latest_scheduled_runs(&ids)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.dag_id, r.run_id))
        .collect();
    assert_eq!(
        latest,
        [("a".into(), "a2".into()), ("b".into(), "b1".into())]
    );
    for id in ["a", "b"] {
        let one = store.latest_scheduled_run(id).await.unwrap();
        let batch = store
            .latest_scheduled_runs(&[id.to_string()])
            .await
            .unwrap();
        assert_eq!(
            batch.first(),
            one.as_ref(),
            "batch agrees with latest_scheduled_run"
        );
    }
    assert!(store.latest_scheduled_runs(&[]).await.unwrap().is_empty());
}

pub async fn task_instances_of_runs_and_tries_of_run_batch(store: &dyn Store) {
    let run = running_run(store, &[ti("b", 2), ti("a", 2)]).await;
    let d = dag("d");
    let other = store
        .create_run(&new_run(&d, "r2", RunType::Manual, 5), &[ti("z", 1)], t(5))
        .await
        .unwrap();
    let lonely = store
        .create_run(&new_run(&d, "r3", RunType::Manual, 6), &[ti("y", 1)], t(6))
        .await
        .unwrap();
    let tis = store
        .task_instances_of_runs(&[other.id, run.id, 999_999])
        .await
        .unwrap();
    let got: Vec<(i64, String)> = tis.iter().map(|t| (t.run_pk, t.task_id.clone())).collect();
    let mut expected = vec![
        (run.id, "a".to_string()),
        (run.id, "b".to_string()),
        (other.id, "z".to_string()),
    ];
    expected.sort();
    assert_eq!(got, expected);
    assert!(!got.iter().any(|(pk, _)| *pk == lonely.id));
    assert_eq!(
        tis[0],
        store.task_instance(&key(&run, "a")).await.unwrap().unwrap()
    );
    assert!(store.task_instances_of_runs(&[]).await.unwrap().is_empty());

    // Two tries of b, one of a: the run's history, by task then try.
    let n = start_try(store, &run, "b", t(2)).await;
    store
        .finish_try(&key(&run, "b"), n, TaskState::UpForRetry, Some(t(3)), t(2))
        .await
        .unwrap();
    start_try(store, &run, "b", t(3)).await;
    start_try(store, &run, "a", t(3)).await;
    let tries: Vec<(String, u32)> = store
        .tries_of_run(run.id)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.task_id, t.try_number))
        .collect();
    assert_eq!(tries, [("a".into(), 1), ("b".into(), 1), ("b".into(), 2)]);
    assert_eq!(
        store.tries_of_run(run.id).await.unwrap()[1..],
        store.tries(&key(&run, "b")).await.unwrap()[..]
    );
    assert!(store.tries_of_run(other.id).await.unwrap().is_empty());
}

pub async fn dag_versions_are_listed_newest_first(store: &dyn Store) {
    let mut d = dag("d");
    let v1 = sync_at(store, &[&d], false, t(0)).await.remove(0);
    d.description = Some("changed".to_string());
    let v2 = sync_at(store, &[&d], false, t(1)).await.remove(0);
    sync_at(store, &[&d], false, t(2)).await;
    let versions = store.dag_versions("d").await.unwrap();
    let got: Vec<(String, DateTime<Utc>)> = versions
        .into_iter()
        .map(|v| (v.version, v.created_at))
        .collect();
    assert_eq!(got, [(v2, t(1)), (v1, t(0))]);
    assert!(store.dag_versions("nope").await.unwrap().is_empty());
}

pub async fn run_changes_follow_every_state_change(store: &dyn Store) {
    let start = store.latest_run_change().await.unwrap();
    let run = running_run(store, &[ti("a", 1), ti("b", 1)]).await;
    let d = dag("d");
    let quiet = store
        .create_run(
            &new_run(&d, "quiet", RunType::Manual, 3),
            &[ti("q", 1)],
            t(3),
        )
        .await
        .unwrap();
    let changes = store.run_changes_since(start, 100).await.unwrap();
    let pks: Vec<i64> = changes.iter().map(|c| c.run_pk).collect();
    assert_eq!(pks, [run.id, quiet.id], "each run once, latest change last");
    assert!(changes[0].seq < changes[1].seq);
    let mark = store.latest_run_change().await.unwrap();
    assert_eq!(mark, changes[1].seq);
    assert!(store.run_changes_since(mark, 100).await.unwrap().is_empty());

    // An instance's state change marks its run; a change that is not a state change does not.
    start_try(store, &run, "a", t(4)).await;
    let after_try = store.run_changes_since(mark, 100).await.unwrap();
    assert_eq!(
        after_try.iter().map(|c| c.run_pk).collect::<Vec<_>>(),
        [run.id]
    );
    let mark = store.latest_run_change().await.unwrap();
    store
        .upsert_pool(&PoolRow {
            name: "p".to_string(),
            slots: 1,
            description: String::new(),
            tenant: None,
        })
        .await
        .unwrap();
    assert!(store.run_changes_since(mark, 100).await.unwrap().is_empty());

    // Run state changes, clears, forced states and deletion all count.
    store
        .force_run_state(quiet.id, RunState::Running, t(5))
        .await
        .unwrap();
    let c1 = store.run_changes_since(mark, 100).await.unwrap();
    assert_eq!(c1.iter().map(|c| c.run_pk).collect::<Vec<_>>(), [quiet.id]);
    let mark = store.latest_run_change().await.unwrap();
    store
        .force_ti_state(&key(&run, "b"), TaskState::Success, t(6))
        .await
        .unwrap();
    let c2 = store.run_changes_since(mark, 100).await.unwrap();
    assert_eq!(c2.iter().map(|c| c.run_pk).collect::<Vec<_>>(), [run.id]);
    let mark = store.latest_run_change().await.unwrap();
    assert!(store.delete_run(quiet.id).await.unwrap());
    let c3 = store.run_changes_since(mark, 100).await.unwrap();
    assert_eq!(c3.iter().map(|c| c.run_pk).collect::<Vec<_>>(), [quiet.id]);

    // The limit bounds the answer; the rest follows from the last seq read.
    let all = store.run_changes_since(start, 100).await.unwrap();
    assert_eq!(all.len(), 2);
    let first = store.run_changes_since(start, 1).await.unwrap();
    assert_eq!(first, all[..1]);
    assert_eq!(
        store.run_changes_since(first[0].seq, 1).await.unwrap(),
        all[1..]
    );
}

// ---- REST API queries and writes -----------------------------------------------------------

pub async fn api_import_errors_keep_ids_and_timestamps(store: &dyn Store) {
    use updraft_store::{ImportErrorOrder, ImportErrorQuery, Paging};
    let err = |tenant: &str, filename: &str| ImportError {
        tenant: tenant.into(),
        filename: filename.into(),
        line: Some(2),
        column: None,
        message: format!("bad {filename}"),
    };
    let all = ImportErrorQuery::default();
    store
        .sync_dags(
            &[],
            &[err("acme", "b.yaml"), err("acme", "a.yaml")],
            false,
            t(0),
        )
        .await
        .unwrap();
    let first = store.import_errors_page(&all).await.unwrap();
    assert_eq!(first.total, 2);
    let (b, a) = (first.items[0].clone(), first.items[1].clone());
    assert_eq!(b.error.filename, "b.yaml");
    assert_eq!(b.timestamp, t(0));
    assert_eq!(store.import_error(a.id).await.unwrap(), Some(a.clone()));

    // a.yaml is still broken, b.yaml fixed, c.yaml newly broken (other tenant).
    let later = vec![err("other", "c.yaml"), err("acme", "a.yaml")];
    store.sync_dags(&[], &later, false, t(5)).await.unwrap();
    assert_eq!(
        store.import_errors().await.unwrap(),
        later,
        "load order kept"
    );
    assert_eq!(store.import_error(b.id).await.unwrap(), None);
    let kept = store.import_error(a.id).await.unwrap().unwrap();
    assert_eq!(
        kept.timestamp,
        t(0),
        "an error found again keeps its first timestamp"
    );
    let page = store.import_errors_page(&all).await.unwrap();
    let c = &page.items[0];
    assert_eq!(c.error.filename, "c.yaml");
    assert_eq!(c.timestamp, t(5));
    assert!(c.id > b.id, "ids are never reused");

    let scoped = store
        .import_errors_page(&ImportErrorQuery {
            tenants: Some(vec!["acme".into()]),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(scoped.total, 1);
    assert_eq!(scoped.items[0].id, a.id);
    let by_name = store
        .import_errors_page(&ImportErrorQuery {
            filename_pattern: Some("C.YA".into()),
            order_by: ImportErrorOrder::Filename,
            descending: true,
            paging: Paging {
                limit: Some(5),
                offset: 0,
            },
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_name.total, 1);
    assert_eq!(by_name.items[0].error.filename, "c.yaml");
}

pub async fn api_dags_page_filters_orders_pages_and_counts(store: &dyn Store) {
    use updraft_store::{DagOrder, DagQuery, Paging};
    let mut a = dag("alpha_etl");
    a.tags = vec!["etl".into(), "daily".into()];
    let mut b = dag("beta_etl");
    b.tags = vec!["etl".into()];
    b.tenant = "other".into();
    let c = dag("gamma");
    sync(store, &[&a, &b, &c], false).await;
    store.set_paused("gamma", true).await.unwrap();
    let ids = |page: &updraft_store::Page<updraft_store::DagRow>| -> Vec<String> {
        page.items.iter().map(|r| r.dag.dag_id.clone()).collect()
    };

    let all = store.dags_page(&DagQuery::default()).await.unwrap();
    assert_eq!(ids(&all), ["alpha_etl", "beta_etl", "gamma"]);
    assert_eq!(all.total, 3);
    assert_eq!(all.items[0], store.dag("alpha_etl").await.unwrap().unwrap());

    let page = store
        .dags_page(&DagQuery {
            order_by: DagOrder::DagId,
            descending: true,
            paging: Paging {
                limit: Some(1),
                offset: 1,
            },
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&page), ["beta_etl"]);
    assert_eq!(page.total, 3, "total counts every match, not the page");

    let q = |f: &dyn Fn(&mut DagQuery)| {
        let mut q = DagQuery::default();
        f(&mut q);
        q
    };
    let etl = store
        .dags_page(&q(&|q| q.dag_id_pattern = Some("ETL".into())))
        .await
        .unwrap();
    assert_eq!(ids(&etl), ["alpha_etl", "beta_etl"]);
    let any_tag = store
        .dags_page(&q(&|q| q.tags = vec!["daily".into(), "etl".into()]))
        .await
        .unwrap();
    assert_eq!(any_tag.total, 2);
    let all_tags = store
        .dags_page(&q(&|q| {
            q.tags = vec!["daily".into(), "etl".into()];
            q.all_tags = true;
        }))
        .await
        .unwrap();
    assert_eq!(ids(&all_tags), ["alpha_etl"]);
    let paused = store
        .dags_page(&q(&|q| q.paused = Some(true)))
        .await
        .unwrap();
    assert_eq!(ids(&paused), ["gamma"]);
    let acme = store
        .dags_page(&q(&|q| q.tenants = Some(vec!["acme".into()])))
        .await
        .unwrap();
    assert_eq!(ids(&acme), ["alpha_etl", "gamma"]);

    // gamma's file goes away: inactive.
    sync(store, &[&a, &b], false).await;
    let active = store
        .dags_page(&q(&|q| q.active = Some(true)))
        .await
        .unwrap();
    assert_eq!(ids(&active), ["alpha_etl", "beta_etl"]);
    let by_paused = store
        .dags_page(&q(&|q| {
            q.order_by = DagOrder::IsPaused;
            q.descending = true;
        }))
        .await
        .unwrap();
    assert_eq!(by_paused.items[0].dag.dag_id, "gamma");
}

pub async fn api_runs_page_filters_orders_pages_and_counts(store: &dyn Store) {
    use updraft_store::{Paging, RunOrder, RunQuery, TimeRange};
    let d = dag("d");
    let mut e = dag("e");
    e.tenant = "other".into();
    sync(store, &[&d, &e], false).await;
    let r1 = store
        .create_run(
            &new_run(&d, "scheduled_1", RunType::Scheduled, 0),
            &[],
            t(0),
        )
        .await
        .unwrap();
    let r2 = store
        .create_run(&new_run(&d, "manual_2", RunType::Manual, 2), &[], t(0))
        .await
        .unwrap();
    let r3 = store
        .create_run(&new_run(&e, "manual_3", RunType::Manual, 1), &[], t(0))
        .await
        .unwrap();
    store
        .force_run_state(r2.id, RunState::Running, t(3))
        .await
        .unwrap();
    let ids = |page: &updraft_store::Page<RunRow>| -> Vec<String> {
        page.items.iter().map(|r| r.run_id.clone()).collect()
    };

    let all = store.runs_page(&RunQuery::default()).await.unwrap();
    assert_eq!(ids(&all), ["scheduled_1", "manual_2", "manual_3"], "by id");
    assert_eq!(all.total, 3);
    assert_eq!(all.items[1], store.run_by_pk(r2.id).await.unwrap().unwrap());

    let of_d = store
        .runs_page(&RunQuery {
            dag_id: Some("d".into()),
            order_by: RunOrder::LogicalDate,
            descending: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&of_d), ["manual_2", "scheduled_1"]);

    let paged = store
        .runs_page(&RunQuery {
            order_by: RunOrder::LogicalDate,
            paging: Paging {
                limit: Some(1),
                offset: 1,
            },
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&paged), ["manual_3"]);
    assert_eq!(paged.total, 3);

    let running = store
        .runs_page(&RunQuery {
            states: vec![RunState::Running],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&running), ["manual_2"]);
    let manual = store
        .runs_page(&RunQuery {
            run_types: vec![RunType::Manual],
            tenants: Some(vec!["acme".into()]),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&manual), ["manual_2"]);
    let window = store
        .runs_page(&RunQuery {
            logical_date: TimeRange {
                gt: Some(t(0)),
                lte: Some(t(1)),
                ..Default::default()
            },
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&window), ["manual_3"]);
    assert_eq!(window.items[0].id, r3.id);
    let started = store
        .runs_page(&RunQuery {
            start_date: TimeRange {
                gte: Some(t(3)),
                ..Default::default()
            },
            run_id_pattern: Some("MANUAL".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&started), ["manual_2"]);
    assert!(r1.id < r2.id);
}

pub async fn api_task_instances_page_filters_and_counts(store: &dyn Store) {
    use updraft_store::{Paging, TiOrder, TiQuery};
    let run = running_run(store, &[ti("a", 1), ti("b", 1), ti("c", 1)]).await;
    let d = dag("d");
    let other = store
        .create_run(&new_run(&d, "r2", RunType::Manual, 5), &[ti("a", 1)], t(1))
        .await
        .unwrap();
    start_try(store, &run, "b", t(2)).await;
    let names = |page: &updraft_store::Page<updraft_store::TiRow>| -> Vec<(String, String)> {
        page.items
            .iter()
            .map(|ti| (ti.run_id.clone(), ti.task_id.clone()))
            .collect()
    };
    let pair = |r: &str, t: &str| (r.to_string(), t.to_string());

    let all = store
        .task_instances_page(&TiQuery::default())
        .await
        .unwrap();
    assert_eq!(
        names(&all),
        [
            pair("r1", "a"),
            pair("r1", "b"),
            pair("r1", "c"),
            pair("r2", "a")
        ]
    );
    assert_eq!(all.total, 4);
    let of_run = store
        .task_instances_page(&TiQuery {
            run_pk: Some(other.id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(names(&of_run), [pair("r2", "a")]);
    let running = store
        .task_instances_page(&TiQuery {
            dag_id: Some("d".into()),
            states: vec![TaskState::Running],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(names(&running), [pair("r1", "b")]);
    assert_eq!(running.items[0].hostname.as_deref(), Some("host-a"));
    let paged = store
        .task_instances_page(&TiQuery {
            task_ids: vec!["a".into(), "c".into()],
            order_by: TiOrder::TaskId,
            descending: true,
            paging: Paging {
                limit: Some(2),
                offset: 0,
            },
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(names(&paged), [pair("r1", "c"), pair("r2", "a")]);
    assert_eq!(paged.total, 3);
    let none = store
        .task_instances_page(&TiQuery {
            tenants: Some(vec!["nobody".into()]),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(none.total, 0);
    assert!(none.items.is_empty());
    let unknown_dag = store
        .task_instances_page(&TiQuery {
            dag_id: Some("nope".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(unknown_dag.total, 0);
}

pub async fn time_out_run_fails_it_skips_unfinished_and_names_live_tries(store: &dyn Store) {
    let tis = [ti("done", 1), ti("live", 1), ti("waiting", 1)];
    let run = running_run(store, &tis).await;
    let try_done = start_try(store, &run, "done", t(2)).await;
    store
        .finish_try(&key(&run, "done"), try_done, TaskState::Success, None, t(3))
        .await
        .unwrap();
    let live_try = start_try(store, &run, "live", t(2)).await;

    let live = store
        .time_out_run(run.id, updraft_core::timeout::skipped_on_timeout, t(4))
        .await
        .unwrap();
    assert_eq!(live, Some(vec!["live".to_owned()]));
    let states: HashMap<String, TaskState> = store
        .task_instances(run.id)
        .await
        .unwrap()
        .into_iter()
        .map(|ti| (ti.task_id, ti.state))
        .collect();
    assert_eq!(
        states["done"],
        TaskState::Success,
        "finished keeps its state"
    );
    assert_eq!(states["live"], TaskState::Skipped, "running → skipped");
    assert_eq!(
        states["waiting"],
        TaskState::Skipped,
        "unfinished → skipped"
    );
    let row = store.run_by_pk(run.id).await.unwrap().unwrap();
    assert_eq!(row.state, RunState::Failed);
    assert_eq!(row.end_date, Some(t(4)));
    assert!(
        !store
            .finish_try(&key(&run, "live"), live_try, TaskState::Success, None, t(5))
            .await
            .unwrap(),
        "the stopped try's late report no longer applies"
    );
    assert_eq!(
        store
            .time_out_run(run.id, updraft_core::timeout::skipped_on_timeout, t(6))
            .await
            .unwrap(),
        None,
        "a run no longer running is left alone"
    );
    assert_eq!(
        store.run_by_pk(run.id).await.unwrap().unwrap().end_date,
        Some(t(4))
    );
}

pub async fn api_mark_run_and_instances_success_and_failed(store: &dyn Store) {
    let tis = [
        ti("done", 1),
        ti("live", 1),
        ti("waiting", 1),
        ti("broken", 1),
    ];
    let run = running_run(store, &tis).await;
    let try_done = start_try(store, &run, "done", t(2));
    let try_done = try_done.await;
    store
        .finish_try(&key(&run, "done"), try_done, TaskState::Success, None, t(3))
        .await
        .unwrap();
    let try_broken = start_try(store, &run, "broken", t(2)).await;
    store
        .finish_try(
            &key(&run, "broken"),
            try_broken,
            TaskState::Failed,
            None,
            t(3),
        )
        .await
        .unwrap();
    let live_try = start_try(store, &run, "live", t(2)).await;

    assert!(
        store
            .mark_run_and_instances(run.id, RunState::Failed, t(4))
            .await
            .unwrap()
    );
    let states: HashMap<String, TaskState> = store
        .task_instances(run.id)
        .await
        .unwrap()
        .into_iter()
        .map(|ti| (ti.task_id, ti.state))
        .collect();
    assert_eq!(states["done"], TaskState::Success);
    assert_eq!(states["broken"], TaskState::Failed);
    assert_eq!(states["live"], TaskState::Failed, "running → failed");
    assert_eq!(
        states["waiting"],
        TaskState::Skipped,
        "unfinished → skipped"
    );
    let row = store.run_by_pk(run.id).await.unwrap().unwrap();
    assert_eq!(row.state, RunState::Failed);
    assert_eq!(row.end_date, Some(t(4)));
    let live_tries = store.tries(&key(&run, "live")).await.unwrap();
    assert_eq!(live_tries[0].state, TaskState::Failed, "live try closed");
    assert!(
        !store
            .finish_try(&key(&run, "live"), live_try, TaskState::Success, None, t(5))
            .await
            .unwrap(),
        "the killed process's late report no longer applies"
    );

    assert!(
        store
            .mark_run_and_instances(run.id, RunState::Success, t(6))
            .await
            .unwrap()
    );
    let tis = store.task_instances(run.id).await.unwrap();
    assert!(
        tis.iter().all(|ti| ti.state == TaskState::Success),
        "{tis:?}"
    );
    let row = store.run_by_pk(run.id).await.unwrap().unwrap();
    assert_eq!(row.state, RunState::Success);

    assert!(
        store
            .mark_run_and_instances(run.id, RunState::Queued, t(7))
            .await
            .unwrap()
    );
    let row = store.run_by_pk(run.id).await.unwrap().unwrap();
    assert_eq!(row.state, RunState::Queued);
    assert_eq!(row.end_date, None);
    assert_eq!(ti_state(store, &run, "done").await, TaskState::Success);

    assert!(
        !store
            .mark_run_and_instances(run.id + 1000, RunState::Failed, t(8))
            .await
            .unwrap()
    );
}

pub async fn api_force_ti_states_in_one_go(store: &dyn Store) {
    let run = running_run(store, &[ti("a", 1), ti("b", 1), ti("c", 1)]).await;
    let keys = [key(&run, "a"), key(&run, "c"), key(&run, "missing")];
    let set = store
        .force_ti_states(&keys, TaskState::Skipped, t(2))
        .await
        .unwrap();
    assert_eq!(set, 2);
    assert_eq!(ti_state(store, &run, "a").await, TaskState::Skipped);
    assert_eq!(ti_state(store, &run, "b").await, TaskState::None);
    assert_eq!(ti_state(store, &run, "c").await, TaskState::Skipped);
    let a = store.task_instance(&key(&run, "a")).await.unwrap().unwrap();
    assert_eq!(a.end_date, Some(t(2)));
}

pub async fn api_create_pool_conflicts_and_pool_usage_counts_slots(store: &dyn Store) {
    let pool = PoolRow {
        name: "gpu".into(),
        slots: 4,
        description: "GPUs".into(),
        tenant: None,
    };
    store.create_pool(&pool).await.unwrap();
    assert!(matches!(
        store.create_pool(&pool).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(store.pools().await.unwrap().contains(&pool));

    let mut big = ti("big", 1);
    big.pool = "gpu".into();
    big.pool_slots = 3;
    let run = running_run(store, &[big, ti("a", 1), ti("b", 1)]).await;
    start_try(store, &run, "big", t(2)).await;
    store
        .apply_transitions(
            run.id,
            &[to("a", TaskState::None, TaskState::Scheduled)],
            t(2),
        )
        .await
        .unwrap();
    store
        .apply_transitions(
            run.id,
            &[to("b", TaskState::None, TaskState::Scheduled)],
            t(2),
        )
        .await
        .unwrap();
    queue(store, &[key(&run, "b")], t(2)).await;
    let usage = store.pool_usage().await.unwrap();
    assert_eq!(
        usage["gpu"],
        updraft_store::PoolUsage {
            running: 3,
            queued: 0,
            scheduled: 0
        }
    );
    assert_eq!(
        usage["default_pool"],
        updraft_store::PoolUsage {
            running: 0,
            queued: 1,
            scheduled: 1
        }
    );
}

pub async fn api_notes_set_replace_remove_and_go_with_the_run(store: &dyn Store) {
    let run = running_run(store, &[ti("a", 1)]).await;
    store
        .set_note(run.id, None, Some("run note"))
        .await
        .unwrap();
    store
        .set_note(run.id, Some("a"), Some("first"))
        .await
        .unwrap();
    store
        .set_note(run.id, Some("a"), Some("second"))
        .await
        .unwrap();
    let notes = store.notes(&[run.id]).await.unwrap();
    assert_eq!(
        notes,
        vec![
            updraft_store::NoteRow {
                run_pk: run.id,
                task_id: None,
                note: "run note".into()
            },
            updraft_store::NoteRow {
                run_pk: run.id,
                task_id: Some("a".into()),
                note: "second".into()
            },
        ]
    );
    store.set_note(run.id, None, None).await.unwrap();
    assert_eq!(store.notes(&[run.id]).await.unwrap().len(), 1);
    assert!(matches!(
        store.set_note(run.id + 99, None, Some("x")).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store.notes(&[]).await.unwrap().is_empty());
    store.delete_run(run.id).await.unwrap();
    assert!(store.notes(&[run.id]).await.unwrap().is_empty());
}

// ---- housekeeping (`db clean`) ------------------------------------------------------------

/// The runs of [`purge_fixture`], all of DAG `d` (instances `a` and `b` each).
pub struct PurgeFixture {
    /// Manual, finished at t(1), with a try of `a` and notes: old, goes.
    pub old_manual: RunRow,
    /// Scheduled (interval t(1)..t(2)), failed at t(3): old and not the latest, goes.
    pub old_scheduled: RunRow,
    /// Scheduled (interval t(2)..t(3)), finished at t(4): old but the latest scheduled, stays.
    pub latest_scheduled: RunRow,
    /// Manual, running since t(3): stays.
    pub running: RunRow,
    /// Manual, queued: stays.
    pub queued: RunRow,
    /// Manual, finished at t(20): recent, stays.
    pub recent: RunRow,
}

/// Runs old and new, finished and not, for `purge_history(t(10), ..)`.
pub async fn purge_fixture(store: &dyn Store) -> PurgeFixture {
    let d = dag("d");
    sync(store, &[&d], false).await;
    let tis = [ti("a", 1), ti("b", 1)];
    let create = async |run_id: &str, run_type: RunType, hour: i64| {
        store
            .create_run(&new_run(&d, run_id, run_type, hour), &tis, t(hour))
            .await
            .unwrap()
    };
    let finish = async |run: &RunRow, state: RunState, start: i64, end: i64| {
        store
            .force_run_state(run.id, RunState::Running, t(start))
            .await
            .unwrap();
        store.force_run_state(run.id, state, t(end)).await.unwrap();
    };

    let old_manual = create("old_manual", RunType::Manual, 0).await;
    store
        .force_run_state(old_manual.id, RunState::Running, t(0))
        .await
        .unwrap();
    let try_number = start_try(store, &old_manual, "a", t(0)).await;
    store
        .finish_try(
            &key(&old_manual, "a"),
            try_number,
            TaskState::Success,
            None,
            t(1),
        )
        .await
        .unwrap();
    store
        .force_run_state(old_manual.id, RunState::Success, t(1))
        .await
        .unwrap();
    store
        .set_note(old_manual.id, None, Some("run note"))
        .await
        .unwrap();
    store
        .set_note(old_manual.id, Some("a"), Some("task note"))
        .await
        .unwrap();

    let old_scheduled = create("old_scheduled", RunType::Scheduled, 1).await;
    finish(&old_scheduled, RunState::Failed, 1, 3).await;
    let latest_scheduled = create("latest_scheduled", RunType::Scheduled, 2).await;
    finish(&latest_scheduled, RunState::Success, 2, 4).await;
    let running = create("running", RunType::Manual, 3).await;
    store
        .force_run_state(running.id, RunState::Running, t(3))
        .await
        .unwrap();
    let queued = create("queued", RunType::Manual, 4).await;
    let recent = create("recent", RunType::Manual, 5).await;
    finish(&recent, RunState::Success, 5, 20).await;

    PurgeFixture {
        old_manual,
        old_scheduled,
        latest_scheduled,
        running,
        queued,
        recent,
    }
}

/// What `purge_history(t(10), ..)` deletes from [`purge_fixture`].
fn purge_fixture_report() -> updraft_store::PurgeReport {
    updraft_store::PurgeReport {
        runs: 2,
        task_instances: 4,
        tries: 1,
        run_changes: 0,
        scheduler_jobs: 0,
        dag_versions: 0,
    }
}

async fn run_pks(store: &dyn Store) -> Vec<i64> {
    let mut pks: Vec<i64> = store
        .newest_runs(&NewestRunsFilter::default())
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    pks.sort();
    pks
}

pub async fn purge_history_deletes_old_finished_runs_with_their_instances_tries_and_notes(
    store: &dyn Store,
) {
    let f = purge_fixture(store).await;
    let report = store.purge_history(t(10), false).await.unwrap();
    assert_eq!(report, purge_fixture_report());

    for gone in [&f.old_manual, &f.old_scheduled] {
        assert_eq!(store.run_by_pk(gone.id).await.unwrap(), None);
        assert!(store.task_instances(gone.id).await.unwrap().is_empty());
    }
    assert!(
        store
            .tries(&key(&f.old_manual, "a"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.notes(&[f.old_manual.id]).await.unwrap().is_empty());

    let mut kept = vec![
        f.latest_scheduled.id,
        f.running.id,
        f.queued.id,
        f.recent.id,
    ];
    kept.sort();
    assert_eq!(run_pks(store).await, kept);
    for run in [&f.latest_scheduled, &f.running, &f.queued, &f.recent] {
        assert_eq!(store.task_instances(run.id).await.unwrap().len(), 2);
    }
    // The timetable continues from the latest scheduled run, however old.
    assert_eq!(
        store.latest_scheduled_run("d").await.unwrap().map(|r| r.id),
        Some(f.latest_scheduled.id)
    );

    // The change log keeps the deletions for live views until the next clean; a later change
    // of a remaining run makes them old.
    let changed: Vec<i64> = store
        .run_changes_since(0, 100)
        .await
        .unwrap()
        .iter()
        .map(|c| c.run_pk)
        .collect();
    assert!(changed.contains(&f.old_manual.id) && changed.contains(&f.old_scheduled.id));
    store
        .force_run_state(f.queued.id, RunState::Running, t(11))
        .await
        .unwrap();
    let again = store.purge_history(t(10), false).await.unwrap();
    assert_eq!(
        again,
        updraft_store::PurgeReport {
            run_changes: 2,
            ..Default::default()
        }
    );
    let changed: Vec<i64> = store
        .run_changes_since(0, 100)
        .await
        .unwrap()
        .iter()
        .map(|c| c.run_pk)
        .collect();
    assert!(!changed.contains(&f.old_manual.id) && !changed.contains(&f.old_scheduled.id));
    assert!(changed.contains(&f.queued.id));
    assert_eq!(run_pks(store).await, kept);
}

pub async fn purge_history_dry_run_counts_and_changes_nothing(store: &dyn Store) {
    let f = purge_fixture(store).await;
    let pks = run_pks(store).await;
    let latest_change = store.latest_run_change().await.unwrap();

    let dry = store.purge_history(t(10), true).await.unwrap();
    assert_eq!(dry, purge_fixture_report());
    assert_eq!(run_pks(store).await, pks);
    assert_eq!(
        store.task_instances(f.old_manual.id).await.unwrap().len(),
        2
    );
    assert_eq!(
        store.tries(&key(&f.old_manual, "a")).await.unwrap().len(),
        1
    );
    assert_eq!(store.notes(&[f.old_manual.id]).await.unwrap().len(), 2);
    assert_eq!(store.latest_run_change().await.unwrap(), latest_change);
    // Again: still nothing changed, same counts.
    assert_eq!(store.purge_history(t(10), true).await.unwrap(), dry);

    // The real clean deletes what the dry run counted.
    assert_eq!(store.purge_history(t(10), false).await.unwrap(), dry);
    assert_eq!(run_pks(store).await.len(), pks.len() - 2);
}

pub async fn purge_history_keeps_versions_pinned_by_remaining_runs_or_current(store: &dyn Store) {
    let mut d = dag("d");
    let v1 = sync_at(store, &[&d], false, t(0)).await.remove(0);
    let finished = async |d: &Dag, run_id: &str, hour: i64, end: i64| {
        let run = store
            .create_run(
                &new_run(d, run_id, RunType::Manual, hour),
                &[ti("a", 1)],
                t(hour),
            )
            .await
            .unwrap();
        store
            .force_run_state(run.id, RunState::Running, t(hour))
            .await
            .unwrap();
        store
            .force_run_state(run.id, RunState::Success, t(end))
            .await
            .unwrap();
        run
    };
    // v1: one old run (goes) and one recent run (stays, so v1 stays).
    finished(&d, "v1_old", 0, 1).await;
    let v1_recent = finished(&d, "v1_recent", 1, 20).await;
    // v2: only an old run, which goes, and v2 with it.
    d.description = Some("second".to_string());
    let v2 = sync_at(store, &[&d], false, t(2)).await.remove(0);
    finished(&d, "v2_old", 2, 3).await;
    // v3: the DAG's current version, no runs: stays.
    d.description = Some("third".to_string());
    let v3 = sync_at(store, &[&d], false, t(4)).await.remove(0);
    assert_eq!(store.dag_versions("d").await.unwrap().len(), 3);

    let dry = store.purge_history(t(10), true).await.unwrap();
    assert_eq!((dry.runs, dry.dag_versions), (2, 1));
    assert_eq!(store.dag_versions("d").await.unwrap().len(), 3);

    let report = store.purge_history(t(10), false).await.unwrap();
    assert_eq!(report, dry);
    let versions: Vec<String> = store
        .dag_versions("d")
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(versions, [v3.clone(), v1.clone()]);
    assert!(!versions.contains(&v2));
    assert_eq!(store.dag_source("d", &v2).await.unwrap(), None);
    assert!(store.dag_version("d", &v1).await.unwrap().is_some());
    assert_eq!(store.dag("d").await.unwrap().unwrap().version, v3);
    assert_eq!(run_pks(store).await, [v1_recent.id]);
}

pub async fn purge_history_removes_scheduler_jobs_that_ended_before(store: &dyn Store) {
    let stopped_old = store.register_scheduler("h", 1, t(0)).await.unwrap();
    store.stop_scheduler(stopped_old, t(1)).await.unwrap();
    let stopped_recent = store.register_scheduler("h", 2, t(0)).await.unwrap();
    store.stop_scheduler(stopped_recent, t(20)).await.unwrap();
    // Running, however old its heartbeat: stays.
    let running = store.register_scheduler("h", 3, t(0)).await.unwrap();

    let report = store.purge_history(t(10), true).await.unwrap();
    assert_eq!(report.scheduler_jobs, 1);
    assert_eq!(store.schedulers(10).await.unwrap().len(), 3);
    assert_eq!(store.purge_history(t(10), false).await.unwrap(), report);
    let mut left: Vec<i64> = store
        .schedulers(10)
        .await
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    left.sort();
    assert_eq!(
        left,
        [stopped_recent.min(running), stopped_recent.max(running)]
    );
}
