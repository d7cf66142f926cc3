//! Loading a DAGs folder: [`DagBag`].
//!
//! A file directly in the folder belongs to tenant [`DEFAULT_TENANT`]; a file anywhere below
//! `<folder>/<tenant>/` belongs to `<tenant>`. Only `.yaml`/`.yml` files are read; hidden files
//! and folders (name starting with `.`) are skipped. Every file is parsed on its own, so one
//! broken file never keeps the others from loading. The folder is walked by `walk`, which never
//! leaves it and turns what it will not read (links out of the folder, pipes, devices, names
//! with bidirectional controls, what lies beyond the limits) into import errors.
//!
//! A bag may read several folders instead of one ([`DagMount`]: the current trees of DAG
//! sources, see `updraft-sources`): each mounted at a tenant (its files are named
//! `<tenant>/<path>` and all belong to it) or at the root (folder names give tenants, as
//! above), and named by its source (the bundle name each [`LoadedDag`] carries). Two mounts
//! giving the same name to a file: the first mount's file is read, the other is an import
//! error. A mount's folder may change between refreshes ([`DagBag::set_mounts`]); files that
//! keep their inode and mtime (hard links between revision trees) are not read again.
//!
//! [`DagBag::refresh`] rescans the folder and re-parses only the files whose size, mtime,
//! inode or content changed, in parallel, and reports which DAGs were added, updated or
//! removed. [`DagBag::refresh_unless_stopped`] does the same but gives up, changing nothing,
//! as soon as its stop flag is set.
//!
//! An import error's message quotes at most [`MAX_ERROR_MESSAGE_CHARS`] characters (control
//! and bidirectional characters escaped), and a file reports at most
//! [`MAX_ERRORS_PER_FILE`] errors, so a hostile file cannot flood the error list.

use std::collections::{BTreeMap, HashMap};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use crate::model::{DEFAULT_TENANT, Dag, ImportError};
use crate::parse::parse_located;
use crate::walk::{self, Found, OpenError, Stamp, Stopped};
use crate::yaml::Pos;

/// Default limit on the size of a DAG file.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 1024 * 1024;
/// Default limit on the entries (files, folders, links; hidden ones too) one walk of the DAGs
/// folder reads.
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;
/// Default limit on how deep folders nest below the DAGs folder.
pub const DEFAULT_MAX_DEPTH: usize = 32;
/// Longest import-error message kept, in characters; longer ones are cut.
pub const MAX_ERROR_MESSAGE_CHARS: usize = 500;
/// Most import errors kept for one file; the rest are counted in a last one.
pub const MAX_ERRORS_PER_FILE: usize = 20;

/// A file modified this recently is read again on every refresh even when its size and mtime
/// look unchanged, as a second write within the file system's mtime granularity would not
/// change them.
const MTIME_GRACE: Duration = Duration::from_secs(2);

/// How a [`DagBag`] reads its folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DagBagOptions {
    /// Files larger than this many bytes are import errors.
    pub max_file_size: u64,
    /// A walk reading more entries than this stops there, with an import error.
    pub max_entries: usize,
    /// Folders nested deeper than this below the root are import errors, not read.
    pub max_depth: usize,
    /// Threads used to read and parse files; 0 means one per available core.
    pub threads: usize,
}

impl Default for DagBagOptions {
    fn default() -> Self {
        DagBagOptions {
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            max_entries: DEFAULT_MAX_ENTRIES,
            max_depth: DEFAULT_MAX_DEPTH,
            threads: 0,
        }
    }
}

/// A DAG as loaded from its file.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedDag {
    pub dag: Dag,
    /// [`Dag::version`] of `dag`.
    pub version: String,
    /// The text of the file it was parsed from.
    pub source: String,
    /// The name of the mount (DAG source) it was read from; `None` for an unnamed folder.
    pub bundle: Option<String>,
}

/// One folder a [`DagBag`] reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DagMount {
    /// The folder, read as it is at each refresh.
    pub root: PathBuf,
    /// `Some`: every file belongs to this tenant and is named `<tenant>/<path>`; `None`: folder
    /// names give tenants.
    pub tenant: Option<String>,
    /// The bundle name given to its DAGs; `None` for the plain DAGs folder.
    pub name: Option<String>,
    /// The revision of the folder's content (a source's commit or generation), if any.
    pub version: Option<String>,
}

