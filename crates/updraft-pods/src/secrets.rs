//! Connections and variables from the Kubernetes Secrets of a tenant's namespace: the
//! `kubernetes` secrets backend.
//!
//! A connection `my_db` of tenant `a` is the Secret `updraft-conn-my-db` in `a`'s namespace
//! (the first of its allowed namespaces), its data key `uri` (or `json`); a variable `key` is
//! the Secret `updraft-var-<key>`, data key `value`. Names are lower-cased with `_` as `-`.
//! The environment and the database are installation-wide; this backend is per tenant by
//! construction: it reads only the asking tenant's namespace.

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use updraft_secrets::{Connection, FormatError, SecretsBackend, SecretsError};

use crate::PodExecutorConfig;

/// The `kubernetes` secrets backend.
pub struct KubernetesSecrets {
    client: kube::Client,
    config: PodExecutorConfig,
}

/// Where a value is looked for: a Secret in a namespace.
struct Place {
    namespace: String,
    name: String,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kubernetes Secret {}/{}", self.namespace, self.name)
    }
}

impl KubernetesSecrets {
    /// Reads Secrets through `client`, in the namespaces `config` allows each tenant.
    pub fn new(client: kube::Client, config: PodExecutorConfig) -> KubernetesSecrets {
        KubernetesSecrets { client, config }
    }

    /// The Secret `<prefix><name>` in the tenant's namespace; `None` when the tenant has no
    /// namespace or the name cannot be a Secret's.
    fn place(&self, tenant: &str, prefix: &str, name: &str) -> Option<Place> {
        let namespace = self.config.allowed_namespaces(tenant).into_iter().next()?;
        let name = format!("{prefix}{}", name.to_ascii_lowercase().replace('_', "-"));
        is_secret_name(&name).then_some(Place { namespace, name })
    }

    /// The Secret's data, `None` when there is no such Secret.
    async fn read(&self, place: &Place) -> Result<Option<Secret>, SecretsError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &place.namespace);
        api.get_opt(&place.name)
            .await
            .map_err(|e| SecretsError::Backend {
                backend: self.name().to_owned(),
                message: format!("reading {place}: {e}"),
            })
    }
}

/// A DNS subdomain, as Secret names are.
fn is_secret_name(name: &str) -> bool {
    name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// The text under `key` in the Secret's data.
fn text(secret: &Secret, place: &Place, key: &str) -> Result<Option<String>, SecretsError> {
    let Some(bytes) = secret.data.as_ref().and_then(|d| d.get(key)) else {
        return Ok(None);
    };
    String::from_utf8(bytes.0.clone())
        .map(Some)
        .map_err(|_| format_error(place, key, "is not UTF-8 text"))
}

fn format_error(place: &Place, key: &str, message: &str) -> SecretsError {
    SecretsError::Format {
        source_name: format!("{place}, key `{key}`"),
        error: FormatError::new(message),
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
        let Some(place) = self.place(tenant, "updraft-conn-", conn_id) else {
            return Ok(None);
        };
        let Some(secret) = self.read(&place).await? else {
            return Ok(None);
        };
        let wrap = |key: &str| {
            let source_name = format!("{place}, key `{key}`");
            move |error| SecretsError::Format { source_name, error }
        };
        if let Some(uri) = text(&secret, &place, "uri")? {
            return Connection::from_uri(conn_id, uri.trim())
                .map(Some)
                .map_err(wrap("uri"));
        }
        if let Some(json) = text(&secret, &place, "json")? {
            return Connection::from_json(conn_id, &json)
                .map(Some)
                .map_err(wrap("json"));
        }
        Err(format_error(
            &place,
            "uri",
            "the Secret has neither a `uri` nor a `json` key",
        ))
    }

    async fn variable(&self, tenant: &str, key: &str) -> Result<Option<String>, SecretsError> {
        let Some(place) = self.place(tenant, "updraft-var-", key) else {
            return Ok(None);
        };
        let Some(secret) = self.read(&place).await? else {
            return Ok(None);
        };
        match text(&secret, &place, "value")? {
            Some(value) => Ok(Some(value)),
            None => Err(format_error(
                &place,
                "value",
                "the Secret has no `value` key",
            )),
        }
    }
}
