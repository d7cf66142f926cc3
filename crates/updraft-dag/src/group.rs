//! Task groups (Airflow's `TaskGroup`): the entries of `tasks:` that are groups.
//!
//! [`read_tasks`] reads `tasks:` as a tree of tasks and groups, gives grouped tasks their full
//! ids (`extract.a`), resolves every `upstream` name (relative to the group it is written in
//! first, then as a full id from the DAG's root) and turns dependencies on groups into
//! dependencies between tasks, as Airflow's `>>` does: a group upstream of something stands
//! for its leaves, a group downstream of something for its roots. What comes out are plain
//! tasks; the groups are kept only for showing the DAG.

use std::collections::{HashMap, HashSet};

use crate::diag::{self, Diagnostics, Schema, quoted};
use crate::model::TaskGroup;
use crate::parse::check_identifier;
use crate::task::{self, KINDS, SETTING_KEYS, Settings, TaskSource};
use crate::yaml::{Node, Value};

/// Keys of a group entry of `tasks:`.
pub(crate) const GROUP_KEYS: [&str; 6] = [
    "group_id",
    "tooltip",
    "prefix_group_id",
    "default_args",
    "upstream",
    "tasks",
];

/// A task or a group, by index into [`Tree::tasks`] or [`Tree::groups`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Member {
    Task(usize),
    Group(usize),
}

#[derive(Debug)]
struct GroupSource<'n> {
    group: TaskGroup,
    parent: Option<usize>,
    id_node: &'n Node,
    upstream: Vec<(String, &'n Node)>,
    /// What the group holds, by the id written in its entry.
    members: Vec<(String, Member)>,
}

/// What `tasks:` holds, as read: tasks with their full ids and upstream names as written.
#[derive(Debug, Default)]
struct Tree<'n> {
    tasks: Vec<TaskSource<'n>>,
    /// The group each task is directly in.
    task_group: Vec<Option<usize>>,
    groups: Vec<GroupSource<'n>>,
    /// The top level's members, by id.
    root: Vec<(String, Member)>,
}

/// A dependency as declared: `target` lists `source` in its `upstream` (at `node`).
#[derive(Debug, Clone, Copy)]
struct Declared<'n> {
    target: Member,
    source: Member,
    node: &'n Node,
}

/// Reads `tasks:`: its tasks (full ids, `upstream` resolved into task ids; a name that
/// resolves to nothing is left as written, for the graph check to report) and its groups.
pub(crate) fn read_tasks<'n>(
    diags: &mut Diagnostics<'_>,
    node: Option<&'n Node>,
    defaults: &Settings,
) -> Option<(Vec<TaskSource<'n>>, Vec<TaskGroup>)> {
    let mut tree = Tree::default();
    let Some(node) = node else {
        return Some((Vec::new(), Vec::new()));
    };
    let before = diags.count();
    read_list(diags, &mut tree, node, None, defaults);
    if diags.count() > before {
        return None;
    }
    if tree.groups.is_empty() {
        // Without groups every name is a full id already.
        return Some((tree.tasks, Vec::new()));
    }
    check_group_ids(diags, &tree);
    let declared = resolve(diags, &tree);
    if diags.count() > before {
        return None;
    }
    let edges = expand(&tree, &declared);
    let groups = tree.groups.iter().map(|g| g.group.clone()).collect();
    let mut tasks = tree.tasks;
    for (source, upstream) in tasks.iter_mut().zip(edges) {
        let mut ids: Vec<String> = Vec::with_capacity(upstream.len());
        for (id, _) in &upstream {
            if !ids.contains(id) {
                ids.push(id.clone());
            }
        }
        source.task.upstream = ids;
        source.upstream = upstream;
    }
    Some((tasks, groups))
}

