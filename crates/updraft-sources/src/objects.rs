//! Object-store sources: every object under the prefix, listed and downloaded into a new
//! revision tree; objects whose ETag (or size and modification time) is unchanged are
//! hard-linked from the previous tree instead. The revision (Airflow's bundle version) is the
//! generation of the listing: a digest of every key with its ETag, so the same objects give
//! the same revision.
//!
//! Each tree's manifest (every file with the ETag it was downloaded at) is kept beside the
//! trees, in `manifests/<revision>.json`, written before the tree is made current. A key
//! that would not stay inside the tree (`..`, `.`, an empty part) or names something hidden
//! (a part starting with `.`) is skipped; so is a key that is also a folder of other keys
//! (the zero-byte "folder" objects consoles create). An empty listing fails the sync: a
//! prefix emptied by mistake keeps the last tree rather than removing every DAG.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use updraft_objects::ObjectLocation;
use updraft_objects::object_store::{GetOptions, ObjectMeta, ObjectStore};

use crate::config::ObjectsSpec;
use crate::git::Synced;
use crate::tree::{self, Staging};
use crate::{SourceDir, SourceError};

const MANIFESTS: &str = "manifests";

/// Downloads at once per sync.
const PARALLEL_DOWNLOADS: usize = 16;

/// Hex digits of the listing's digest that name a revision.
const REVISION_LEN: usize = 16;

/// Lists `spec`'s prefix, downloads what changed into a new tree and makes it current.
pub async fn sync(name: &str, spec: &ObjectsSpec, dir: &SourceDir) -> Result<Synced, SourceError> {
    let location = ObjectLocation::open(&spec.url).map_err(|e| failed(name, e))?;
    sync_location(name, &location, dir).await
}

/// [`sync`] from an opened location (one opened with settings of its own, as tests do).
pub async fn sync_location(
    name: &str,
    location: &ObjectLocation,
    dir: &SourceDir,
) -> Result<Synced, SourceError> {
    let listing = list(name, location).await?;
    let revision = revision_of(&listing);
    let previous = dir.current();
    if previous
        .as_ref()
        .is_some_and(|(current, _)| *current == revision)
    {
        return Ok(Synced {
            revision,
            changed: false,
            files_written: 0,
        });
    }
    if dir.tree(&revision).is_some() {
        // A listing synced before (a rollback): its tree is still kept, whole.
        dir.switch(&revision).map_err(|e| io(name, dir.base(), e))?;
        return Ok(Synced {
            revision,
            changed: true,
            files_written: 0,
        });
    }
    let before = previous.map(|(revision, tree)| (read_manifest(dir, &revision), tree));
    let staging = dir.stage().map_err(|e| io(name, dir.base(), e))?;
    let (unchanged, changed) = split_unchanged(&listing, before.as_ref());
    if let Some((_, previous_tree)) = &before {
        link_all(name, previous_tree, staging.path(), &unchanged).await?;
    }
    download_all(name, location, staging.path(), &changed).await?;
    write_manifest(name, dir, &revision, &listing)?;
    commit(name, dir, staging, &revision).await?;
    remove_stale_manifests(dir);
    Ok(Synced {
        revision,
        changed: true,
        files_written: changed.len(),
    })
}

/// One object to be in the tree: its path in the tree, where it is in the store, and what
/// identifies its content.
#[derive(Debug, Clone)]
struct Entry {
    rel: String,
    meta: ObjectMeta,
    identity: String,
}

/// The manifest of a tree: each file's path and the identity it was downloaded at.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    files: BTreeMap<String, String>,
}

async fn list(name: &str, location: &ObjectLocation) -> Result<Vec<Entry>, SourceError> {
    let objects: Vec<ObjectMeta> = location
        .store
        .list(Some(&location.prefix))
        .try_collect()
        .await
        .map_err(|e| failed(name, format!("listing {}: {e}", location.url)))?;
    let mut entries: Vec<Entry> = objects
        .into_iter()
        .filter_map(|meta| entry(name, location, meta))
        .collect();
    entries.sort_by(|a, b| a.rel.cmp(&b.rel));
    drop_folder_markers(&mut entries);
    if entries.is_empty() {
        return Err(failed(
            name,
            format!("{}: no objects under the prefix", location.url),
        ));
    }
    Ok(entries)
}

/// The tree entry of `meta`, or `None` (logged) for a key that must not become a file.
fn entry(name: &str, location: &ObjectLocation, meta: ObjectMeta) -> Option<Entry> {
    let parts: Vec<String> = meta
        .location
        .prefix_match(&location.prefix)?
        .map(|part| part.as_ref().to_string())
        .collect();
    if let Some(bad) = parts.iter().find(|part| !is_safe_part(part)) {
        tracing::warn!(source = name, key = %meta.location, part = %bad, "object skipped: not a plain file name");
        return None;
    }
    if parts.is_empty() {
        return None;
    }
    let identity = match &meta.e_tag {
        Some(etag) => format!("etag:{etag}"),
        None => format!(
            "size:{}:{}",
            meta.size,
            meta.last_modified.timestamp_micros()
        ),
    };
    Some(Entry {
        rel: parts.join("/"),
        meta,
        identity,
    })
}

/// A part of a key that stays inside the tree and is not hidden.
fn is_safe_part(part: &str) -> bool {
    !part.is_empty()
        && !part.starts_with('.')
        && !part.contains(['/', '\\', '\0'])
        && !part.chars().any(char::is_control)
}

/// Removes entries that are folders of other entries (sorted by `rel`, a folder `a` comes
/// right before the first `a/…`).
fn drop_folder_markers(entries: &mut Vec<Entry>) {
    let folders: HashSet<String> = entries
        .iter()
        .flat_map(|e| {
            let parts: Vec<&str> = e.rel.split('/').collect();
            (1..parts.len())
                .map(|n| parts[..n].join("/"))
                .collect::<Vec<_>>()
        })
        .collect();
    entries.retain(|e| !folders.contains(&e.rel));
}

