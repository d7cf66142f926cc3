//! The task graph: validation while parsing (duplicate ids, unknown upstream ids, cycles) and
//! the queries later stages need (topological order, transitive downstream and upstream).
//!
//! An edge `a -> b` means `a` is upstream of `b`: `b` lists `a` in its `upstream`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use crate::diag::{self, Diagnostics, quoted};
use crate::model::{Dag, Task};
use crate::task::TaskSource;

/// Reports duplicate task ids (at the second one), upstream ids that name no task (at the
/// entry) and one cycle (at the `upstream` entry that closes it).
pub(crate) fn check_graph(diags: &mut Diagnostics<'_>, sources: &[TaskSource<'_>]) {
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(sources.len());
    let mut unique = vec![true; sources.len()];
    for (i, source) in sources.iter().enumerate() {
        let id = source.task.task_id.as_str();
        if let Some(&first) = index.get(id) {
            diags.at(
                source.id_node.pos,
                format!(
                    "duplicate task_id {} (first defined at line {})",
                    quoted(id),
                    sources[first].id_node.pos.line
                ),
            );
            unique[i] = false;
        } else {
            index.insert(id, i);
        }
    }
    // upstream[i]: indices of the tasks task i lists, with the entry's source index.
    let mut upstream: Vec<Vec<(usize, usize)>> = vec![Vec::new(); sources.len()];
    for (i, source) in sources.iter().enumerate().filter(|(i, _)| unique[*i]) {
        for (entry, (id, node)) in source.upstream.iter().enumerate() {
            match index.get(id.as_str()) {
                Some(&j) => upstream[i].push((j, entry)),
                None => {
                    let hint = diag::did_you_mean(id, index.keys().copied());
                    diags.at(
                        node.pos,
                        format!(
                            "upstream task {} of task {} does not exist in this DAG{hint}",
                            quoted(id),
                            quoted(&source.task.task_id)
                        ),
                    );
                }
            }
        }
    }
    let upstream_only: Vec<Vec<usize>> = upstream
        .iter()
        .map(|edges| edges.iter().map(|(j, _)| *j).collect())
        .collect();
    if let Some(cycle) = find_cycle(&upstream_only) {
        report_cycle(diags, sources, &upstream, &cycle);
    }
}

