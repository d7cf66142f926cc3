//! Object-store sources against real servers through object_store's clients: S3 (moto),
//! Azure Blob (azurite), GCS (fake-gcs-server), and a `file://` folder. GO Inc.'s layout
//! (`dags/<tenant>/…`, `templates/<tenant>/<app>/…`) from one bucket; only changed objects
//! downloaded (the others keep their inode); deletions; the same listing giving the same
//! revision; a store that cannot be reached, or refuses the credentials, keeps the last tree.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use updraft_objects::ObjectLocation;
use updraft_objects::object_store::ObjectStoreExt;
use updraft_sources::{ObjectsSpec, SourceDir, objects};
use updraft_test_servers::{ObjectServer, azurite, emulator, gcs, moto};

const PREFIX: &str = "platform";

/// GO Inc.'s layout in one bucket: DAGs per tenant, pod templates per tenant and app.
const LAYOUT: [(&str, &str); 3] = [
    ("dags/team-a/etl.yaml", "dag_id: etl\n"),
    ("dags/team-b/report.yaml", "dag_id: report\n"),
    ("templates/team-a/spark/pod.yaml", "kind: Pod\n"),
];

struct Bucket {
    server: &'static ObjectServer,
    name: String,
}

impl Bucket {
    fn new(server: &'static ObjectServer) -> Self {
        let name = server.new_bucket();
        for (key, body) in LAYOUT {
            server.upload(&name, &format!("{PREFIX}/{key}"), body.as_bytes());
        }
        // Never in the tree: hidden names, and keys beside the prefix.
        server.upload(
            &name,
            &format!("{PREFIX}/dags/team-a/.secret.yaml"),
            b"hidden",
        );
        server.upload(&name, &format!("{PREFIX}/.git/config"), b"hidden");
        server.upload(&name, &format!("{PREFIX}-other/dags/x.yaml"), b"beside");
        Bucket { server, name }
    }

    fn location(&self) -> ObjectLocation {
        ObjectLocation::open_with_env(&self.server.url(&self.name, PREFIX), self.server.env())
            .expect("open")
    }

    /// The same bucket through an address where nothing answers.
    fn unreachable(&self) -> ObjectLocation {
        let here = format!("127.0.0.1:{}", self.server.port());
        let nowhere = format!("127.0.0.1:{}", emulator::free_port());
        let env = self
            .server
            .env()
            .into_iter()
            .map(|(k, v)| (k, v.replace(&here, &nowhere)));
        ObjectLocation::open_with_env(&self.server.url(&self.name, PREFIX), env).expect("open")
    }
}

