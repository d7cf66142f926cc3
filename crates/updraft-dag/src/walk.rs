//! Walking a DAGs folder without leaving it: [`scan`] lists the DAG files under the root and
//! turns everything it will not read into an import error.
//!
//! The walk trusts nothing it finds. A symbolic link is resolved, and followed only when its
//! target lies inside the root (a link out of the root, a dangling link and a link cycle are
//! import errors naming the link; the target is never named nor read). Named pipes, sockets
//! and devices are import errors, never opened (opening a FIFO would block). A name holding a
//! bidirectional control character is an import error showing the name escaped. The walk is
//! bounded (entries read, folder depth) and checks a stop flag before every entry, so a huge
//! or hostile folder costs a bounded amount of work and never delays a shutdown for long.
//!
//! A file is later opened by [`open_regular`], which refuses anything but the regular file
//! (same device and inode) the walk saw, so swapping a file for a link or a FIFO between the
//! walk and the read gains nothing.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, FileType, Metadata};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use crate::bag::DagBagOptions;
use crate::model::ImportError;
use crate::parse::check_identifier;
use crate::tenant_of;

/// The `filename` of import errors about the DAGs folder as a whole.
pub const FOLDER_ERROR_FILENAME: &str = ".";

/// Which file a path named when it was looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    fn of(meta: &Metadata) -> Self {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// What the walk saw of a file: a change to any part means it must be read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub mtime: Option<SystemTime>,
    pub size: u64,
    pub id: FileId,
}

impl Stamp {
    fn of(meta: &Metadata) -> Self {
        Stamp {
            mtime: meta.modified().ok(),
            size: meta.len(),
            id: FileId::of(meta),
        }
    }
}

/// A DAG file found by the walk.
#[derive(Debug)]
pub(crate) struct Found {
    /// Relative to the root, `/`-separated, through the names the walk followed (a file
    /// reached through a link inside the root is named by the link).
    pub rel: String,
    pub tenant: String,
    /// The real path to read: no symbolic link in it when the walk saw it.
    pub path: PathBuf,
    pub stamp: Stamp,
    /// The name of the mount it was found in (set by the bag).
    pub bundle: Option<String>,
}

/// What a walk found.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub found: Vec<Found>,
    pub errors: Vec<ImportError>,
}

/// The walk was stopped through its flag before it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stopped;

/// Walks `root` within `options`' bounds until done or until `stop` is set.
#[cfg(test)]
pub(crate) fn scan(
    root: &Path,
    options: &DagBagOptions,
    stop: &AtomicBool,
) -> Result<Scan, Stopped> {
    scan_for(root, None, options, stop)
}

/// [`scan`], every file and error belonging to `tenant` when given (a folder mounted at a
/// tenant: its folder names are not tenants); names stay relative to `root`.
pub(crate) fn scan_for(
    root: &Path,
    tenant: Option<&str>,
    options: &DagBagOptions,
    stop: &AtomicBool,
) -> Result<Scan, Stopped> {
    let mut walk = Walk {
        root: PathBuf::new(),
        tenant,
        options,
        stop,
        entries: 0,
        scan: Scan::default(),
    };
    let Some(top) = walk.open_root(root) else {
        return Ok(walk.scan);
    };
    let mut stack = vec![top];
    while let Some(dir) = stack.pop() {
        let Some(names) = walk.read_dir(&dir)? else {
            return Ok(walk.scan);
        };
        let mut subdirs = Vec::new();
        for (name, file_type) in names {
            walk.check_stop()?;
            walk.visit(&dir, &name, file_type, &mut subdirs);
        }
        // Popped in order: the walk reads folders depth first, by name.
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(walk.scan)
}

/// A folder to read: where it really is, and how the walk names it.
#[derive(Debug)]
struct Dir {
    real: PathBuf,
    /// `""` for the root, else `a/b`.
    rel: String,
    depth: usize,
    /// The folders from the root down to this one, itself included, to detect cycles.
    ancestors: Vec<FileId>,
}

struct Walk<'a> {
    /// The root with every symbolic link resolved: nothing outside it is read.
    root: PathBuf,
    /// The tenant of every file, when the folder is mounted at one.
    tenant: Option<&'a str>,
    options: &'a DagBagOptions,
    stop: &'a AtomicBool,
    entries: usize,
    scan: Scan,
}

