//! The URL forms [`ObjectLocation::open`] takes and the mistakes it names.

use super::*;

const ACCOUNT: [(&str, &str); 1] = [("AZURE_STORAGE_ACCOUNT_NAME", "fromenv")];

fn open(url: &str) -> ObjectLocation {
    ObjectLocation::open_with_env(url, ACCOUNT).unwrap_or_else(|e| panic!("{url}: {e}"))
}

fn refused(url: &str) -> String {
    match ObjectLocation::open_with_env(url, std::iter::empty::<(&str, &str)>()) {
        Ok(location) => panic!("{url} opened as {}", location.store),
        Err(error) => error.to_string(),
    }
}

#[test]
fn s3_bucket_and_prefix() {
    let location = open("s3://dags-bucket/team/dags/");
    assert_eq!(location.store.to_string(), "AmazonS3(dags-bucket)");
    assert_eq!(location.prefix.as_ref(), "team/dags");
    assert_eq!(location.url, "s3://dags-bucket/team/dags/");
    assert_eq!(location.key("a/b.yaml").as_ref(), "team/dags/a/b.yaml");
}

#[test]
fn s3_bucket_alone_has_an_empty_prefix() {
    let location = open("s3://logs");
    assert_eq!(location.prefix.as_ref(), "");
    assert_eq!(location.key("x/y").as_ref(), "x/y");
}

#[test]
fn prefix_is_percent_decoded() {
    let location = open("s3://b/with%20space/d");
    assert_eq!(location.prefix.parts().count(), 2);
    assert_eq!(location.key("f").as_ref(), "with space/d/f");
}

#[test]
fn gcs_bucket_and_prefix() {
    let location = open("gs://gcs-bucket/logs");
    assert_eq!(location.store.to_string(), "GoogleCloudStorage(gcs-bucket)");
    assert_eq!(location.prefix.as_ref(), "logs");
}

#[test]
fn az_container_takes_the_account_from_the_environment() {
    let location = open("az://container/some/prefix");
    assert_eq!(
        location.store.to_string(),
        "MicrosoftAzure { account: fromenv, container: container }"
    );
    assert_eq!(location.prefix.as_ref(), "some/prefix");
}

#[test]
fn az_without_an_account_says_where_it_comes_from() {
    let message = refused("az://container/prefix");
    assert!(message.starts_with("az://container/prefix: "), "{message}");
    assert!(message.contains("AZURE_STORAGE_ACCOUNT_NAME"), "{message}");
}

#[test]
fn wasb_names_container_and_account() {
    for scheme in ["wasb", "wasbs", "az"] {
        let location = open(&format!(
            "{scheme}://logs@myaccount.blob.core.windows.net/airflow/logs"
        ));
        assert_eq!(
            location.store.to_string(),
            "MicrosoftAzure { account: myaccount, container: logs }",
            "{scheme}"
        );
        assert_eq!(location.prefix.as_ref(), "airflow/logs");
    }
}

#[test]
fn wasb_without_an_account_is_refused() {
    let message = refused("wasb://logs/prefix");
    assert!(
        message.contains("wasb://container@account.blob.core.windows.net/prefix"),
        "{message}"
    );
}

#[test]
fn file_url_opens_an_existing_folder() {
    let folder = tempfile::tempdir().unwrap();
    let url = Url::from_directory_path(folder.path()).unwrap().to_string();
    let location = open(&url);
    assert!(location.store.to_string().starts_with("LocalFileSystem("));
    assert_eq!(location.prefix.as_ref(), "");
}

#[test]
fn file_url_of_a_missing_folder_is_refused() {
    let message = refused("file:///no/such/folder/here");
    assert!(
        message.contains("/no/such/folder/here is not a folder"),
        "{message}"
    );
}

#[test]
fn file_url_with_a_host_is_refused() {
    let message = refused("file://server/share");
    assert!(message.contains("file:///absolute/path"), "{message}");
}

#[test]
fn unknown_scheme_lists_the_known_ones() {
    let message = refused("ftp://host/path");
    assert!(
        message.starts_with("ftp://host/path: unknown scheme ftp://"),
        "{message}"
    );
    assert!(message.contains("s3://, gs://, az://"), "{message}");
}

#[test]
fn text_that_is_not_a_url_is_refused() {
    let message = refused("bucket/prefix");
    assert!(message.starts_with("bucket/prefix: not a URL"), "{message}");
}

#[test]
fn missing_bucket_is_named() {
    let message = refused("s3:///prefix");
    assert!(message.contains("no bucket"), "{message}");
    let message = refused("gs:///prefix");
    assert!(message.contains("no bucket"), "{message}");
}

#[test]
fn credentials_in_the_url_never_show() {
    let location = open("s3://AKIAUSER:hunter2secret@bucket/p");
    assert!(!location.url.contains("hunter2secret"), "{}", location.url);
    assert!(!location.url.contains("AKIAUSER"), "{}", location.url);

    let message = refused("s3://bucket/p?X-Amz-Signature=hunter2secret");
    assert!(!message.contains("hunter2secret"), "{message}");
    assert!(message.contains("query"), "{message}");

    let message = refused("wasb://c@acct.blob.core.windows.net/p?sig=hunter2secret");
    assert!(!message.contains("hunter2secret"), "{message}");

    let message = refused("://user:hunter2secret@host/p?sig=hunter2secret");
    assert!(!message.contains("hunter2secret"), "{message}");
}

#[test]
fn dot_segments_never_reach_the_prefix() {
    for url in ["s3://b/a/../c", "s3://b/a/%2E%2E/c", "s3://b/./c"] {
        match ObjectLocation::open(url) {
            Ok(location) => assert!(
                location
                    .prefix
                    .parts()
                    .all(|p| p.as_ref() != ".." && p.as_ref() != "."),
                "{url}: {}",
                location.prefix
            ),
            Err(error) => assert!(error.to_string().contains("prefix"), "{error}"),
        }
    }
}
