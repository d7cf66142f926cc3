//! Layered left-to-right drawing of a DAG (a small Sugiyama layout), computed server-side.
//!
//! 1. **Layering**: longest path from the sources: a task's layer is one more than the
//!    greatest layer of its upstream tasks, so every edge points to a later layer.
//! 2. **Dummy nodes** split an edge that spans several layers into one hop per layer, so it is
//!    routed around the tasks in between and takes part in crossing reduction.
//! 3. **Ordering**: within each layer, nodes are sorted by the barycenter (mean position) of
//!    their neighbours in the previous layer, then (sweeping back) the next one; a few
//!    alternating sweeps, keeping the ordering with the fewest edge crossings seen.
//! 4. **Coordinates**: one column per layer (as wide as its widest node), nodes stacked in
//!    their order and centred vertically; edges are cubic curves through their dummies.

/// Node height and the gaps between nodes, in SVG pixels.
pub const NODE_HEIGHT: f64 = 44.0;
const ROW_GAP: f64 = 16.0;
const COLUMN_GAP: f64 = 64.0;
const MARGIN: f64 = 16.0;
const MIN_WIDTH: f64 = 110.0;
const MAX_WIDTH: f64 = 280.0;
/// Average width of one character of a label at the graph's font size.
const CHAR_WIDTH: f64 = 7.4;
const SWEEPS: usize = 12;

#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// The tasks, in the order given.
    pub nodes: Vec<NodeBox>,
    pub edges: Vec<Edge>,
    pub width: f64,
    pub height: f64,
    /// Edge crossings left after ordering (between adjacent layers, dummies included).
    pub crossings: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NodeBox {
    pub id: String,
    pub layer: usize,
    /// Position within its layer, from the top.
    pub order: usize,
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Edge {
    /// Indexes into [`Layout::nodes`]: upstream → downstream.
    pub from: usize,
    pub to: usize,
    /// Points the edge passes through, from the right side of `from` to the left side of `to`.
    pub points: Vec<(f64, f64)>,
    /// SVG path data for the points, as smooth curves.
    pub path: String,
}

/// Lays out tasks given as `(task_id, upstream ids)`. Upstream ids that name no task are
/// ignored; so are edges that would close a cycle (a validated DAG has none).
pub fn layout(tasks: &[(&str, &[String])]) -> Layout {
    let n = tasks.len();
    let index: std::collections::HashMap<&str, usize> = tasks
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (*id, i))
        .collect();
    let mut edges: Vec<(usize, usize)> = Vec::new();
    for (v, (_, ups)) in tasks.iter().enumerate() {
        for up in ups.iter() {
            if let Some(&u) = index.get(up.as_str())
                && u != v
                && !edges.contains(&(u, v))
            {
                edges.push((u, v));
            }
        }
    }
    let (layer, edges) = longest_path_layers(n, edges);

    // Graph with dummies: real nodes first (0..n), then dummies.
    let mut node_layer = layer.clone();
    let mut succ: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut pred: Vec<Vec<usize>> = vec![Vec::new(); n];
    // Per original edge, the chain of graph nodes it passes through.
    let mut chains: Vec<Vec<usize>> = Vec::with_capacity(edges.len());
    for &(u, v) in &edges {
        let mut chain = vec![u];
        let mut prev = u;
        for l in layer[u] + 1..layer[v] {
            let d = node_layer.len();
            node_layer.push(l);
            succ.push(Vec::new());
            pred.push(Vec::new());
            succ[prev].push(d);
            pred[d].push(prev);
            chain.push(d);
            prev = d;
        }
        succ[prev].push(v);
        pred[v].push(prev);
        chain.push(v);
        chains.push(chain);
    }
    let layers_count = node_layer.iter().max().map_or(0, |m| m + 1);
    let mut layers: Vec<Vec<usize>> = vec![Vec::new(); layers_count];
    // Initial order: depth-first from the sources in declaration order, so chains start
    // together.
    let mut seen = vec![false; node_layer.len()];
    let mut stack: Vec<usize> = (0..n).filter(|&v| pred[v].is_empty()).rev().collect();
    while let Some(v) = stack.pop() {
        if std::mem::replace(&mut seen[v], true) {
            continue;
        }
        layers[node_layer[v]].push(v);
        for &w in succ[v].iter().rev() {
            if !seen[w] {
                stack.push(w);
            }
        }
    }
    let order = reduce_crossings(layers, &succ, &pred, node_layer.len());
    let crossings = total_crossings(&order, &succ, node_layer.len());

    // Coordinates.
    let widths: Vec<f64> = (0..node_layer.len())
        .map(|v| if v < n { label_width(tasks[v].0) } else { 0.0 })
        .collect();
    let column_width: Vec<f64> = order
        .iter()
        .map(|l| l.iter().map(|&v| widths[v]).fold(0.0, f64::max))
        .collect();
    let mut column_x = Vec::with_capacity(order.len());
    let mut x = MARGIN;
    for w in &column_width {
        column_x.push(x);
        x += w + COLUMN_GAP;
    }
    let width = (x - COLUMN_GAP + MARGIN).max(2.0 * MARGIN);
    let row = NODE_HEIGHT + ROW_GAP;
    let tallest = order.iter().map(Vec::len).max().unwrap_or(0);
    let height = (tallest as f64 * row - ROW_GAP + 2.0 * MARGIN).max(2.0 * MARGIN);
    let mut pos = vec![(0.0, 0.0, 0usize); node_layer.len()];
    for (l, nodes) in order.iter().enumerate() {
        let offset = (tallest - nodes.len()) as f64 * row / 2.0;
        for (i, &v) in nodes.iter().enumerate() {
            // Real nodes sit at the left of their column; dummies span it.
            pos[v] = (column_x[l], MARGIN + offset + i as f64 * row, i);
        }
    }
    let nodes: Vec<NodeBox> = (0..n)
        .map(|v| NodeBox {
            id: tasks[v].0.to_string(),
            layer: node_layer[v],
            order: pos[v].2,
            x: pos[v].0,
            y: pos[v].1,
            width: widths[v],
            height: NODE_HEIGHT,
        })
        .collect();
    let mid = NODE_HEIGHT / 2.0;
    let edges = edges
        .iter()
        .zip(&chains)
        .map(|(&(u, v), chain)| {
            let mut points = vec![(pos[u].0 + widths[u], pos[u].1 + mid)];
            for &d in &chain[1..chain.len() - 1] {
                let l = node_layer[d];
                points.push((column_x[l], pos[d].1 + mid));
                points.push((column_x[l] + column_width[l], pos[d].1 + mid));
            }
            points.push((pos[v].0, pos[v].1 + mid));
            Edge {
                from: u,
                to: v,
                path: curve(&points),
                points,
            }
        })
        .collect();
    Layout {
        nodes,
        edges,
        width,
        height,
        crossings,
    }
}

