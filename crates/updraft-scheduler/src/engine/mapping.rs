//! Dynamic task mapping in the loop. A mapped task's placeholder (map index -1) is scheduled
//! by its trigger rule like any instance; this scheduler then resolves the values of its
//! expanded arguments (a literal list, a template rendered for the run, an upstream's XCom),
//! asks the core how many instances that makes (`updraft_core::mapping::expansion`) and
//! records the expansion in one transaction (`Store::expand_task`), or skips the placeholder
//! (nothing to map over) or fails it (too many values, or values that cannot be mapped over,
//! the reason in the scheduler's log and the instance's note). Each mapped try gets its
//! values at launch: kept in memory from the expansion, resolved again after a restart.
//!
//! Runs without mapped tasks pay nothing: the placeholder checks look at an empty map.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use tracing::{info, warn};
use updraft_core::TaskState;
use updraft_core::mapping::{Expansion, arg_indices, expansion, values_to_map};
use updraft_dag::{MapSource, Task};
use updraft_executor::render::{RenderBudget, RenderError, render_off_loop, render_str_within};
use updraft_store::{RunDecision, RunRow, TiKey, TiRow, TiTransition, XComQuery};

use super::Scheduler;
use super::launch::context_for;
use crate::SchedulerError;
use crate::dagcache::CachedDag;

/// A mapped task's arguments as resolved for one run: names and values, in `expand` order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MappedValues {
    names: Vec<String>,
    values: Vec<Vec<Value>>,
}

impl MappedValues {
    fn lengths(&self) -> Vec<usize> {
        self.values.iter().map(Vec::len).collect()
    }

    /// The values map index `map_index` gets, by argument name; `None` out of range.
    fn at(&self, map_index: i32) -> Option<Map<String, Value>> {
        let index = usize::try_from(map_index).ok()?;
        let picks = arg_indices(&self.lengths(), index)?;
        Some(
            self.names
                .iter()
                .zip(&self.values)
                .zip(picks)
                .map(|((name, values), pick)| (name.clone(), values[pick].clone()))
                .collect(),
        )
    }
}

/// Why a mapped task cannot expand, said to the user.
type Unmappable = String;

impl Scheduler {
    /// The placeholders of mapped tasks that `decision` scheduled, to expand.
    pub(super) fn placeholders_scheduled(
        &mut self,
        run_pk: i64,
        decision: &RunDecision,
        dags: &HashMap<String, HashMap<String, Arc<CachedDag>>>,
    ) {
        if self.definitions.traits.mapped.is_empty() {
            return;
        }
        let Some(run) = self.tracked.known.get(&run_pk) else {
            return;
        };
        let Some(cached) = dags.get(&run.dag_id).and_then(|v| v.get(&run.version)) else {
            return;
        };
        for t in &decision.transitions {
            if t.map_index < 0
                && t.new == TaskState::Scheduled
                && cached.task(&t.task_id).is_some_and(Task::is_mapped)
            {
                self.tracked.placeholders.insert(TiKey {
                    run_pk,
                    task_id: t.task_id.clone(),
                    map_index: -1,
                });
            }
        }
    }

    /// Expand every placeholder waiting; true when something was recorded (the runs touched
    /// are then marked to be read whole).
    pub(super) async fn expand_placeholders(
        &mut self,
        now: DateTime<Utc>,
    ) -> Result<bool, SchedulerError> {
        if self.tracked.placeholders.is_empty() {
            return Ok(false);
        }
        let mut waiting: Vec<TiKey> = self.tracked.placeholders.drain().collect();
        waiting.sort_by(|a, b| (a.run_pk, &a.task_id).cmp(&(b.run_pk, &b.task_id)));
        let mut changed = false;
        for (i, key) in waiting.iter().enumerate() {
            match self.expand_one(key, now).await {
                Ok(done) => changed |= done,
                Err(e) => {
                    // Tried again at the next pass.
                    self.tracked
                        .placeholders
                        .extend(waiting[i..].iter().cloned());
                    return Err(e);
                }
            }
        }
        Ok(changed)
    }

