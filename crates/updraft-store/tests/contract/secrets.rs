//! Scenarios of [`SecretStore`]: connections and variables per tenant or shared, write modes,
//! listings, deletion and all-or-nothing re-encryption.

use updraft_store::{ConnectionRow, SecretQuery, Store, StoreError, VariableRow, WriteMode};

fn conn(tenant: Option<&str>, conn_id: &str, host: &str) -> ConnectionRow {
    ConnectionRow {
        tenant: tenant.map(str::to_owned),
        conn_id: conn_id.to_owned(),
        conn_type: "postgres".to_owned(),
        description: Some(format!("{conn_id} of {tenant:?}")),
        host: Some(host.to_owned()),
        schema: Some("db".to_owned()),
        login: Some("user".to_owned()),
        password: Some(format!("sealed-password-{host}")),
        port: Some(5432),
        extra: Some(format!("sealed-extra-{host}")),
        is_encrypted: true,
        is_extra_encrypted: true,
    }
}

fn var(tenant: Option<&str>, key: &str, value: &str) -> VariableRow {
    VariableRow {
        tenant: tenant.map(str::to_owned),
        key: key.to_owned(),
        value: value.to_owned(),
        description: None,
        is_encrypted: true,
    }
}

fn all() -> SecretQuery {
    SecretQuery {
        tenants: None,
        include_shared: true,
        id_pattern: None,
        id: None,
        limit: 100,
        offset: 0,
    }
}

fn ids_of_connections(rows: &[ConnectionRow]) -> Vec<(Option<&str>, &str)> {
    rows.iter()
        .map(|r| (r.tenant.as_deref(), r.conn_id.as_str()))
        .collect()
}

fn ids_of_variables(rows: &[VariableRow]) -> Vec<(Option<&str>, &str)> {
    rows.iter()
        .map(|r| (r.tenant.as_deref(), r.key.as_str()))
        .collect()
}

