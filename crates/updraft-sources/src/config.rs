//! `[[sources]]` entries as written in `updraft.toml` ([`SourceConfig`]) and checked
//! ([`SourceSpec`]): every mistake names the entry and the field.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::SourceError;

/// One `[[sources]]` entry, as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub name: String,
    /// A URL git takes: `https://`, `http://`, `ssh://`, `user@host:path`, `file://`.
    pub git: Option<String>,
    /// An object-store prefix: `s3://`, `gs://`, `az://` (or `wasb://`), `file://`.
    pub objects: Option<String>,
    /// Git: the branch, tag or full commit sha to follow (default `main`).
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    /// The folder inside the tree holding the DAG files (default: the tree's root).
    pub subdir: Option<String>,
    /// The folder inside the tree holding pod templates (default `templates`).
    pub templates: Option<String>,
    /// The tenant the whole source belongs to; unset: folder names give tenants.
    pub tenant: Option<String>,
    /// How often to sync when nothing asks sooner (default 60s).
    pub period: Option<String>,
    /// Git: fetch depth (default 1, shallow; 0 for the whole history).
    pub depth: Option<u32>,
    /// Git over HTTPS: the user name sent with the token (default `git`).
    pub username: Option<String>,
    /// Git over HTTPS: a file holding the token (or password), read again at every sync.
    pub token_file: Option<PathBuf>,
    /// Git over HTTPS: an environment variable holding the token.
    pub token_env: Option<String>,
    /// Git over SSH: the private key.
    pub ssh_key_file: Option<PathBuf>,
    /// Git over SSH: the known_hosts file the server's key must be in.
    pub known_hosts_file: Option<PathBuf>,
    /// Git over SSH: check the server's host key (default true).
    pub ssh_host_key_check: Option<bool>,
    /// A link to a revision's page, `{revision}` replaced by it (e.g.
    /// `https://github.com/org/dags/commit/{revision}`).
    pub revision_url: Option<String>,
    /// Failed syncs in a row before the source is reported failing (default 0: the first).
    pub max_failures: Option<u32>,
}

/// A checked source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSpec {
    pub name: String,
    pub kind: SourceKind,
    pub subdir: Option<String>,
    pub templates: String,
    pub tenant: Option<String>,
    pub period: Duration,
    pub revision_url: Option<String>,
    pub max_failures: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    Git(GitSpec),
    Objects(ObjectsSpec),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitSpec {
    pub url: String,
    pub reference: String,
    /// 0: the whole history.
    pub depth: u32,
    pub auth: GitAuth,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitAuth {
    None,
    Token {
        username: String,
        token: TokenSource,
    },
    Ssh {
        key_file: PathBuf,
        known_hosts_file: Option<PathBuf>,
        check_host_key: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    File(PathBuf),
    Env(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectsSpec {
    pub url: String,
}

impl SourceConfig {
    /// Checks the entry: exactly one of `git`/`objects`, a usable name, fields that belong to
    /// its kind, a period that parses.
    pub fn check(&self) -> Result<SourceSpec, SourceError> {
        todo!("SourceConfig::check")
    }
}