    async fn expand_one(
        &mut self,
        key: &TiKey,
        now: DateTime<Utc>,
    ) -> Result<bool, SchedulerError> {
        let run = match self.tracked.known.get(&key.run_pk) {
            Some(run) => run.clone(),
            None => match self.store.run_by_pk(key.run_pk).await? {
                Some(run) => run,
                None => return Ok(false),
            },
        };
        let cached = self
            .definitions
            .cache
            .get(self.store.as_ref(), &run.dag_id, &run.version)
            .await?;
        let Some(task) = cached.dag.task(&key.task_id).filter(|t| t.is_mapped()) else {
            return Ok(false);
        };
        let resolved = self.resolve_mapped(&run, &cached, task).await?;
        let outcome = match &resolved {
            Ok(values) => expansion(&values.lengths(), self.config.max_map_length),
            Err(message) => Expansion::Fail(message.clone()),
        };
        let done = match outcome {
            Expansion::Expand(count) => {
                let count = u32::try_from(count).unwrap_or(u32::MAX);
                let done = self
                    .store
                    .expand_task(key.run_pk, &key.task_id, count)
                    .await?;
                if done {
                    info!(dag_id = %run.dag_id, run_id = %run.run_id, task_id = %key.task_id, count, "mapped task expanded");
                }
                if let (true, Ok(values)) = (done, resolved) {
                    self.tracked
                        .mapped
                        .insert((key.run_pk, key.task_id.clone()), Arc::new(values));
                }
                done
            }
            Expansion::Skip => {
                info!(dag_id = %run.dag_id, run_id = %run.run_id, task_id = %key.task_id, "mapped task has nothing to map over: skipped");
                self.end_placeholder(key, TaskState::Skipped, now).await?
            }
            Expansion::Fail(message) => {
                warn!(dag_id = %run.dag_id, run_id = %run.run_id, task_id = %key.task_id, "mapped task cannot expand: {message}");
                let done = self.end_placeholder(key, TaskState::Failed, now).await?;
                if done {
                    let note = format!("cannot expand: {message}");
                    self.store
                        .set_note(key.run_pk, Some(&key.task_id), Some(&note))
                        .await?;
                }
                done
            }
        };
        if done {
            self.tracked.dirty.insert(key.run_pk);
            self.publish(key.run_pk);
        }
        Ok(done)
    }

    /// The placeholder, still scheduled, ends in `state`.
    async fn end_placeholder(
        &self,
        key: &TiKey,
        state: TaskState,
        now: DateTime<Utc>,
    ) -> Result<bool, SchedulerError> {
        let transition = TiTransition {
            task_id: key.task_id.clone(),
            map_index: -1,
            expected: TaskState::Scheduled,
            new: state,
        };
        let applied = self
            .store
            .apply_transitions(key.run_pk, &[transition], now)
            .await?;
        Ok(applied > 0)
    }

    /// The values of `task`'s expanded arguments in `run`, or why they cannot be mapped over.
    async fn resolve_mapped(
        &self,
        run: &RunRow,
        cached: &CachedDag,
        task: &Task,
    ) -> Result<Result<MappedValues, Unmappable>, SchedulerError> {
        let Some(expand) = &task.expand else {
            return Ok(Err(
                "the task is not mapped in the run's DAG version".to_owned()
            ));
        };
        let mut names = Vec::with_capacity(expand.args.len());
        let mut values = Vec::with_capacity(expand.args.len());
        for arg in &expand.args {
            let found = match &arg.source {
                MapSource::Literal(items) => Ok(items.clone()),
                MapSource::Template(text) => render_arg(run, cached, task, text).await,
                MapSource::XCom { task_id, key } => self.pulled(run.id, task_id, key).await?,
            };
            match found {
                Ok(found) => {
                    names.push(arg.name.clone());
                    values.push(found);
                }
                Err(message) => return Ok(Err(format!("`expand.{}`: {message}", arg.name))),
            }
        }
        Ok(Ok(MappedValues { names, values }))
    }

