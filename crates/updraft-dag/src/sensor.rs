//! Reading the `sensor:` task kind.
//!
//! A sensor is its timing (Airflow's `poke_interval`, `timeout`, `exponential_backoff`,
//! `max_wait`, `soft_fail`; durations as `retry_delay`) and exactly one check: `path`,
//! `time_delta`, `date_time`, `external_task`, `http`, `sql`, `bash` or `command`. Sensors
//! always run in Airflow's `mode="reschedule"`: `mode: reschedule` is accepted, `poke` is
//! refused with the reason.

use std::collections::BTreeMap;

use crate::diag::{self, Diagnostics, Schema, quoted};
use crate::model::{
    ExternalTaskCheck, HttpCheck, SensorCheck, SensorTask, SensorTiming, SqlCheck, TaskKind,
};
use crate::parse::check_identifier;
use crate::task::check_conn_id;
use crate::yaml::{Node, Value};

const TIMING_KEYS: [&str; 6] = [
    "poke_interval",
    "timeout",
    "exponential_backoff",
    "max_wait",
    "soft_fail",
    "mode",
];

/// The checks, one of which a sensor has.
const CHECK_KEYS: [&str; 8] = [
    "path",
    "time_delta",
    "date_time",
    "external_task",
    "http",
    "sql",
    "bash",
    "command",
];

const EXTERNAL_KEYS: [&str; 5] = [
    "external_dag_id",
    "external_task_id",
    "allowed_states",
    "failed_states",
    "execution_delta",
];

const HTTP_KEYS: [&str; 7] = [
    "connection",
    "url",
    "endpoint",
    "method",
    "expected_status",
    "headers",
    "body",
];

const SQL_KEYS: [&str; 2] = ["connection", "query"];

/// States a task instance or run can be in, for `allowed_states` / `failed_states`.
const STATES: [&str; 11] = [
    "none",
    "scheduled",
    "queued",
    "running",
    "success",
    "failed",
    "skipped",
    "upstream_failed",
    "up_for_retry",
    "up_for_reschedule",
    "removed",
];

const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

fn sensor_keys() -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = TIMING_KEYS.to_vec();
    keys.extend(CHECK_KEYS);
    keys
}

fn sensor_hint(key: &str) -> Option<String> {
    let advice = match key {
        "filepath" | "file" | "fs_conn_id" => "use `path` (a file or glob pattern)",
        "delta" => "use `time_delta`",
        "target_time" => "use `date_time`",
        "http_conn_id" | "endpoint" | "response_check" => {
            "an HTTP check is `http:` with `connection` (or `url`), `endpoint`, `expected_status`"
        }
        "conn_id" | "query" => "a SQL check is `sql:` with `connection` and `query`",
        "external_dag_id" | "external_task_id" => {
            "these go inside `external_task:` (with `allowed_states`, `failed_states`)"
        }
        "bash_command" => "use `bash`",
        "execution_timeout" => "`execution_timeout` is a task key: it bounds each poke",
        _ => return None,
    };
    Some(advice.to_owned())
}

/// Reads the value of a task's `sensor:` key.
pub(crate) fn sensor_kind(diags: &mut Diagnostics<'_>, node: &Node) -> Option<TaskKind> {
    let keys = sensor_keys();
    let schema = Schema {
        what: "sensor",
        keys: &keys,
        hint: sensor_hint,
    };
    let before = diags.count();
    let fields = diag::fields(diags, node, &schema)?;
    let timing = timing(diags, &fields);
    let check = check(diags, node, &fields);
    let sensor = SensorTask {
        timing: timing?,
        check: check?,
    };
    (diags.count() == before).then_some(TaskKind::Sensor(Box::new(sensor)))
}

fn timing(diags: &mut Diagnostics<'_>, fields: &diag::Fields<'_>) -> Option<SensorTiming> {
    let mut timing = SensorTiming::default();
    let mut ok = true;
    for (key, value) in fields.iter() {
        let read = match key {
            "poke_interval" => diag::duration(diags, value, "sensor.poke_interval", true)
                .map(|d| timing.poke_interval = d),
            "timeout" => {
                diag::duration(diags, value, "sensor.timeout", false).map(|d| timing.timeout = d)
            }
            "exponential_backoff" => diag::boolean(diags, value, "sensor.exponential_backoff")
                .map(|b| timing.exponential_backoff = b),
            "max_wait" => match value.value {
                Value::Null => Some(()),
                _ => diag::duration(diags, value, "sensor.max_wait", true)
                    .map(|d| timing.max_wait = Some(d)),
            },
            "soft_fail" => {
                diag::boolean(diags, value, "sensor.soft_fail").map(|b| timing.soft_fail = b)
            }
            "mode" => mode(diags, value),
            _ => Some(()),
        };
        ok &= read.is_some();
    }
    ok.then_some(timing)
}

