//! The web UI's pages, rendered through the real router over a real (in-memory) store:
//! status codes, the content a person looks for, escaping, live parts, and the live updates
//! (SSE and the store watcher used by `updraft server`).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{DateTime, TimeZone, Utc};
use http_body_util::BodyExt;
use tempfile::TempDir;
use tokio::sync::broadcast;
use tower::ServiceExt;
use updraft_core::{RunState, TaskState};
use updraft_runs::StateChange;
use updraft_server::auth::{Grant, Identity, Role};
use updraft_server::{AppState, ServerConfig};
use updraft_store::{QueueLimits, RunRow, SqliteStore, Store, TiKey, TiTransition};

/// The scheduler job the fixtures' tries are queued by: none is registered, as no scheduler
/// runs in these tests.
const FIXTURE_JOB: i64 = 0;

const ETL: &str = r#"
dag_id: etl
description: "Nightly <script>alert('etl')</script> load"
schedule: "@daily"
start_date: 2024-01-01
tags: [nightly, "<b>bold</b>"]
params:
  limit: {default: 10, type: integer, minimum: 1, maximum: 100, description: "How many <rows>"}
  mode: {default: fast, enum: [fast, slow]}
  dry_run: {default: false, type: boolean}
tasks:
  - task_id: extract
    bash: echo "extract <stuff>"
  - task_id: transform
    upstream: [extract]
    bash: echo transform
  - task_id: load
    upstream: [transform]
    bash: echo load
  - task_id: report
    upstream: [extract, load]
    bash: echo report
"#;

const OTHER: &str = r#"
dag_id: other
schedule: null
tags: [misc]
tasks:
  - task_id: only
    bash: echo only
"#;

const BROKEN: &str = "dag_id: broken\ntasks:\n  - task_id: a\n    bash: [unclosed\n";

struct Fixture {
    app: Router,
    state: AppState,
    store: Arc<dyn Store>,
    changes: broadcast::Sender<StateChange>,
    _dir: TempDir,
}

impl Fixture {
    async fn new(files: &[(&str, &str)]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let dags = dir.path().join("dags");
        for (name, text) in files {
            let path = dags.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.unwrap());
        // Big enough for the 50,000-task DAG of the size tests.
        let options = updraft_dag::DagBagOptions {
            max_file_size: 16 * 1024 * 1024,
            ..Default::default()
        };
        let mut bag = updraft_dag::DagBag::with_options(&dags, options);
        bag.refresh();
        updraft_runs::record_dag_bag(store.as_ref(), &bag, true, t(0))
            .await
            .unwrap();
        let config = ServerConfig {
            keyring: None,
            source_sync: None,
            source_webhooks: Default::default(),
            bind: "127.0.0.1:0".parse().unwrap(),
            dags_folder: dags,
            logs_folder: dir.path().join("logs"),
            auth: updraft_server::authn::AuthSettings::disabled(),
        };
        let changes = broadcast::channel(64).0;
        let state = AppState::new(store.clone(), config, changes.clone(), Arc::new(|| {}));
        Fixture {
            app: updraft_server::router(state.clone()),
            state,
            store,
            changes,
            _dir: dir,
        }
    }

    async fn get(&self, uri: &str) -> (StatusCode, String) {
        self.get_as(uri, Identity::local_admin()).await
    }

    /// GET as `identity` (as an authentication layer would hand it to the handlers).
    async fn get_as(&self, uri: &str, identity: Identity) -> (StatusCode, String) {
        let request = Request::builder()
            .uri(uri)
            .extension(identity)
            .body(Body::empty())
            .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    /// The page's HTML (status 200 required), with minijinja's escaped `/` (`&#x2f;`, valid in
    /// attributes) written plainly, so URLs can be looked for as they are. Every other escape
    /// is kept.
    async fn page(&self, uri: &str) -> String {
        let (status, body) = self.get(uri).await;
        assert_eq!(status, StatusCode::OK, "GET {uri}:\n{body}");
        body.replace("&#x2f;", "/")
    }

    /// A manual run of `dag_id` at hour `hour` whose tasks end in the given states, each
    /// through a real try where the state ends one.
    async fn run(&self, dag_id: &str, hour: i64, states: &[(&str, TaskState)]) -> RunRow {
        let store = self.store.as_ref();
        let run = updraft_runs::trigger_run(
            store,
            dag_id,
            Some(format!("manual__{hour}")),
            Some(t(hour)),
            serde_json::json!({"note": "<conf>"}),
            t(hour),
        )
        .await
        .unwrap();
        store
            .force_run_state(run.id, RunState::Running, t(hour))
            .await
            .unwrap();
        for (task, state) in states {
            let key = TiKey {
                run_pk: run.id,
                task_id: task.to_string(),
                map_index: -1,
            };
            let to = |expected, new| TiTransition {
                task_id: task.to_string(),
                map_index: -1,
                expected,
                new,
            };
            if matches!(
                state,
                TaskState::Success | TaskState::Failed | TaskState::Running | TaskState::Skipped
            ) {
                store
                    .apply_transitions(
                        run.id,
                        &[to(TaskState::None, TaskState::Scheduled)],
                        t(hour),
                    )
                    .await
                    .unwrap();
                let queued = store
                    .queue(
                        std::slice::from_ref(&key),
                        FIXTURE_JOB,
                        &QueueLimits::default(),
                        t(hour),
                    )
                    .await
                    .unwrap();
                let n = queued[0].try_number;
                store
                    .mark_running(&key, n, Some(1), "worker-1", t(hour))
                    .await
                    .unwrap();
                if *state != TaskState::Running {
                    store
                        .finish_try(
                            &key,
                            n,
                            *state,
                            None,
                            t(hour) + chrono::Duration::minutes(5),
                        )
                        .await
                        .unwrap();
                }
            } else {
                store
                    .apply_transitions(run.id, &[to(TaskState::None, *state)], t(hour))
                    .await
                    .unwrap();
            }
        }
        run
    }
}

fn t(hours: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap() + chrono::Duration::hours(hours)
}

/// The text between the first `start` and the next `end` after it.
fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("no {start:?} in:\n{text}"))
        + start.len();
    let to = text[from..].find(end).map_or(text.len(), |i| from + i);
    &text[from..to]
}

