//! `updraft variables ...` through the binary: round trips, sensitive values masked,
//! Airflow's import and export formats, tenants kept apart, and the key errors.

mod common;

use common::Home;
use serde_json::{Value, json};

fn keyed_home() -> Home {
    let mut home = Home::new();
    let key = home
        .ok(&["config", "generate-fernet-key"])
        .stdout
        .trim()
        .to_string();
    home.set_env("UPDRAFT__CORE__FERNET_KEY", &key);
    home
}

fn keys(value: Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["key"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn set_get_list_delete_round_trip_with_sensitive_values_masked() {
    let home = keyed_home();
    home.ok(&[
        "variables",
        "set",
        "region",
        "eu-west-1",
        "--description",
        "where",
    ]);
    home.ok(&["variables", "set", "api_token", "tok-1234567"]);
    home.ok(&["variables", "set", "-j", "limits", r#"{"max": 5}"#]);

    assert_eq!(
        home.ok(&["variables", "get", "region"]).stdout,
        "eu-west-1\n"
    );
    assert_eq!(home.ok(&["variables", "get", "api_token"]).stdout, "***\n");
    assert_eq!(
        home.json(&["variables", "get", "limits", "-j"]),
        json!({"max": 5})
    );
    let listed = home.json(&["variables", "list"]);
    assert_eq!(keys(listed.clone()), ["api_token", "limits", "region"]);
    let token = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["key"] == "api_token")
        .unwrap()
        .clone();
    assert_eq!(token["val"], "***");
    let table = home.ok(&["variables", "list"]);
    assert!(!table.stdout.contains("tok-1234567"), "{table}");

    home.ok(&["variables", "set", "region", "us-east-1"]);
    assert_eq!(
        home.ok(&["variables", "get", "region"]).stdout,
        "us-east-1\n"
    );

    home.ok(&["variables", "delete", "region"]);
    let gone = home.fails(&["variables", "get", "region"]);
    assert!(gone.stderr.contains("does not exist"), "{gone}");
    assert_eq!(
        home.ok(&["variables", "get", "region", "--default", "none"])
            .stdout,
        "none\n"
    );
    home.fails(&["variables", "delete", "region"]);
}

#[test]
fn export_and_import_in_every_format_keep_values_and_descriptions() {
    let home = keyed_home();
    home.ok(&[
        "variables",
        "set",
        "region",
        "eu-west-1",
        "--description",
        "where",
    ]);
    home.ok(&["variables", "set", "db_password", "pw-9876543"]);
    home.ok(&["variables", "set", "-j", "limits", r#"{"max": 5}"#]);
    let original = home.json(&["variables", "list"]);
    for name in ["vars.json", "vars.yaml", "vars.env"] {
        let file = home.path().join(name);
        let file = file.to_str().unwrap();
        home.ok(&["variables", "export", file]);
        let text = std::fs::read_to_string(file).unwrap();
        assert!(text.contains("pw-9876543"), "{name}: {text}");

        let other = keyed_home();
        other.ok(&["variables", "import", file]);
        let imported = other.json(&["variables", "list"]);
        assert_eq!(keys(imported.clone()), keys(original.clone()), "{name}");
        assert_eq!(
            other.ok(&["variables", "get", "region"]).stdout,
            "eu-west-1\n"
        );
        assert_eq!(
            other.json(&["variables", "get", "limits", "-j"]),
            json!({"max": 5}),
            "{name}"
        );
        let exported = other
            .ok(&["variables", "export", "-", "--file-format", "json"])
            .stdout;
        let exported: Value = serde_json::from_str(&exported).unwrap();
        assert_eq!(exported["db_password"], "pw-9876543", "{name}");
        if name != "vars.env" {
            // Descriptions travel in JSON and YAML (Airflow's `{"value", "description"}`).
            assert_eq!(
                exported["region"],
                json!({"value": "eu-west-1", "description": "where"}),
                "{name}"
            );
        }
    }
}

#[test]
fn import_of_existing_keys_follows_the_chosen_action() {
    let home = keyed_home();
    home.ok(&["variables", "set", "region", "eu-west-1"]);
    let file = home.path().join("vars.json");
    std::fs::write(&file, r#"{"region": "us-east-1", "new": "x"}"#).unwrap();
    let file = file.to_str().unwrap();
    home.ok(&[
        "variables",
        "import",
        file,
        "--action-on-existing-key",
        "skip",
    ]);
    assert_eq!(
        home.ok(&["variables", "get", "region"]).stdout,
        "eu-west-1\n"
    );
    assert_eq!(home.ok(&["variables", "get", "new"]).stdout, "x\n");
    let failed = home.fails(&[
        "variables",
        "import",
        file,
        "--action-on-existing-key",
        "fail",
    ]);
    assert!(failed.stderr.contains("already exists"), "{failed}");
    home.ok(&["variables", "import", file]);
    assert_eq!(
        home.ok(&["variables", "get", "region"]).stdout,
        "us-east-1\n"
    );

    let broken = home.path().join("broken.json");
    std::fs::write(&broken, "{\n  \"a\": 1,\n  \"b\": \n}").unwrap();
    let err = home.fails(&["variables", "import", broken.to_str().unwrap()]);
    assert!(err.stderr.contains("broken.json"), "{err}");
    assert!(err.stderr.contains("line 4"), "{err}");
}

#[test]
fn a_tenants_variables_are_invisible_to_another_tenant() {
    let home = keyed_home();
    home.ok(&[
        "variables",
        "set",
        "secret_name",
        "only-for-a",
        "--tenant",
        "a",
    ]);
    home.ok(&["variables", "set", "common", "for-all", "--shared"]);
    assert_eq!(
        home.ok(&["variables", "get", "common", "--tenant", "a"])
            .stdout,
        "for-all\n"
    );
    home.fails(&["variables", "get", "secret_name", "--tenant", "b"]);
    home.fails(&["variables", "get", "secret_name"]);
    assert_eq!(
        keys(home.json(&["variables", "list", "--tenant", "b"])),
        ["common"]
    );
    home.fails(&["variables", "delete", "secret_name", "--tenant", "b"]);
    let exported = home
        .ok(&[
            "variables",
            "export",
            "-",
            "--file-format",
            "json",
            "--tenant",
            "b",
        ])
        .stdout;
    assert!(!exported.contains("only-for-a"), "{exported}");
    // A tenant's own value wins over the shared one.
    home.ok(&["variables", "set", "common", "a-own", "--tenant", "a"]);
    assert_eq!(
        home.ok(&["variables", "get", "common", "--tenant", "a"])
            .stdout,
        "a-own\n"
    );
    assert_eq!(
        home.ok(&["variables", "get", "common", "--tenant", "b"])
            .stdout,
        "for-all\n"
    );
    let both = home.fails(&["variables", "list", "--tenant", "a", "--shared"]);
    assert!(both.stderr.contains("--shared"), "{both}");
}

#[test]
fn without_a_key_writes_fail_naming_core_fernet_key() {
    let home = Home::new();
    let err = home.fails(&["variables", "set", "region", "eu-west-1"]);
    assert!(err.stderr.contains("core.fernet_key"), "{err}");
    let unknown = Home::new().with_env("UPDRAFT__SECRETS__BACKENDS", r#"["environment", "vault"]"#);
    let err = unknown.fails(&["variables", "list"]);
    assert!(err.stderr.contains("secrets.backends"), "{err}");
    assert!(err.stderr.contains("vault"), "{err}");
}
