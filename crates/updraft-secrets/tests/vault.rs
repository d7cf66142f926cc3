//! The [`Vault`] on real stores (a SQLite file, and a PostgreSQL database of its own on the
//! server named by `UPDRAFT_TEST_POSTGRES_URL`, which must be set: these tests never skip):
//! what lands in the database is a Fernet token Python's `cryptography` reads, another key
//! cannot read it, rotation re-encrypts everything or nothing, and one tenant never sees
//! another's rows.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use updraft_secrets::{
    Connection, DatabaseBackend, Keyring, KeyringError, SecretsBackend, SecretsError, Variable,
    Vault,
};
use updraft_store::{
    AdminStore, ConnectionRow, PgStore, SecretQuery, SqliteStore, Store, WriteMode,
};

const SETTING: &str = "core.fernet_key";
const PG_URL_VAR: &str = "UPDRAFT_TEST_POSTGRES_URL";

/// A migrated store, and a way to read its columns with plain SQL.
struct Db {
    store: Arc<dyn Store>,
    raw: Raw,
    _keep: Keep,
}

enum Raw {
    Sqlite(std::path::PathBuf),
    Postgres(Box<PgConnectOptions>),
}

/// What the store lives in, kept until the test ends.
#[allow(dead_code)] // held for its drop
enum Keep {
    Dir(tempfile::TempDir),
    Database(Box<DropDatabase>),
}

impl Db {
    /// The one text column `sql` selects (a single row).
    async fn text(&self, sql: &str) -> Option<String> {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match &self.raw {
            Raw::Sqlite(path) => {
                let options = SqliteConnectOptions::new().filename(path);
                let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
                sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
            }
            Raw::Postgres(options) => {
                let mut conn = PgConnection::connect_with(options).await.unwrap();
                sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
            }
        }
    }

    fn vault(&self, keys: &str) -> Vault {
        Vault::new(self.store.clone(), keyring(keys))
    }
}

async fn sqlite() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("updraft.db");
    let store = SqliteStore::open(&path).await.unwrap();
    store.migrate().await.unwrap();
    Db {
        store: Arc::new(store),
        raw: Raw::Sqlite(path),
        _keep: Keep::Dir(dir),
    }
}

async fn postgres() -> Db {
    let server = match std::env::var(PG_URL_VAR) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "{PG_URL_VAR} is not set: the vault's PostgreSQL tests need a server. Run \
             scripts/test, or set {PG_URL_VAR} to a role that may CREATE DATABASE"
        ),
    };
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "updraft_vault_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let admin = PgConnectOptions::from_str(&server).unwrap();
    let mut conn = PgConnection::connect_with(&admin).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut conn)
        .await
        .unwrap();
    let options = admin.clone().database(&name);
    let store = PgStore::connect_with(options.clone(), &Default::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    Db {
        store: Arc::new(store),
        raw: Raw::Postgres(Box::new(options)),
        _keep: Keep::Database(Box::new(DropDatabase { admin, name })),
    }
}

/// Drops its database (and whatever is still connected to it) when the test ends.
struct DropDatabase {
    admin: PgConnectOptions,
    name: String,
}

impl Drop for DropDatabase {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        // The test's runtime may be shutting down: drop from a runtime of our own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = PgConnection::connect_with(&admin).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

fn keyring(keys: &str) -> Keyring {
    Keyring::parse(keys, SETTING).unwrap()
}

fn my_db(host: &str) -> Connection {
    Connection {
        conn_id: "my_db".into(),
        conn_type: "postgres".into(),
        description: Some("the warehouse".into()),
        host: Some(host.into()),
        schema: Some("analytics".into()),
        login: Some("loader".into()),
        password: Some(format!("pw-of-{host}")),
        port: Some(5432),
        extra: Some(format!(
            r#"{{"sslmode": "require", "token": "tok-of-{host}"}}"#
        )),
    }
}

fn variable(key: &str, value: &str) -> Variable {
    Variable {
        key: key.into(),
        value: value.into(),
        description: None,
    }
}

/// What Python's `cryptography` Fernet makes of `token` with `key`.
fn python_decrypt(key: &str, token: &str) -> String {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys; from cryptography.fernet import Fernet; \
             sys.stdout.write(Fernet(sys.argv[1].encode()).decrypt(sys.argv[2].encode()).decode())",
            key,
            token,
        ])
        .output()
        .expect("python3 runs (with the `cryptography` package)");
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn wrong_key(err: SecretsError) -> (String, String) {
    match err {
        SecretsError::Keyring(KeyringError::WrongKey { what, setting }) => (what, setting),
        other => panic!("expected a wrong-key error, got {other}"),
    }
}

// ---- scenarios ------------------------------------------------------------------------------