impl DagMount {
    /// The plain DAGs folder: at the root, unnamed.
    pub fn folder(root: impl Into<PathBuf>) -> Self {
        DagMount {
            root: root.into(),
            tenant: None,
            name: None,
            version: None,
        }
    }
}

/// What a [`DagBag::refresh`] changed. DAG ids are sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefreshReport {
    /// DAGs that were not loaded before.
    pub added: Vec<String>,
    /// DAGs whose definition (version), defining file or source text changed.
    pub updated: Vec<String>,
    /// DAGs no longer loaded (file deleted, broken, or lost its dag_id to another file). A
    /// broken file's DAGs stay scheduled on their last good version in the store (see
    /// `SchedulerStore::sync_dags`); here they are simply not loaded.
    pub removed: Vec<String>,
    /// Whether the set of import errors changed.
    pub import_errors_changed: bool,
    /// Files (relative paths) parsed by this refresh; unchanged files are not parsed again.
    pub parsed_files: Vec<String>,
    /// DAG files found in the folder.
    pub files_seen: usize,
}

impl RefreshReport {
    /// Whether anything a caller acts on changed: DAGs or import errors.
    pub fn has_changes(&self) -> bool {
        !(self.added.is_empty()
            && self.updated.is_empty()
            && self.removed.is_empty()
            && !self.import_errors_changed)
    }
}

/// The DAGs of a folder, kept up to date by [`DagBag::refresh`].
#[derive(Debug)]
pub struct DagBag {
    /// The first mount's folder (the DAGs folder when there is one mount).
    root: PathBuf,
    mounts: Vec<DagMount>,
    options: DagBagOptions,
    files: BTreeMap<String, FileEntry>,
    dags: BTreeMap<String, Arc<LoadedDag>>,
    import_errors: Vec<ImportError>,
    /// The import errors of the last walk itself (entries it would not read).
    scan_errors: Vec<ImportError>,
}

#[derive(Debug)]
struct FileEntry {
    /// `None` when the file must be read again whatever the next walk sees.
    stamp: Option<Stamp>,
    /// Hash of the content last read; `None` when the file could not be read.
    digest: Option<[u8; 32]>,
    /// The mount it was read through.
    bundle: Option<String>,
    outcome: Outcome,
}

#[derive(Debug, Clone)]
enum Outcome {
    Dag {
        loaded: Arc<LoadedDag>,
        dag_id_pos: Option<Pos>,
    },
    Failed(Vec<ImportError>),
}

/// The result of reading (and maybe parsing) one file.
#[derive(Debug)]
enum Read {
    /// Content identical to what was parsed before.
    Unchanged { digest: [u8; 32] },
    Parsed {
        digest: Option<[u8; 32]>,
        outcome: Outcome,
    },
    /// The file disappeared or was replaced between the walk and the read: what was known of
    /// it stands until the next refresh reads it again.
    Changed,
}

