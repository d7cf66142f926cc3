//! One attempt at each upload: the new bytes of a running log as chunks, the whole log at its
//! end, and the removal of its chunks after. Retrying is the uploader's.

use std::io::SeekFrom;

use futures::{StreamExt, TryStreamExt};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use updraft_objects::object_store::buffered::BufWriter;
use updraft_objects::object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::keys::{chunk_key, chunks_dir, whole_key};
use crate::{LogError, RemoteLogs, local_error};

impl RemoteLogs {
    /// Uploads what the local log holds past `uploaded` as chunks of at most `max_chunk`
    /// bytes. Returns how far the uploaded chunks now reach, and the error that stopped it,
    /// if any.
    pub(crate) async fn upload_new_bytes(
        &self,
        rel: &str,
        mut uploaded: u64,
        max_chunk: u64,
    ) -> (u64, Option<LogError>) {
        let mut file = match tokio::fs::File::open(self.local_path_unchecked(rel)).await {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (uploaded, None),
            Err(e) => return (uploaded, Some(local_error(rel, e))),
        };
        let len = match file.metadata().await {
            Ok(meta) => meta.len(),
            Err(e) => return (uploaded, Some(local_error(rel, e))),
        };
        while uploaded < len {
            let size = (len - uploaded).min(max_chunk.max(1));
            let mut bytes = vec![0; size as usize];
            let read = async {
                file.seek(SeekFrom::Start(uploaded)).await?;
                file.read_exact(&mut bytes).await
            };
            if let Err(e) = read.await {
                return (uploaded, Some(local_error(rel, e)));
            }
            let key = chunk_key(&self.location, rel, uploaded);
            if let Err(e) = self.location.store.put(&key, PutPayload::from(bytes)).await {
                return (uploaded, Some(self.store_error(rel, e)));
            }
            uploaded += size;
        }
        (uploaded, None)
    }

    /// Uploads the local log whole (in parts when it is large; it appears at once either
    /// way). Returns its size, or `None` when there is no local file.
    pub(crate) async fn upload_whole(&self, rel: &str) -> Result<Option<u64>, LogError> {
        let mut file = match tokio::fs::File::open(self.local_path_unchecked(rel)).await {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(local_error(rel, e)),
        };
        let mut writer =
            BufWriter::new(self.location.store.clone(), whole_key(&self.location, rel));
        let size = match tokio::io::copy(&mut file, &mut writer).await {
            Ok(size) => size,
            Err(e) => {
                // Nothing appears: a multipart upload begun is aborted.
                let _ = writer.abort().await;
                return Err(copy_error(rel, e, self));
            }
        };
        // Completes the upload (one put, or the multipart upload's last part).
        match writer.shutdown().await {
            Ok(()) => Ok(Some(size)),
            Err(e) => Err(copy_error(rel, e, self)),
        }
    }

    /// Removes the chunks of `rel` (the whole log is uploaded).
    pub(crate) async fn delete_chunks(&self, rel: &str) -> Result<(), LogError> {
        let store = self.location.store.clone();
        let dir = chunks_dir(&self.location, rel);
        let keys = store.list(Some(&dir)).map_ok(|meta| meta.location).boxed();
        store
            .delete_stream(keys)
            .try_collect::<Vec<_>>()
            .await
            .map(|_| ())
            .map_err(|e| self.store_error(rel, e))
    }

    fn local_path_unchecked(&self, rel: &str) -> std::path::PathBuf {
        self.folder.join(rel)
    }
}

/// An error of copying into the store: the store's, or reading the local file.
fn copy_error(rel: &str, e: std::io::Error, remote: &RemoteLogs) -> LogError {
    match e.downcast::<updraft_objects::object_store::Error>() {
        Ok(store) => remote.store_error(rel, store),
        Err(io) => local_error(rel, io),
    }
}
