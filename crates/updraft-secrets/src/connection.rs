//! Airflow's connection: the model and its formats.
//!
//! A connection URI is `type://login:password@host:port/schema?key=value`, each part
//! percent-encoded, as Airflow's `Connection.get_uri()` writes it and its `Connection(uri=...)`
//! reads it (`__extra__=<json>` carries an extra that is not a flat map of strings; `-` and `_`
//! in the type are kept; `host` may itself be a URL-encoded `scheme://...`). The JSON form is
//! Airflow's `Connection.as_json()` / `from_json()`: `{"conn_type": ..., "host": ...,
//! "extra": {...}}`.

use serde::{Deserialize, Serialize};

use crate::pyurl::{self, OrderedObject};

/// One connection. `password` and `extra` are the values in the clear: the [`crate::Vault`]
/// encrypts them when it writes to the database.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Connection {
    pub conn_id: String,
    pub conn_type: String,
    pub description: Option<String>,
    pub host: Option<String>,
    pub schema: Option<String>,
    pub login: Option<String>,
    pub password: Option<String>,
    pub port: Option<u16>,
    /// JSON text (an object), as Airflow stores it.
    pub extra: Option<String>,
}

/// A connection or variable value that is not in the format it should be in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FormatError {
    pub message: String,
}

impl FormatError {
    pub fn new(message: impl Into<String>) -> FormatError {
        FormatError {
            message: message.into(),
        }
    }
}

impl Connection {
    /// Reads a connection URI, as Airflow's `Connection(conn_id, uri=...)`.
    ///
    /// The scheme is the type (`postgresql` becomes `postgres`, `-` becomes `_`); a second
    /// `://` makes the host carry its own protocol (`spark://k8s://10.0.0.1:443` has host
    /// `k8s://10.0.0.1`); the query becomes `extra` (`__extra__` holds it as JSON text).
    pub fn from_uri(conn_id: &str, uri: &str) -> Result<Connection, FormatError> {
        let schemes = uri.matches("://").count();
        if schemes > 2 {
            return Err(FormatError::new(format!(
                "connection URI has {schemes} \"://\"; at most two are allowed (type://protocol://host)"
            )));
        }
        let host_with_protocol = schemes == 2;
        let scheme = pyurl::urlsplit(uri)?.scheme;
        let rest = uri.replace(
            &format!("{scheme}://"),
            if host_with_protocol { "" } else { "//" },
        );
        if host_with_protocol {
            let before_protocol = rest.split("://").next().unwrap_or_default();
            if before_protocol.contains(['@', ':']) {
                return Err(FormatError::new(
                    "connection URI has a login, password or port before the host's protocol; write type://protocol://login:password@host:port",
                ));
            }
        }
        let parts = pyurl::urlsplit(&rest)?;
        let host = hostname(&parts).filter(|host| !host.is_empty());
        let host = match (host, host_with_protocol) {
            (Some(host), true) => Some(format!("{}://{host}", parts.scheme)),
            (host, _) => host,
        };
        let schema = parts
            .path
            .get(1..)
            .filter(|s| !s.is_empty())
            .map(pyurl::unquote);
        Ok(Connection {
            conn_id: conn_id.to_owned(),
            conn_type: normalize_conn_type(&scheme),
            description: None,
            host,
            schema,
            login: parts.username().map(pyurl::unquote),
            password: parts
                .password()
                .filter(|p| !p.is_empty())
                .map(pyurl::unquote),
            port: parts.port()?,
            extra: extra_from_query(&parts.query)?,
        })
    }

    /// The URI Airflow's `Connection.get_uri()` gives for this connection.
    pub fn to_uri(&self) -> String {
        let mut uri = if self.conn_type.is_empty() {
            "//".to_owned()
        } else {
            format!("{}://", self.conn_type.to_lowercase().replace('_', "-"))
        };
        let host = self.host.as_deref().unwrap_or_default();
        let host = match host.split_once("://") {
            Some((protocol, bare)) if protocol != self.conn_type => {
                uri.push_str(&format!("{protocol}://"));
                bare
            }
            _ => host,
        };
        let mut authority = String::new();
        if let Some(login) = &self.login {
            authority.push_str(&pyurl::quote(login));
        }
        if let Some(password) = &self.password {
            authority.push(':');
            authority.push_str(&pyurl::quote(password));
        }
        if !authority.is_empty() {
            uri.push_str(&authority);
            uri.push('@');
        }
        let mut host_block = pyurl::quote(host);
        match self.port {
            Some(port) if port != 0 && host_block.is_empty() && authority.is_empty() => {
                host_block.push_str(&format!("@:{port}"))
            }
            Some(port) if port != 0 => host_block.push_str(&format!(":{port}")),
            _ => {}
        }
        let schema = self.schema.as_deref().unwrap_or_default();
        if !schema.is_empty() {
            host_block.push('/');
            host_block.push_str(&pyurl::quote(schema));
        }
        uri.push_str(&host_block);
        if let Some(extra) = self.extra.as_deref().filter(|e| !e.is_empty()) {
            uri.push_str(if schema.is_empty() { "/?" } else { "?" });
            uri.push_str(&extra_query(extra));
        }
        uri
    }

