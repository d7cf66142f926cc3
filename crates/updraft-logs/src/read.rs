//! Reading a log from wherever it is: the local file while it exists (the live source while
//! the try runs), else the whole object, else its chunks concatenated (the node that wrote
//! them died before the end). Every source answers the same bytes at the same offsets.

use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::Path;

use futures::TryStreamExt;
use updraft_objects::ObjectLocation;
use updraft_objects::object_store::path::Path as Key;
use updraft_objects::object_store::{self, ObjectStore, ObjectStoreExt};

use crate::keys::{chunk_offset, chunks_dir, whole_key};
use crate::{LogError, RemoteLogs, local_error};

/// Where a log was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOrigin {
    Local,
    /// The whole log, uploaded when its try ended.
    Whole,
    /// The chunks uploaded while its try ran.
    Chunks,
}

/// Part of a log: at most the bytes asked for, from `min(offset, len)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSlice {
    pub bytes: Vec<u8>,
    /// The log's whole length.
    pub len: u64,
    pub origin: LogOrigin,
}

/// Up to `max` bytes of the local file at `path` from `offset`; `None` when there is none.
pub fn read_local(path: &Path, offset: u64, max: u64) -> std::io::Result<Option<LogSlice>> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(offset.min(len)))?;
    let mut bytes = Vec::new();
    file.take(max).read_to_end(&mut bytes)?;
    Ok(Some(LogSlice {
        bytes,
        len,
        origin: LogOrigin::Local,
    }))
}

impl RemoteLogs {
    /// Up to `max` bytes of the log `rel` from `offset`: the local file while it exists, else
    /// the store. While its try runs (`running`) chunks go before a whole object (one left by
    /// an earlier end is older than them); after, the whole object first. `None`: the log is
    /// nowhere.
    pub async fn read(
        &self,
        rel: &str,
        running: bool,
        offset: u64,
        max: u64,
    ) -> Result<Option<LogSlice>, LogError> {
        let path = self.local_path(rel)?;
        let local = tokio::task::spawn_blocking(move || read_local(&path, offset, max))
            .await
            .map_err(|e| local_error(rel, std::io::Error::other(e)))?
            .map_err(|e| local_error(rel, e))?;
        if local.is_some() {
            return Ok(local);
        }
        let order = if running {
            [LogOrigin::Chunks, LogOrigin::Whole]
        } else {
            [LogOrigin::Whole, LogOrigin::Chunks]
        };
        for origin in order {
            let read = match origin {
                LogOrigin::Chunks => read_chunks(&self.location, rel, offset, max).await,
                _ => read_whole(&self.location, rel, offset, max).await,
            };
            if let Some(slice) = read.map_err(|source| self.store_error(rel, source))? {
                return Ok(Some(slice));
            }
        }
        Ok(None)
    }

    pub(crate) fn store_error(&self, rel: &str, source: object_store::Error) -> LogError {
        LogError::Store {
            rel: rel.to_string(),
            url: self.location.url.clone(),
            source,
        }
    }
}

/// The slice of `len` bytes that `offset` and `max` ask for.
fn wanted(offset: u64, max: u64, len: u64) -> Range<u64> {
    let start = offset.min(len);
    start..start.saturating_add(max).min(len)
}

async fn read_whole(
    location: &ObjectLocation,
    rel: &str,
    offset: u64,
    max: u64,
) -> object_store::Result<Option<LogSlice>> {
    let key = whole_key(location, rel);
    let meta = match location.store.head(&key).await {
        Ok(meta) => meta,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let range = wanted(offset, max, meta.size);
    let bytes = if range.is_empty() {
        Vec::new()
    } else {
        location.store.get_range(&key, range).await?.to_vec()
    };
    Ok(Some(LogSlice {
        bytes,
        len: meta.size,
        origin: LogOrigin::Whole,
    }))
}

/// One chunk's part of the log: the bytes `span` of the log, stored at `key` from `skip`.
struct Segment {
    key: Key,
    span: Range<u64>,
    skip: u64,
}

async fn read_chunks(
    location: &ObjectLocation,
    rel: &str,
    offset: u64,
    max: u64,
) -> object_store::Result<Option<LogSlice>> {
    let segments = chunk_segments(location.store.as_ref(), &chunks_dir(location, rel)).await?;
    let Some(last) = segments.last() else {
        return Ok(None);
    };
    let len = last.span.end;
    let range = wanted(offset, max, len);
    let mut bytes = Vec::with_capacity((range.end - range.start) as usize);
    for segment in &segments {
        let start = range.start.max(segment.span.start);
        let end = range.end.min(segment.span.end);
        if start >= end {
            continue;
        }
        let inside =
            (start - segment.span.start + segment.skip)..(end - segment.span.start + segment.skip);
        bytes.extend_from_slice(&location.store.get_range(&segment.key, inside).await?);
    }
    Ok(Some(LogSlice {
        bytes,
        len,
        origin: LogOrigin::Chunks,
    }))
}

/// The chunks under `dir` as contiguous segments from offset 0; a chunk re-uploaded from an
/// earlier offset (after a restart) overlaps the previous one and adds only what follows it;
/// a gap ends the log.
async fn chunk_segments(store: &dyn ObjectStore, dir: &Key) -> object_store::Result<Vec<Segment>> {
    let listed: Vec<_> = store.list(Some(dir)).try_collect().await?;
    let mut chunks: Vec<(u64, u64, Key)> = listed
        .into_iter()
        .filter_map(|meta| Some((chunk_offset(&meta.location)?, meta.size, meta.location)))
        .collect();
    chunks.sort_by_key(|(offset, size, _)| (*offset, std::cmp::Reverse(*size)));
    let mut segments = Vec::new();
    let mut end = 0;
    for (offset, size, key) in chunks {
        if offset > end {
            break;
        }
        let chunk_end = offset + size;
        if chunk_end <= end {
            continue;
        }
        segments.push(Segment {
            key,
            span: end..chunk_end,
            skip: end - offset,
        });
        end = chunk_end;
    }
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use updraft_objects::object_store::PutPayload;
    use updraft_objects::object_store::memory::InMemory;

    use super::*;
    use crate::keys::chunk_key;

    #[tokio::test]
    async fn chunks_join_up_to_a_gap_and_overlaps_count_once() {
        let location = ObjectLocation {
            store: Arc::new(InMemory::new()),
            prefix: Key::from("p"),
            url: "memory://".into(),
        };
        let rel = "t/d/r/x/attempt=1.log";
        let put = |offset: u64, text: &'static str| {
            let location = location.clone();
            async move {
                let key = chunk_key(&location, rel, offset);
                let payload = PutPayload::from(text.as_bytes().to_vec());
                location.store.put(&key, payload).await.unwrap();
            }
        };
        // 0..4 "abcd", 2..7 re-uploaded after a restart "cdEFG", 7..9 "hi", a gap, 20.. "zz".
        put(0, "abcd").await;
        put(2, "cdEFG").await;
        put(7, "hi").await;
        put(20, "zz").await;
        let all = read_chunks(&location, rel, 0, u64::MAX)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((all.bytes.as_slice(), all.len), (&b"abcdEFGhi"[..], 9));
        let middle = read_chunks(&location, rel, 3, 5).await.unwrap().unwrap();
        assert_eq!(middle.bytes.as_slice(), b"dEFGh");
        let past = read_chunks(&location, rel, 50, 5).await.unwrap().unwrap();
        assert_eq!((past.bytes.len(), past.len), (0, 9));
        assert_eq!(
            read_chunks(&location, "t/none.log", 0, 9).await.unwrap(),
            None
        );
    }
}
