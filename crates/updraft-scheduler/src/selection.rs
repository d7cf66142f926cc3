//! What to queue, decided without I/O: the room left in pools and DAGs, the scheduled
//! instances the core chooses within it (`select_to_queue`) and the limits the store
//! re-checks. The queue pass uses it between its reads and `Store::queue`; [`Selector`] hands
//! the same choice to the store's one-transaction step, which calls it inside its transaction.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use updraft_core::queue::{Candidate, Capacity, select_to_queue};
use updraft_store::{
    ActiveCounts, DagRow, QueueChoice, QueueLimits, QueueRoom, QueueSelector, ScheduledSkip, TiKey,
    TiRow,
};

/// What the queue choice needs to know of a few tasks, gathered from the DAGs' rows when they
/// are refreshed: which are mapped (a mapped task's placeholder waits for its expansion and
/// is never queued) and which have `max_active_tis_per_dag`. Empty for DAGs using neither.
#[derive(Debug, Clone, Default)]
pub(crate) struct TaskTraits {
    /// dag_id → its mapped tasks.
    pub mapped: HashMap<String, HashSet<String>>,
    /// (dag_id, task_id) → `max_active_tis_per_dag`.
    pub limits: HashMap<(String, String), i64>,
}

impl TaskTraits {
    pub(crate) fn of(rows: &HashMap<String, DagRow>) -> TaskTraits {
        let mut traits = TaskTraits::default();
        for row in rows.values() {
            for task in &row.dag.tasks {
                if task.is_mapped() {
                    traits
                        .mapped
                        .entry(row.dag.dag_id.clone())
                        .or_default()
                        .insert(task.task_id.clone());
                }
                if let Some(limit) = task.max_active_tis_per_dag {
                    let key = (row.dag.dag_id.clone(), task.task_id.clone());
                    traits.limits.insert(key, i64::from(limit));
                }
            }
        }
        traits
    }

    /// Whether `ti` is the placeholder of a mapped task (as the DAG's latest version says).
    pub(crate) fn is_placeholder(&self, ti: &TiRow) -> bool {
        ti.map_index < 0
            && !self.mapped.is_empty()
            && self
                .mapped
                .get(&ti.dag_id)
                .is_some_and(|tasks| tasks.contains(&ti.task_id))
    }
}

/// The scheduled placeholders of mapped tasks on `scheduled` (of runs in play): each waits
/// for its task's expansion.
pub(crate) fn placeholders<'a>(
    scheduled: &'a [TiRow],
    traits: &'a TaskTraits,
    in_play: &'a HashSet<i64>,
) -> impl Iterator<Item = &'a TiRow> {
    scheduled
        .iter()
        .filter(move |ti| in_play.contains(&ti.run_pk) && traits.is_placeholder(ti))
}

/// Free room: pool slots from the pools' sizes, `max_active_tasks` from the DAGs' rows, both
/// less what `held` (queued and running instances) takes; this scheduler's free parallelism;
/// `max_active_tis_per_dag` of the tasks that have one, less their tries held.
pub(crate) fn capacity<'a>(
    pool_slots: impl IntoIterator<Item = (&'a str, i64)>,
    held: &ActiveCounts,
    dag_rows: &HashMap<String, DagRow>,
    traits: &TaskTraits,
    parallelism_free: i64,
) -> Capacity {
    let pool_free = pool_slots
        .into_iter()
        .map(|(name, slots)| {
            let used = held.per_pool.get(name).copied().unwrap_or(0);
            (name.to_string(), slots - used)
        })
        .collect();
    let dag_free = dag_rows
        .values()
        .map(|row| {
            let used = held.per_dag.get(&row.dag.dag_id).copied().unwrap_or(0);
            (
                row.dag.dag_id.clone(),
                row.dag.max_active_tasks as i64 - used,
            )
        })
        .collect();
    let task_free = traits
        .limits
        .iter()
        .map(|(key, limit)| {
            let used = held.per_task.get(key).copied().unwrap_or(0);
            (key.clone(), limit - used)
        })
        .collect();
    Capacity {
        pool_free,
        dag_free,
        parallelism_free,
        task_free,
    }
}

/// Pool name → the tenant owning it, for the pools of one tenant (shared pools are absent).
pub(crate) type PoolOwners = HashMap<String, String>;

/// Whether an instance may take slots of its pool: a shared pool, or one of its own tenant's.
/// Another tenant's pool is to it a pool that does not exist: it waits, and is reported.
fn may_use_pool(ti: &TiRow, owners: &PoolOwners) -> bool {
    owners.get(&ti.pool).is_none_or(|owner| *owner == ti.tenant)
}

/// The DAGs and pools with no room left, whose scheduled instances need not be read.
pub(crate) fn no_room(capacity: &Capacity) -> ScheduledSkip {
    let full = |free: &HashMap<String, i64>| -> Vec<String> {
        free.iter()
            .filter(|(_, room)| **room <= 0)
            .map(|(name, _)| name.clone())
            .collect()
    };
    ScheduledSkip {
        dags: full(&capacity.dag_free),
        pools: full(&capacity.pool_free),
    }
}

