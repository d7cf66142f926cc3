//! Remote task logs (`[logging] remote_base_log_folder`): a try's log is uploaded to object
//! storage in chunks while it runs and whole when it ends, retried with backoff and never
//! failing the try; reading takes the live local file while the try runs and the object store
//! after, so callers cannot tell the difference.
//!
//! A log is named by its path relative to the logs folder (`updraft_dag::log_path`'s layout,
//! [`rel_path`]); in the store it is `<prefix>/<rel>` once whole and
//! `<prefix>/<rel>.chunks/<start offset>` while it runs. [`RemoteLogs`] reads;
//! [`LogUploader`] uploads, journaling what is pending under `<logs>/.pending-uploads/` so a
//! restarted process finishes it.

mod journal;
mod keys;
mod read;
mod upload;
mod uploader;

use std::path::{Component, Path, PathBuf};

use updraft_objects::{LocationError, ObjectLocation};

pub use read::{LogOrigin, LogSlice, read_local};
pub use uploader::{LogUploader, UploadSettings};

/// Why a log could not be read or uploaded.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log {rel}: {source}")]
    Local {
        rel: String,
        #[source]
        source: std::io::Error,
    },
    #[error("log {rel} in {url}: {source}")]
    Store {
        rel: String,
        url: String,
        #[source]
        source: updraft_objects::object_store::Error,
    },
    #[error("log path {rel:?} is not a relative path inside the logs folder")]
    BadPath { rel: String },
}

/// Task logs kept in an object store beside the local logs folder.
#[derive(Debug, Clone)]
pub struct RemoteLogs {
    location: ObjectLocation,
    folder: PathBuf,
}

impl RemoteLogs {
    /// Logs under `location`, written locally into `folder` first.
    pub fn new(location: ObjectLocation, folder: impl Into<PathBuf>) -> Self {
        RemoteLogs {
            location,
            folder: folder.into(),
        }
    }

    /// Opens `url` (`s3://`, `gs://`, `az://`, `wasb://`, `file://`), credentials from the
    /// environment.
    pub fn open(url: &str, folder: impl Into<PathBuf>) -> Result<Self, LocationError> {
        Ok(RemoteLogs::new(ObjectLocation::open(url)?, folder))
    }

    pub fn location(&self) -> &ObjectLocation {
        &self.location
    }

    /// The local logs folder.
    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// The path of `path` (a log inside the logs folder) relative to the folder, as the
    /// uploader and [`RemoteLogs::read`] name logs; `None` for a path outside it.
    pub fn rel_of(&self, path: &Path) -> Option<String> {
        rel_string(path.strip_prefix(&self.folder).ok()?)
    }

    fn local_path(&self, rel: &str) -> Result<PathBuf, LogError> {
        check_rel(rel)?;
        Ok(self.folder.join(rel))
    }
}

/// A try's log path relative to the logs folder, `/`-separated (`updraft_dag::log_path`'s
/// layout).
pub fn rel_path(
    tenant: &str,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    try_number: u32,
) -> String {
    let path = updraft_dag::log_path(Path::new(""), tenant, dag_id, run_id, task_id, try_number);
    rel_string(&path).unwrap_or_default()
}

/// [`rel_path`] of a mapped instance's try (`.../<task_id>/map_index=<i>/attempt=<n>.log`);
/// with `map_index` -1 exactly [`rel_path`].
pub fn mapped_rel_path(
    tenant: &str,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    map_index: i32,
    try_number: u32,
) -> String {
    let path = updraft_dag::mapped_log_path(
        Path::new(""),
        tenant,
        dag_id,
        run_id,
        task_id,
        map_index,
        try_number,
    );
    rel_string(&path).unwrap_or_default()
}

fn rel_string(path: &Path) -> Option<String> {
    let parts: Option<Vec<&str>> = path
        .components()
        .map(|c| match c {
            Component::Normal(part) => part.to_str(),
            _ => None,
        })
        .collect();
    let parts = parts?;
    (!parts.is_empty()).then(|| parts.join("/"))
}

fn local_error(rel: &str, source: std::io::Error) -> LogError {
    LogError::Local {
        rel: rel.to_string(),
        source,
    }
}

/// `rel` must name a file inside the logs folder: relative, no `.`, `..` or empty parts.
fn check_rel(rel: &str) -> Result<(), LogError> {
    let safe = !rel.is_empty()
        && !rel.contains('\0')
        && rel
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    if safe {
        Ok(())
    } else {
        Err(LogError::BadPath {
            rel: rel.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_follow_the_log_layout_and_stay_inside() {
        let rel = rel_path("acme", "etl", "manual__x/../y", "load", 3);
        assert_eq!(rel, "acme/etl/manual__x%2F..%2Fy/load/attempt=3.log");
        assert!(check_rel(&rel).is_ok());
        for bad in ["", "/etc/passwd", "a/../b", "./a", "a//b", "a/\0"] {
            assert!(check_rel(bad).is_err(), "{bad:?}");
        }
        let logs = RemoteLogs::new(
            ObjectLocation {
                store: std::sync::Arc::new(updraft_objects::object_store::memory::InMemory::new()),
                prefix: Default::default(),
                url: "memory://".into(),
            },
            "/logs",
        );
        assert_eq!(
            logs.rel_of(Path::new("/logs/a/b/attempt=1.log")).as_deref(),
            Some("a/b/attempt=1.log")
        );
        assert_eq!(logs.rel_of(Path::new("/elsewhere/a.log")), None);
    }
}
