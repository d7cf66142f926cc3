//! Scenarios of [`SourceStore`] and of DAG bundles: each source's recorded sync, requests to
//! sync taken once, the bundle a DAG and its versions were read from, and the revision a run
//! is pinned to.

use chrono::{DateTime, Utc};
use updraft_core::RunType;
use updraft_dag::Dag;
use updraft_store::{
    BundleRef, DagQuery, LoadedDagRecord, NewestRunsFilter, RunQuery, SourceRow, Store,
};

use super::{dag, new_run, t, ti};

/// A bundle's name and version, as a DAG row carries them.
type Bundle = (Option<String>, Option<String>);

fn source(name: &str, tenant: Option<&str>, revision: Option<&str>) -> SourceRow {
    SourceRow {
        name: name.to_owned(),
        tenant: tenant.map(str::to_owned),
        kind: "git".to_owned(),
        url: format!("https://git.example.com/{name}.git"),
        reference: Some("main".to_owned()),
        revision: revision.map(str::to_owned),
        revision_url: revision.map(|r| format!("https://git.example.com/{name}/commit/{r}")),
        last_sync_at: Some(t(1)),
        last_success_at: revision.map(|_| t(1)),
        failures: 0,
        error: None,
        sync_requested_at: None,
    }
}

/// Sync exactly `dags`, each read from `bundle` (`(name, revision)`; `None`: the plain DAGs
/// folder), at `now`; returns their versions.
pub async fn sync_from(
    store: &dyn Store,
    dags: &[&Dag],
    bundle: Option<(&str, Option<&str>)>,
    now: DateTime<Utc>,
) -> Vec<String> {
    let versions: Vec<String> = dags.iter().map(|d| d.version()).collect();
    let records: Vec<LoadedDagRecord<'_>> = dags
        .iter()
        .zip(&versions)
        .map(|(dag, version)| LoadedDagRecord {
            dag,
            version,
            source: "source",
            bundle: bundle.map(|(name, version)| BundleRef { name, version }),
        })
        .collect();
    store.sync_dags(&records, &[], false, now).await.unwrap();
    versions
}

pub async fn sources_are_recorded_listed_and_replaced(store: &dyn Store) {
    assert!(store.sources().await.unwrap().is_empty());
    assert_eq!(store.source("platform").await.unwrap(), None);
    let platform = source("platform", None, Some("aaa"));
    let team = source("team-a", Some("team-a"), None);
    store.record_source(&team).await.unwrap();
    store.record_source(&platform).await.unwrap();
    assert_eq!(
        store.sources().await.unwrap(),
        [platform.clone(), team.clone()],
        "by name"
    );
    assert_eq!(store.source("team-a").await.unwrap(), Some(team.clone()));

    // A failed sync: the revision in use stays, the failure is counted.
    let failed = SourceRow {
        last_sync_at: Some(t(2)),
        failures: 2,
        error: Some("source platform: could not connect".to_owned()),
        ..platform.clone()
    };
    store.record_source(&failed).await.unwrap();
    assert_eq!(store.source("platform").await.unwrap(), Some(failed));
    // Then a success at a new revision clears the error.
    let synced = SourceRow {
        last_sync_at: Some(t(3)),
        last_success_at: Some(t(3)),
        ..source("platform", None, Some("bbb"))
    };
    store.record_source(&synced).await.unwrap();
    assert_eq!(store.source("platform").await.unwrap(), Some(synced));
    assert_eq!(store.source("team-a").await.unwrap(), Some(team));
}