fn report_cycle(
    diags: &mut Diagnostics<'_>,
    sources: &[TaskSource<'_>],
    upstream: &[Vec<(usize, usize)>],
    cycle: &[usize],
) {
    // cycle[0] -> cycle[1] -> ... -> cycle[k-1] -> cycle[0]; cycle[0] lists cycle[k-1].
    let first = cycle[0];
    let last = cycle[cycle.len() - 1];
    let names: Vec<&str> = cycle
        .iter()
        .chain(std::iter::once(&first))
        .map(|&i| sources[i].task.task_id.as_str())
        .collect();
    let pos = upstream[first]
        .iter()
        .find(|(j, _)| *j == last)
        .map_or(sources[first].id_node.pos, |(_, entry)| {
            sources[first].upstream[*entry].1.pos
        });
    diags.at(
        pos,
        format!("the tasks form a cycle: {}", names.join(" -> ")),
    );
}

/// Kahn's algorithm, picking ready tasks in declaration order. Returns the order and whether
/// every task made it (false when there is a cycle).
fn kahn(upstream: &[Vec<usize>]) -> (Vec<usize>, bool) {
    let n = upstream.len();
    let mut pending: Vec<usize> = upstream.iter().map(Vec::len).collect();
    let mut downstream: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, ups) in upstream.iter().enumerate() {
        for &j in ups {
            downstream[j].push(i);
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> =
        (0..n).filter(|&i| pending[i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for &d in &downstream[i] {
            pending[d] -= 1;
            if pending[d] == 0 {
                ready.push(Reverse(d));
            }
        }
    }
    let complete = order.len() == n;
    (order, complete)
}

/// One cycle, as task indices in edge direction and rotated to start at its earliest
/// declared task, or `None` when the graph is acyclic.
fn find_cycle(upstream: &[Vec<usize>]) -> Option<Vec<usize>> {
    let (order, complete) = kahn(upstream);
    if complete {
        return None;
    }
    let mut done = vec![false; upstream.len()];
    for i in order {
        done[i] = true;
    }
    // Every task left over has a left-over upstream task, so walking upstream from any of
    // them must come back to a task already seen.
    let start = done.iter().position(|d| !d)?;
    let mut seen_at: HashMap<usize, usize> = HashMap::new();
    let mut walk = Vec::new();
    let mut current = start;
    while !seen_at.contains_key(&current) {
        seen_at.insert(current, walk.len());
        walk.push(current);
        current = *upstream[current].iter().find(|&&j| !done[j])?;
    }
    // walk[k..] goes upstream; reverse it to follow edges downstream.
    let mut cycle: Vec<usize> = walk[seen_at[&current]..].to_vec();
    cycle.reverse();
    let min_pos = cycle
        .iter()
        .enumerate()
        .min_by_key(|(_, i)| **i)
        .map_or(0, |(p, _)| p);
    cycle.rotate_left(min_pos);
    Some(cycle)
}

/// The tasks of `dag` in topological order; see [`Dag::topological_order`].
pub fn topological_order(dag: &Dag) -> Vec<&Task> {
    dag.topological_order()
}

impl Dag {
    fn upstream_indices(&self) -> (HashMap<&str, usize>, Vec<Vec<usize>>) {
        let index: HashMap<&str, usize> = self
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.task_id.as_str(), i))
            .collect();
        let upstream = self
            .tasks
            .iter()
            .map(|t| {
                t.upstream
                    .iter()
                    .filter_map(|u| index.get(u.as_str()).copied())
                    .collect()
            })
            .collect();
        (index, upstream)
    }

    /// The tasks in an order where every task comes after all its upstream tasks; ties are
    /// broken by declaration order, so the order is deterministic. (Tasks of a DAG that was
    /// not validated and has a cycle are left out from the cycle on.)
    pub fn topological_order(&self) -> Vec<&Task> {
        let (_, upstream) = self.upstream_indices();
        kahn(&upstream)
            .0
            .into_iter()
            .map(|i| &self.tasks[i])
            .collect()
    }

    /// The ids of the tasks that list `task_id` in their `upstream` (direct downstream), in
    /// declaration order.
    pub fn direct_downstream_of(&self, task_id: &str) -> Vec<&str> {
        self.tasks
            .iter()
            .filter(|t| t.upstream.iter().any(|u| u == task_id))
            .map(|t| t.task_id.as_str())
            .collect()
    }

    /// Every task downstream of `task_id`, directly or not, excluding `task_id` itself, in
    /// declaration order. Empty when there is no such task.
    pub fn downstream_of(&self, task_id: &str) -> Vec<&str> {
        let (index, upstream) = self.upstream_indices();
        let mut downstream: Vec<Vec<usize>> = vec![Vec::new(); self.tasks.len()];
        for (i, ups) in upstream.iter().enumerate() {
            for &j in ups {
                downstream[j].push(i);
            }
        }
        self.reachable(&index, &downstream, task_id)
    }

    /// Every task upstream of `task_id`, directly or not, excluding `task_id` itself, in
    /// declaration order.
    pub fn upstream_of(&self, task_id: &str) -> Vec<&str> {
        let (index, upstream) = self.upstream_indices();
        self.reachable(&index, &upstream, task_id)
    }

    fn reachable(
        &self,
        index: &HashMap<&str, usize>,
        edges: &[Vec<usize>],
        from: &str,
    ) -> Vec<&str> {
        let Some(&start) = index.get(from) else {
            return Vec::new();
        };
        let mut marked = vec![false; self.tasks.len()];
        let mut stack = vec![start];
        while let Some(i) = stack.pop() {
            for &next in &edges[i] {
                if !marked[next] {
                    marked[next] = true;
                    stack.push(next);
                }
            }
        }
        marked[start] = false;
        self.tasks
            .iter()
            .zip(marked)
            .filter(|(_, m)| *m)
            .map(|(t, _)| t.task_id.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kahn_orders_by_declaration_among_ready_tasks() {
        // 0 <- 2, 1 (independent), 2 <- 3
        let upstream = vec![vec![], vec![], vec![0], vec![2]];
        assert_eq!(kahn(&upstream), (vec![0, 1, 2, 3], true));
        let upstream = vec![vec![3], vec![], vec![], vec![]];
        assert_eq!(kahn(&upstream), (vec![1, 2, 3, 0], true));
    }

    #[test]
    fn cycles_are_found_and_rotated() {
        // a(0) -> b(1) -> c(2) -> a ; d(3) downstream of c.
        let upstream = vec![vec![2], vec![0], vec![1], vec![2]];
        assert_eq!(find_cycle(&upstream), Some(vec![0, 1, 2]));
        assert_eq!(find_cycle(&[vec![0]]), Some(vec![0]));
        assert_eq!(find_cycle(&[vec![], vec![0]]), None);
        // Only the downstream part of the graph is cyclic.
        let upstream = vec![vec![], vec![0, 2], vec![1]];
        assert_eq!(find_cycle(&upstream), Some(vec![1, 2]));
    }
}
