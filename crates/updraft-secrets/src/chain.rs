//! [`Secrets`]: the configured backends asked in order, with a cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{Connection, SecretsBackend, SecretsError};

/// The backends in their configured order (Airflow's default: the environment, then the
/// database). The first backend that holds a name answers; an error of a backend is the
/// answer (the next one is not asked, so a broken backend never lets a value from a later
/// one through silently). Answers of every backend but the database are cached for `ttl`
/// (zero: no cache), found or not, per backend, tenant and name. Every secret value found
/// (a connection's password and sensitive extras, a sensitive variable's value) is added to
/// the process's mask ([`crate::mask::register`]).
pub struct Secrets {
    backends: Vec<Arc<dyn SecretsBackend>>,
    ttl: Duration,
    cache: Mutex<HashMap<CacheKey, Cached>>,
}

/// Never kept: the database is the source of truth and is read each time.
const UNCACHED_BACKEND: &str = "database";

/// Past this many entries, expired ones are dropped when a new one is stored.
const CACHE_PRUNE_AT: usize = 4096;

#[derive(Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    backend: usize,
    tenant: String,
    kind: Kind,
    name: String,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Connection,
    Variable,
}

#[derive(Clone)]
enum Value {
    Connection(Option<Connection>),
    Variable(Option<String>),
}

struct Cached {
    at: Instant,
    value: Value,
}

impl Secrets {
    pub fn new(backends: Vec<Arc<dyn SecretsBackend>>, ttl: Duration) -> Secrets {
        Secrets {
            backends,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
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
        for (index, backend) in self.backends.iter().enumerate() {
            let key = CacheKey {
                backend: index,
                tenant: tenant.to_owned(),
                kind: Kind::Connection,
                name: conn_id.to_owned(),
            };
            let found = match self.cached(backend.as_ref(), &key) {
                Some(Value::Connection(found)) => found,
                _ => {
                    let found = backend.connection(tenant, conn_id).await?;
                    self.store(backend.as_ref(), key, Value::Connection(found.clone()));
                    found
                }
            };
            if let Some(conn) = found {
                for secret in conn.secret_values() {
                    crate::mask::register(&secret);
                }
                return Ok(Some(conn));
            }
        }
        Ok(None)
    }

    /// The variable `key` as `tenant` sees it.
    pub async fn variable(&self, tenant: &str, key: &str) -> Result<Option<String>, SecretsError> {
        for (index, backend) in self.backends.iter().enumerate() {
            let cache_key = CacheKey {
                backend: index,
                tenant: tenant.to_owned(),
                kind: Kind::Variable,
                name: key.to_owned(),
            };
            let found = match self.cached(backend.as_ref(), &cache_key) {
                Some(Value::Variable(found)) => found,
                _ => {
                    let found = backend.variable(tenant, key).await?;
                    self.store(backend.as_ref(), cache_key, Value::Variable(found.clone()));
                    found
                }
            };
            if let Some(value) = found {
                if crate::is_sensitive_name(key) {
                    crate::mask::register(&value);
                }
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    fn caches(&self, backend: &dyn SecretsBackend) -> bool {
        !self.ttl.is_zero() && backend.name() != UNCACHED_BACKEND
    }

    fn cached(&self, backend: &dyn SecretsBackend, key: &CacheKey) -> Option<Value> {
        if !self.caches(backend) {
            return None;
        }
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(key)
            .filter(|entry| entry.at.elapsed() < self.ttl)
            .map(|entry| entry.value.clone())
    }

    fn store(&self, backend: &dyn SecretsBackend, key: CacheKey, value: Value) {
        if !self.caches(backend) {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_PRUNE_AT {
            cache.retain(|_, entry| entry.at.elapsed() < self.ttl);
        }
        cache.insert(
            key,
            Cached {
                at: Instant::now(),
                value,
            },
        );
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
