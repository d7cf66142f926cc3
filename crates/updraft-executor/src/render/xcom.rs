//! Airflow's `ti.xcom_pull(...)` (also `task_instance.xcom_pull`) in templates.
//!
//! The values come from [`TemplateXComs`], the run's XComs read before rendering for the
//! task ids [`xcom_references`] finds in the templates: `task_ids` written literally (a
//! string or a list of strings) names what to read; any other expression (`task_ids=params.t`)
//! reads every XCom of the run.
//!
//! `xcom_pull(task_ids='a')` is `a`'s `return_value`; `key='k'` another key; a list of task
//! ids gives a list, one value per task. A value never pushed is `none` (Airflow's `None`),
//! or `default=`'s value. `task_ids` is required, as in Airflow 3; `dag_id`,
//! `include_prior_dates`, `run_id` and map indexes other than -1 are not supported and say so.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};

use minijinja::value::{Kwargs, Object, ObjectRepr, Value};
use minijinja::{Error, ErrorKind, State};
use regex::Regex;
use updraft_dag::{Dag, Task};

use super::json_to_value;
use super::secrets::for_each_template;

/// The run's XComs a try's templates may pull: task id → key → value.
pub type TemplateXComs = BTreeMap<String, BTreeMap<String, serde_json::Value>>;

/// Airflow's default key.
const RETURN_VALUE: &str = "return_value";

/// Which XComs a task's templates may pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XComReferences {
    /// Only these tasks'.
    Tasks(BTreeSet<String>),
    /// Every task's: some `task_ids` is not written literally.
    All,
}

/// What the templates of `task` (and the DAG's `env`) pull; `None` when they never call
/// `xcom_pull`.
pub fn xcom_references(dag: &Dag, task: &Task) -> Option<XComReferences> {
    let mut found: Option<XComReferences> = None;
    for_each_template(dag, task, |source| {
        for args in call_arguments(source) {
            let named = literal_task_ids(args);
            found = Some(match (found.take(), named) {
                (Some(XComReferences::All), _) | (_, None) => XComReferences::All,
                (Some(XComReferences::Tasks(mut all)), Some(ids)) => {
                    all.extend(ids);
                    XComReferences::Tasks(all)
                }
                (None, Some(ids)) => XComReferences::Tasks(ids),
            });
        }
    });
    found
}

/// The argument text of every `xcom_pull(...)` call in `source` (up to the first `)`).
fn call_arguments(source: &str) -> impl Iterator<Item = &str> {
    static CALL: OnceLock<Regex> = OnceLock::new();
    let call =
        CALL.get_or_init(|| Regex::new(r"\bxcom_pull\s*\(([^)]*)").expect("a valid pattern"));
    call.captures_iter(source)
        .filter_map(|c| c.get(1).map(|m| m.as_str()))
}

