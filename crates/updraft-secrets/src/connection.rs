//! Airflow's connection: the model and its formats.
//!
//! A connection URI is `type://login:password@host:port/schema?key=value`, each part
//! percent-encoded, as Airflow's `Connection.get_uri()` writes it and its `Connection(uri=...)`
//! reads it (`__extra__=<json>` carries an extra that is not a flat map of strings; `-` and `_`
//! in the type are kept; `host` may itself be a URL-encoded `scheme://...`). The JSON form is
//! Airflow's `Connection.as_json()` / `from_json()`: `{"conn_type": ..., "host": ...,
//! "extra": {...}}`.

use serde::{Deserialize, Serialize};

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
    pub fn from_uri(conn_id: &str, uri: &str) -> Result<Connection, FormatError> {
        let _ = (conn_id, uri);
        todo!("connection URI parsing")
    }

    /// The URI Airflow's `Connection.get_uri()` gives for this connection.
    pub fn to_uri(&self) -> String {
        todo!("connection URI writing")
    }

    /// Reads Airflow's connection JSON (`extra` may be an object or JSON text).
    pub fn from_json(conn_id: &str, json: &str) -> Result<Connection, FormatError> {
        let _ = (conn_id, json);
        todo!("connection JSON parsing")
    }

    /// Airflow's connection JSON, with `extra` as an object when it is one.
    pub fn to_json(&self) -> serde_json::Value {
        todo!("connection JSON writing")
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
    pub fn secret_values(&self) -> Vec<String> {
        todo!("secret values of a connection")
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
