//! Connections and variables from the Kubernetes Secrets of a tenant's namespace: the
//! `kubernetes` secrets backend.
//!
//! A connection `my_db` of tenant `a` is the Secret `updraft-conn-my-db` in `a`'s namespace
//! (the first of its allowed namespaces), its data key `uri` (or `json`); a variable `key` is
//! the Secret `updraft-var-<key>`, data key `value`. Names are lower-cased with `_` as `-`.
//! The environment and the database are installation-wide; this backend is per tenant by
//! construction: it reads only the asking tenant's namespace.

use async_trait::async_trait;
use updraft_secrets::{Connection, SecretsBackend, SecretsError};

use crate::PodExecutorConfig;

/// The `kubernetes` secrets backend.
pub struct KubernetesSecrets {
    client: kube::Client,
    config: PodExecutorConfig,
}

impl KubernetesSecrets {
    /// Reads Secrets through `client`, in the namespaces `config` allows each tenant.
    pub fn new(client: kube::Client, config: PodExecutorConfig) -> KubernetesSecrets {
        KubernetesSecrets { client, config }
    }
}

#[async_trait]
impl SecretsBackend for KubernetesSecrets {
    fn name(&self) -> &str {
        "kubernetes"
    }

    async fn connection(
        &self,
        tenant: &str,
        conn_id: &str,
    ) -> Result<Option<Connection>, SecretsError> {
        let _ = (&self.client, &self.config, tenant, conn_id);
        todo!("Kubernetes Secret connection")
    }

    async fn variable(&self, tenant: &str, key: &str) -> Result<Option<String>, SecretsError> {
        let _ = (tenant, key);
        todo!("Kubernetes Secret variable")
    }
}
