//! A dag_id belongs to the tenant that first registered it: a DAGs-folder load where another
//! tenant's file declares it leaves the owner's DAG as it was and reports the claim as an
//! import error in the claiming file, on SQLite and on PostgreSQL.

#[path = "../../updraft-store/tests/pg_support/mod.rs"]
mod pg_support;

use std::collections::HashMap;
use std::path::Path;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use updraft_dag::DagBag;
use updraft_runs::{record_dag_bag, trigger_run};
use updraft_store::{AdminStore, NewestRunsFilter, PgStore, PgStoreOptions, SqliteStore, Store};

fn t(hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 5, hour, 0, 0).unwrap()
}

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

const OWNED: &str = "dag_id: etl\ntasks:\n  - task_id: load\n    bash: echo team_b\n";
const CLAIM: &str = "\ndag_id: etl\ntasks:\n  - task_id: steal\n    bash: env\n";

async fn owner_keeps_its_dag_id(store: &dyn Store) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "team_b/etl.yaml", OWNED);
    let mut bag = DagBag::load(root);
    record_dag_bag(store, &bag, true, t(0)).await.unwrap();
    assert!(store.set_paused("etl", false).await.unwrap());
    let run = trigger_run(store, "etl", None, Some(t(1)), json!({}), t(1))
        .await
        .unwrap();
    let before = store.dag("etl").await.unwrap().unwrap();

    // `a_evil/` sorts before `team_b/`: today's first-file rule alone would hand it over.
    write(root, "a_evil/etl.yaml", CLAIM);
    bag.refresh();
    record_dag_bag(store, &bag, true, t(2)).await.unwrap();

    let after = store.dag("etl").await.unwrap().unwrap();
    assert_eq!(
        after.dag, before.dag,
        "the owner's definition, tenant and file stay"
    );
    assert_eq!(after.dag.fileloc, "team_b/etl.yaml");
    assert_eq!(after.version, before.version);
    assert!(!after.is_paused && after.is_active);
    assert_eq!(after.dag.tasks[0].task_id, "load");
    let runs = store
        .newest_runs(&NewestRunsFilter {
            dag_id: Some("etl".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(runs, vec![run]);
    let errors = store.import_errors().await.unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let error = &errors[0];
    assert_eq!(
        (error.tenant.as_str(), error.filename.as_str()),
        ("a_evil", "a_evil/etl.yaml")
    );
    assert_eq!((error.line, error.column), (Some(2), Some(9)));
    assert!(
        error
            .message
            .contains("dag_id `etl` belongs to another tenant"),
        "{error}"
    );
    assert!(!error.message.contains("team_b"), "{error}");

    // Two tenants' files claiming a dag_id no one owns yet: the first path in sorted order.
    write(root, "team_c/new.yaml", "dag_id: fresh\ntasks: []\n");
    write(root, "team_d/new.yaml", "dag_id: fresh\ntasks: []\n");
    bag.refresh();
    record_dag_bag(store, &bag, true, t(3)).await.unwrap();
    assert_eq!(
        store.dag("fresh").await.unwrap().unwrap().dag.tenant,
        "team_c"
    );
    // Once registered, it stays team_c's even when team_c's file is gone.
    std::fs::remove_file(root.join("team_c/new.yaml")).unwrap();
    bag.refresh();
    record_dag_bag(store, &bag, true, t(4)).await.unwrap();
    let fresh = store.dag("fresh").await.unwrap().unwrap();
    assert_eq!(
        (fresh.dag.tenant.as_str(), fresh.is_active),
        ("team_c", false)
    );
    let files: Vec<String> = store
        .import_errors()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.filename)
        .collect();
    assert_eq!(files, ["a_evil/etl.yaml", "team_d/new.yaml"]);
    let owners: HashMap<String, String> = store.dag_owners().await.unwrap();
    assert_eq!(owners["etl"], "team_b");
}

#[tokio::test]
async fn on_sqlite_the_owner_keeps_its_dag_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("updraft.db"))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    owner_keeps_its_dag_id(&store).await;
}

#[tokio::test]
async fn on_postgres_the_owner_keeps_its_dag_id() {
    let (options, _drop) = pg_support::fresh_database().await;
    let store = PgStore::connect_with(options, &PgStoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    owner_keeps_its_dag_id(&store).await;
}
