//! Object-store locations: a URL (`s3://bucket/prefix`, `gs://…`, `az://container/prefix`,
//! Airflow's `wasb://container@account…` spelling, `file:///path`) opened as an
//! [`object_store::ObjectStore`] and a key prefix inside it.
//!
//! Credentials come from the environment the way each cloud's own SDK finds them (S3: the
//! `AWS_*` variables, web identity tokens as IRSA sets them, instance metadata; GCS:
//! `GOOGLE_APPLICATION_CREDENTIALS`, workload identity through the metadata server; Azure:
//! `AZURE_*` variables, workload identity's federated token file), so a pod needs only its
//! service account. Both DAG sources and remote task logs open their locations here.

use std::sync::Arc;

pub use object_store;
use object_store::ObjectStore;
use object_store::path::Path;

/// An opened location: the store and the prefix every key lives under.
#[derive(Debug, Clone)]
pub struct ObjectLocation {
    pub store: Arc<dyn ObjectStore>,
    pub prefix: Path,
    /// The URL it was opened from (never holding credentials).
    pub url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LocationError {
    #[error("{url}: {reason}")]
    Invalid { url: String, reason: String },
    #[error("{url}: {source}")]
    Open {
        url: String,
        #[source]
        source: object_store::Error,
    },
}

impl ObjectLocation {
    /// Opens `url`, credentials from the environment.
    pub fn open(url: &str) -> Result<Self, LocationError> {
        let _ = url;
        todo!("ObjectLocation::open")
    }

    /// The key of `rel` (a `/`-separated relative path) under the prefix.
    pub fn key(&self, rel: &str) -> Path {
        let mut key = self.prefix.clone();
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            key = key.clone().join(part);
        }
        key
    }
}
