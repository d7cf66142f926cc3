//! A per-DAG index of the task graph by position, which callers can build once per DAG version
//! and reuse for every evaluation.

use std::collections::HashMap;

use updraft_dag::Dag;

/// Tasks of a [`Dag`] by position (their index in `Dag::tasks`), with upstream and downstream
/// adjacency in compact form and a topological order.
///
/// Built for one DAG definition: using it with another `Dag` gives meaningless results.
/// Duplicate upstream ids are counted once; upstream ids naming no task are ignored; should the
/// graph contain a cycle (validated DAGs never do), the tasks on it are appended to the
/// topological order in declaration order.
#[derive(Debug, Clone)]
pub struct DagIndex {
    ids: Vec<String>,
    by_id: HashMap<String, u32>,
    up_start: Vec<u32>,
    up: Vec<u32>,
    down_start: Vec<u32>,
    down: Vec<u32>,
    topo: Vec<u32>,
    /// Position → its place in `topo`.
    rank: Vec<u32>,
}

impl DagIndex {
    pub fn new(dag: &Dag) -> DagIndex {
        let n = dag.tasks.len();
        let mut by_id = HashMap::with_capacity(n);
        for (i, t) in dag.tasks.iter().enumerate() {
            by_id.entry(t.task_id.clone()).or_insert(pos_u32(i));
        }
        let mut up_start = Vec::with_capacity(n + 1);
        let mut up = Vec::new();
        // `seen[p] == i + 1` once task p was listed as an upstream of task i.
        let mut seen = vec![0u32; n];
        up_start.push(0);
        for (i, t) in dag.tasks.iter().enumerate() {
            let stamp = pos_u32(i + 1);
            for p in t.upstream.iter().filter_map(|u| by_id.get(u.as_str())) {
                if seen[*p as usize] != stamp {
                    seen[*p as usize] = stamp;
                    up.push(*p);
                }
            }
            up_start.push(pos_u32(up.len()));
        }
        let (down_start, down) = invert(n, &up_start, &up);
        let topo = topological_order(n, &up_start, &down_start, &down);
        let mut rank = vec![0u32; n];
        for (place, &p) in topo.iter().enumerate() {
            rank[p as usize] = pos_u32(place);
        }
        DagIndex {
            ids: dag.tasks.iter().map(|t| t.task_id.clone()).collect(),
            by_id,
            up_start,
            up,
            down_start,
            down,
            topo,
            rank,
        }
    }

    /// Number of tasks.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Position of a task in `Dag::tasks`.
    pub fn position(&self, task_id: &str) -> Option<usize> {
        self.by_id.get(task_id).map(|&p| p as usize)
    }

    pub fn task_id(&self, pos: usize) -> &str {
        &self.ids[pos]
    }

    /// Positions of the direct upstream tasks of the task at `pos`.
    pub fn upstream(&self, pos: usize) -> &[u32] {
        &self.up[self.up_start[pos] as usize..self.up_start[pos + 1] as usize]
    }

    /// Positions of the direct downstream tasks of the task at `pos`.
    pub fn downstream(&self, pos: usize) -> &[u32] {
        &self.down[self.down_start[pos] as usize..self.down_start[pos + 1] as usize]
    }

    /// A task without downstream tasks (its state decides the run's state).
    pub fn is_leaf(&self, pos: usize) -> bool {
        self.downstream(pos).is_empty()
    }

    /// All positions, every task after all of its upstream tasks; among tasks whose upstreams
    /// are done, declaration order first.
    pub fn topological_order(&self) -> &[u32] {
        &self.topo
    }

    /// The place of the task at `pos` in [`Self::topological_order`].
    pub fn topological_rank(&self, pos: usize) -> usize {
        self.rank[pos] as usize
    }
}

fn pos_u32(i: usize) -> u32 {
    u32::try_from(i).expect("a DAG has fewer than 2^32 tasks")
}

/// Reverses CSR adjacency.
pub(crate) fn invert(n: usize, start: &[u32], list: &[u32]) -> (Vec<u32>, Vec<u32>) {
    let mut counts = vec![0u32; n + 1];
    for &p in list {
        counts[p as usize + 1] += 1;
    }
    for i in 0..n {
        counts[i + 1] += counts[i];
    }
    let mut fill = counts.clone();
    let mut out = vec![0u32; list.len()];
    for from in 0..n {
        for &to in &list[start[from] as usize..start[from + 1] as usize] {
            out[fill[to as usize] as usize] = pos_u32(from);
            fill[to as usize] += 1;
        }
    }
    (counts, out)
}

/// Kahn's algorithm with a min-heap on position, so the order is deterministic.
fn topological_order(n: usize, up_start: &[u32], down_start: &[u32], down: &[u32]) -> Vec<u32> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let mut indegree: Vec<u32> = (0..n).map(|i| up_start[i + 1] - up_start[i]).collect();
    let mut ready: BinaryHeap<Reverse<u32>> = (0..n)
        .filter(|&i| indegree[i] == 0)
        .map(|i| Reverse(pos_u32(i)))
        .collect();
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse(p)) = ready.pop() {
        order.push(p);
        for &d in &down[down_start[p as usize] as usize..down_start[p as usize + 1] as usize] {
            indegree[d as usize] -= 1;
            if indegree[d as usize] == 0 {
                ready.push(Reverse(d));
            }
        }
    }
    if order.len() < n {
        let mut placed = vec![false; n];
        for &p in &order {
            placed[p as usize] = true;
        }
        order.extend((0..n).filter(|&i| !placed[i]).map(pos_u32));
    }
    order
}
