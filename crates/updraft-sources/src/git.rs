//! Git sources through libgit2 (`git2`): fetch the configured branch, tag or commit into the
//! source's `repo.git` (shallow by default), then write that commit's tree as a new revision
//! tree ([`crate::tree`]), hard-linking blobs unchanged since the previous tree.
//!
//! Credentials: HTTPS with a user and a token read again at every sync (file or environment),
//! SSH with a private key, the server's host key checked against a known_hosts file (on by
//! default, [`crate::known_hosts`]). Force-pushes are followed (the fetch refspec forces); a
//! branch deleted or a repository gone fails the sync, and the last good tree stays in use.
//!
//! The repository keeps `refs/updraft/current`, the commit of the current tree: it is what
//! the next fetch tells the server it has (so an update downloads only what changed) and what
//! the next tree is compared with (so unchanged files are linked, not written).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use git2::{
    AutotagOption, CertificateCheckStatus, Cred, CredentialType, ErrorClass, FetchOptions, Oid,
    ProxyOptions, RemoteCallbacks, Repository, TreeWalkMode, TreeWalkResult,
};

use crate::config::{GitAuth, GitSpec, TokenSource, is_full_sha};
use crate::known_hosts::{self, HostKeyVerdict};
use crate::{SourceDir, SourceError};

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

/// The commit of the current tree, kept so that fetches negotiate from it.
const CURRENT_REF: &str = "refs/updraft/current";
/// Where a fetch puts what it found; removed before each fetch, so a ref gone from the
/// server is noticed instead of the last one fetched being taken again.
const FETCHED_PREFIX: &str = "refs/updraft/fetched/";

/// Fetches `spec` into `dir` and makes its tree current. Blocking: call it on the blocking
/// pool.
pub fn sync(name: &str, spec: &GitSpec, dir: &SourceDir) -> Result<Synced, SourceError> {
    set_network_timeouts();
    let previous = dir.current().map(|(revision, _)| revision);
    let token = match &spec.auth {
        GitAuth::Token { token, .. } => Some(read_token(name, token)?),
        _ => None,
    };
    let (repo, commit) = fetch_recovering(name, spec, dir, token.as_deref())?;
    let revision = commit.to_string();
    if previous.as_deref() == Some(revision.as_str()) {
        return Ok(Synced {
            revision,
            changed: false,
            files_written: 0,
        });
    }
    let files_written = make_current(name, dir, &repo, commit, previous.as_deref())?;
    repo.reference(CURRENT_REF, commit, true, "current tree")
        .map_err(|e| git_error(name, "recording the current commit", &e))?;
    Ok(Synced {
        revision,
        changed: true,
        files_written,
    })
}

/// Fetches into the source's repository; when the repository itself turns out damaged, once
/// more into a new one.
fn fetch_recovering(
    name: &str,
    spec: &GitSpec,
    dir: &SourceDir,
    token: Option<&str>,
) -> Result<(Repository, Oid), SourceError> {
    let repo = open_or_create(name, dir)?;
    match fetch(spec, &repo, token) {
        Ok(commit) => Ok((repo, commit)),
        Err(error) if is_local_damage(&error) => {
            tracing::warn!(source = name, error = %error.message(), "recreating the damaged repository");
            drop(repo);
            let repo = recreate(name, dir)?;
            let commit =
                fetch(spec, &repo, token).map_err(|e| fetch_error(name, spec, token, &e))?;
            Ok((repo, commit))
        }
        Err(error) => Err(fetch_error(name, spec, token, &error)),
    }
}

/// Makes `commit`'s tree current: the kept tree when it was synced before, else a new one
/// written beside the others. Returns the number of files written.
fn make_current(
    name: &str,
    dir: &SourceDir,
    repo: &Repository,
    commit: Oid,
    previous: Option<&str>,
) -> Result<usize, SourceError> {
    let revision = commit.to_string();
    if dir.tree(&revision).is_some() {
        dir.switch(&revision)
            .map_err(|e| io_error(name, dir.base(), e))?;
        return Ok(0);
    }
    let staging = dir.stage().map_err(|e| io_error(name, dir.base(), e))?;
    let base = previous.and_then(|rev| previous_tree(repo, dir, rev));
    let written = write_tree(name, repo, commit, base.as_ref(), staging.path())?;
    dir.commit(staging, &revision)
        .map_err(|e| io_error(name, dir.base(), e))?;
    Ok(written)
}