/// The revision of a listing: a digest of every path with its identity, in order.
fn revision_of(entries: &[Entry]) -> String {
    let mut digest = Sha256::new();
    for entry in entries {
        digest.update(entry.rel.as_bytes());
        digest.update([0]);
        digest.update(entry.identity.as_bytes());
        digest.update([b'\n']);
    }
    digest
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()[..REVISION_LEN]
        .to_string()
}

/// Entries the previous tree holds at the same identity (to link), and the rest (to
/// download).
fn split_unchanged(
    entries: &[Entry],
    before: Option<&(Manifest, PathBuf)>,
) -> (Vec<String>, Vec<Entry>) {
    let mut unchanged = Vec::new();
    let mut changed = Vec::new();
    for entry in entries {
        let same = before.is_some_and(|(manifest, tree)| {
            manifest.files.get(&entry.rel) == Some(&entry.identity)
                && tree.join(&entry.rel).is_file()
        });
        if same {
            unchanged.push(entry.rel.clone());
        } else {
            changed.push(entry.clone());
        }
    }
    (unchanged, changed)
}

async fn link_all(
    name: &str,
    previous: &Path,
    staging: &Path,
    rels: &[String],
) -> Result<(), SourceError> {
    let (previous, staging, rels) = (previous.to_path_buf(), staging.to_path_buf(), rels.to_vec());
    let owned_name = name.to_string();
    tokio::task::spawn_blocking(move || {
        for rel in &rels {
            tree::link_unchanged(&previous, &staging, rel)
                .map_err(|e| io(&owned_name, &staging.join(rel), e))?;
        }
        Ok(())
    })
    .await
    .map_err(|e| failed(name, format!("linking unchanged files: {e}")))?
}

async fn download_all(
    name: &str,
    location: &ObjectLocation,
    staging: &Path,
    entries: &[Entry],
) -> Result<(), SourceError> {
    // By index: a closure taking `&Entry` makes the future not `Send` for every lifetime,
    // which a spawned sync needs.
    futures::stream::iter(0..entries.len())
        .map(|i| download(name, location, staging, &entries[i]))
        .buffer_unordered(PARALLEL_DOWNLOADS)
        .try_collect::<()>()
        .await
}

/// Downloads one object into the staging tree, only as it was listed (`If-Match` its ETag):
/// an object replaced meanwhile fails the sync, so a revision never mixes two listings.
async fn download(
    name: &str,
    location: &ObjectLocation,
    staging: &Path,
    entry: &Entry,
) -> Result<(), SourceError> {
    let options = GetOptions {
        if_match: entry.meta.e_tag.clone(),
        ..GetOptions::default()
    };
    let bytes = async {
        location
            .store
            .get_opts(&entry.meta.location, options)
            .await?
            .bytes()
            .await
    }
    .await
    .map_err(|e| failed(name, format!("downloading {}: {e}", entry.meta.location)))?;
    let path = staging.join(&entry.rel);
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| io(name, parent, e))?;
    }
    tokio::fs::write(&path, &bytes)
        .await
        .map_err(|e| io(name, &path, e))
}

async fn commit(
    name: &str,
    dir: &SourceDir,
    staging: Staging,
    revision: &str,
) -> Result<(), SourceError> {
    let (dir, revision) = (dir.clone(), revision.to_string());
    tokio::task::spawn_blocking(move || {
        dir.commit(staging, &revision)
            .map(drop)
            .map_err(|e| (dir.base().to_path_buf(), e))
    })
    .await
    .map_err(|e| failed(name, format!("switching trees: {e}")))?
    .map_err(|(base, e)| io(name, &base, e))
}

fn manifest_path(dir: &SourceDir, revision: &str) -> PathBuf {
    dir.base().join(MANIFESTS).join(format!("{revision}.json"))
}

/// The manifest of `revision`'s tree; an empty one (everything downloaded again) when it is
/// missing or unreadable.
fn read_manifest(dir: &SourceDir, revision: &str) -> Manifest {
    std::fs::read(manifest_path(dir, revision))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

fn write_manifest(
    name: &str,
    dir: &SourceDir,
    revision: &str,
    entries: &[Entry],
) -> Result<(), SourceError> {
    let manifest = Manifest {
        files: entries
            .iter()
            .map(|e| (e.rel.clone(), e.identity.clone()))
            .collect(),
    };
    let path = manifest_path(dir, revision);
    let folder = dir.base().join(MANIFESTS);
    std::fs::create_dir_all(&folder).map_err(|e| io(name, &folder, e))?;
    let text = serde_json::to_vec(&manifest).expect("a manifest serializes");
    let temporary = path.with_extension("json.tmp");
    std::fs::write(&temporary, text).map_err(|e| io(name, &temporary, e))?;
    std::fs::rename(&temporary, &path).map_err(|e| io(name, &path, e))
}

/// Removes the manifests of trees no longer kept.
fn remove_stale_manifests(dir: &SourceDir) {
    let Ok(entries) = std::fs::read_dir(dir.base().join(MANIFESTS)) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let revision = file.strip_suffix(".json").unwrap_or(&file);
        if dir.tree(revision).is_none() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn failed(name: &str, message: impl std::fmt::Display) -> SourceError {
    SourceError::Sync {
        name: name.to_string(),
        message: message.to_string(),
    }
}

fn io(name: &str, path: &Path, source: std::io::Error) -> SourceError {
    SourceError::Io {
        name: name.to_string(),
        path: path.to_path_buf(),
        source,
    }
}
