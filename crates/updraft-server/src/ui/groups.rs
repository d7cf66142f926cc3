//! Task groups in the UI: which groups the graph shows collapsed (`?groups=`, a comma-separated
//! list of collapsed group ids; without it, every group of a big DAG and none of a small one),
//! what each task is drawn as (itself, or the outermost collapsed group holding it), and the
//! grid's order, which keeps a group's tasks together.

use std::collections::{BTreeSet, HashMap};

use updraft_dag::{Dag, Task, TaskGroup};

use super::format::query_get;

/// Above this many tasks the graph starts with every group collapsed.
pub const EXPANDED_UP_TO: usize = 40;

/// The groups of one DAG and which of them are collapsed.
pub struct GroupView<'d> {
    dag: &'d Dag,
    by_id: HashMap<&'d str, &'d TaskGroup>,
    /// The innermost group of each grouped task.
    task_group: HashMap<&'d str, &'d TaskGroup>,
    collapsed: BTreeSet<&'d str>,
    /// Whether the view was asked for (`?groups=`), rather than the default.
    explicit: bool,
}

impl<'d> GroupView<'d> {
    /// The view a page's query asks for: `groups` lists the collapsed groups (unknown ids are
    /// ignored); without it, the default for the DAG's size.
    pub fn from_query(dag: &'d Dag, pairs: &[(String, String)]) -> GroupView<'d> {
        let mut view = GroupView::new(dag);
        match query_get(pairs, "groups") {
            Some(list) => {
                view.explicit = true;
                for id in list.split(',') {
                    if let Some(group) = view.by_id.get(id) {
                        view.collapsed.insert(group.group_id.as_str());
                    }
                }
            }
            None if dag.tasks.len() > EXPANDED_UP_TO => {
                view.collapsed = dag.groups.iter().map(|g| g.group_id.as_str()).collect();
            }
            None => {}
        }
        view
    }

    /// Every group expanded.
    pub fn new(dag: &'d Dag) -> GroupView<'d> {
        let by_id = dag
            .groups
            .iter()
            .map(|g| (g.group_id.as_str(), g))
            .collect();
        let task_group = dag
            .groups
            .iter()
            .flat_map(|g| g.tasks.iter().map(move |t| (t.as_str(), g)))
            .collect();
        GroupView {
            dag,
            by_id,
            task_group,
            collapsed: BTreeSet::new(),
            explicit: false,
        }
    }

    pub fn is_collapsed(&self, group_id: &str) -> bool {
        self.collapsed.contains(group_id)
    }

    /// The groups holding `task_id`, outermost first.
    pub fn groups_of(&self, task_id: &str) -> Vec<&'d TaskGroup> {
        let mut chain = Vec::new();
        let mut current = self.task_group.get(task_id).copied();
        while let Some(group) = current {
            chain.push(group);
            current = group
                .parent
                .as_deref()
                .and_then(|p| self.by_id.get(p).copied());
        }
        chain.reverse();
        chain
    }

    /// The groups holding `group`, outermost first, and `group` itself last.
    pub fn chain_of(&self, group: &'d TaskGroup) -> Vec<&'d TaskGroup> {
        let mut chain = vec![group];
        let mut current = group
            .parent
            .as_deref()
            .and_then(|p| self.by_id.get(p).copied());
        while let Some(outer) = current {
            chain.push(outer);
            current = outer
                .parent
                .as_deref()
                .and_then(|p| self.by_id.get(p).copied());
        }
        chain.reverse();
        chain
    }

    /// What `task_id` is drawn as: the outermost collapsed group holding it, else itself.
    pub fn shown_as(&self, task_id: &str) -> Option<&'d TaskGroup> {
        self.groups_of(task_id)
            .into_iter()
            .find(|g| self.is_collapsed(&g.group_id))
    }

    /// Whether a group is drawn as a box around its members: expanded, and no group holding
    /// it collapsed.
    pub fn is_boxed(&self, group: &'d TaskGroup) -> bool {
        self.chain_of(group)
            .iter()
            .all(|g| !self.is_collapsed(&g.group_id))
    }

    /// The `groups` query value after toggling `group_id`.
    pub fn toggled(&self, group_id: &str) -> String {
        let mut collapsed = self.collapsed.clone();
        if !collapsed.remove(group_id) {
            collapsed.insert(group_id);
        }
        collapsed.into_iter().collect::<Vec<_>>().join(",")
    }

    /// The `groups` query value of this view, when it was asked for (to keep it in live
    /// refreshes).
    pub fn query_value(&self) -> Option<String> {
        self.explicit
            .then(|| self.collapsed.iter().copied().collect::<Vec<_>>().join(","))
    }

    pub fn dag(&self) -> &'d Dag {
        self.dag
    }
}