async fn secrets_are_fernet_tokens_at_rest(db: Db) {
    let key = Keyring::generate_key();
    let vault = db.vault(&key);
    let conn = my_db("a-host");
    vault
        .write_connection(Some("a"), &conn, WriteMode::Create)
        .await
        .unwrap();
    vault
        .write_variable(
            Some("a"),
            &variable("api_token", "s3cr3t"),
            WriteMode::Create,
        )
        .await
        .unwrap();

    let stored_password = db
        .text("SELECT password FROM connection WHERE tenant = 'a' AND conn_id = 'my_db'")
        .await
        .unwrap();
    let stored_extra = db
        .text("SELECT extra FROM connection WHERE tenant = 'a' AND conn_id = 'my_db'")
        .await
        .unwrap();
    let stored_value = db
        .text("SELECT val FROM variable WHERE tenant = 'a' AND key = 'api_token'")
        .await
        .unwrap();
    for (stored, plain) in [
        (&stored_password, conn.password.as_deref().unwrap()),
        (&stored_extra, conn.extra.as_deref().unwrap()),
        (&stored_value, "s3cr3t"),
    ] {
        assert!(!stored.contains(plain), "{stored} holds {plain}");
        assert!(stored.starts_with("gAAAAA"), "not a Fernet token: {stored}");
        assert_eq!(python_decrypt(&key, stored), plain);
    }
    // What is not secret stays readable.
    let host = db
        .text("SELECT host FROM connection WHERE conn_id = 'my_db'")
        .await;
    assert_eq!(host.as_deref(), Some("a-host"));

    let raw = db
        .store
        .connection(Some("a"), "my_db")
        .await
        .unwrap()
        .unwrap();
    assert!(raw.is_encrypted && raw.is_extra_encrypted);
    assert_eq!(
        vault.connection(Some("a"), "my_db").await.unwrap(),
        Some(conn.clone())
    );
    assert_eq!(
        vault.variable(Some("a"), "api_token").await.unwrap(),
        Some(variable("api_token", "s3cr3t"))
    );
    let (listed, total) = vault
        .connections(&SecretQuery {
            include_shared: true,
            limit: 10,
            ..SecretQuery::default()
        })
        .await
        .unwrap();
    assert_eq!((listed, total), (vec![(Some("a".to_owned()), conn)], 1));

    // No password and no extra: nothing to encrypt, nothing flagged.
    let bare = Connection {
        conn_id: "http".into(),
        conn_type: "http".into(),
        ..Connection::default()
    };
    vault
        .write_connection(None, &bare, WriteMode::Create)
        .await
        .unwrap();
    let row = db.store.connection(None, "http").await.unwrap().unwrap();
    assert!(!row.is_encrypted && !row.is_extra_encrypted);
    assert_eq!(vault.connection(None, "http").await.unwrap(), Some(bare));
}

async fn another_key_cannot_read_and_the_error_names_the_setting(db: Db) {
    let vault = db.vault(&Keyring::generate_key());
    vault
        .write_connection(Some("a"), &my_db("a-host"), WriteMode::Create)
        .await
        .unwrap();
    vault
        .write_variable(None, &variable("token", "t"), WriteMode::Create)
        .await
        .unwrap();

    let other = db.vault(&Keyring::generate_key());
    let err = other.connection(Some("a"), "my_db").await.unwrap_err();
    let message = err.to_string();
    assert_eq!(
        wrong_key(err),
        (
            "connection my_db's password (tenant a)".to_owned(),
            SETTING.to_owned()
        )
    );
    assert!(message.contains(SETTING), "{message}");
    let (what, _) = wrong_key(other.variable(None, "token").await.unwrap_err());
    assert_eq!(what, "variable token's value (shared)");
    let everything = SecretQuery {
        limit: 10,
        ..SecretQuery::default()
    };
    let (what, _) = wrong_key(other.variables(&everything).await.unwrap_err());
    assert_eq!(what, "variable token's value (shared)");
}

