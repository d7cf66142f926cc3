//! The room left in pools and DAGs while [`crate::Store::queue`] admits instances one by one:
//! the same rule for both backends, which only differ in how they read the starting counts.

use std::collections::HashMap;

use crate::{ActiveCounts, QueueLimits};

/// What a `scheduled` instance would take once queued.
pub(crate) struct Candidate {
    pub dag_id: String,
    pub pool: String,
    pub pool_slots: i64,
}

/// Pool slots and DAG task counts held by `queued` and `running` instances, against the
/// pools' sizes.
pub(crate) struct Room {
    /// Pool name → its slots.
    pools: HashMap<String, i64>,
    held: ActiveCounts,
}

impl Room {
    pub fn new(pools: impl IntoIterator<Item = (String, i64)>, held: ActiveCounts) -> Room {
        Room {
            pools: pools.into_iter().collect(),
            held,
        }
    }

    /// Whether queueing `c` keeps its pool and (if limited) its DAG within bounds.
    pub fn admits(&self, c: &Candidate, limits: &QueueLimits) -> bool {
        let Some(&slots) = self.pools.get(&c.pool) else {
            return false;
        };
        let pool_held = self.held.per_pool.get(&c.pool).copied().unwrap_or(0);
        if pool_held + c.pool_slots > slots {
            return false;
        }
        match limits.max_active_tasks.get(&c.dag_id) {
            Some(&max) => self.held.per_dag.get(&c.dag_id).copied().unwrap_or(0) < max,
            None => true,
        }
    }

    pub fn take(&mut self, c: &Candidate) {
        *self.held.per_pool.entry(c.pool.clone()).or_default() += c.pool_slots;
        *self.held.per_dag.entry(c.dag_id.clone()).or_default() += 1;
        self.held.total += 1;
    }
}
