//! Connections, variables and secrets, as Airflow keeps them.
//!
//! - [`Connection`] and [`Variable`]: Airflow's models, with its formats (connection URI,
//!   connection JSON, `AIRFLOW_CONN_<ID>` / `AIRFLOW_VAR_<KEY>` environment variables).
//! - [`Keyring`]: Fernet encryption at rest with Airflow's `fernet_key` format (several
//!   comma-separated keys decrypt, the first encrypts).
//! - [`Vault`]: connections and variables in the metadata database (through
//!   `updraft_store::SecretStore`), encrypted with a [`Keyring`]; key rotation.
//! - Backends ([`SecretsBackend`]): the environment, files in a directory, the database, and
//!   (in `updraft-pods`) the Kubernetes Secrets of a tenant's namespace; [`Secrets`] asks them
//!   in a configured order, with a cache.
//! - Masking ([`Masker`], [`StreamMasker`]): secret values replaced by `***` wherever text is
//!   shown, including values split across chunks of a stream.
//!
//! Tenancy: every lookup names the tenant asking. A tenant sees its own connections and
//! variables, then the shared (installation-wide) ones; never another tenant's.

mod backend;
mod chain;
mod connection;
mod env;
mod error;
mod files;
mod keyring;
pub mod mask;
mod pyurl;
mod variable;
mod vault;

pub use backend::SecretsBackend;
pub use chain::Secrets;
pub use connection::{Connection, FormatError};
pub use env::EnvBackend;
pub use error::SecretsError;
pub use files::FilesBackend;
pub use keyring::{Keyring, KeyringError};
pub use mask::{Masker, StreamMasker, is_sensitive_name};
pub use variable::Variable;
pub use vault::{DatabaseBackend, Vault};

/// How a masked value is shown.
pub const MASK: &str = "***";
