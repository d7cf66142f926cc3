//! `updraft connections ...`, the Fernet key settings and `rotate-fernet-key`, through the
//! binary: round trips, Airflow's import and export formats, tenants kept apart, the key
//! errors, standalone's generated key, and a rotation while a scheduler runs.

mod common;
#[path = "common/pg.rs"]
mod pg;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{Home, wait_until};
use serde_json::Value;

/// A Fernet key in Airflow's format, from the binary itself.
fn new_key(home: &Home) -> String {
    home.ok(&["config", "generate-fernet-key"])
        .stdout
        .trim()
        .to_string()
}

/// A home with a Fernet key in `UPDRAFT__CORE__FERNET_KEY`.
fn keyed_home() -> Home {
    let mut home = Home::new();
    let key = new_key(&home);
    home.set_env("UPDRAFT__CORE__FERNET_KEY", &key);
    home
}

/// The audit log's `event tenant` pairs and every `extra`, oldest first, from the SQLite
/// database.
fn audit_log(home: &Home) -> (String, String) {
    let db = home.path().join("updraft.db");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        let (events, extras): (String, String) = sqlx::query_as(
            "SELECT COALESCE(group_concat(event || ' ' || COALESCE(tenant, '-'), ', '), ''), \
             COALESCE(group_concat(COALESCE(extra, ''), ' '), '') \
             FROM (SELECT * FROM event_log ORDER BY id)",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        pool.close().await;
        (events, extras)
    })
}

/// Whether `text` is anywhere in the database's files, in the clear.
fn stored_in_the_clear(home: &Home, text: &str) -> bool {
    ["updraft.db", "updraft.db-wal"].iter().any(|name| {
        std::fs::read(home.path().join(name))
            .map(|bytes| bytes.windows(text.len()).any(|w| w == text.as_bytes()))
            .unwrap_or(false)
    })
}

fn rows(value: Value) -> Vec<Value> {
    value.as_array().cloned().unwrap_or_default()
}

const PG_URI: &str = "postgres://app:s3cret-pass@db.example.com:5432/shop?sslmode=require";

#[test]
fn add_get_list_delete_round_trip_with_secrets_masked() {
    let home = keyed_home();
    home.ok(&["connections", "add", "my_db", "--conn-uri", PG_URI]);
    home.ok(&[
        "connections",
        "add",
        "api",
        "--conn-type",
        "http",
        "--conn-host",
        "api.example.com",
        "--conn-login",
        "bot",
        "--conn-password",
        "hunter2-long",
        "--conn-port",
        "8443",
        "--conn-extra",
        r#"{"api_key": "k-123456", "region": "eu"}"#,
        "--conn-description",
        "the API",
    ]);

    let got = home.json(&["connections", "get", "my_db"]);
    assert_eq!(got["conn_type"], "postgres");
    assert_eq!(got["host"], "db.example.com");
    assert_eq!(got["login"], "app");
    assert_eq!(got["port"], 5432);
    assert_eq!(got["schema"], "shop");
    assert_eq!(got["password"], "***");
    assert_eq!(got["tenant"], "default");

    let api = home.json(&["connections", "get", "api"]);
    assert_eq!(api["extra"]["api_key"], "***");
    assert_eq!(api["extra"]["region"], "eu");
    assert_eq!(api["description"], "the API");

    let listed = home.ok(&["connections", "list"]);
    assert!(!listed.stdout.contains("s3cret-pass"), "{listed}");
    assert!(!listed.stdout.contains("k-123456"), "{listed}");
    let ids: Vec<Value> = rows(home.json(&["connections", "list"]))
        .iter()
        .map(|c| c["conn_id"].clone())
        .collect();
    assert_eq!(ids, ["api", "my_db"]);

    let again = home.fails(&["connections", "add", "my_db", "--conn-uri", PG_URI]);
    assert!(again.stderr.contains("already exists"), "{again}");

    home.ok(&["connections", "delete", "my_db"]);
    home.fails(&["connections", "get", "my_db"]);
    let missing = home.fails(&["connections", "delete", "my_db"]);
    assert!(missing.stderr.contains("my_db"), "{missing}");

    // The host is stored as is, the password and the extra encrypted.
    assert!(stored_in_the_clear(&home, "api.example.com"));
    assert!(!stored_in_the_clear(&home, "hunter2-long"));
    assert!(!stored_in_the_clear(&home, "k-123456"));
    let (events, extras) = audit_log(&home);
    assert_eq!(
        events,
        "cli_connections_add default, cli_connections_add default, cli_connections_delete default"
    );
    assert!(
        !extras.contains("s3cret-pass") && !extras.contains("hunter2-long"),
        "{extras}"
    );
}