fn mode(diags: &mut Diagnostics<'_>, node: &Node) -> Option<()> {
    let mode = diag::string(diags, node, "sensor.mode")?;
    match mode.as_str() {
        "reschedule" => Some(()),
        "poke" => {
            diags.at(
                node.pos,
                "`sensor.mode` \"poke\" is not supported: updraft's sensors always reschedule \
                 (no slot or process is held between pokes); remove `mode`",
            );
            None
        }
        other => {
            diags.at(
                node.pos,
                format!(
                    "unknown `sensor.mode` {}: sensors always run as \"reschedule\"",
                    quoted(other)
                ),
            );
            None
        }
    }
}

fn check(
    diags: &mut Diagnostics<'_>,
    node: &Node,
    fields: &diag::Fields<'_>,
) -> Option<SensorCheck> {
    let present: Vec<&str> = CHECK_KEYS
        .iter()
        .copied()
        .filter(|key| fields.get(key).is_some())
        .collect();
    let names: Vec<String> = CHECK_KEYS.iter().map(|k| quoted(k)).collect();
    match present.as_slice() {
        [] => {
            diags.at(
                node.pos,
                format!(
                    "`sensor` does not say what to wait for: set exactly one of {}",
                    names.join(", ")
                ),
            );
            None
        }
        [key] => read_check(diags, key, fields.get(key)?),
        [first, second, ..] => {
            let pos = fields.key_node(second).map_or(node.pos, |k| k.pos);
            diags.at(
                pos,
                format!(
                    "`sensor` sets both {} and {}; a sensor has exactly one of {}",
                    quoted(first),
                    quoted(second),
                    names.join(", ")
                ),
            );
            None
        }
    }
}

fn read_check(diags: &mut Diagnostics<'_>, key: &str, value: &Node) -> Option<SensorCheck> {
    match key {
        "path" => diag::non_empty_string(diags, value, "sensor.path").map(SensorCheck::Path),
        "time_delta" => {
            diag::duration(diags, value, "sensor.time_delta", false).map(SensorCheck::TimeDelta)
        }
        "date_time" => date_time(diags, value),
        "external_task" => external_task(diags, value).map(SensorCheck::ExternalTask),
        "http" => http(diags, value).map(SensorCheck::Http),
        "sql" => sql(diags, value).map(SensorCheck::Sql),
        "bash" => diag::non_empty_string(diags, value, "sensor.bash").map(SensorCheck::Bash),
        _ => command(diags, value),
    }
}

/// A template, or a literal date-time checked now.
fn date_time(diags: &mut Diagnostics<'_>, node: &Node) -> Option<SensorCheck> {
    let text = diag::non_empty_string(diags, node, "sensor.date_time")?;
    let templated = text.contains("{{") || text.contains("{%");
    if !templated && let Err(problem) = crate::parse_datetime(&text, chrono_tz::UTC) {
        diags.at(node.pos, format!("`sensor.date_time`: {problem}"));
        return None;
    }
    Some(SensorCheck::DateTime(text))
}

fn command(diags: &mut Diagnostics<'_>, node: &Node) -> Option<SensorCheck> {
    if let Value::Str(_) = node.value {
        diag::wrong_type(
            diags,
            node,
            "sensor.command",
            "a list of arguments such as [\"test\", \"-s\", \"/data/ready\"] (use `bash:` for a script)",
        );
        return None;
    }
    let argv = diag::string_list(diags, node, "sensor.command", false)?;
    if argv.is_empty() {
        diags.at(
            node.pos,
            "`sensor.command` must name a program to run; it is empty",
        );
        return None;
    }
    Some(SensorCheck::Command(
        argv.into_iter().map(|(arg, _)| arg).collect(),
    ))
}

