//! Scenarios of [`UserStore`]: users, their tenant grants, and the audit log.

use chrono::{DateTime, Utc};
use updraft_auth::Grant;
use updraft_store::{EventQuery, NewEvent, NewUser, Store, StoreError};

use super::t;

fn local(username: &str) -> NewUser {
    NewUser {
        username: username.to_string(),
        email: format!("{username}@example.com"),
        first_name: format!("{username} first"),
        last_name: format!("{username} last"),
        password_hash: Some(format!("$argon2id$hash-of-{username}")),
        source: "local".to_string(),
    }
}

fn grant(text: &str) -> Grant {
    text.parse().unwrap()
}

fn grants(texts: &[&str]) -> Vec<Grant> {
    texts.iter().map(|g| grant(g)).collect()
}

pub async fn users_create_get_list_delete(store: &dyn Store) {
    assert_eq!(store.users().await.unwrap(), vec![]);
    let before = Utc::now() - chrono::Duration::seconds(1);
    store
        .create_user(
            &local("bob"),
            &grants(&["Viewer@team_b", "User@team_a", "Admin@*"]),
        )
        .await
        .unwrap();
    store.create_user(&local("alice"), &[]).await.unwrap();

    let bob = store.user("bob").await.unwrap().expect("bob is recorded");
    assert_eq!(bob.username, "bob");
    assert_eq!(bob.email, "bob@example.com");
    assert_eq!(bob.first_name, "bob first");
    assert_eq!(bob.last_name, "bob last");
    assert_eq!(bob.password_hash.as_deref(), Some("$argon2id$hash-of-bob"));
    assert!(bob.active);
    assert_eq!(bob.source, "local");
    assert_eq!(bob.last_login, None);
    assert!(bob.created_at > before && bob.created_at <= Utc::now());
    // Every tenant first, then by tenant.
    assert_eq!(
        bob.grants,
        grants(&["Admin@*", "User@team_a", "Viewer@team_b"])
    );

    let listed = store.users().await.unwrap();
    let names: Vec<&str> = listed.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(names, ["alice", "bob"]);
    assert_eq!(listed[0].grants, vec![]);
    assert_eq!(listed[1], bob);

    assert!(store.user("carol").await.unwrap().is_none());
    assert!(store.delete_user("bob").await.unwrap());
    assert!(!store.delete_user("bob").await.unwrap());
    assert!(store.user("bob").await.unwrap().is_none());
    // Its grants went with it: a new bob starts with none.
    store.create_user(&local("bob"), &[]).await.unwrap();
    assert_eq!(store.user("bob").await.unwrap().unwrap().grants, vec![]);
}

pub async fn users_duplicate_username_is_a_conflict_and_changes_nothing(store: &dyn Store) {
    store
        .create_user(&local("bob"), &grants(&["Viewer@*"]))
        .await
        .unwrap();
    let mut other = local("bob");
    other.email = "other@example.com".into();
    let err = store
        .create_user(&other, &grants(&["Admin@*"]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(ref m) if m.contains("bob")),
        "{err:?}"
    );
    let bob = store.user("bob").await.unwrap().unwrap();
    assert_eq!(bob.email, "bob@example.com");
    assert_eq!(bob.grants, grants(&["Viewer@*"]));
}