impl Walk<'_> {
    fn check_stop(&self) -> Result<(), Stopped> {
        if self.stop.load(Ordering::Relaxed) {
            Err(Stopped)
        } else {
            Ok(())
        }
    }

    fn error(&mut self, rel: &str, message: String) {
        let filename = if rel.is_empty() {
            FOLDER_ERROR_FILENAME
        } else {
            rel
        };
        self.scan.errors.push(ImportError {
            tenant: self.tenant.unwrap_or(tenant_of(filename)).to_owned(),
            filename: filename.to_owned(),
            line: None,
            column: None,
            message,
        });
    }

    fn open_root(&mut self, root: &Path) -> Option<Dir> {
        let opened = fs::canonicalize(root).and_then(|real| {
            let meta = fs::metadata(&real)?;
            Ok((real, meta))
        });
        match opened {
            Ok((real, meta)) if meta.is_dir() => {
                self.root = real.clone();
                Some(Dir {
                    real,
                    rel: String::new(),
                    depth: 0,
                    ancestors: vec![FileId::of(&meta)],
                })
            }
            Ok(_) => {
                self.error(
                    "",
                    format!("the DAGs folder {} is not a folder", root.display()),
                );
                None
            }
            Err(e) => {
                self.error("", format!("cannot scan {}: {e}", root.display()));
                None
            }
        }
    }

    /// The entries of `dir`, by name, counted against the entry limit. `Ok(None)` when the
    /// limit is reached: the walk ends there.
    #[allow(clippy::type_complexity)]
    fn read_dir(
        &mut self,
        dir: &Dir,
    ) -> Result<Option<Vec<(OsString, io::Result<FileType>)>>, Stopped> {
        let entries = match fs::read_dir(&dir.real) {
            Ok(entries) => entries,
            Err(e) => {
                self.error(&dir.rel, format!("cannot read the folder: {e}"));
                return Ok(Some(Vec::new()));
            }
        };
        let mut names = Vec::new();
        for entry in entries {
            self.check_stop()?;
            self.entries += 1;
            if self.entries > self.options.max_entries {
                let message = format!(
                    "the DAGs folder holds more than {} entries (files, folders and links, hidden ones included); \
                     the walk stopped there and the rest was not read (raise core.max_dag_folder_entries)",
                    self.options.max_entries
                );
                self.error("", message);
                return Ok(None);
            }
            match entry {
                Ok(entry) => names.push((entry.file_name(), entry.file_type())),
                Err(e) => {
                    self.error(&dir.rel, format!("cannot read the folder: {e}"));
                    break;
                }
            }
        }
        names.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Some(names))
    }

    fn visit(
        &mut self,
        dir: &Dir,
        name: &OsStr,
        file_type: io::Result<FileType>,
        subdirs: &mut Vec<Dir>,
    ) {
        if is_hidden(name) {
            return;
        }
        let shown = escape_name(&name.to_string_lossy());
        let rel = if dir.rel.is_empty() {
            shown.clone()
        } else {
            format!("{}/{shown}", dir.rel)
        };
        if let Some(c) = name.to_string_lossy().chars().find(|c| is_bidi_control(*c)) {
            let message = format!(
                "the name `{shown}` holds the bidirectional control character U+{:04X}, which can make \
                 a name display as another; it is not read (rename it)",
                u32::from(c)
            );
            self.error(&rel, message);
            return;
        }
        let path = dir.real.join(name);
        let file_type = match file_type {
            Ok(t) => t,
            Err(e) => return self.error(&rel, format!("cannot read: {e}")),
        };
        if file_type.is_file() && !is_dag_file(&rel) {
            return;
        }
        if file_type.is_symlink() {
            self.follow_link(dir, rel, &path, subdirs);
            return;
        }
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            // Gone since the folder was listed: as if it had never been there.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) => return self.error(&rel, format!("cannot read: {e}")),
        };
        if meta.is_dir() {
            self.enter(dir, rel, path, &meta, subdirs);
        } else if meta.is_file() {
            self.add_file(rel, path, &meta);
        } else {
            self.refuse_special(&rel, meta.file_type());
        }
    }

    /// Follows a symbolic link whose target is inside the root; anything else is an error
    /// naming the link, never its target.
    fn follow_link(&mut self, dir: &Dir, rel: String, path: &Path, subdirs: &mut Vec<Dir>) {
        let target = match fs::canonicalize(path) {
            Ok(target) => target,
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return self.error(
                    &rel,
                    "the symbolic link is a cycle (it resolves through itself); not followed"
                        .to_owned(),
                );
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return self.error(
                    &rel,
                    "the symbolic link is dangling (its target does not exist)".to_owned(),
                );
            }
            Err(e) => {
                return self.error(&rel, format!("cannot resolve the symbolic link: {e}"));
            }
        };
        if !target.starts_with(&self.root) {
            // A link named like no DAG file, to a regular file, would not be read anyway.
            let plain_file = fs::metadata(&target).is_ok_and(|m| m.is_file());
            if plain_file && !is_dag_file(&rel) {
                return;
            }
            return self.error(
                &rel,
                "the symbolic link points outside the DAGs folder; links are followed only \
                 within it"
                    .to_owned(),
            );
        }
        let meta = match fs::metadata(&target) {
            Ok(meta) => meta,
            Err(e) => return self.error(&rel, format!("cannot read the link's target: {e}")),
        };
        if meta.is_dir() {
            self.enter(dir, rel, target, &meta, subdirs);
        } else if meta.is_file() {
            self.add_file(rel, target, &meta);
        } else {
            self.refuse_special(&rel, meta.file_type());
        }
    }

    fn enter(
        &mut self,
        dir: &Dir,
        rel: String,
        real: PathBuf,
        meta: &Metadata,
        subdirs: &mut Vec<Dir>,
    ) {
        let id = FileId::of(meta);
        if dir.ancestors.contains(&id) {
            return self.error(
                &rel,
                "the folder is a cycle (it contains itself, through a link or a mount); not followed"
                    .to_owned(),
            );
        }
        if dir.depth + 1 > self.options.max_depth {
            let message = format!(
                "the folder is nested more than {} levels below the DAGs folder; it is not read \
                 (raise core.max_dag_folder_depth)",
                self.options.max_depth
            );
            return self.error(&rel, message);
        }
        let mut ancestors = dir.ancestors.clone();
        ancestors.push(id);
        subdirs.push(Dir {
            real,
            rel,
            depth: dir.depth + 1,
            ancestors,
        });
    }

    fn add_file(&mut self, rel: String, path: PathBuf, meta: &Metadata) {
        if !is_dag_file(&rel) {
            return;
        }
        let tenant = match self.tenant {
            Some(tenant) => tenant.to_owned(),
            None => tenant_of(&rel).to_owned(),
        };
        if let Err(message) = check_identifier("tenant folder name", &tenant) {
            return self.error(&rel, message);
        }
        self.scan.found.push(Found {
            rel,
            tenant,
            path,
            stamp: Stamp::of(meta),
            bundle: None,
        });
    }

    fn refuse_special(&mut self, rel: &str, file_type: FileType) {
        let what = if file_type.is_fifo() {
            "a named pipe (FIFO)"
        } else if file_type.is_socket() {
            "a socket"
        } else if file_type.is_block_device() || file_type.is_char_device() {
            "a device"
        } else {
            "neither a file nor a folder"
        };
        self.error(
            rel,
            format!("this is {what}; only regular files and folders are read from the DAGs folder"),
        );
    }
}