/// The instances of `scheduled` (those of runs in `in_play`) to queue within `capacity`, in
/// queueing order, with the `max_active_tasks` of their DAGs for the store to re-check.
/// Placeholders of mapped tasks are never chosen.
pub(crate) fn choose(
    scheduled: &[TiRow],
    capacity: &Capacity,
    pool_owners: &PoolOwners,
    dag_rows: &HashMap<String, DagRow>,
    traits: &TaskTraits,
    in_play: &HashSet<i64>,
) -> QueueChoice {
    let playing: Vec<&TiRow> = scheduled
        .iter()
        .filter(|ti| {
            in_play.contains(&ti.run_pk)
                && may_use_pool(ti, pool_owners)
                && !traits.is_placeholder(ti)
        })
        .collect();
    let candidates: Vec<Candidate> = playing
        .iter()
        .map(|ti| Candidate {
            dag_id: ti.dag_id.clone(),
            pool: ti.pool.clone(),
            pool_slots: ti.pool_slots,
            priority_weight: ti.priority_weight,
            logical_date: ti.logical_date,
            task_id: ti.task_id.clone(),
        })
        .collect();
    let chosen: Vec<&TiRow> = select_to_queue(&candidates, capacity)
        .into_iter()
        .map(|i| playing[i])
        .collect();
    let max_active_tasks = chosen
        .iter()
        .filter_map(|ti| {
            let row = dag_rows.get(&ti.dag_id)?;
            Some((ti.dag_id.clone(), row.dag.max_active_tasks as i64))
        })
        .collect();
    QueueChoice {
        keys: chosen.iter().map(|ti| ti.key()).collect(),
        limits: QueueLimits { max_active_tasks },
    }
}

/// Scheduled instances (of runs in play) waiting for a pool that does not exist (for them).
pub(crate) fn in_unknown_pools<'a>(
    scheduled: &'a [TiRow],
    capacity: &'a Capacity,
    pool_owners: &'a PoolOwners,
    in_play: &'a HashSet<i64>,
) -> impl Iterator<Item = &'a TiRow> {
    scheduled.iter().filter(move |ti| {
        in_play.contains(&ti.run_pk)
            && (!capacity.pool_free.contains_key(&ti.pool) || !may_use_pool(ti, pool_owners))
    })
}

/// [`choose`] as the store's step calls it, on the room it reads inside its transaction.
pub(crate) struct Selector<'a> {
    pub dag_rows: &'a HashMap<String, DagRow>,
    pub traits: &'a TaskTraits,
    pub in_play: &'a HashSet<i64>,
    pub parallelism_free: i64,
    /// Instances seen waiting for a pool that does not exist, to warn about afterwards.
    pub unknown_pools: Mutex<Vec<TiRow>>,
    /// Placeholders of mapped tasks seen scheduled, to expand afterwards.
    pub placeholders: Mutex<Vec<TiKey>>,
}

impl Selector<'_> {
    fn capacity(&self, room: &QueueRoom) -> Capacity {
        let pools = room.pool_slots.iter().map(|(k, &v)| (k.as_str(), v));
        capacity(
            pools,
            &room.held,
            self.dag_rows,
            self.traits,
            self.parallelism_free,
        )
    }
}