/// Reads a list of entries into `scope` (`None`: the top level).
fn read_list<'n>(
    diags: &mut Diagnostics<'_>,
    tree: &mut Tree<'n>,
    node: &'n Node,
    scope: Option<usize>,
    defaults: &Settings,
) {
    let items: &[Node] = match &node.value {
        Value::Seq(items) => items,
        Value::Null => &[],
        _ => {
            let expected = match scope {
                None => "a list of tasks",
                Some(_) => "a list of tasks and groups",
            };
            diag::wrong_type(diags, node, "tasks", expected);
            return;
        }
    };
    if let Some(group) = scope
        && items.is_empty()
    {
        let id = &tree.groups[group].group.group_id;
        diags.at(node.pos, format!("group {} has no tasks", quoted(id)));
    }
    for (index, item) in items.iter().enumerate() {
        if is_group(item) {
            read_group(diags, tree, item, index, scope, defaults);
        } else {
            read_task(diags, tree, item, index, scope, defaults);
        }
    }
}

fn is_group(node: &Node) -> bool {
    match &node.value {
        Value::Map(entries) => entries.iter().any(|(k, _)| k.as_str() == Some("group_id")),
        _ => false,
    }
}

/// The full id of `label` inside `group` (Airflow's `TaskGroup.child_id`).
fn child_id(tree: &Tree<'_>, group: usize, label: &str) -> String {
    let group = &tree.groups[group].group;
    if group.prefix_group_id {
        format!("{}.{label}", group.group_id)
    } else {
        label.to_owned()
    }
}

fn members_of<'t>(tree: &'t mut Tree<'_>, scope: Option<usize>) -> &'t mut Vec<(String, Member)> {
    match scope {
        Some(group) => &mut tree.groups[group].members,
        None => &mut tree.root,
    }
}

fn read_task<'n>(
    diags: &mut Diagnostics<'_>,
    tree: &mut Tree<'n>,
    node: &'n Node,
    index: usize,
    scope: Option<usize>,
    defaults: &Settings,
) {
    let Some(mut source) = task::task(diags, node, index, defaults) else {
        return;
    };
    let label = source.task.task_id.clone();
    if let Some(group) = scope {
        let group_id = tree.groups[group].group.group_id.clone();
        if label.contains('.') {
            diags.at(
                source.id_node.pos,
                format!(
                    "task_id {} in group {} contains `.`, which joins a group's id to the ids inside it; use `_` or `-` (only a task at the top level may have a `.` in its id)",
                    quoted(&label),
                    quoted(&group_id)
                ),
            );
            return;
        }
        let full = child_id(tree, group, &label);
        if let Err(message) = check_identifier("the full task id", &full) {
            diags.at(source.id_node.pos, message);
            return;
        }
        tree.groups[group].group.tasks.push(full.clone());
        source.task.task_id = full;
    }
    let member = Member::Task(tree.tasks.len());
    members_of(tree, scope).push((label, member));
    tree.task_group.push(scope);
    tree.tasks.push(source);
}

fn group_hint(key: &str) -> Option<String> {
    let advice = match key {
        "task_id" => {
            "an entry of `tasks` is a task (`task_id`) or a group (`group_id`), not both".to_owned()
        }
        "children" => "use `tasks`".to_owned(),
        "ui_color" | "ui_fgcolor" => "updraft does not colour groups".to_owned(),
        _ if KINDS.iter().any(|(k, _)| *k == key) => format!(
            "a group runs nothing itself: put {} on a task in the group's `tasks`",
            quoted(key)
        ),
        _ if SETTING_KEYS.contains(&key) => format!(
            "{} is a task setting: set it for the group's tasks in its `default_args`",
            quoted(key)
        ),
        _ => return None,
    };
    Some(advice)
}

