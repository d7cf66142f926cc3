//! The example DAGs shipped in the binary, offered when the DAGs folder is empty.

use std::path::Path;

use anyhow::{Context, Result};

include!(concat!(env!("OUT_DIR"), "/examples.rs"));

/// Write the examples (DAG files and the Python modules they call) into `folder` if it holds
/// no DAG files; returns how many DAG files were written.
pub fn offer(folder: &Path) -> Result<usize> {
    if holds_dag_files(folder) {
        return Ok(0);
    }
    for (relative, text) in EXAMPLE_DAGS {
        let path = folder.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(EXAMPLE_DAGS
        .iter()
        .filter(|(relative, _)| is_dag_file(Path::new(relative)))
        .count())
}

fn is_dag_file(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "yaml" || e == "yml")
}

/// Pools the example DAGs use.
pub async fn create_example_pools(store: &dyn updraft_store::Store) -> Result<()> {
    let pool = updraft_store::PoolRow {
        name: "team_a_pool".to_string(),
        slots: 2,
        description: "Used by the team_a example DAG".to_string(),
        tenant: None,
    };
    store.upsert_pool(&pool).await?;
    Ok(())
}

/// Whether `folder` holds a DAG file (or a link named like one) anywhere below it. Links are
/// not followed, so a link to `/` costs nothing; a folder too large to look through in
/// [`updraft_dag::DEFAULT_MAX_ENTRIES`] entries is taken to hold some.
fn holds_dag_files(folder: &Path) -> bool {
    let mut budget = updraft_dag::DEFAULT_MAX_ENTRIES;
    let mut folders = vec![folder.to_path_buf()];
    while let Some(dir) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            budget = match budget.checked_sub(1) {
                Some(left) => left,
                None => return true,
            };
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            if kind.is_dir() {
                folders.push(path);
            } else if is_dag_file(&path) {
                return true;
            }
        }
    }
    false
}