impl DagBag {
    /// A bag over `root` with default options. Nothing is loaded until [`DagBag::refresh`].
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self::with_options(root, DagBagOptions::default())
    }

    pub fn with_options(root: impl Into<PathBuf>, options: DagBagOptions) -> Self {
        Self::with_mounts(vec![DagMount::folder(root)], options)
    }

    /// A bag reading `mounts`, in order. Nothing is loaded until [`DagBag::refresh`].
    pub fn with_mounts(mounts: Vec<DagMount>, options: DagBagOptions) -> Self {
        DagBag {
            root: mounts.first().map(|m| m.root.clone()).unwrap_or_default(),
            mounts,
            options,
            files: BTreeMap::new(),
            dags: BTreeMap::new(),
            import_errors: Vec::new(),
            scan_errors: Vec::new(),
        }
    }

    /// A bag over `root`, loaded.
    pub fn load(root: impl Into<PathBuf>) -> Self {
        let mut bag = Self::new(root);
        bag.refresh();
        bag
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folders read, in order.
    pub fn mounts(&self) -> &[DagMount] {
        &self.mounts
    }

    /// Replaces the folders read from the next refresh on (a source switched revision).
    pub fn set_mounts(&mut self, mounts: Vec<DagMount>) {
        self.root = mounts.first().map(|m| m.root.clone()).unwrap_or_default();
        self.mounts = mounts;
    }

    /// The revision the mount named `bundle` was read at, by the last [`DagBag::set_mounts`].
    pub fn bundle_version(&self, bundle: &str) -> Option<&str> {
        self.mounts
            .iter()
            .find(|m| m.name.as_deref() == Some(bundle))
            .and_then(|m| m.version.as_deref())
    }

    /// The loaded DAGs, by dag_id.
    pub fn dags(&self) -> impl ExactSizeIterator<Item = &Arc<LoadedDag>> {
        self.dags.values()
    }

    pub fn dag(&self, dag_id: &str) -> Option<&Arc<LoadedDag>> {
        self.dags.get(dag_id)
    }

    /// Every import error of the folder, by file then position.
    pub fn import_errors(&self) -> &[ImportError] {
        &self.import_errors
    }

    /// How many DAG files the last refresh found.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// Rescans the folder, re-parses the files that changed, and reports what changed.
    pub fn refresh(&mut self) -> RefreshReport {
        let never = AtomicBool::new(false);
        match self.refresh_unless_stopped(&never) {
            Some(report) => report,
            None => unreachable!("the stop flag is never set"),
        }
    }

    /// [`DagBag::refresh`], checking `stop` before every folder entry and every file: once it
    /// is set, returns `None` at once and leaves the bag as it was.
    pub fn refresh_unless_stopped(&mut self, stop: &AtomicBool) -> Option<RefreshReport> {
        let walk::Scan {
            found,
            errors: scan_errors,
        } = self.scan_mounts(stop)?;
        let now = SystemTime::now();
        let mut report = RefreshReport {
            files_seen: found.len(),
            ..RefreshReport::default()
        };
        let jobs: Vec<&Found> = found.iter().filter(|f| self.needs_read(f, now)).collect();
        let results = self.read_all(&jobs, stop).ok()?;
        let mut kept: BTreeMap<String, FileEntry> = BTreeMap::new();
        let mut results: HashMap<&str, Read> = results.into_iter().collect();
        for f in &found {
            let previous = self.files.remove(&f.rel);
            match (results.remove(f.rel.as_str()), previous) {
                (None, Some(entry)) => {
                    kept.insert(f.rel.clone(), entry);
                }
                (Some(Read::Unchanged { digest }), Some(entry)) => {
                    let entry = FileEntry {
                        stamp: Some(f.stamp),
                        digest: Some(digest),
                        ..entry
                    };
                    kept.insert(f.rel.clone(), entry);
                }
                (Some(Read::Parsed { digest, outcome }), _) => {
                    report.parsed_files.push(f.rel.clone());
                    let entry = FileEntry {
                        stamp: Some(f.stamp),
                        digest,
                        bundle: f.bundle.clone(),
                        outcome,
                    };
                    kept.insert(f.rel.clone(), entry);
                }
                (Some(Read::Changed), Some(entry)) => {
                    let entry = FileEntry {
                        stamp: None,
                        ..entry
                    };
                    kept.insert(f.rel.clone(), entry);
                }
                (Some(Read::Changed), None)
                | (None, None)
                | (Some(Read::Unchanged { .. }), None) => {}
            }
        }
        self.files = kept;
        let (dags, mut errors) = self.resolve_dag_ids();
        errors.extend(scan_errors.iter().cloned());
        sort_errors(&mut errors);
        self.scan_errors = scan_errors;
        report.import_errors_changed = errors != self.import_errors;
        diff_dags(&self.dags, &dags, &mut report);
        self.dags = dags;
        self.import_errors = errors;
        Some(report)
    }

    /// Walks every mount, naming files as the bag does (a tenant mount's under
    /// `<tenant>/`); a name a previous mount already gave is an import error.
    fn scan_mounts(&self, stop: &AtomicBool) -> Option<walk::Scan> {
        let mut all = walk::Scan::default();
        let mut seen: HashMap<String, Option<String>> = HashMap::new();
        for mount in &self.mounts {
            let tenant = mount.tenant.as_deref();
            let scan = walk::scan_for(&mount.root, tenant, &self.options, stop).ok()?;
            let named = |rel: String| match tenant {
                Some(t) => format!("{t}/{rel}"),
                None => rel,
            };
            for mut error in scan.errors {
                error.filename = named(error.filename);
                all.errors.push(error);
            }
            for mut f in scan.found {
                f.rel = named(f.rel);
                f.bundle = mount.name.clone();
                match seen.get(&f.rel) {
                    Some(first) => all.errors.push(file_error(
                        &f,
                        format!(
                            "{} also holds this file, and it is read from there; a file must come from one DAG source only",
                            first.as_deref().unwrap_or("the DAGs folder")
                        ),
                    )),
                    None => {
                        seen.insert(f.rel.clone(), mount.name.clone());
                        all.found.push(f);
                    }
                }
            }
        }
        if self.mounts.len() > 1 {
            all.found.sort_by(|a, b| a.rel.cmp(&b.rel));
        }
        Some(all)
    }

    /// Whether `f` must be read: new, size/mtime changed, modified very recently, or it could
    /// not be read last time (permissions may have changed without touching the mtime).
    fn needs_read(&self, f: &Found, now: SystemTime) -> bool {
        let Some(entry) = self.files.get(&f.rel) else {
            return true;
        };
        if entry.bundle != f.bundle {
            return true;
        }
        let recent = f
            .stamp
            .mtime
            .is_none_or(|m| now.duration_since(m).map_or(true, |age| age < MTIME_GRACE));
        let unreadable = entry.digest.is_none() && f.stamp.size <= self.options.max_file_size;
        entry.stamp != Some(f.stamp) || recent || unreadable
    }

    /// Reads and parses `jobs` on a few threads, until done or `stop` is set.
    fn read_all<'f>(
        &self,
        jobs: &[&'f Found],
        stop: &AtomicBool,
    ) -> Result<Vec<(&'f str, Read)>, Stopped> {
        let threads = match self.options.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
        .min(jobs.len().div_ceil(16).max(1));
        let next = AtomicUsize::new(0);
        let work = || {
            let mut out = Vec::new();
            loop {
                if stop.load(Ordering::Relaxed) {
                    return out;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(i) else {
                    return out;
                };
                let previous = self
                    .files
                    .get(&job.rel)
                    .filter(|e| e.bundle == job.bundle)
                    .and_then(|e| e.digest);
                out.push((
                    job.rel.as_str(),
                    read_file(job, previous, self.options.max_file_size),
                ));
            }
        };
        let results = if threads <= 1 {
            work()
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = (0..threads).map(|_| scope.spawn(work)).collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().unwrap_or_default())
                    .collect()
            })
        };
        if stop.load(Ordering::Relaxed) {
            return Err(Stopped);
        }
        Ok(results)
    }

    /// Resolves the dag_ids with no owner known: see [`DagBag::resolve_with_owners`].
    fn resolve_dag_ids(&self) -> (BTreeMap<String, Arc<LoadedDag>>, Vec<ImportError>) {
        self.resolve(&HashMap::new())
    }

    /// The DAGs and import errors of the folder when `owners` (dag_id → tenant, as registered
    /// in the store) own their dag_ids: a dag_id goes to its owner's file that sorts first
    /// (a dag_id no one owns yet, to the file that sorts first); another file of the same
    /// tenant declaring it gets an import error naming both files, a file of another tenant
    /// one saying that the dag_id belongs to another tenant (naming neither it nor its file).
    /// The bag itself is left as it is. Import errors are sorted by file then position.
    pub fn resolve_with_owners(
        &self,
        owners: &HashMap<String, String>,
    ) -> (Vec<Arc<LoadedDag>>, Vec<ImportError>) {
        let (dags, mut errors) = self.resolve(owners);
        errors.extend(self.scan_errors.iter().cloned());
        sort_errors(&mut errors);
        (dags.into_values().collect(), errors)
    }

    fn resolve(
        &self,
        owners: &HashMap<String, String>,
    ) -> (BTreeMap<String, Arc<LoadedDag>>, Vec<ImportError>) {
        let mut claims: BTreeMap<&str, Vec<Claim<'_>>> = BTreeMap::new();
        let mut errors = Vec::new();
        // `files` is sorted by path, so each dag_id's claims are too.
        for (rel, entry) in &self.files {
            match &entry.outcome {
                Outcome::Failed(file_errors) => errors.extend(file_errors.iter().cloned()),
                Outcome::Dag { loaded, dag_id_pos } => {
                    claims
                        .entry(loaded.dag.dag_id.as_str())
                        .or_default()
                        .push(Claim {
                            rel,
                            loaded,
                            pos: *dag_id_pos,
                        });
                }
            }
        }
        let mut dags = BTreeMap::new();
        for (dag_id, claims) in claims {
            let owner = owners.get(dag_id).map(String::as_str);
            let winner = match owner {
                Some(tenant) => claims.iter().find(|c| c.loaded.dag.tenant == tenant),
                None => claims.first(),
            };
            for claim in &claims {
                match winner {
                    Some(w) if std::ptr::eq(w, claim) => {}
                    Some(w) if w.loaded.dag.tenant == claim.loaded.dag.tenant => {
                        errors.push(duplicate_error(claim, &w.loaded.dag));
                    }
                    _ => errors.push(foreign_claim_error(
                        &claim.loaded.dag,
                        claim.rel,
                        claim.pos.map(|p| (p.line, p.column)),
                    )),
                }
            }
            if let Some(w) = winner {
                dags.insert(dag_id.to_owned(), Arc::clone(w.loaded));
            }
        }
        (dags, errors)
    }
}