async fn rows_written_unencrypted_are_read_as_they_are(db: Db) {
    let plain = ConnectionRow {
        tenant: Some("a".into()),
        conn_id: "legacy".into(),
        conn_type: "mysql".into(),
        password: Some("plain-pw".into()),
        extra: Some(r#"{"a": 1}"#.into()),
        ..ConnectionRow::default()
    };
    db.store
        .write_connection(&plain, WriteMode::Create)
        .await
        .unwrap();
    let vault = db.vault(&Keyring::generate_key());
    let read = vault
        .connection(Some("a"), "legacy")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.password.as_deref(), Some("plain-pw"));
    assert_eq!(read.extra.as_deref(), Some(r#"{"a": 1}"#));
    // Rotation leaves them alone; the next write through the vault encrypts them.
    assert_eq!(vault.rotate().await.unwrap(), 0);
    vault
        .write_connection(Some("a"), &read, WriteMode::Update)
        .await
        .unwrap();
    let row = db
        .store
        .connection(Some("a"), "legacy")
        .await
        .unwrap()
        .unwrap();
    assert!(row.is_encrypted && row.password.as_deref() != Some("plain-pw"));
}

async fn rotation_to_a_new_key_lets_the_old_one_go(db: Db) {
    let old = Keyring::generate_key();
    let new = Keyring::generate_key();
    let before = db.vault(&old);
    before
        .write_connection(Some("a"), &my_db("a-host"), WriteMode::Create)
        .await
        .unwrap();
    before
        .write_connection(None, &my_db("shared-host"), WriteMode::Create)
        .await
        .unwrap();
    before
        .write_variable(Some("b"), &variable("secret_key", "v"), WriteMode::Create)
        .await
        .unwrap();

    let both = db.vault(&format!("{new},{old}"));
    assert_eq!(
        both.rotate().await.unwrap(),
        5,
        "2 passwords, 2 extras, 1 value"
    );

    let after = db.vault(&new);
    assert_eq!(
        after.connection(Some("a"), "my_db").await.unwrap(),
        Some(my_db("a-host"))
    );
    assert_eq!(
        after.connection(None, "my_db").await.unwrap(),
        Some(my_db("shared-host"))
    );
    assert_eq!(
        after.variable(Some("b"), "secret_key").await.unwrap(),
        Some(variable("secret_key", "v"))
    );
    let token = db
        .text("SELECT val FROM variable WHERE key = 'secret_key'")
        .await
        .unwrap();
    assert_eq!(python_decrypt(&new, &token), "v");
    // The old key alone no longer reads what was rotated.
    assert!(db.vault(&old).connection(Some("a"), "my_db").await.is_err());
}

async fn rotation_with_a_missing_key_changes_nothing(db: Db) {
    let first = Keyring::generate_key();
    let lost = Keyring::generate_key();
    db.vault(&first)
        .write_variable(Some("a"), &variable("k1", "one"), WriteMode::Create)
        .await
        .unwrap();
    db.vault(&lost)
        .write_variable(Some("a"), &variable("k2", "two"), WriteMode::Create)
        .await
        .unwrap();
    let token_of = |key: &'static str| {
        let db = &db;
        async move {
            db.text(&format!("SELECT val FROM variable WHERE key = '{key}'"))
                .await
                .unwrap()
        }
    };
    let before = (token_of("k1").await, token_of("k2").await);

    let new = Keyring::generate_key();
    let err = db
        .vault(&format!("{new},{first}"))
        .rotate()
        .await
        .unwrap_err();
    let (what, setting) = wrong_key(err);
    assert_eq!(
        (what.as_str(), setting.as_str()),
        ("variable k2's value (tenant a)", SETTING)
    );
    assert_eq!((token_of("k1").await, token_of("k2").await), before);
    assert_eq!(
        db.vault(&first)
            .variable(Some("a"), "k1")
            .await
            .unwrap()
            .unwrap()
            .value,
        "one"
    );
}

async fn a_tenant_never_sees_another_tenants_rows(db: Db) {
    let vault = db.vault(&Keyring::generate_key());
    vault
        .write_connection(Some("a"), &my_db("a-host"), WriteMode::Create)
        .await
        .unwrap();
    vault
        .write_variable(Some("a"), &variable("only_a", "a-value"), WriteMode::Create)
        .await
        .unwrap();
    let backend = DatabaseBackend::new(vault.clone());

    assert_eq!(backend.connection("b", "my_db").await.unwrap(), None);
    assert_eq!(backend.variable("b", "only_a").await.unwrap(), None);
    assert_eq!(
        backend.connection("a", "my_db").await.unwrap(),
        Some(my_db("a-host"))
    );

    // A shared row with the same id: B falls back to it, A keeps its own.
    vault
        .write_connection(None, &my_db("shared-host"), WriteMode::Create)
        .await
        .unwrap();
    vault
        .write_variable(None, &variable("only_a", "shared-value"), WriteMode::Create)
        .await
        .unwrap();
    assert_eq!(
        backend.connection("b", "my_db").await.unwrap(),
        Some(my_db("shared-host"))
    );
    assert_eq!(
        backend.variable("b", "only_a").await.unwrap().as_deref(),
        Some("shared-value")
    );
    assert_eq!(
        backend.connection("a", "my_db").await.unwrap(),
        Some(my_db("a-host"))
    );
    assert_eq!(
        backend.variable("a", "only_a").await.unwrap().as_deref(),
        Some("a-value")
    );
    // B's listing holds only B's and the shared rows.
    let (listed, _) = vault
        .connections(&SecretQuery {
            tenants: Some(vec!["b".into()]),
            include_shared: true,
            limit: 10,
            ..SecretQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(listed, vec![(None, my_db("shared-host"))]);
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::postgres().await).await;
                }
            )*
        }
    };
}

on_both!(
    secrets_are_fernet_tokens_at_rest,
    another_key_cannot_read_and_the_error_names_the_setting,
    rows_written_unencrypted_are_read_as_they_are,
    rotation_to_a_new_key_lets_the_old_one_go,
    rotation_with_a_missing_key_changes_nothing,
    a_tenant_never_sees_another_tenants_rows,
);
