//! What keeps a local try to itself: the environment it gets (an allow-list of this process's
//! variables, never the rest), a working directory of its own per try, log files only
//! updraft's user can read, and optionally the unix user of its tenant.
//!
//! Without a `run_as_user` the try runs as updraft's own user: it cannot see the scheduler's
//! secrets through its environment, but it can still open any file updraft's user can. With
//! one, it runs as that user (uid, gid, no supplementary groups), in a directory that user
//! owns, and its log is written by updraft through a file descriptor the try only inherits.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid, User, chown};

/// Variables of this process every try gets when set (a trailing `*` matches a prefix).
pub const DEFAULT_ENV_ALLOWLIST: &[&str] = &["PATH", "LANG", "LC_*", "TZ"];

/// How local tries are kept apart from the scheduler and from each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TryIsolation {
    /// Names of this process's environment variables passed on to tries (a trailing `*`
    /// matches a prefix); every other variable of this process is left out. The task's own
    /// `env` and updraft's `UPDRAFT_*`/`AIRFLOW_CTX_*` variables always reach it.
    pub env_allowlist: Vec<String>,
    /// Where each try gets its working directory (also its `HOME` and `TMPDIR`). `None`: a
    /// directory made under the system's temporary directory for this executor.
    pub work_folder: Option<PathBuf>,
    /// Keep each try's working directory after the try (for debugging); else it is removed.
    pub keep_work_dirs: bool,
    /// Tenant → the unix user its tries run as (`[tenants.<tenant>] run_as_user`).
    pub run_as_user: BTreeMap<String, String>,
}

impl Default for TryIsolation {
    fn default() -> Self {
        TryIsolation {
            env_allowlist: DEFAULT_ENV_ALLOWLIST
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            work_folder: None,
            keep_work_dirs: false,
            run_as_user: BTreeMap::new(),
        }
    }
}

impl TryIsolation {
    /// This process's variables that `env_allowlist` lets through.
    pub fn inherited_env(&self) -> Vec<(String, String)> {
        std::env::vars()
            .filter(|(name, _)| self.allows(name))
            .collect()
    }

    fn allows(&self, name: &str) -> bool {
        self.env_allowlist
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == pattern,
            })
    }

    /// The user `tenant`'s tries run as, if one is configured: resolved and checked.
    pub fn run_as(&self, tenant: Option<&str>) -> Result<Option<RunAs>, String> {
        let Some((tenant, name)) =
            tenant.and_then(|t| self.run_as_user.get(t).map(|user| (t, user)))
        else {
            return Ok(None);
        };
        let refuse = |why: String| {
            format!(
                "cannot run this try as user `{name}` (set by [tenants.{tenant}] run_as_user): {why}"
            )
        };
        let user = match User::from_name(name) {
            Ok(Some(user)) => user,
            Ok(None) => return Err(refuse("no such user on this machine".into())),
            Err(e) => return Err(refuse(format!("looking the user up failed: {e}"))),
        };
        let me = Uid::effective();
        if !me.is_root() && me != user.uid {
            return Err(refuse(format!(
                "updraft runs as uid {me}, not as root, so it can only run tries as itself"
            )));
        }
        Ok(Some(RunAs {
            name: name.clone(),
            uid: user.uid,
            gid: user.gid,
        }))
    }
}

/// A unix user a try runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
}

/// Makes `dir` (and missing parents) with `mode`, and sets `mode` on `dir` itself even when it
/// was there already.
pub(crate) fn private_dir(dir: &Path, mode: u32) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
}

/// A fresh working directory for one try under `root` (made `0711`: users may pass through to
/// their own directory, not list the others), `0700` and owned by `owner` when given. What a
/// crashed executor left under the same name is removed first.
pub(crate) fn make_work_dir(
    root: &Path,
    name: &str,
    owner: Option<&RunAs>,
) -> Result<PathBuf, String> {
    let fail = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
        format!(
            "cannot {what} the try's working directory {}: {e}",
            path.display()
        )
    };
    private_dir(root, 0o711).map_err(|e| fail("make the folder of", root, &e))?;
    let dir = root.join(name);
    if std::fs::symlink_metadata(&dir).is_ok() {
        std::fs::remove_dir_all(&dir).map_err(|e| fail("clear", &dir, &e))?;
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| fail("make", &dir, &e))?;
    if let Some(user) = owner {
        chown(&dir, Some(user.uid), Some(user.gid)).map_err(|e| fail("hand over", &dir, &e))?;
    }
    Ok(dir)
}

/// Opens (appending, creating) a try's log: `0600`, its missing folders `0700`, so only
/// updraft's user reads logs.
pub(crate) fn open_log(path: &Path) -> std::io::Result<File> {
    if let Some(parent) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// Gives the try's conf file to the user the try runs as.
pub(crate) fn hand_over(path: &Path, user: &RunAs) -> Result<(), String> {
    chown(path, Some(user.uid), Some(user.gid)).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allowlist_matches_names_and_prefixes() {
        let isolation = TryIsolation {
            env_allowlist: vec!["PATH".into(), "LC_*".into()],
            ..TryIsolation::default()
        };
        assert!(isolation.allows("PATH"));
        assert!(isolation.allows("LC_ALL"));
        assert!(!isolation.allows("PATHX"));
        assert!(!isolation.allows("UPDRAFT__DATABASE__URL"));
    }
}