/// Every file under `tree`, relative, with its content.
fn files(tree: &Path) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    let mut stack = vec![tree.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(tree)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                found.insert((rel, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    found
}

fn layout_with(changes: &[(&str, Option<&str>)]) -> BTreeSet<(String, String)> {
    let mut expected: std::collections::BTreeMap<String, String> = LAYOUT
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (key, body) in changes {
        match body {
            Some(body) => expected.insert(key.to_string(), body.to_string()),
            None => expected.remove(*key),
        };
    }
    expected.into_iter().collect()
}

fn inode(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().ino()
}

/// Only revision trees under `trees/`: no staging folder left behind.
fn tree_names(dir: &SourceDir) -> BTreeSet<String> {
    std::fs::read_dir(dir.base().join("trees"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

async fn scenario(server: &'static ObjectServer) {
    let bucket = Bucket::new(server);
    let location = bucket.location();
    let home = tempfile::tempdir().unwrap();
    let dir = SourceDir::new(home.path().join("platform"));

    // First sync: the whole layout, nothing hidden, nothing from beside the prefix.
    let first = objects::sync_location("platform", &location, &dir)
        .await
        .expect("sync");
    assert!(first.changed);
    assert_eq!(first.files_written, 3);
    let (current, first_tree) = dir.current().expect("a current tree");
    assert_eq!(current, first.revision);
    assert_eq!(files(&first_tree), layout_with(&[]));

    // Nothing changed: the same revision, nothing written.
    let again = objects::sync_location("platform", &location, &dir)
        .await
        .expect("sync");
    assert_eq!(again.revision, first.revision);
    assert!(!again.changed);
    assert_eq!(again.files_written, 0);

    // One object changed: only it is downloaded; the others are the same files (inodes).
    let report_inode = inode(&first_tree.join("dags/team-b/report.yaml"));
    let pod_inode = inode(&first_tree.join("templates/team-a/spark/pod.yaml"));
    let etl_inode = inode(&first_tree.join("dags/team-a/etl.yaml"));
    server.upload(
        &bucket.name,
        &format!("{PREFIX}/dags/team-a/etl.yaml"),
        b"dag_id: etl2\n",
    );
    let second = objects::sync_location("platform", &location, &dir)
        .await
        .expect("sync");
    assert!(second.changed);
    assert_ne!(second.revision, first.revision);
    assert_eq!(second.files_written, 1);
    let (_, second_tree) = dir.current().unwrap();
    assert_eq!(
        files(&second_tree),
        layout_with(&[("dags/team-a/etl.yaml", Some("dag_id: etl2\n"))])
    );
    assert_eq!(
        inode(&second_tree.join("dags/team-b/report.yaml")),
        report_inode
    );
    assert_eq!(
        inode(&second_tree.join("templates/team-a/spark/pod.yaml")),
        pod_inode
    );
    assert_ne!(inode(&second_tree.join("dags/team-a/etl.yaml")), etl_inode);
    // The first revision's tree is untouched (a run pinned to it still reads it).
    assert_eq!(files(&dir.tree(&first.revision).unwrap()), layout_with(&[]));

    // One object deleted: gone from the new tree, nothing downloaded.
    location
        .store
        .delete(&location.key("dags/team-b/report.yaml"))
        .await
        .expect("delete");
    let third = objects::sync_location("platform", &location, &dir)
        .await
        .expect("sync");
    assert!(third.changed);
    assert_eq!(third.files_written, 0);
    let (_, third_tree) = dir.current().unwrap();
    assert_eq!(
        files(&third_tree),
        layout_with(&[
            ("dags/team-a/etl.yaml", Some("dag_id: etl2\n")),
            ("dags/team-b/report.yaml", None)
        ])
    );

    // The same listing synced elsewhere is the same revision.
    let elsewhere = SourceDir::new(home.path().join("elsewhere"));
    let fresh = objects::sync_location("platform", &location, &elsewhere)
        .await
        .expect("sync");
    assert_eq!(fresh.revision, third.revision);
    assert_eq!(fresh.files_written, 2);

    // The store cannot be reached: the sync fails, the last tree stays current and whole.
    let error = objects::sync_location("platform", &bucket.unreachable(), &dir)
        .await
        .expect_err("a store nobody answers for");
    assert!(
        error.to_string().starts_with("source platform: listing "),
        "{error}"
    );
    assert_eq!(dir.current().unwrap().0, third.revision);
    assert_eq!(files(&third_tree).len(), 2);
    assert_eq!(
        tree_names(&dir),
        BTreeSet::from([first.revision, second.revision, third.revision])
    );
}

#[tokio::test]
async fn s3_source_on_moto() {
    scenario(moto()).await;
}

#[tokio::test]
async fn azure_source_on_azurite() {
    scenario(azurite()).await;
}

#[tokio::test]
async fn gcs_source_on_the_emulator() {
    scenario(gcs()).await;
}

#[tokio::test]
async fn refused_credentials_keep_the_last_tree() {
    let server = azurite();
    let bucket = Bucket::new(server);
    let home = tempfile::tempdir().unwrap();
    let dir = SourceDir::new(home.path().join("platform"));
    let first = objects::sync_location("platform", &bucket.location(), &dir)
        .await
        .expect("sync");

    server.upload(
        &bucket.name,
        &format!("{PREFIX}/dags/team-a/new.yaml"),
        b"dag_id: new\n",
    );
    let wrong_key = server.env().into_iter().map(|(k, v)| {
        if k == "AZURE_STORAGE_ACCOUNT_KEY" {
            (k, "d3Jvbmcga2V5IGZvciB0aGUgYWNjb3VudA==".to_string())
        } else {
            (k, v)
        }
    });
    let refused =
        ObjectLocation::open_with_env(&server.url(&bucket.name, PREFIX), wrong_key).unwrap();
    let error = objects::sync_location("platform", &refused, &dir)
        .await
        .expect_err("a key the account does not have");
    assert!(error.to_string().contains("403"), "{error}");
    assert!(!error.to_string().contains("d3Jvbmcga2V5"), "{error}");
    let (current, tree) = dir.current().unwrap();
    assert_eq!(current, first.revision);
    assert_eq!(files(&tree), layout_with(&[]));
}

#[tokio::test]
async fn an_emptied_prefix_keeps_the_last_tree() {
    let server = moto();
    let bucket = Bucket::new(server);
    let location = bucket.location();
    let home = tempfile::tempdir().unwrap();
    let dir = SourceDir::new(home.path().join("platform"));
    let first = objects::sync_location("platform", &location, &dir)
        .await
        .expect("sync");
    for (key, _) in LAYOUT {
        location.store.delete(&location.key(key)).await.unwrap();
    }
    let error = objects::sync_location("platform", &location, &dir)
        .await
        .expect_err("nothing under the prefix");
    assert!(
        error.to_string().contains("no objects under the prefix"),
        "{error}"
    );
    assert_eq!(dir.current().unwrap().0, first.revision);
}

#[tokio::test]
async fn a_folder_object_beside_its_files_is_not_a_file() {
    let server = moto();
    let bucket = Bucket::new(server);
    // What a console's "create folder" leaves: an empty object named like the folder (with
    // or without the trailing slash).
    server.upload(&bucket.name, &format!("{PREFIX}/dags/team-c"), b"");
    server.upload(&bucket.name, &format!("{PREFIX}/templates/"), b"");
    server.upload(
        &bucket.name,
        &format!("{PREFIX}/dags/team-c/x.yaml"),
        b"dag_id: x\n",
    );
    let home = tempfile::tempdir().unwrap();
    let dir = SourceDir::new(home.path().join("platform"));
    objects::sync_location("platform", &bucket.location(), &dir)
        .await
        .expect("sync");
    let (_, tree) = dir.current().unwrap();
    assert_eq!(
        files(&tree),
        layout_with(&[("dags/team-c/x.yaml", Some("dag_id: x\n"))])
    );
}

#[tokio::test]
async fn file_url_source_through_sync() {
    let store = tempfile::tempdir().unwrap();
    for (key, body) in LAYOUT {
        let path = store.path().join(PREFIX).join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
    std::fs::write(store.path().join(PREFIX).join(".hidden"), "x").unwrap();
    let spec = ObjectsSpec {
        url: format!("file://{}/{PREFIX}", store.path().display()),
    };
    let home = tempfile::tempdir().unwrap();
    let dir = SourceDir::new(home.path().join("local"));
    let synced = objects::sync("local", &spec, &dir).await.expect("sync");
    assert_eq!(synced.files_written, 3);
    assert_eq!(files(&dir.current().unwrap().1), layout_with(&[]));

    std::fs::remove_dir_all(store.path()).unwrap();
    let error = objects::sync("local", &spec, &dir)
        .await
        .expect_err("the folder is gone");
    assert!(error.to_string().contains("is not a folder"), "{error}");
    assert_eq!(dir.current().unwrap().0, synced.revision);
}

#[tokio::test]
async fn a_key_climbing_out_of_the_tree_fails_the_sync_and_writes_nothing() {
    let server = moto();
    let bucket = Bucket::new(server);
    let home = tempfile::tempdir().unwrap();
    let dir = SourceDir::new(home.path().join("sources").join("platform"));
    let first = objects::sync_location("platform", &bucket.location(), &dir)
        .await
        .expect("sync");
    server.upload(
        &bucket.name,
        &format!("{PREFIX}/dags/../../../escape.yaml"),
        b"out",
    );
    let error = objects::sync_location("platform", &bucket.location(), &dir)
        .await
        .expect_err("a key with `..` parts");
    assert!(error.to_string().contains("escape.yaml"), "{error}");
    assert_eq!(dir.current().unwrap().0, first.revision);
    let found: Vec<_> = walk(home.path())
        .into_iter()
        .filter(|p| p.ends_with("escape.yaml"))
        .collect();
    assert!(found.is_empty(), "{found:?}");
}

fn walk(root: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() && !path.is_symlink() {
                stack.push(path.clone());
            }
            found.push(path);
        }
    }
    found
}

#[tokio::test]
async fn a_listing_synced_before_switches_back_to_its_kept_tree() {
    // moto's ETag is the content's MD5, so uploading the old content again gives the old
    // listing back.
    let server = moto();
    let bucket = Bucket::new(server);
    let location = bucket.location();
    let home = tempfile::tempdir().unwrap();
    let dir = SourceDir::new(home.path().join("platform"));
    let first = objects::sync_location("platform", &location, &dir)
        .await
        .expect("sync");
    let key = format!("{PREFIX}/dags/team-a/etl.yaml");
    server.upload(&bucket.name, &key, b"dag_id: broken\n");
    let second = objects::sync_location("platform", &location, &dir)
        .await
        .expect("sync");
    assert_ne!(second.revision, first.revision);

    server.upload(&bucket.name, &key, LAYOUT[0].1.as_bytes());
    let back = objects::sync_location("platform", &location, &dir)
        .await
        .expect("sync");
    assert_eq!(back.revision, first.revision);
    assert!(back.changed);
    assert_eq!(back.files_written, 0);
    let (current, tree) = dir.current().unwrap();
    assert_eq!(current, first.revision);
    assert_eq!(files(&tree), layout_with(&[]));
}