/// A file declaring a dag_id.
struct Claim<'a> {
    rel: &'a str,
    loaded: &'a Arc<LoadedDag>,
    pos: Option<Pos>,
}

fn duplicate_error(claim: &Claim<'_>, owner: &Dag) -> ImportError {
    let (dag, rel) = (&claim.loaded.dag, claim.rel);
    ImportError {
        tenant: dag.tenant.clone(),
        filename: rel.to_owned(),
        line: claim.pos.map(|p| p.line),
        column: claim.pos.map(|p| p.column),
        message: format!(
            "dag_id `{}` is already used by {}; {rel} declares it too, and dag_ids must be unique across the whole DAGs folder",
            dag.dag_id, owner.fileloc
        ),
    }
}

/// The import error of `rel` (whose DAG is `dag`) declaring a dag_id another tenant owns:
/// names the file and the dag_id, never the owner or its file. `at` is the line and column
/// of the `dag_id` key, when known.
pub fn foreign_claim_error(dag: &Dag, rel: &str, at: Option<(u32, u32)>) -> ImportError {
    ImportError {
        tenant: dag.tenant.clone(),
        filename: rel.to_owned(),
        line: at.map(|(line, _)| line),
        column: at.map(|(_, column)| column),
        message: format!(
            "dag_id `{}` belongs to another tenant; {rel} cannot declare it (a dag_id stays with the tenant that first registered it): choose another dag_id",
            dag.dag_id
        ),
    }
}

