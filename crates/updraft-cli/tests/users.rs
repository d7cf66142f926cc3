//! Users and roles through the real binary on SQLite: `users create|list|add-role|
//! remove-role|reset-password|delete`, `roles list`, the errors that name what is wrong, and
//! the `admin` user `standalone` creates on its first start.

mod common;

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::process::Stdio;
use std::time::Duration;

use common::{CmdResult, DEFAULT_TIMEOUT, Home, as_array, str_of, wait_until};
use serde_json::Value;

/// `users list -o json`, the row of `username`.
fn listed_user(home: &Home, username: &str) -> Option<Value> {
    as_array(home.json(&["users", "list"]))
        .into_iter()
        .find(|u| u["username"] == username)
}

fn roles_of(home: &Home, username: &str) -> Vec<String> {
    let user = listed_user(home, username).unwrap_or_else(|| panic!("{username} is listed"));
    as_array(user["roles"].clone()).iter().map(str_of).collect()
}

/// The one text column of the one row `sql` (binding `args`) reads from the SQLite database.
fn read_text(home: &Home, sql: &'static str, args: &[&str]) -> String {
    let db = home.path().join("updraft.db");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let url = format!("sqlite://{}", db.display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let mut query = sqlx::query_as(sql);
        for arg in args {
            query = query.bind(*arg);
        }
        let (text,): (String,) = query.fetch_one(&pool).await.unwrap();
        pool.close().await;
        text
    })
}

/// The stored password hash of `username`.
fn stored_hash(home: &Home, username: &str) -> String {
    read_text(
        home,
        "SELECT password_hash FROM users WHERE username = ?",
        &[username],
    )
}

/// The audit log's events, oldest first, joined with spaces.
fn audited_events(home: &Home) -> String {
    read_text(
        home,
        "SELECT COALESCE(group_concat(event, ' '), '') FROM (SELECT event FROM event_log ORDER BY id)",
        &[],
    )
}

fn verifies(home: &Home, username: &str, password: &str) -> bool {
    updraft_auth::password::verify(password, &stored_hash(home, username)).unwrap()
}

