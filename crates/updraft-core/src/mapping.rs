//! Dynamic task mapping (Airflow's `expand`): what a mapped task's scheduled placeholder
//! becomes once the lengths of its expanded arguments are known, and which values each map
//! index gets.
//!
//! The caller resolves each argument's values (a literal list, a rendered template, an
//! upstream's XCom: I/O this module never does) with [`values_to_map`], then asks
//! [`expansion`]: the product of the lengths (Airflow's cross product of `expand(a=..., b=...)`)
//! instances, skipped when it is zero (Airflow: a task mapped over nothing is skipped), failed
//! when it exceeds `max_map_length` (Airflow's `[core] max_map_length`, 1024 by default).
//! [`arg_indices`] then says which value of each argument map index `i` gets: the last
//! argument varies fastest, as in Airflow (`_find_index_for_this_field`) and
//! `itertools.product`.

use serde_json::Value;

/// Airflow's default `[core] max_map_length`.
pub const DEFAULT_MAX_MAP_LENGTH: usize = 1024;

/// What a mapped task's placeholder becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expansion {
    /// This many instances, map indexes `0..n`.
    Expand(usize),
    /// Nothing to map over: the task is skipped.
    Skip,
    /// The task fails, for this reason.
    Fail(String),
}

/// The expansion of a task whose arguments have `lengths` values each.
pub fn expansion(lengths: &[usize], max_map_length: usize) -> Expansion {
    let mut total: usize = 1;
    for &len in lengths {
        match total.checked_mul(len) {
            Some(t) => total = t,
            None => return too_many(None, max_map_length),
        }
    }
    if lengths.is_empty() || total == 0 {
        Expansion::Skip
    } else if total > max_map_length {
        too_many(Some(total), max_map_length)
    } else {
        Expansion::Expand(total)
    }
}

fn too_many(total: Option<usize>, max: usize) -> Expansion {
    let count = total.map_or_else(|| "more".to_owned(), |t| t.to_string());
    Expansion::Fail(format!(
        "the task would expand to {count} mapped instances, more than [core] max_map_length ({max})"
    ))
}

/// For map index `map_index` of arguments with `lengths` values each, the index of each
/// argument's value (the last argument varies fastest). `None` when `map_index` is out of
/// range.
pub fn arg_indices(lengths: &[usize], map_index: usize) -> Option<Vec<usize>> {
    let mut rest = map_index;
    let mut out = vec![0; lengths.len()];
    for (slot, &len) in out.iter_mut().zip(lengths).rev() {
        if len == 0 {
            return None;
        }
        *slot = rest % len;
        rest /= len;
    }
    (rest == 0).then_some(out)
}

/// The values a JSON value maps over: a list's items, or an object's entries as
/// `[key, value]` pairs (Airflow maps a dict into `(key, value)` tuples). Anything else
/// cannot be mapped over: the error names its kind.
pub fn values_to_map(value: Value) -> Result<Vec<Value>, String> {
    match value {
        Value::Array(items) => Ok(items),
        Value::Object(entries) => Ok(entries
            .into_iter()
            .map(|(k, v)| Value::Array(vec![Value::String(k), v]))
            .collect()),
        other => Err(format!(
            "expected a list or a dict to map over, got {}",
            kind(&other)
        )),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null (nothing was pushed?)",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a dict",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_argument_varies_fastest() {
        let lengths = [2, 3];
        let all: Vec<Vec<usize>> = (0..6).map(|i| arg_indices(&lengths, i).unwrap()).collect();
        assert_eq!(
            all,
            [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]].map(|a| a.to_vec())
        );
        assert_eq!(arg_indices(&lengths, 6), None);
        assert_eq!(arg_indices(&[0], 0), None);
    }

    #[test]
    fn dicts_map_into_key_value_pairs_and_scalars_do_not_map() {
        let pairs = values_to_map(serde_json::json!({"a": 1, "b": [2]})).unwrap();
        assert_eq!(
            pairs,
            [serde_json::json!(["a", 1]), serde_json::json!(["b", [2]])]
        );
        assert!(values_to_map(Value::Null).unwrap_err().contains("got null"));
        assert!(
            values_to_map(serde_json::json!("x"))
                .unwrap_err()
                .contains("a string")
        );
    }
}
