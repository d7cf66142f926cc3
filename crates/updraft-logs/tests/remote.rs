//! Remote task logs on real servers, through object_store's own clients: S3 (moto) and Azure
//! Blob (azurite) take chunks while a try runs and the whole log at its end (a large one in
//! parts), read back from another node as the same bytes; a store that is down is retried
//! until the log lands, also by the next process through the journal. GCS (fake-gcs-server)
//! is read only: no emulator at hand takes object_store's GCS uploads (see
//! `updraft_test_servers::gcs`), so its logs are laid out through the emulator's own API.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use updraft_logs::{LogOrigin, LogUploader, RemoteLogs, UploadSettings};
use updraft_objects::ObjectLocation;
use updraft_objects::object_store::ObjectStore;
use updraft_test_servers::{ObjectServer, azurite, gcs, moto};

const REL: &str = "team-a/etl/manual__2026-01-01T00:00:00+00:00/load/attempt=1.log";

fn location(server: &ObjectServer, env: Vec<(String, String)>, bucket: &str) -> ObjectLocation {
    ObjectLocation::open_with_env(&server.url(bucket, "logs"), env)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn settings() -> UploadSettings {
    UploadSettings {
        upload_interval: Duration::from_millis(200),
        delete_local_logs: true,
        retry_initial: Duration::from_millis(100),
        retry_max: Duration::from_millis(500),
        ..UploadSettings::default()
    }
}

fn append(logs: &Path, rel: &str, bytes: &[u8]) {
    use std::io::Write;
    let path = logs.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(bytes).unwrap();
}

/// Waits until `read` answers something `accept`s, failing after 30 s.
async fn eventually<T, F: Future<Output = T>>(
    what: &str,
    mut read: impl FnMut() -> F,
    accept: impl Fn(&T) -> bool,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let value = read().await;
        if accept(&value) {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn read(remote: &RemoteLogs, rel: &str, running: bool) -> Option<(Vec<u8>, LogOrigin)> {
    let slice = remote
        .read(rel, running, 0, u64::MAX)
        .await
        .unwrap_or_else(|e| panic!("{e}"))?;
    assert_eq!(slice.len, slice.bytes.len() as u64);
    Some((slice.bytes, slice.origin))
}

async fn keys(store: &Arc<dyn ObjectStore>) -> Vec<String> {
    let listed: Vec<_> = store.list(None).try_collect().await.expect("list");
    listed.into_iter().map(|m| m.location.to_string()).collect()
}

/// Chunks while the try runs (seen from a node without the local file), the whole log at
/// its end (the local file then removed), and a log too large for one put.
async fn upload_and_read(server: &ObjectServer) {
    let bucket = server.new_bucket();
    let logs = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let location = location(server, server.env(), &bucket);
    let remote = Arc::new(RemoteLogs::new(location.clone(), logs.path()));
    let other_node = RemoteLogs::new(location.clone(), elsewhere.path());
    let uploader = LogUploader::start(
        remote.clone(),
        UploadSettings {
            max_chunk_bytes: 8,
            ..settings()
        },
    );

    append(logs.path(), REL, b"first line\n");
    uploader.try_started(REL);
    let seen = eventually(
        "the first line's chunks",
        || read(&other_node, REL, true),
        |r| r.as_ref().is_some_and(|(b, _)| b == b"first line\n"),
    )
    .await;
    assert_eq!(seen.unwrap().1, LogOrigin::Chunks);
    append(logs.path(), REL, b"second line\n");
    eventually(
        "the second line's chunks",
        || read(&other_node, REL, true),
        |r| {
            r.as_ref()
                .is_some_and(|(b, _)| b == b"first line\nsecond line\n")
        },
    )
    .await;
    let part = other_node.read(REL, true, 6, 10).await.unwrap().unwrap();
    assert_eq!(part.bytes, b"line\nsecon");

    append(logs.path(), REL, b"last line\n");
    uploader.try_ended(REL);
    // A large log: uploaded in parts, appearing whole.
    let big = REL.replace("load", "big");
    let big_log: Vec<u8> = (0..400_000)
        .flat_map(|i| format!("line {i:010} of a long log\n").into_bytes())
        .collect();
    assert!(big_log.len() > 10 * 1024 * 1024);
    append(logs.path(), &big, &big_log);
    uploader.try_ended(&big);
    assert_eq!(uploader.flush(Duration::from_secs(60)).await, Some(0));

    assert!(!logs.path().join(REL).exists(), "the local copy is removed");
    assert_eq!(
        read(&remote, REL, false).await,
        Some((
            b"first line\nsecond line\nlast line\n".to_vec(),
            LogOrigin::Whole
        ))
    );
    let stored = keys(&location.store).await;
    assert!(
        !stored.iter().any(|k| k.contains(".chunks/")),
        "chunks removed: {stored:?}"
    );
    let (bytes, origin) = read(&other_node, &big, false).await.unwrap();
    assert_eq!(origin, LogOrigin::Whole);
    assert!(bytes == big_log, "the large log reads back the same");
    uploader.stop(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_on_s3() {
    upload_and_read(moto()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_on_azure_blob() {
    upload_and_read(azurite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_read_from_gcs() {
    let server = gcs();
    let bucket = server.new_bucket();
    let elsewhere = tempfile::tempdir().unwrap();
    let location = location(server, server.env(), &bucket);
    let key = |rel: &str| location.key(rel).to_string();
    let reader = RemoteLogs::new(location.clone(), elsewhere.path());
    assert_eq!(read(&reader, REL, true).await, None);
    // A node that died mid-try left its chunks.
    server.upload(
        &bucket,
        &key(&format!("{REL}.chunks/00000000000000000000")),
        b"one\ntw",
    );
    server.upload(
        &bucket,
        &key(&format!("{REL}.chunks/00000000000000000006")),
        b"o\n",
    );
    assert_eq!(
        read(&reader, REL, false).await,
        Some((b"one\ntwo\n".to_vec(), LogOrigin::Chunks))
    );
    server.upload(&bucket, &key(REL), b"one\ntwo\nthree\n");
    assert_eq!(
        read(&reader, REL, false).await,
        Some((b"one\ntwo\nthree\n".to_vec(), LogOrigin::Whole))
    );
    let tail = reader.read(REL, false, 8, 100).await.unwrap().unwrap();
    assert_eq!((tail.bytes.as_slice(), tail.len), (&b"three\n"[..], 14));
}

/// A TCP proxy in front of a server that can be taken down (every connection, open or new,
/// is dropped) and brought up again.
struct Proxy {
    port: u16,
    up: watch::Sender<bool>,
}

impl Proxy {
    async fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (up, _) = watch::channel(true);
        let state = up.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut down = state.subscribe();
                if !*down.borrow() {
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(("127.0.0.1", target)).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = down.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Proxy { port, up }
    }

    fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }

    /// `server`'s environment, reaching it through this proxy.
    fn env(&self, server: &ObjectServer) -> Vec<(String, String)> {
        let endpoint = format!("http://127.0.0.1:{}", self.port);
        server
            .env()
            .into_iter()
            .map(|(k, v)| match k.as_str() {
                "AWS_ENDPOINT_URL" => (k, endpoint.clone()),
                _ => (k, v),
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_that_is_down_gets_the_log_once_it_is_up() {
    let server = moto();
    let bucket = server.new_bucket();
    let proxy = Proxy::start(server.port()).await;
    let logs = tempfile::tempdir().unwrap();
    let remote = Arc::new(RemoteLogs::new(
        location(server, proxy.env(server), &bucket),
        logs.path(),
    ));
    let direct = RemoteLogs::new(location(server, server.env(), &bucket), "/nonexistent");
    let uploader = LogUploader::start(remote, settings());

    proxy.set_up(false);
    uploader.try_started(REL);
    append(logs.path(), REL, b"written while the store was down\n");
    uploader.try_ended(REL);
    assert_eq!(
        uploader.flush(Duration::from_secs(30)).await,
        Some(1),
        "the log is still pending"
    );
    assert!(logs.path().join(REL).exists(), "kept until uploaded");
    assert_eq!(read(&direct, REL, false).await, None);

    proxy.set_up(true);
    eventually(
        "the retried upload",
        || read(&direct, REL, false),
        |r| r.is_some(),
    )
    .await;
    assert_eq!(
        read(&direct, REL, false).await.unwrap().0,
        b"written while the store was down\n"
    );
    eventually(
        "the local copy's removal",
        || async { logs.path().join(REL).exists() },
        |exists| !exists,
    )
    .await;
    uploader.stop(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_next_process_uploads_what_the_journal_holds() {
    let server = moto();
    let bucket = server.new_bucket();
    let proxy = Proxy::start(server.port()).await;
    let logs = tempfile::tempdir().unwrap();
    let remote = Arc::new(RemoteLogs::new(
        location(server, proxy.env(server), &bucket),
        logs.path(),
    ));
    let direct = RemoteLogs::new(location(server, server.env(), &bucket), "/nonexistent");

    proxy.set_up(false);
    let first = LogUploader::start(remote.clone(), settings());
    append(logs.path(), REL, b"ended while the store was down\n");
    first.try_started(REL);
    first.try_ended(REL);
    assert_eq!(first.stop(Duration::from_secs(30)).await, Some(1));
    assert_eq!(read(&direct, REL, false).await, None);

    proxy.set_up(true);
    let second = LogUploader::start(remote, settings());
    assert_eq!(second.flush(Duration::from_secs(30)).await, Some(0));
    assert_eq!(
        read(&direct, REL, false).await,
        Some((
            b"ended while the store was down\n".to_vec(),
            LogOrigin::Whole
        ))
    );
    second.stop(Duration::from_secs(10)).await;
}