/// `updraft ARGS` with `input` on standard input.
fn run_with_stdin(home: &Home, args: &[&str], input: &str) -> CmdResult {
    let mut child = home
        .command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting updraft");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    CmdResult {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

const CREATE_BOB: &[&str] = &[
    "users",
    "create",
    "--username",
    "bob",
    "--role",
    "User",
    "--email",
    "bob@example.com",
    "--firstname",
    "Bob",
    "--lastname",
    "Builder",
    "--password",
    "s3cret-bob",
    "--tenant",
    "team_a",
    "--tenant",
    "team_b",
];

#[test]
fn users_are_created_listed_granted_and_deleted() {
    let home = Home::new();
    assert_eq!(home.json(&["users", "list"]), Value::Array(vec![]));

    home.ok(CREATE_BOB);
    let bob = listed_user(&home, "bob").expect("bob is listed");
    assert_eq!(bob["email"], "bob@example.com");
    assert_eq!(bob["first_name"], "Bob");
    assert_eq!(bob["last_name"], "Builder");
    assert_eq!(bob["source"], "local");
    assert_eq!(bob["last_login"], Value::Null);
    assert_eq!(roles_of(&home, "bob"), ["User@team_a", "User@team_b"]);
    assert!(verifies(&home, "bob", "s3cret-bob"));
    assert!(!verifies(&home, "bob", "wrong"));
    // The listing never shows the hash, in any format.
    for format in ["json", "yaml", "table", "plain"] {
        let out = home.ok(&["-o", format, "users", "list"]).stdout;
        assert!(out.contains("bob@example.com"), "{format}: {out}");
        assert!(!out.contains("argon2"), "{format}: {out}");
    }
    let yaml = home.ok(&["users", "list", "-o", "yaml"]).stdout;
    assert!(yaml.contains("- User@team_a"), "{yaml}");

    // Without --tenant the role is held for every tenant.
    home.ok(&["users", "add-role", "-u", "bob", "-r", "viewer"]);
    assert_eq!(
        roles_of(&home, "bob"),
        ["Viewer@*", "User@team_a", "User@team_b"]
    );
    let again = home.ok(&["users", "add-role", "--username", "bob", "--role", "Viewer"]);
    assert!(again.stdout.contains("already holds Viewer@*"), "{again}");

    home.ok(&[
        "users",
        "remove-role",
        "--username",
        "bob",
        "--role",
        "User",
        "--tenant",
        "team_a",
    ]);
    assert_eq!(roles_of(&home, "bob"), ["Viewer@*", "User@team_b"]);
    // A grant not held is named, with what is held, and nothing changes.
    let not_held = home.fails(&[
        "users",
        "remove-role",
        "-u",
        "bob",
        "-r",
        "Op",
        "-t",
        "team_b",
    ]);
    assert!(
        not_held.stderr.contains("does not hold Op@team_b"),
        "{not_held}"
    );
    assert!(
        not_held.stderr.contains("Viewer@*, User@team_b"),
        "{not_held}"
    );
    assert_eq!(roles_of(&home, "bob"), ["Viewer@*", "User@team_b"]);

    home.ok(&["users", "delete", "-u", "bob"]);
    assert_eq!(listed_user(&home, "bob"), None);
    assert_eq!(
        audited_events(&home),
        "cli_users_create cli_users_add_role cli_users_add_role cli_users_remove_role \
         cli_users_delete"
    );
    let gone = home.fails(&["users", "delete", "--username", "bob"]);
    assert!(gone.stderr.contains("user `bob` not found"), "{gone}");
}

#[test]
fn passwords_are_reset_generated_or_read_from_stdin() {
    let home = Home::new();
    home.ok(CREATE_BOB);

    home.ok(&["users", "reset-password", "-u", "bob", "-p", "second"]);
    assert!(verifies(&home, "bob", "second"));
    assert!(!verifies(&home, "bob", "s3cret-bob"));

    let piped = run_with_stdin(
        &home,
        &[
            "users",
            "reset-password",
            "--username",
            "bob",
            "--password",
            "-",
        ],
        "from stdin\n",
    );
    assert!(piped.success(), "{piped}");
    assert!(verifies(&home, "bob", "from stdin"));

    let random = home.ok(&[
        "users",
        "reset-password",
        "--username",
        "bob",
        "--use-random-password",
    ]);
    let generated = random
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("Password: "))
        .unwrap_or_else(|| panic!("the generated password is printed:\n{random}"))
        .to_string();
    assert!(generated.len() >= 16, "{generated}");
    assert!(verifies(&home, "bob", &generated));

    let created = home.ok(&[
        "users",
        "create",
        "-u",
        "carol",
        "-r",
        "Admin",
        "-e",
        "carol@example.com",
        "-f",
        "Carol",
        "-l",
        "C",
        "--use-random-password",
    ]);
    let carol = created
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("Password: "))
        .unwrap_or_else(|| panic!("the generated password is printed:\n{created}"));
    assert!(verifies(&home, "carol", carol));
    assert_eq!(roles_of(&home, "carol"), ["Admin@*"]);

    let unknown = home.fails(&["users", "reset-password", "-u", "nobody", "-p", "x"]);
    assert!(
        unknown.stderr.contains("user `nobody` not found"),
        "{unknown}"
    );
    // Exactly one of --password and --use-random-password.
    home.fails(&["users", "reset-password", "-u", "bob"]);
    home.fails(&[
        "users",
        "reset-password",
        "-u",
        "bob",
        "-p",
        "x",
        "--use-random-password",
    ]);
}

