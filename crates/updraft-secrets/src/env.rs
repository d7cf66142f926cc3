//! The environment backend: `AIRFLOW_CONN_<ID>` / `UPDRAFT_CONN_<ID>` (a URI or JSON) and
//! `AIRFLOW_VAR_<KEY>` / `UPDRAFT_VAR_<KEY>`, read as Airflow reads them: the name upper-cased
//! (`my_db` is `AIRFLOW_CONN_MY_DB`). The environment is the installation's: what it holds is
//! shared by every tenant. `UPDRAFT_` wins over `AIRFLOW_` when both are set.

use std::collections::HashMap;

use async_trait::async_trait;

use crate::{Connection, SecretsBackend, SecretsError};

/// The environment, captured when the backend is made.
#[derive(Clone, Default)]
pub struct EnvBackend {
    vars: HashMap<String, String>,
}

const PREFIXES: [&str; 4] = [
    "UPDRAFT_CONN_",
    "AIRFLOW_CONN_",
    "UPDRAFT_VAR_",
    "AIRFLOW_VAR_",
];

impl EnvBackend {
    /// This process's environment (only the `*_CONN_*` / `*_VAR_*` variables are kept).
    pub fn from_process() -> EnvBackend {
        EnvBackend::from_vars(std::env::vars())
    }

    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> EnvBackend {
        EnvBackend {
            vars: vars
                .into_iter()
                .filter(|(name, _)| PREFIXES.iter().any(|p| name.starts_with(p)))
                .collect(),
        }
    }

    /// The first of `UPDRAFT_<kind>_<NAME>`, `AIRFLOW_<kind>_<NAME>` that is set, with its
    /// variable's name.
    fn lookup(&self, kind: &str, name: &str) -> Option<(String, &str)> {
        let upper = name.to_uppercase();
        ["UPDRAFT", "AIRFLOW"].iter().find_map(|prefix| {
            let variable = format!("{prefix}_{kind}_{upper}");
            let value = self.vars.get(&variable)?;
            Some((variable, value.as_str()))
        })
    }
}

#[async_trait]
impl SecretsBackend for EnvBackend {
    fn name(&self) -> &str {
        "environment"
    }

    async fn connection(
        &self,
        _tenant: &str,
        conn_id: &str,
    ) -> Result<Option<Connection>, SecretsError> {
        let Some((variable, value)) = self.lookup("CONN", conn_id) else {
            return Ok(None);
        };
        Connection::from_uri_or_json(conn_id, value)
            .map(Some)
            .map_err(|error| SecretsError::Format {
                source_name: format!("environment variable {variable}"),
                error,
            })
    }

    async fn variable(&self, _tenant: &str, key: &str) -> Result<Option<String>, SecretsError> {
        Ok(self.lookup("VAR", key).map(|(_, value)| value.to_owned()))
    }
}
