//! DAG params: reading their specs from a DAG file and resolving a run's values.
//!
//! A param is either a plain value (its default) or a spec mapping with `default`, `type`,
//! `enum`, `minimum`, `maximum` and `description`, the subset of JSON Schema Airflow's `Param`
//! is used with. [`resolve_params`] merges the defaults with a triggered run's `conf`.

use serde_json::{Map, Number, Value as Json};

use crate::diag::{self, Diagnostics, Schema, describe, quoted};
use crate::model::{Dag, Param, ParamType};
use crate::yaml::{Node, Pos, Value};

/// Keys of a param spec. A mapping holding any of them is read as a spec, any other mapping
/// is the default value itself.
const SPEC_KEYS: [&str; 6] = [
    "default",
    "type",
    "enum",
    "minimum",
    "maximum",
    "description",
];

const TYPE_NAMES: [(&str, ParamType); 7] = [
    ("string", ParamType::String),
    ("integer", ParamType::Integer),
    ("number", ParamType::Number),
    ("boolean", ParamType::Boolean),
    ("array", ParamType::Array),
    ("object", ParamType::Object),
    ("null", ParamType::Null),
];

/// Why a run's params could not be resolved.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParamError {
    #[error("param `{name}` is required: it has no default and the run's conf does not set it")]
    Missing { name: String },
    #[error("param `{name}` has an invalid value {value}: {reason}")]
    Invalid {
        name: String,
        value: Json,
        reason: String,
    },
}

/// The params of a run: every declared param, taking its value from `conf` when `conf` has
/// the key and from its default otherwise, each checked against its spec. Keys of `conf` that
/// are not declared params are left out (they stay available in the run's conf).
pub fn resolve_params(
    dag: &Dag,
    conf: &Map<String, Json>,
) -> Result<Map<String, Json>, ParamError> {
    let mut resolved = Map::new();
    for (name, param) in &dag.params {
        let value = conf
            .get(name)
            .or(param.default.as_ref())
            .ok_or_else(|| ParamError::Missing { name: name.clone() })?;
        check_value(param, value).map_err(|reason| ParamError::Invalid {
            name: name.clone(),
            value: value.clone(),
            reason,
        })?;
        resolved.insert(name.clone(), value.clone());
    }
    Ok(resolved)
}

/// Checks a value against a param's type, enum and bounds.
pub fn check_value(param: &Param, value: &Json) -> Result<(), String> {
    if let Some(kind) = param.kind
        && !type_matches(kind, value)
    {
        return Err(format!(
            "expected {}, got {}",
            type_name(kind),
            json_kind(value)
        ));
    }
    if let Some(allowed) = &param.allowed
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(Json::to_string).collect();
        return Err(format!("must be one of [{}]", list.join(", ")));
    }
    if let Some(n) = value.as_f64() {
        if let Some(min) = param.minimum
            && n < min
        {
            return Err(format!("must be >= {min}"));
        }
        if let Some(max) = param.maximum
            && n > max
        {
            return Err(format!("must be <= {max}"));
        }
    }
    Ok(())
}

fn type_matches(kind: ParamType, value: &Json) -> bool {
    match kind {
        ParamType::String => value.is_string(),
        ParamType::Integer => value.is_i64() || value.is_u64(),
        ParamType::Number => value.is_number(),
        ParamType::Boolean => value.is_boolean(),
        ParamType::Array => value.is_array(),
        ParamType::Object => value.is_object(),
        ParamType::Null => value.is_null(),
    }
}

fn type_name(kind: ParamType) -> &'static str {
    TYPE_NAMES
        .iter()
        .find(|(_, k)| *k == kind)
        .map_or("?", |(name, _)| name)
}

fn json_kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(n) if n.is_f64() => "a number",
        Json::Number(_) => "an integer",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// Converts a YAML node into JSON. Mapping keys must be strings and floats finite.
