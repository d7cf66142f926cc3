//! The connection URI corpus (`data/uri_corpus.json`), read and written as Airflow does.
//!
//! Each `from_uri` case is a URI and the fields Airflow's `Connection(uri=...)` gives (or the
//! error it raises); each is then written with `to_uri` and read again, which must give the
//! same connection (Airflow's `test_connection_get_uri_from_uri`; `round_trip: false` marks a
//! case where Airflow itself loses a field). Each `to_uri` case is a
//! connection and the URI Airflow's `get_uri()` writes for it. Most cases are Airflow's own
//! test cases (`source` names the test); every expectation was checked against Apache
//! Airflow 3.3.2 with `data/verify_uri_corpus.py` (cases marked `updraft_only` are where
//! updraft writes a different URI on purpose, one Airflow reads the same).

use serde_json::{Map, Value};
use updraft_secrets::Connection;

fn corpus() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/uri_corpus.json");
    let text = std::fs::read_to_string(path).expect("read the URI corpus");
    serde_json::from_str(&text).expect("the URI corpus is JSON")
}

fn text(value: &Value) -> Option<String> {
    value.as_str().map(str::to_owned)
}

/// Airflow gives `""` for an absent host or schema; updraft gives `None`.
fn non_empty(value: &Value) -> Option<String> {
    text(value).filter(|s| !s.is_empty())
}

fn fields(conn: &Connection) -> Value {
    serde_json::json!({
        "conn_type": conn.conn_type,
        "host": conn.host,
        "login": conn.login,
        "password": conn.password,
        "port": conn.port,
        "schema": conn.schema,
        "extra": Value::Object(conn.extra_dejson()),
    })
}

fn expected_fields(expect: &Value) -> Value {
    serde_json::json!({
        "conn_type": expect["conn_type"],
        "host": non_empty(&expect["host"]),
        "login": expect["login"],
        "password": expect["password"],
        "port": expect["port"],
        "schema": non_empty(&expect["schema"]),
        "extra": expect["extra"],
    })
}

#[test]
fn uris_read_as_airflow_reads_them_and_round_trip() {
    let corpus = corpus();
    let cases = corpus["from_uri"].as_array().unwrap();
    assert!(cases.len() >= 40, "the corpus lost cases");
    let mut failures = Vec::new();
    for case in cases {
        let uri = case["uri"].as_str().unwrap();
        let parsed = Connection::from_uri("c", uri);
        if let Some(error) = case["error"].as_str() {
            match parsed {
                Err(e) if e.to_string().contains(error) => {}
                other => failures.push(format!(
                    "{uri}: expected an error with {error:?}, got {other:?}"
                )),
            }
            continue;
        }
        let conn = match parsed {
            Ok(conn) => conn,
            Err(e) => {
                failures.push(format!("{uri}: {e}"));
                continue;
            }
        };
        let expected = expected_fields(&case["expect"]);
        if fields(&conn) != expected {
            failures.push(format!("{uri}: read {} expected {expected}", fields(&conn)));
            continue;
        }
        if case["round_trip"] == Value::Bool(false) {
            continue;
        }
        let written = conn.to_uri();
        match Connection::from_uri("c", &written) {
            Ok(again) if fields(&again) == expected => {}
            Ok(again) => failures.push(format!(
                "{uri}: written as {written}, read back as {}",
                fields(&again)
            )),
            Err(e) => failures.push(format!("{uri}: written as {written}, unreadable: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn connections_write_the_uri_airflow_writes() {
    let corpus = corpus();
    let mut failures = Vec::new();
    for case in corpus["to_uri"].as_array().unwrap() {
        let given: &Map<String, Value> = case["conn"].as_object().unwrap();
        let conn = Connection {
            conn_id: "c".into(),
            conn_type: text(&given["conn_type"]).unwrap(),
            host: given.get("host").and_then(text),
            login: given.get("login").and_then(text),
            password: given.get("password").and_then(text),
            schema: given.get("schema").and_then(text),
            port: given.get("port").and_then(Value::as_u64).map(|p| p as u16),
            extra: given.get("extra").and_then(text),
            description: None,
        };
        let uri = conn.to_uri();
        if uri != case["uri"].as_str().unwrap() {
            failures.push(format!("{given:?}: wrote {uri}, expected {}", case["uri"]));
            continue;
        }
        // As Airflow's `test_connection_get_uri_from_conn`: the fields given come back.
        let again = fields(&Connection::from_uri("c", &uri).unwrap());
        let original = fields(&conn);
        if given
            .keys()
            .any(|name| again[name.as_str()] != original[name.as_str()] && name != "extra")
            || again["extra"] != original["extra"]
        {
            failures.push(format!("{uri}: read back as {again}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

mod random {
    use proptest::prelude::*;
    use updraft_secrets::Connection;

    proptest! {
        /// Any login, password, schema and extra survive `to_uri` and `from_uri`.
        #[test]
        fn any_connection_round_trips(
            conn_type in "[a-z][a-z0-9_]{0,10}",
            login in proptest::option::of("\\PC{1,12}"),
            password in proptest::option::of("\\PC{1,12}"),
            host in proptest::option::of("[a-z0-9][a-z0-9.-]{0,20}"),
            port in proptest::option::of(1u16..),
            schema in proptest::option::of("\\PC{1,12}"),
            extra in proptest::collection::btree_map("[a-z_]{1,8}", "\\PC{0,8}", 0..4),
        ) {
            let extra = (!extra.is_empty()).then(|| serde_json::to_string(&extra).unwrap());
            let conn = Connection {
                conn_id: "c".into(),
                conn_type,
                login: login.or_else(|| password.as_ref().map(|_| String::new())),
                password,
                host,
                port,
                schema,
                extra,
                description: None,
            };
            let uri = conn.to_uri();
            let again = Connection::from_uri("c", &uri).unwrap();
            prop_assert_eq!(&again.conn_type, &conn.conn_type, "{}", uri);
            // A port with no host nor login is written `@:port`, read back with login "".
            let no_empty = |login: &Option<String>| login.clone().filter(|l| !l.is_empty());
            prop_assert_eq!(no_empty(&again.login), no_empty(&conn.login), "{}", uri);
            prop_assert_eq!(&again.password, &conn.password, "{}", uri);
            prop_assert_eq!(&again.host, &conn.host, "{}", uri);
            prop_assert_eq!(again.port, conn.port, "{}", uri);
            prop_assert_eq!(&again.schema, &conn.schema, "{}", uri);
            prop_assert_eq!(again.extra_dejson(), conn.extra_dejson(), "{}", uri);
        }
    }
}
