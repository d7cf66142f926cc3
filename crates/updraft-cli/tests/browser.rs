//! The web UI in a real browser: `updraft standalone`, Debian's headless Chromium driven over
//! WebDriver (chromedriver). A person's path through the UI: signing in on the login page
//! (authentication is on), the DAG list, unpausing a DAG,
//! triggering it with params (a bad value first, to see the API's message), the graph turning
//! green through live updates while the page stays open, and a task's log; then the
//! connections and variables pages: a connection created with a password that no page ever
//! holds, edited without retyping it, tested and deleted, and a sensitive variable shown as `***`.
//!
//! Screenshots of each step go to `target/screenshots/` for a person to look at.
//!
//! This test needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (`scripts/test` installs
//! Debian's `chromium` and `chromium-driver`); it fails when they are missing.
//! `UPDRAFT_TEST_CHROMIUM` and `UPDRAFT_TEST_CHROMEDRIVER` name other binaries.

mod common;

use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Home, SchedulerProcess, wait_until};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// Deadline for anything the browser waits for (generous: CI has two slow cores).
const TIMEOUT: Duration = Duration::from_secs(60);

const USERNAME: &str = "admin";
const PASSWORD: &str = "a browser's password";

fn binary(var: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(
        path.exists(),
        "{} is missing: install Debian's `chromium` and `chromium-driver` (scripts/test does: \
         apt-get install chromium chromium-driver), or set {var}",
        path.display()
    );
    path
}

fn screenshots_dir() -> PathBuf {
    // <target>/tmp → <target>/screenshots
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("screenshots");
    std::fs::create_dir_all(&dir).expect("creating target/screenshots");
    dir
}