pub async fn source_sync_requests_are_kept_until_taken_once(store: &dyn Store) {
    assert!(!store.request_source_sync("nope", t(1)).await.unwrap());
    for name in ["a", "b", "c"] {
        store
            .record_source(&source(name, None, Some("r1")))
            .await
            .unwrap();
    }
    assert!(store.take_source_sync_requests().await.unwrap().is_empty());
    assert!(store.request_source_sync("c", t(2)).await.unwrap());
    assert!(store.request_source_sync("a", t(3)).await.unwrap());
    // Asked again while pending: the first request's time stays.
    assert!(store.request_source_sync("c", t(4)).await.unwrap());
    assert_eq!(
        store.source("c").await.unwrap().unwrap().sync_requested_at,
        Some(t(2))
    );
    // A sync recorded meanwhile leaves the request pending.
    store
        .record_source(&source("c", None, Some("r2")))
        .await
        .unwrap();
    let c = store.source("c").await.unwrap().unwrap();
    assert_eq!(c.sync_requested_at, Some(t(2)));
    assert_eq!(c.revision.as_deref(), Some("r2"));

    assert_eq!(store.take_source_sync_requests().await.unwrap(), ["a", "c"]);
    assert!(store.take_source_sync_requests().await.unwrap().is_empty());
    for source in store.sources().await.unwrap() {
        assert_eq!(source.sync_requested_at, None, "{}", source.name);
    }
}

/// Takers at once (as several schedulers) each get different requests, and all of them.
pub async fn source_sync_requests_taken_at_once_go_to_one_taker_each(store: &dyn Store) {
    let names: Vec<String> = (0..12).map(|i| format!("s{i:02}")).collect();
    for name in &names {
        store
            .record_source(&source(name, None, None))
            .await
            .unwrap();
        assert!(store.request_source_sync(name, t(1)).await.unwrap());
    }
    let (a, b, c) = tokio::join!(
        store.take_source_sync_requests(),
        store.take_source_sync_requests(),
        store.take_source_sync_requests()
    );
    let mut taken: Vec<String> = [a.unwrap(), b.unwrap(), c.unwrap()].concat();
    taken.sort();
    assert_eq!(taken, names, "every request taken, none twice");
}

pub async fn dags_and_versions_record_the_bundle_they_were_read_from(store: &dyn Store) {
    let mut d = dag("d");
    let other = dag("other");
    let v1 = sync_from(store, &[&d, &other], Some(("platform", Some("aaa"))), t(0)).await;
    let bundle_of = async |dag_id: &str| {
        let row = store.dag(dag_id).await.unwrap().unwrap();
        (row.bundle_name, row.bundle_version)
    };
    let at = |name: &str, r: &str| (Some(name.to_owned()), Some(r.to_owned()));
    assert_eq!(bundle_of("d").await, at("platform", "aaa"));
    // The same definition at a new revision keeps its version, first read at `aaa`; the DAG
    // was last read at `bbb`.
    sync_from(store, &[&d, &other], Some(("platform", Some("bbb"))), t(1)).await;
    assert_eq!(bundle_of("d").await, at("platform", "bbb"));
    // A changed definition is a new version, read at `ccc`.
    d.description = Some("changed".to_owned());
    let v2 = sync_from(store, &[&d, &other], Some(("platform", Some("ccc"))), t(2)).await;
    let versions: Vec<(String, Option<String>, Option<String>)> = store
        .dag_versions("d")
        .await
        .unwrap()
        .into_iter()
        .map(|v| (v.version, v.bundle_name, v.bundle_version))
        .collect();
    assert_eq!(
        versions,
        [
            (v2[0].clone(), Some("platform".into()), Some("ccc".into())),
            (v1[0].clone(), Some("platform".into()), Some("aaa".into())),
        ]
    );

    // Moved to another source, then to the plain DAGs folder: the DAG names its latest.
    sync_from(store, &[&d, &other], Some(("team-a", Some("t1"))), t(3)).await;
    let page = store.dags_page(&DagQuery::default()).await.unwrap();
    let names: Vec<(String, Bundle)> = page
        .items
        .iter()
        .map(|row| {
            let bundle = (row.bundle_name.clone(), row.bundle_version.clone());
            (row.dag.dag_id.clone(), bundle)
        })
        .collect();
    assert_eq!(
        names,
        [
            ("d".to_owned(), at("team-a", "t1")),
            ("other".to_owned(), at("team-a", "t1"))
        ]
    );
    sync_from(store, &[&d, &other], None, t(4)).await;
    for row in store.dags().await.unwrap() {
        let bundle = (row.bundle_name, row.bundle_version);
        assert_eq!(bundle, (None, None), "{}", row.dag.dag_id);
    }
    // A version first read from the plain folder has no bundle.
    d.description = Some("plain".to_owned());
    sync_from(store, &[&d, &other], None, t(5)).await;
    let newest = store.dag_versions("d").await.unwrap().remove(0);
    assert_eq!((newest.bundle_name, newest.bundle_version), (None, None));
}