    /// Reads Airflow's connection JSON (`extra` may be an object or JSON text).
    pub fn from_json(conn_id: &str, json: &str) -> Result<Connection, FormatError> {
        let fields: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json)
            .map_err(|e| FormatError::new(format!("connection JSON is not an object: {e}")))?;
        let mut conn = Connection {
            conn_id: conn_id.to_owned(),
            ..Connection::default()
        };
        for (name, value) in &fields {
            match name.as_str() {
                "conn_type" => {
                    conn.conn_type =
                        normalize_conn_type(&json_text(name, value)?.unwrap_or_default())
                }
                "description" => conn.description = json_text(name, value)?,
                "host" => conn.host = json_text(name, value)?.filter(|h| !h.is_empty()),
                "schema" => conn.schema = json_text(name, value)?.filter(|s| !s.is_empty()),
                "login" => conn.login = json_text(name, value)?,
                "password" => conn.password = json_text(name, value)?.filter(|p| !p.is_empty()),
                "port" => conn.port = json_port(value)?,
                "extra" => conn.extra = json_extra(value)?,
                "conn_id" => {}
                other => {
                    return Err(FormatError::new(format!(
                        "connection JSON has an unknown field {other:?} (known: conn_type, description, host, login, password, schema, port, extra)"
                    )));
                }
            }
        }
        Ok(conn)
    }

    /// Airflow's connection JSON, with `extra` as an object when it is one.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        let mut out = serde_json::Map::new();
        out.insert("conn_type".into(), Value::String(self.conn_type.clone()));
        let texts = [
            ("description", &self.description),
            ("host", &self.host),
            ("login", &self.login),
            ("password", &self.password),
            ("schema", &self.schema),
        ];
        for (name, value) in texts {
            if let Some(value) = value {
                out.insert(name.into(), Value::String(value.clone()));
            }
        }
        if let Some(port) = self.port {
            out.insert("port".into(), Value::from(port));
        }
        let extra = self.extra_dejson();
        if !extra.is_empty() {
            out.insert("extra".into(), Value::Object(extra));
        }
        Value::Object(out)
    }

    /// Reads the value of an `AIRFLOW_CONN_<ID>` variable or a connection file: JSON when it
    /// starts with `{`, else a URI.
    pub fn from_uri_or_json(conn_id: &str, text: &str) -> Result<Connection, FormatError> {
        if text.trim_start().starts_with('{') {
            Connection::from_json(conn_id, text)
        } else {
            Connection::from_uri(conn_id, text.trim())
        }
    }

    /// `extra` as a JSON object (`extra_dejson` in Airflow): empty when there is none or it is
    /// not an object.
    pub fn extra_dejson(&self) -> serde_json::Map<String, serde_json::Value> {
        self.extra
            .as_deref()
            .and_then(|e| serde_json::from_str::<serde_json::Value>(e).ok())
            .and_then(|v| match v {
                serde_json::Value::Object(map) => Some(map),
                _ => None,
            })
            .unwrap_or_default()
    }

    /// The values to mask wherever this connection's use shows text: the password, and every
    /// string in `extra` under a sensitive key ([`crate::is_sensitive_name`]).
    /// Everything inside a sensitive key counts, however deep it is nested.
    pub fn secret_values(&self) -> Vec<String> {
        let mut values: Vec<String> = self.password.iter().cloned().collect();
        for (key, value) in &self.extra_dejson() {
            collect_secret_strings(key, value, false, &mut values);
        }
        values
    }
}

/// Never prints the password or extra.
impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("conn_id", &self.conn_id)
            .field("conn_type", &self.conn_type)
            .field("host", &self.host)
            .field("schema", &self.schema)
            .field("login", &self.login)
            .field("password", &self.password.as_ref().map(|_| crate::MASK))
            .field("port", &self.port)
            .field("extra", &self.extra.as_ref().map(|_| crate::MASK))
            .finish()
    }
}

/// Airflow's `_normalize_conn_type`.
fn normalize_conn_type(conn_type: &str) -> String {
    if conn_type == "postgresql" {
        "postgres".to_owned()
    } else {
        conn_type.replace('-', "_")
    }
}

/// Airflow's `_parse_netloc_to_hostname`: a host with a `/` once decoded (a socket path, a
/// host with its own protocol) is taken from the raw network location, so it keeps its case.
fn hostname(parts: &pyurl::SplitUrl) -> Option<String> {
    let host = pyurl::unquote(&parts.hostname().unwrap_or_default());
    if !host.contains('/') {
        return Some(host);
    }
    let netloc = parts.netloc.as_str();
    let host = netloc.rsplit_once('@').map_or(netloc, |(_, host)| host);
    let host = host.split_once(':').map_or(host, |(host, _)| host);
    Some(pyurl::unquote(host))
}

