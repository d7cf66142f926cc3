//! Scenarios of [`AssetStore`]: events recorded and queued for the consumers of their tenant
//! only, asset-triggered runs consuming their events once, references, listings.

use updraft_core::RunType;
use updraft_dag::{AssetCondition, Dag, Schedule};
use updraft_store::api::Paging;
use updraft_store::{AssetEventQuery, AssetRefKind, AssetReference, NewAssetEvent, Store};

use super::{dag, new_run, sync, t, ti};

fn consumer(dag_id: &str, tenant: &str, uris: &[&str]) -> Dag {
    let mut d = dag(dag_id);
    d.tenant = tenant.to_owned();
    d.schedule = Schedule::Assets(AssetCondition::All(
        uris.iter()
            .map(|u| AssetCondition::Asset((*u).to_owned()))
            .collect(),
    ));
    d
}

fn schedule_refs(d: &Dag) -> Vec<AssetReference> {
    d.schedule
        .assets()
        .unwrap()
        .uris()
        .into_iter()
        .map(|uri| AssetReference {
            tenant: d.tenant.clone(),
            dag_id: d.dag_id.clone(),
            task_id: String::new(),
            kind: AssetRefKind::Schedule,
            uri: uri.to_owned(),
        })
        .collect()
}

fn event(tenant: &str, uri: &str, hour: i64) -> NewAssetEvent {
    NewAssetEvent {
        tenant: tenant.to_owned(),
        uri: uri.to_owned(),
        source_dag_id: Some("producer".to_owned()),
        source_run_id: Some(format!("run_{hour}")),
        source_task_id: Some("write".to_owned()),
        source_map_index: -1,
        timestamp: t(hour),
        extra: serde_json::json!({"rows": hour})
            .as_object()
            .unwrap()
            .clone(),
        ..Default::default()
    }
}

pub async fn asset_events_are_queued_for_their_tenants_unpaused_consumers(store: &dyn Store) {
    let a = consumer("a_consumer", "acme", &["s3://x"]);
    let paused = consumer("paused_consumer", "acme", &["s3://x"]);
    let other = consumer("other_consumer", "globex", &["s3://x"]);
    sync(store, &[&a, &paused, &other], false).await;
    store.set_paused("paused_consumer", true).await.unwrap();
    let mut refs = schedule_refs(&a);
    refs.extend(schedule_refs(&paused));
    refs.extend(schedule_refs(&other));
    store.replace_asset_references(&refs, t(0)).await.unwrap();

    let recorded = store
        .record_asset_events(&[event("acme", "s3://x", 1), event("acme", "s3://y", 2)])
        .await
        .unwrap();
    assert_eq!(recorded.len(), 2);
    assert_eq!(recorded[0].tenant, "acme");
    let queued = store.queued_asset_events().await.unwrap();
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0].dag_id, "a_consumer");
    assert_eq!(queued[0].event_id, recorded[0].id);
    assert_eq!(queued[0].uri, "s3://x");

    // The same URI in another tenant is another asset.
    let theirs = store
        .record_asset_events(&[event("globex", "s3://x", 3)])
        .await
        .unwrap();
    assert_ne!(theirs[0].asset_id, recorded[0].asset_id);
    let queued = store.queued_asset_events().await.unwrap();
    let for_other: Vec<_> = queued
        .iter()
        .filter(|q| q.dag_id == "other_consumer")
        .collect();
    assert_eq!(for_other.len(), 1);
    assert_eq!(for_other[0].event_id, theirs[0].id);
}

