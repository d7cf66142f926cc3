//! Remote task logs: the uploader is told when a try starts (it uploads the log's new bytes
//! as it grows) and when its end is recorded (it uploads the log whole), for local and pod
//! tries alike; a clean stop gives it a bounded time to finish.

use std::path::Path;
use std::time::Duration;

use tracing::{info, warn};
use updraft_executor::TryKey;
use updraft_logs::LogUploader;
use updraft_store::TiKey;

use super::Scheduler;

/// How long a clean stop waits for pending log uploads; what is left is journaled and
/// finished by the next start.
pub const LOG_FLUSH_WAIT: Duration = Duration::from_secs(10);

impl Scheduler {
    /// Upload tries' logs through `uploader` (whose logs folder is this scheduler's).
    pub fn upload_logs(&mut self, uploader: LogUploader) {
        self.tries.logs.uploader = Some(uploader);
    }

    /// Without remote logs (the common case) nothing is computed per try.
    pub(super) fn log_started(&self, log: &Path) {
        if let Some(uploader) = &self.tries.logs.uploader
            && let Some(rel) = self.log_rel(log)
        {
            uploader.try_started(&rel);
        }
    }

    pub(super) fn log_ended(&self, log: &Path) {
        if let Some(uploader) = &self.tries.logs.uploader
            && let Some(rel) = self.log_rel(log)
        {
            uploader.try_ended(&rel);
        }
    }

    /// A try ended: its log goes up once the end is recorded.
    pub(super) fn log_ending(&mut self, key: &TryKey, log: std::path::PathBuf) {
        if self.tries.logs.uploader.is_some() {
            let id = (
                key.run_pk,
                key.task_id.clone(),
                key.map_index,
                key.try_number,
            );
            self.tries.logs.ending.insert(id, log);
        }
    }

    /// The end of `key`'s try `try_number` is recorded.
    pub(super) fn end_recorded(&mut self, key: &TiKey, try_number: u32) {
        let id = super::state::try_id(key, try_number);
        if let Some(log) = self.tries.logs.ending.remove(&id) {
            self.log_ended(&log);
        }
    }

    /// At a clean stop: uploads what it can within [`LOG_FLUSH_WAIT`].
    pub(super) async fn stop_log_uploads(&mut self) {
        let Some(uploader) = self.tries.logs.uploader.take() else {
            return;
        };
        match uploader.stop(LOG_FLUSH_WAIT).await {
            Some(0) => {}
            Some(left) => {
                info!(left, "logs not yet uploaded are retried at the next start")
            }
            None => warn!(
                "log uploads did not finish within {LOG_FLUSH_WAIT:?}; they are retried at the next start"
            ),
        }
    }

    fn log_rel(&self, log: &Path) -> Option<String> {
        let rel = log.strip_prefix(&self.config.logs_folder).ok()?;
        Some(rel.to_str()?.replace(std::path::MAIN_SEPARATOR, "/"))
    }
}