#[test]
fn export_and_import_in_every_format_keep_every_field() {
    let home = keyed_home();
    home.ok(&["connections", "add", "my_db", "--conn-uri", PG_URI]);
    home.ok(&[
        "connections",
        "add",
        "api",
        "--conn-json",
        r#"{"conn_type": "http", "host": "api.example.com", "login": "bot", "password": "p@ss/word:1", "extra": {"token": "t-0987654", "retries": 3}}"#,
    ]);
    let original = rows(home.json(&["connections", "list"]));
    for name in ["out.json", "out.yaml", "out.env"] {
        let file = home.path().join(name);
        let file = file.to_str().unwrap();
        home.ok(&["connections", "export", file]);
        let text = std::fs::read_to_string(file).unwrap();
        // The export holds the secrets in the clear, and only its owner may read it.
        assert!(text.contains("t-0987654"), "{name}: {text}");
        let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name}");

        let other = keyed_home();
        other.ok(&["connections", "import", file]);
        assert_eq!(
            rows(other.json(&["connections", "list"])),
            original,
            "{name}: {text}"
        );
        let exported_again = other.path().join(name);
        other.ok(&["connections", "export", exported_again.to_str().unwrap()]);
        let again = std::fs::read_to_string(&exported_again).unwrap();
        assert_eq!(again, text, "{name}");
    }
    // The JSON file is Airflow's map of conn_id to fields.
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(home.path().join("out.json")).unwrap())
            .unwrap();
    assert_eq!(json["my_db"]["password"], "s3cret-pass");
    assert_eq!(json["my_db"]["host"], "db.example.com");
    assert_eq!(json["api"]["password"], "p@ss/word:1");
    // The .env file is Airflow's `ID=URI` lines.
    let env = std::fs::read_to_string(home.path().join("out.env")).unwrap();
    assert!(
        env.lines()
            .any(|l| l.starts_with("my_db=postgres://app:s3cret-pass@db.example.com:5432/shop")),
        "{env}"
    );
}

