//! How fast the server answers with a large installation recorded: 1,000 DAGs and 100,000
//! task instances (20 finished runs of 5 tasks per DAG). Prints one JSON line per page with
//! the median, p95 and max over repeated requests.
//!
//! Run: `cargo bench -p updraft-server --bench pages`. The database is seeded through the
//! store on tmpfs (`/dev/shm`) when available so seeding is quick; reads do not depend on it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use updraft_core::{RunState, RunType, TaskState};
use updraft_server::{AppState, ServerConfig};
use updraft_store::{NewRun, NewTi, SqliteStore, Store, TiTransition};

const DAGS: usize = 1_000;
const RUNS_PER_DAG: usize = 20;
const TASKS_PER_DAG: usize = 5;
const REPEAT: usize = 30;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(bench());
}

async fn bench() {
    let base = if Path::new("/dev/shm").is_dir() {
        Path::new("/dev/shm")
    } else {
        Path::new("/tmp")
    };
    let home = tempfile::Builder::new()
        .prefix("updraft-bench-")
        .tempdir_in(base)
        .expect("temp home");
    let dags = home.path().join("dags");
    write_dag_files(&dags);
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&home.path().join("updraft.db"))
            .await
            .expect("open store"),
    );
    store.migrate().await.expect("migrate");
    let seeded = Instant::now();
    let first_dag = seed(store.as_ref(), &dags).await;
    eprintln!(
        "seeded {DAGS} DAGs, {} task instances in {:?}",
        DAGS * RUNS_PER_DAG * TASKS_PER_DAG,
        seeded.elapsed()
    );

    let config = ServerConfig {
        keyring: None,
        source_sync: None,
        source_webhooks: Default::default(),
        bind: "127.0.0.1:0".parse().expect("address"),
        dags_folder: dags.clone(),
        logs_folder: home.path().join("logs"),
        auth: updraft_server::authn::AuthSettings::disabled(),
    };
    let listener = updraft_server::listen(&config).await.expect("listen");
    let addr = listener.local_addr().expect("local addr");
    let state = AppState::new(
        store,
        config,
        tokio::sync::broadcast::channel(16).0,
        Arc::new(|| {}),
    );
    tokio::spawn(updraft_server::serve(
        listener,
        state,
        std::future::pending(),
    ));

    let pages = [
        ("dag_list_page", "/".to_string()),
        ("grid_view", format!("/dags/{first_dag}/grid")),
        ("api_list_100_dags", "/api/v2/dags?limit=100".to_string()),
    ];
    for (name, path) in pages {
        let timings = tokio::task::spawn_blocking(move || measure(addr, &path))
            .await
            .expect("measuring");
        report(name, &timings);
    }
}

fn write_dag_files(folder: &Path) {
    for d in 0..DAGS {
        let tenant = format!("tenant_{}", d % 10);
        let dir = folder.join(&tenant);
        std::fs::create_dir_all(&dir).expect("dags folder");
        let mut text = format!(
            "dag_id: bench_{d:04}\nschedule: \"@daily\"\nstart_date: 2024-01-01\ntags: [bench, t{}]\ntasks:\n",
            d % 7
        );
        for t in 0..TASKS_PER_DAG {
            text.push_str(&format!("  - task_id: task_{t}\n    noop: true\n"));
            if t > 0 {
                text.push_str(&format!("    upstream: [task_{}]\n", t - 1));
            }
        }
        std::fs::write(dir.join(format!("bench_{d:04}.yaml")), text).expect("dag file");
    }
}

/// Records every DAG and its finished runs; returns one dag_id to look at.
async fn seed(store: &dyn Store, folder: &Path) -> String {
    let mut bag = updraft_dag::DagBag::new(folder);
    bag.refresh();
    updraft_runs::record_dag_bag(store, &bag, false, Utc::now())
        .await
        .expect("sync");
    let start = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
    for loaded in bag.dags() {
        let dag = &loaded.dag;
        let tis: Vec<NewTi> = dag
            .tasks
            .iter()
            .map(|t| NewTi {
                task_id: t.task_id.clone(),
                max_tries: 1,
                pool: t.pool.clone(),
                pool_slots: 1,
                priority_weight: 1,
            })
            .collect();
        for r in 0..RUNS_PER_DAG {
            let day = start + chrono::Duration::days(r as i64);
            let run = NewRun {
                dag_id: dag.dag_id.clone(),
                tenant: dag.tenant.clone(),
                run_id: format!("scheduled__{}", day.to_rfc3339()),
                run_type: RunType::Scheduled,
                version: loaded.version.clone(),
                logical_date: day,
                data_interval_start: day,
                data_interval_end: day + chrono::Duration::days(1),
                conf: serde_json::json!({}),
            };
            let row = store.create_run(&run, &tis, Utc::now()).await.expect("run");
            store
                .force_run_state(row.id, RunState::Running, Utc::now())
                .await
                .expect("running");
            let done: Vec<TiTransition> = dag
                .tasks
                .iter()
                .map(|t| TiTransition {
                    task_id: t.task_id.clone(),
                    map_index: -1,
                    expected: TaskState::None,
                    new: if r % 5 == 4 {
                        TaskState::Failed
                    } else {
                        TaskState::Success
                    },
                })
                .collect();
            store
                .apply_transitions(row.id, &done, Utc::now())
                .await
                .expect("states");
            let state = if r % 5 == 4 {
                RunState::Failed
            } else {
                RunState::Success
            };
            store
                .force_run_state(row.id, state, Utc::now())
                .await
                .expect("finished");
        }
    }
    bag.dags()
        .next()
        .map(|l| l.dag.dag_id.clone())
        .expect("a DAG")
}

fn measure(addr: SocketAddr, path: &str) -> Vec<Duration> {
    let mut timings = Vec::with_capacity(REPEAT);
    get(addr, path); // warm-up
    for _ in 0..REPEAT {
        let started = Instant::now();
        let status = get(addr, path);
        timings.push(started.elapsed());
        assert!(status.starts_with("HTTP/1.1 200"), "{path}: {status}");
    }
    timings.sort();
    timings
}

/// One HTTP/1.1 GET; returns the status line.
fn get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("response");
    let text = String::from_utf8_lossy(&response);
    text.lines().next().unwrap_or_default().to_string()
}

fn report(name: &str, sorted: &[Duration]) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = sorted[sorted.len() / 2];
    let p95 = sorted[(sorted.len() * 95 / 100).min(sorted.len() - 1)];
    let max = sorted[sorted.len() - 1];
    println!(
        "{{\"figure\":\"{name}\",\"median_ms\":{:.2},\"p95_ms\":{:.2},\"max_ms\":{:.2},\"samples\":{}}}",
        ms(median),
        ms(p95),
        ms(max),
        sorted.len()
    );
}