/// The tasks of `dag` in topological order, except that the tasks of a group stay together
/// (placed where the group's first task comes), groups inside groups likewise.
pub fn grouped_order(dag: &Dag) -> Vec<&Task> {
    let order = dag.topological_order();
    if dag.groups.is_empty() {
        return order;
    }
    let view = GroupView::new(dag);
    let position: HashMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, t)| (t.task_id.as_str(), i))
        .collect();
    let mut first_of_group: HashMap<&str, usize> = HashMap::new();
    for task in &order {
        for group in view.groups_of(&task.task_id) {
            first_of_group
                .entry(group.group_id.as_str())
                .or_insert(position[task.task_id.as_str()]);
        }
    }
    let key = |task: &Task| -> Vec<usize> {
        let mut key: Vec<usize> = view
            .groups_of(&task.task_id)
            .iter()
            .map(|g| first_of_group[g.group_id.as_str()])
            .collect();
        key.push(position[task.task_id.as_str()]);
        key
    };
    let mut keyed: Vec<(Vec<usize>, &Task)> = order.into_iter().map(|t| (key(t), t)).collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    keyed.into_iter().map(|(_, t)| t).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dag() -> Dag {
        updraft_dag::parse_dag(
            "default",
            "g.yaml",
            r#"
tasks:
  - {task_id: start, bash: "true"}
  - {task_id: side, bash: "true", upstream: g.a}
  - group_id: g
    upstream: start
    tasks:
      - {task_id: a, bash: "true"}
      - group_id: h
        upstream: a
        tasks:
          - {task_id: x, bash: "true"}
  - {task_id: end, bash: "true", upstream: [g, side]}
"#,
        )
        .unwrap()
    }

    #[test]
    fn a_collapsed_group_stands_for_everything_inside() {
        let dag = dag();
        let pairs = vec![("groups".to_owned(), "g,nope".to_owned())];
        let view = GroupView::from_query(&dag, &pairs);
        assert_eq!(view.shown_as("g.h.x").unwrap().group_id, "g");
        assert_eq!(view.shown_as("g.a").unwrap().group_id, "g");
        assert!(view.shown_as("start").is_none());
        assert_eq!(view.toggled("g"), "");
        assert_eq!(view.toggled("g.h"), "g,g.h");
        assert_eq!(view.query_value().as_deref(), Some("g"));
        assert!(!view.is_boxed(dag.group("g.h").unwrap()));
        let open = GroupView::from_query(&dag, &[]);
        assert!(open.shown_as("g.h.x").is_none());
        assert!(open.query_value().is_none());
    }

    #[test]
    fn the_grid_keeps_a_group_together() {
        let dag = dag();
        let ids: Vec<&str> = grouped_order(&dag)
            .iter()
            .map(|t| t.task_id.as_str())
            .collect();
        // Topologically `side` comes between g.a and g.h.x.
        let topological: Vec<&str> = dag
            .topological_order()
            .iter()
            .map(|t| t.task_id.as_str())
            .collect();
        assert_eq!(topological, ["start", "g.a", "side", "g.h.x", "end"]);
        assert_eq!(ids, ["start", "g.a", "g.h.x", "side", "end"]);
    }
}