fn read_group<'n>(
    diags: &mut Diagnostics<'_>,
    tree: &mut Tree<'n>,
    node: &'n Node,
    index: usize,
    scope: Option<usize>,
    defaults: &Settings,
) {
    let provisional = format!("tasks[{index}]");
    let label = match &node.value {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.as_str() == Some("group_id"))
            .and_then(|(_, v)| v.as_str())
            .map_or(provisional, |id| format!("group {}", quoted(id))),
        _ => provisional,
    };
    let schema = Schema {
        what: &label,
        keys: &GROUP_KEYS,
        hint: group_hint,
    };
    let before = diags.count();
    let Some(fields) = diag::fields(diags, node, &schema) else {
        return;
    };
    let id = fields
        .get("group_id")
        .and_then(|id_node| group_label(diags, id_node).map(|id| (id, id_node)));
    let tooltip = fields
        .get("tooltip")
        .and_then(|n| diag::string(diags, n, "tooltip"));
    let prefix = fields
        .get("prefix_group_id")
        .map(|n| diag::boolean(diags, n, "prefix_group_id"));
    let own_defaults = fields
        .get("default_args")
        .map(|n| task::default_args(diags, n));
    let upstream = match fields.get("upstream") {
        Some(n) => diag::string_list(diags, n, "upstream", true).unwrap_or_default(),
        None => Vec::new(),
    };
    let Some(tasks_node) = fields.get("tasks") else {
        diags.at(node.pos, format!("{label} has no `tasks`"));
        return;
    };
    let Some((id, id_node)) = id else { return };
    if diags.count() > before {
        return;
    }
    let group_id = match scope {
        Some(parent) => child_id(tree, parent, &id),
        None => id.clone(),
    };
    if let Err(message) = check_identifier("the full group id", &group_id) {
        diags.at(id_node.pos, message);
        return;
    }
    let merged = match own_defaults.flatten() {
        Some(own) => own.or(defaults),
        None => defaults.clone(),
    };
    let index = tree.groups.len();
    tree.groups.push(GroupSource {
        group: TaskGroup {
            group_id,
            label: id.clone(),
            parent: scope.map(|p| tree.groups[p].group.group_id.clone()),
            tooltip,
            prefix_group_id: prefix.flatten().unwrap_or(true),
            tasks: Vec::new(),
        },
        parent: scope,
        id_node,
        upstream,
        members: Vec::new(),
    });
    members_of(tree, scope).push((id, Member::Group(index)));
    read_list(diags, tree, tasks_node, Some(index), &merged);
}

/// A `group_id` as written: an identifier without `.` (Airflow's rule for group ids).
fn group_label(diags: &mut Diagnostics<'_>, node: &Node) -> Option<String> {
    let id = diag::string(diags, node, "group_id")?;
    let problem = check_identifier("group_id", &id).err().or_else(|| {
        id.contains('.').then(|| {
            format!(
                "group_id {} contains `.`, which joins a group's id to the ids inside it; use `_` or `-`",
                quoted(&id)
            )
        })
    });
    match problem {
        Some(message) => {
            diags.at(node.pos, message);
            None
        }
        None => Some(id),
    }
}

/// Reports a group whose full id is another group's or a task's (they share one namespace in
/// Airflow).
fn check_group_ids(diags: &mut Diagnostics<'_>, tree: &Tree<'_>) {
    let tasks: HashMap<&str, &TaskSource<'_>> = tree
        .tasks
        .iter()
        .map(|t| (t.task.task_id.as_str(), t))
        .collect();
    let mut seen: HashMap<&str, &GroupSource<'_>> = HashMap::new();
    for group in &tree.groups {
        let id = group.group.group_id.as_str();
        if let Some(first) = seen.get(id) {
            diags.at(
                group.id_node.pos,
                format!(
                    "duplicate group_id {} (first defined at line {})",
                    quoted(id),
                    first.id_node.pos.line
                ),
            );
        } else if let Some(task) = tasks.get(id) {
            diags.at(
                group.id_node.pos,
                format!(
                    "group {} has the id of the task at line {}; a group and a task cannot share an id",
                    quoted(id),
                    task.id_node.pos.line
                ),
            );
        } else {
            seen.insert(id, group);
        }
    }
}

