//! The DAGs folder and the definitions read from the store: loading the folder into the store
//! and keeping the latest definition of every DAG at hand.

use std::collections::HashMap;

use chrono::Utc;
use tokio::time::Instant;
use tracing::info;

use super::Scheduler;
use crate::SchedulerError;

impl Scheduler {
    pub(super) async fn sync_folder(&mut self, force: bool) -> Result<(), SchedulerError> {
        self.next_rescan = Instant::now() + self.config.rescan_interval;
        let Some(bag) = self.bag.as_mut() else {
            return Ok(());
        };
        let changed = tokio::task::block_in_place(|| bag.refresh()).has_changes();
        if !changed && !force {
            return Ok(());
        }
        info!(
            dags = bag.dags().len(),
            import_errors = bag.import_errors().len(),
            "DAGs folder loaded"
        );
        crate::record_dag_bag(
            self.store.as_ref(),
            bag,
            self.config.dags_are_paused_at_creation,
            Utc::now(),
        )
        .await?;
        self.next_schedule_check.clear();
        Ok(())
    }

    /// Bring `dag_rows` up to date: switches every time, a definition only when its version
    /// changed (definitions are large; decoding them all on every poll would dominate an idle
    /// scheduler's CPU).
    pub(super) async fn refresh_dag_rows(&mut self) -> Result<(), SchedulerError> {
        let heads = self.store.dag_heads().await?;
        let mut rows = HashMap::with_capacity(heads.len());
        for head in heads {
            let row = match self.dag_rows.remove(&head.dag_id) {
                Some(mut row) if row.version == head.version => {
                    row.is_paused = head.is_paused;
                    row.is_active = head.is_active;
                    row
                }
                _ => match self.store.dag(&head.dag_id).await? {
                    Some(row) => row,
                    None => continue,
                },
            };
            rows.insert(head.dag_id, row);
        }
        self.dag_rows = rows;
        Ok(())
    }
}
