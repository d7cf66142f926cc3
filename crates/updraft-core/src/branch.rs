//! Branching and short-circuit: which downstream tasks a succeeded task's `return_value`
//! skips (Airflow's `SkipMixin.skip_all_except`, `BaseBranchOperator.do_branch` and
//! `ShortCircuitOperator.execute`).
//!
//! ## Branch (`branch: true`)
//!
//! The value names the direct downstream tasks to follow: a task id, a list of them, or
//! null / `[]` / no value at all for none (a Python callable returning nothing returns
//! `None`). Every other *direct* downstream task is skipped; the tasks further down are left
//! to their trigger rules (an `all_success` task below a skipped one is skipped, a
//! `none_failed_min_one_success` join runs). As in Airflow, a direct downstream task that is
//! also downstream of a followed task is followed too, so a join placed right after the
//! branch and after one of its paths runs (Airflow's "empty branch" case).
//!
//! A value that is not a task id, a list of task ids or null fails the branch task, and so
//! does an id that is not a direct downstream task of the branch. Airflow accepts any task id
//! of the DAG there; naming a task further down or elsewhere only skips the direct downstream
//! tasks leading to it, which is never what was meant, so updraft refuses it with the
//! downstream tasks it could have named.
//!
//! ## Short circuit (`short_circuit: true`)
//!
//! A truthy value (Python's truth: everything but null, false, 0, "", [] and {}; no value at
//! all is Python's `None`, falsy) changes nothing. A falsy one skips every task downstream,
//! however far, when `ignore_downstream_trigger_rules` (Airflow's default), or only the direct
//! downstream tasks otherwise, leaving the rest to their trigger rules. The task itself
//! succeeded either way.
//!
//! The skips apply to instances not yet started (state none or scheduled); the store applies
//! them with the task's success, in one transaction.

use std::collections::BTreeSet;

use serde_json::Value;
use updraft_dag::{Branching, Dag};

use crate::index::DagIndex;

/// Why a branch task's value cannot be followed; the branch task fails with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BranchError {
    /// A followed id that is not a direct downstream task of the branch.
    #[error(
        "'branch_task_ids' must contain only valid task_ids. Invalid tasks found: {}. \
         Task {task_id:?} may follow only its direct downstream tasks: {}",
        list(invalid),
        if downstream.is_empty() { "(none)".to_owned() } else { list(downstream) }
    )]
    NotDownstream {
        task_id: String,
        invalid: Vec<String>,
        downstream: Vec<String>,
    },
    /// A value that is neither null, a task id nor a list of task ids.
    #[error(
        "'branch_task_ids' must be either null, a task id, or a list of task ids, but task \
         {task_id:?} returned {found}"
    )]
    InvalidValue { task_id: String, found: String },
}

fn list(ids: &[String]) -> String {
    ids.iter()
        .map(|id| format!("{id:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The task ids to skip once `task_id` succeeded with `return_value` (`None`: it pushed
/// none), in topological order; empty for a task that neither branches nor short-circuits,
/// or names no task of `dag`. See the [module documentation](self).
pub fn branch_skips(
    dag: &Dag,
    index: &DagIndex,
    task_id: &str,
    return_value: Option<&Value>,
) -> Result<Vec<String>, BranchError> {
    let Some(pos) = index.position(task_id) else {
        return Ok(Vec::new());
    };
    let skipped: Vec<usize> = match dag.tasks[pos].branching {
        None => Vec::new(),
        Some(Branching::Branch) => {
            let followed = followed_ids(task_id, return_value)?;
            branch_skipped(index, pos, &followed)?
        }
        Some(Branching::ShortCircuit {
            ignore_downstream_trigger_rules,
        }) => {
            if is_truthy(return_value) {
                Vec::new()
            } else if ignore_downstream_trigger_rules {
                descendants(index, [pos]).into_iter().collect()
            } else {
                index.downstream(pos).iter().map(|&d| d as usize).collect()
            }
        }
    };
    Ok(in_topological_order(index, skipped))
}

/// Python's truth of a pushed value; no value is `None`, falsy.
pub fn is_truthy(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|x| x != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(items)) => !items.is_empty(),
        Some(Value::Object(members)) => !members.is_empty(),
    }
}

/// The ids a branch's value names, each once.
fn followed_ids(task_id: &str, value: Option<&Value>) -> Result<BTreeSet<String>, BranchError> {
    let invalid = |found: String| BranchError::InvalidValue {
        task_id: task_id.to_owned(),
        found,
    };
    match value {
        None | Some(Value::Null) => Ok(BTreeSet::new()),
        Some(Value::String(id)) => Ok(BTreeSet::from([id.clone()])),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(id) => Ok(id.clone()),
                other => Err(invalid(format!("a list holding {}", shown(other)))),
            })
            .collect(),
        Some(other) => Err(invalid(shown(other))),
    }
}

/// A value as an error message shows it: its JSON, cut short.
fn shown(value: &Value) -> String {
    const MAX: usize = 80;
    let text = value.to_string();
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

/// The direct downstream tasks of the branch at `pos` that are neither followed nor
/// downstream of a followed task.
fn branch_skipped(
    index: &DagIndex,
    pos: usize,
    followed: &BTreeSet<String>,
) -> Result<Vec<usize>, BranchError> {
    let direct: Vec<usize> = index.downstream(pos).iter().map(|&d| d as usize).collect();
    let mut follow = Vec::with_capacity(followed.len());
    let mut invalid = Vec::new();
    for id in followed {
        match index.position(id).filter(|p| direct.contains(p)) {
            Some(p) => follow.push(p),
            None => invalid.push(id.clone()),
        }
    }
    if !invalid.is_empty() {
        return Err(BranchError::NotDownstream {
            task_id: index.task_id(pos).to_owned(),
            invalid,
            downstream: in_topological_order(index, direct),
        });
    }
    let mut kept = descendants(index, follow.iter().copied());
    kept.extend(follow);
    Ok(direct.into_iter().filter(|d| !kept.contains(d)).collect())
}

/// Every task downstream of `from`, however far (`from` excluded unless downstream of another).
fn descendants(index: &DagIndex, from: impl IntoIterator<Item = usize>) -> BTreeSet<usize> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<usize> = from.into_iter().collect();
    while let Some(p) = stack.pop() {
        for &d in index.downstream(p) {
            if seen.insert(d as usize) {
                stack.push(d as usize);
            }
        }
    }
    seen
}

fn in_topological_order(index: &DagIndex, mut positions: Vec<usize>) -> Vec<String> {
    positions.sort_unstable_by_key(|&p| index.topological_rank(p));
    positions.dedup();
    positions
        .into_iter()
        .map(|p| index.task_id(p).to_owned())
        .collect()
}