/// Layer of every node (longest path from a source) and the edges kept (those of a cycle, if
/// any, are dropped).
fn longest_path_layers(n: usize, edges: Vec<(usize, usize)>) -> (Vec<usize>, Vec<(usize, usize)>) {
    let mut indegree = vec![0usize; n];
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(u, v) in &edges {
        indegree[v] += 1;
        out[u].push(v);
    }
    let mut layer = vec![0usize; n];
    let mut done = vec![false; n];
    let mut ready: std::collections::VecDeque<usize> =
        (0..n).filter(|&v| indegree[v] == 0).collect();
    while let Some(u) = ready.pop_front() {
        done[u] = true;
        for &v in &out[u] {
            layer[v] = layer[v].max(layer[u] + 1);
            indegree[v] -= 1;
            if indegree[v] == 0 {
                ready.push_back(v);
            }
        }
    }
    let kept = edges
        .into_iter()
        .filter(|&(u, v)| done[u] && done[v] && layer[u] < layer[v])
        .collect();
    (layer, kept)
}

/// Alternating barycenter sweeps; returns the best ordering seen.
fn reduce_crossings(
    mut layers: Vec<Vec<usize>>,
    succ: &[Vec<usize>],
    pred: &[Vec<usize>],
    total: usize,
) -> Vec<Vec<usize>> {
    let mut best = layers.clone();
    let mut best_crossings = total_crossings(&layers, succ, total);
    let mut position = vec![0.0f64; total];
    let set_positions = |layers: &[Vec<usize>], position: &mut [f64]| {
        for l in layers {
            for (i, &v) in l.iter().enumerate() {
                position[v] = i as f64;
            }
        }
    };
    for sweep in 0..SWEEPS {
        if best_crossings == 0 {
            break;
        }
        set_positions(&layers, &mut position);
        let down = sweep % 2 == 0;
        let range: Vec<usize> = if down {
            (1..layers.len()).collect()
        } else {
            (0..layers.len().saturating_sub(1)).rev().collect()
        };
        for l in range {
            let neighbours = if down { pred } else { succ };
            let mut keyed: Vec<(f64, usize)> = layers[l]
                .iter()
                .map(|&v| {
                    let ns = &neighbours[v];
                    let key = if ns.is_empty() {
                        position[v]
                    } else {
                        ns.iter().map(|&w| position[w]).sum::<f64>() / ns.len() as f64
                    };
                    (key, v)
                })
                .collect();
            // Stable: equal barycenters keep their current relative order.
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
            layers[l] = keyed.into_iter().map(|(_, v)| v).collect();
            for (i, &v) in layers[l].iter().enumerate() {
                position[v] = i as f64;
            }
        }
        let c = total_crossings(&layers, succ, total);
        if c < best_crossings {
            best_crossings = c;
            best = layers.clone();
        }
    }
    best
}

