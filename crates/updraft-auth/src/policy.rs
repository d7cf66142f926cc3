//! The one authorization decision: may this identity do this to that?

use crate::{Identity, Role};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    /// Pause, clear, mark, set notes, edit pools, connections, variables.
    Edit,
    Trigger,
    /// Create a pool, connection, variable or user.
    Create,
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource<'a> {
    /// A DAG and everything under it: runs, task instances, tries, logs, source, versions,
    /// its live events.
    Dag {
        tenant: &'a str,
        dag_id: &'a str,
    },
    /// The list of DAGs; each item is still decided as [`Resource::Dag`].
    Dags,
    /// A file's import error, owned by the tenant of the folder the file is in.
    ImportError {
        tenant: &'a str,
    },
    /// The list of import errors; each item is still decided as [`Resource::ImportError`].
    ImportErrors,
    /// A pool: a tenant's own, or shared by every tenant (`tenant: None`).
    Pool {
        tenant: Option<&'a str>,
    },
    /// The list of pools; each item is still decided as [`Resource::Pool`].
    Pools,
    Connection {
        tenant: &'a str,
    },
    Variable {
        tenant: &'a str,
    },
    /// The server's configuration.
    Config,
    /// Users, their grants, and the roles.
    Users,
    /// The audit log's entries about one tenant's objects, or about none (`tenant: None`: users,
    /// shared pools).
    AuditLog {
        tenant: Option<&'a str>,
    },
    /// The version: anyone signed in.
    Version,
    /// The health check: anyone, signed in or not (load balancers).
    Health,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// The caller may know the object exists, but not do this (HTTP 403).
    Forbid,
    /// The caller may not know the object exists (HTTP 404).
    Hide,
}

impl Decision {
    pub fn allowed(self) -> bool {
        self == Decision::Allow
    }
}

/// May `identity` do `action` on `resource`?
///
/// An object of a tenant the identity holds no role in (or only Public) is hidden: the
/// caller cannot tell it from one that does not exist. Otherwise the role held for the
/// object's tenant (or, for objects of no tenant, the role held for every tenant) must be at
/// least the one the action needs.
pub fn decide(identity: &Identity, action: Action, resource: Resource<'_>) -> Decision {
    if resource == Resource::Health {
        return Decision::Allow;
    }
    let held = match tenant_of(resource) {
        Some(tenant) => match identity.role_in(tenant) {
            Some(role) if role > Role::Public => role,
            _ => return Decision::Hide,
        },
        None if is_listing(resource) || resource == Resource::Version => {
            identity.strongest_role().unwrap_or(Role::Public)
        }
        None if matches!(resource, Resource::Pool { tenant: None }) && action == Action::Read => {
            identity.strongest_role().unwrap_or(Role::Public)
        }
        None => identity.global_role().unwrap_or(Role::Public),
    };
    match needed(action, resource) {
        Some(needed) if held >= needed => Decision::Allow,
        _ => Decision::Forbid,
    }
}

fn tenant_of(resource: Resource<'_>) -> Option<&str> {
    match resource {
        Resource::Dag { tenant, .. }
        | Resource::ImportError { tenant }
        | Resource::Connection { tenant }
        | Resource::Variable { tenant } => Some(tenant),
        Resource::Pool { tenant } | Resource::AuditLog { tenant } => tenant,
        _ => None,
    }
}

fn is_listing(resource: Resource<'_>) -> bool {
    matches!(
        resource,
        Resource::Dags | Resource::ImportErrors | Resource::Pools
    )
}