pub async fn secrets_tenant_and_shared_rows_with_one_id_are_distinct(store: &dyn Store) {
    let a = conn(Some("a"), "my_db", "a-host");
    let b = conn(Some("b"), "my_db", "b-host");
    let shared = conn(None, "my_db", "shared-host");
    for row in [&a, &b, &shared] {
        store
            .write_connection(row, WriteMode::Create)
            .await
            .unwrap();
    }
    assert_eq!(store.connection(Some("a"), "my_db").await.unwrap(), Some(a));
    assert_eq!(store.connection(Some("b"), "my_db").await.unwrap(), Some(b));
    assert_eq!(store.connection(None, "my_db").await.unwrap(), Some(shared));
    // No fallback: a tenant without its own row gets nothing here.
    assert_eq!(store.connection(Some("c"), "my_db").await.unwrap(), None);
    // No tenant may be named as the shared rows are stored.
    let starred = store
        .write_connection(&conn(Some("*"), "other", "x"), WriteMode::Upsert)
        .await
        .unwrap_err();
    assert!(matches!(starred, StoreError::Invalid(_)), "{starred}");
    assert!(matches!(
        store
            .write_variable(&var(Some("*"), "other", "x"), WriteMode::Create)
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(store.connection(None, "other").await.unwrap(), None);

    let va = var(Some("a"), "token", "sealed-a");
    let vs = var(None, "token", "sealed-shared");
    store.write_variable(&va, WriteMode::Create).await.unwrap();
    store.write_variable(&vs, WriteMode::Create).await.unwrap();
    assert_eq!(store.variable(Some("a"), "token").await.unwrap(), Some(va));
    assert_eq!(store.variable(None, "token").await.unwrap(), Some(vs));
    assert_eq!(store.variable(Some("b"), "token").await.unwrap(), None);
}

pub async fn secrets_unencrypted_and_empty_fields_read_back_as_written(store: &dyn Store) {
    let bare = ConnectionRow {
        tenant: Some("a".to_owned()),
        conn_id: "http_default".to_owned(),
        conn_type: "http".to_owned(),
        ..ConnectionRow::default()
    };
    store
        .write_connection(&bare, WriteMode::Create)
        .await
        .unwrap();
    assert_eq!(
        store.connection(Some("a"), "http_default").await.unwrap(),
        Some(bare)
    );
    let plain = VariableRow {
        description: Some("written in the clear".to_owned()),
        is_encrypted: false,
        ..var(None, "greeting", "hello")
    };
    store
        .write_variable(&plain, WriteMode::Create)
        .await
        .unwrap();
    assert_eq!(store.variable(None, "greeting").await.unwrap(), Some(plain));
}

pub async fn secrets_write_modes_create_update_upsert(store: &dyn Store) {
    let first = conn(Some("a"), "my_db", "first");
    let second = conn(Some("a"), "my_db", "second");

    let missing = store
        .write_connection(&first, WriteMode::Update)
        .await
        .unwrap_err();
    assert!(
        matches!(&missing, StoreError::NotFound(m) if m.contains("my_db")),
        "{missing}"
    );
    assert_eq!(store.connection(Some("a"), "my_db").await.unwrap(), None);

    store
        .write_connection(&first, WriteMode::Create)
        .await
        .unwrap();
    let conflict = store
        .write_connection(&second, WriteMode::Create)
        .await
        .unwrap_err();
    assert!(
        matches!(&conflict, StoreError::Conflict(m) if m.contains("my_db") && m.contains("tenant a")),
        "{conflict}"
    );
    assert_eq!(
        store.connection(Some("a"), "my_db").await.unwrap(),
        Some(first.clone())
    );

    store
        .write_connection(&second, WriteMode::Update)
        .await
        .unwrap();
    assert_eq!(
        store.connection(Some("a"), "my_db").await.unwrap(),
        Some(second.clone())
    );

    // Update replaces every field, clearing what the new row leaves empty.
    let cleared = ConnectionRow {
        password: None,
        extra: None,
        port: None,
        is_encrypted: false,
        is_extra_encrypted: false,
        ..second.clone()
    };
    store
        .write_connection(&cleared, WriteMode::Upsert)
        .await
        .unwrap();
    assert_eq!(
        store.connection(Some("a"), "my_db").await.unwrap(),
        Some(cleared)
    );
    let fresh = conn(Some("b"), "new_db", "new");
    store
        .write_connection(&fresh, WriteMode::Upsert)
        .await
        .unwrap();
    assert_eq!(
        store.connection(Some("b"), "new_db").await.unwrap(),
        Some(fresh)
    );

    let v1 = var(None, "k", "one");
    let v2 = var(None, "k", "two");
    assert!(matches!(
        store.write_variable(&v1, WriteMode::Update).await,
        Err(StoreError::NotFound(_))
    ));
    store.write_variable(&v1, WriteMode::Create).await.unwrap();
    assert!(matches!(
        store.write_variable(&v2, WriteMode::Create).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.variable(None, "k").await.unwrap(), Some(v1));
    store.write_variable(&v2, WriteMode::Update).await.unwrap();
    assert_eq!(store.variable(None, "k").await.unwrap(), Some(v2));
    let v3 = var(None, "k", "three");
    store.write_variable(&v3, WriteMode::Upsert).await.unwrap();
    assert_eq!(store.variable(None, "k").await.unwrap(), Some(v3));
}

pub async fn secrets_listings_filter_order_page_and_count(store: &dyn Store) {
    for (tenant, id) in [
        (Some("b"), "b_db"),
        (Some("a"), "z_db"),
        (None, "shared_db"),
        (Some("a"), "a_db"),
        (Some("a"), "my%db"),
        (Some("a"), "myXdb"),
        (Some("c"), "c_db"),
    ] {
        store
            .write_connection(&conn(tenant, id, id), WriteMode::Create)
            .await
            .unwrap();
    }

    // Shared first, then by tenant and id.
    let (rows, total) = store.connections(&all()).await.unwrap();
    assert_eq!(total, 7);
    assert_eq!(
        ids_of_connections(&rows),
        [
            (None, "shared_db"),
            (Some("a"), "a_db"),
            (Some("a"), "my%db"),
            (Some("a"), "myXdb"),
            (Some("a"), "z_db"),
            (Some("b"), "b_db"),
            (Some("c"), "c_db"),
        ]
    );

    let of_a_and_b = SecretQuery {
        tenants: Some(vec!["a".into(), "b".into()]),
        include_shared: false,
        ..all()
    };
    let (rows, total) = store.connections(&of_a_and_b).await.unwrap();
    assert_eq!(total, 5);
    assert!(
        rows.iter()
            .all(|r| matches!(r.tenant.as_deref(), Some("a" | "b")))
    );

    let of_c_and_shared = SecretQuery {
        tenants: Some(vec!["c".into()]),
        include_shared: true,
        ..all()
    };
    let (rows, total) = store.connections(&of_c_and_shared).await.unwrap();
    assert_eq!(total, 2);
    assert_eq!(
        ids_of_connections(&rows),
        [(None, "shared_db"), (Some("c"), "c_db")]
    );

    let only_shared = SecretQuery {
        tenants: Some(vec![]),
        include_shared: true,
        ..all()
    };
    let (rows, _) = store.connections(&only_shared).await.unwrap();
    assert_eq!(ids_of_connections(&rows), [(None, "shared_db")]);

    // `%` and `_` in the pattern are literal; letters match either case.
    let percent = SecretQuery {
        id_pattern: Some("y%D".into()),
        ..all()
    };
    let (rows, total) = store.connections(&percent).await.unwrap();
    assert_eq!(
        (ids_of_connections(&rows), total),
        (vec![(Some("a"), "my%db")], 1)
    );
    let underscore = SecretQuery {
        id_pattern: Some("_db".into()),
        ..all()
    };
    let (_, total) = store.connections(&underscore).await.unwrap();
    assert_eq!(total, 5, "every `x_db`, not `my%db` or `myXdb`");

    // Pages, and the total whatever the page.
    let page = SecretQuery {
        limit: 2,
        offset: 3,
        ..all()
    };
    let (rows, total) = store.connections(&page).await.unwrap();
    assert_eq!(total, 7);
    assert_eq!(
        ids_of_connections(&rows),
        [(Some("a"), "myXdb"), (Some("a"), "z_db")]
    );
    let empty = SecretQuery { limit: 0, ..all() };
    let (rows, total) = store.connections(&empty).await.unwrap();
    assert_eq!((rows.len(), total), (0, 7));
    let past_the_end = SecretQuery {
        offset: 10,
        ..all()
    };
    let (rows, total) = store.connections(&past_the_end).await.unwrap();
    assert_eq!((rows.len(), total), (0, 7));

    for (tenant, key) in [
        (Some("a"), "k2"),
        (None, "k1"),
        (Some("a"), "k1"),
        (Some("b"), "k_1"),
    ] {
        store
            .write_variable(&var(tenant, key, "v"), WriteMode::Create)
            .await
            .unwrap();
    }
    let (rows, total) = store.variables(&all()).await.unwrap();
    assert_eq!(total, 4);
    assert_eq!(
        ids_of_variables(&rows),
        [
            (None, "k1"),
            (Some("a"), "k1"),
            (Some("a"), "k2"),
            (Some("b"), "k_1")
        ]
    );
    let of_a = SecretQuery {
        tenants: Some(vec!["a".into()]),
        include_shared: false,
        id_pattern: Some("K1".into()),
        ..all()
    };
    let (rows, total) = store.variables(&of_a).await.unwrap();
    assert_eq!(
        (ids_of_variables(&rows), total),
        (vec![(Some("a"), "k1")], 1)
    );
    let literal_underscore = SecretQuery {
        id_pattern: Some("k_".into()),
        ..all()
    };
    let (rows, _) = store.variables(&literal_underscore).await.unwrap();
    assert_eq!(ids_of_variables(&rows), [(Some("b"), "k_1")]);

    // An exact id: every tenant's row with that very key, no other key, and case counts.
    let exactly_k1 = SecretQuery {
        id: Some("k1".into()),
        ..all()
    };
    let (rows, total) = store.variables(&exactly_k1).await.unwrap();
    assert_eq!(
        (ids_of_variables(&rows), total),
        (vec![(None, "k1"), (Some("a"), "k1")], 2)
    );
    let exactly_k1_of_a = SecretQuery {
        tenants: Some(vec!["a".into()]),
        include_shared: false,
        ..exactly_k1.clone()
    };
    let (rows, _) = store.variables(&exactly_k1_of_a).await.unwrap();
    assert_eq!(ids_of_variables(&rows), [(Some("a"), "k1")]);
    for other in ["K1", "k", "k_", "%1"] {
        let query = SecretQuery {
            id: Some(other.into()),
            ..all()
        };
        let (rows, total) = store.variables(&query).await.unwrap();
        assert_eq!((rows.len(), total), (0, 0), "{other}");
    }
    let exactly_my_percent_db = SecretQuery {
        id: Some("my%db".into()),
        ..all()
    };
    let (rows, _) = store.connections(&exactly_my_percent_db).await.unwrap();
    assert_eq!(ids_of_connections(&rows), [(Some("a"), "my%db")]);
}

pub async fn secrets_delete_removes_only_the_named_row(store: &dyn Store) {
    store
        .write_connection(&conn(Some("a"), "my_db", "a"), WriteMode::Create)
        .await
        .unwrap();
    store
        .write_connection(&conn(None, "my_db", "shared"), WriteMode::Create)
        .await
        .unwrap();
    assert!(!store.delete_connection(Some("b"), "my_db").await.unwrap());
    assert!(store.delete_connection(Some("a"), "my_db").await.unwrap());
    assert!(!store.delete_connection(Some("a"), "my_db").await.unwrap());
    assert_eq!(store.connection(Some("a"), "my_db").await.unwrap(), None);
    assert!(store.connection(None, "my_db").await.unwrap().is_some());
    assert!(store.delete_connection(None, "my_db").await.unwrap());
    assert_eq!(store.connections(&all()).await.unwrap().1, 0);

    store
        .write_variable(&var(None, "k", "v"), WriteMode::Create)
        .await
        .unwrap();
    store
        .write_variable(&var(Some("a"), "k", "v"), WriteMode::Create)
        .await
        .unwrap();
    assert!(store.delete_variable(None, "k").await.unwrap());
    assert!(!store.delete_variable(None, "k").await.unwrap());
    assert!(store.variable(Some("a"), "k").await.unwrap().is_some());
}

/// Connections and variables for re-encryption: some fields encrypted, some not.
async fn some_encrypted(store: &dyn Store) {
    let mut half = conn(Some("a"), "half", "h");
    half.is_extra_encrypted = false;
    half.extra = Some(r#"{"plain": true}"#.to_owned());
    for row in [
        conn(Some("a"), "my_db", "a"),
        conn(None, "my_db", "s"),
        half,
    ] {
        store
            .write_connection(&row, WriteMode::Create)
            .await
            .unwrap();
    }
    let mut no_password = conn(Some("b"), "no_password", "n");
    no_password.password = None;
    store
        .write_connection(&no_password, WriteMode::Create)
        .await
        .unwrap();
    store
        .write_variable(&var(Some("a"), "token", "sealed-token"), WriteMode::Create)
        .await
        .unwrap();
    let plain = VariableRow {
        is_encrypted: false,
        ..var(None, "greeting", "hello")
    };
    store
        .write_variable(&plain, WriteMode::Create)
        .await
        .unwrap();
}

async fn snapshot(store: &dyn Store) -> (Vec<ConnectionRow>, Vec<VariableRow>) {
    (
        store.connections(&all()).await.unwrap().0,
        store.variables(&all()).await.unwrap().0,
    )
}

pub async fn secrets_reencrypt_rewrites_every_encrypted_field(store: &dyn Store) {
    some_encrypted(store).await;
    let seen = std::sync::Mutex::new(Vec::new());
    let rewritten = store
        .reencrypt(&|field| {
            seen.lock().unwrap().push(field.what.clone());
            Ok(format!("re({})", field.token))
        })
        .await
        .unwrap();
    let mut seen = seen.into_inner().unwrap();
    seen.sort();
    assert_eq!(
        seen,
        [
            "connection half's password (tenant a)",
            "connection my_db's extra (shared)",
            "connection my_db's extra (tenant a)",
            "connection my_db's password (shared)",
            "connection my_db's password (tenant a)",
            "connection no_password's extra (tenant b)",
            "variable token's value (tenant a)",
        ]
    );
    assert_eq!(rewritten, 7);

    let a = store.connection(Some("a"), "my_db").await.unwrap().unwrap();
    assert_eq!(a.password.as_deref(), Some("re(sealed-password-a)"));
    assert_eq!(a.extra.as_deref(), Some("re(sealed-extra-a)"));
    assert_eq!(a.host.as_deref(), Some("a"));
    let half = store.connection(Some("a"), "half").await.unwrap().unwrap();
    assert_eq!(half.password.as_deref(), Some("re(sealed-password-h)"));
    assert_eq!(half.extra.as_deref(), Some(r#"{"plain": true}"#));
    let no_password = store
        .connection(Some("b"), "no_password")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(no_password.password, None);
    let token = store.variable(Some("a"), "token").await.unwrap().unwrap();
    assert_eq!(token.value, "re(sealed-token)");
    assert!(token.is_encrypted);
    let greeting = store.variable(None, "greeting").await.unwrap().unwrap();
    assert_eq!(greeting.value, "hello");
}

pub async fn secrets_reencrypt_is_all_or_nothing(store: &dyn Store) {
    some_encrypted(store).await;
    let before = snapshot(store).await;
    let calls = std::sync::atomic::AtomicUsize::new(0);
    // Fails on the last field met, after every other was rewritten in the transaction.
    let err = store
        .reencrypt(&|field| {
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if n == 6 {
                Err(format!("cannot decrypt {}", field.what))
            } else {
                Ok(format!("re({})", field.token))
            }
        })
        .await
        .unwrap_err();
    assert_eq!(calls.into_inner(), 7);
    assert!(err.to_string().contains("cannot decrypt"), "{err}");
    assert_eq!(snapshot(store).await, before, "nothing changed");

    // The store is usable afterwards, and a later successful run rewrites everything.
    assert_eq!(
        store.reencrypt(&|f| Ok(f.token.to_owned())).await.unwrap(),
        7
    );
    assert_eq!(snapshot(store).await, before);
}

pub async fn secrets_reencrypt_of_nothing_rewrites_nothing(store: &dyn Store) {
    let rewritten = store
        .reencrypt(&|_| Err("must not be called".to_owned()))
        .await
        .unwrap();
    assert_eq!(rewritten, 0);
}
