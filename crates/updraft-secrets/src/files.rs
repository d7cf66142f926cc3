//! The files backend: one file per connection or variable in a directory, as a mounted
//! Kubernetes Secret or External Secrets write them.
//!
//! Layout under the configured directory:
//! `connections/<conn_id>` (a URI or JSON) and `variables/<key>` (the value) are shared;
//! `tenants/<tenant>/connections/<conn_id>` and `tenants/<tenant>/variables/<key>` are the
//! tenant's own and win over the shared ones. A trailing newline is not part of the value.

use std::path::PathBuf;

use async_trait::async_trait;

use crate::{Connection, SecretsBackend, SecretsError};

pub struct FilesBackend {
    dir: PathBuf,
}

impl FilesBackend {
    pub fn new(dir: impl Into<PathBuf>) -> FilesBackend {
        FilesBackend { dir: dir.into() }
    }
}

#[async_trait]
impl SecretsBackend for FilesBackend {
    fn name(&self) -> &str {
        "files"
    }

    async fn connection(
        &self,
        tenant: &str,
        conn_id: &str,
    ) -> Result<Option<Connection>, SecretsError> {
        let _ = (&self.dir, tenant, conn_id);
        todo!("files backend connection")
    }

    async fn variable(&self, tenant: &str, key: &str) -> Result<Option<String>, SecretsError> {
        let _ = (tenant, key);
        todo!("files backend variable")
    }
}