    /// What an upstream pushed under `key`, to map over: an unmapped task's value (a list's
    /// items, a dict's `[key, value]` pairs); a mapped task's values, one per instance in map
    /// index order (Airflow's lazy sequence of a mapped upstream).
    async fn pulled(
        &self,
        run_pk: i64,
        task_id: &str,
        key: &str,
    ) -> Result<Result<Vec<Value>, Unmappable>, SchedulerError> {
        let (rows, _) = self
            .store
            .xcoms(&XComQuery {
                run_pk,
                task_ids: Some(vec![task_id.to_owned()]),
                key: Some(key.to_owned()),
                ..XComQuery::default()
            })
            .await?;
        if rows.is_empty() {
            return Ok(Err(format!(
                "task `{task_id}` pushed no XCom `{key}` to map over"
            )));
        }
        let parse = |text: &str| {
            serde_json::from_str::<Value>(text)
                .map_err(|e| format!("the XCom `{key}` of task `{task_id}` is not JSON: {e}"))
        };
        Ok(match rows.as_slice() {
            [only] if only.map_index < 0 => parse(&only.value).and_then(values_to_map),
            _ => rows
                .iter()
                .filter(|row| row.map_index >= 0)
                .map(|row| parse(&row.value))
                .collect(),
        })
    }

    /// The values of mapped try `ti` (none for an unmapped one): as its task expanded, from
    /// memory, or resolved again (after a restart).
    pub(super) async fn mapped_args(
        &mut self,
        run: &RunRow,
        cached: &CachedDag,
        ti: &TiRow,
    ) -> Result<Result<Map<String, Value>, Unmappable>, SchedulerError> {
        if ti.map_index < 0 {
            return Ok(Ok(Map::new()));
        }
        let cache_key = (ti.run_pk, ti.task_id.clone());
        let values = match self.tracked.mapped.get(&cache_key) {
            Some(values) => values.clone(),
            None => {
                let Some(task) = cached.dag.task(&ti.task_id) else {
                    return Ok(Err("task is missing from the run's DAG version".to_owned()));
                };
                match self.resolve_mapped(run, cached, task).await? {
                    Ok(values) => {
                        let values = Arc::new(values);
                        self.tracked.mapped.insert(cache_key, values.clone());
                        values
                    }
                    Err(message) => return Ok(Err(message)),
                }
            }
        };
        Ok(values.at(ti.map_index).ok_or_else(|| {
            format!(
                "map index {} is beyond the values its arguments have now",
                ti.map_index
            )
        }))
    }
}

/// A template argument rendered for `run` (off the loop, within the render budget), read as
/// JSON and mapped over.
async fn render_arg(
    run: &RunRow,
    cached: &CachedDag,
    task: &Task,
    text: &str,
) -> Result<Vec<Value>, Unmappable> {
    let context = context_for(run, &cached.dag, &task.task_id, 0)?;
    let source = text.to_owned();
    let task_id = task.task_id.clone();
    let render = move |budget: &RenderBudget| {
        render_str_within(&source, &context, budget).map_err(|message| RenderError {
            task_id,
            field: "expand".to_owned(),
            message,
        })
    };
    let rendered = render_off_loop(&run.tenant, &task.task_id, RenderBudget::default(), render)
        .await
        .map_err(|e| e.message)?;
    let value: Value = serde_json::from_str(rendered.trim()).map_err(|e| {
        format!(
            "the template rendered {}, which is not a JSON list or dict ({e}); `| tojson` renders a value as JSON",
            shorten(&rendered)
        )
    })?;
    values_to_map(value)
}

fn shorten(text: &str) -> String {
    const MAX: usize = 80;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("`{}…`", &text[..cut]),
        None => format!("`{text}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_map_index_gets_its_combination_of_values_by_name() {
        let values = MappedValues {
            names: vec!["a".into(), "b".into()],
            values: vec![
                vec![1.into(), 2.into()],
                vec!["x".into(), "y".into(), "z".into()],
            ],
        };
        let at = |i| values.at(i).map(Value::Object);
        assert_eq!(at(0), Some(serde_json::json!({"a": 1, "b": "x"})));
        assert_eq!(at(4), Some(serde_json::json!({"a": 2, "b": "y"})));
        assert_eq!(at(6), None);
        assert_eq!(at(-1), None);
    }
}