/// A server that stops answering fails the sync instead of holding it (and every later sync
/// of the source) forever: libgit2's options are process-wide, set once.
fn set_network_timeouts() {
    static SET: std::sync::Once = std::sync::Once::new();
    SET.call_once(|| {
        // SAFETY: called once, before this process's first fetch (libgit2 reads them per
        // connection).
        unsafe {
            let _ = git2::opts::set_server_connect_timeout_in_milliseconds(30_000);
            let _ = git2::opts::set_server_timeout_in_milliseconds(300_000);
        }
    });
}

/// Writes the tree of `revision` from `dir`'s repository, when the repository still has it
/// (a run pinned an older revision whose tree was pruned, or this process never synced it).
/// The current tree stays current. Blocking.
pub fn restore(name: &str, dir: &SourceDir, revision: &str) -> Result<(), SourceError> {
    if dir.tree(revision).is_some() {
        return Ok(());
    }
    let missing = || SourceError::MissingRevision {
        name: name.to_string(),
        revision: revision.to_string(),
    };
    if !is_full_sha(revision) {
        return Err(missing());
    }
    let repo = Repository::open_bare(dir.repo_path()).map_err(|_| missing())?;
    let commit = Oid::from_str(revision)
        .ok()
        .filter(|oid| repo.find_commit(*oid).is_ok())
        .ok_or_else(missing)?;
    let base = dir
        .current()
        .and_then(|(current, _)| previous_tree(&repo, dir, &current));
    let staging = dir.stage().map_err(|e| io_error(name, dir.base(), e))?;
    write_tree(name, &repo, commit, base.as_ref(), staging.path())?;
    dir.install(staging, revision)
        .map_err(|e| io_error(name, dir.base(), e))?;
    Ok(())
}

/// Opens the source's bare repository, creating it when missing and re-creating it when it
/// cannot be opened (a sync killed at the wrong moment may leave it damaged).
fn open_or_create(name: &str, dir: &SourceDir) -> Result<Repository, SourceError> {
    let path = dir.repo_path();
    if !path.exists() {
        return Repository::init_bare(&path)
            .map_err(|e| git_error(name, "creating the repository", &e));
    }
    remove_stale_locks(&path);
    if pack_count(&path) > MAX_PACKS {
        tracing::info!(
            source = name,
            "starting the repository afresh: {MAX_PACKS} fetches' packs"
        );
        return recreate(name, dir);
    }
    match Repository::open_bare(&path) {
        Ok(repo) if current_commit_readable(&repo) => Ok(repo),
        _ => recreate(name, dir),
    }
}

/// Each fetch that brings something adds a pack and libgit2 cannot repack: past this many
/// the repository is started afresh (one full shallow fetch, every file written once more;
/// trees on disk, pinned ones included, are not touched).
const MAX_PACKS: usize = 100;

fn pack_count(repo: &Path) -> usize {
    fs::read_dir(repo.join("objects/pack")).map_or(0, |entries| {
        entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|ext| ext == "pack"))
            .count()
    })
}

fn recreate(name: &str, dir: &SourceDir) -> Result<Repository, SourceError> {
    let path = dir.repo_path();
    if path.exists() {
        fs::remove_dir_all(&path).map_err(|e| io_error(name, &path, e))?;
    }
    Repository::init_bare(&path).map_err(|e| git_error(name, "creating the repository", &e))
}

/// `refs/updraft/current`, when set, names a commit whose tree can be read.
fn current_commit_readable(repo: &Repository) -> bool {
    match repo.find_reference(CURRENT_REF) {
        Ok(reference) => reference.peel_to_commit().and_then(|c| c.tree()).is_ok(),
        Err(error) => error.code() == git2::ErrorCode::NotFound,
    }
}

/// Lock files left by a killed sync: only one sync of a source runs at a time, so any lock
/// found before it starts is stale, and libgit2 would refuse to write beside it.
fn remove_stale_locks(repo: &Path) {
    let mut pending = vec![repo.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let Ok(entries) = fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() && path.file_name().is_some_and(|n| n != "objects") {
                pending.push(path);
            } else if kind.is_file() && path.extension().is_some_and(|ext| ext == "lock") {
                let _ = fs::remove_file(&path);
            }
        }
    }
}

/// An error from the local repository rather than from the server or the network.
fn is_local_damage(error: &git2::Error) -> bool {
    matches!(
        error.class(),
        ErrorClass::Odb
            | ErrorClass::Zlib
            | ErrorClass::Index
            | ErrorClass::Object
            | ErrorClass::Reference
    )
}

