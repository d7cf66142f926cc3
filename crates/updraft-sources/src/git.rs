//! Git sources through libgit2 (`git2`): fetch the configured branch, tag or commit into the
//! source's `repo.git` (shallow by default), then write that commit's tree as a new revision
//! tree ([`crate::tree`]), hard-linking blobs unchanged since the previous tree.
//!
//! Credentials: HTTPS with a user and a token read again at every sync (file or environment),
//! SSH with a private key, the server's host key checked against a known_hosts file (on by
//! default). Force-pushes are followed (the fetch refspec forces); a branch deleted or a
//! repository gone fails the sync, and the last good tree stays in use.

use crate::config::GitSpec;
use crate::{SourceError, SourceDir};

/// What a sync ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synced {
    /// The commit sha (git) or generation (objects) now current.
    pub revision: String,
    /// Whether it differs from the revision current before.
    pub changed: bool,
    /// Files written (not linked from the previous tree).
    pub files_written: usize,
}

/// Fetches `spec` into `dir` and makes its tree current. Blocking: call it on the blocking
/// pool.
pub fn sync(name: &str, spec: &GitSpec, dir: &SourceDir) -> Result<Synced, SourceError> {
    let _ = (name, spec, dir);
    todo!("git::sync")
}

/// Writes the tree of `revision` from `dir`'s repository, when the repository still has it
/// (a run pinned an older revision whose tree was pruned, or this process never synced it).
/// Blocking.
pub fn restore(name: &str, dir: &SourceDir, revision: &str) -> Result<(), SourceError> {
    let _ = (name, dir, revision);
    todo!("git::restore")
}