impl Tree<'_> {
    /// Whether group `outer` holds `inner`, directly or not (a group does not hold itself).
    fn group_holds_group(&self, outer: usize, inner: usize) -> bool {
        let mut current = self.groups[inner].parent;
        while let Some(group) = current {
            if group == outer {
                return true;
            }
            current = self.groups[group].parent;
        }
        false
    }

    fn group_holds_task(&self, group: usize, task: usize) -> bool {
        match self.task_group[task] {
            Some(direct) => direct == group || self.group_holds_group(group, direct),
            None => false,
        }
    }

    fn holds(&self, group: usize, member: Member) -> bool {
        match member {
            Member::Task(task) => self.group_holds_task(group, task),
            Member::Group(inner) => self.group_holds_group(group, inner),
        }
    }

    fn name(&self, member: Member) -> String {
        match member {
            Member::Task(task) => format!("task {}", quoted(&self.tasks[task].task.task_id)),
            Member::Group(group) => format!("group {}", quoted(&self.groups[group].group.group_id)),
        }
    }

    /// What `name`, written in `scope`, stands for: a path of ids below `scope` first, then
    /// a full id.
    fn lookup(
        &self,
        scope: Option<usize>,
        name: &str,
        full_ids: &HashMap<&str, Member>,
    ) -> Option<Member> {
        self.lookup_relative(scope, name)
            .or_else(|| full_ids.get(name).copied())
    }

    fn lookup_relative(&self, scope: Option<usize>, name: &str) -> Option<Member> {
        let mut members = match scope {
            Some(group) => &self.groups[group].members,
            None => &self.root,
        };
        let mut parts = name.split('.').peekable();
        while let Some(part) = parts.next() {
            let found = members.iter().find(|(id, _)| id == part).map(|(_, m)| *m)?;
            match found {
                Member::Group(group) if parts.peek().is_some() => {
                    members = &self.groups[group].members;
                }
                _ if parts.peek().is_some() => return None,
                found => return Some(found),
            }
        }
        None
    }
}

/// One task's `upstream` entries after resolution, in file order.
enum Entry<'n> {
    Resolved(Declared<'n>),
    /// Names nothing: left for the graph check to report.
    Unknown(String, &'n Node),
}

/// Each task's resolved `upstream` entries, and the dependencies groups declare.
type Resolved<'n> = (Vec<Vec<Entry<'n>>>, Vec<Declared<'n>>);

/// Resolves every `upstream` name of tasks and groups, reporting what may not be named (a
/// group holding the task or group that names it, a member of the naming group) and group
/// upstream names that name nothing.
fn resolve<'n>(diags: &mut Diagnostics<'_>, tree: &Tree<'n>) -> Resolved<'n> {
    let mut full_ids: HashMap<&str, Member> = HashMap::new();
    for (i, group) in tree.groups.iter().enumerate() {
        full_ids.insert(group.group.group_id.as_str(), Member::Group(i));
    }
    for (i, task) in tree.tasks.iter().enumerate() {
        full_ids.insert(task.task.task_id.as_str(), Member::Task(i));
    }
    let mut per_task = Vec::with_capacity(tree.tasks.len());
    for (i, source) in tree.tasks.iter().enumerate() {
        let mut entries = Vec::with_capacity(source.upstream.len());
        for (name, node) in &source.upstream {
            match tree.lookup(tree.task_group[i], name, &full_ids) {
                None => entries.push(Entry::Unknown(name.clone(), node)),
                Some(Member::Group(group)) if tree.group_holds_task(group, i) => diags.at(
                    node.pos,
                    format!(
                        "task {} cannot depend on group {}, which holds it",
                        quoted(&source.task.task_id),
                        quoted(&tree.groups[group].group.group_id)
                    ),
                ),
                Some(source_member) => entries.push(Entry::Resolved(Declared {
                    target: Member::Task(i),
                    source: source_member,
                    node,
                })),
            }
        }
        per_task.push(entries);
    }
    let mut by_groups = Vec::new();
    for (g, group) in tree.groups.iter().enumerate() {
        for (name, node) in &group.upstream {
            let target = Member::Group(g);
            match tree.lookup(group.parent, name, &full_ids) {
                None => {
                    let hint = diag::did_you_mean(name, full_ids.keys().copied());
                    diags.at(
                        node.pos,
                        format!(
                            "upstream {} of group {} names no task or group in this DAG{hint}",
                            quoted(name),
                            quoted(&group.group.group_id)
                        ),
                    );
                }
                Some(source) if source == target || tree.holds(g, source) => diags.at(
                    node.pos,
                    format!(
                        "group {} cannot depend on {}, which it holds",
                        quoted(&group.group.group_id),
                        tree.name(source)
                    ),
                ),
                Some(Member::Group(outer)) if tree.group_holds_group(outer, g) => diags.at(
                    node.pos,
                    format!(
                        "group {} cannot depend on group {}, which holds it",
                        quoted(&group.group.group_id),
                        quoted(&tree.groups[outer].group.group_id)
                    ),
                ),
                Some(source) => by_groups.push(Declared {
                    target,
                    source,
                    node,
                }),
            }
        }
    }
    (per_task, by_groups)
}

/// Roots and leaves of every group: its tasks (nested groups' included) with no upstream,
/// resp. no downstream, among the group's own tasks (Airflow's `get_roots`/`get_leaves`).
struct Ends {
    roots: Vec<Vec<usize>>,
    leaves: Vec<Vec<usize>>,
}

fn ends_of(tree: &Tree<'_>, declared: &[Declared<'_>]) -> Ends {
    let groups = tree.groups.len();
    let mut subtree: Vec<Vec<usize>> = vec![Vec::new(); groups];
    for task in 0..tree.tasks.len() {
        let mut current = tree.task_group[task];
        while let Some(group) = current {
            subtree[group].push(task);
            current = tree.groups[group].parent;
        }
    }
    let mut ends = Ends {
        roots: vec![Vec::new(); groups],
        leaves: vec![Vec::new(); groups],
    };
    // A group comes before the groups it holds, so in reverse every inner group's ends are
    // known before they are needed.
    for group in (0..groups).rev() {
        let mut has_upstream: HashSet<usize> = HashSet::new();
        let mut has_downstream: HashSet<usize> = HashSet::new();
        for edge in declared
            .iter()
            .filter(|e| tree.holds(group, e.target) && tree.holds(group, e.source))
        {
            has_upstream.extend(member_tasks(&ends, edge.target, true));
            has_downstream.extend(member_tasks(&ends, edge.source, false));
        }
        let tasks = &subtree[group];
        ends.roots[group] = tasks
            .iter()
            .copied()
            .filter(|t| !has_upstream.contains(t))
            .collect();
        ends.leaves[group] = tasks
            .iter()
            .copied()
            .filter(|t| !has_downstream.contains(t))
            .collect();
    }
    ends
}

