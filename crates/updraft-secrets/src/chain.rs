//! [`Secrets`]: the configured backends asked in order, with a cache.

use std::sync::Arc;
use std::time::Duration;

use crate::{Connection, SecretsBackend, SecretsError};

/// The backends in their configured order (Airflow's default: the environment, then the
/// database). The first backend that holds a name answers. Answers of every backend but the
/// database are cached for `ttl` (zero: no cache), found or not.
pub struct Secrets {
    backends: Vec<Arc<dyn SecretsBackend>>,
    ttl: Duration,
}

impl Secrets {
    pub fn new(backends: Vec<Arc<dyn SecretsBackend>>, ttl: Duration) -> Secrets {
        Secrets { backends, ttl }
    }

    /// The backends' names, in order.
    pub fn backend_names(&self) -> Vec<String> {
        self.backends.iter().map(|b| b.name().to_owned()).collect()
    }

    /// The connection `conn_id` as `tenant` sees it.
    pub async fn connection(
        &self,
        tenant: &str,
        conn_id: &str,
    ) -> Result<Option<Connection>, SecretsError> {
        let _ = (&self.ttl, tenant, conn_id);
        todo!("chained connection lookup")
    }

    /// The variable `key` as `tenant` sees it.
    pub async fn variable(&self, tenant: &str, key: &str) -> Result<Option<String>, SecretsError> {
        let _ = (tenant, key);
        todo!("chained variable lookup")
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("backends", &self.backend_names())
            .field("ttl", &self.ttl)
            .finish()
    }
}
