//! Resolving a run's params from the DAG's specs and the run's conf.

use serde_json::{Map, Value, json};
use updraft_dag::{Dag, ParamError, parse_dag, resolve_params};

fn dag() -> Dag {
    let text = r#"
params:
  region: jp
  limit: {default: 10, type: integer, minimum: 1, maximum: 100}
  ratio: {default: 0.5, type: number, minimum: 0, maximum: 1}
  mode: {default: fast, enum: [fast, slow]}
  tags: {default: [a], type: array}
  target: {type: string, description: "no default: must come from conf"}
"#;
    parse_dag("default", "p.yaml", text).expect("valid")
}

fn conf(value: Value) -> Map<String, Value> {
    value.as_object().expect("an object").clone()
}

#[test]
fn defaults_fill_in_and_conf_overrides() {
    let params = resolve_params(&dag(), &conf(json!({"target": "db", "limit": 50}))).unwrap();
    assert_eq!(
        Value::Object(params),
        json!({
            "region": "jp",
            "limit": 50,
            "ratio": 0.5,
            "mode": "fast",
            "tags": ["a"],
            "target": "db",
        })
    );
}

#[test]
fn undeclared_conf_keys_are_left_out() {
    let params = resolve_params(&dag(), &conf(json!({"target": "db", "extra": 1}))).unwrap();
    assert!(!params.contains_key("extra"));
    assert_eq!(params.len(), 6);
}

#[test]
fn a_param_without_default_or_value_is_an_error() {
    let err = resolve_params(&dag(), &Map::new()).unwrap_err();
    assert_eq!(
        err,
        ParamError::Missing {
            name: "target".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "param `target` is required: it has no default and the run's conf does not set it"
    );
}

#[test]
fn conf_values_are_validated() {
    let cases = [
        (json!({"limit": 0}), "limit", "must be >= 1"),
        (json!({"limit": 101}), "limit", "must be <= 100"),
        (
            json!({"limit": "5"}),
            "limit",
            "expected integer, got a string",
        ),
        (
            json!({"limit": 2.5}),
            "limit",
            "expected integer, got a number",
        ),
        (json!({"ratio": 1.5}), "ratio", "must be <= 1"),
        (
            json!({"mode": "medium"}),
            "mode",
            "must be one of [\"fast\", \"slow\"]",
        ),
        (json!({"tags": "a"}), "tags", "expected array, got a string"),
        (
            json!({"target": null}),
            "target",
            "expected string, got null",
        ),
    ];
    for (mut values, name, reason) in cases {
        if values.get("target").is_none() {
            values["target"] = json!("db");
        }
        let err = resolve_params(&dag(), &conf(values.clone())).unwrap_err();
        match &err {
            ParamError::Invalid {
                name: n, reason: r, ..
            } => {
                assert_eq!((n.as_str(), r.as_str()), (name, reason), "{values}");
            }
            other => panic!("{values}: expected Invalid, got {other:?}"),
        }
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("param `{name}` has an invalid value")),
            "{message}"
        );
        assert!(message.ends_with(reason), "{message}");
    }
}

#[test]
fn untyped_params_accept_anything() {
    let params =
        resolve_params(&dag(), &conf(json!({"target": "db", "region": {"x": 1}}))).unwrap();
    assert_eq!(params["region"], json!({"x": 1}));
}

#[test]
fn a_dag_without_params_resolves_to_nothing() {
    let dag = parse_dag("default", "p.yaml", "tasks: []\n").unwrap();
    let params = resolve_params(&dag, &conf(json!({"anything": 1}))).unwrap();
    assert!(params.is_empty());
}
