//! Airflow's connection JSON (`as_json` / `from_json`), the choice between URI and JSON in an
//! environment variable or file, and the values a connection asks to mask.

use serde_json::json;
use updraft_secrets::Connection;

#[test]
fn json_reads_as_airflows_from_json() {
    let conn = Connection::from_json(
        "my_db",
        r#"{"conn_type": "postgresql", "host": "db", "login": "u", "password": "p w",
            "schema": "sales", "port": "5432", "extra": {"sslmode": "require", "retries": 3}}"#,
    )
    .unwrap();
    assert_eq!(conn.conn_id, "my_db");
    assert_eq!(conn.conn_type, "postgres");
    assert_eq!(conn.port, Some(5432));
    assert_eq!(conn.password.as_deref(), Some("p w"));
    assert_eq!(
        conn.extra.as_deref(),
        Some(r#"{"retries": 3, "sslmode": "require"}"#)
    );
    assert_eq!(
        Connection::from_json("a", r#"{"conn_type": "abc-abc"}"#)
            .unwrap()
            .conn_type,
        "abc_abc"
    );
}

#[test]
fn json_extra_may_be_text_and_empty_values_are_none() {
    let conn = Connection::from_json(
        "a",
        r#"{"extra": "{\"yo\": \"hi\"}", "password": "", "port": ""}"#,
    )
    .unwrap();
    assert_eq!(conn.extra.as_deref(), Some(r#"{"yo": "hi"}"#));
    assert_eq!(conn.password, None);
    assert_eq!(conn.port, None);
    assert_eq!(
        Connection::from_json("a", r#"{"extra": null}"#)
            .unwrap()
            .extra,
        None
    );
}

#[test]
fn bad_json_is_named() {
    for (json, wanted) in [
        (r#"{"port": -1}"#, "port"),
        (r#"{"port": 65536}"#, "port"),
        (r#"{"port": "1.5"}"#, "port"),
        (r#"{"hostname": "x"}"#, "unknown field \"hostname\""),
        (r#"{"extra": "[1]"}"#, "not an object"),
        (r#"{"extra": "{nope"}"#, "extra is not JSON"),
        (r#"{"login": 5}"#, "\"login\" must be a string"),
        ("[1]", "not an object"),
    ] {
        let err = Connection::from_json("a", json).unwrap_err().to_string();
        assert!(err.contains(wanted), "{json}: {err}");
    }
}

#[test]
fn json_round_trips_and_leaves_out_what_is_unset() {
    let conn = Connection::from_uri("c", "mysql://u:secret@h:3306/db?charset=utf8&n=3").unwrap();
    let json = conn.to_json();
    assert_eq!(
        json,
        json!({"conn_type": "mysql", "host": "h", "login": "u", "password": "secret",
               "schema": "db", "port": 3306, "extra": {"charset": "utf8", "n": 3}})
    );
    let again = Connection::from_json("c", &json.to_string()).unwrap();
    assert_eq!(again.to_json(), json);
    assert_eq!(
        Connection::from_uri("c", "aws://").unwrap().to_json(),
        json!({"conn_type": "aws"})
    );
}

#[test]
fn uri_or_json_is_told_apart_by_the_first_character() {
    let from_json =
        Connection::from_uri_or_json("c", "  {\"conn_type\": \"http\", \"host\": \"h\"}").unwrap();
    let from_uri = Connection::from_uri_or_json("c", "http://h\n").unwrap();
    assert_eq!(from_json, from_uri);
}

#[test]
fn secret_values_are_the_password_and_sensitive_extra_strings() {
    let conn = Connection::from_json(
        "c",
        r#"{"conn_type": "http", "password": "pw-value",
            "extra": {"api_key": "key-value", "region": "eu-west-1",
                      "service_account": {"private": "sa-value", "n": 1},
                      "headers": {"Authorization": "Bearer tok", "Accept": "json"}}}"#,
    )
    .unwrap();
    let mut values = conn.secret_values();
    values.sort();
    assert_eq!(values, ["Bearer tok", "key-value", "pw-value", "sa-value"]);
}

#[test]
fn debug_never_shows_the_password_or_extra() {
    let conn = Connection::from_uri("c", "http://u:hunter22@h?token=tok-value").unwrap();
    let shown = format!("{conn:?}");
    assert!(
        !shown.contains("hunter22") && !shown.contains("tok-value"),
        "{shown}"
    );
}
