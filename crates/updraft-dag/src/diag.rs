//! Collecting located import errors while reading a [`Node`] tree, and typed accessors that
//! report a precise error (and return `None`) when a node has the wrong shape.
//!
//! Every accessor takes the [`Diagnostics`] of the file being read, so one pass over a DAG file
//! reports every problem it has rather than the first one only.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::model::ImportError;
use crate::yaml::{Node, Pos, Value};

/// The import errors found so far in one file.
#[derive(Debug)]
pub(crate) struct Diagnostics<'a> {
    tenant: &'a str,
    fileloc: &'a str,
    errors: Vec<ImportError>,
}

impl<'a> Diagnostics<'a> {
    pub fn new(tenant: &'a str, fileloc: &'a str) -> Self {
        Diagnostics {
            tenant,
            fileloc,
            errors: Vec::new(),
        }
    }

    /// Records an error located at `pos`.
    pub fn at(&mut self, pos: Pos, message: impl Into<String>) {
        let located = pos.line > 0;
        self.errors.push(ImportError {
            tenant: self.tenant.to_owned(),
            filename: self.fileloc.to_owned(),
            line: located.then_some(pos.line),
            column: located.then_some(pos.column),
            message: message.into(),
        });
    }

    /// Records an error about the file as a whole.
    pub fn file(&mut self, message: impl Into<String>) {
        self.at(Pos::default(), message);
    }

    /// How many errors have been recorded; compare before and after reading a part to learn
    /// whether that part was valid.
    pub fn count(&self) -> usize {
        self.errors.len()
    }

    /// The errors, file-level ones first, then in file order.
    pub fn into_errors(mut self) -> Vec<ImportError> {
        self.errors.sort_by_key(|e| (e.line, e.column));
        self.errors
    }
}

/// `"retries"` -> "`retries`".
pub(crate) fn quoted(s: &str) -> String {
    format!("`{s}`")
}

/// How a value is described in "found ..." messages: its kind, plus the value for short
/// scalars.
pub(crate) fn describe(node: &Node) -> String {
    let kind = node.value.kind_name();
    match &node.value {
        Value::Str(s) if s.chars().count() <= 40 => format!("{kind} {s:?}"),
        Value::Int(i) => format!("{kind} ({i})"),
        Value::Float(f) => format!("{kind} ({f})"),
        Value::Bool(b) => format!("{kind} ({b})"),
        _ => kind.to_owned(),
    }
}

/// Reports "`name` must be {expected}, found ..." at `node`.
pub(crate) fn wrong_type(diag: &mut Diagnostics<'_>, node: &Node, name: &str, expected: &str) {
    diag.at(
        node.pos,
        format!(
            "{} must be {expected}, found {}",
            quoted(name),
            describe(node)
        ),
    );
}

/// The Levenshtein edit distance between two short strings.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// The candidate closest to `word`, when one is close enough to be a likely typo.
pub(crate) fn closest<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    let word_lower = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (edit_distance(&word_lower, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= word.chars().count().max(c.chars().count()).div_ceil(3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// " (did you mean `x`?)" or "".
pub(crate) fn did_you_mean<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> String {
    closest(word, candidates)
        .map(|c| format!("; did you mean {}?", quoted(c)))
        .unwrap_or_default()
}

/// The keys a mapping may hold and extra advice for well-known wrong keys.
pub(crate) struct Schema<'s> {
    /// How the mapping is named in messages: "the DAG", "task `load`", "default_args".
    pub what: &'s str,
    pub keys: &'s [&'s str],
    /// Advice for a well-known wrong key, e.g. "use `schedule`" for `schedule_interval`.
    pub hint: fn(&str) -> Option<String>,
}

/// A [`Schema::hint`] that has no advice.
pub(crate) fn no_hint(_: &str) -> Option<String> {
    None
}

/// The entries of a mapping whose keys have been checked against a [`Schema`].
#[derive(Debug, Default)]
pub(crate) struct Fields<'n> {
    entries: Vec<(&'n str, &'n Node, &'n Node)>,
}

impl<'n> Fields<'n> {
    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, _, value)| *value)
    }

    /// The node of the key itself, to point at the key rather than at its value.
    pub fn key_node(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, key_node, _)| *key_node)
    }

    /// The `(key, value)` entries present, in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&'n str, &'n Node)> + '_ {
        self.entries.iter().map(|(k, _, v)| (*k, *v))
    }
}