pub(crate) fn to_json(diags: &mut Diagnostics<'_>, node: &Node, name: &str) -> Option<Json> {
    Some(match &node.value {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => match (i64::try_from(*i), u64::try_from(*i)) {
            (Ok(v), _) => Json::from(v),
            (_, Ok(v)) => Json::from(v),
            _ => {
                diags.at(
                    node.pos,
                    format!("{}: integer {i} is out of range", quoted(name)),
                );
                return None;
            }
        },
        Value::Float(f) => match Number::from_f64(*f) {
            Some(n) => Json::Number(n),
            None => {
                diags.at(
                    node.pos,
                    format!("{}: {f} is not a finite number", quoted(name)),
                );
                return None;
            }
        },
        Value::Str(s) => Json::String(s.clone()),
        Value::Seq(items) => {
            let items: Option<Vec<Json>> = items.iter().map(|i| to_json(diags, i, name)).collect();
            Json::Array(items?)
        }
        Value::Map(_) => {
            let entries = diag::mapping(diags, node, name)?;
            let mut object = Map::new();
            for (key, _, value) in entries {
                object.insert(key.to_owned(), to_json(diags, value, name)?);
            }
            Json::Object(object)
        }
    })
}

fn is_spec(node: &Node) -> bool {
    match &node.value {
        Value::Map(entries) => entries
            .iter()
            .any(|(k, _)| k.as_str().is_some_and(|k| SPEC_KEYS.contains(&k))),
        _ => false,
    }
}

/// Reads one param: a plain default value or a spec mapping.
pub(crate) fn param(diags: &mut Diagnostics<'_>, name: &str, node: &Node) -> Option<Param> {
    let label = format!("params.{name}");
    if !is_spec(node) {
        return Some(Param {
            default: Some(to_json(diags, node, &label)?),
            ..Param::default()
        });
    }
    let what = format!("param {}", quoted(name));
    let schema = Schema {
        what: &what,
        keys: &SPEC_KEYS,
        hint: diag::no_hint,
    };
    let errors_before = diags.count();
    let fields = diag::fields(diags, node, &schema)?;
    let mut spec = Param::default();
    let mut ok = true;
    for (key, value) in fields.iter() {
        let field = format!("{label}.{key}");
        let read = match key {
            "default" => to_json(diags, value, &field).map(|v| spec.default = Some(v)),
            "type" => param_type(diags, value, &field).map(|t| spec.kind = Some(t)),
            "enum" => enum_values(diags, value, &field).map(|e| spec.allowed = Some(e)),
            "minimum" => number(diags, value, &field).map(|n| spec.minimum = Some(n)),
            "maximum" => number(diags, value, &field).map(|n| spec.maximum = Some(n)),
            _ => diag::string(diags, value, &field).map(|d| spec.description = Some(d)),
        };
        ok &= read.is_some();
    }
    if !ok || diags.count() > errors_before {
        return None;
    }
    let pos_of = |key: &str| fields.get(key).map_or(node.pos, |n| n.pos);
    check_spec(diags, &pos_of, &what, &spec).then_some(spec)
}

fn param_type(diags: &mut Diagnostics<'_>, node: &Node, name: &str) -> Option<ParamType> {
    let text = diag::string(diags, node, name)?;
    match TYPE_NAMES.iter().find(|(n, _)| *n == text) {
        Some((_, kind)) => Some(*kind),
        None => {
            let names: Vec<&str> = TYPE_NAMES.iter().map(|(n, _)| *n).collect();
            let hint = diag::did_you_mean(&text, names.iter().copied());
            diags.at(
                node.pos,
                format!(
                    "unknown param type {}{hint} (one of: {})",
                    quoted(&text),
                    names.join(", ")
                ),
            );
            None
        }
    }
}

fn enum_values(diags: &mut Diagnostics<'_>, node: &Node, name: &str) -> Option<Vec<Json>> {
    let Value::Seq(items) = &node.value else {
        diag::wrong_type(diags, node, name, "a list of allowed values");
        return None;
    };
    if items.is_empty() {
        diags.at(
            node.pos,
            format!("{} must list at least one value", quoted(name)),
        );
        return None;
    }
    items.iter().map(|i| to_json(diags, i, name)).collect()
}