/// Edge crossings between every pair of adjacent layers.
fn total_crossings(layers: &[Vec<usize>], succ: &[Vec<usize>], total: usize) -> usize {
    let mut position = vec![0usize; total];
    for l in layers {
        for (i, &v) in l.iter().enumerate() {
            position[v] = i;
        }
    }
    let mut sum = 0;
    for pair in layers.windows(2) {
        let mut hops: Vec<(usize, usize)> = pair[0]
            .iter()
            .flat_map(|&u| succ[u].iter().map(move |&w| (u, w)))
            .map(|(u, w)| (position[u], position[w]))
            .collect();
        sum += crossings_between(&mut hops, pair[1].len());
    }
    sum
}

/// Crossings among edges given as (upper position, lower position): pairs ordered one way on
/// the first layer and the other way on the second. O(E log V) with a Fenwick tree.
pub fn crossings_between(hops: &mut [(usize, usize)], lower_len: usize) -> usize {
    hops.sort_unstable();
    let mut tree = vec![0usize; lower_len + 1];
    let mut crossings = 0;
    for (seen, &(_, w)) in hops.iter().enumerate() {
        // Earlier edges (smaller or equal upper position) ending strictly below w cross it;
        // equal upper positions are sorted by w, so they never count.
        let mut at_most_w = 0;
        let mut i = w + 1;
        while i > 0 {
            at_most_w += tree[i];
            i -= i & i.wrapping_neg();
        }
        crossings += seen - at_most_w;
        let mut i = w + 1;
        while i <= lower_len {
            tree[i] += 1;
            i += i & i.wrapping_neg();
        }
    }
    crossings
}

/// Width of a node showing `label` (clamped; longer labels are cut with an ellipsis).
pub fn label_width(label: &str) -> f64 {
    (label.chars().count() as f64 * CHAR_WIDTH + 28.0).clamp(MIN_WIDTH, MAX_WIDTH)
}

/// How many characters of a label fit in a node.
pub fn label_fits(label: &str) -> String {
    let max = ((MAX_WIDTH - 28.0) / CHAR_WIDTH) as usize;
    if label.chars().count() <= max {
        label.to_string()
    } else {
        let cut: String = label.chars().take(max - 1).collect();
        format!("{cut}…")
    }
}