/// The `(key, value)` entries of a mapping whose keys are strings. Non-string keys and
/// duplicate keys are reported and skipped. `None` (after reporting) when `node` is not a
/// mapping.
pub(crate) fn mapping<'n>(
    diag: &mut Diagnostics<'_>,
    node: &'n Node,
    name: &str,
) -> Option<Vec<(&'n str, &'n Node, &'n Node)>> {
    let Value::Map(entries) = &node.value else {
        wrong_type(diag, node, name, "a mapping");
        return None;
    };
    let mut out: Vec<(&'n str, &'n Node, &'n Node)> = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        let Some(k) = key.as_str() else {
            diag.at(
                key.pos,
                format!(
                    "keys of {} must be strings, found {}",
                    quoted(name),
                    describe(key)
                ),
            );
            continue;
        };
        if let Some((_, first, _)) = out.iter().find(|(existing, _, _)| *existing == k) {
            diag.at(
                key.pos,
                format!(
                    "duplicate key {} in {} (first set at line {})",
                    quoted(k),
                    quoted(name),
                    first.pos.line
                ),
            );
            continue;
        }
        out.push((k, key, value));
    }
    Some(out)
}

/// Checks that `node` is a mapping whose keys all belong to `schema`, reporting unknown keys
/// with a suggestion. Unknown keys are left out of the result.
pub(crate) fn fields<'n>(
    diag: &mut Diagnostics<'_>,
    node: &'n Node,
    schema: &Schema<'_>,
) -> Option<Fields<'n>> {
    let entries = mapping(diag, node, schema.what)?;
    let mut fields = Fields::default();
    for (key, key_node, value) in entries {
        if schema.keys.contains(&key) {
            fields.entries.push((key, key_node, value));
        } else {
            diag.at(key_node.pos, unknown_key_message(key, schema));
        }
    }
    Some(fields)
}

fn unknown_key_message(key: &str, schema: &Schema<'_>) -> String {
    let mut message = format!("unknown key {} in {}", quoted(key), schema.what);
    if let Some(advice) = (schema.hint)(key) {
        message.push_str("; ");
        message.push_str(&advice);
    } else if let Some(suggestion) = closest(key, schema.keys.iter().copied()) {
        message.push_str(&format!("; did you mean {}?", quoted(suggestion)));
    } else {
        message.push_str(&format!(" (valid keys: {})", schema.keys.join(", ")));
    }
    message
}

pub(crate) fn string(diag: &mut Diagnostics<'_>, node: &Node, name: &str) -> Option<String> {
    match &node.value {
        Value::Str(s) => Some(s.clone()),
        _ => {
            wrong_type(diag, node, name, "a string");
            None
        }
    }
}

/// A string that must not be empty or only whitespace.
pub(crate) fn non_empty_string(
    diag: &mut Diagnostics<'_>,
    node: &Node,
    name: &str,
) -> Option<String> {
    let s = string(diag, node, name)?;
    if s.trim().is_empty() {
        diag.at(node.pos, format!("{} must not be empty", quoted(name)));
        return None;
    }
    Some(s)
}

pub(crate) fn boolean(diag: &mut Diagnostics<'_>, node: &Node, name: &str) -> Option<bool> {
    match &node.value {
        Value::Bool(b) => Some(*b),
        _ => {
            wrong_type(diag, node, name, "true or false");
            None
        }
    }
}

/// An integer in `min..=u32::MAX`.
pub(crate) fn count(diag: &mut Diagnostics<'_>, node: &Node, name: &str, min: u32) -> Option<u32> {
    let expected = if min == 0 {
        "a non-negative integer".to_owned()
    } else {
        format!("an integer >= {min}")
    };
    match &node.value {
        Value::Int(i) => match u32::try_from(*i) {
            Ok(v) if v >= min => Some(v),
            _ => {
                wrong_type(diag, node, name, &expected);
                None
            }
        },
        _ => {
            wrong_type(diag, node, name, &expected);
            None
        }
    }
}

pub(crate) fn integer(diag: &mut Diagnostics<'_>, node: &Node, name: &str) -> Option<i64> {
    match &node.value {
        Value::Int(i) => match i64::try_from(*i) {
            Ok(v) => Some(v),
            Err(_) => {
                wrong_type(diag, node, name, "a 64-bit integer");
                None
            }
        },
        _ => {
            wrong_type(diag, node, name, "an integer");
            None
        }
    }
}