/// chromedriver on a free loopback port; killed on drop.
struct Driver {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Driver {
    fn start(home: &Home) -> Driver {
        let chromedriver = binary("UPDRAFT_TEST_CHROMEDRIVER", "/usr/bin/chromedriver");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = home.path().join("chromedriver.log");
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let driver = Driver { child, port, log };
        wait_until("chromedriver to listen", TIMEOUT, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        driver
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: String = log
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            eprintln!("--- end of the chromedriver log ---\n{tail}");
        }
    }
}

async fn browser(driver: &Driver, home: &Home) -> Client {
    let chromium = binary("UPDRAFT_TEST_CHROMIUM", "/usr/bin/chromium");
    let profile = home.path().join("chromium-profile");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".to_string(),
        json!({
            "binary": chromium,
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--window-size=1440,1000",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    // The console is read at the end for Content-Security-Policy violations.
    caps.insert("goog:loggingPrefs".to_string(), json!({ "browser": "ALL" }));
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a WebDriver session with chromium")
}

/// chromedriver's `POST /session/{id}/se/log`: the browser console's messages since the last
/// read.
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

/// The console messages about the Content-Security-Policy (a refused inline script or style,
/// a refused source) since the last call.
async fn csp_violations(client: &Client) -> Vec<String> {
    let entries = client
        .issue_cmd(BrowserLog)
        .await
        .expect("the browser's console log (chromedriver's se/log)");
    entries
        .as_array()
        .expect("a list of console entries")
        .iter()
        .filter_map(|e| e["message"].as_str())
        .filter(|m| m.contains("Content Security Policy") || m.contains("Content-Security-Policy"))
        .map(str::to_string)
        .collect()
}

/// Poll `check` until it gives `Some`, or panic after [`TIMEOUT`] naming `what`.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            started.elapsed() < TIMEOUT,
            "timed out after {TIMEOUT:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sign in as a person does: a page leads to the login page, a wrong password is refused, the
/// right one leads back to the page, with the user's name in the header.
async fn sign_in(client: &Client, base: &str) {
    client.goto(&format!("{base}/dags")).await.unwrap();
    let url = client.current_url().await.unwrap();
    assert_eq!(url.path(), "/login", "{url}");
    submit_login(client, "not the password").await;
    let error = client
        .find(Locator::Css(".form-error"))
        .await
        .expect("the login error")
        .text()
        .await
        .unwrap();
    assert_eq!(error, "invalid username or password");
    shot(client, "00-login-refused").await;
    submit_login(client, PASSWORD).await;
    eventually("the DAG list after signing in", || async {
        let url = client.current_url().await.ok()?;
        (url.path() == "/dags").then_some(())
    })
    .await;
    let user = client
        .find(Locator::Css(".account .user"))
        .await
        .expect("the signed-in user in the header")
        .text()
        .await
        .unwrap();
    assert_eq!(user, USERNAME);
}

async fn submit_login(client: &Client, password: &str) {
    for (field, value) in [("#username", USERNAME), ("#password", password)] {
        let input = client.find(Locator::Css(field)).await.unwrap();
        input.clear().await.unwrap();
        input.send_keys(value).await.unwrap();
    }
    click(client, "form button[type=submit]").await;
    eventually("the login form to be answered", || async {
        let ready = js(client, "return document.readyState;").await;
        let url = client.current_url().await.ok()?;
        (ready == "complete"
            && (url.path() != "/login" || client.find(Locator::Css(".form-error")).await.is_ok()))
        .then_some(())
    })
    .await;
}

/// Click the element `css` selects; again if the page's live part replaced it meanwhile.
async fn click(client: &Client, css: &str) {
    eventually(&format!("to click {css}"), || async {
        client
            .find(Locator::Css(css))
            .await
            .ok()?
            .click()
            .await
            .ok()
    })
    .await
}

/// Wait until the page's live part has been refreshed once: its event stream is connected and
/// the refresh that follows connecting is done, so elements found now stay (until the next
/// change). Pages without a live part are settled at once.
async fn settled(client: &Client) {
    eventually("the page's live updates to connect", || async {
        let n = js(
            client,
            "const l = document.getElementById('live'); \
             return l ? Number(l.dataset.refreshes || 0) : -1;",
        )
        .await;
        (n.as_i64()? != 0).then_some(())
    })
    .await
}

/// How often the live part was refreshed since the page loaded.
async fn refreshes(client: &Client) -> u64 {
    js(
        client,
        "return Number(document.getElementById('live').dataset.refreshes || 0);",
    )
    .await
    .as_u64()
    .unwrap_or(0)
}

async fn js(client: &Client, script: &str) -> Value {
    client
        .execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("running {script}: {e}"))
}

async fn shot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("a screenshot");
    let path = screenshots_dir().join(format!("{name}.png"));
    std::fs::write(&path, png).expect("writing the screenshot");
    eprintln!("screenshot: {}", path.display());
}

/// The UI's address, from the line `updraft standalone` prints.
fn ui_address(service: &SchedulerProcess) -> String {
    wait_until("the web server to start", TIMEOUT, || {
        let output = service.output();
        let line = output
            .lines()
            .find(|l| l.contains("updraft web UI and API on http://"))?;
        Some(line.rsplit("http://").next()?.trim().to_string())
    })
}

/// `greet` waits for `gate2` only once `armed` exists (for its second try, after a clear).
fn dag_yaml(gate: &Path, armed: &Path, gate2: &Path) -> String {
    format!(
        r#"dag_id: browser_demo
description: Waits for the test to open a gate, then greets
schedule: null
tags: [demo]
params:
  greeting: {{default: hello, type: string}}
  repeat: {{default: 1, type: integer, minimum: 1, maximum: 3, description: How many greetings}}
tasks:
  - task_id: wait_for_gate
    bash: |
      while [ ! -f '{gate}' ]; do sleep 0.1; done
      echo "the gate is open"
  - task_id: side_job
    bash: echo "side job done"
  - task_id: greet
    upstream: [wait_for_gate, side_job]
    bash: |
      for i in $(seq {{{{ params.repeat }}}}); do echo "{{{{ params.greeting }}}} number $i from the browser"; done
      if [ -f '{armed}' ]; then
        while [ ! -f '{gate2}' ]; do sleep 0.1; done
        echo "greet saw the second gate"
      fi
  - task_id: wrap_up
    upstream: [greet]
    bash: echo "all done"
"#,
        gate = gate.display(),
        armed = armed.display(),
        gate2 = gate2.display(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_triggers_a_dag_and_watches_it_succeed_live() {
    let home = Home::new()
        .with_auth()
        .with_env("UPDRAFT__CORE__DAGS_ARE_PAUSED_AT_CREATION", "true");
    home.create_user(USERNAME, PASSWORD, "Admin");
    let gate = home.work().join("gate");
    let (armed, gate2) = (home.work().join("armed"), home.work().join("gate2"));
    home.write_dag("browser_demo.yaml", &dag_yaml(&gate, &armed, &gate2));
    home.write_dag("broken.yaml", "dag_id: broken\ntasks: [\n");
    home.write_dag("browser_groups.yaml", GROUPS_DAG);
    let service = home.start_standalone();
    let base = format!("http://{}", ui_address(&service));
    let driver = Driver::start(&home);
    let client = browser(&driver, &home).await;

    sign_in(&client, &base).await;

    // ---- the DAG list: the DAG, paused, and the import error banner -----------------------
    let row = r#"tr[data-dag-id="browser_demo"]"#;
    eventually("the DAG in the list", || async {
        client.goto(&format!("{base}/dags")).await.ok()?;
        client.find(Locator::Css(row)).await.ok()
    })
    .await;
    let banner = client
        .find(Locator::Css(".banner.error"))
        .await
        .expect("the import errors banner")
        .text()
        .await
        .unwrap();
    assert!(banner.contains("broken.yaml"), "{banner}");
    settled(&client).await;
    let toggle_text = format!("{row} .switch-text");
    let text = client
        .find(Locator::Css(&toggle_text))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text, "paused");
    shot(&client, "01-dag-list").await;

    // ---- unpause with the toggle ----------------------------------------------------------
    click(&client, &format!("{row} label.switch")).await;
    eventually("the toggle to say active", || async {
        let t = client
            .find(Locator::Css(&toggle_text))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        (t == "active").then_some(())
    })
    .await;
    let listed = home.dags_list();
    let demo = listed
        .iter()
        .find(|d| d["dag_id"] == "browser_demo")
        .unwrap();
    assert_eq!(demo["is_paused"], false, "the API recorded the unpause");

    // ---- trigger: a bad param first, then a good one ---------------------------------------
    click(&client, &format!("{row} a.button")).await;
    let repeat = client
        .wait()
        .at_most(TIMEOUT)
        .for_element(Locator::Css(r#"[data-param="repeat"] input"#))
        .await
        .expect("the trigger form");
    repeat.clear().await.unwrap();
    repeat.send_keys("7").await.unwrap();
    click(&client, "#trigger-form button[type=submit]").await;
    let message = eventually("the API's error in the form", || async {
        let error = client.find(Locator::Css("#trigger-error")).await.ok()?;
        let shown = error.is_displayed().await.ok()?;
        let text = error.text().await.ok()?;
        (shown && !text.is_empty()).then_some(text)
    })
    .await;
    assert!(
        message.contains("repeat") && message.contains('3'),
        "{message}"
    );
    shot(&client, "02-trigger-form-error").await;
    assert!(
        home.runs("browser_demo").is_empty(),
        "no run from a refused trigger"
    );

    repeat.clear().await.unwrap();
    repeat.send_keys("2").await.unwrap();
    click(&client, "#trigger-form button[type=submit]").await;

    // ---- the graph of the new run, turning green live -------------------------------------
    eventually("the graph of the new run", || async {
        let url = client.current_url().await.ok()?;
        (url.path().ends_with("/graph") && url.query().is_some_and(|q| q.contains("run_id=")))
            .then_some(())
    })
    .await;
    let runs = home.runs("browser_demo");
    assert_eq!(runs.len(), 1, "one run was triggered");
    assert_eq!(
        runs[0]["conf"]["repeat"], 2,
        "with the form's params: {}",
        runs[0]
    );
    let node_state = |task: &'static str| {
        format!(
            "const n = document.querySelector('#graph g.node[data-task-id=\"{task}\"]'); \
             return n ? n.getAttribute('data-state') : null;"
        )
    };
    eventually("wait_for_gate to run", || async {
        let state = js(&client, &node_state("wait_for_gate")).await;
        (state == "running").then_some(())
    })
    .await;
    settled(&client).await;
    // From here on the page must not be reloaded: the marker survives only in this document.
    js(&client, "window.updraftSameDocument = true; return null;").await;
    let refreshed_before = refreshes(&client).await;
    eventually("the live-updates indicator", || async {
        let live = js(
            &client,
            "const s = document.getElementById('live-status'); return s && s.dataset.connected;",
        )
        .await;
        (live == "true").then_some(())
    })
    .await;
    shot(&client, "03-graph-running").await;

    std::fs::write(&gate, "open").expect("opening the gate");
    let tasks = ["wait_for_gate", "side_job", "greet", "wrap_up"];
    eventually("every node of the graph to turn success", || async {
        let states = js(
            &client,
            "return Array.from(document.querySelectorAll('#graph g.node')).map(n => n.getAttribute('data-state'));",
        )
        .await;
        let all = states.as_array()?;
        (all.len() == tasks.len() && all.iter().all(|s| s == "success")).then_some(())
    })
    .await;
    let same = js(&client, "return window.updraftSameDocument === true;").await;
    assert_eq!(
        same, true,
        "the graph changed through live updates, not a reload"
    );
    assert!(
        refreshes(&client).await > refreshed_before,
        "the live part was refreshed after the gate opened"
    );
    // Colour is paired with words.
    let label = js(
        &client,
        "return document.querySelector('#graph g.node[data-task-id=\"greet\"] .state-label').textContent;",
    )
    .await;
    assert_eq!(label, "success");
    shot(&client, "04-graph-success").await;

    // ---- the grid -------------------------------------------------------------------------
    client
        .goto(&format!("{base}/dags/browser_demo/grid"))
        .await
        .unwrap();
    let cells = client
        .find_all(Locator::Css(r#"table.grid a.cell[data-state="success"]"#))
        .await
        .unwrap();
    assert_eq!(cells.len(), tasks.len());
    shot(&client, "05-grid").await;

    // ---- a task's log ---------------------------------------------------------------------
    client.back().await.unwrap();
    // The live part may be swapped in just as we click (its first refresh): click again then.
    eventually("to open greet from the graph", || async {
        let node = client
            .find(Locator::Css(r#"#graph g.node[data-task-id="greet"] a"#))
            .await
            .ok()?;
        node.click().await.ok()?;
        let url = client.current_url().await.ok()?;
        url.path().ends_with("/tasks/greet").then_some(())
    })
    .await;
    settled(&client).await;
    let log = eventually("the log of greet", || async {
        let pre = client.find(Locator::Css("#log")).await.ok()?;
        let complete = pre.attr("data-complete").await.ok()??;
        let text = pre.text().await.ok()?;
        (complete == "true").then_some(text)
    })
    .await;
    assert!(log.contains("hello number 1 from the browser"), "{log}");
    assert!(log.contains("hello number 2 from the browser"), "{log}");
    let tries = client
        .find_all(Locator::Css("table.tries tbody tr[data-try]"))
        .await
        .unwrap();
    assert_eq!(tries.len(), 1);
    shot(&client, "06-task-log").await;

    // ---- clear greet: a second try, whose log is followed while it runs --------------------
    std::fs::write(&armed, "armed").unwrap();
    js(&client, "window.updraftSameDocument = true; return null;").await;
    click(&client, r#"button[data-action="clear"]"#).await;
    eventually("the confirmation to be accepted", || async {
        client.accept_alert().await.ok()
    })
    .await;
    let second_try = eventually("try 2 in the tries table (live)", || async {
        let row = client
            .find(Locator::Css(r#"table.tries tbody tr[data-try="2"] a"#))
            .await
            .ok()?;
        row.attr("href").await.ok()?
    })
    .await;
    let same = js(&client, "return window.updraftSameDocument === true;").await;
    assert_eq!(same, true, "the tries table grew through live updates");
    client.goto(&format!("{base}{second_try}")).await.unwrap();
    settled(&client).await;
    let following = eventually("the log of try 2 while it runs", || async {
        let pre = client.find(Locator::Css("#log")).await.ok()?;
        let text = pre.text().await.ok()?;
        let complete = pre.attr("data-complete").await.ok()??;
        (complete == "false" && text.contains("hello number 2 from the browser")).then_some(text)
    })
    .await;
    assert!(!following.contains("second gate"), "{following}");
    js(&client, "window.updraftSameDocument = true; return null;").await;
    shot(&client, "07-task-log-following").await;
    std::fs::write(&gate2, "open").unwrap();
    let log = eventually("the rest of the log, tailed", || async {
        let pre = client.find(Locator::Css("#log")).await.ok()?;
        let complete = pre.attr("data-complete").await.ok()??;
        let text = pre.text().await.ok()?;
        (complete == "true").then_some(text)
    })
    .await;
    assert!(log.contains("greet saw the second gate"), "{log}");
    assert_eq!(
        log.matches("hello number 1 from the browser").count(),
        1,
        "tailing appends only what is new: {log}"
    );
    eventually("greet's state to turn success (live)", || async {
        let state = js(&client, "const f = document.querySelector('#live [data-ti-state]'); return f && f.dataset.tiState;").await;
        (state == "success").then_some(())
    })
    .await;
    let same = js(&client, "return window.updraftSameDocument === true;").await;
    assert_eq!(same, true, "the log and state followed without a reload");
    shot(&client, "08-task-log-tailed").await;

    // ---- the other views, for a look ------------------------------------------------------
    let tour = [
        (
            "09-gantt",
            "/dags/browser_demo/gantt",
            r#".gantt-bar[data-state="success"]"#,
        ),
        (
            "10-runs",
            "/dags/browser_demo/runs",
            r#"button[data-action="delete-run"]"#,
        ),
        ("11-code", "/dags/browser_demo/code", "pre.code .line"),
        ("12-pools", "/pools", r#"tr[data-pool="default_pool"]"#),
        ("13-import-errors", "/import-errors", ".import-error"),
    ];
    for (name, path, selector) in tour {
        client.goto(&format!("{base}{path}")).await.unwrap();
        client
            .wait()
            .at_most(TIMEOUT)
            .for_element(Locator::Css(selector))
            .await
            .unwrap_or_else(|e| panic!("{path}: no {selector}: {e}"));
        shot(&client, name).await;
    }
    client
        .goto(&format!("{base}/dags/browser_demo/runs"))
        .await
        .unwrap();
    click(&client, "table.runs tbody td a").await;
    client
        .wait()
        .at_most(TIMEOUT)
        .for_element(Locator::Css("tr[data-ti-row]"))
        .await
        .expect("the run page's task instances");
    settled(&client).await;
    shot(&client, "14-run").await;

    // ---- mark a task failed, then delete the run ----------------------------------------------
    click(
        &client,
        r#"tr[data-task-id="wrap_up"] button[data-action="mark"][data-state="failed"]"#,
    )
    .await;
    eventually("the confirmation to be accepted", || async {
        client.accept_alert().await.ok()
    })
    .await;
    eventually("wrap_up to show failed", || async {
        let badge = client
            .find(Locator::Css(r#"tr[data-task-id="wrap_up"] .badge"#))
            .await
            .ok()?;
        (badge.attr("data-state").await.ok()?? == "failed").then_some(())
    })
    .await;
    let run_id = runs[0]["run_id"].as_str().unwrap().to_string();
    assert_eq!(
        home.task_states("browser_demo", &run_id)["wrap_up"],
        "failed",
        "the API recorded the mark"
    );
    click(&client, r#"button[data-action="delete-run"]"#).await;
    eventually("the confirmation to be accepted", || async {
        client.accept_alert().await.ok()
    })
    .await;
    eventually("the runs list, without the run", || async {
        let url = client.current_url().await.ok()?;
        let rows = client
            .find_all(Locator::Css("table.runs tbody tr[data-run-id]"))
            .await
            .ok()?;
        (url.path().ends_with("/runs") && rows.is_empty()).then_some(())
    })
    .await;
    assert!(
        home.runs("browser_demo").is_empty(),
        "the API deleted the run"
    );

    task_groups(&client, &base).await;
    connections_and_variables(&client, &base, &home).await;

    // Every page kept to the Content-Security-Policy: no inline script or style was refused.
    let violations = csp_violations(&client).await;
    assert!(
        violations.is_empty(),
        "the Content-Security-Policy refused parts of the UI:\n{}",
        violations.join("\n")
    );
    // The check sees violations: an inline style put in the page now is refused and reported.
    js(
        &client,
        "document.body.insertAdjacentHTML('beforeend', '<span style=\"color: red\">x</span>'); return null;",
    )
    .await;
    let seen = eventually("the deliberate violation in the console", || async {
        let v = csp_violations(&client).await;
        (!v.is_empty()).then_some(v)
    })
    .await;
    assert!(seen.iter().any(|m| m.contains("style")), "{seen:?}");
    let headers = js(
        &client,
        "return fetch('/dags').then(r => r.headers.get('content-security-policy'));",
    )
    .await;
    assert!(
        headers
            .as_str()
            .is_some_and(|csp| csp.contains("script-src 'self'")),
        "the UI is served with the policy: {headers}"
    );

    // ---- sign out: the pages lead to the login page again ---------------------------------
    click(&client, ".account button[type=submit]").await;
    eventually("the login page after signing out", || async {
        let url = client.current_url().await.ok()?;
        (url.path() == "/login").then_some(())
    })
    .await;
    client.goto(&format!("{base}/dags")).await.unwrap();
    let url = client.current_url().await.unwrap();
    assert_eq!(url.path(), "/login", "signed out: {url}");

    client.close().await.expect("closing the browser");
    drop(driver);
    drop(service);
}

/// A DAG of 3 tasks in nested groups beside 2 outside: small, so its graph starts expanded.
const GROUPS_DAG: &str = r#"
dag_id: browser_groups
tasks:
  - {task_id: start, bash: "true"}
  - group_id: extract
    tooltip: Read every source
    upstream: start
    tasks:
      - {task_id: a, bash: "true"}
      - group_id: inner
        upstream: a
        tasks:
          - {task_id: x, bash: "true"}
          - {task_id: y, bash: "true", upstream: x}
  - {task_id: load, bash: "true", upstream: extract}
"#;

/// The ids of the graph's nodes: tasks, and collapsed groups as `group:<id>`.
async fn graph_nodes(client: &Client) -> Vec<String> {
    let nodes = js(
        client,
        "return Array.from(document.querySelectorAll('#graph g.node')).map(n => \
           n.dataset.taskId || ('group:' + n.dataset.groupId));",
    )
    .await;
    nodes
        .as_array()
        .expect("a list of nodes")
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect()
}

/// A group's box in the graph collapses into one node when its title is clicked, and that
/// node expands it again.
async fn task_groups(client: &Client, base: &str) {
    client
        .goto(&format!("{base}/dags/browser_groups/graph"))
        .await
        .unwrap();
    let expanded = [
        "start",
        "extract.a",
        "extract.inner.x",
        "extract.inner.y",
        "load",
    ];
    eventually("the groups' graph, expanded", || async {
        (graph_nodes(client).await == expanded).then_some(())
    })
    .await;
    let boxes = client
        .find_all(Locator::Css("#graph g.group-box"))
        .await
        .unwrap();
    assert_eq!(
        boxes.len(),
        2,
        "a box for extract and one for extract.inner"
    );
    settled(client).await;
    shot(client, "15-groups-expanded").await;

    click(
        client,
        r#"#graph g.group-box[data-group-id="extract"] a.group-toggle"#,
    )
    .await;
    eventually("extract to collapse into one node", || async {
        (graph_nodes(client).await == ["start", "group:extract", "load"]).then_some(())
    })
    .await;
    assert!(
        client
            .current_url()
            .await
            .unwrap()
            .query()
            .is_some_and(|q| q.contains("groups=extract")),
        "the view is in the address, so a reload or a link keeps it"
    );
    assert!(
        client
            .find_all(Locator::Css("#graph g.group-box"))
            .await
            .unwrap()
            .is_empty(),
        "no box is drawn inside a collapsed group"
    );
    let edges = js(
        client,
        "return Array.from(document.querySelectorAll('#graph path.edge')).map(e => \
           e.dataset.from + '>' + e.dataset.to).sort();",
    )
    .await;
    assert_eq!(edges, json!(["extract>load", "start>extract"]));
    settled(client).await;
    shot(client, "16-groups-collapsed").await;

    click(client, r#"#graph g.group-node[data-group-id="extract"] a"#).await;
    eventually("extract to expand again", || async {
        (graph_nodes(client).await == expanded).then_some(())
    })
    .await;
    settled(client).await;
}

const CONN_ID: &str = "browser_api";
const CONN_PASSWORD: &str = "pw-browser-5150";
const CONN_TOKEN: &str = "tok-browser-6262";
const VAR_KEY: &str = "browser_api_token";
const VAR_VALUE: &str = "var-secret-7373";

/// Fill the form field `css` with `value`, replacing what it held.
async fn fill(client: &Client, css: &str, value: &str) {
    let input = client.find(Locator::Css(css)).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(value).await.unwrap();
}

/// Submit the connection or variable form and wait for the list page it leads to.
async fn save_secret_form(client: &Client, list: &str) {
    click(client, "#secret-form button[type=submit]").await;
    eventually(&format!("{list} after saving"), || async {
        let url = client.current_url().await.ok()?;
        let ready = js(client, "return document.readyState;").await;
        (url.path() == list && ready == "complete").then_some(())
    })
    .await;
}

/// The page's HTML, asserted to hold none of `secrets`.
async fn assert_page_hides(client: &Client, what: &str, secrets: &[&str]) -> String {
    let html = client.source().await.expect("the page's HTML");
    for secret in secrets {
        assert!(!html.contains(secret), "{what} holds {secret}:\n{html}");
    }
    html
}

/// The shared connections as `connections export` writes them (the secrets in the clear).
fn exported_connection(home: &Home) -> Value {
    let out = home.ok(&[
        "connections",
        "export",
        "-",
        "--file-format",
        "json",
        "--shared",
    ]);
    let all: Value = serde_json::from_str(&out.stdout).expect("the exported JSON");
    all[CONN_ID].clone()
}

/// Cell `column` (1-based) of the list row `row`.
async fn cell(client: &Client, row: &str, column: usize) -> String {
    client
        .find(Locator::Css(&format!("{row} td:nth-child({column})")))
        .await
        .unwrap_or_else(|e| panic!("{row}: no column {column}: {e}"))
        .text()
        .await
        .unwrap()
}

/// A connection's life in the UI (create with a password, see it masked, edit without the
/// password, test, delete) and a sensitive variable, checked against what the store holds.
async fn connections_and_variables(client: &Client, base: &str, home: &Home) {
    let secrets = [CONN_PASSWORD, CONN_TOKEN, VAR_VALUE];
    let port = base.rsplit(':').next().unwrap().to_string();

    // ---- create a connection with a password ---------------------------------------------
    client
        .goto(&format!("{base}/connections/new"))
        .await
        .unwrap();
    client
        .find(Locator::Css("#f-team"))
        .await
        .expect("the tenant choice")
        .select_by_value("*")
        .await
        .unwrap();
    fill(client, "#f-id", CONN_ID).await;
    fill(client, "#f-type", "http").await;
    fill(client, "#f-host", "no-such-host.invalid").await;
    fill(client, "#f-login", "bot").await;
    fill(client, "#f-password", CONN_PASSWORD).await;
    fill(client, "#f-port", &port).await;
    fill(client, "#f-schema", "api/v2/monitor/health").await;
    fill(
        client,
        "#f-extra",
        &format!(r#"{{"api_token": "{CONN_TOKEN}", "timeout": 5}}"#),
    )
    .await;
    shot(client, "15-connection-new").await;
    save_secret_form(client, "/connections").await;

    let row = format!(r#"tr[data-connection-id="{CONN_ID}"]"#);
    client
        .find(Locator::Css(&row))
        .await
        .expect("the new connection in the list");
    assert_eq!(cell(client, &row, 3).await, "no-such-host.invalid");
    assert_eq!(cell(client, &row, 7).await, "***", "the password column");
    assert_eq!(cell(client, &row, 8).await, "shared");
    assert_page_hides(client, "the connections list", &secrets).await;
    shot(client, "16-connections").await;
    let stored = exported_connection(home);
    assert_eq!(stored["password"], CONN_PASSWORD, "{stored}");

    // ---- edit: a new host, the password field left empty ---------------------------------
    click(client, &format!("{row} a.button")).await;
    client
        .wait()
        .at_most(TIMEOUT)
        .for_element(Locator::Css("#f-id[readonly]"))
        .await
        .expect("the connection's edit form");
    let html = assert_page_hides(client, "the edit form", &secrets).await;
    assert!(html.contains("leave empty to keep it"), "{html}");
    let password = client.find(Locator::Css("#f-password")).await.unwrap();
    assert_eq!(password.prop("value").await.unwrap().as_deref(), Some(""));
    let extra = client.find(Locator::Css("#f-extra")).await.unwrap();
    let extra_shown = extra.prop("value").await.unwrap().unwrap_or_default();
    assert!(
        extra_shown.contains("***"),
        "the extra's token masked: {extra_shown}"
    );
    fill(client, "#f-host", "127.0.0.1").await;
    shot(client, "17-connection-edit").await;
    save_secret_form(client, "/connections").await;
    assert_eq!(cell(client, &row, 3).await, "127.0.0.1");
    assert_page_hides(client, "the connections list after the edit", &secrets).await;
    let stored = exported_connection(home);
    assert_eq!(stored["host"], "127.0.0.1", "{stored}");
    assert_eq!(
        stored["password"], CONN_PASSWORD,
        "the password was kept: {stored}"
    );
    assert!(
        stored["extra"].to_string().contains(CONN_TOKEN),
        "the extra's token was kept: {stored}"
    );

    // ---- test it: a GET to updraft's own health endpoint ---------------------------------
    click(client, &format!("{row} a.button")).await;
    click(client, "button[data-test-connection]").await;
    let result = eventually("the connection test's result", || async {
        let out = client.find(Locator::Css("#test-result")).await.ok()?;
        let text = out.text().await.ok()?;
        (out.is_displayed().await.ok()? && !text.is_empty()).then_some(text)
    })
    .await;
    assert!(
        result.starts_with("Test passed: ") && result.contains(&format!("127.0.0.1:{port}")),
        "{result}"
    );
    assert_page_hides(client, "the edit form after the test", &secrets).await;
    shot(client, "18-connection-tested").await;

    // ---- delete it ---------------------------------------------------------------------
    client.goto(&format!("{base}/connections")).await.unwrap();
    click(client, &format!("{row} button[data-delete]")).await;
    eventually("the confirmation to be accepted", || async {
        client.accept_alert().await.ok()
    })
    .await;
    eventually("the row to go", || async {
        client.find(Locator::Css(&row)).await.is_err().then_some(())
    })
    .await;
    home.fails(&["connections", "get", CONN_ID, "--shared"]);
    client.goto(&format!("{base}/connections")).await.unwrap();
    assert!(
        client.find(Locator::Css(&row)).await.is_err(),
        "the connection is gone after a reload"
    );

    // ---- a variable whose key looks sensitive --------------------------------------------
    client.goto(&format!("{base}/variables/new")).await.unwrap();
    client
        .find(Locator::Css("#f-team"))
        .await
        .expect("the tenant choice")
        .select_by_value("*")
        .await
        .unwrap();
    fill(client, "#f-key", VAR_KEY).await;
    fill(client, "#f-value", VAR_VALUE).await;
    fill(client, "#f-description", "made in the browser").await;
    save_secret_form(client, "/variables").await;
    let row = format!(r#"tr[data-variable-key="{VAR_KEY}"]"#);
    client
        .find(Locator::Css(&row))
        .await
        .expect("the new variable in the list");
    assert_eq!(cell(client, &row, 2).await, "***", "the value column");
    assert_eq!(cell(client, &row, 3).await, "made in the browser");
    assert_page_hides(client, "the variables list", &secrets).await;
    shot(client, "19-variables").await;
    click(client, &format!("{row} a.button")).await;
    client
        .wait()
        .at_most(TIMEOUT)
        .for_element(Locator::Css("#f-key[readonly]"))
        .await
        .expect("the variable's edit form");
    assert_page_hides(client, "the variable's edit form", &secrets).await;
    let out = home.ok(&[
        "variables",
        "export",
        "-",
        "--file-format",
        "json",
        "--shared",
    ]);
    let stored: Value = serde_json::from_str(&out.stdout).expect("the exported JSON");
    assert_eq!(stored[VAR_KEY]["value"], VAR_VALUE, "{stored}");
}