pub async fn an_asset_triggered_run_consumes_its_events_once(store: &dyn Store) {
    let c = consumer("consumer", "acme", &["s3://x"]);
    sync(store, &[&c], false).await;
    store
        .replace_asset_references(&schedule_refs(&c), t(0))
        .await
        .unwrap();
    let events = store
        .record_asset_events(&[event("acme", "s3://x", 1), event("acme", "s3://x", 2)])
        .await
        .unwrap();
    let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
    let run = new_run(&c, "asset_triggered__1", RunType::AssetTriggered, 2);
    let created = store
        .create_asset_triggered_run(&run, &[ti("t", 1)], &ids, t(3))
        .await
        .unwrap()
        .expect("the events were queued");
    assert_eq!(created.run_type, RunType::AssetTriggered);
    assert!(store.queued_asset_events().await.unwrap().is_empty());
    let consumed = store.consumed_asset_events(created.id).await.unwrap();
    assert_eq!(consumed.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
    assert_eq!(consumed[0].source_task_id.as_deref(), Some("write"));
    assert_eq!(consumed[0].extra, serde_json::json!({"rows": 1}));

    // A second scheduler deciding on the same events creates nothing and writes nothing.
    let again = new_run(&c, "asset_triggered__2", RunType::AssetTriggered, 4);
    let none = store
        .create_asset_triggered_run(&again, &[ti("t", 1)], &ids, t(4))
        .await
        .unwrap();
    assert!(none.is_none());
    assert!(
        store
            .run("consumer", "asset_triggered__2")
            .await
            .unwrap()
            .is_none()
    );

    // Half-consumed sets are refused whole: the queued one stays queued.
    let fresh = store
        .record_asset_events(&[event("acme", "s3://x", 5)])
        .await
        .unwrap();
    let mixed = [ids[0], fresh[0].id];
    let none = store
        .create_asset_triggered_run(&again, &[ti("t", 1)], &mixed, t(5))
        .await
        .unwrap();
    assert!(none.is_none());
    let queued = store.queued_asset_events().await.unwrap();
    assert_eq!(
        queued.iter().map(|q| q.event_id).collect::<Vec<_>>(),
        vec![fresh[0].id]
    );
}

pub async fn assets_and_events_are_listed_by_tenant_and_filters(store: &dyn Store) {
    let refs = vec![AssetReference {
        tenant: "acme".into(),
        dag_id: "producer".into(),
        task_id: "write".into(),
        kind: AssetRefKind::Outlet,
        uri: "s3://declared".into(),
    }];
    store.replace_asset_references(&refs, t(0)).await.unwrap();
    assert_eq!(store.asset_references().await.unwrap(), refs);
    store
        .record_asset_events(&[
            event("acme", "s3://x", 1),
            event("globex", "s3://x", 2),
            event("acme", "s3://x", 3),
        ])
        .await
        .unwrap();
    let all = Paging::default();
    let (acme, n) = store
        .assets(Some(&["acme".to_owned()]), &all)
        .await
        .unwrap();
    assert_eq!(n, 2);
    let uris: Vec<&str> = acme.iter().map(|a| a.uri.as_str()).collect();
    assert_eq!(uris, ["s3://declared", "s3://x"]);
    assert_eq!(acme[1].name, "s3://x");
    let (every, n) = store.assets(None, &all).await.unwrap();
    assert_eq!((every.len(), n), (3, 3));
    assert_eq!(store.asset(acme[1].id).await.unwrap().unwrap(), acme[1]);
    assert!(store.asset(999_999).await.unwrap().is_none());

    let query = AssetEventQuery {
        tenants: Some(vec!["acme".into()]),
        ..Default::default()
    };
    let (events, n) = store.asset_events(&query).await.unwrap();
    assert_eq!(n, 2);
    assert_eq!(events[0].timestamp, t(3), "newest first");
    let query = AssetEventQuery {
        source_run_id: Some("run_2".into()),
        ..Default::default()
    };
    let (events, _) = store.asset_events(&query).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].tenant, "globex");
    let query = AssetEventQuery {
        asset_id: Some(acme[1].id),
        paging: Paging {
            limit: Some(1),
            offset: 1,
        },
        ..Default::default()
    };
    let (events, n) = store.asset_events(&query).await.unwrap();
    assert_eq!(n, 2);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].timestamp, t(1));

    // References are replaced whole.
    store.replace_asset_references(&[], t(1)).await.unwrap();
    assert!(store.asset_references().await.unwrap().is_empty());
}