/// The query of a URI as `extra` text: `__extra__`'s value, else the fields as a JSON object,
/// each value that is JSON text read as JSON (`retries=3` gives the number 3), as Airflow does.
fn extra_from_query(query: &str) -> Result<Option<String>, FormatError> {
    if query.is_empty() {
        return Ok(None);
    }
    let pairs = pyurl::parse_qsl_dict(query);
    match pairs.iter().find(|(key, _)| key == "__extra__") {
        Some((_, extra)) if extra.is_empty() => Ok(None),
        Some((_, extra)) => {
            check_extra(extra, "__extra__")?;
            Ok(Some(extra.clone()))
        }
        None => {
            let fields: Vec<(String, serde_json::Value)> = pairs
                .into_iter()
                .map(|(key, value)| {
                    let parsed = serde_json::from_str(&value).ok();
                    let value = parsed
                        .filter(|_| !value.is_empty())
                        .unwrap_or(serde_json::Value::String(value));
                    (key, value)
                })
                .collect();
            Ok(Some(pyurl::json_dumps_fields(&fields)))
        }
    }
}

/// Airflow's `_validate_extra`: extra must be JSON text of an object.
fn check_extra(extra: &str, field: &str) -> Result<(), FormatError> {
    match serde_json::from_str::<serde_json::Value>(extra) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        Ok(_) => Err(FormatError::new(format!(
            "{field} is JSON but not an object; it must be a JSON object"
        ))),
        Err(e) => Err(FormatError::new(format!("{field} is not JSON: {e}"))),
    }
}

/// `extra` in a URI: its fields as query parameters when all are strings that are not JSON
/// text themselves (so reading them back gives the same object), else the whole text under
/// `__extra__`. (Airflow also flattens a string such as `"3"`, which then reads back as a
/// number; keeping it under `__extra__` reads back the same in both.)
fn extra_query(extra: &str) -> String {
    let fields = serde_json::from_str::<OrderedObject>(extra)
        .map(|object| object.0)
        .unwrap_or_default();
    let strings: Option<Vec<(&str, &str)>> = fields
        .iter()
        .map(|(key, value)| {
            value
                .as_str()
                .filter(|text| {
                    text.is_empty() || serde_json::from_str::<serde_json::Value>(text).is_err()
                })
                .map(|value| (key.as_str(), value))
        })
        .collect();
    match strings {
        Some(pairs) if !pairs.is_empty() => pyurl::urlencode(pairs),
        _ => pyurl::urlencode([("__extra__", extra)]),
    }
}

fn json_text(name: &str, value: &serde_json::Value) -> Result<Option<String>, FormatError> {
    match value {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(text) => Ok(Some(text.clone())),
        other => Err(FormatError::new(format!(
            "connection JSON field {name:?} must be a string, not {other}"
        ))),
    }
}

/// Airflow's `from_json` port: a number or its text; empty, null or zero is no port (Airflow
/// reads a port only when it is truthy).
fn json_port(value: &serde_json::Value) -> Result<Option<u16>, FormatError> {
    let text = match value {
        serde_json::Value::Null => return Ok(None),
        serde_json::Value::String(text) if text.is_empty() => return Ok(None),
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    text.parse::<u16>()
        .map(|port| (port != 0).then_some(port))
        .map_err(|_| {
            FormatError::new(format!(
                "port {text:?} is not a port number (an integer from 0 to 65535)"
            ))
        })
}

/// `extra` given as an object (written as Airflow's `json.dumps` writes it) or as JSON text.
fn json_extra(value: &serde_json::Value) -> Result<Option<String>, FormatError> {
    match value {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(text) if text.is_empty() => Ok(None),
        serde_json::Value::String(text) => {
            check_extra(text, "extra")?;
            Ok(Some(text.clone()))
        }
        serde_json::Value::Object(map) if map.is_empty() => Ok(None),
        object @ serde_json::Value::Object(_) => Ok(Some(pyurl::json_dumps(object))),
        other => Err(FormatError::new(format!(
            "connection JSON field \"extra\" must be an object or JSON text, not {other}"
        ))),
    }
}

/// Adds the strings in `value` that are secret: under a sensitive key (`key` or an
/// enclosing one), at any depth.
fn collect_secret_strings(
    key: &str,
    value: &serde_json::Value,
    inside_secret: bool,
    out: &mut Vec<String>,
) {
    let secret = inside_secret || crate::is_sensitive_name(key);
    match value {
        serde_json::Value::String(text) if secret => out.push(text.clone()),
        serde_json::Value::Array(items) => {
            for item in items {
                collect_secret_strings(key, item, secret, out);
            }
        }
        serde_json::Value::Object(map) => {
            for (inner, item) in map {
                collect_secret_strings(inner, item, secret, out);
            }
        }
        _ => {}
    }
}
