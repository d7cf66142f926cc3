//! Errors of secrets lookups and of the vault.

use crate::{FormatError, KeyringError};

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// A stored value could not be decrypted or encrypted.
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    /// A value in a backend is not in a format it should be in; the message names where it
    /// came from (the environment variable, the file, the Kubernetes Secret).
    #[error("{source_name}: {error}")]
    Format {
        source_name: String,
        error: FormatError,
    },
    #[error(transparent)]
    Store(#[from] updraft_store::StoreError),
    /// A backend could not be reached or answered with an error (a file unreadable, the
    /// Kubernetes API down); the message names the backend.
    #[error("secrets backend {backend}: {message}")]
    Backend { backend: String, message: String },
}
