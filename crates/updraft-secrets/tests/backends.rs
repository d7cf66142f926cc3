//! The environment and files backends, and the chain that asks backends in order with a
//! cache.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use updraft_secrets::{
    Connection, EnvBackend, FilesBackend, Secrets, SecretsBackend, SecretsError,
};

fn env(vars: &[(&str, &str)]) -> EnvBackend {
    EnvBackend::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

#[tokio::test]
async fn the_environment_holds_uris_json_and_variables() {
    let backend = env(&[
        ("AIRFLOW_CONN_MY_DB", "postgresql://u:p%40ss@db:5432/sales"),
        (
            "AIRFLOW_CONN_API",
            r#"{"conn_type": "http", "host": "api.example"}"#,
        ),
        ("AIRFLOW_VAR_REGION", "eu-west-1"),
        ("PATH", "/usr/bin"),
    ]);
    let db = backend.connection("t1", "my_db").await.unwrap().unwrap();
    assert_eq!(
        (db.conn_id.as_str(), db.conn_type.as_str()),
        ("my_db", "postgres")
    );
    assert_eq!(db.password.as_deref(), Some("p@ss"));
    let api = backend.connection("t2", "api").await.unwrap().unwrap();
    assert_eq!(api.host.as_deref(), Some("api.example"));
    assert_eq!(
        backend.variable("t1", "region").await.unwrap().as_deref(),
        Some("eu-west-1")
    );
    assert_eq!(backend.variable("t1", "missing").await.unwrap(), None);
    assert_eq!(backend.connection("t1", "missing").await.unwrap(), None);
}

#[tokio::test]
async fn updraft_variables_win_over_airflow_ones() {
    let backend = env(&[
        ("AIRFLOW_CONN_DB", "mysql://a"),
        ("UPDRAFT_CONN_DB", "mysql://b"),
        ("AIRFLOW_VAR_K", "airflow"),
        ("UPDRAFT_VAR_K", "updraft"),
    ]);
    let db = backend.connection("t", "db").await.unwrap().unwrap();
    assert_eq!(db.host.as_deref(), Some("b"));
    assert_eq!(
        backend.variable("t", "k").await.unwrap().as_deref(),
        Some("updraft")
    );
}

#[tokio::test]
async fn a_bad_environment_connection_names_the_variable() {
    let backend = env(&[("UPDRAFT_CONN_BAD", "http://h:port/x")]);
    let err = backend
        .connection("t", "bad")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("environment variable UPDRAFT_CONN_BAD"),
        "{err}"
    );
    assert!(err.contains("port \"port\" is not a number"), "{err}");
}

fn write(root: &std::path::Path, relative: &str, text: &str) {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn files_of_a_tenant_win_over_shared_ones_and_stay_its_own() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "connections/db", "postgres://shared-host/db\n");
    write(
        dir.path(),
        "tenants/a/connections/db",
        "postgres://a-host/db\n",
    );
    write(dir.path(), "variables/token", "shared-token\n");
    write(dir.path(), "tenants/a/variables/token", "a-token\r\n");
    write(dir.path(), "tenants/a/variables/only_a", "a-only\n\n");
    let files = FilesBackend::new(dir.path());

    let a = files.connection("a", "db").await.unwrap().unwrap();
    assert_eq!(a.host.as_deref(), Some("a-host"));
    let b = files.connection("b", "db").await.unwrap().unwrap();
    assert_eq!(b.host.as_deref(), Some("shared-host"));
    assert_eq!(
        files.variable("a", "token").await.unwrap().as_deref(),
        Some("a-token")
    );
    assert_eq!(
        files.variable("b", "token").await.unwrap().as_deref(),
        Some("shared-token")
    );
    assert_eq!(
        files.variable("a", "only_a").await.unwrap().as_deref(),
        Some("a-only\n")
    );
    assert_eq!(files.variable("b", "only_a").await.unwrap(), None);
}

#[tokio::test]
async fn names_that_could_leave_the_directory_are_never_paths() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "tenants/a/variables/secret", "a-secret");
    write(dir.path(), "secret", "outside");
    write(dir.path(), "variables/x/y", "nested");
    let files = FilesBackend::new(dir.path());
    for (tenant, key) in [
        ("b", "../tenants/a/variables/secret"),
        ("b/../a", "secret"),
        ("..", "secret"),
        ("b", ".."),
        ("b", "../secret"),
        ("b", "x/y"),
        ("a\0", "secret"),
        ("a", "secret\0"),
        ("", "secret"),
        ("b", ""),
        ("b", "."),
    ] {
        assert_eq!(
            files.variable(tenant, key).await.unwrap(),
            None,
            "{tenant:?} {key:?}"
        );
        assert_eq!(
            files.connection(tenant, key).await.unwrap(),
            None,
            "{tenant:?} {key:?}"
        );
    }
    assert_eq!(
        files.variable("a", "secret").await.unwrap().as_deref(),
        Some("a-secret")
    );
}

