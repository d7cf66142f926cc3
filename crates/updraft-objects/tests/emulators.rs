//! [`ObjectLocation`] against real servers through object_store's own clients: S3 (moto),
//! Azure Blob (azurite) and GCS (fake-gcs-server) each list with ETags (only under the
//! prefix), get and delete; S3 and Azure also take puts and multipart uploads (the GCS
//! emulator does not take object_store's uploads, see `updraft_test_servers::gcs`).

use futures::TryStreamExt;
use updraft_objects::ObjectLocation;
use updraft_objects::object_store::{Error, ObjectStore, ObjectStoreExt, PutPayload};
use updraft_test_servers::{ObjectServer, azurite, gcs, moto};

fn location(server: &ObjectServer, url: &str) -> ObjectLocation {
    ObjectLocation::open_with_env(url, server.env()).unwrap_or_else(|e| panic!("{e}"))
}

/// Lists, gets and deletes what the server was given under `team-a/prefix` (and, beside
/// it, under `team-a/prefix-other`).
async fn list_get_delete(location: &ObjectLocation) {
    let store = &location.store;
    let got = store.get(&location.key("dags/a.yaml")).await.expect("get");
    assert_eq!(got.bytes().await.expect("body").as_ref(), b"dag: a\n");

    let mut listed: Vec<_> = store
        .list(Some(&location.prefix))
        .try_collect()
        .await
        .expect("list");
    listed.sort_by(|a, b| a.location.cmp(&b.location));
    let keys: Vec<String> = listed.iter().map(|m| m.location.to_string()).collect();
    assert_eq!(
        keys,
        [
            location.key("dags/a.yaml").to_string(),
            location.key("templates/t/pod.yaml").to_string()
        ]
    );
    assert!(
        listed.iter().all(|m| m.e_tag.is_some()),
        "ETags: {listed:?}"
    );
    assert_eq!(listed[0].size, 7);

    store
        .delete(&location.key("dags/a.yaml"))
        .await
        .expect("delete");
    let missing = store.get(&location.key("dags/a.yaml")).await;
    assert!(
        matches!(missing, Err(Error::NotFound { .. })),
        "{missing:?}"
    );
}

fn lay_out(server: &ObjectServer, bucket: &str, prefix: &str) {
    server.upload(bucket, &format!("{prefix}/dags/a.yaml"), b"dag: a\n");
    server.upload(
        bucket,
        &format!("{prefix}/templates/t/pod.yaml"),
        b"kind: Pod\n",
    );
    server.upload(bucket, &format!("{prefix}-other/beside.yaml"), b"x");
}

async fn check_reading(server: &ObjectServer) {
    let bucket = server.new_bucket();
    lay_out(server, &bucket, "team-a/prefix");
    list_get_delete(&location(server, &server.url(&bucket, "team-a/prefix"))).await;
}

/// Put, get, multipart upload, through object_store.
async fn check_writing(server: &ObjectServer) {
    let bucket = server.new_bucket();
    let location = location(server, &server.url(&bucket, "logs"));
    let store = &location.store;
    let key = location.key("try/1.log");
    store
        .put(&key, PutPayload::from_static(b"line\n"))
        .await
        .expect("put");
    let body = store
        .get(&key)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    assert_eq!(body.as_ref(), b"line\n");

    let big = location.key("try/big.log");
    let mut upload = store
        .put_multipart(&big)
        .await
        .expect("start a multipart upload");
    upload
        .put_part(PutPayload::from(vec![b'a'; 5 * 1024 * 1024]))
        .await
        .expect("part 1");
    upload
        .put_part(PutPayload::from_static(b"tail"))
        .await
        .expect("part 2");
    upload
        .complete()
        .await
        .expect("complete the multipart upload");
    let body = store
        .get(&big)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    assert_eq!(body.len(), 5 * 1024 * 1024 + 4);
    assert!(body.ends_with(b"atail"));
}

#[tokio::test]
async fn s3_on_moto() {
    check_reading(moto()).await;
    check_writing(moto()).await;
}

#[tokio::test]
async fn azure_on_azurite() {
    check_reading(azurite()).await;
    check_writing(azurite()).await;
}

#[tokio::test]
async fn azure_wasb_spelling_on_azurite() {
    let server = azurite();
    let container = server.new_bucket();
    lay_out(server, &container, "logs");
    let url = format!("wasb://{container}@devstoreaccount1.blob.core.windows.net/logs");
    list_get_delete(&location(server, &url)).await;
}

#[tokio::test]
async fn gcs_on_the_emulator() {
    check_reading(gcs()).await;
}

#[tokio::test]
async fn a_missing_bucket_is_an_error_naming_nothing_secret() {
    let server = moto();
    let location = location(server, "s3://no-such-bucket-here/p");
    let error = location
        .store
        .list(Some(&location.prefix))
        .try_collect::<Vec<_>>()
        .await
        .expect_err("listing a bucket that does not exist");
    let message = error.to_string();
    assert!(message.contains("no-such-bucket-here"), "{message}");
    assert!(!message.contains("updraft-test-secret"), "{message}");
}