/// What the configured `ref` asks for.
enum Target {
    Commit(Oid),
    /// Ref names on the server, tried in order.
    Refs(Vec<String>),
}

impl Target {
    fn of(reference: &str) -> Target {
        if is_full_sha(reference)
            && let Ok(oid) = Oid::from_str(reference)
        {
            return Target::Commit(oid);
        }
        if reference.starts_with("refs/") {
            Target::Refs(vec![reference.to_string()])
        } else {
            Target::Refs(vec![
                format!("refs/heads/{reference}"),
                format!("refs/tags/{reference}"),
            ])
        }
    }
}

/// Fetches the target and returns its commit.
fn fetch(spec: &GitSpec, repo: &Repository, token: Option<&str>) -> Result<Oid, git2::Error> {
    let target = Target::of(&spec.reference);
    if let Target::Commit(oid) = &target
        && repo.find_commit(*oid).is_ok()
    {
        return Ok(*oid);
    }
    forget_fetched(repo)?;
    let refspecs: Vec<String> = match &target {
        Target::Commit(oid) => vec![format!("+{oid}:{FETCHED_PREFIX}0")],
        Target::Refs(refs) => refs
            .iter()
            .enumerate()
            .map(|(i, name)| format!("+{name}:{FETCHED_PREFIX}{i}"))
            .collect(),
    };
    let mut remote = repo.remote_anonymous(&spec.url)?;
    let refusal = RefCell::new(None);
    let mut options = FetchOptions::new();
    options.remote_callbacks(callbacks(spec, token, &refusal));
    options.download_tags(AutotagOption::None);
    options.update_fetchhead(false);
    let mut proxy = ProxyOptions::new();
    proxy.auto();
    options.proxy_options(proxy);
    // libgit2's local transport cannot fetch shallow; a local repository is read whole.
    if spec.depth > 0 && !spec.url.starts_with("file://") {
        options.depth(i32::try_from(spec.depth).unwrap_or(i32::MAX));
    }
    if let Err(error) = remote.fetch(&refspecs, Some(&mut options), None) {
        // libgit2 replaces a host key check's message with its own: give ours back.
        return Err(match refusal.take() {
            Some(message) => git2::Error::new(error.code(), ErrorClass::Ssh, message),
            None => error,
        });
    }
    resolve_fetched(repo, &target, &spec.reference)
}

fn forget_fetched(repo: &Repository) -> Result<(), git2::Error> {
    let glob = format!("{FETCHED_PREFIX}*");
    for reference in repo.references_glob(&glob)? {
        reference?.delete()?;
    }
    Ok(())
}

fn resolve_fetched(
    repo: &Repository,
    target: &Target,
    reference: &str,
) -> Result<Oid, git2::Error> {
    if let Target::Commit(oid) = target {
        return repo.find_commit(*oid).map(|commit| commit.id());
    }
    let Target::Refs(refs) = target else {
        unreachable!()
    };
    for i in 0..refs.len() {
        if let Ok(found) = repo.find_reference(&format!("{FETCHED_PREFIX}{i}")) {
            return found.peel_to_commit().map(|commit| commit.id());
        }
    }
    Err(git2::Error::new(
        git2::ErrorCode::NotFound,
        ErrorClass::Reference,
        format!("the server has no branch or tag {reference:?}"),
    ))
}

