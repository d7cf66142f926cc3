//! Connections and variables in templates, as Airflow's `conn` and `var`.
//!
//! The values come from [`TemplateSecrets`], looked up for the DAG's tenant before rendering.
//! Which names to look up is read from the templates' source ([`secret_references`]), so a
//! name must be written literally: `conn.my_db`, `conn['my-db']`, `conn.get('my_db')`,
//! `var.value.key`, `var.value['key']`, `var.value.get('key', 'default')`, and the same
//! forms under `var.json`. A name computed while rendering (`conn[params.which]`) was never
//! looked up, so it renders as a connection that does not exist.
//!
//! A connection or variable that does not exist is an error naming it and the tenant, unless
//! a default is given (`var.value.get('key', 'default')`, `conn.get('id')`, which is `none`
//! when missing, as in Airflow).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, OnceLock};

use minijinja::value::{Kwargs, Object, ObjectRepr, Value};
use minijinja::{Error, ErrorKind, State};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use regex::Regex;
use updraft_dag::{Dag, Task, TaskKind};
use updraft_secrets::{Connection, Masker, is_sensitive_name};

use super::{TemplateSecrets, is_template, json_to_value};

/// The connections and variables a task refers to: in its `connections:` field and in its
/// templates (its program, its `env` and `cwd`, and the DAG's `env` values it does not
/// override).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretReferences {
    pub connections: BTreeSet<String>,
    pub variables: BTreeSet<String>,
}

impl SecretReferences {
    pub fn is_empty(&self) -> bool {
        self.connections.is_empty() && self.variables.is_empty()
    }
}

impl fmt::Display for SecretReferences {
    /// `connection my_db, variable api_key`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = self
            .connections
            .iter()
            .map(|c| format!("connection `{c}`"))
            .chain(self.variables.iter().map(|v| format!("variable `{v}`")));
        f.write_str(&names.collect::<Vec<_>>().join(", "))
    }
}

/// The connections and variables `task` refers to (see [`SecretReferences`]). Only names
/// written literally in a template are found (see the module doc).
pub fn secret_references(dag: &Dag, task: &Task) -> SecretReferences {
    let mut refs = SecretReferences {
        connections: task.connections.iter().cloned().collect(),
        variables: BTreeSet::new(),
    };
    if let TaskKind::Sensor(sensor) = &task.kind {
        refs.connections
            .extend(sensor_connection(&sensor.check).map(str::to_owned));
    }
    for_each_template(dag, task, |source| scan(source, &mut refs));
    refs
}

/// Calls `f` with every string of `task` (and of the DAG's `env`) that is rendered, when it
/// has template syntax.
pub(super) fn for_each_template(dag: &Dag, task: &Task, mut f: impl FnMut(&str)) {
    let mut one = |s: &str| {
        if is_template(s) {
            f(s);
        }
    };
    match &task.kind {
        TaskKind::Bash(script) => one(script),
        TaskKind::Command(argv) => argv.iter().for_each(|a| one(a)),
        TaskKind::Noop => {}
        TaskKind::Pod(pod) => {
            if let Ok(value) = serde_json::to_value(pod) {
                json_strings(&value, &mut one);
            }
        }
        TaskKind::Sensor(sensor) => {
            if let Ok(value) = serde_json::to_value(&sensor.check) {
                json_strings(&value, &mut one);
            }
        }
        TaskKind::Python(python) => {
            python
                .op_args
                .iter()
                .for_each(|v| json_strings(v, &mut one));
            python
                .op_kwargs
                .values()
                .for_each(|v| json_strings(v, &mut one));
        }
    }
    dag.env
        .iter()
        .filter(|(k, _)| !task.env.contains_key(*k))
        .for_each(|(_, v)| one(v));
    task.env.values().for_each(|v| one(v));
    if let Some(cwd) = &task.cwd {
        one(cwd);
    }
}

/// The connection a sensor's check reads (an `http` or `sql` check's `connection`).
pub(crate) fn sensor_connection(check: &updraft_dag::SensorCheck) -> Option<&str> {
    match check {
        updraft_dag::SensorCheck::Http(http) => http.connection.as_deref(),
        updraft_dag::SensorCheck::Sql(sql) => Some(&sql.connection),
        _ => None,
    }
}

pub(crate) fn json_strings(value: &serde_json::Value, f: &mut impl FnMut(&str)) {
    use serde_json::Value as J;
    match value {
        J::String(s) => f(s),
        J::Array(items) => items.iter().for_each(|v| json_strings(v, f)),
        J::Object(map) => map.values().for_each(|v| json_strings(v, f)),
        _ => {}
    }
}

/// After `conn` or `var.value` / `var.json`: `.get('name'`, `['name']` or `.name`.
const NAME_FORMS: &str = r#"\s*(?:\.\s*get\s*\(\s*(?:'([^']*)'|"([^"]*)")|\[\s*(?:'([^']*)'|"([^"]*)")\s*\]|\.\s*([A-Za-z_][A-Za-z0-9_]*))"#;