/// Smooth path through `points`: straight runs across dummy columns, S-curves between
/// columns.
fn curve(points: &[(f64, f64)]) -> String {
    let mut d = format!("M{:.1},{:.1}", points[0].0, points[0].1);
    for pair in points.windows(2) {
        let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
        if (y0 - y1).abs() < 0.01 {
            d.push_str(&format!(" L{x1:.1},{y1:.1}"));
        } else {
            let c = (x1 - x0) / 2.0;
            d.push_str(&format!(
                " C{:.1},{y0:.1} {:.1},{y1:.1} {x1:.1},{y1:.1}",
                x0 + c,
                x1 - c
            ));
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(spec: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        spec.iter()
            .map(|(id, ups)| (id.to_string(), ups.iter().map(|u| u.to_string()).collect()))
            .collect()
    }

    fn run(spec: &[(&str, &[&str])]) -> Layout {
        let owned = graph(spec);
        let tasks: Vec<(&str, &[String])> = owned
            .iter()
            .map(|(id, ups)| (id.as_str(), ups.as_slice()))
            .collect();
        layout(&tasks)
    }

    fn node<'a>(l: &'a Layout, id: &str) -> &'a NodeBox {
        l.nodes.iter().find(|n| n.id == id).unwrap()
    }

    fn assert_well_formed(l: &Layout) {
        for e in &l.edges {
            let (a, b) = (&l.nodes[e.from], &l.nodes[e.to]);
            assert!(
                a.layer < b.layer,
                "{} -> {} goes to a later layer",
                a.id,
                b.id
            );
            assert!(
                a.x + a.width < b.x,
                "{} -> {} goes left to right",
                a.id,
                b.id
            );
            for w in e.points.windows(2) {
                assert!(
                    w[0].0 <= w[1].0,
                    "edge {} -> {} never turns back",
                    a.id,
                    b.id
                );
            }
        }
        for a in &l.nodes {
            assert!(a.x >= 0.0 && a.x + a.width <= l.width);
            assert!(a.y >= 0.0 && a.y + a.height <= l.height);
            for b in &l.nodes {
                if a.id != b.id && a.layer == b.layer {
                    let apart = a.y + a.height <= b.y || b.y + b.height <= a.y;
                    assert!(apart, "{} and {} overlap", a.id, b.id);
                }
            }
        }
    }

    #[test]
    fn layers_are_longest_paths_and_edges_go_left_to_right() {
        let l = run(&[
            ("start", &[]),
            ("a", &["start"]),
            ("b", &["a"]),
            ("join", &["start", "b"]),
            ("lonely", &[]),
        ]);
        assert_eq!(node(&l, "start").layer, 0);
        assert_eq!(node(&l, "a").layer, 1);
        assert_eq!(node(&l, "b").layer, 2);
        assert_eq!(node(&l, "join").layer, 3, "longest path, not shortest");
        assert_eq!(node(&l, "lonely").layer, 0);
        assert_eq!(l.edges.len(), 4);
        // start -> join skips two layers: routed through two dummy columns.
        let long = l
            .edges
            .iter()
            .find(|e| l.nodes[e.from].id == "start" && l.nodes[e.to].id == "join")
            .unwrap();
        assert_eq!(long.points.len(), 6);
        assert_well_formed(&l);
    }

    #[test]
    fn barycenter_ordering_removes_avoidable_crossings() {
        // Declared so that the naive order crosses: a1 feeds b2, a2 feeds b1, ...
        let l = run(&[
            ("a1", &[]),
            ("a2", &[]),
            ("a3", &[]),
            ("b3", &["a1"]),
            ("b1", &["a3"]),
            ("b2", &["a2"]),
            ("c", &["b1", "b2", "b3"]),
        ]);
        assert_eq!(l.crossings, 0);
        assert_well_formed(&l);
        // Each b sits level with its a.
        for (a, b) in [("a1", "b3"), ("a2", "b2"), ("a3", "b1")] {
            assert_eq!(node(&l, a).order, node(&l, b).order, "{a} and {b}");
        }
    }

    #[test]
    fn crossing_count_matches_brute_force() {
        let mut hops = vec![(0, 2), (1, 0), (1, 1), (2, 0), (0, 0), (2, 2)];
        let brute = {
            let mut c = 0;
            for i in 0..hops.len() {
                for j in i + 1..hops.len() {
                    let ((a, b), (x, y)) = (hops[i], hops[j]);
                    if (a < x && b > y) || (a > x && b < y) {
                        c += 1;
                    }
                }
            }
            c
        };
        assert_eq!(crossings_between(&mut hops, 3), brute);
    }

    #[test]
    fn random_dags_always_lay_out_left_to_right() {
        // A small deterministic generator: every edge goes from a lower to a higher index.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for size in [1usize, 2, 5, 12, 30, 60] {
            let ids: Vec<String> = (0..size).map(|i| format!("task_{i}")).collect();
            let owned: Vec<(String, Vec<String>)> = (0..size)
                .map(|v| {
                    let ups = (0..v)
                        .filter(|_| next() % 4 == 0)
                        .map(|u| ids[u].clone())
                        .collect();
                    (ids[v].clone(), ups)
                })
                .collect();
            let tasks: Vec<(&str, &[String])> = owned
                .iter()
                .map(|(id, ups)| (id.as_str(), ups.as_slice()))
                .collect();
            let l = layout(&tasks);
            assert_eq!(l.nodes.len(), size);
            let edge_count: usize = owned.iter().map(|(_, u)| u.len()).sum();
            assert_eq!(l.edges.len(), edge_count);
            assert_well_formed(&l);
        }
    }

    #[test]
    fn unknown_upstreams_and_cycles_do_not_break_the_layout() {
        let l = run(&[("a", &["ghost", "b"]), ("b", &["a"]), ("c", &[])]);
        assert_eq!(l.nodes.len(), 3);
        assert_well_formed(&l);
    }

    #[test]
    fn long_labels_are_cut() {
        let long = "x".repeat(100);
        assert_eq!(label_width(&long), MAX_WIDTH);
        assert!(label_fits(&long).ends_with('…'));
        assert_eq!(label_fits("short"), "short");
    }
}