/// Why [`open_regular`] refused a path.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The path no longer names the file the walk saw (replaced, or swapped for a link).
    #[error("the file changed while it was being read")]
    Changed,
}

/// Opens `path` for reading only if it is still the regular file `expected`: never through a
/// final symbolic link, never blocking (a FIFO put in its place is refused, not waited on).
pub(crate) fn open_regular(
    path: &Path,
    expected: Option<FileId>,
) -> Result<(File, Metadata), OpenError> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => OpenError::Changed,
            _ => OpenError::Io(e),
        })?;
    let meta = file.metadata()?;
    if !meta.is_file() || expected.is_some_and(|id| id != FileId::of(&meta)) {
        return Err(OpenError::Changed);
    }
    Ok((file, meta))
}

/// Unicode's explicit bidirectional formatting characters (embeddings, overrides, isolates)
/// and marks, which can make a name display as a different one ("Trojan Source").
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// `name` with control and bidirectional control characters written as `\u{..}`, so it shows
/// as what it is.
pub fn escape_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_control() || is_bidi_control(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

pub(crate) fn is_hidden(name: &OsStr) -> bool {
    name.as_encoded_bytes().first() == Some(&b'.')
}

pub(crate) fn is_dag_file(rel: &str) -> bool {
    Path::new(rel)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_controls_are_escaped() {
        assert_eq!(escape_name("a\u{202e}lmy.yaml"), "a\\u{202e}lmy.yaml");
        assert_eq!(
            escape_name("x\u{2066}\u{200f}\n"),
            "x\\u{2066}\\u{200f}\\u{a}"
        );
        assert_eq!(escape_name("plain é.yaml"), "plain é.yaml");
        for c in [
            '\u{202A}', '\u{202E}', '\u{2066}', '\u{2069}', '\u{200E}', '\u{200F}',
        ] {
            assert!(is_bidi_control(c), "{c:?}");
        }
        assert!(!is_bidi_control('\u{2065}') && !is_bidi_control('a'));
    }

    #[test]
    fn only_the_regular_file_seen_is_opened() {
        let dir = tempfile::TempDir::new().unwrap();
        let file = dir.path().join("a.yaml");
        fs::write(&file, "x").unwrap();
        let id = FileId::of(&fs::metadata(&file).unwrap());
        assert!(open_regular(&file, Some(id)).is_ok());
        let other = FileId {
            ino: id.ino + 1,
            ..id
        };
        assert!(matches!(
            open_regular(&file, Some(other)),
            Err(OpenError::Changed)
        ));
        let link = dir.path().join("link.yaml");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(matches!(open_regular(&link, None), Err(OpenError::Changed)));
        let fifo = dir.path().join("fifo.yaml");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        // Returns at once (no writer will ever come), refusing the pipe.
        assert!(matches!(open_regular(&fifo, None), Err(OpenError::Changed)));
    }

    #[test]
    fn dag_files_by_extension() {
        assert!(is_dag_file("a/b.yaml") && is_dag_file("B.YML"));
        assert!(!is_dag_file("a.yaml.txt") && !is_dag_file("yaml"));
    }
}