fn number(diags: &mut Diagnostics<'_>, node: &Node, name: &str) -> Option<f64> {
    match &node.value {
        // Bounds beyond 2^53 lose precision as f64; that is what JSON Schema does too.
        #[allow(clippy::cast_precision_loss)]
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) if f.is_finite() => Some(*f),
        _ => {
            diag::wrong_type(diags, node, name, "a number");
            None
        }
    }
}

/// Checks the spec is self-consistent: bounds fit the type, enum values and the default
/// satisfy the spec.
fn check_spec(
    diags: &mut Diagnostics<'_>,
    pos_of: &dyn Fn(&str) -> Pos,
    what: &str,
    spec: &Param,
) -> bool {
    let numeric = matches!(
        spec.kind,
        None | Some(ParamType::Integer | ParamType::Number)
    );
    if (spec.minimum.is_some() || spec.maximum.is_some()) && !numeric {
        let key = if spec.minimum.is_some() {
            "minimum"
        } else {
            "maximum"
        };
        diags.at(
            pos_of(key),
            format!("{what}: `minimum`/`maximum` apply to integer and number params only"),
        );
        return false;
    }
    if let (Some(min), Some(max)) = (spec.minimum, spec.maximum)
        && min > max
    {
        diags.at(
            pos_of("minimum"),
            format!("{what}: `minimum` ({min}) is greater than `maximum` ({max})"),
        );
        return false;
    }
    if let (Some(kind), Some(allowed)) = (spec.kind, &spec.allowed)
        && let Some(bad) = allowed.iter().find(|v| !type_matches(kind, v))
    {
        diags.at(
            pos_of("enum"),
            format!("{what}: enum value {bad} is not {}", type_article(kind)),
        );
        return false;
    }
    if let Some(default) = &spec.default
        && let Err(reason) = check_value(spec, default)
    {
        diags.at(
            pos_of("default"),
            format!("{what}: default {default} does not fit its own spec: {reason}"),
        );
        return false;
    }
    true
}

fn type_article(kind: ParamType) -> String {
    match kind {
        ParamType::Integer | ParamType::Array | ParamType::Object => {
            format!("an {}", type_name(kind))
        }
        _ => format!("a {}", type_name(kind)),
    }
}

/// Reads the `params:` mapping.
pub(crate) fn params(
    diags: &mut Diagnostics<'_>,
    node: &Node,
) -> Option<std::collections::BTreeMap<String, Param>> {
    let entries = diag::mapping(diags, node, "params")?;
    let mut out = std::collections::BTreeMap::new();
    let mut ok = true;
    for (name, key_node, value) in entries {
        if name.trim().is_empty() {
            diags.at(
                key_node.pos,
                format!(
                    "param names must not be empty, found {}",
                    describe(key_node)
                ),
            );
            ok = false;
            continue;
        }
        match param(diags, name, value) {
            Some(p) => {
                out.insert(name.to_owned(), p);
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(value: Json) -> Param {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn check_value_applies_type_enum_and_bounds() {
        let limit = spec(json!({"default": 10, "type": "integer", "minimum": 1, "maximum": 100}));
        assert_eq!(check_value(&limit, &json!(5)), Ok(()));
        assert_eq!(check_value(&limit, &json!(0)), Err("must be >= 1".into()));
        assert_eq!(
            check_value(&limit, &json!(101)),
            Err("must be <= 100".into())
        );
        assert_eq!(
            check_value(&limit, &json!("5")),
            Err("expected integer, got a string".into())
        );
        assert_eq!(
            check_value(&limit, &json!(5.5)),
            Err("expected integer, got a number".into())
        );
        let mode = spec(json!({"enum": ["fast", "slow"]}));
        assert_eq!(check_value(&mode, &json!("slow")), Ok(()));
        assert_eq!(
            check_value(&mode, &json!("medium")),
            Err("must be one of [\"fast\", \"slow\"]".into())
        );
    }
}