/// The task ids a call's arguments name literally; `None` when `task_ids` is an expression.
fn literal_task_ids(args: &str) -> Option<BTreeSet<String>> {
    static KEYWORD: OnceLock<Regex> = OnceLock::new();
    static LITERAL: OnceLock<Regex> = OnceLock::new();
    let keyword =
        KEYWORD.get_or_init(|| Regex::new(r"\btask_ids\s*=\s*").expect("a valid pattern"));
    let literal = LITERAL
        .get_or_init(|| Regex::new(r#"^\s*(?:'([^']*)'|"([^"]*)")\s*"#).expect("a valid pattern"));
    let value = match keyword.find(args) {
        Some(m) => &args[m.end()..],
        // The first positional argument, unless the call starts with a keyword.
        None if Regex::new(r"^\s*[A-Za-z_]+\s*=").is_ok_and(|r| r.is_match(args)) => {
            return Some(BTreeSet::new());
        }
        None => args,
    }
    .trim_start();
    let mut ids = BTreeSet::new();
    if let Some(list) = value.strip_prefix('[') {
        let mut rest = list;
        loop {
            let Some(c) = literal.captures(rest) else {
                break;
            };
            let id = c.get(1).or_else(|| c.get(2)).map_or("", |m| m.as_str());
            ids.insert(id.to_owned());
            rest = rest[c.get(0).map_or(0, |m| m.end())..].trim_start();
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
        return rest.trim_start().starts_with(']').then_some(ids);
    }
    let c = literal.captures(value)?;
    ids.insert(
        c.get(1)
            .or_else(|| c.get(2))
            .map_or("", |m| m.as_str())
            .to_owned(),
    );
    Some(ids)
}

/// `ti` / `task_instance`: its fields, and `xcom_pull`.
#[derive(Debug)]
pub(super) struct TaskInstance {
    pub fields: Value,
    pub xcoms: Arc<TemplateXComs>,
}

impl Object for TaskInstance {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.fields.get_item(key).ok().filter(|v| !v.is_undefined())
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        if method != "xcom_pull" {
            return Err(Error::from(ErrorKind::UnknownMethod));
        }
        self.xcom_pull(args)
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let id = |name: &str| {
            self.fields
                .get_attr(name)
                .ok()
                .map(|v| v.to_string())
                .unwrap_or_default()
        };
        write!(
            f,
            "<TaskInstance: {}.{} {} [running]>",
            id("dag_id"),
            id("task_id"),
            id("run_id")
        )
    }
}

fn usage(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, message.into())
}

impl TaskInstance {
    fn xcom_pull(&self, args: &[Value]) -> Result<Value, Error> {
        let (positional, kwargs) = match args.split_last() {
            Some((last, rest)) if last.is_kwargs() => (rest, Some(Kwargs::try_from(last.clone())?)),
            _ => (args, None),
        };
        let mut task_ids = match positional {
            [] => None,
            [task_ids] => Some(task_ids.clone()),
            _ => {
                return Err(usage(
                    "`xcom_pull` takes `task_ids` as its only positional argument; give `key=` by name",
                ));
            }
        };
        let mut key = RETURN_VALUE.to_owned();
        let mut default = Value::from(());
        if let Some(kwargs) = kwargs {
            for unsupported in ["dag_id", "include_prior_dates", "run_id"] {
                if kwargs.has(unsupported) {
                    return Err(usage(format!(
                        "`xcom_pull` pulls from this run only: `{unsupported}` is not supported"
                    )));
                }
            }
            if kwargs.has("task_ids") {
                task_ids = Some(kwargs.get::<Value>("task_ids")?);
            }
            if kwargs.has("key") {
                key = kwargs.get::<String>("key")?;
            }
            if kwargs.has("default") {
                default = kwargs.get::<Value>("default")?;
            }
            if kwargs.has("map_indexes") {
                let index = kwargs.get::<Value>("map_indexes")?;
                if !(index.is_none() || index.as_i64() == Some(-1)) {
                    return Err(usage(
                        "`xcom_pull`: tasks are not mapped, `map_indexes` can only be -1",
                    ));
                }
            }
            kwargs.assert_all_used()?;
        }
        let Some(task_ids) = task_ids.filter(|t| !t.is_none() && !t.is_undefined()) else {
            return Err(usage(
                "`xcom_pull` needs `task_ids` (as in Airflow 3): `ti.xcom_pull(task_ids='extract')`",
            ));
        };
        let one = |task_id: &str| {
            self.xcoms
                .get(task_id)
                .and_then(|keys| keys.get(&key))
                .map_or_else(|| default.clone(), json_to_value)
        };
        if let Some(task_id) = task_ids.as_str() {
            return Ok(one(task_id));
        }
        let ids = task_ids.try_iter().map_err(|_| {
            usage("`xcom_pull`: `task_ids` must be a task id or a list of task ids")
        })?;
        let mut values = Vec::new();
        for id in ids {
            let id = id
                .as_str()
                .ok_or_else(|| usage("`xcom_pull`: every task id must be a string"))?
                .to_owned();
            values.push(one(&id));
        }
        Ok(Value::from(values))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[&str]) -> Option<BTreeSet<String>> {
        Some(list.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn literal_task_ids_are_read_and_expressions_are_not() {
        assert_eq!(literal_task_ids("task_ids='a'"), ids(&["a"]));
        assert_eq!(literal_task_ids(" 'a', key='k'"), ids(&["a"]));
        assert_eq!(literal_task_ids("key='k', task_ids=\"b\""), ids(&["b"]));
        assert_eq!(literal_task_ids("task_ids=['a', \"b\"]"), ids(&["a", "b"]));
        assert_eq!(literal_task_ids("task_ids=params.t"), None);
        assert_eq!(literal_task_ids("task_ids=['a', params.t]"), None);
        assert_eq!(literal_task_ids("key='k'"), ids(&[]));
    }
}
