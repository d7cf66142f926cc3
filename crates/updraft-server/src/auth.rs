//! Authorization: one function every API and UI handler calls with the caller's identity.
//! Until authentication exists, every caller is the local admin, and the server only listens
//! on loopback addresses.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::error::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Admin,
    Op,
    User,
    Viewer,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub username: String,
    pub role: Role,
    /// Tenants this identity may see; `None` means all.
    pub tenants: Option<Vec<String>>,
}

impl Identity {
    pub fn local_admin() -> Self {
        Identity {
            username: "admin".to_string(),
            role: Role::Admin,
            tenants: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    /// Pause, clear, set state, edit pools.
    Edit,
    Trigger,
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource<'a> {
    /// A DAG and everything under it (runs, task instances, logs, source).
    Dag {
        tenant: &'a str,
        dag_id: &'a str,
    },
    /// The list of DAGs (each item still filtered by `Resource::Dag`).
    Dags,
    Pools,
    ImportErrors,
    Health,
}

/// May `identity` do `action` on `resource`?
pub fn authorize(
    identity: &Identity,
    action: Action,
    resource: Resource<'_>,
) -> Result<(), ApiError> {
    if let (Resource::Dag { tenant, .. }, Some(allowed)) = (resource, &identity.tenants)
        && !allowed.iter().any(|t| t == tenant)
    {
        return Err(ApiError::forbidden("not allowed for this tenant"));
    }
    // Airflow's roles: Op and Admin manage everything; User works on DAGs and reads the rest.
    let allowed = match identity.role {
        Role::Admin | Role::Op => true,
        Role::User => action == Action::Read || matches!(resource, Resource::Dag { .. }),
        Role::Viewer => action == Action::Read,
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "{} may not {action:?} {resource:?}",
            identity.username
        )))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Identity {
    type Rejection = ApiError;

    /// The identity an authentication layer put in the request's extensions; without one
    /// (no authentication configured), the local admin.
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Identity>()
            .cloned()
            .unwrap_or_else(Identity::local_admin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viewers_only_read() {
        let viewer = Identity {
            role: Role::Viewer,
            ..Identity::local_admin()
        };
        let dag = Resource::Dag {
            tenant: "default",
            dag_id: "d",
        };
        assert!(authorize(&viewer, Action::Read, dag).is_ok());
        assert!(authorize(&viewer, Action::Trigger, dag).is_err());
    }

    #[test]
    fn tenant_lists_restrict_dags() {
        let scoped = Identity {
            tenants: Some(vec!["team_a".to_string()]),
            ..Identity::local_admin()
        };
        let theirs = Resource::Dag {
            tenant: "team_a",
            dag_id: "d",
        };
        let others = Resource::Dag {
            tenant: "team_b",
            dag_id: "d",
        };
        assert!(authorize(&scoped, Action::Read, theirs).is_ok());
        assert!(authorize(&scoped, Action::Read, others).is_err());
    }
}