fn conn_pattern() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(&format!(r"\bconn{NAME_FORMS}")).expect("a valid pattern"))
}

fn var_pattern() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(&format!(r"\bvar\s*\.\s*(?:value|json){NAME_FORMS}")).expect("a valid pattern")
    })
}

fn scan(source: &str, refs: &mut SecretReferences) {
    let named = |re: &'static Regex| {
        re.captures_iter(source).filter_map(|c| {
            (1..=5)
                .find_map(|i| c.get(i))
                .map(|m| m.as_str().to_owned())
        })
    };
    if source.contains("conn") {
        refs.connections.extend(named(conn_pattern()));
    }
    if source.contains("var") {
        refs.variables.extend(named(var_pattern()));
    }
}

/// The connections and variables `references` names, as `tenant` sees them. A name found
/// nowhere is left out (the template fails naming it, or uses its default); a backend that
/// fails to answer fails the lookup, naming what was looked up. Every secret value found is
/// registered for masking in this process's own output.
pub async fn look_up_secrets(
    secrets: Option<&updraft_secrets::Secrets>,
    tenant: &str,
    references: &SecretReferences,
) -> Result<TemplateSecrets, String> {
    let Some(secrets) = secrets else {
        return Err(format!(
            "it uses {references}, but no secrets backend is configured"
        ));
    };
    let mut found = TemplateSecrets::default();
    for conn_id in &references.connections {
        let conn = secrets
            .connection(tenant, conn_id)
            .await
            .map_err(|e| format!("looking up connection `{conn_id}` failed: {e}"))?;
        if let Some(conn) = conn {
            conn.secret_values()
                .iter()
                .for_each(|v| updraft_secrets::mask::register(v));
            found.connections.insert(conn_id.clone(), conn);
        }
    }
    for key in &references.variables {
        let value = secrets
            .variable(tenant, key)
            .await
            .map_err(|e| format!("looking up variable `{key}` failed: {e}"))?;
        if let Some(value) = value {
            if updraft_secrets::is_sensitive_name(key) {
                updraft_secrets::mask::register(&value);
            }
            found.variables.insert(key.clone(), value);
        }
    }
    Ok(found)
}

/// `conn` in the template context.
pub(super) fn conn_value(secrets: &TemplateSecrets, tenant: &str) -> Value {
    Value::from_object(Connections {
        found: secrets.connections.clone(),
        tenant: tenant.to_owned(),
    })
}

/// `var` in the template context.
pub(super) fn var_value(secrets: &TemplateSecrets, tenant: &str) -> Value {
    let variables = Arc::new(secrets.variables.clone());
    let accessor = |json| {
        Value::from_object(Variables {
            found: variables.clone(),
            tenant: tenant.to_owned(),
            json,
        })
    };
    Value::from_object(VarRoot {
        value: accessor(false),
        json: accessor(true),
    })
}

/// An error in place of a value: using it fails the render with `message`.
fn failing(message: String) -> Value {
    Value::from(Error::new(ErrorKind::InvalidOperation, message))
}

fn not_found(what: &str, name: &str, tenant: &str) -> String {
    format!("{what} `{name}` does not exist (tenant `{tenant}`)")
}

/// The name and the optional default of `get(name[, default])`; the default may also be
/// given by Airflow's keyword (`default_var=` for variables, `default_conn=` for connections).
fn get_args(
    method: &str,
    default_keyword: &str,
    args: &[Value],
) -> Result<(String, Option<Value>), Error> {
    let (positional, kwargs) = match args.split_last() {
        Some((last, rest)) if last.is_kwargs() => (rest, Some(Kwargs::try_from(last.clone())?)),
        _ => (args, None),
    };
    let usage = || {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("`{method}` takes a name (a string) and an optional default"),
        )
    };
    let name = match positional {
        [name] | [name, _] => name.as_str().ok_or_else(usage)?.to_owned(),
        _ => return Err(usage()),
    };
    let mut default = positional.get(1).cloned();
    if let Some(kwargs) = kwargs {
        if kwargs.has(default_keyword) {
            default = Some(kwargs.get::<Value>(default_keyword)?);
        }
        kwargs.assert_all_used()?;
    }
    Ok((name, default))
}

#[derive(Debug)]
struct Connections {
    found: BTreeMap<String, Connection>,
    tenant: String,
}

impl Object for Connections {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let name = key.as_str()?;
        Some(match self.found.get(name) {
            Some(conn) => Value::from_object(ConnectionValue(conn.clone())),
            None => failing(not_found("connection", name, &self.tenant)),
        })
    }

    /// `conn.get('id')`: the connection, or the default (`none`) when it does not exist.
    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        if method != "get" {
            return Err(Error::from(ErrorKind::UnknownMethod));
        }
        let (name, default) = get_args("conn.get", "default_conn", args)?;
        Ok(match self.found.get(&name) {
            Some(conn) => Value::from_object(ConnectionValue(conn.clone())),
            None => default.unwrap_or(Value::from(())),
        })
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<connections>")
    }
}