/// The weakest role that may do `action` on `resource`; `None` when no role may.
fn needed(action: Action, resource: Resource<'_>) -> Option<Role> {
    use Action::*;
    match (resource, action) {
        (Resource::Health, _) => Some(Role::Public),
        (Resource::Version, Read) => Some(Role::Viewer),
        (Resource::Dag { .. }, Read) => Some(Role::Viewer),
        (Resource::Dag { .. }, Edit | Trigger | Delete) => Some(Role::User),
        (Resource::Dags, Read) => Some(Role::Viewer),
        (Resource::Dags, Edit) => Some(Role::User),
        (Resource::ImportError { .. } | Resource::ImportErrors, Read) => Some(Role::Viewer),
        (Resource::Pool { .. } | Resource::Pools, Read) => Some(Role::Viewer),
        (Resource::Pool { .. } | Resource::Pools, Edit | Create | Delete) => Some(Role::Op),
        (Resource::Connection { .. } | Resource::Variable { .. }, _) => Some(Role::Op),
        (Resource::Config, Read) => Some(Role::Op),
        (Resource::Users, _) => Some(Role::Admin),
        (Resource::AuditLog { .. }, Read) => Some(Role::Admin),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Grant;

    fn dag(tenant: &str) -> Resource<'_> {
        Resource::Dag {
            tenant,
            dag_id: "d",
        }
    }

    #[test]
    fn viewers_only_read() {
        let viewer = Identity::new("v", vec![Grant::everywhere(Role::Viewer)]);
        assert_eq!(decide(&viewer, Action::Read, dag("a")), Decision::Allow);
        assert_eq!(decide(&viewer, Action::Trigger, dag("a")), Decision::Forbid);
        assert_eq!(
            decide(&viewer, Action::Edit, Resource::Pools),
            Decision::Forbid
        );
    }

    #[test]
    fn other_tenants_are_hidden_not_forbidden() {
        let user = Identity::new("u", vec![Grant::for_tenant(Role::User, "a")]);
        assert_eq!(decide(&user, Action::Trigger, dag("a")), Decision::Allow);
        assert_eq!(decide(&user, Action::Read, dag("b")), Decision::Hide);
        let public = Identity::new("p", vec![Grant::for_tenant(Role::Public, "a")]);
        assert_eq!(decide(&public, Action::Read, dag("a")), Decision::Hide);
    }

    #[test]
    fn tenant_grants_add_to_global_ones() {
        let mixed = Identity::new(
            "m",
            vec![
                Grant::everywhere(Role::Viewer),
                Grant::for_tenant(Role::Op, "a"),
            ],
        );
        assert_eq!(decide(&mixed, Action::Trigger, dag("a")), Decision::Allow);
        assert_eq!(decide(&mixed, Action::Trigger, dag("b")), Decision::Forbid);
        assert_eq!(decide(&mixed, Action::Read, dag("b")), Decision::Allow);
    }

    #[test]
    fn objects_of_no_tenant_need_a_global_role() {
        let tenant_admin = Identity::new("t", vec![Grant::for_tenant(Role::Admin, "a")]);
        assert_eq!(
            decide(&tenant_admin, Action::Create, Resource::Users),
            Decision::Forbid
        );
        assert_eq!(
            decide(&tenant_admin, Action::Edit, Resource::Pool { tenant: None }),
            Decision::Forbid
        );
        assert_eq!(
            decide(&tenant_admin, Action::Read, Resource::Pool { tenant: None }),
            Decision::Allow
        );
        assert_eq!(
            decide(
                &tenant_admin,
                Action::Edit,
                Resource::Pool { tenant: Some("a") }
            ),
            Decision::Allow
        );
        assert_eq!(
            decide(&tenant_admin, Action::Read, Resource::Version),
            Decision::Allow
        );
        let admin = Identity::local_admin();
        assert_eq!(
            decide(&admin, Action::Create, Resource::Users),
            Decision::Allow
        );
    }

    #[test]
    fn health_is_open_to_anyone() {
        let nobody = Identity::new("n", vec![]);
        assert_eq!(
            decide(&nobody, Action::Read, Resource::Health),
            Decision::Allow
        );
        assert_eq!(
            decide(&nobody, Action::Read, Resource::Version),
            Decision::Forbid
        );
    }
}