/// A list of strings, each with its position. With `allow_single`, a lone string is read as a
/// one-element list.
pub(crate) fn string_list<'n>(
    diag: &mut Diagnostics<'_>,
    node: &'n Node,
    name: &str,
    allow_single: bool,
) -> Option<Vec<(String, &'n Node)>> {
    match &node.value {
        Value::Str(s) if allow_single => Some(vec![(s.clone(), node)]),
        Value::Seq(items) => {
            let mut out = Vec::with_capacity(items.len());
            let mut ok = true;
            for item in items {
                match item.as_str() {
                    Some(s) => out.push((s.to_owned(), item)),
                    None => {
                        wrong_type(diag, item, &format!("each item of {name}"), "a string");
                        ok = false;
                    }
                }
            }
            ok.then_some(out)
        }
        _ => {
            let expected = if allow_single {
                "a string or a list of strings"
            } else {
                "a list of strings"
            };
            wrong_type(diag, node, name, expected);
            None
        }
    }
}

/// An environment mapping. Scalar values (numbers, booleans) are turned into their YAML text.
pub(crate) fn env_map(
    diag: &mut Diagnostics<'_>,
    node: &Node,
    name: &str,
) -> Option<BTreeMap<String, String>> {
    let entries = mapping(diag, node, name)?;
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (key, key_node, value) in entries {
        if key.is_empty() || key.contains(['=', '\0']) {
            diag.at(
                key_node.pos,
                format!(
                    "environment variable name {key:?} in {} is invalid (it must be non-empty and contain no `=`)",
                    quoted(name)
                ),
            );
            ok = false;
            continue;
        }
        let text = match &value.value {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => {
                wrong_type(diag, value, &format!("{name}.{key}"), "a string");
                ok = false;
                continue;
            }
        };
        if text.contains('\0') {
            diag.at(
                value.pos,
                format!("{} contains a NUL byte", quoted(&format!("{name}.{key}"))),
            );
            ok = false;
            continue;
        }
        out.insert(key.to_owned(), text);
    }
    ok.then_some(out)
}

/// Parses a duration: an integer number of seconds, or text such as `30s`, `5m`, `1h`, `1d`,
/// `1h 30m`.
pub(crate) fn parse_duration_text(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if let Ok(seconds) = trimmed.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    humantime::parse_duration(trimmed).map_err(|e| e.to_string())
}

/// A duration (see [`parse_duration_text`]); with `positive`, zero is refused.
pub(crate) fn duration(
    diag: &mut Diagnostics<'_>,
    node: &Node,
    name: &str,
    positive: bool,
) -> Option<Duration> {
    const EXPECTED: &str =
        "a duration such as \"30s\", \"5m\", \"1h\", \"1d\" or a whole number of seconds";
    let parsed = match &node.value {
        Value::Int(i) => u64::try_from(*i)
            .map(Duration::from_secs)
            .map_err(|_| String::new()),
        Value::Str(s) => parse_duration_text(s),
        _ => Err(String::new()),
    };
    match parsed {
        Ok(d) if positive && d.is_zero() => {
            diag.at(
                node.pos,
                format!("{} must be longer than zero", quoted(name)),
            );
            None
        }
        Ok(d) => Some(d),
        Err(reason) if reason.is_empty() => {
            wrong_type(diag, node, name, EXPECTED);
            None
        }
        Err(reason) => {
            diag.at(
                node.pos,
                format!(
                    "{} is not a valid duration ({reason}): expected {EXPECTED}, found {}",
                    quoted(name),
                    describe(node)
                ),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("retrys", "retries"), 2);
        assert_eq!(edit_distance("retry", "retries"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn closest_suggests_only_near_words() {
        let keys = ["retries", "retry_delay", "pool", "task_id"];
        assert_eq!(closest("retrys", keys), Some("retries"));
        assert_eq!(closest("retry", keys), Some("retries"));
        assert_eq!(closest("tsk_id", keys), Some("task_id"));
        assert_eq!(closest("Pool", keys), Some("pool"));
        assert_eq!(closest("banana", keys), None);
        assert_eq!(closest("cwd", ["pool", "env"]), None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_text("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration_text("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration_text("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration_text("1d"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse_duration_text("90"), Ok(Duration::from_secs(90)));
        assert!(parse_duration_text("soon").is_err());
        assert!(parse_duration_text("-5m").is_err());
    }
}
