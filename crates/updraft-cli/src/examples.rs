//! The example DAGs shipped in the binary, offered when the DAGs folder is empty.

use std::path::Path;

use anyhow::{Context, Result};

include!(concat!(env!("OUT_DIR"), "/examples.rs"));

/// Write the examples into `folder` if it holds no DAG files; returns how many were written.
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
    Ok(EXAMPLE_DAGS.len())
}

/// Pools the example DAGs use.
pub async fn create_example_pools(store: &dyn updraft_store::Store) -> Result<()> {
    let pool = updraft_store::PoolRow {
        name: "team_a_pool".to_string(),
        slots: 2,
        description: "Used by the team_a example DAG".to_string(),
    };
    store.upsert_pool(&pool).await?;
    Ok(())
}

fn holds_dag_files(folder: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return false;
    };
    entries.flatten().any(|entry| {
        let path = entry.path();
        if path.is_dir() {
            holds_dag_files(&path)
        } else {
            path.extension().is_some_and(|e| e == "yaml" || e == "yml")
        }
    })
}