/// Credentials and host key checks. libgit2 asks again for as long as the server refuses,
/// so each kind of credential is offered once and then the fetch gives up.
fn callbacks<'a>(
    spec: &'a GitSpec,
    token: Option<&'a str>,
    refusal: &'a RefCell<Option<String>>,
) -> RemoteCallbacks<'a> {
    let mut callbacks = RemoteCallbacks::new();
    let offered = Cell::new(CredentialType::empty());
    callbacks.credentials(move |_url, username_from_url, allowed| {
        let offer = |kind: CredentialType| {
            if offered.get().contains(kind) {
                return Err(git2::Error::from_str("the server refused the credentials"));
            }
            offered.set(offered.get() | kind);
            Ok(())
        };
        match &spec.auth {
            GitAuth::Token { username, .. } if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) => {
                offer(CredentialType::USER_PASS_PLAINTEXT)?;
                Cred::userpass_plaintext(username, token.unwrap_or_default())
            }
            GitAuth::Ssh { key_file, .. } => {
                let user = username_from_url.unwrap_or("git");
                if allowed.contains(CredentialType::USERNAME) {
                    offer(CredentialType::USERNAME)?;
                    return Cred::username(user);
                }
                offer(CredentialType::SSH_KEY)?;
                Cred::ssh_key(user, None, key_file, None)
            }
            _ => Err(git2::Error::from_str(
                "the server asks for credentials: set token_file or token_env (https) or ssh_key_file (ssh)",
            )),
        }
    });
    callbacks.certificate_check(move |cert, host| {
        let Some(hostkey) = cert.as_hostkey() else {
            // TLS: libgit2 verifies the certificate against the system's roots.
            return Ok(CertificateCheckStatus::CertificatePassthrough);
        };
        let GitAuth::Ssh {
            known_hosts_file,
            check_host_key,
            ..
        } = &spec.auth
        else {
            return Err(git2::Error::from_str(
                "an SSH host key was offered to a source not configured for SSH",
            ));
        };
        if !check_host_key {
            return Ok(CertificateCheckStatus::CertificateOk);
        }
        check_host(
            host,
            ssh_port(&spec.url),
            hostkey,
            known_hosts_file.as_deref(),
        )
        .inspect_err(|error| *refusal.borrow_mut() = Some(error.message().to_string()))
    });
    callbacks
}

fn check_host(
    host: &str,
    port: u16,
    hostkey: &git2::cert::CertHostkey<'_>,
    known_hosts_file: Option<&Path>,
) -> Result<CertificateCheckStatus, git2::Error> {
    let (Some(key), Some(kind)) = (hostkey.hostkey(), hostkey.hostkey_type()) else {
        return Err(git2::Error::from_str(
            "the SSH server's host key could not be read",
        ));
    };
    let file = match known_hosts_file {
        Some(file) => file.to_path_buf(),
        None => default_known_hosts().ok_or_else(|| {
            git2::Error::from_str("no known_hosts_file set and no $HOME/.ssh/known_hosts")
        })?,
    };
    let text = fs::read_to_string(&file)
        .map_err(|e| git2::Error::from_str(&format!("known_hosts_file {}: {e}", file.display())))?;
    let shown = known_hosts::host_name(host, port);
    let fingerprint = known_hosts::fingerprint(key);
    let describe = format!("{shown} ({} {fingerprint})", kind.name());
    match known_hosts::verify(&text, host, port, kind.name(), key) {
        HostKeyVerdict::Trusted => Ok(CertificateCheckStatus::CertificateOk),
        HostKeyVerdict::Unknown => Err(git2::Error::from_str(&format!(
            "host key of {describe} is not in known_hosts_file {}",
            file.display()
        ))),
        HostKeyVerdict::Changed => Err(git2::Error::from_str(&format!(
            "host key of {describe} does not match known_hosts_file {}: refusing to connect (the key changed, or someone is in between)",
            file.display()
        ))),
        HostKeyVerdict::Revoked => Err(git2::Error::from_str(&format!(
            "host key of {describe} is marked @revoked in known_hosts_file {}",
            file.display()
        ))),
    }
}

fn default_known_hosts() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| Path::new(&home).join(".ssh/known_hosts"))
}