fn sort_errors(errors: &mut [ImportError]) {
    errors.sort_by(|a, b| {
        (&a.filename, a.line, a.column, &a.message).cmp(&(
            &b.filename,
            b.line,
            b.column,
            &b.message,
        ))
    });
}

fn diff_dags(
    old: &BTreeMap<String, Arc<LoadedDag>>,
    new: &BTreeMap<String, Arc<LoadedDag>>,
    report: &mut RefreshReport,
) {
    for (id, loaded) in new {
        match old.get(id) {
            None => report.added.push(id.clone()),
            Some(before) if Arc::ptr_eq(before, loaded) => {}
            Some(before) => {
                let same = before.version == loaded.version
                    && before.source == loaded.source
                    && before.dag.fileloc == loaded.dag.fileloc
                    && before.bundle == loaded.bundle;
                if !same {
                    report.updated.push(id.clone());
                }
            }
        }
    }
    report.removed = old
        .keys()
        .filter(|id| !new.contains_key(*id))
        .cloned()
        .collect();
}

/// Reads one file and parses it unless its content hashes to `previous`. Only the regular file
/// the walk saw is read (see [`walk::open_regular`]), and never more than `max_size + 1` bytes.
fn read_file(f: &Found, previous: Option<[u8; 32]>, max_size: u64) -> Read {
    let fail = |message: String| Read::Parsed {
        digest: None,
        outcome: Outcome::Failed(vec![file_error(f, message)]),
    };
    if f.stamp.size > max_size {
        return fail(too_large(f.stamp.size, max_size));
    }
    let file = match walk::open_regular(&f.path, Some(f.stamp.id)) {
        Ok((file, _)) => file,
        Err(OpenError::Changed) => return Read::Changed,
        Err(OpenError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => return Read::Changed,
        Err(OpenError::Io(e)) => return fail(format!("cannot read the file: {e}")),
    };
    let mut bytes = Vec::new();
    if let Err(e) = file
        .take(max_size.saturating_add(1))
        .read_to_end(&mut bytes)
    {
        return fail(format!("cannot read the file: {e}"));
    }
    if bytes.len() as u64 > max_size {
        return fail(format!(
            "the file is over the {max_size}-byte limit for DAG files"
        ));
    }
    let digest: [u8; 32] = Sha256::digest(&bytes).into();
    if previous == Some(digest) {
        return Read::Unchanged { digest };
    }
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let offset = e.utf8_error().valid_up_to();
            return Read::Parsed {
                digest: Some(digest),
                outcome: Outcome::Failed(vec![file_error(
                    f,
                    format!("the file is not valid UTF-8 (invalid byte at offset {offset})"),
                )]),
            };
        }
    };
    let outcome = match parse_located(&f.tenant, &f.rel, &text) {
        Ok(parsed) => Outcome::Dag {
            loaded: Arc::new(LoadedDag {
                version: parsed.dag.version(),
                dag: parsed.dag,
                source: text,
                bundle: f.bundle.clone(),
            }),
            dag_id_pos: parsed.dag_id_pos,
        },
        Err(errors) => Outcome::Failed(bounded(errors)),
    };
    Read::Parsed {
        digest: Some(digest),
        outcome,
    }
}