#[test]
fn import_skips_existing_connections_unless_overwrite() {
    let home = keyed_home();
    home.ok(&["connections", "add", "my_db", "--conn-uri", PG_URI]);
    let file = home.path().join("conns.env");
    std::fs::write(
        &file,
        "# Airflow's .env format\n\nmy_db=mysql://other:pw-other1@mysql.example.com/x\nnew_one=http://h.example.com\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let first = home.ok(&["connections", "import", file]);
    assert!(first.stdout.contains("already exists"), "{first}");
    assert_eq!(
        home.json(&["connections", "get", "my_db"])["conn_type"],
        "postgres"
    );
    assert_eq!(
        home.json(&["connections", "get", "new_one"])["host"],
        "h.example.com"
    );
    home.ok(&["connections", "import", file, "--overwrite"]);
    assert_eq!(
        home.json(&["connections", "get", "my_db"])["conn_type"],
        "mysql"
    );

    let bad = home.path().join("bad.env");
    std::fs::write(&bad, "ok=http://h\nno equals sign here\n").unwrap();
    let err = home.fails(&["connections", "import", bad.to_str().unwrap()]);
    assert!(err.stderr.contains("line 2"), "{err}");
}

#[test]
fn a_tenants_connections_are_invisible_to_another_tenant() {
    let home = keyed_home();
    home.ok(&[
        "connections",
        "add",
        "a_db",
        "--conn-uri",
        PG_URI,
        "--tenant",
        "a",
    ]);
    home.ok(&[
        "connections",
        "add",
        "everyone",
        "--conn-uri",
        "http://shared.example.com",
        "--shared",
    ]);
    assert_eq!(
        home.json(&["connections", "get", "a_db", "--tenant", "a"])["host"],
        "db.example.com"
    );
    let refused = home.fails(&["connections", "get", "a_db", "--tenant", "b"]);
    assert!(refused.stderr.contains("not found"), "{refused}");
    home.fails(&["connections", "get", "a_db"]);
    let b_ids: Vec<Value> = rows(home.json(&["connections", "list", "--tenant", "b"]))
        .iter()
        .map(|c| c["conn_id"].clone())
        .collect();
    assert_eq!(b_ids, ["everyone"]);
    // Another tenant cannot delete it either, nor does its export hold it.
    home.fails(&["connections", "delete", "a_db", "--tenant", "b"]);
    let out = home.path().join("b.json");
    home.ok(&[
        "connections",
        "export",
        out.to_str().unwrap(),
        "--tenant",
        "b",
    ]);
    assert!(!std::fs::read_to_string(&out).unwrap().contains("a_db"));
    // The shared one is seen by every tenant, as its own.
    assert_eq!(
        home.json(&["connections", "get", "everyone", "--tenant", "b"])["tenant"],
        "*"
    );
    home.ok(&["connections", "delete", "a_db", "--tenant", "a"]);
}

#[test]
fn without_a_key_or_with_a_wrong_one_the_error_names_core_fernet_key() {
    let mut home = Home::new();
    let none = home.fails(&["connections", "add", "my_db", "--conn-uri", PG_URI]);
    assert!(none.stderr.contains("core.fernet_key"), "{none}");

    let key = new_key(&home);
    home.set_env("UPDRAFT__CORE__FERNET_KEY", &key);
    home.ok(&["connections", "add", "my_db", "--conn-uri", PG_URI]);
    let other = new_key(&home);
    home.set_env("UPDRAFT__CORE__FERNET_KEY", &other);
    let wrong = home.fails(&["connections", "get", "my_db"]);
    assert!(wrong.stderr.contains("core.fernet_key"), "{wrong}");
    assert!(!wrong.stderr.contains("s3cret-pass"), "{wrong}");

    home.set_env("UPDRAFT__CORE__FERNET_KEY", "not-a-key");
    let bad = home.fails(&["connections", "list"]);
    assert!(bad.stderr.contains("core.fernet_key"), "{bad}");
}

#[test]
fn airflows_fernet_key_variable_is_accepted() {
    let setup = Home::new();
    let key = new_key(&setup);
    let home = Home::new().with_env("AIRFLOW__CORE__FERNET_KEY", &key);
    home.ok(&["connections", "add", "my_db", "--conn-uri", PG_URI]);
    assert_eq!(home.json(&["connections", "get", "my_db"])["login"], "app");
}

#[test]
fn a_key_file_holds_the_keys_and_an_unreadable_one_is_named() {
    let home = Home::new().with_env("UPDRAFT__CORE__FERNET_KEY_FILE", "keys/fernet");
    let missing = home.fails(&["connections", "list"]);
    assert!(missing.stderr.contains("core.fernet_key_file"), "{missing}");
    assert!(missing.stderr.contains("keys/fernet"), "{missing}");

    std::fs::create_dir_all(home.path().join("keys")).unwrap();
    let key = new_key(&home);
    // As a mounted Secret holds it: with a trailing newline.
    std::fs::write(home.path().join("keys/fernet"), format!("{key}\n")).unwrap();
    home.ok(&["connections", "add", "my_db", "--conn-uri", PG_URI]);
    // The same database read with the key given directly.
    let database = format!("sqlite://{}", home.path().join("updraft.db").display());
    let same_key = Home::new()
        .with_env("UPDRAFT__CORE__FERNET_KEY", &key)
        .with_env("UPDRAFT__DATABASE__URL", &database);
    assert_eq!(
        same_key.json(&["connections", "get", "my_db"])["login"],
        "app"
    );
}

#[test]
fn standalone_generates_a_key_once_that_later_commands_use() {
    let home = Home::new();
    let key_file = home.path().join("fernet_key");
    let first_key = {
        let mut service = home.start_standalone();
        let key = wait_until("the generated key", common::DEFAULT_TIMEOUT, || {
            std::fs::read_to_string(&key_file)
                .ok()
                .filter(|k| !k.is_empty())
        });
        service.terminate();
        service.wait_exit(common::DEFAULT_TIMEOUT);
        key
    };
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    home.ok(&["connections", "add", "my_db", "--conn-uri", PG_URI]);
    {
        let mut service = home.start_standalone();
        wait_until("standalone to run", common::DEFAULT_TIMEOUT, || {
            service.output().contains("scheduler running").then_some(())
        });
        service.terminate();
        service.wait_exit(common::DEFAULT_TIMEOUT);
    }
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), first_key);
    assert_eq!(home.json(&["connections", "get", "my_db"])["login"], "app");
}