/// The tasks a member stands for: a task itself; a group's roots as a downstream end
/// (`as_target`), its leaves as an upstream end.
fn member_tasks(ends: &Ends, member: Member, as_target: bool) -> Vec<usize> {
    match member {
        Member::Task(task) => vec![task],
        Member::Group(group) if as_target => ends.roots[group].clone(),
        Member::Group(group) => ends.leaves[group].clone(),
    }
}

/// Every task's upstream entries as task ids, each with the node that declared it: its own
/// entries in file order, then those its groups' `upstream` gave it.
fn expand<'n>(
    tree: &Tree<'n>,
    (per_task, by_groups): &Resolved<'n>,
) -> Vec<Vec<(String, &'n Node)>> {
    let mut declared: Vec<Declared<'n>> = per_task
        .iter()
        .flatten()
        .filter_map(|e| match e {
            Entry::Resolved(d) => Some(*d),
            Entry::Unknown(..) => None,
        })
        .collect();
    declared.extend(by_groups.iter().copied());
    let ends = ends_of(tree, &declared);
    let id = |task: usize| tree.tasks[task].task.task_id.clone();
    let mut out: Vec<Vec<(String, &'n Node)>> = per_task
        .iter()
        .map(|entries| {
            entries
                .iter()
                .flat_map(|entry| match entry {
                    Entry::Unknown(name, node) => vec![(name.clone(), *node)],
                    Entry::Resolved(d) => member_tasks(&ends, d.source, false)
                        .into_iter()
                        .map(|s| (id(s), d.node))
                        .collect(),
                })
                .collect()
        })
        .collect();
    for d in by_groups {
        for target in member_tasks(&ends, d.target, true) {
            for source in member_tasks(&ends, d.source, false) {
                out[target].push((id(source), d.node));
            }
        }
    }
    out
}