/// At most [`MAX_ERRORS_PER_FILE`] errors, each message cut to [`MAX_ERROR_MESSAGE_CHARS`]
/// with control and bidirectional characters escaped: messages may quote the file.
fn bounded(mut errors: Vec<ImportError>) -> Vec<ImportError> {
    let more = errors.len().saturating_sub(MAX_ERRORS_PER_FILE);
    if more > 0 {
        errors.truncate(MAX_ERRORS_PER_FILE - 1);
        if let Some(last) = errors.last().cloned() {
            errors.push(ImportError {
                line: None,
                column: None,
                message: format!("… and {} more errors in this file", more + 1),
                ..last
            });
        }
    }
    for error in &mut errors {
        error.message = bounded_message(&error.message);
    }
    errors
}

/// `message` with control (but newline and tab) and bidirectional characters escaped, cut to
/// [`MAX_ERROR_MESSAGE_CHARS`] characters.
pub fn bounded_message(message: &str) -> String {
    let mut out = String::new();
    for (i, c) in message.chars().enumerate() {
        if i == MAX_ERROR_MESSAGE_CHARS {
            out.push_str("… (cut)");
            break;
        }
        if (c.is_control() && c != '\n' && c != '\t') || walk::is_bidi_control(c) {
            out.push_str(&walk::escape_name(&c.to_string()));
        } else {
            out.push(c);
        }
    }
    out
}

fn too_large(size: u64, max: u64) -> String {
    format!("the file is {size} bytes, over the {max}-byte limit for DAG files")
}

fn file_error(f: &Found, message: String) -> ImportError {
    ImportError {
        tenant: f.tenant.clone(),
        filename: f.rel.clone(),
        line: None,
        column: None,
        message,
    }
}