/// One connection: Airflow's attributes and `get_uri()`; prints as its id, as Airflow's.
#[derive(Debug)]
struct ConnectionValue(Connection);

fn optional(value: &Option<String>) -> Value {
    value.as_deref().map_or(Value::from(()), Value::from)
}

impl Object for ConnectionValue {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let c = &self.0;
        Some(match key.as_str()? {
            "conn_id" => Value::from(c.conn_id.as_str()),
            "conn_type" => Value::from(c.conn_type.as_str()),
            "description" => optional(&c.description),
            "host" => optional(&c.host),
            "schema" => optional(&c.schema),
            "login" => optional(&c.login),
            "password" => optional(&c.password),
            "port" => c.port.map_or(Value::from(()), Value::from),
            "extra" => optional(&c.extra),
            "extra_dejson" => json_to_value(&serde_json::Value::Object(c.extra_dejson())),
            _ => return None,
        })
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        if !args.is_empty() {
            return Err(Error::from(ErrorKind::TooManyArguments));
        }
        let c = &self.0;
        match method {
            "get_uri" => Ok(Value::from(c.to_uri())),
            "get_password" => Ok(optional(&c.password)),
            "get_extra" => Ok(optional(&c.extra)),
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.conn_id)
    }
}

#[derive(Debug)]
struct VarRoot {
    value: Value,
    json: Value,
}

impl Object for VarRoot {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "value" => Some(self.value.clone()),
            "json" => Some(self.json.clone()),
            _ => None,
        }
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<variables>")
    }
}

/// `var.value` (text) or `var.json` (the value read as JSON).
#[derive(Debug)]
struct Variables {
    found: Arc<BTreeMap<String, String>>,
    tenant: String,
    json: bool,
}

impl Variables {
    fn read(&self, key: &str, text: &str) -> Value {
        if !self.json {
            return Value::from(text);
        }
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(json) => json_to_value(&json),
            Err(e) => failing(format!("variable `{key}` is not valid JSON ({e})")),
        }
    }
}

impl Object for Variables {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let name = key.as_str()?;
        Some(match self.found.get(name) {
            Some(text) => self.read(name, text),
            None => failing(not_found("variable", name, &self.tenant)),
        })
    }

    /// `var.value.get('key', default)`: the default when the variable does not exist; without
    /// one, an error naming it (as Airflow's `Variable.get`).
    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        if method != "get" {
            return Err(Error::from(ErrorKind::UnknownMethod));
        }
        let what = if self.json {
            "var.json.get"
        } else {
            "var.value.get"
        };
        let (name, default) = get_args(what, "default_var", args)?;
        match (self.found.get(&name), default) {
            (Some(text), _) => Ok(self.read(&name, text)),
            (None, Some(default)) => Ok(default),
            (None, None) => Err(Error::new(
                ErrorKind::InvalidOperation,
                not_found("variable", &name, &self.tenant),
            )),
        }
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.json {
            "<var.json>"
        } else {
            "<var.value>"
        })
    }
}

/// What Python's `urllib.parse.quote(s, safe="")` leaves alone, as Airflow's `get_uri()`
/// quotes a password.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~');

/// Every value a try with `secrets` must not show: connections' passwords and sensitive
/// extras ([`Connection::secret_values`]), the values of variables whose key looks
/// sensitive (and each string inside one holding JSON, for `var.json`), each also as it is
/// written in a connection URI (percent-encoded).
pub(super) fn secret_mask(secrets: &TemplateSecrets) -> Masker {
    let mut mask = Masker::new();
    let mut add = |value: &str| {
        mask.add(value);
        let quoted = utf8_percent_encode(value, URI_COMPONENT).to_string();
        if quoted != value {
            mask.add(&quoted);
            mask.add(&quoted.replace("%20", "+"));
        }
    };
    for conn in secrets.connections.values() {
        for value in conn.secret_values() {
            add(&value);
        }
    }
    for (key, value) in &secrets.variables {
        if !is_sensitive_name(key) {
            continue;
        }
        add(value);
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(value) {
            json_strings(&json, &mut add);
        }
    }
    mask
}

/// The environment variable of a connection a task asks for: `AIRFLOW_CONN_<ID upper-cased>`.
pub fn connection_env_name(conn_id: &str) -> String {
    format!("AIRFLOW_CONN_{}", conn_id.to_uppercase())
}

/// The `AIRFLOW_CONN_*` variables of `task.connections`, in its order; the error names the
/// first connection that does not exist.
pub(super) fn connection_env(
    task: &Task,
    secrets: &TemplateSecrets,
    tenant: &str,
) -> Result<Vec<(String, String)>, String> {
    task.connections
        .iter()
        .map(|id| {
            let conn = secrets
                .connections
                .get(id)
                .ok_or_else(|| not_found("connection", id, tenant))?;
            Ok((connection_env_name(id), conn.to_uri()))
        })
        .collect()
}