/// Writes `keys` to the key file the scheduler and the commands read.
fn write_keys(home: &Home, keys: &[&str]) {
    let path = home.path().join("fernet_keys");
    let partial = home.path().join("fernet_keys.partial");
    std::fs::write(&partial, format!("{}\n", keys.join(","))).unwrap();
    std::fs::rename(partial, path).unwrap();
}

fn run_and_read_password(home: &Home, out: &Path) -> String {
    let _ = std::fs::remove_file(out);
    let run_id = home.trigger("uses_conn", None);
    assert_eq!(home.wait_run_finished("uses_conn", &run_id), "success");
    std::fs::read_to_string(out).unwrap().trim().to_string()
}

#[test]
fn rotation_with_a_live_scheduler_keeps_every_run_reading_the_password() {
    let home = Home::new().with_env("UPDRAFT__CORE__FERNET_KEY_FILE", "fernet_keys");
    let old = new_key(&home);
    let new = new_key(&home);
    write_keys(&home, &[&old]);
    home.ok(&["connections", "add", "my_db", "--conn-uri", PG_URI]);
    let out = home.path().join("password.txt");
    home.write_dag(
        "uses_conn.yaml",
        &format!(
            "dag_id: uses_conn\ntasks:\n  - task_id: read\n    bash: printf '%s' {{{{ conn.my_db.password | sh }}}} > {}\n",
            out.display()
        ),
    );
    let _scheduler = home.start_scheduler();
    home.wait_dag_listed("uses_conn");
    assert_eq!(run_and_read_password(&home, &out), "s3cret-pass");

    write_keys(&home, &[&new, &old]);
    let rotated = home.ok(&["rotate-fernet-key"]);
    assert!(
        rotated.stdout.contains("Re-encrypted 2 values"),
        "{rotated}"
    );
    assert_eq!(run_and_read_password(&home, &out), "s3cret-pass");

    write_keys(&home, &[&new]);
    assert_eq!(run_and_read_password(&home, &out), "s3cret-pass");
    // Only the new key reads the database now.
    write_keys(&home, &[&old]);
    let err = home.fails(&["connections", "get", "my_db"]);
    assert!(err.stderr.contains("core.fernet_key"), "{err}");
}

#[test]
fn the_configured_backends_answer_in_their_order() {
    let home = keyed_home()
        .with_env(
            "UPDRAFT__SECRETS__BACKENDS",
            r#"["environment", "files", "database"]"#,
        )
        .with_env("UPDRAFT__SECRETS__FILES_DIR", "mounted")
        .with_env("AIRFLOW_CONN_FROM_ENV", "http://env-host.example.com");
    // The database's my_db is hidden by the mounted file of the same id.
    home.ok(&["connections", "add", "my_db", "--conn-uri", PG_URI]);
    home.ok(&["connections", "add", "only_db", "--conn-uri", PG_URI]);
    std::fs::create_dir_all(home.path().join("mounted/connections")).unwrap();
    std::fs::write(
        home.path().join("mounted/connections/my_db"),
        "postgres://app:from-files-pw@files.example.com/shop\n",
    )
    .unwrap();
    let out = home.path().join("seen.txt");
    home.write_dag(
        "backends.yaml",
        &format!(
            "dag_id: backends\ntasks:\n  - task_id: read\n    bash: printf '%s %s %s' {{{{ conn.my_db.password | sh }}}} {{{{ conn.from_env.host | sh }}}} {{{{ conn.only_db.host | sh }}}} > {}\n",
            out.display()
        ),
    );
    let _scheduler = home.start_scheduler();
    home.wait_dag_listed("backends");
    let run_id = home.trigger("backends", None);
    assert_eq!(home.wait_run_finished("backends", &run_id), "success");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "from-files-pw env-host.example.com db.example.com"
    );
}