/// The tenant of a relative file name.
pub fn tenant_of(rel: &str) -> &str {
    match rel.split_once('/') {
        Some((tenant, _)) => tenant,
        None => DEFAULT_TENANT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bag_with(stamp: Stamp, digest: Option<[u8; 32]>) -> (DagBag, Found) {
        let mut bag = DagBag::with_options(
            "/nonexistent",
            DagBagOptions {
                max_file_size: 100,
                threads: 1,
                ..DagBagOptions::default()
            },
        );
        let entry = FileEntry {
            stamp: Some(stamp),
            digest,
            bundle: None,
            outcome: Outcome::Failed(Vec::new()),
        };
        bag.files.insert("a.yaml".to_owned(), entry);
        let found = Found {
            rel: "a.yaml".to_owned(),
            tenant: DEFAULT_TENANT.to_owned(),
            path: PathBuf::from("a.yaml"),
            stamp,
            bundle: None,
        };
        (bag, found)
    }

    #[test]
    fn which_files_are_read_again() {
        let now = SystemTime::now();
        let old = Stamp {
            mtime: Some(now - Duration::from_secs(3600)),
            size: 10,
            id: walk::FileId { dev: 1, ino: 7 },
        };
        let (bag, found) = bag_with(old, Some([0; 32]));
        assert!(!bag.needs_read(&found, now), "unchanged and old");
        let (bag, _) = bag_with(old, None);
        assert!(bag.needs_read(&found, now), "could not be read last time");
        let big = Stamp { size: 1000, ..old };
        let (bag, found_big) = bag_with(big, None);
        assert!(
            !bag.needs_read(&found_big, now),
            "still too large: no need to read"
        );
        let (bag, _) = bag_with(old, Some([0; 32]));
        let grown = Found {
            stamp: Stamp { size: 11, ..old },
            ..found
        };
        assert!(bag.needs_read(&grown, now), "size changed");
        let (bag, _) = bag_with(old, Some([0; 32]));
        let replaced = Found {
            stamp: Stamp {
                id: walk::FileId { dev: 1, ino: 8 },
                ..old
            },
            ..grown
        };
        assert!(
            bag.needs_read(&replaced, now),
            "another file (renamed over it)"
        );
        let recent = Stamp {
            mtime: Some(now - Duration::from_millis(500)),
            ..old
        };
        let (bag, found_recent) = bag_with(recent, Some([0; 32]));
        assert!(
            bag.needs_read(&found_recent, now),
            "modified within the mtime grace"
        );
    }

    #[test]
    fn a_file_replaced_after_the_walk_keeps_what_was_known() {
        let dir = tempfile::TempDir::new().unwrap();
        let root = dir.path();
        std::fs::write(root.join("a.yaml"), "dag_id: a\ntasks: []\n").unwrap();
        let mut bag = DagBag::load(root);
        assert!(bag.dag("a").is_some());
        let walked = walk::scan(root, &bag.options, &AtomicBool::new(false)).unwrap();
        let mut found = walked.found.into_iter().next().unwrap();
        found.stamp.id.ino += 1;
        assert!(matches!(read_file(&found, None, 100), Read::Changed));
        // Renamed over before the walk: another inode, read again.
        std::fs::write(root.join("b.yaml"), "tasks: [\n").unwrap();
        std::fs::rename(root.join("b.yaml"), root.join("a.yaml")).unwrap();
        assert!(bag.refresh().removed == ["a"], "the new content is read");
    }

    #[test]
    fn tenants() {
        assert_eq!(tenant_of("a.yaml"), DEFAULT_TENANT);
        assert_eq!(tenant_of("team_a/x/y.yaml"), "team_a");
    }

    #[test]
    fn messages_are_bounded_and_escaped() {
        let long = "x".repeat(MAX_ERROR_MESSAGE_CHARS + 10);
        let cut = bounded_message(&long);
        assert_eq!(
            cut.chars().count(),
            MAX_ERROR_MESSAGE_CHARS + "… (cut)".chars().count()
        );
        assert_eq!(
            bounded_message("a\u{1b}[31mb\u{202e}c\nd"),
            "a\\u{1b}[31mb\\u{202e}c\nd"
        );
        let error = |line| ImportError {
            tenant: "default".into(),
            filename: "a.yaml".into(),
            line: Some(line),
            column: Some(1),
            message: "bad".into(),
        };
        let many = bounded((1..=100).map(error).collect());
        assert_eq!(many.len(), MAX_ERRORS_PER_FILE);
        assert_eq!(
            many.last().unwrap().message,
            "… and 81 more errors in this file"
        );
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn mount(root: &Path, tenant: Option<&str>, name: &str) -> DagMount {
        DagMount {
            root: root.to_owned(),
            tenant: tenant.map(str::to_owned),
            name: Some(name.to_owned()),
            version: Some("rev1".to_owned()),
        }
    }

    #[test]
    fn mounts_at_a_tenant_and_at_the_root() {
        let dir = tempfile::TempDir::new().unwrap();
        let team = dir.path().join("team");
        let shared = dir.path().join("shared");
        write(&team.join("etl/a.yaml"), "dag_id: a\ntasks: []\n");
        write(&shared.join("team_b/b.yaml"), "dag_id: b\ntasks: []\n");
        write(&shared.join("c.yaml"), "dag_id: c\ntasks: []\n");
        let mut bag = DagBag::with_mounts(
            vec![
                mount(&team, Some("team_a"), "team-src"),
                mount(&shared, None, "shared-src"),
            ],
            DagBagOptions::default(),
        );
        let report = bag.refresh();
        assert_eq!(report.added, ["a", "b", "c"]);
        let a = bag.dag("a").unwrap();
        assert_eq!(a.dag.tenant, "team_a");
        assert_eq!(a.dag.fileloc, "team_a/etl/a.yaml");
        assert_eq!(a.bundle.as_deref(), Some("team-src"));
        let b = bag.dag("b").unwrap();
        assert_eq!(b.dag.tenant, "team_b");
        assert_eq!(b.dag.fileloc, "team_b/b.yaml");
        assert_eq!(b.bundle.as_deref(), Some("shared-src"));
        assert_eq!(bag.dag("c").unwrap().dag.tenant, DEFAULT_TENANT);
        assert_eq!(bag.bundle_version("team-src"), Some("rev1"));
        assert!(bag.import_errors().is_empty(), "{:?}", bag.import_errors());
    }

    #[test]
    fn a_tenant_mount_does_not_take_folder_names_for_tenants() {
        let dir = tempfile::TempDir::new().unwrap();
        write(
            &dir.path().join("Not A Tenant!/a.yaml"),
            "dag_id: a\ntasks: []\n",
        );
        let mut bag = DagBag::with_mounts(
            vec![mount(dir.path(), Some("team_a"), "src")],
            DagBagOptions::default(),
        );
        bag.refresh();
        assert_eq!(bag.dag("a").unwrap().dag.tenant, "team_a");
        assert!(bag.import_errors().is_empty(), "{:?}", bag.import_errors());
    }

    #[test]
    fn the_same_file_from_two_mounts_is_an_import_error() {
        let dir = tempfile::TempDir::new().unwrap();
        let first = dir.path().join("first");
        let second = dir.path().join("second");
        write(&first.join("x.yaml"), "dag_id: one\ntasks: []\n");
        write(&second.join("team_a/x.yaml"), "dag_id: two\ntasks: []\n");
        let mut bag = DagBag::with_mounts(
            vec![
                mount(&first, Some("team_a"), "first"),
                mount(&second, None, "second"),
            ],
            DagBagOptions::default(),
        );
        let report = bag.refresh();
        assert_eq!(report.added, ["one"]);
        let errors = bag.import_errors();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].filename, "team_a/x.yaml");
        assert_eq!(errors[0].tenant, "team_a");
        assert!(
            errors[0].message.contains("first also holds this file"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn a_new_revision_tree_rereads_only_changed_files() {
        let dir = tempfile::TempDir::new().unwrap();
        let old = SystemTime::now() - Duration::from_secs(3600);
        let rev1 = dir.path().join("rev1");
        let rev2 = dir.path().join("rev2");
        write(&rev1.join("a.yaml"), "dag_id: a\ntasks: []\n");
        write(&rev1.join("b.yaml"), "dag_id: b\ntasks: []\n");
        for name in ["a.yaml", "b.yaml"] {
            let file = std::fs::File::options()
                .write(true)
                .open(rev1.join(name))
                .unwrap();
            file.set_modified(old).unwrap();
        }
        // rev2: a.yaml a hard link (unchanged), b.yaml rewritten.
        std::fs::create_dir_all(&rev2).unwrap();
        std::fs::hard_link(rev1.join("a.yaml"), rev2.join("a.yaml")).unwrap();
        write(
            &rev2.join("b.yaml"),
            "dag_id: b\ndescription: new\ntasks: []\n",
        );
        let mut bag = DagBag::with_mounts(
            vec![mount(&rev1, Some("t"), "src")],
            DagBagOptions::default(),
        );
        assert_eq!(bag.refresh().parsed_files.len(), 2);
        let mut next = mount(&rev2, Some("t"), "src");
        next.version = Some("rev2".to_owned());
        bag.set_mounts(vec![next]);
        let report = bag.refresh();
        assert_eq!(report.parsed_files, ["t/b.yaml"]);
        assert_eq!(report.updated, ["b"]);
        assert_eq!(bag.bundle_version("src"), Some("rev2"));
        // The same files under another mount name are read again, to carry the new name.
        bag.set_mounts(vec![mount(&rev2, Some("t"), "renamed")]);
        let report = bag.refresh();
        assert_eq!(report.parsed_files, ["t/a.yaml", "t/b.yaml"]);
        assert_eq!(bag.dag("a").unwrap().bundle.as_deref(), Some("renamed"));
    }
}