#[tokio::test]
async fn dag_list_shows_dags_schedule_runs_and_import_errors_escaped() {
    let fx = Fixture::new(&[
        ("etl.yaml", ETL),
        ("team_b/other.yaml", OTHER),
        ("broken.yaml", BROKEN),
    ])
    .await;
    let first = fx.run("etl", 1, &[("extract", TaskState::Success)]).await;
    let second = fx.run("etl", 2, &[("extract", TaskState::Failed)]).await;
    fx.store
        .force_run_state(first.id, RunState::Success, t(3))
        .await
        .unwrap();
    fx.store
        .force_run_state(second.id, RunState::Failed, t(3))
        .await
        .unwrap();

    for uri in ["/", "/dags"] {
        let page = fx.page(uri).await;
        assert!(page.contains("<!doctype html>"));
        assert!(page.contains(r#"href="/dags/etl""#), "links to the DAG");
        assert!(page.contains(r#"href="/dags/other""#));
        assert!(page.contains("<code>@daily</code>"), "schedule shown");
        assert!(page.contains("team_b"), "tenant shown");
        // Description and tags are escaped, never markup.
        assert!(page.contains("Nightly &lt;script&gt;alert("), "{page}");
        assert!(!page.contains("<script>alert("));
        assert!(page.contains("&lt;b&gt;bold&lt;/b&gt;"));
        // Recent runs: one mark per run, colour class plus words, newest last.
        let recent = between(&page, r#"<tr data-dag-id="etl">"#, "</tr>");
        let success = recent
            .find(r#"data-state="success""#)
            .expect("success mark");
        let failed = recent.find(r#"data-state="failed""#).expect("failed mark");
        assert!(success < failed, "oldest run first");
        assert!(
            recent.contains("manual__2: failed"),
            "the mark says its state in words"
        );
        // New DAGs start paused here: the toggle is off and says so.
        assert!(recent.contains("switch-text\">paused<"));
        assert!(!recent.contains(" checked"));
        // Next run of a scheduled DAG.
        assert!(
            recent.contains("<time datetime="),
            "next run shown: {recent}"
        );
        // The import errors banner: file, line and message, linking to the full page.
        let banner = between(&page, r#"<section class="banner error""#, "</section>");
        assert!(banner.contains("broken.yaml"));
        assert!(banner.contains("line 4"), "{banner}");
        assert!(banner.contains(r#"href="/import-errors""#));
        // The page follows its DAGs' changes.
        assert!(
            page.contains(r#"data-events="/ui/events?dag_id=etl&amp;dag_id=other""#),
            "{page}"
        );
    }
}

#[tokio::test]
async fn dag_list_filters_by_search_tag_tenant_and_status() {
    let fx = Fixture::new(&[("etl.yaml", ETL), ("team_b/other.yaml", OTHER)]).await;
    let shown = |page: &str, dag: &str| page.contains(&format!(r#"<tr data-dag-id="{dag}">"#));

    let page = fx.page("/dags?search=ET").await;
    assert!(
        shown(&page, "etl") && !shown(&page, "other"),
        "search ignores case"
    );
    let page = fx.page("/dags?search=nightly").await;
    assert!(shown(&page, "etl"), "search looks at descriptions");
    let page = fx.page("/dags?tags=misc").await;
    assert!(!shown(&page, "etl") && shown(&page, "other"));
    assert!(page.contains(r#"class="tag selected""#));
    let page = fx.page("/dags?tenant=team_b").await;
    assert!(!shown(&page, "etl") && shown(&page, "other"));

    fx.store.set_paused("other", false).await.unwrap();
    let page = fx.page("/dags?status=active").await;
    assert!(!shown(&page, "etl") && shown(&page, "other"));
    let page = fx.page("/dags?status=paused").await;
    assert!(shown(&page, "etl") && !shown(&page, "other"));
    assert!(
        page.contains(r#"Active <span class="count">1</span>"#),
        "{page}"
    );

    let page = fx.page("/dags?search=nothing-matches").await;
    assert!(page.contains("No DAGs match."));
}

#[tokio::test]
async fn dag_list_pages_through_many_dags() {
    let files: Vec<(String, String)> = (0..60)
        .map(|i| {
            (
                format!("d{i:02}.yaml"),
                format!("dag_id: d{i:02}\ntasks:\n  - task_id: a\n    bash: echo\n"),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let fx = Fixture::new(&refs).await;
    let first = fx.page("/dags").await;
    assert!(first.contains(r#"data-dag-id="d00""#) && first.contains(r#"data-dag-id="d49""#));
    assert!(!first.contains(r#"data-dag-id="d50""#));
    assert!(first.contains("1–50 of 60"));
    let second = fx.page("/dags?page=2").await;
    assert!(second.contains(r#"data-dag-id="d50""#) && !second.contains(r#"data-dag-id="d49""#));
    assert!(
        second.contains(r#"<a href="/dags">1</a>"#),
        "page 1 is the plain list"
    );
}

#[tokio::test]
async fn grid_is_runs_by_tasks_coloured_by_state_with_words() {
    let fx = Fixture::new(&[("etl.yaml", ETL)]).await;
    fx.run(
        "etl",
        1,
        &[
            ("extract", TaskState::Success),
            ("transform", TaskState::Failed),
            ("load", TaskState::UpstreamFailed),
        ],
    )
    .await;
    fx.run("etl", 2, &[("extract", TaskState::Running)]).await;
    for uri in ["/dags/etl", "/dags/etl/grid"] {
        let page = fx.page(uri).await;
        assert!(page.contains(r#"aria-current="page">Grid<"#));
        // Rows in topological order.
        let order: Vec<usize> = ["extract", "transform", "load", "report"]
            .iter()
            .map(|t| page.find(&format!(r#"<tr data-task-id="{t}">"#)).expect(t))
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
        let extract = between(&page, r#"<tr data-task-id="extract">"#, "</tr>");
        let first = extract.find(r#"data-state="success""#).unwrap();
        let second = extract.find(r#"data-state="running""#).unwrap();
        assert!(first < second, "oldest run on the left");
        assert!(extract.contains(r#"title="extract in manual__1: success""#));
        let load = between(&page, r#"<tr data-task-id="load">"#, "</tr>");
        assert!(load.contains("cell st-upstream_failed"));
        assert!(load.contains("load in manual__1: upstream_failed"));
        assert!(load.contains("load in manual__2: no status"));
        // Run bars link to the runs and say their state.
        assert!(page.contains(r#"href="/dags/etl/runs/manual__1""#));
        // The legend names every state.
        for s in [
            "success",
            "failed",
            "running",
            "queued",
            "up_for_retry",
            "up_for_reschedule",
            "upstream_failed",
            "skipped",
            "scheduled",
            "removed",
            "no status",
        ] {
            assert!(page.contains(&format!("</span>{s}</li>")), "legend has {s}");
        }
        assert!(page.contains(r#"data-events="/ui/events?dag_id=etl""#));
    }
    let partial = fx.page("/dags/etl/grid?partial=1").await;
    assert!(
        !partial.contains("<html") && !partial.contains("<nav"),
        "only the live part"
    );
    assert!(partial.contains(r#"<tr data-task-id="extract">"#));
    let few = fx.page("/dags/etl/grid?num_runs=1").await;
    assert!(!few.contains("manual__1"), "only the newest run");
}

/// A DAG of `n` tasks: `n - 1` independent ones, all upstream of a last one.
fn huge_dag(n: usize) -> String {
    let mut text = String::from("dag_id: huge\ntasks:\n");
    for t in 0..n - 1 {
        text.push_str(&format!("  - {{task_id: t{t:05}, noop: true}}\n"));
    }
    text.push_str("  - task_id: last\n    noop: true\n    upstream: [");
    let ups: Vec<String> = (0..n - 1).map(|t| format!("t{t:05}")).collect();
    text.push_str(&ups.join(", "));
    text.push_str("]\n");
    text
}

/// Most bytes a grid or graph page of a huge run may take.
const HUGE_PAGE_BOUND: usize = 300 * 1024;

#[tokio::test]
async fn the_grid_and_graph_of_a_50000_task_run_stay_small() {
    const TASKS: usize = 50_000;
    let fx = Fixture::new(&[("huge.yaml", &huge_dag(TASKS))]).await;
    fx.run("huge", 1, &[("t00000", TaskState::Success)]).await;

    let grid = fx.page("/dags/huge/grid").await;
    assert!(
        grid.len() < HUGE_PAGE_BOUND,
        "grid page of {} bytes",
        grid.len()
    );
    assert!(
        grid.contains("Tasks 1–200 of 50000"),
        "a pager over the task rows"
    );
    assert!(grid.contains(r#"<tr data-task-id="t00000">"#));
    assert!(grid.contains(r#"title="t00000 in manual__1: success""#));
    assert!(
        !grid.contains(r#"<tr data-task-id="t00200">"#),
        "one page of rows"
    );
    assert!(grid.contains(r#"href="/dags/huge/grid?num_runs=25&amp;page=2" rel="next""#));

    let last = fx.page("/dags/huge/grid?page=250").await;
    assert!(
        last.len() < HUGE_PAGE_BOUND,
        "grid page of {} bytes",
        last.len()
    );
    assert!(last.contains("Tasks 49801–50000 of 50000"));
    assert!(
        last.contains(r#"<tr data-task-id="last">"#),
        "the join comes last"
    );
    assert!(last.contains(r#"rel="prev""#) && !last.contains(r#"rel="next""#));
    let live = fx.page("/dags/huge/grid?page=250&partial=1").await;
    assert!(
        live.contains(r#"<tr data-task-id="last">"#),
        "the live part keeps its page"
    );

    let graph = fx.page("/dags/huge/graph").await;
    assert!(
        graph.len() < HUGE_PAGE_BOUND,
        "graph page of {} bytes",
        graph.len()
    );
    assert!(
        !graph.contains(r#"<svg id="graph""#),
        "not drawn node by node"
    );
    assert!(graph.contains("50000 tasks and 49999 dependencies"));
    let groups = between(&graph, "<tbody>", "</tbody>");
    assert_eq!(groups.matches("<tr>").count(), 2, "two depths: {groups}");
    assert!(groups.contains("<td>49999</td>") && groups.contains("<td>1</td>"));
    assert!(
        graph.contains(r#"data-state="success">success: 1</span>"#),
        "{graph}"
    );
}

#[tokio::test]
async fn graph_draws_every_task_and_edge_left_to_right_with_states() {
    let fx = Fixture::new(&[("etl.yaml", ETL)]).await;
    let run = fx
        .run(
            "etl",
            1,
            &[
                ("extract", TaskState::Success),
                ("transform", TaskState::Running),
            ],
        )
        .await;
    let page = fx
        .page(&format!("/dags/etl/graph?run_id={}", run.run_id))
        .await;
    for (task, state, words) in [
        ("extract", "success", "success"),
        ("transform", "running", "running"),
        ("load", "none", "no status"),
    ] {
        let node = between(&page, &format!(r#"data-task-id="{task}""#), "</g>");
        assert!(node.contains(&format!(r#"data-state="{state}""#)), "{node}");
        assert!(
            node.contains(&format!(">{words}</text>")),
            "state in words: {node}"
        );
        assert!(node.contains(&format!(r#"href="/dags/etl/runs/manual__1/tasks/{task}""#)));
    }
    for (from, to) in [
        ("extract", "transform"),
        ("transform", "load"),
        ("load", "report"),
        ("extract", "report"),
    ] {
        assert!(
            page.contains(&format!(r#"data-from="{from}" data-to="{to}""#)),
            "edge {from}->{to}"
        );
    }
    // Edges go left to right: compare the nodes' x from their transforms.
    let x_of = |task: &str| -> f64 {
        let node = between(&page, &format!(r#"data-task-id="{task}""#), ">");
        between(node, "translate(", ",").parse().unwrap()
    };
    assert!(x_of("extract") < x_of("transform"));
    assert!(x_of("transform") < x_of("load"));
    assert!(x_of("load") < x_of("report"));

    // Without a run: the current definition, no states.
    let fx2 = Fixture::new(&[("etl.yaml", ETL)]).await;
    let page = fx2.page("/dags/etl/graph").await;
    assert!(page.contains("No runs yet"));
    assert!(page.contains(r#"data-task-id="report""#));
    let (status, _) = fx2.get("/dags/etl/graph?run_id=nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[test]
fn the_graph_of_a_dag_points_every_edge_to_the_right() {
    let dag = updraft_dag::parse_dag("default", "etl.yaml", ETL).unwrap();
    let g = updraft_server::ui::graph(&dag, None, &[]);
    assert_eq!(g.nodes.len(), 4);
    assert_eq!(g.edges.len(), 4);
    for e in &g.edges {
        let from = g.nodes.iter().find(|n| n.task_id == e.from).unwrap();
        let to = g.nodes.iter().find(|n| n.task_id == e.to).unwrap();
        assert!(from.x + from.width < to.x, "{} -> {}", e.from, e.to);
        assert!(from.layer < to.layer);
    }
}

#[tokio::test]
async fn gantt_shows_each_try_as_a_bar() {
    let fx = Fixture::new(&[("etl.yaml", ETL)]).await;
    fx.run(
        "etl",
        1,
        &[
            ("extract", TaskState::Success),
            ("transform", TaskState::Failed),
        ],
    )
    .await;
    let page = fx.page("/dags/etl/gantt").await;
    let extract = between(&page, ">extract</a>", "</div>\n  </div>");
    assert!(
        extract.contains(r#"class="gantt-bar st-success""#),
        "{extract}"
    );
    assert!(extract.contains("extract try 1: success"));
    assert!(page.contains(r#"class="gantt-bar st-failed""#));
    let empty = Fixture::new(&[("etl.yaml", ETL)]).await;
    assert!(empty.page("/dags/etl/gantt").await.contains("No runs yet."));
}

#[tokio::test]
async fn code_view_shows_the_recorded_source_escaped() {
    let fx = Fixture::new(&[("etl.yaml", ETL)]).await;
    let page = fx.page("/dags/etl/code").await;
    assert!(
        page.contains("echo &quot;extract &lt;stuff&gt;&quot;"),
        "{page}"
    );
    assert!(page.contains(r#"id="L1""#));
    assert!(page.contains("(current)"));
    let (status, body) = fx.get("/dags/etl/code?version=nope").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("No source recorded for version"));
}

#[tokio::test]
async fn runs_run_and_task_instance_pages() {
    let fx = Fixture::new(&[("etl.yaml", ETL)]).await;
    fx.run("etl", 1, &[("extract", TaskState::Success)]).await;
    let second = fx.run("etl", 2, &[("extract", TaskState::Failed)]).await;
    fx.store
        .force_run_state(second.id, RunState::Failed, t(3))
        .await
        .unwrap();

    let runs = fx.page("/dags/etl/runs").await;
    assert!(
        runs.find("manual__2").unwrap() < runs.find("manual__1").unwrap(),
        "newest first"
    );
    assert!(runs.contains(r#"data-action="delete-run" data-run-id="manual__1""#));
    let failed_only = fx.page("/dags/etl/runs?state=failed").await;
    assert!(!failed_only.contains(r#"<tr data-run-id="manual__1">"#));
    assert!(failed_only.contains(r#"<tr data-run-id="manual__2">"#));

    let run = fx.page("/dags/etl/runs/manual__1").await;
    assert!(run.contains(r#"data-dag-api="/api/v2/dags/etl""#));
    assert!(run.contains(r#"data-run-id="manual__1""#));
    assert!(run.contains("&quot;&lt;conf&gt;&quot;"), "conf escaped");
    let extract = between(&run, r#"<tr data-ti-row data-task-id="extract">"#, "</tr>");
    assert!(extract.contains(">success</span>"));
    assert!(extract.contains(r#"data-action="mark" data-state="failed""#));
    assert!(extract.contains(r#"data-action="clear""#));

    let ti = fx.page("/dags/etl/runs/manual__1/tasks/extract").await;
    assert!(ti.contains(r#"data-ti-state="success""#));
    let tries = between(&ti, r#"<tr data-try="1">"#, "</tr>");
    assert!(
        tries.contains(">success</span>") && tries.contains("worker-1") && tries.contains("5m 00s"),
        "{tries}"
    );
    assert!(ti.contains(
        r#"data-log-api="/api/v2/dags/etl/dagRuns/manual__1/taskInstances/extract/logs/1""#
    ));
    assert!(ti.contains(r#"data-follow="true""#));
    assert!(
        ti.contains("echo &quot;extract &lt;stuff&gt;&quot;"),
        "the task's command, escaped"
    );

    let never = fx.page("/dags/etl/runs/manual__1/tasks/report").await;
    assert!(never.contains("has not started yet"));
    assert!(!never.contains(r#"id="log""#));

    for missing in [
        "/dags/etl/runs/nope",
        "/dags/etl/runs/manual__1/tasks/nope",
        "/dags/nope",
        "/dags/nope/graph",
    ] {
        let (status, body) = fx.get(missing).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
        assert!(body.contains("404"), "an HTML error page: {body}");
    }
}

#[tokio::test]
async fn run_ids_with_url_characters_round_trip() {
    let fx = Fixture::new(&[("other.yaml", OTHER)]).await;
    let run = updraft_runs::trigger_run(
        fx.store.as_ref(),
        "other",
        Some("manual__2024-03-01T00:00:00+00:00".to_string()),
        None,
        serde_json::json!({}),
        t(0),
    )
    .await
    .unwrap();
    let grid = fx.page("/dags/other/grid").await;
    let url = "/dags/other/runs/manual__2024-03-01T00%3A00%3A00%2B00%3A00";
    assert!(grid.contains(url), "{grid}");
    let page = fx.page(url).await;
    assert!(page.contains(&run.run_id));
    fx.page(&format!("{url}/tasks/only")).await;
}

#[tokio::test]
async fn trigger_form_is_generated_from_params() {
    let fx = Fixture::new(&[("etl.yaml", ETL), ("other.yaml", OTHER)]).await;
    let page = fx.page("/dags/etl/trigger").await;
    assert!(page.contains(r#"data-api="/api/v2/dags/etl/dagRuns""#));
    let limit = between(&page, r#"data-param="limit""#, "</div>");
    assert!(limit.contains(r#"data-kind="integer""#));
    assert!(limit.contains(r#"type="number""#) && limit.contains(r#"value="10""#));
    assert!(
        limit.contains(r#"min="1.0""#) || limit.contains(r#"min="1""#),
        "{limit}"
    );
    assert!(limit.contains("≥ 1") && limit.contains("≤ 100"));
    assert!(
        limit.contains("How many &lt;rows&gt;"),
        "description escaped"
    );
    let mode = between(&page, r#"data-param="mode""#, "</div>");
    assert!(
        mode.contains("<select")
            && mode.contains(r#"<option value="&quot;fast&quot;" selected>fast</option>"#),
        "{mode}"
    );
    let dry = between(&page, r#"data-param="dry_run""#, "</div>");
    assert!(dry.contains(r#"type="checkbox""#) && !dry.contains("checked"));
    assert!(
        page.contains("novalidate"),
        "bounds are checked by the API, whose message is shown"
    );
    let plain = fx.page("/dags/other/trigger").await;
    assert!(
        plain.contains("data-conf-json"),
        "a DAG without params gets a conf box"
    );
}

#[tokio::test]
async fn pools_and_import_errors_pages() {
    let fx = Fixture::new(&[("broken.yaml", BROKEN), ("etl.yaml", ETL)]).await;
    fx.run("etl", 1, &[("extract", TaskState::Running)]).await;
    let pools = fx.page("/pools").await;
    let default = between(&pools, r#"<tr data-pool="default_pool">"#, "</tr>");
    assert!(
        default.contains("<td>128</td>")
            && default.contains("<td>1</td>")
            && default.contains("<td>127</td>"),
        "{default}"
    );
    assert!(pools.contains(r#"data-events="/ui/events""#));

    let errors = fx.page("/import-errors").await;
    assert!(errors.contains("<code>broken.yaml</code>"));
    assert!(errors.contains("line 4"));
    assert!(errors.contains(r#"<span class="line culprit"><span class="ln" aria-hidden="true">4</span>    bash: [unclosed"#), "{errors}");
}

#[tokio::test]
async fn import_error_context_is_never_read_outside_the_dags_folder() {
    let fx = Fixture::new(&[("broken.yaml", BROKEN)]).await;
    let dags = fx.state.config.dags_folder.clone();
    // The file is swapped for a link out of the folder after its error was recorded.
    std::fs::remove_file(dags.join("broken.yaml")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dags.join("broken.yaml")).unwrap();
    let errors = fx.page("/import-errors").await;
    assert!(errors.contains("<code>broken.yaml</code>"), "{errors}");
    assert!(
        !errors.contains("class=\"line"),
        "no context shown: {errors}"
    );
    for line in std::fs::read_to_string("/etc/passwd").unwrap().lines() {
        assert!(
            line.len() < 8 || !errors.contains(line),
            "quotes /etc/passwd: {errors}"
        );
    }
}

#[tokio::test]
async fn static_assets_are_served_and_versioned() {
    let fx = Fixture::new(&[]).await;
    let page = fx.page("/dags").await;
    let css = between(&page, r#"<link rel="stylesheet" href=""#, "\"").replace("&amp;", "&");
    let js = between(&page, r#"<script src=""#, "\"").replace("&amp;", "&");
    assert!(css.starts_with("/ui/static/app.css?v="));
    let (status, body) = fx.get(&css).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("--st-success: #008000"));
    let (status, body) = fx.get(&js).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("EventSource"));
    assert_eq!(fx.get("/ui/static/nope.js").await.0, StatusCode::NOT_FOUND);
}

/// Server-Sent Events read from a response body, one event at a time.
struct Events {
    body: Body,
    buffer: String,
}

impl Events {
    async fn open(fx: &Fixture, uri: &str) -> Events {
        Events::open_as(fx, uri, Identity::local_admin()).await
    }

    async fn open_as(fx: &Fixture, uri: &str, identity: Identity) -> Events {
        let request = Request::builder()
            .uri(uri)
            .extension(identity)
            .body(Body::empty())
            .unwrap();
        let response = fx.app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Events {
            body: response.into_body(),
            buffer: String::new(),
        }
    }

    /// The next event's (name, data), skipping keep-alive comments; panics after 10 s.
    async fn next(&mut self) -> (String, String) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .map(|v| v.trim().to_string())
                };
                if let Some(event) = field("event:") {
                    return (event, field("data:").unwrap_or_default());
                }
                continue;
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .unwrap_or_else(|_| panic!("no event within 10s; pending: {:?}", self.buffer))
                .expect("the stream ended")
                .unwrap();
            if let Ok(data) = frame.into_data() {
                self.buffer.push_str(&String::from_utf8_lossy(&data));
            }
        }
    }
}

#[tokio::test]
async fn events_report_changes_of_the_dags_asked_for_coalesced() {
    let fx = Fixture::new(&[("etl.yaml", ETL), ("other.yaml", OTHER)]).await;
    let etl = fx.run("etl", 1, &[]).await;
    let other = fx.run("other", 1, &[]).await;

    let mut events = Events::open(&fx, "/ui/events?dag_id=etl").await;
    assert_eq!(events.next().await.0, "ready");
    // A change of another DAG is not reported; changes of etl arriving together are one event.
    fx.changes.send(StateChange { run_pk: other.id }).unwrap();
    for _ in 0..5 {
        fx.changes.send(StateChange { run_pk: etl.id }).unwrap();
    }
    let (name, data) = events.next().await;
    assert_eq!(name, "change");
    let data: serde_json::Value = serde_json::from_str(&data).unwrap();
    assert_eq!(data["dag_ids"], serde_json::json!(["etl"]));
    assert_eq!(data["run_ids"], serde_json::json!(["manual__1"]));
    assert_eq!(data["all"], false);
    // Only other's change now: nothing for this follower, so the next event is etl's again.
    fx.changes.send(StateChange { run_pk: other.id }).unwrap();
    fx.changes.send(StateChange { run_pk: etl.id }).unwrap();
    let (_, data) = events.next().await;
    assert!(data.contains(r#""dag_ids":["etl"]"#), "{data}");

    // Followers of every DAG see other's changes too.
    let mut all = Events::open(&fx, "/ui/events").await;
    assert_eq!(all.next().await.0, "ready");
    fx.changes.send(StateChange { run_pk: other.id }).unwrap();
    let (name, data) = all.next().await;
    assert_eq!(name, "change");
    assert!(data.contains(r#""dag_ids":["other"]"#), "{data}");
}

#[tokio::test]
async fn the_store_watcher_publishes_changes_recorded_by_other_processes() {
    let fx = Fixture::new(&[("etl.yaml", ETL)]).await;
    let (tx, mut rx) = broadcast::channel(64);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let since = fx.store.latest_run_change().await.unwrap();
    let watcher = tokio::spawn(updraft_server::live::follow_store_changes(
        fx.store.clone(),
        tx,
        since,
        Duration::from_millis(20),
        async move {
            let _ = stop_rx.await;
        },
    ));
    // A change recorded "elsewhere", straight into the store.
    let run = fx.run("etl", 1, &[("extract", TaskState::Success)]).await;
    let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a change within 10s")
        .unwrap();
    assert_eq!(got.run_pk, run.id);
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), watcher)
        .await
        .expect("the watcher stops when asked")
        .unwrap();
}

#[tokio::test]
async fn open_event_streams_do_not_hold_up_shutdown() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fx = Fixture::new(&[("other.yaml", OTHER)]).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(updraft_server::serve(
        listener,
        fx.state.clone(),
        async move {
            let _ = stop_rx.await;
        },
    ));
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /ui/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains("event: ready") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("the stream answers")
            .unwrap();
        assert!(n > 0, "the stream ended early");
        seen.extend_from_slice(&buf[..n]);
    }
    // The page stays open while the server is asked to stop.
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server stops although a page follows its events")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn pages_show_only_what_the_caller_may_see_and_do() {
    let fx = Fixture::new(&[
        ("etl.yaml", ETL),
        ("team_b/other.yaml", OTHER),
        ("broken.yaml", BROKEN),
    ])
    .await;
    let team_b = Identity::new("bea", vec![Grant::for_tenant(Role::User, "team_b")]);
    let (status, list) = fx.get_as("/dags", team_b.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(list.contains(r#"<tr data-dag-id="other">"#));
    assert!(!list.contains("etl"), "another tenant's DAG is not listed");
    assert!(!list.contains("broken.yaml"), "nor its import errors");
    let (status, _) = fx.get_as("/dags/etl/grid", team_b.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = fx.get_as("/dags/other/grid", team_b).await;
    assert_eq!(status, StatusCode::OK);

    let viewer = Identity::new("vic", vec![Grant::everywhere(Role::Viewer)]);
    let (_, list) = fx.get_as("/dags", viewer.clone()).await;
    let row = between(&list, r#"<tr data-dag-id="etl">"#, "</tr>");
    assert!(row.contains(" disabled"), "a viewer cannot pause: {row}");
    assert!(!row.contains("Trigger"), "nor trigger");
    fx.run("etl", 1, &[("extract", TaskState::Success)]).await;
    let (_, run) = fx.get_as("/dags/etl/runs/manual__1", viewer.clone()).await;
    assert!(
        !run.contains("data-action="),
        "no action buttons for a viewer"
    );
    let (_, admin_run) = fx.get("/dags/etl/runs/manual__1").await;
    assert!(admin_run.contains(r#"data-action="delete-run""#));
}

#[tokio::test]
async fn pools_import_errors_and_missing_pages_keep_tenants_apart() {
    let fx = Fixture::new(&[
        ("etl.yaml", ETL),
        ("team_b/other.yaml", OTHER),
        ("team_b/broken.yaml", BROKEN),
        ("broken.yaml", BROKEN),
    ])
    .await;
    for (name, tenant) in [("default_gpu", "default"), ("b_gpu", "team_b")] {
        fx.store
            .create_pool(&updraft_store::PoolRow {
                name: name.into(),
                slots: 1,
                description: String::new(),
                tenant: Some(tenant.into()),
            })
            .await
            .unwrap();
    }
    let team_b = Identity::new("bea", vec![Grant::for_tenant(Role::Viewer, "team_b")]);
    let (status, pools) = fx.get_as("/pools", team_b.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(pools.contains(r#"<tr data-pool="b_gpu">"#), "its own pool");
    assert!(
        pools.contains(r#"<tr data-pool="default_pool">"#),
        "shared pools"
    );
    assert!(!pools.contains("default_gpu"), "not another tenant's pool");

    let (_, errors) = fx.get_as("/import-errors", team_b.clone()).await;
    assert!(
        errors.contains("<code>team_b&#x2f;broken.yaml</code>"),
        "{errors}"
    );
    assert!(
        !errors.contains("<code>broken.yaml</code>"),
        "not another tenant's"
    );

    // Another tenant's DAG reads exactly like one that does not exist.
    let (hidden_status, hidden) = fx.get_as("/dags/etl/grid", team_b.clone()).await;
    let (missing_status, missing) = fx.get_as("/dags/nope/grid", team_b).await;
    assert_eq!(
        (hidden_status, missing_status),
        (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND)
    );
    assert_eq!(
        hidden.replace("etl", "<id>"),
        missing.replace("nope", "<id>")
    );
}

#[tokio::test]
async fn the_live_stream_reports_only_the_callers_tenants() {
    let fx = Fixture::new(&[("etl.yaml", ETL), ("team_b/other.yaml", OTHER)]).await;
    let etl = fx.run("etl", 1, &[]).await;
    let other = fx.run("other", 1, &[]).await;
    let team_b = Identity::new("bea", vec![Grant::for_tenant(Role::Viewer, "team_b")]);
    // Even asking for etl by name.
    let mut events = Events::open_as(&fx, "/ui/events?dag_id=etl&dag_id=other", team_b).await;
    assert_eq!(events.next().await.0, "ready");
    fx.changes.send(StateChange { run_pk: etl.id }).unwrap();
    fx.changes.send(StateChange { run_pk: other.id }).unwrap();
    let (name, data) = events.next().await;
    assert_eq!(name, "change");
    let data: serde_json::Value = serde_json::from_str(&data).unwrap();
    assert_eq!(data["dag_ids"], serde_json::json!(["other"]), "{data}");
    // etl's change alone reaches this follower as nothing: the next event is other's again.
    fx.changes.send(StateChange { run_pk: etl.id }).unwrap();
    fx.changes.send(StateChange { run_pk: other.id }).unwrap();
    let (_, data) = events.next().await;
    assert!(data.contains(r#""dag_ids":["other"]"#), "{data}");
}

#[tokio::test]
async fn the_task_page_shows_what_the_try_pushed_escaped_masked_and_cut() {
    use updraft_store::{NOT_MAPPED, TryXComs, XComEntry};
    let fx = Fixture::new(&[("etl.yaml", ETL)]).await;
    let run = fx.run("etl", 1, &[("extract", TaskState::Success)]).await;
    let entry = |key: &str, value: serde_json::Value| XComEntry {
        key: key.into(),
        value: value.to_string(),
    };
    fx.store
        .record_xcoms(
            &[TryXComs {
                run_pk: run.id,
                task_id: "extract".into(),
                try_number: 1,
                map_index: NOT_MAPPED,
                entries: vec![
                    entry("return_value", serde_json::json!("<b>rows</b>")),
                    entry("api_token", serde_json::json!("tok-123456789")),
                    entry("long", serde_json::json!("y".repeat(1000))),
                ],
            }],
            t(2),
        )
        .await
        .unwrap();
    let page = fx.page("/dags/etl/runs/manual__1/tasks/extract").await;
    let row = between(&page, r#"<tr data-xcom-key="return_value">"#, "</tr>");
    assert!(
        row.contains("&lt;b&gt;rows&lt;&#x2f;b&gt;") || row.contains("&lt;b&gt;rows&lt;/b&gt;"),
        "escaped: {row}"
    );
    assert!(!page.contains("<b>rows</b>"));
    let secret = between(&page, r#"<tr data-xcom-key="api_token">"#, "</tr>");
    assert!(
        secret.contains("***") && !page.contains("tok-123456789"),
        "{secret}"
    );
    let long = between(&page, r#"<tr data-xcom-key="long">"#, "</tr>");
    assert!(
        long.contains(&"y".repeat(200)) && !long.contains(&"y".repeat(201)),
        "cut"
    );
    assert!(long.contains('…'));
    let other = fx.page("/dags/etl/runs/manual__1/tasks/transform").await;
    assert!(other.contains("Nothing pushed."));
}

const GROUPED: &str = r#"
dag_id: grouped
tasks:
  - {task_id: start, bash: "true"}
  - {task_id: side, bash: "true", upstream: g.a}
  - group_id: g
    tooltip: the group
    upstream: start
    tasks:
      - {task_id: a, bash: "true"}
      - group_id: h
        upstream: a
        tasks:
          - {task_id: x, bash: "true"}
  - {task_id: end, bash: "true", upstream: [g, side]}
"#;

#[tokio::test]
async fn task_groups_are_boxes_in_the_graph_that_collapse_and_rows_in_the_grid() {
    let fx = Fixture::new(&[("grouped.yaml", GROUPED)]).await;
    fx.run(
        "grouped",
        1,
        &[("start", TaskState::Success), ("g.a", TaskState::Failed)],
    )
    .await;

    // A small DAG starts expanded: every task drawn, a box per group, each box a link to the
    // page with that group collapsed.
    let page = fx.page("/dags/grouped/graph").await;
    for task in ["start", "side", "g.a", "g.h.x", "end"] {
        assert!(
            page.contains(&format!(r#"data-task-id="{task}""#)),
            "{task}"
        );
    }
    assert!(
        page.contains(r#"class="group-box" data-group-id="g""#),
        "{page}"
    );
    assert!(page.contains(r#"class="group-box" data-group-id="g.h""#));
    assert!(!page.contains("group-node"));
    let toggle = between(&page, r#"<a class="group-toggle" href=""#, r#"""#);
    assert!(toggle.ends_with("groups=g"), "{toggle}");

    // Collapsed: g is one node standing for its three tasks, with the edges of its members.
    let page = fx.page(&toggle.replace("&amp;", "&")).await;
    assert!(page.contains(r#"data-group-id="g""#), "{page}");
    assert!(page.contains("group-node"));
    assert!(!page.contains(r#"data-task-id="g.a""#));
    assert!(!page.contains(r#"data-task-id="g.h.x""#));
    assert!(!page.contains("group-box"));
    assert!(page.contains(r#"data-from="start" data-to="g""#), "{page}");
    assert!(page.contains(r#"data-from="g" data-to="side""#));
    assert!(page.contains(r#"data-from="g" data-to="end""#));
    // One member failed: the group shows failed, and its link expands it again.
    let node = between(&page, r#"group-node""#, "</g>");
    assert!(node.contains(r#"data-state="failed""#), "{node}");
    assert!(node.contains("0 of 2 succeeded"), "{node}");
    assert!(node.contains("groups=\""), "{node}");
    // The live refresh keeps the view.
    assert!(page.contains("groups=g\""), "{page}");

    // The grid keeps a group's tasks together under a row for the group, ids shown relative.
    let grid = fx.page("/dags/grouped/grid").await;
    let rows: Vec<&str> = grid
        .match_indices("<tr ")
        .map(|(i, _)| &grid[i..i + grid[i..].find('>').unwrap()])
        .collect();
    let expected = [
        r#"<tr data-task-id="start""#,
        r#"<tr class="group-row" data-group-id="g""#,
        r#"<tr data-task-id="g.a""#,
        r#"<tr class="group-row" data-group-id="g.h""#,
        r#"<tr data-task-id="g.h.x""#,
        r#"<tr data-task-id="side""#,
        r#"<tr data-task-id="end""#,
    ];
    assert_eq!(rows, expected);
    assert!(
        grid.contains(r#"class="task-col depth-2" title="g.h.x">x</th>"#),
        "{grid}"
    );
}

#[tokio::test]
async fn the_assets_pages_show_producers_consumers_and_events_of_visible_tenants_only() {
    use updraft_store::{AssetRefKind, AssetReference, NewAssetEvent};
    // The pages escape `/` too.
    let esc = |s: &str| s.replace('/', "&#x2f;");
    let fx = Fixture::new(&[("etl.yaml", ETL), ("team_b/other.yaml", OTHER)]).await;
    let reference = |tenant: &str, dag_id: &str, task_id: &str, kind, uri: &str| AssetReference {
        tenant: tenant.into(),
        dag_id: dag_id.into(),
        task_id: task_id.into(),
        kind,
        uri: uri.into(),
    };
    fx.store
        .replace_asset_references(
            &[
                reference(
                    "default",
                    "etl",
                    "load",
                    AssetRefKind::Outlet,
                    "s3://lake/orders",
                ),
                reference(
                    "team_b",
                    "other",
                    "",
                    AssetRefKind::Schedule,
                    "s3://b/<secret>",
                ),
            ],
            t(0),
        )
        .await
        .unwrap();
    let recorded = fx
        .store
        .record_asset_events(&[NewAssetEvent {
            tenant: "default".into(),
            uri: "s3://lake/orders".into(),
            source_dag_id: Some("etl".into()),
            source_run_id: Some("scheduled__2024-01-01".into()),
            source_task_id: Some("load".into()),
            source_map_index: -1,
            extra: serde_json::json!({"rows": 42}).as_object().unwrap().clone(),
            timestamp: t(60),
            ..NewAssetEvent::default()
        }])
        .await
        .unwrap();

    let (status, list) = fx.get("/assets").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        list.contains(&esc(r#"<tr data-asset="s3://lake/orders">"#)),
        "{list}"
    );
    assert!(
        list.contains(&format!(
            r#"<a href="{}">etl</a>.load"#,
            esc("/dags/etl/grid")
        )),
        "{list}"
    );
    assert!(
        list.contains(&esc("s3://b/&lt;secret&gt;")),
        "the admin sees every tenant's, escaped"
    );
    let asset = format!("/assets/{}", recorded[0].asset_id);
    let (status, page) = fx.get(&asset).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains(&format!(
            r#"<a href="{}">etl.load</a>"#,
            esc("/dags/etl/runs/scheduled__2024-01-01/tasks/load")
        )),
        "{page}"
    );
    assert!(
        page.contains("&quot;rows&quot;:42"),
        "the event's extra: {page}"
    );

    let team_b = Identity::new("bea", vec![Grant::for_tenant(Role::Viewer, "team_b")]);
    let (status, theirs) = fx.get_as("/assets", team_b.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        theirs.contains(&esc("s3://b/&lt;secret&gt;")),
        "its own asset"
    );
    assert!(!theirs.contains(&esc("s3://lake")), "not another tenant's");
    let (hidden, _) = fx.get_as(&asset, team_b).await;
    let (missing, _) = fx.get("/assets/999999").await;
    assert_eq!(
        (hidden, missing),
        (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND)
    );
}