#[test]
fn mistakes_are_named() {
    let home = Home::new();
    home.ok(CREATE_BOB);

    let duplicate = home.fails(CREATE_BOB);
    assert!(
        duplicate.stderr.contains("user `bob` already exists"),
        "{duplicate}"
    );

    let mut bad_role: Vec<&str> = CREATE_BOB.to_vec();
    let role_at = 1 + bad_role.iter().position(|a| *a == "--role").unwrap();
    let username_at = 1 + bad_role.iter().position(|a| *a == "--username").unwrap();
    bad_role[role_at] = "Root";
    bad_role[username_at] = "dave";
    let refused = home.fails(&bad_role);
    assert!(refused.stderr.contains("unknown role `Root`"), "{refused}");
    assert!(
        refused.stderr.contains("Public, Viewer, User, Op, Admin"),
        "{refused}"
    );
    assert_eq!(listed_user(&home, "dave"), None);

    let unknown = home.fails(&["users", "add-role", "-u", "nobody", "-r", "Viewer"]);
    assert!(
        unknown.stderr.contains("user `nobody` not found"),
        "{unknown}"
    );
    let unknown = home.fails(&["users", "remove-role", "-u", "nobody", "-r", "Viewer"]);
    assert!(
        unknown.stderr.contains("user `nobody` not found"),
        "{unknown}"
    );
    let empty = home.fails(&["users", "add-role", "-u", "bob", "-r", "Viewer", "-t", ""]);
    assert!(empty.stderr.contains("tenant cannot be empty"), "{empty}");
}

#[test]
fn roles_list_shows_each_role_and_what_it_may_do() {
    let home = Home::new();
    let roles = as_array(home.json(&["roles", "list"]));
    let names: Vec<String> = roles.iter().map(|r| str_of(&r["role"])).collect();
    assert_eq!(names, ["Public", "Viewer", "User", "Op", "Admin"]);
    let may = |role: usize| -> Vec<String> {
        as_array(roles[role]["permissions"].clone())
            .iter()
            .map(str_of)
            .collect()
    };
    assert!(may(0).is_empty());
    assert!(may(1).iter().any(|p| p.starts_with("read DAGs")));
    assert!(!may(1).iter().any(|p| p == "trigger runs"));
    assert!(may(2).iter().any(|p| p == "trigger runs"));
    assert!(
        !may(2)
            .iter()
            .any(|p| p.contains("pools") && p.contains("edit"))
    );
    assert!(
        may(3)
            .iter()
            .any(|p| p.contains("edit") && p.contains("pools"))
    );
    assert!(!may(3).iter().any(|p| p.contains("users")));
    assert!(may(4).iter().any(|p| p.contains("users")));
    assert!(may(4).iter().any(|p| p.contains("audit log")));
    let table = home.ok(&["roles", "list"]).stdout;
    assert!(
        table.contains("Admin") && table.contains("audit log"),
        "{table}"
    );
}

/// Start `standalone`, wait until its scheduler runs, stop it; returns its output.
fn run_standalone_once(home: &Home) -> String {
    let mut standalone = home.start_standalone();
    wait_until("standalone to run its scheduler", DEFAULT_TIMEOUT, || {
        standalone
            .output()
            .contains("scheduler running")
            .then_some(())
    });
    standalone.terminate();
    let status = standalone.wait_exit(Duration::from_secs(60));
    assert_eq!(status.code(), Some(0), "output:\n{}", standalone.output());
    standalone.output()
}

#[test]
fn standalone_creates_an_admin_once_and_keeps_its_password_private() {
    let home = Home::new();
    let first = run_standalone_once(&home);

    let file = home.path().join("standalone_admin_password.txt");
    let kept = fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{} is written ({e}); output:\n{first}", file.display()));
    let password = kept.trim_end().to_string();
    assert!(password.len() >= 16, "{password}");
    let mode = fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    assert!(first.contains(&password), "printed once:\n{first}");
    assert!(verifies(&home, "admin", &password));
    assert_eq!(roles_of(&home, "admin"), ["Admin@*"]);

    let second = run_standalone_once(&home);
    assert!(!second.contains("Created the user"), "{second}");
    assert!(!second.contains(&password), "{second}");
    assert_eq!(fs::read_to_string(&file).unwrap(), kept);
    assert!(verifies(&home, "admin", &password));
    assert_eq!(as_array(home.json(&["users", "list"])).len(), 1);
}

#[test]
fn standalone_creates_no_admin_when_users_exist() {
    let home = Home::new();
    home.ok(CREATE_BOB);
    let output = run_standalone_once(&home);
    assert!(!output.contains("Created the user"), "{output}");
    assert!(!home.path().join("standalone_admin_password.txt").exists());
    assert_eq!(listed_user(&home, "admin"), None);
}