pub async fn runs_are_pinned_to_the_revision_their_dag_was_loaded_from(store: &dyn Store) {
    let d = dag("d");
    let plain = dag("plain");
    let run = async |dag: &Dag, run_id: &str, hour: i64| {
        store
            .create_run(
                &new_run(dag, run_id, RunType::Manual, hour),
                &[ti("a", 1)],
                t(hour),
            )
            .await
            .unwrap()
    };
    // `d` from `platform` at `aaa`; `plain` from the plain DAGs folder.
    store
        .record_source(&source("platform", None, Some("aaa")))
        .await
        .unwrap();
    sync_both(store, &d, "aaa", &plain).await;
    let first = run(&d, "first", 0).await;
    assert_eq!(first.bundle_version.as_deref(), Some("aaa"));

    // The source moves on and the DAG (unchanged) is loaded from `bbb`: a new run reads `bbb`,
    // the first stays where it started.
    store
        .record_source(&source("platform", None, Some("bbb")))
        .await
        .unwrap();
    sync_both(store, &d, "bbb", &plain).await;
    let second = run(&d, "second", 1).await;
    assert_eq!(second.bundle_version.as_deref(), Some("bbb"));
    // `ccc` is synced but not loaded yet (or fails to load): runs keep the revision their
    // definition comes from.
    store
        .record_source(&source("platform", None, Some("ccc")))
        .await
        .unwrap();
    let third = run(&d, "third", 2).await;
    assert_eq!(third.bundle_version.as_deref(), Some("bbb"));

    let pinned = |run: Option<updraft_store::RunRow>| run.unwrap().bundle_version;
    assert_eq!(
        pinned(store.run("d", "first").await.unwrap()).as_deref(),
        Some("aaa")
    );
    assert_eq!(
        pinned(store.run_by_pk(second.id).await.unwrap()).as_deref(),
        Some("bbb")
    );
    let newest = store
        .newest_runs(&NewestRunsFilter {
            dag_id: Some("d".to_owned()),
            ..NewestRunsFilter::default()
        })
        .await
        .unwrap();
    let listed: Vec<(String, Option<String>)> = newest
        .into_iter()
        .map(|r| (r.run_id, r.bundle_version))
        .collect();
    let at = |run: &str, rev: &str| (run.to_owned(), Some(rev.to_owned()));
    assert_eq!(
        listed,
        [at("third", "bbb"), at("second", "bbb"), at("first", "aaa")]
    );
    let page = store.runs_page(&RunQuery::default()).await.unwrap();
    let paged: Vec<Option<String>> = page.items.into_iter().map(|r| r.bundle_version).collect();
    assert_eq!(
        paged,
        [Some("aaa".into()), Some("bbb".into()), Some("bbb".into())]
    );

    let plain_run = run(&plain, "r", 0).await;
    assert_eq!(plain_run.bundle_version, None);
    assert_eq!(pinned(store.run("plain", "r").await.unwrap()), None);
}

/// One load of `d` from `platform` at `revision` and of `plain` from the plain DAGs folder.
async fn sync_both(store: &dyn Store, d: &Dag, revision: &str, plain: &Dag) {
    let records = [
        (
            d,
            Some(BundleRef {
                name: "platform",
                version: Some(revision),
            }),
        ),
        (plain, None),
    ];
    let versions: Vec<String> = records.iter().map(|(dag, _)| dag.version()).collect();
    let loaded: Vec<LoadedDagRecord<'_>> = records
        .iter()
        .zip(&versions)
        .map(|((dag, bundle), version)| LoadedDagRecord {
            dag,
            version,
            source: "source",
            bundle: *bundle,
        })
        .collect();
    store.sync_dags(&loaded, &[], false, t(0)).await.unwrap();
}
