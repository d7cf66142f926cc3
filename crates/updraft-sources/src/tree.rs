//! One source's folder: the revision trees and the atomic switch between them.
//!
//! ```text
//! <sources dir>/<name>/
//!   trees/<revision>/     one immutable tree per revision synced (never written again)
//!   trees/.staging-*      a tree being written; renamed into place only when complete
//!   current -> trees/<revision>   the tree in use, switched by renaming a new link over it
//!   repo.git/             git's object store (git sources)
//! ```
//!
//! A sync writes the whole new tree into a staging folder beside the others and only then
//! renames it to its revision's name and turns `current` to it (a `rename(2)` of a symbolic
//! link, atomic on POSIX file systems). A sync killed halfway leaves a staging folder, removed
//! by the next one, and never a partial tree under a revision's name. Files unchanged since
//! the previous tree are hard links to it, so they keep their inode and mtime and the DAG
//! loader does not read them again.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

const TREES: &str = "trees";
const CURRENT: &str = "current";
const STAGING_PREFIX: &str = ".staging-";

/// The folder of one source.
#[derive(Debug, Clone)]
pub struct SourceDir {
    base: PathBuf,
}

/// A tree being written; dropped without [`SourceDir::commit`], it is removed.
#[derive(Debug)]
pub struct Staging {
    path: PathBuf,
    committed: bool,
}

impl Staging {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

impl SourceDir {
    pub fn new(base: impl Into<PathBuf>) -> Self {
        SourceDir { base: base.into() }
    }

    pub fn base(&self) -> &Path {
        &self.base
    }

    /// Where git keeps its objects for this source.
    pub fn repo_path(&self) -> PathBuf {
        self.base.join("repo.git")
    }

    fn trees(&self) -> PathBuf {
        self.base.join(TREES)
    }

    /// The tree of `revision`, if it was synced and is still kept.
    pub fn tree(&self, revision: &str) -> Option<PathBuf> {
        if !is_revision_name(revision) {
            return None;
        }
        let path = self.trees().join(revision);
        path.is_dir().then_some(path)
    }

    /// The revision in use and its tree, if any sync succeeded.
    pub fn current(&self) -> Option<(String, PathBuf)> {
        let target = fs::read_link(self.base.join(CURRENT)).ok()?;
        let revision = target.file_name()?.to_str()?.to_string();
        let tree = self.tree(&revision)?;
        Some((revision, tree))
    }

    /// A new, empty staging folder; staging folders left by a killed sync are removed first.
    pub fn stage(&self) -> io::Result<Staging> {
        let trees = self.trees();
        fs::create_dir_all(&trees)?;
        for entry in fs::read_dir(&trees)? {
            let entry = entry?;
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(STAGING_PREFIX)
            {
                fs::remove_dir_all(entry.path())?;
            }
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = trees.join(format!("{STAGING_PREFIX}{}-{nanos}", std::process::id()));
        fs::create_dir(&path)?;
        Ok(Staging {
            path,
            committed: false,
        })
    }

    /// Puts a complete staging tree in place as `revision` and makes it current. When that
    /// revision's tree already exists (synced before), the staging tree is dropped and the
    /// existing one made current.
    pub fn commit(&self, staging: Staging, revision: &str) -> io::Result<PathBuf> {
        let tree = self.install(staging, revision)?;
        self.switch(revision)?;
        Ok(tree)
    }

    /// Puts a complete staging tree in place as `revision` without making it current (an
    /// older revision restored for a pinned run). When that revision's tree already exists,
    /// the staging tree is dropped.
    pub fn install(&self, mut staging: Staging, revision: &str) -> io::Result<PathBuf> {
        if !is_revision_name(revision) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not a revision name: {revision:?}"),
            ));
        }
        let tree = self.trees().join(revision);
        if tree.is_dir() {
            drop(staging);
        } else {
            fs::rename(&staging.path, &tree)?;
            staging.committed = true;
            sync_dir(&self.trees())?;
        }
        Ok(tree)
    }

    /// Makes the kept tree of `revision` current.
    pub fn switch(&self, revision: &str) -> io::Result<()> {
        let link = self.base.join(CURRENT);
        let next = self.base.join(format!(".{CURRENT}.next"));
        let _ = fs::remove_file(&next);
        std::os::unix::fs::symlink(Path::new(TREES).join(revision), &next)?;
        fs::rename(&next, &link)?;
        sync_dir(&self.base)
    }

    /// Removes every tree but the current one and those in `keep`.
    pub fn prune(&self, keep: &HashSet<String>) -> io::Result<()> {
        let current = self.current().map(|(revision, _)| revision);
        let Ok(entries) = fs::read_dir(self.trees()) else {
            return Ok(());
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(STAGING_PREFIX)
                || current.as_deref() == Some(name.as_str())
                || keep.contains(&name)
            {
                continue;
            }
            fs::remove_dir_all(entry.path())?;
        }
        Ok(())
    }
}

/// A revision names a folder: letters, digits, `-`, `_`, `.`, not starting with `.`.
pub fn is_revision_name(revision: &str) -> bool {
    !revision.is_empty()
        && revision.len() <= 128
        && !revision.starts_with('.')
        && revision
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Hard-links `rel` of `previous` into `staging` (creating its parent folders): the file
/// keeps its inode and mtime, so the DAG loader knows it unchanged. Falls back to a copy
/// where links cannot be made.
pub fn link_unchanged(previous: &Path, staging: &Path, rel: &str) -> io::Result<()> {
    let from = previous.join(rel);
    let to = staging.join(rel);
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent)?;
    }
    match fs::hard_link(&from, &to) {
        Ok(()) => Ok(()),
        Err(_) => fs::copy(&from, &to).map(|_| ()),
    }
}