pub async fn users_grants_are_added_and_removed_once(store: &dyn Store) {
    store.create_user(&local("bob"), &[]).await.unwrap();
    assert!(store.add_grant("bob", &grant("User@team_a")).await.unwrap());
    assert!(!store.add_grant("bob", &grant("User@team_a")).await.unwrap());
    assert!(store.add_grant("bob", &grant("User@*")).await.unwrap());
    assert!(store.add_grant("bob", &grant("Op@team_a")).await.unwrap());
    assert_eq!(
        store.user("bob").await.unwrap().unwrap().grants,
        grants(&["User@*", "User@team_a", "Op@team_a"])
    );

    assert!(
        store
            .remove_grant("bob", &grant("User@team_a"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .remove_grant("bob", &grant("User@team_a"))
            .await
            .unwrap()
    );
    // The grant for every tenant is not the grant for one tenant.
    assert!(!store.remove_grant("bob", &grant("Op@*")).await.unwrap());
    assert_eq!(
        store.user("bob").await.unwrap().unwrap().grants,
        grants(&["User@*", "Op@team_a"])
    );

    for err in [
        store
            .add_grant("nobody", &grant("Viewer@*"))
            .await
            .unwrap_err(),
        store
            .remove_grant("nobody", &grant("Viewer@*"))
            .await
            .unwrap_err(),
    ] {
        assert!(
            matches!(err, StoreError::NotFound(ref m) if m.contains("nobody")),
            "{err:?}"
        );
    }
    assert!(store.user("nobody").await.unwrap().is_none());
}

pub async fn users_external_sign_in_creates_then_replaces_names_and_grants(store: &dyn Store) {
    let oidc = NewUser {
        username: "dana".into(),
        email: "dana@corp.example".into(),
        first_name: "Dana".into(),
        last_name: "Scully".into(),
        password_hash: None,
        source: "oidc".into(),
    };
    let first = store
        .sync_external_user(&oidc, &grants(&["Viewer@*", "User@team_a"]))
        .await
        .unwrap();
    assert_eq!(first.username, "dana");
    assert_eq!(first.source, "oidc");
    assert_eq!(first.password_hash, None);
    assert!(first.active);
    assert_eq!(first.grants, grants(&["Viewer@*", "User@team_a"]));
    assert_eq!(store.user("dana").await.unwrap(), Some(first.clone()));

    let renamed = NewUser {
        email: "dana@new.example".into(),
        last_name: "Mulder".into(),
        ..oidc
    };
    let second = store
        .sync_external_user(&renamed, &grants(&["Op@team_b"]))
        .await
        .unwrap();
    assert_eq!(second.email, "dana@new.example");
    assert_eq!(second.last_name, "Mulder");
    assert_eq!(second.created_at, first.created_at);
    assert_eq!(second.grants, grants(&["Op@team_b"]));
    assert_eq!(store.user("dana").await.unwrap(), Some(second));

    // Signing in with no mapped role leaves no grant.
    let third = store.sync_external_user(&renamed, &[]).await.unwrap();
    assert_eq!(third.grants, vec![]);
    assert_eq!(store.users().await.unwrap().len(), 1);
}

pub async fn users_logins_and_passwords_are_recorded(store: &dyn Store) {
    store.create_user(&local("bob"), &[]).await.unwrap();
    let at = t(5) + chrono::Duration::microseconds(7);
    store.record_login("bob", at).await.unwrap();
    store
        .set_password_hash("bob", "$argon2id$new")
        .await
        .unwrap();
    let bob = store.user("bob").await.unwrap().unwrap();
    assert_eq!(bob.last_login, Some(at));
    assert_eq!(bob.password_hash.as_deref(), Some("$argon2id$new"));

    let err = store.record_login("nobody", at).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    let err = store.set_password_hash("nobody", "x").await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

fn event(
    hours: i64,
    username: &str,
    what: &str,
    tenant: Option<&str>,
    dag_id: Option<&str>,
) -> NewEvent {
    NewEvent {
        when: Some(t(hours)),
        username: username.into(),
        event: what.into(),
        tenant: tenant.map(Into::into),
        dag_id: dag_id.map(Into::into),
        ..NewEvent::default()
    }
}

/// The `(event, dttm hour)` of a page, to compare briefly.
fn brief(rows: &[updraft_store::EventRow]) -> Vec<(String, DateTime<Utc>)> {
    rows.iter().map(|r| (r.event.clone(), r.when)).collect()
}

pub async fn events_are_recorded_and_listed_newest_first_with_filters(store: &dyn Store) {
    let full = NewEvent {
        when: Some(t(0)),
        username: "bob".into(),
        event: "clear".into(),
        tenant: Some("team_a".into()),
        dag_id: Some("etl".into()),
        run_id: Some("manual__1".into()),
        task_id: Some("load".into()),
        map_index: Some(-1),
        try_number: Some(2),
        extra: Some(r#"{"only_failed":true}"#.into()),
    };
    let id = store.record_event(&full).await.unwrap();
    // Recorded out of time order on purpose: the listing sorts by time.
    store
        .record_event(&event(3, "bob", "trigger", Some("team_a"), Some("etl")))
        .await
        .unwrap();
    store
        .record_event(&event(
            1,
            "carol",
            "trigger",
            Some("team_b"),
            Some("report"),
        ))
        .await
        .unwrap();
    store
        .record_event(&event(2, "admin", "create_user", None, None))
        .await
        .unwrap();
    store
        .record_event(&event(
            4,
            "carol",
            "patch_dag",
            Some("team_b"),
            Some("report"),
        ))
        .await
        .unwrap();

    let all = |q: EventQuery| EventQuery { limit: 100, ..q };
    let (rows, total) = store.events(&all(EventQuery::default())).await.unwrap();
    assert_eq!(total, 5);
    assert_eq!(
        brief(&rows),
        [
            ("patch_dag".to_string(), t(4)),
            ("trigger".to_string(), t(3)),
            ("create_user".to_string(), t(2)),
            ("trigger".to_string(), t(1)),
            ("clear".to_string(), t(0)),
        ]
    );
    let oldest = &rows[4];
    assert_eq!(oldest.id, id);
    assert_eq!(oldest.username, "bob");
    assert_eq!(oldest.tenant.as_deref(), Some("team_a"));
    assert_eq!(oldest.dag_id.as_deref(), Some("etl"));
    assert_eq!(oldest.run_id.as_deref(), Some("manual__1"));
    assert_eq!(oldest.task_id.as_deref(), Some("load"));
    assert_eq!(oldest.map_index, Some(-1));
    assert_eq!(oldest.try_number, Some(2));
    assert_eq!(oldest.extra.as_deref(), Some(r#"{"only_failed":true}"#));
    assert_eq!(rows[2].tenant, None);

    let count = async |q: EventQuery| {
        let (rows, total) = store.events(&all(q)).await.unwrap();
        assert_eq!(rows.len() as u64, total);
        brief(&rows)
    };
    let team_a = Some(vec!["team_a".to_string()]);
    assert_eq!(
        count(EventQuery {
            tenants: team_a.clone(),
            ..Default::default()
        })
        .await,
        [("trigger".to_string(), t(3)), ("clear".to_string(), t(0))]
    );
    assert_eq!(
        count(EventQuery {
            tenants: team_a,
            include_untenanted: true,
            ..Default::default()
        })
        .await
        .len(),
        3
    );
    assert_eq!(
        count(EventQuery {
            tenants: Some(vec![]),
            ..Default::default()
        })
        .await,
        []
    );
    assert_eq!(
        count(EventQuery {
            tenants: Some(vec![]),
            include_untenanted: true,
            ..Default::default()
        })
        .await,
        [("create_user".to_string(), t(2))]
    );
    assert_eq!(
        count(EventQuery {
            dag_id: Some("report".into()),
            ..Default::default()
        })
        .await,
        [
            ("patch_dag".to_string(), t(4)),
            ("trigger".to_string(), t(1))
        ]
    );
    assert_eq!(
        count(EventQuery {
            event: Some("trigger".into()),
            ..Default::default()
        })
        .await,
        [("trigger".to_string(), t(3)), ("trigger".to_string(), t(1))]
    );
    assert_eq!(
        count(EventQuery {
            username: Some("bob".into()),
            ..Default::default()
        })
        .await,
        [("trigger".to_string(), t(3)), ("clear".to_string(), t(0))]
    );
    assert_eq!(
        count(EventQuery {
            run_id: Some("manual__1".into()),
            task_id: Some("load".into()),
            ..Default::default()
        })
        .await,
        [("clear".to_string(), t(0))]
    );
    let (newest, _) = store
        .events(&EventQuery {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let (by_id, by_id_total) = store
        .events(&EventQuery {
            id: Some(newest[0].id),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (by_id, by_id_total),
        (newest, 1),
        "an entry is found by its id"
    );
    // `after` is inclusive, `before` exclusive.
    assert_eq!(
        count(EventQuery {
            after: Some(t(1)),
            before: Some(t(3)),
            ..Default::default()
        })
        .await,
        [
            ("create_user".to_string(), t(2)),
            ("trigger".to_string(), t(1))
        ]
    );

    let (page, total) = store
        .events(&EventQuery {
            limit: 2,
            offset: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(total, 5);
    assert_eq!(
        brief(&page),
        [
            ("trigger".to_string(), t(3)),
            ("create_user".to_string(), t(2))
        ]
    );
    let (page, total) = store
        .events(&EventQuery {
            limit: 2,
            offset: 4,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (brief(&page), total),
        (vec![("clear".to_string(), t(0))], 5)
    );
}

pub async fn events_default_to_now_and_keep_order_within_one_instant(store: &dyn Store) {
    let before = Utc::now() - chrono::Duration::seconds(1);
    let now = NewEvent {
        username: "bob".into(),
        event: "first".into(),
        ..NewEvent::default()
    };
    store.record_event(&now).await.unwrap();
    let (rows, _) = store
        .events(&EventQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(rows[0].when > before && rows[0].when <= Utc::now());

    for what in ["a", "b", "c"] {
        store
            .record_event(&event(9, "bob", what, None, None))
            .await
            .unwrap();
    }
    let (rows, _) = store
        .events(&EventQuery {
            before: Some(t(10)),
            after: Some(t(9)),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let order: Vec<&str> = rows.iter().map(|r| r.event.as_str()).collect();
    assert_eq!(
        order,
        ["c", "b", "a"],
        "newest recorded first within one instant"
    );
}
