//! DAG sources (Airflow 3's DAG bundles): a git repository or an object-store prefix, synced
//! by updraft itself (no sidecar) into an immutable tree per revision under
//! `<sources dir>/<name>/trees/<revision>`, beside the previous one, and switched to at once.
//!
//! - `config`: `[[sources]]` as written in `updraft.toml`, checked into a [`SourceSpec`].
//! - `tree`: the revision trees of one source and the atomic switch ([`SourceDir`]).
//! - `git`: fetching a branch, tag or commit with libgit2 (HTTPS user + token, SSH key with
//!   host key checking), shallow, and writing its tree.
//! - `known_hosts`: OpenSSH's known_hosts format, for checking SSH host keys.
//! - `objects`: listing and downloading an object-store prefix, only what changed.
//! - `manager`: [`Sources`], every configured source: syncs (periodic and on request),
//!   failures counted, the last good tree kept, the trees a run pinned kept, the mounts the
//!   DAG folder loader reads.

pub mod config;
pub mod git;
pub mod known_hosts;
pub mod manager;
pub mod objects;
pub mod tree;

pub use config::{GitAuth, GitSpec, ObjectsSpec, SourceConfig, SourceKind, SourceSpec};
pub use manager::{Mount, SourceState, Sources, SyncOutcome};
pub use tree::SourceDir;

/// What went wrong with a source. Messages name the source and never hold credentials.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A `[[sources]]` entry that cannot work: names the entry and the field.
    #[error("[[sources]] {name}: {field}: {reason}")]
    Config {
        name: String,
        field: String,
        reason: String,
    },
    #[error("source {name}: {message}")]
    Sync { name: String, message: String },
    #[error("source {name}: revision {revision} is not available")]
    MissingRevision { name: String, revision: String },
    #[error("no source named {0}")]
    Unknown(String),
    #[error("source {name}: {path}: {source}")]
    Io {
        name: String,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}