#[test]
fn rotate_fernet_key_rewrites_connections_and_variables_with_the_first_key() {
    let mut home = Home::new();
    let (old, new) = (new_key(&home), new_key(&home));
    home.set_env("UPDRAFT__CORE__FERNET_KEY", &old);
    home.ok(&["connections", "add", "my_db", "--conn-uri", PG_URI]);
    home.ok(&[
        "variables",
        "set",
        "api_token",
        "tok-1234567",
        "--tenant",
        "a",
    ]);
    home.set_env("UPDRAFT__CORE__FERNET_KEY", &format!("{new},{old}"));
    let rotated = home.ok(&["rotate-fernet-key"]);
    // The password and the extra of the connection, and the variable's value.
    assert!(
        rotated.stdout.contains("Re-encrypted 3 values"),
        "{rotated}"
    );
    home.set_env("UPDRAFT__CORE__FERNET_KEY", &new);
    assert_eq!(home.json(&["connections", "get", "my_db"])["login"], "app");
    let exported = home
        .ok(&[
            "variables",
            "export",
            "-",
            "--file-format",
            "env",
            "--tenant",
            "a",
        ])
        .stdout;
    assert_eq!(exported, "api_token=tok-1234567\n");
    home.set_env("UPDRAFT__CORE__FERNET_KEY", &old);
    let err = home.fails(&["connections", "get", "my_db"]);
    assert!(err.stderr.contains("core.fernet_key"), "{err}");
    let (events, _) = audit_log(&home);
    assert!(events.ends_with("cli_rotate_fernet_key -"), "{events}");
}

#[test]
fn dags_test_reads_the_configured_connections_and_shows_the_password_masked() {
    let home = keyed_home();
    home.ok(&["connections", "add", "my_db", "--conn-uri", PG_URI]);
    home.write_dag(
        "uses_conn.yaml",
        "dag_id: uses_conn\ntasks:\n  - task_id: read\n    bash: echo {{ conn.my_db.password | sh }} {{ conn.my_db.host | sh }}\n",
    );
    let tested = home.ok(&["dags", "test", "uses_conn"]);
    assert!(tested.stdout.contains("*** db.example.com"), "{tested}");
    assert!(!tested.stdout.contains("s3cret-pass"), "{tested}");
}

#[test]
fn on_postgresql_tenants_stay_apart_and_rotation_rewrites_everything() {
    let database = pg::TestDatabase::create();
    let mut home = Home::new().with_env("UPDRAFT__DATABASE__URL", &database.url);
    let (old, new) = (new_key(&home), new_key(&home));
    home.set_env("AIRFLOW__CORE__FERNET_KEY", &old);
    home.ok(&[
        "connections",
        "add",
        "my_db",
        "--conn-uri",
        PG_URI,
        "--tenant",
        "a",
    ]);
    home.ok(&["variables", "set", "db_password", "pw-9876543", "--shared"]);
    home.fails(&["connections", "get", "my_db", "--tenant", "b"]);
    assert_eq!(
        home.json(&["connections", "get", "my_db", "--tenant", "a"])["login"],
        "app"
    );
    home.set_env("AIRFLOW__CORE__FERNET_KEY", &format!("{new},{old}"));
    let rotated = home.ok(&["rotate-fernet-key"]);
    assert!(
        rotated.stdout.contains("Re-encrypted 3 values"),
        "{rotated}"
    );
    home.set_env("AIRFLOW__CORE__FERNET_KEY", &new);
    assert_eq!(
        home.ok(&[
            "variables",
            "export",
            "-",
            "--file-format",
            "env",
            "--shared"
        ])
        .stdout,
        "db_password=pw-9876543\n"
    );
}