fn external_task(diags: &mut Diagnostics<'_>, node: &Node) -> Option<ExternalTaskCheck> {
    let schema = Schema {
        what: "sensor.external_task",
        keys: &EXTERNAL_KEYS,
        hint: |key| match key {
            "dag_id" => Some("use `external_dag_id`".to_owned()),
            "task_id" => Some("use `external_task_id`".to_owned()),
            "execution_date_fn" => {
                Some("use `execution_delta` (the other run is this much earlier)".to_owned())
            }
            _ => None,
        },
    };
    let before = diags.count();
    let fields = diag::fields(diags, node, &schema)?;
    let dag_id = match fields.get("external_dag_id") {
        Some(value) => identifier(
            diags,
            value,
            "dag_id",
            "sensor.external_task.external_dag_id",
        ),
        None => {
            diags.at(
                node.pos,
                "`sensor.external_task` needs an `external_dag_id`",
            );
            None
        }
    };
    let task_id = fields
        .get("external_task_id")
        .and_then(|v| identifier(diags, v, "task_id", "sensor.external_task.external_task_id"));
    let (allowed, failed) = allowed_and_failed(
        diags,
        &fields,
        "sensor.external_task",
        &STATES,
        ("success", None),
    );
    let delta = fields
        .get("execution_delta")
        .and_then(|v| diag::duration(diags, v, "sensor.external_task.execution_delta", false));
    if diags.count() > before {
        return None;
    }
    Some(ExternalTaskCheck {
        external_dag_id: dag_id?,
        external_task_id: task_id,
        allowed_states: allowed?,
        failed_states: failed?,
        execution_delta: delta,
    })
}

fn identifier(diags: &mut Diagnostics<'_>, node: &Node, kind: &str, name: &str) -> Option<String> {
    let id = diag::string(diags, node, name)?;
    match check_identifier(kind, &id) {
        Ok(()) => Some(id),
        Err(message) => {
            diags.at(node.pos, format!("{}: {message}", quoted(name)));
            None
        }
    }
}

/// The `allowed_states` and `failed_states` of `fields` (in `what`), each a list of `known`
/// states, by default `defaults` (allowed, failed); a state in both is reported at
/// `failed_states`.
pub(crate) fn allowed_and_failed(
    diags: &mut Diagnostics<'_>,
    fields: &diag::Fields<'_>,
    what: &str,
    known: &[&str],
    defaults: (&str, Option<&str>),
) -> (Option<Vec<String>>, Option<Vec<String>>) {
    let read = |diags: &mut Diagnostics<'_>, key: &str, default: Option<&str>| match fields.get(key)
    {
        Some(v) => states(diags, v, &format!("{what}.{key}"), known),
        None => Some(default.map(str::to_owned).into_iter().collect()),
    };
    let allowed = read(diags, "allowed_states", Some(defaults.0));
    let failed = read(diags, "failed_states", defaults.1);
    if let (Some(allowed), Some(failed)) = (&allowed, &failed)
        && let Some(both) = allowed.iter().find(|s| failed.contains(s))
        && let Some(v) = fields.get("failed_states")
    {
        diags.at(
            v.pos,
            format!(
                "state {} is in both `allowed_states` and `failed_states`",
                quoted(both)
            ),
        );
    }
    (allowed, failed)
}

fn states(
    diags: &mut Diagnostics<'_>,
    node: &Node,
    name: &str,
    known: &[&str],
) -> Option<Vec<String>> {
    let items = diag::string_list(diags, node, name, true)?;
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (state, item) in items {
        if known.contains(&state.as_str()) {
            out.push(state);
        } else {
            let hint = diag::did_you_mean(&state, known.iter().copied());
            diags.at(
                item.pos,
                format!(
                    "unknown state {} in {} (one of: {}){hint}",
                    quoted(&state),
                    quoted(name),
                    known.join(", ")
                ),
            );
            ok = false;
        }
    }
    ok.then_some(out)
}

