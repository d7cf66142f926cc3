//! Where a log lives in the object store: `<prefix>/<rel>` once whole, and
//! `<prefix>/<rel>.chunks/<start offset, 20 digits>` while its try runs, so the chunks list
//! in the order they are concatenated.

use updraft_objects::ObjectLocation;
use updraft_objects::object_store::path::Path;

pub(crate) fn whole_key(location: &ObjectLocation, rel: &str) -> Path {
    location.key(rel)
}

pub(crate) fn chunks_dir(location: &ObjectLocation, rel: &str) -> Path {
    location.key(&format!("{rel}.chunks"))
}

pub(crate) fn chunk_key(location: &ObjectLocation, rel: &str, offset: u64) -> Path {
    location.key(&format!("{rel}.chunks/{offset:020}"))
}

/// The start offset a chunk's key names, or `None` for anything else.
pub(crate) fn chunk_offset(key: &Path) -> Option<u64> {
    let name = key.filename()?;
    if name.len() != 20 || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use updraft_objects::object_store::memory::InMemory;

    use super::*;

    #[test]
    fn chunks_sit_beside_the_whole_log_and_name_their_offsets() {
        let location = ObjectLocation {
            store: Arc::new(InMemory::new()),
            prefix: Path::from("logs/prod"),
            url: "memory://".into(),
        };
        let rel = "t/d/scheduled__2024-01-01T00:00:00+00:00/x/attempt=1.log";
        assert_eq!(
            whole_key(&location, rel).as_ref(),
            "logs/prod/t/d/scheduled__2024-01-01T00:00:00+00:00/x/attempt=1.log"
        );
        let chunk = chunk_key(&location, rel, 4096);
        assert!(chunk.prefix_matches(&chunks_dir(&location, rel)));
        assert_eq!(chunk.filename(), Some("00000000000000004096"));
        assert_eq!(chunk_offset(&chunk), Some(4096));
        assert_eq!(chunk_offset(&whole_key(&location, rel)), None);
    }
}
