//! An authenticated caller.

use serde::{Deserialize, Serialize};

use crate::{Grant, Role};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub username: String,
    pub grants: Vec<Grant>,
    /// A git host's webhook for this DAG source, proved by the source's webhook secret: it
    /// may ask for a sync of that source and do nothing else, whatever `grants` say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// A metrics scraper (Prometheus), proved by `[auth] metrics_token`: it may read the
    /// metrics and do nothing else.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub metrics_only: bool,
}

impl Identity {
    pub fn new(username: impl Into<String>, grants: Vec<Grant>) -> Self {
        Identity {
            username: username.into(),
            grants,
            webhook: None,
            metrics_only: false,
        }
    }

    /// The caller of a DAG source's webhook (`POST /api/v2/sources/{name}/sync` signed with
    /// the source's secret): no grants; it may sync `source` alone.
    pub fn webhook(source: &str) -> Self {
        Identity {
            username: format!("webhook:{source}"),
            grants: Vec::new(),
            webhook: Some(source.to_string()),
            metrics_only: false,
        }
    }

    /// The caller presenting `[auth] metrics_token` at `/metrics`: no grants; it may read the
    /// metrics alone.
    pub fn metrics_scraper() -> Self {
        Identity {
            username: "metrics-scraper".to_string(),
            grants: Vec::new(),
            webhook: None,
            metrics_only: true,
        }
    }

    /// The caller when authentication is turned off (allowed on loopback only): an Admin of
    /// every tenant.
    pub fn local_admin() -> Self {
        Identity::new("admin", vec![Grant::everywhere(Role::Admin)])
    }

    /// The strongest role this identity holds for `tenant`; `None` when it holds none there
    /// (then it may not even learn that the tenant's objects exist).
    pub fn role_in(&self, tenant: &str) -> Option<Role> {
        self.grants
            .iter()
            .filter(|grant| grant.covers(tenant))
            .map(|grant| grant.role)
            .max()
    }

    /// The strongest role held for every tenant at once.
    pub fn global_role(&self) -> Option<Role> {
        self.grants
            .iter()
            .filter(|grant| grant.tenant.is_none())
            .map(|grant| grant.role)
            .max()
    }

    /// The strongest role held anywhere.
    pub fn strongest_role(&self) -> Option<Role> {
        self.grants.iter().map(|grant| grant.role).max()
    }

    /// The tenants whose objects this identity may see with at least `role`, for restricting
    /// listings: `None` means every tenant.
    pub fn tenants_with(&self, role: Role) -> Option<Vec<String>> {
        if self.global_role().is_some_and(|held| held >= role) {
            return None;
        }
        let mut tenants: Vec<String> = self
            .grants
            .iter()
            .filter(|grant| grant.role >= role)
            .filter_map(|grant| grant.tenant.clone())
            .collect();
        tenants.sort();
        tenants.dedup();
        Some(tenants)
    }

    /// The tenants whose objects this identity may see at all (Viewer or stronger).
    pub fn visible_tenants(&self) -> Option<Vec<String>> {
        self.tenants_with(Role::Viewer)
    }
}
