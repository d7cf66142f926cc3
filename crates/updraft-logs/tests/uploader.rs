//! The uploader and reader against object_store's in-memory and local-filesystem stores:
//! chunks while a try runs, the whole log at its end, reading from wherever the log is,
//! retries after a failing store, and the journal across a restart.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use updraft_logs::{LogOrigin, LogUploader, RemoteLogs, UploadSettings};
use updraft_objects::ObjectLocation;
use updraft_objects::object_store::ObjectStore;
use updraft_objects::object_store::local::LocalFileSystem;
use updraft_objects::object_store::memory::InMemory;
use updraft_objects::object_store::path::Path as Key;

const REL: &str = "acme/etl/manual__2024-01-01T00:00:00+00:00/load/attempt=1.log";

fn settings(interval: Duration) -> UploadSettings {
    UploadSettings {
        upload_interval: interval,
        retry_initial: Duration::from_millis(50),
        retry_max: Duration::from_millis(200),
        ..UploadSettings::default()
    }
}

fn in_memory(logs: &Path) -> Arc<RemoteLogs> {
    let location = ObjectLocation {
        store: Arc::new(InMemory::new()),
        prefix: Key::from("logs"),
        url: "memory://logs".into(),
    };
    Arc::new(RemoteLogs::new(location, logs))
}

fn on_disk(logs: &Path, bucket: &Path) -> Arc<RemoteLogs> {
    let location = ObjectLocation {
        store: Arc::new(LocalFileSystem::new_with_prefix(bucket).unwrap()),
        prefix: Key::from("logs"),
        url: "file:///bucket/logs".into(),
    };
    Arc::new(RemoteLogs::new(location, logs))
}