impl QueueSelector for Selector<'_> {
    fn skip(&self, room: &QueueRoom) -> ScheduledSkip {
        no_room(&self.capacity(room))
    }

    fn select(&self, scheduled: &[TiRow], room: &QueueRoom) -> QueueChoice {
        let capacity = self.capacity(room);
        let owners = &room.pool_tenants;
        let unknown = in_unknown_pools(scheduled, &capacity, owners, self.in_play).cloned();
        if let Ok(mut seen) = self.unknown_pools.lock() {
            seen.extend(unknown);
        }
        if !self.traits.mapped.is_empty()
            && let Ok(mut seen) = self.placeholders.lock()
        {
            seen.extend(placeholders(scheduled, self.traits, self.in_play).map(TiRow::key));
        }
        choose(
            scheduled,
            &capacity,
            owners,
            self.dag_rows,
            self.traits,
            self.in_play,
        )
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use updraft_core::TaskState;

    use super::*;

    fn dag_rows(max_active_tasks: &[(&str, u32)]) -> HashMap<String, DagRow> {
        max_active_tasks
            .iter()
            .map(|&(dag_id, max)| {
                let yaml = format!(
                    "dag_id: {dag_id}\nmax_active_tasks: {max}\ntasks:\n  - {{task_id: a, noop: true}}\n"
                );
                let dag = updraft_dag::parse_dag("t", "t/d.yaml", &yaml).unwrap();
                let row = DagRow {
                    dag,
                    version: "v".into(),
                    is_paused: false,
                    is_active: true,
                    last_parsed_at: Utc::now(),
                    bundle_name: None,
                    bundle_version: None,
                };
                (dag_id.to_string(), row)
            })
            .collect()
    }

    fn scheduled(run_pk: i64, dag_id: &str, task_id: &str, pool: &str, weight: i64) -> TiRow {
        TiRow {
            run_pk,
            dag_id: dag_id.into(),
            run_id: "r".into(),
            tenant: "t".into(),
            task_id: task_id.into(),
            map_index: -1,
            state: TaskState::Scheduled,
            try_number: 0,
            max_tries: 1,
            pool: pool.into(),
            pool_slots: 1,
            priority_weight: weight,
            logical_date: Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap(),
            queued_at: None,
            start_date: None,
            end_date: None,
            retry_at: None,
            pid: None,
            hostname: None,
            queued_by_job_id: None,
        }
    }

    fn room(pools: &[(&str, i64)], held_per_dag: &[(&str, i64)]) -> QueueRoom {
        let mut held = ActiveCounts::default();
        for &(dag_id, n) in held_per_dag {
            held.per_dag.insert(dag_id.into(), n);
            *held.per_pool.entry("default_pool".into()).or_default() += n;
            held.total += n;
        }
        QueueRoom {
            pool_slots: pools.iter().map(|&(p, s)| (p.to_string(), s)).collect(),
            pool_tenants: HashMap::new(),
            held,
        }
    }

    #[test]
    fn the_selector_chooses_within_the_room_it_is_shown() {
        let rows = dag_rows(&[("d", 2), ("e", 5)]);
        let in_play: HashSet<i64> = [1, 2].into();
        let selector = Selector {
            dag_rows: &rows,
            in_play: &in_play,
            parallelism_free: 10,
            unknown_pools: Mutex::new(Vec::new()),
            traits: &TaskTraits::default(),
            placeholders: Mutex::default(),
        };
        // d holds 1 of its 2 tasks; default_pool has 3 slots, 1 held.
        let room = room(&[("default_pool", 3)], &[("d", 1)]);
        let page = [
            scheduled(1, "d", "a", "default_pool", 9),
            scheduled(1, "d", "b", "default_pool", 8),
            scheduled(3, "e", "x", "default_pool", 7),
            scheduled(2, "e", "c", "ghost", 6),
            scheduled(2, "e", "d", "default_pool", 5),
        ];
        let choice = selector.select(&page, &room);
        let chosen: Vec<&str> = choice.keys.iter().map(|k| k.task_id.as_str()).collect();
        // a (d's last slot), not b (d is full), not x (run not in play), not c (no such
        // pool), d (the pool's last slot).
        assert_eq!(chosen, ["a", "d"]);
        assert_eq!(
            choice.limits.max_active_tasks,
            [("d".to_string(), 2), ("e".to_string(), 5)].into()
        );
        let unknown = selector.unknown_pools.lock().unwrap();
        assert_eq!(unknown.len(), 1);
        assert_eq!(unknown[0].task_id, "c");
    }

    #[test]
    fn another_tenants_pool_does_not_exist_for_an_instance() {
        let rows = dag_rows(&[("d", 5)]);
        let in_play: HashSet<i64> = [1].into();
        let selector = Selector {
            dag_rows: &rows,
            in_play: &in_play,
            parallelism_free: 10,
            unknown_pools: Mutex::new(Vec::new()),
            traits: &TaskTraits::default(),
            placeholders: Mutex::default(),
        };
        let mut room = room(&[("theirs", 3), ("ours", 3), ("shared", 3)], &[]);
        room.pool_tenants = [
            ("theirs".to_string(), "other".to_string()),
            ("ours".to_string(), "t".to_string()),
        ]
        .into();
        let page = [
            scheduled(1, "d", "a", "theirs", 9),
            scheduled(1, "d", "b", "ours", 8),
            scheduled(1, "d", "c", "shared", 7),
        ];
        let choice = selector.select(&page, &room);
        let chosen: Vec<&str> = choice.keys.iter().map(|k| k.task_id.as_str()).collect();
        assert_eq!(
            chosen,
            ["b", "c"],
            "tenant t's task may not take tenant other's slots"
        );
        let unknown = selector.unknown_pools.lock().unwrap();
        assert_eq!(unknown.len(), 1);
        assert_eq!(unknown[0].task_id, "a");
    }

    #[test]
    fn the_page_leaves_out_full_dags_and_pools() {
        let rows = dag_rows(&[("d", 1), ("e", 5)]);
        let in_play = HashSet::new();
        let selector = Selector {
            dag_rows: &rows,
            in_play: &in_play,
            parallelism_free: 10,
            unknown_pools: Mutex::new(Vec::new()),
            traits: &TaskTraits::default(),
            placeholders: Mutex::default(),
        };
        let mut skip = selector.skip(&room(&[("default_pool", 1), ("p", 4)], &[("d", 1)]));
        skip.pools.sort();
        assert_eq!(skip.dags, ["d"]);
        assert_eq!(skip.pools, ["default_pool"]);
    }
}