#[tokio::test]
async fn file_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "connections/bad", "http://h:99999/x\n");
    std::fs::create_dir_all(dir.path().join("variables/a_dir")).unwrap();
    write(dir.path(), "variables/binary", "");
    std::fs::write(dir.path().join("variables/binary"), [0xff, 0xfe]).unwrap();
    let files = FilesBackend::new(dir.path());

    let err = files.connection("t", "bad").await.unwrap_err().to_string();
    let path = dir.path().join("connections/bad");
    assert!(err.contains(&format!("file {}", path.display())), "{err}");
    assert!(err.contains("out of range"), "{err}");
    let err = files.variable("t", "a_dir").await.unwrap_err().to_string();
    assert!(err.contains("variables/a_dir"), "{err}");
    let err = files.variable("t", "binary").await.unwrap_err().to_string();
    assert!(
        err.contains("variables/binary") && err.contains("UTF-8"),
        "{err}"
    );
}

/// A backend that counts the questions it is asked and answers from a per-tenant table.
struct Counting {
    name: String,
    asked: AtomicUsize,
    variables: Mutex<HashMap<(String, String), String>>,
    fail: bool,
}

impl Counting {
    fn new(name: &str, values: &[(&str, &str, &str)]) -> Arc<Counting> {
        Arc::new(Counting {
            name: name.to_owned(),
            asked: AtomicUsize::new(0),
            variables: Mutex::new(
                values
                    .iter()
                    .map(|(t, k, v)| ((t.to_string(), k.to_string()), v.to_string()))
                    .collect(),
            ),
            fail: false,
        })
    }

    fn failing(name: &str) -> Arc<Counting> {
        Arc::new(Counting {
            fail: true,
            ..Arc::into_inner(Counting::new(name, &[])).unwrap()
        })
    }

    fn asked(&self) -> usize {
        self.asked.load(Ordering::SeqCst)
    }

    fn set(&self, tenant: &str, key: &str, value: &str) {
        self.variables
            .lock()
            .unwrap()
            .insert((tenant.into(), key.into()), value.into());
    }

    fn lookup(&self, tenant: &str, key: &str) -> Result<Option<String>, SecretsError> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        if self.fail {
            return Err(SecretsError::Backend {
                backend: self.name.clone(),
                message: "unreachable".into(),
            });
        }
        Ok(self
            .variables
            .lock()
            .unwrap()
            .get(&(tenant.to_owned(), key.to_owned()))
            .cloned())
    }
}

#[async_trait]
impl SecretsBackend for Counting {
    fn name(&self) -> &str {
        &self.name
    }

    async fn connection(
        &self,
        tenant: &str,
        conn_id: &str,
    ) -> Result<Option<Connection>, SecretsError> {
        Ok(self
            .lookup(tenant, conn_id)?
            .map(|uri| Connection::from_uri(conn_id, &uri).unwrap()))
    }

    async fn variable(&self, tenant: &str, key: &str) -> Result<Option<String>, SecretsError> {
        self.lookup(tenant, key)
    }
}

fn chain(backends: &[&Arc<Counting>], ttl: Duration) -> Secrets {
    Secrets::new(
        backends
            .iter()
            .map(|b| Arc::clone(b) as Arc<dyn SecretsBackend>)
            .collect(),
        ttl,
    )
}

const LONG: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn the_first_backend_that_holds_a_name_answers() {
    let first = Counting::new("first", &[("t", "k", "from-first")]);
    let second = Counting::new("second", &[("t", "k", "from-second"), ("t", "only2", "v2")]);
    let secrets = chain(&[&first, &second], Duration::ZERO);
    assert_eq!(secrets.backend_names(), ["first", "second"]);

    assert_eq!(
        secrets.variable("t", "k").await.unwrap().as_deref(),
        Some("from-first")
    );
    assert_eq!((first.asked(), second.asked()), (1, 0));
    assert_eq!(
        secrets.variable("t", "only2").await.unwrap().as_deref(),
        Some("v2")
    );
    assert_eq!((first.asked(), second.asked()), (2, 1));
    assert_eq!(secrets.variable("t", "none").await.unwrap(), None);
    assert_eq!((first.asked(), second.asked()), (3, 2));
}

