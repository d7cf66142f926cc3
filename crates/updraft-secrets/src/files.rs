//! The files backend: one file per connection or variable in a directory, as a mounted
//! Kubernetes Secret or External Secrets write them.
//!
//! Layout under the configured directory:
//! `connections/<conn_id>` (a URI or JSON) and `variables/<key>` (the value) are shared;
//! `tenants/<tenant>/connections/<conn_id>` and `tenants/<tenant>/variables/<key>` are the
//! tenant's own and win over the shared ones. A trailing newline is not part of the value.
//! A tenant name, connection id or key that could leave the directory (one containing `/`,
//! `..` or NUL, or empty) is never used as a path: it is simply not found.

use std::path::{Path, PathBuf};

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

impl FilesBackend {
    /// The files that may hold `name` of `kind` (`connections`, `variables`) for `tenant`, the
    /// tenant's own first; none when a part is not a plain file name.
    fn candidates(&self, tenant: &str, kind: &str, name: &str) -> Vec<PathBuf> {
        if !is_plain_name(tenant) || !is_plain_name(name) {
            return Vec::new();
        }
        vec![
            self.dir.join("tenants").join(tenant).join(kind).join(name),
            self.dir.join(kind).join(name),
        ]
    }

    /// The text of the first candidate file that exists, with the file's path.
    async fn read_first(
        &self,
        tenant: &str,
        kind: &str,
        name: &str,
    ) -> Result<Option<(PathBuf, String)>, SecretsError> {
        for path in self.candidates(tenant, kind, name) {
            if let Some(text) = read_value(&path).await? {
                return Ok(Some((path, text)));
            }
        }
        Ok(None)
    }
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && !name.contains('/')
        && !name.contains("..")
        && !name.contains('\0')
}

/// The file's text without its trailing newline; `None` when there is no such file.
async fn read_value(path: &Path) -> Result<Option<String>, SecretsError> {
    let failed = |message: String| SecretsError::Backend {
        backend: "files".to_owned(),
        message: format!("{}: {message}", path.display()),
    };
    let bytes = match tokio::fs::read(path).await {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(failed(e.to_string())),
    };
    let mut text = String::from_utf8(bytes).map_err(|_| failed("not UTF-8 text".to_owned()))?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(Some(text))
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
        let Some((path, text)) = self.read_first(tenant, "connections", conn_id).await? else {
            return Ok(None);
        };
        Connection::from_uri_or_json(conn_id, &text)
            .map(Some)
            .map_err(|error| SecretsError::Format {
                source_name: format!("file {}", path.display()),
                error,
            })
    }

    async fn variable(&self, tenant: &str, key: &str) -> Result<Option<String>, SecretsError> {
        Ok(self
            .read_first(tenant, "variables", key)
            .await?
            .map(|(_, text)| text))
    }
}