/// The port of an SSH URL (`ssh://host:2222/…`), 22 otherwise.
fn ssh_port(url: &str) -> u16 {
    let Some((_, rest)) = url.split_once("://") else {
        return 22;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let port = match host_port.rsplit_once("]:") {
        Some((_, port)) => Some(port),
        None if !host_port.starts_with('[') => host_port.rsplit_once(':').map(|(_, port)| port),
        None => None,
    };
    port.and_then(|p| p.parse().ok()).unwrap_or(22)
}

/// The token, read now (a rotated token file is picked up by the next sync).
fn read_token(name: &str, source: &TokenSource) -> Result<String, SourceError> {
    let (field, token) = match source {
        TokenSource::File(path) => (
            format!("token_file {}", path.display()),
            fs::read_to_string(path)
                .map_err(|e| sync_error(name, format!("token_file {}: {e}", path.display())))?,
        ),
        TokenSource::Env(var) => (
            format!("token_env {var}"),
            std::env::var(var)
                .map_err(|_| sync_error(name, format!("token_env {var} is not set")))?,
        ),
    };
    let token = token.trim_end_matches(['\r', '\n']).to_string();
    if token.is_empty() {
        return Err(sync_error(name, format!("{field} is empty")));
    }
    Ok(token)
}

fn fetch_error(
    name: &str,
    spec: &GitSpec,
    token: Option<&str>,
    error: &git2::Error,
) -> SourceError {
    let mut message = format!(
        "fetching {} ({}): {}",
        spec.url,
        spec.reference,
        error.message()
    );
    if let Some(token) = token {
        message = message.replace(token, "***");
    }
    sync_error(name, message)
}

/// The previous commit's files (path to blob id and mode) and its tree on disk, for linking
/// unchanged files instead of writing them.
struct BaseTree {
    folder: PathBuf,
    blobs: HashMap<String, (Oid, i32)>,
}

fn previous_tree(repo: &Repository, dir: &SourceDir, revision: &str) -> Option<BaseTree> {
    let folder = dir.tree(revision)?;
    let tree = Oid::from_str(revision)
        .ok()
        .and_then(|oid| repo.find_commit(oid).ok())?
        .tree()
        .ok()?;
    let mut blobs = HashMap::new();
    tree.walk(TreeWalkMode::PreOrder, |root, entry| {
        if entry.kind() == Some(git2::ObjectType::Blob)
            && let Ok(file) = entry.name()
        {
            blobs.insert(format!("{root}{file}"), (entry.id(), entry.filemode()));
        }
        TreeWalkResult::Ok
    })
    .ok()?;
    Some(BaseTree { folder, blobs })
}

const MODE_FILE: i32 = 0o100644;
const MODE_EXECUTABLE: i32 = 0o100755;
const MODE_LINK: i32 = 0o120000;

/// Writes `commit`'s tree into `staging`: regular files (executable bit kept) written or
/// linked from `base` when unchanged; symbolic links kept only when they resolve inside the
/// tree; submodules and entries whose names could leave a folder skipped. Returns the
/// number of files written.
fn write_tree(
    name: &str,
    repo: &Repository,
    commit: Oid,
    base: Option<&BaseTree>,
    staging: &Path,
) -> Result<usize, SourceError> {
    let tree = repo
        .find_commit(commit)
        .and_then(|c| c.tree())
        .map_err(|e| git_error(name, "reading the commit's tree", &e))?;
    let mut files = Vec::new();
    let mut links = Vec::new();
    let mut failure: Option<SourceError> = None;
    let walked = tree.walk(TreeWalkMode::PreOrder, |root, entry| {
        let Some(file) = entry.name().ok().filter(|n| is_safe_entry_name(n)) else {
            return TreeWalkResult::Skip;
        };
        let rel = format!("{root}{file}");
        let path = staging.join(&rel);
        let result = match (entry.kind(), entry.filemode()) {
            (Some(git2::ObjectType::Tree), _) => {
                fs::create_dir(&path).map_err(|e| io_error(name, &path, e))
            }
            (Some(git2::ObjectType::Blob), MODE_LINK) => {
                links.push((rel, entry.id()));
                Ok(())
            }
            (Some(git2::ObjectType::Blob), mode @ (MODE_FILE | MODE_EXECUTABLE)) => {
                let unchanged =
                    base.is_some_and(|b| b.blobs.get(&rel) == Some(&(entry.id(), mode)));
                if unchanged {
                    let base = base.expect("checked above");
                    // The walk made the folder already: one link(2), the common case.
                    fs::hard_link(base.folder.join(&rel), &path)
                        .or_else(|_| crate::tree::link_unchanged(&base.folder, staging, &rel))
                        .map_err(|e| io_error(name, &path, e))
                } else {
                    files.push((path, entry.id(), mode == MODE_EXECUTABLE));
                    Ok(())
                }
            }
            // Submodules and anything else git may hold: not part of the tree written.
            _ => Ok(()),
        };
        match result {
            Ok(()) => TreeWalkResult::Ok,
            Err(error) => {
                failure = Some(error);
                TreeWalkResult::Abort
            }
        }
    });
    if let Some(error) = failure {
        return Err(error);
    }
    walked.map_err(|e| git_error(name, "walking the commit's tree", &e))?;
    write_blobs(name, repo, &files)?;
    write_links(name, repo, staging, &links)?;
    Ok(files.len())
}

/// Files of a tree to write: where, which blob, whether executable.
type FileToWrite = (PathBuf, Oid, bool);

/// Writes `files` (their folders exist) on a few threads, each with a repository handle of
/// its own (a handle is not shared between threads): inflating and writing thousands of
/// files is most of a first sync.
fn write_blobs(name: &str, repo: &Repository, files: &[FileToWrite]) -> Result<(), SourceError> {
    const FILES_PER_THREAD: usize = 256;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8)
        .min(files.len().div_ceil(FILES_PER_THREAD))
        .max(1);
    if threads == 1 {
        return files
            .iter()
            .try_for_each(|(path, id, exec)| write_blob(name, repo, *id, path, *exec));
    }
    let repo_path = repo.path().to_path_buf();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let work = || -> Result<(), SourceError> {
        let repo = Repository::open_bare(&repo_path)
            .map_err(|e| git_error(name, "opening the repository", &e))?;
        loop {
            if failed.load(std::sync::atomic::Ordering::Relaxed) {
                return Ok(());
            }
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some((path, id, exec)) = files.get(i) else {
                return Ok(());
            };
            if let Err(error) = write_blob(name, &repo, *id, path, *exec) {
                failed.store(true, std::sync::atomic::Ordering::Relaxed);
                return Err(error);
            }
        }
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads).map(|_| scope.spawn(work)).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(sync_error(name, "writing the tree panicked".into())))
            })
            .collect::<Result<Vec<()>, SourceError>>()
            .map(|_| ())
    })
}

