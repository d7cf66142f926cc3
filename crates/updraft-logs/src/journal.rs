//! The journal of pending uploads: one small file per log not yet uploaded whole, under
//! `<logs>/.pending-uploads/` (a hidden folder, so never a tenant's), so a restarted process
//! finishes what its predecessor left. Each file is written whole and renamed into place.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The folder under the logs folder holding the journal.
pub const PENDING_FOLDER: &str = ".pending-uploads";

/// What is pending of one log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) rel: String,
    /// The try ended: the whole log is due.
    pub(crate) ended: bool,
    /// Bytes from the start already uploaded as chunks.
    pub(crate) uploaded: u64,
    /// The process that wrote the record.
    pub(crate) pid: u32,
}

impl Record {
    fn to_text(&self) -> String {
        format!(
            "rel={}\nended={}\nuploaded={}\npid={}\n",
            self.rel, self.ended, self.uploaded, self.pid
        )
    }

    fn parse(text: &str) -> Option<Record> {
        let field = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
        };
        Some(Record {
            rel: field("rel")?.to_string(),
            ended: field("ended")?.parse().ok()?,
            uploaded: field("uploaded")?.parse().ok()?,
            pid: field("pid")?.parse().ok()?,
        })
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Journal {
    dir: PathBuf,
}

impl Journal {
    pub(crate) fn new(logs_folder: &Path) -> Journal {
        Journal {
            dir: logs_folder.join(PENDING_FOLDER),
        }
    }

    fn file_of(&self, rel: &str) -> PathBuf {
        let digest = Sha256::digest(rel.as_bytes());
        let name: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(name)
    }

    pub(crate) async fn write(&self, record: &Record) -> std::io::Result<()> {
        let file = self.file_of(&record.rel);
        let text = record.to_text();
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || write_replacing(&dir, &file, &text))
            .await
            .map_err(std::io::Error::other)?
    }

    pub(crate) async fn remove(&self, rel: &str) -> std::io::Result<()> {
        match tokio::fs::remove_file(self.file_of(rel)).await {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Every record; unreadable files are named in the log and left alone.
    pub(crate) fn load(&self) -> Vec<Record> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                tracing::warn!(folder = %self.dir.display(), "cannot read the pending log uploads: {e}");
                return Vec::new();
            }
        };
        let mut records = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                continue;
            }
            match std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| Record::parse(&t))
            {
                Some(record) => records.push(record),
                None => {
                    tracing::warn!(file = %path.display(), "not a pending log upload record; left alone")
                }
            }
        }
        records
    }
}

fn write_replacing(dir: &Path, file: &Path, text: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, file)
}

/// Whether the process `pid` (not this one) is alive, as far as `/proc` tells.
pub(crate) fn other_process_alive(pid: u32) -> bool {
    pid != std::process::id() && Path::new("/proc").join(pid.to_string()).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_survive_a_reload_and_go_when_removed() {
        let logs = tempfile::tempdir().unwrap();
        let journal = Journal::new(logs.path());
        assert!(journal.load().is_empty());
        let record = Record {
            rel: "t/d/run with space/x/attempt=1.log".into(),
            ended: false,
            uploaded: 42,
            pid: 7,
        };
        journal.write(&record).await.unwrap();
        journal
            .write(&Record {
                uploaded: 99,
                ..record.clone()
            })
            .await
            .unwrap();
        std::fs::write(logs.path().join(PENDING_FOLDER).join("junk"), "nonsense").unwrap();
        assert_eq!(
            journal.load(),
            vec![Record {
                uploaded: 99,
                ..record.clone()
            }]
        );
        journal.remove(&record.rel).await.unwrap();
        journal.remove(&record.rel).await.unwrap();
        assert!(journal.load().is_empty());
    }

    #[test]
    fn this_process_is_not_another_live_one() {
        assert!(!other_process_alive(std::process::id()));
        assert!(other_process_alive(1) || !Path::new("/proc/1").exists());
    }
}
