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

impl EnvBackend {
    /// This process's environment (only the `*_CONN_*` / `*_VAR_*` variables are kept).
    pub fn from_process() -> EnvBackend {
        EnvBackend::from_vars(std::env::vars())
    }

    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> EnvBackend {
        let _ = vars;
        todo!("environment backend")
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
        let _ = (&self.vars, conn_id);
        todo!("environment connection")
    }

    async fn variable(&self, _tenant: &str, key: &str) -> Result<Option<String>, SecretsError> {
        let _ = key;
        todo!("environment variable")
    }
}