#[tokio::test]
async fn answers_found_or_missing_are_cached_for_the_ttl() {
    let first = Counting::new("first", &[]);
    let second = Counting::new("second", &[("t", "k", "v"), ("t", "db", "mysql://h")]);
    let secrets = chain(&[&first, &second], LONG);
    for _ in 0..3 {
        assert_eq!(
            secrets.variable("t", "k").await.unwrap().as_deref(),
            Some("v")
        );
        assert_eq!(secrets.variable("t", "none").await.unwrap(), None);
        let conn = secrets.connection("t", "db").await.unwrap().unwrap();
        assert_eq!(conn.host.as_deref(), Some("h"));
    }
    assert_eq!((first.asked(), second.asked()), (3, 3));
    // A value that appears later in the first backend is not seen until the entry expires.
    first.set("t", "k", "new");
    assert_eq!(
        secrets.variable("t", "k").await.unwrap().as_deref(),
        Some("v")
    );
}

#[tokio::test]
async fn a_cache_entry_expires_after_the_ttl() {
    let backend = Counting::new("files", &[("t", "k", "old")]);
    let secrets = chain(&[&backend], Duration::from_millis(50));
    assert_eq!(
        secrets.variable("t", "k").await.unwrap().as_deref(),
        Some("old")
    );
    backend.set("t", "k", "new");
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(
        secrets.variable("t", "k").await.unwrap().as_deref(),
        Some("new")
    );
    assert_eq!(backend.asked(), 2);
}

#[tokio::test]
async fn the_database_and_a_zero_ttl_are_never_cached() {
    let database = Counting::new("database", &[("t", "k", "v")]);
    let secrets = chain(&[&database], LONG);
    for _ in 0..3 {
        secrets.variable("t", "k").await.unwrap();
    }
    assert_eq!(database.asked(), 3);
    let files = Counting::new("files", &[("t", "k", "v")]);
    let secrets = chain(&[&files], Duration::ZERO);
    for _ in 0..3 {
        secrets.variable("t", "k").await.unwrap();
    }
    assert_eq!(files.asked(), 3);
}

#[tokio::test]
async fn a_backend_error_is_returned_and_not_cached() {
    let broken = Counting::failing("kubernetes");
    let later = Counting::new("database", &[("t", "k", "v")]);
    let secrets = chain(&[&broken, &later], LONG);
    for _ in 0..2 {
        let err = secrets.variable("t", "k").await.unwrap_err().to_string();
        assert!(
            err.contains("kubernetes") && err.contains("unreachable"),
            "{err}"
        );
    }
    assert_eq!((broken.asked(), later.asked()), (2, 0));
}

#[tokio::test]
async fn one_tenant_never_gets_another_tenants_value() {
    let backend = Counting::new(
        "files",
        &[("a", "token", "a-value"), ("a", "db", "mysql://a-host")],
    );
    let secrets = chain(&[&backend], LONG);
    assert_eq!(
        secrets.variable("a", "token").await.unwrap().as_deref(),
        Some("a-value")
    );
    assert!(secrets.connection("a", "db").await.unwrap().is_some());
    assert_eq!(secrets.variable("b", "token").await.unwrap(), None);
    assert_eq!(secrets.connection("b", "db").await.unwrap(), None);
    backend.set("b", "token", "b-value");
    // B's missing answer was cached; A's value never served to B.
    assert_eq!(secrets.variable("b", "token").await.unwrap(), None);
    assert_eq!(
        secrets.variable("a", "token").await.unwrap().as_deref(),
        Some("a-value")
    );
}

#[tokio::test]
async fn secret_values_found_are_masked_in_updraft_s_own_text() {
    let backend = Counting::new(
        "files",
        &[
            ("t", "api_token", "tok-9f8e7d"),
            ("t", "db", "mysql://u:pw-5a4b3c@h"),
            ("t", "plain", "visible-value"),
        ],
    );
    let secrets = chain(&[&backend], Duration::ZERO);
    secrets.variable("t", "api_token").await.unwrap();
    secrets.variable("t", "plain").await.unwrap();
    secrets.connection("t", "db").await.unwrap();
    assert_eq!(
        updraft_secrets::mask::mask_global("tok-9f8e7d pw-5a4b3c visible-value"),
        "*** *** visible-value"
    );
}
