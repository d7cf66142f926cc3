//! Virtual environments for `python:` tasks with `requirements:` (Airflow's
//! `PythonVirtualenvOperator`): made once per set of requirements and base interpreter, kept
//! in a cache folder and shared by every try that asks for the same set.
//!
//! An environment lives in `<cache>/<key>/`, where the key hashes the tenant, the base
//! interpreter and the sorted requirements. pip installs wheels only: a source distribution's
//! build would run its code as updraft's user, not as the tenant's. It is made under an exclusive lock on `<cache>/<key>.lock` (a process
//! making it and another wanting it take turns, whichever process they are in) and marked
//! complete only after `pip install` succeeded: a half-made environment (a crash, a failed
//! install) is removed and made again by the next try. What `venv` and `pip` print goes to the
//! try's log, so a failed install says why where the user looks.
//!
//! The cache folder must belong to this process's user and be writable by no one else: tries
//! run the environment's interpreter, so a folder another user could write would let them
//! choose what runs.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};

/// The file whose presence says the environment is complete.
const COMPLETE_MARK: &str = ".updraft-complete";

/// The default cache: `$TMPDIR/updraft-venvs-<uid>`.
pub fn default_cache() -> PathBuf {
    std::env::temp_dir().join(format!("updraft-venvs-{}", nix::unistd::getuid()))
}

/// The folder of `tenant`'s environment for `requirements` on `base_python`. Tenants never
/// share one: a try that can write to its environment changes only its own tenant's.
pub fn environment_dir(
    cache: &Path,
    tenant: &str,
    base_python: &str,
    requirements: &[String],
) -> PathBuf {
    cache.join(key(tenant, base_python, requirements))
}

fn key(tenant: &str, base_python: &str, requirements: &[String]) -> String {
    let mut sorted: Vec<&str> = requirements.iter().map(|r| r.trim()).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut hash = Sha256::new();
    hash.update(tenant.as_bytes());
    hash.update(b"\n");
    hash.update(base_python.as_bytes());
    for requirement in sorted {
        hash.update(b"\n");
        hash.update(requirement.as_bytes());
    }
    let digest = hash.finalize();
    digest[..12].iter().map(|b| format!("{b:02x}")).collect()
}

/// The interpreter of `tenant`'s environment for `requirements` on `base_python`, made first if it
/// is not there yet; `venv`'s and `pip`'s output go to `log`. Blocking: call it off the
/// async runtime's threads.
pub fn ensure(
    cache: &Path,
    tenant: &str,
    base_python: &str,
    requirements: &[String],
    log: &File,
) -> Result<PathBuf, String> {
    ensure_cache(cache)?;
    let dir = environment_dir(cache, tenant, base_python, requirements);
    let python = dir.join("bin").join("python");
    let lock_path = dir.with_extension("lock");
    let lock_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
        .map_err(|(_, e)| format!("cannot lock {}: {e}", lock_path.display()))?;
    if dir.join(COMPLETE_MARK).is_file() {
        return Ok(python);
    }
    if dir.exists() {
        fs::remove_dir_all(&dir)
            .map_err(|e| format!("cannot remove the unfinished {}: {e}", dir.display()))?;
    }
    note(
        log,
        &format!(
            "making the virtual environment {} for requirements {}",
            dir.display(),
            requirements.join(" ")
        ),
    );
    run(
        Command::new(base_python).arg("-m").arg("venv").arg(&dir),
        log,
        &format!("`{base_python} -m venv`"),
    )?;
    run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
            ])
            // Wheels only: building a source distribution runs its code, as updraft's user.
            .arg("--only-binary=:all:")
            .args(requirements),
        log,
        "`pip install`",
    )?;
    File::create(dir.join(COMPLETE_MARK))
        .map_err(|e| format!("cannot mark {} complete: {e}", dir.display()))?;
    Ok(python)
}

/// Creates the cache folder (mode 0755) or checks the existing one is this user's and
/// writable by no one else.
fn ensure_cache(cache: &Path) -> Result<(), String> {
    match fs::DirBuilder::new().mode(0o755).create(cache) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create {}: {e}", cache.display())),
    }
    let meta =
        fs::symlink_metadata(cache).map_err(|e| format!("cannot read {}: {e}", cache.display()))?;
    let ours = meta.uid() == nix::unistd::getuid().as_raw();
    let writable_by_others = meta.mode() & 0o022 != 0;
    if !meta.is_dir() || !ours || writable_by_others {
        return Err(format!(
            "the virtual environment cache {} must be a folder of this user that no one else can write",
            cache.display()
        ));
    }
    Ok(())
}

fn run(command: &mut Command, log: &File, what: &str) -> Result<(), String> {
    let out = log
        .try_clone()
        .map_err(|e| format!("cannot write the log: {e}"))?;
    let err = log
        .try_clone()
        .map_err(|e| format!("cannot write the log: {e}"))?;
    let status = command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(|e| format!("{what} could not start: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status}); its output is above"))
    }
}

fn note(log: &File, line: &str) {
    use std::io::Write;
    let _ = writeln!(&*log, "[updraft] {line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_ignores_order_duplicates_and_spaces_but_not_the_interpreter_or_tenant() {
        let a = key("t", "python3", &["six==1.16.0".into(), " attrs".into()]);
        let b = key(
            "t",
            "python3",
            &["attrs".into(), "six==1.16.0".into(), "attrs".into()],
        );
        assert_eq!(a, b);
        assert_ne!(
            a,
            key("t", "python3.11", &["attrs".into(), "six==1.16.0".into()])
        );
        assert_ne!(a, key("t", "python3", &["six==1.16.0".into()]));
        assert_ne!(
            a,
            key("u", "python3", &["attrs".into(), "six==1.16.0".into()])
        );
        assert_eq!(a.len(), 24);
    }

    #[test]
    fn a_cache_writable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("venvs");
        ensure_cache(&cache).unwrap();
        ensure_cache(&cache).unwrap();
        fs::set_permissions(&cache, fs::Permissions::from_mode(0o777)).unwrap();
        let err = ensure_cache(&cache).unwrap_err();
        assert!(err.contains("no one else can write"), "{err}");
    }
}