fn http(diags: &mut Diagnostics<'_>, node: &Node) -> Option<HttpCheck> {
    let schema = Schema {
        what: "sensor.http",
        keys: &HTTP_KEYS,
        hint: |key| {
            match key {
            "http_conn_id" | "conn_id" => Some("use `connection`".to_owned()),
            "data" => Some("use `body`".to_owned()),
            "response_check" => Some(
                "updraft checks the status only: list the statuses that end the wait in `expected_status`"
                    .to_owned(),
            ),
            _ => None,
        }
        },
    };
    let before = diags.count();
    let fields = diag::fields(diags, node, &schema)?;
    let connection = fields
        .get("connection")
        .and_then(|v| connection_id(diags, v, "sensor.http.connection"));
    let url = fields
        .get("url")
        .and_then(|v| diag::non_empty_string(diags, v, "sensor.http.url"));
    match (fields.get("connection"), fields.get("url")) {
        (None, None) => diags.at(
            node.pos,
            "`sensor.http` needs a `connection` (an HTTP connection id) or a `url`",
        ),
        (Some(_), Some(_)) => diags.at(
            fields.key_node("url").map_or(node.pos, |k| k.pos),
            "`sensor.http` sets both `connection` and `url`: set one",
        ),
        _ => {}
    }
    let endpoint = match fields.get("endpoint") {
        Some(v) => diag::string(diags, v, "sensor.http.endpoint"),
        None => Some(String::new()),
    };
    let method = match fields.get("method") {
        Some(v) => method(diags, v),
        None => Some("GET".to_owned()),
    };
    let expected = match fields.get("expected_status") {
        Some(v) => statuses(diags, v),
        None => Some(vec![200]),
    };
    let headers = match fields.get("headers") {
        Some(v) => diag::env_map(diags, v, "sensor.http.headers"),
        None => Some(BTreeMap::new()),
    };
    let body = fields
        .get("body")
        .and_then(|v| diag::string(diags, v, "sensor.http.body"));
    if diags.count() > before {
        return None;
    }
    Some(HttpCheck {
        connection,
        url,
        endpoint: endpoint?,
        method: method?,
        expected_status: expected?,
        headers: headers?,
        body,
    })
}

fn method(diags: &mut Diagnostics<'_>, node: &Node) -> Option<String> {
    let method = diag::string(diags, node, "sensor.http.method")?.to_ascii_uppercase();
    if METHODS.contains(&method.as_str()) {
        return Some(method);
    }
    diags.at(
        node.pos,
        format!(
            "unknown `sensor.http.method` {} (one of: {})",
            quoted(&method),
            METHODS.join(", ")
        ),
    );
    None
}

fn statuses(diags: &mut Diagnostics<'_>, node: &Node) -> Option<Vec<u16>> {
    let items: Vec<&Node> = match &node.value {
        Value::Seq(items) => items.iter().collect(),
        Value::Int(_) => vec![node],
        _ => {
            diag::wrong_type(
                diags,
                node,
                "sensor.http.expected_status",
                "a list of HTTP status codes",
            );
            return None;
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item.value {
            Value::Int(code) if (100..=599).contains(&code) => out.push(code as u16),
            _ => {
                diag::wrong_type(
                    diags,
                    item,
                    "each item of sensor.http.expected_status",
                    "an HTTP status code (100 to 599)",
                );
                return None;
            }
        }
    }
    if out.is_empty() {
        diags.at(
            node.pos,
            "`sensor.http.expected_status` is empty: the sensor could never succeed",
        );
        return None;
    }
    Some(out)
}

fn sql(diags: &mut Diagnostics<'_>, node: &Node) -> Option<SqlCheck> {
    let schema = Schema {
        what: "sensor.sql",
        keys: &SQL_KEYS,
        hint: |key| match key {
            "conn_id" => Some("use `connection`".to_owned()),
            "sql" => Some("use `query`".to_owned()),
            _ => None,
        },
    };
    let before = diags.count();
    let fields = diag::fields(diags, node, &schema)?;
    let connection = match fields.get("connection") {
        Some(v) => connection_id(diags, v, "sensor.sql.connection"),
        None => {
            diags.at(
                node.pos,
                "`sensor.sql` needs a `connection` (a sqlite or postgres connection id)",
            );
            None
        }
    };
    let query = match fields.get("query") {
        Some(v) => diag::non_empty_string(diags, v, "sensor.sql.query"),
        None => {
            diags.at(node.pos, "`sensor.sql` needs a `query`");
            None
        }
    };
    if diags.count() > before {
        return None;
    }
    Some(SqlCheck {
        connection: connection?,
        query: query?,
    })
}

fn connection_id(diags: &mut Diagnostics<'_>, node: &Node, name: &str) -> Option<String> {
    let id = diag::string(diags, node, name)?;
    match check_conn_id(&id) {
        Ok(()) => Some(id),
        Err(problem) => {
            diags.at(node.pos, format!("{}: {problem}", quoted(name)));
            None
        }
    }
}
