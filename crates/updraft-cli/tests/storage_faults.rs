//! The services on a failing SQLite database, through the binary: a disk that fills and frees
//! while `updraft scheduler` and `updraft server` run, and a database file with corrupt pages,
//! found at start and while running.
//!
//! The disk is a small tmpfs, which needs root: the test suite runs as root in CI, and as
//! another user the disk-full test fails saying so (it never skips).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::http::{self, api_address};
use common::tmpfs::Tmpfs;
use common::{DEFAULT_TIMEOUT, Home, wait_until};

/// Run SQL on the database file from the test, as a third process would.
fn on_database<T>(path: &Path, call: impl AsyncFnOnce(&sqlx::SqlitePool) -> T) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(Duration::from_secs(5));
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        let out = call(&pool).await;
        pool.close().await;
        out
    })
}

/// Move the WAL's content into the database file and empty it (retrying while a service
/// reads), so the file holds every page and the next write must grow the WAL.
fn checkpoint(path: &Path) {
    wait_until("a complete checkpoint", DEFAULT_TIMEOUT, || {
        let (busy, _, _): (i64, i64, i64) = on_database(path, async |pool| {
            sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
                .fetch_one(pool)
                .await
                .unwrap()
        });
        (busy == 0).then_some(())
    });
}

/// `POST /api/v2/dags/{dag_id}/dagRuns`: the status, and the run id when created.
fn trigger(address: &str, dag_id: &str) -> (u16, Option<String>) {
    let (status, body) = http::post(
        address,
        &format!("/dags/{dag_id}/dagRuns"),
        &serde_json::json!({"logical_date": null}),
    );
    let run_id = body["dag_run_id"].as_str().map(str::to_string);
    (status, run_id)
}

