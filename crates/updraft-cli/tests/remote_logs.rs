//! Remote task logs end to end: `updraft standalone` configured with Airflow's variables
//! (`AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER` on an S3 server, moto, and
//! `AIRFLOW__LOGGING__DELETE_LOCAL_LOGS`) uploads a running try's log in chunks, then whole at
//! its end, removes the local file, and serves the log from the store through the API and
//! `tasks logs`, the same bytes; a store that fails (a bucket not yet created) neither fails
//! the try nor loses its log, which lands once the store takes it.

mod common;

use std::path::{Path, PathBuf};

use common::http::{api_address, get};
use common::{DEFAULT_TIMEOUT, Home, wait_until};
use futures::TryStreamExt;
use updraft_objects::ObjectLocation;
use updraft_objects::object_store::{ObjectStore, ObjectStoreExt};
use updraft_test_servers::moto;

/// Every try's log under the logs folder (the upload journal aside).
fn local_logs(folder: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut folders = vec![folder.to_path_buf()];
    while let Some(dir) = folders.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_name() == ".pending-uploads" {
                continue;
            }
            if path.is_dir() {
                folders.push(path);
            } else if entry.file_name().to_string_lossy().starts_with("attempt=") {
                found.push(path);
            }
        }
    }
    found
}

/// Every object in the store and its content.
fn objects(location: &ObjectLocation) -> Vec<(String, String)> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let listed: Vec<_> = location
            .store
            .list(Some(&location.prefix))
            .try_collect()
            .await
            .expect("listing the bucket");
        let mut objects = Vec::new();
        for meta in listed {
            let body = location.store.get(&meta.location).await.unwrap();
            let text = String::from_utf8(body.bytes().await.unwrap().to_vec()).unwrap();
            objects.push((meta.location.to_string(), text));
        }
        objects.sort();
        objects
    })
}

#[test]
fn a_try_log_is_served_from_the_store_once_its_local_copy_is_gone() {
    let server = moto();
    let bucket = server.new_bucket();
    let url = server.url(&bucket, "airflow/logs");
    let location = ObjectLocation::open_with_env(&url, server.env()).unwrap();
    let mut home = Home::new();
    for (name, value) in server.env() {
        home.set_env(&name, &value);
    }
    home.set_env("AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER", &url)
        .set_env("AIRFLOW__LOGGING__DELETE_LOCAL_LOGS", "True")
        .set_env("UPDRAFT__LOGGING__REMOTE_LOG_UPLOAD_INTERVAL", "200ms");
    let go_on = home.path().join("go-on");
    home.write_dag(
        "shout.yaml",
        &format!(
            "dag_id: shout\ntasks:\n  - task_id: say\n    bash: |\n      echo 'hello from the task'\n      \
             while [ ! -e '{}' ]; do sleep 0.05; done\n      echo 'and goodbye'\n",
            go_on.display()
        ),
    );
    let service = home.start_standalone();
    let api = api_address(&service);
    wait_until("the DAG to be registered", DEFAULT_TIMEOUT, || {
        (get(&api, "/dags/shout").0 == 200).then_some(())
    });
    let run_id = home.trigger("shout", None);
    let log_api =
        format!("/dags/shout/dagRuns/{run_id}/taskInstances/say/logs/1?full_content=true");

    // While the try runs: its first line is in the store as a chunk.
    let chunks = wait_until("the running log's chunk", DEFAULT_TIMEOUT, || {
        let objects = objects(&location);
        objects
            .iter()
            .any(|(key, text)| key.contains(".chunks/") && text.contains("hello from the task"))
            .then_some(objects)
    });
    assert!(
        chunks.iter().all(|(key, _)| key.contains(".chunks/")),
        "nothing whole yet: {chunks:?}"
    );
    let (status, live) = get(&api, &log_api);
    assert_eq!(status, 200, "{live}");
    assert!(live.to_string().contains("hello from the task"), "{live}");

    std::fs::write(&go_on, "").unwrap();
    assert_eq!(home.wait_run_finished("shout", &run_id), "success");
    wait_until("the local log's removal", DEFAULT_TIMEOUT, || {
        local_logs(&home.logs_folder()).is_empty().then_some(())
    });
    let stored = objects(&location);
    assert_eq!(stored.len(), 1, "one whole log, no chunks: {stored:?}");
    let (key, text) = &stored[0];
    assert!(
        key.starts_with("airflow/logs/") && key.ends_with("/say/attempt=1.log"),
        "{key}"
    );
    assert!(
        text.contains("hello from the task\n") && text.contains("and goodbye\n"),
        "{text}"
    );

    let (status, answer) = get(&api, &log_api);
    assert_eq!(status, 200, "{answer}");
    let served: Vec<&str> = answer["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| line["event"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = text.lines().collect();
    assert_eq!(served, expected, "the API serves the stored bytes");
    assert_eq!(answer["end_of_log"], true);
    assert_eq!(home.logs("shout", &run_id, "say", Some(1)), *text);
    drop(service);
}

#[test]
fn a_store_that_fails_never_fails_the_try_and_gets_the_log_later() {
    let server = moto();
    // Not created yet: every upload fails until it is.
    let bucket = format!("updraftlate{}", std::process::id());
    let url = server.url(&bucket, "logs");
    let mut home = Home::new();
    for (name, value) in server.env() {
        home.set_env(&name, &value);
    }
    home.set_env("UPDRAFT__LOGGING__REMOTE_BASE_LOG_FOLDER", &url)
        .set_env("UPDRAFT__LOGGING__DELETE_LOCAL_LOGS", "true");
    home.write_dag(
        "late.yaml",
        "dag_id: late\ntasks:\n  - task_id: say\n    bash: echo 'kept until it lands'\n",
    );
    let service = home.start_standalone();
    let api = api_address(&service);
    wait_until("the DAG to be registered", DEFAULT_TIMEOUT, || {
        (get(&api, "/dags/late").0 == 200).then_some(())
    });
    let run_id = home.trigger("late", None);
    assert_eq!(home.wait_run_finished("late", &run_id), "success");
    let log_api = format!("/dags/late/dagRuns/{run_id}/taskInstances/say/logs/1?full_content=true");
    let (status, from_local) = get(&api, &log_api);
    assert_eq!(status, 200, "{from_local}");
    assert!(
        from_local.to_string().contains("kept until it lands"),
        "{from_local}"
    );
    assert_eq!(
        local_logs(&home.logs_folder()).len(),
        1,
        "kept until uploaded"
    );

    server.create_bucket(&bucket);
    let location = ObjectLocation::open_with_env(&url, server.env()).unwrap();
    let stored = wait_until("the retried upload", DEFAULT_TIMEOUT, || {
        let stored = objects(&location);
        (!stored.is_empty() && local_logs(&home.logs_folder()).is_empty()).then_some(stored)
    });
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(
        stored[0].1.contains("\nkept until it lands\n"),
        "{stored:?}"
    );
    let (status, from_store) = get(&api, &log_api);
    assert_eq!(status, 200, "{from_store}");
    assert_eq!(from_store, from_local, "the same log, from the store");
    drop(service);
}