/// A tree entry name that names one entry of its folder.
fn is_safe_entry_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && name != ".git" && !name.contains(['/', '\0'])
}

fn write_blob(
    name: &str,
    repo: &Repository,
    id: Oid,
    path: &Path,
    executable: bool,
) -> Result<(), SourceError> {
    let blob = repo
        .find_blob(id)
        .map_err(|e| git_error(name, "reading a file", &e))?;
    fs::write(path, blob.content()).map_err(|e| io_error(name, path, e))?;
    if executable {
        fs::set_permissions(path, fs::Permissions::from_mode(0o755))
            .map_err(|e| io_error(name, path, e))?;
    }
    Ok(())
}

/// Creates the tree's symbolic links, then removes every one that does not resolve to
/// something inside the tree (links out, dangling links, loops): a DAG file must never read
/// outside its revision.
fn write_links(
    name: &str,
    repo: &Repository,
    staging: &Path,
    links: &[(String, Oid)],
) -> Result<(), SourceError> {
    for (rel, id) in links {
        let blob = repo
            .find_blob(*id)
            .map_err(|e| git_error(name, "reading a link", &e))?;
        let Ok(target) = std::str::from_utf8(blob.content()) else {
            continue;
        };
        let target = Path::new(target);
        if target.is_absolute()
            || target
                .components()
                .any(|c| matches!(c, Component::Prefix(_)))
        {
            continue;
        }
        let path = staging.join(rel);
        std::os::unix::fs::symlink(target, &path).map_err(|e| io_error(name, &path, e))?;
    }
    let root = fs::canonicalize(staging).map_err(|e| io_error(name, staging, e))?;
    for (rel, _) in links {
        let path = staging.join(rel);
        if fs::symlink_metadata(&path).is_err() {
            continue;
        }
        let inside = fs::canonicalize(&path)
            .is_ok_and(|resolved| resolved.starts_with(&root) && resolved != root);
        if !inside {
            tracing::warn!(source = name, link = %rel, "skipping a symbolic link that leads out of the tree");
            fs::remove_file(&path).map_err(|e| io_error(name, &path, e))?;
        }
    }
    Ok(())
}

fn sync_error(name: &str, message: String) -> SourceError {
    SourceError::Sync {
        name: name.to_string(),
        message,
    }
}

fn git_error(name: &str, doing: &str, error: &git2::Error) -> SourceError {
    sync_error(name, format!("{doing}: {}", error.message()))
}

fn io_error(name: &str, path: &Path, source: io::Error) -> SourceError {
    SourceError::Io {
        name: name.to_string(),
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_ports_from_urls() {
        assert_eq!(ssh_port("ssh://git@example.com:2222/org/r.git"), 2222);
        assert_eq!(ssh_port("ssh://git@example.com/org/r.git"), 22);
        assert_eq!(ssh_port("ssh://[::1]:2200/r.git"), 2200);
        assert_eq!(ssh_port("ssh://[::1]/r.git"), 22);
        assert_eq!(ssh_port("git@example.com:org/r.git"), 22);
    }

    #[test]
    fn entry_names_that_could_leave_a_folder_are_refused() {
        for bad in ["", ".", "..", ".git", "a/b"] {
            assert!(!is_safe_entry_name(bad), "{bad:?}");
        }
        assert!(is_safe_entry_name(".github"));
    }
}