fn append(logs: &Path, rel: &str, text: &str) {
    use std::io::Write;
    let path = logs.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

async fn keys(store: &dyn ObjectStore) -> Vec<String> {
    use futures::TryStreamExt;
    let mut keys: Vec<String> = store
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    keys.sort();
    keys
}

/// Waits until `check` holds, failing after 10 s.
async fn eventually<F: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn has_key(store: &Arc<dyn ObjectStore>, suffix: &str) -> bool {
    keys(store.as_ref())
        .await
        .iter()
        .any(|k| k.ends_with(suffix))
}

async fn read_all(remote: &RemoteLogs, running: bool) -> Option<(String, LogOrigin)> {
    let slice = remote.read(REL, running, 0, u64::MAX).await.unwrap()?;
    assert_eq!(slice.len, slice.bytes.len() as u64);
    Some((String::from_utf8(slice.bytes).unwrap(), slice.origin))
}

#[tokio::test]
async fn a_running_log_goes_up_in_chunks_and_whole_at_its_end() {
    let logs = tempfile::tempdir().unwrap();
    let remote = in_memory(logs.path());
    let store = remote.location().store.clone();
    let uploader = LogUploader::start(
        remote.clone(),
        UploadSettings {
            delete_local_logs: true,
            ..settings(Duration::from_millis(100))
        },
    );
    append(logs.path(), REL, "one\n");
    uploader.try_started(REL);
    eventually("the first chunk", || {
        has_key(&store, ".chunks/00000000000000000000")
    })
    .await;
    append(logs.path(), REL, "two\n");
    eventually("the second chunk", || {
        has_key(&store, ".chunks/00000000000000000004")
    })
    .await;

    // A reader elsewhere (no local file) sees the chunks while the try runs.
    let elsewhere = tempfile::tempdir().unwrap();
    let reader = RemoteLogs::new(remote.location().clone(), elsewhere.path());
    assert_eq!(
        read_all(&reader, true).await,
        Some(("one\ntwo\n".to_string(), LogOrigin::Chunks))
    );
    let part = reader.read(REL, true, 2, 4).await.unwrap().unwrap();
    assert_eq!((part.bytes.as_slice(), part.len), (&b"e\ntw"[..], 8));
    // Here the local file is the live source.
    assert_eq!(read_all(&remote, true).await.unwrap().1, LogOrigin::Local);

    append(logs.path(), REL, "three\n");
    uploader.try_ended(REL);
    assert_eq!(uploader.flush(Duration::from_secs(10)).await, Some(0));
    let whole = keys(store.as_ref()).await;
    assert_eq!(whole.len(), 1, "the chunks are gone: {whole:?}");
    assert!(whole[0].ends_with("/load/attempt=1.log"), "{whole:?}");
    assert!(!logs.path().join(REL).exists(), "the local copy is removed");
    assert_eq!(
        read_all(&remote, false).await,
        Some(("one\ntwo\nthree\n".to_string(), LogOrigin::Whole))
    );
    let tail = remote.read(REL, false, 100, 10).await.unwrap().unwrap();
    assert_eq!((tail.bytes.len(), tail.len), (0, 14));
    assert!(
        std::fs::read_dir(logs.path().join(".pending-uploads"))
            .unwrap()
            .next()
            .is_none(),
        "nothing is left pending"
    );
    uploader.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn local_logs_are_kept_unless_asked_and_missing_logs_are_none() {
    let logs = tempfile::tempdir().unwrap();
    let remote = in_memory(logs.path());
    let uploader = LogUploader::start(remote.clone(), settings(Duration::from_secs(3600)));
    append(logs.path(), REL, "done\n");
    // A try that failed before it started is only ever told ended.
    uploader.try_ended(REL);
    assert_eq!(uploader.flush(Duration::from_secs(10)).await, Some(0));
    assert!(logs.path().join(REL).exists());
    assert_eq!(read_all(&remote, false).await.unwrap().1, LogOrigin::Local);
    std::fs::remove_file(logs.path().join(REL)).unwrap();
    assert_eq!(
        read_all(&remote, false).await,
        Some(("done\n".to_string(), LogOrigin::Whole))
    );
    let other = REL.replace("attempt=1", "attempt=2");
    assert_eq!(remote.read(&other, false, 0, 100).await.unwrap(), None);
    assert!(remote.read("../etc/passwd", false, 0, 100).await.is_err());
    uploader.stop(Duration::from_secs(5)).await;
}

/// Makes puts under the bucket fail: a file stands where their folder must be.
fn block(bucket: &Path) {
    std::fs::create_dir_all(bucket).unwrap();
    std::fs::write(bucket.join("logs"), "in the way").unwrap();
}

fn unblock(bucket: &Path) {
    std::fs::remove_file(bucket.join("logs")).unwrap();
}

#[tokio::test]
async fn a_failing_store_is_retried_until_the_log_lands() {
    let logs = tempfile::tempdir().unwrap();
    let bucket = tempfile::tempdir().unwrap();
    block(bucket.path());
    let remote = on_disk(logs.path(), bucket.path());
    let uploader = LogUploader::start(
        remote.clone(),
        UploadSettings {
            delete_local_logs: true,
            ..settings(Duration::from_secs(3600))
        },
    );
    append(logs.path(), REL, "kept safe\n");
    uploader.try_ended(REL);
    assert_eq!(uploader.flush(Duration::from_secs(10)).await, Some(1));
    assert!(logs.path().join(REL).exists(), "kept until uploaded");
    unblock(bucket.path());
    let uploaded = bucket.path().join("logs").join(REL);
    eventually("the retried upload", || {
        let uploaded = uploaded.clone();
        async move { uploaded.exists() }
    })
    .await;
    eventually("the local copy's removal", || {
        let local = logs.path().join(REL);
        async move { !local.exists() }
    })
    .await;
    assert_eq!(std::fs::read_to_string(uploaded).unwrap(), "kept safe\n");
    uploader.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn the_journal_carries_pending_uploads_across_a_restart() {
    let logs = tempfile::tempdir().unwrap();
    let bucket = tempfile::tempdir().unwrap();
    block(bucket.path());
    let remote = on_disk(logs.path(), bucket.path());
    let running = REL.replace("load", "still_running");
    let first = LogUploader::start(remote.clone(), settings(Duration::from_secs(3600)));
    append(logs.path(), REL, "ended before the restart\n");
    append(logs.path(), &running, "running at the restart\n");
    first.try_started(&running);
    first.try_ended(REL);
    assert_eq!(first.stop(Duration::from_secs(10)).await, Some(1));

    unblock(bucket.path());
    let second = LogUploader::start(remote.clone(), settings(Duration::from_secs(3600)));
    assert_eq!(second.flush(Duration::from_secs(10)).await, Some(0));
    let uploaded = |rel: &str| std::fs::read_to_string(bucket.path().join("logs").join(rel));
    assert_eq!(uploaded(REL).unwrap(), "ended before the restart\n");
    // The running try's log went up as it was, and stays here for the try if it goes on.
    assert_eq!(uploaded(&running).unwrap(), "running at the restart\n");
    assert!(logs.path().join(&running).exists());
    second.stop(Duration::from_secs(5)).await;
}
