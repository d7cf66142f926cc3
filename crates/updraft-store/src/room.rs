//! The room left in pools and DAGs while [`crate::SchedulerStore::queue`] admits instances one by
//! one: the core's admission rule ([`updraft_core::queue::admits`], the one the scheduler chose
//! by), the same for both backends, which only differ in how they read the starting counts.

use std::collections::HashMap;

use updraft_core::queue::admits;

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

    /// Whether queueing `c` keeps its pool and (if limited) its DAG within bounds. A pool not
    /// in the database admits nothing; a DAG not named in `limits` is not limited here.
    pub fn admits(&self, c: &Candidate, limits: &QueueLimits) -> bool {
        let held = |map: &HashMap<String, i64>, key: &str| map.get(key).copied().unwrap_or(0);
        let pool_free =
            (self.pools.get(&c.pool)).map(|slots| slots - held(&self.held.per_pool, &c.pool));
        let dag_free = (limits.max_active_tasks.get(&c.dag_id))
            .map(|max| max - held(&self.held.per_dag, &c.dag_id));
        admits(pool_free, c.pool_slots, dag_free)
    }

    pub fn take(&mut self, c: &Candidate) {
        *self.held.per_pool.entry(c.pool.clone()).or_default() += c.pool_slots;
        *self.held.per_dag.entry(c.dag_id.clone()).or_default() += 1;
        self.held.total += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(dag_id: &str, pool: &str, pool_slots: i64) -> Candidate {
        Candidate {
            dag_id: dag_id.into(),
            pool: pool.into(),
            pool_slots,
        }
    }

    fn room() -> Room {
        let held = ActiveCounts {
            per_pool: HashMap::from([("p".into(), 3)]),
            per_dag: HashMap::from([("d".into(), 2)]),
            total: 3,
            per_task: HashMap::new(),
        };
        Room::new([("p".to_string(), 4)], held)
    }

    #[test]
    fn pools_and_named_dag_limits_bound_what_is_admitted() {
        let limits = QueueLimits {
            max_active_tasks: HashMap::from([("d".into(), 3)]),
        };
        let mut room = room();
        assert!(
            !room.admits(&candidate("d", "p", 2), &limits),
            "pool p has 1 slot left"
        );
        assert!(
            !room.admits(&candidate("d", "gone", 1), &limits),
            "no such pool"
        );
        let c = candidate("d", "p", 1);
        assert!(room.admits(&c, &limits));
        room.take(&c);
        let limits = QueueLimits {
            max_active_tasks: HashMap::from([("d".into(), 4)]),
        };
        assert!(!room.admits(&c, &limits), "pool p is now full");
    }

    #[test]
    fn a_dag_absent_from_the_limits_is_bounded_by_its_pool_only() {
        let full = QueueLimits {
            max_active_tasks: HashMap::from([("d".into(), 2)]),
        };
        assert!(
            !room().admits(&candidate("d", "p", 1), &full),
            "d is at its limit"
        );
        assert!(room().admits(&candidate("d", "p", 1), &QueueLimits::default()));
        assert!(room().admits(&candidate("other", "p", 1), &full));
    }
}