fn metadatabase_status(address: &str) -> String {
    let (_, health) = http::get(address, "/monitor/health");
    health["metadatabase"]["status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A task instance's state as the API reads it from the database.
fn api_task_state(address: &str, dag_id: &str, run_id: &str, task_id: &str) -> String {
    let (_, ti) = http::get(
        address,
        &format!("/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"),
    );
    ti["state"].as_str().unwrap_or_default().to_string()
}

/// A DAG of `n` no-op tasks, paused: its run's creation writes many pages, more than a failed
/// write of the scheduler's can leave reusable in the WAL.
fn wide_dag(dag_id: &str, n: usize) -> String {
    let mut yaml =
        format!("dag_id: {dag_id}\nschedule: null\nis_paused_upon_creation: true\ntasks:\n");
    for i in 0..n {
        yaml.push_str(&format!("  - task_id: t{i:03}\n    bash: 'true'\n"));
    }
    yaml
}

/// The disk under the database fills while a try runs, then frees: the try's end waits in the
/// scheduler's memory and is recorded once space returns; the API answers 5xx to a trigger
/// and the health check calls the metadatabase unhealthy meanwhile; then writes work again in
/// both processes with no restart, and the scheduler never exits.
#[test]
fn a_full_disk_fails_writes_and_health_until_space_returns_then_everything_resumes() {
    let tmpfs = Tmpfs::mount("16M");
    let db = tmpfs.path().join("updraft.db");
    let mut home = Home::new();
    home.set_env(
        "UPDRAFT__DATABASE__URL",
        &format!("sqlite://{}", db.display()),
    );
    let gate = home.work().join("gate");
    home.write_dag(
        "gated.yaml",
        &format!(
            "dag_id: gated\nschedule: null\ntasks:\n  - task_id: wait\n    bash: while [ ! -e '{}' ]; do sleep 0.05; done\n  - task_id: after\n    bash: echo after\n    upstream: [wait]\n",
            gate.display()
        ),
    );
    home.write_dag(
        "quick.yaml",
        "dag_id: quick\nschedule: null\ntasks:\n  - task_id: a\n    bash: echo a\n",
    );
    home.write_dag("wide.yaml", &wide_dag("wide", 300));
    let mut scheduler = home.start_scheduler();
    home.wait_dag_listed("wide");
    let server = home.start_server();
    let api = api_address(&server);
    assert_eq!(metadatabase_status(&api), "healthy");

    let (status, gated) = trigger(&api, "gated");
    assert_eq!(status, 200);
    let gated = gated.unwrap();
    home.wait_task_state("gated", &gated, "wait", "running");

    checkpoint(&db);
    let filler = tmpfs.fill();
    // The try ends; the scheduler cannot record it.
    fs::write(&gate, "").unwrap();
    wait_until("the scheduler to fail a pass", DEFAULT_TIMEOUT, || {
        scheduler
            .output()
            .contains("database or disk is full")
            .then_some(())
    });
    assert_eq!(api_task_state(&api, "gated", &gated, "wait"), "running");

    let (status, _) = trigger(&api, "wide");
    assert!(
        (500..600).contains(&status),
        "a trigger on a full disk: {status}"
    );
    assert_eq!(metadatabase_status(&api), "unhealthy");

    fs::remove_file(&filler).unwrap();
    wait_until("the health check to recover", DEFAULT_TIMEOUT, || {
        (metadatabase_status(&api) == "healthy").then_some(())
    });
    let (status, quick) = trigger(&api, "quick");
    assert_eq!(status, 200, "a trigger once space returned");
    let (status, _) = trigger(&api, "wide");
    assert_eq!(status, 200, "a large trigger once space returned");
    assert_eq!(home.wait_run_finished("quick", &quick.unwrap()), "success");
    // The end recorded late is the try's own: `after` ran on it.
    assert_eq!(home.wait_run_finished("gated", &gated), "success");
    assert_eq!(home.task_states("gated", &gated)["after"], "success");
    assert!(
        scheduler.try_wait().is_none(),
        "the scheduler exited:\n{}",
        scheduler.output()
    );
}

// ---- corruption -------------------------------------------------------------------------------

const PAGE: usize = 4096;

/// A database with a few thousand task instances over many pages, written by the CLI, its WAL
/// emptied into the file.
fn database_with_data(home: &Home) -> PathBuf {
    home.write_dag("wide.yaml", &wide_dag("wide", 200));
    home.wait_dag_listed("wide");
    for _ in 0..10 {
        home.trigger("wide", None);
    }
    let db = home.path().join("updraft.db");
    checkpoint(&db);
    db
}

/// Overwrite pages `from..to` of the file (page 1 is number 0) with garbage.
fn overwrite_pages(path: &Path, pages: std::ops::Range<usize>) {
    let mut bytes = fs::read(path).unwrap();
    assert!(bytes.len() / PAGE >= 16, "too few pages to corrupt");
    let mut noise: u32 = 0x9e37_79b9;
    let end = (pages.end * PAGE).min(bytes.len());
    for byte in &mut bytes[pages.start * PAGE..end] {
        noise ^= noise << 13;
        noise ^= noise >> 17;
        noise ^= noise << 5;
        *byte = noise as u8;
    }
    fs::write(path, bytes).unwrap();
}

fn page_count(path: &Path) -> usize {
    fs::metadata(path).unwrap().len() as usize / PAGE
}

/// The message a corrupt database stops a process with: the file, and the way out.
fn assert_names_file_and_recovery(output: &str, db: &Path) {
    let file = db.display().to_string();
    assert!(
        output.contains(&format!("the database {file} is corrupt")),
        "{output}"
    );
    assert!(output.contains(".recover"), "{output}");
    assert!(output.contains("backup"), "{output}");
}

/// Corrupt pages in the middle of the file stop the scheduler, the server and standalone at
/// start, each exiting non-zero with a message naming the file and how to recover;
/// `updraft db check` says the same.
#[test]
fn a_corrupt_database_stops_every_service_at_start_naming_the_file() {
    let home = Home::new();
    let db = database_with_data(&home);
    let pages = page_count(&db);
    overwrite_pages(&db, pages / 4..3 * pages / 4);

    for service in ["scheduler", "server", "standalone"] {
        let mut process = match service {
            "scheduler" => home.start_scheduler(),
            "server" => home.start_server(),
            _ => home.start_standalone(),
        };
        let status = process.wait_exit(DEFAULT_TIMEOUT);
        assert_eq!(status.code(), Some(1), "{service}:\n{}", process.output());
        assert_names_file_and_recovery(&process.output(), &db);
    }
    let check = home.fails(&["db", "check"]);
    assert_names_file_and_recovery(&check.stderr, &db);
}

/// Pages corrupted under a running scheduler: its next reads meet them, and it stops
/// (non-zero, naming the file) instead of retrying for ever.
#[test]
fn a_database_corrupted_while_the_scheduler_runs_stops_it_naming_the_file() {
    let home = Home::new();
    let db = database_with_data(&home);
    let ok = home.ok(&["db", "check"]);
    assert!(ok.stdout.contains("Database OK"), "{ok}");
    let mut scheduler = home.start_scheduler();
    wait_until("the scheduler to start", DEFAULT_TIMEOUT, || {
        scheduler
            .output()
            .contains("scheduler running")
            .then_some(())
    });

    checkpoint(&db);
    // Every page but the header's: whatever the scheduler reads next is garbage.
    overwrite_pages(&db, 1..page_count(&db));
    // A write by another process makes the scheduler's connections drop the pages they
    // cached, as any write would.
    on_database(&db, async |pool| {
        sqlx::query("PRAGMA user_version = 7")
            .execute(pool)
            .await
            .unwrap();
    });

    let status = scheduler.wait_exit(DEFAULT_TIMEOUT);
    assert_eq!(status.code(), Some(1), "{}", scheduler.output());
    assert_names_file_and_recovery(&scheduler.output(), &db);
}
