//! The one authorization decision: may this identity do this to that?

use crate::{Identity, Role};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    /// Pause, clear, mark, set notes, edit pools, connections, variables.
    Edit,
    /// Trigger a DAG run; sync a DAG source.
    Trigger,
    /// Create a pool, connection, variable or user.
    Create,
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource<'a> {
    /// A DAG and everything under it: runs, task instances, tries, logs, source, versions,
    /// its live events.
    Dag { tenant: &'a str, dag_id: &'a str },
    /// The XComs of a DAG's runs: read as the DAG; written (the API's `POST`/`PATCH`) by
    /// an Op, as Airflow's XCom permissions have it.
    XCom { tenant: &'a str, dag_id: &'a str },
    /// The list of DAGs; each item is still decided as [`Resource::Dag`].
    Dags,
    /// A file's import error, owned by the tenant of the folder the file is in.
    ImportError { tenant: &'a str },
    /// The list of import errors; each item is still decided as [`Resource::ImportError`].
    ImportErrors,
    /// A pool: a tenant's own, or shared by every tenant (`tenant: None`).
    Pool { tenant: Option<&'a str> },
    /// The list of pools; each item is still decided as [`Resource::Pool`].
    Pools,
    /// A connection of a tenant; a shared one (of every tenant) is `tenant: "*"`, which only
    /// a grant for every tenant covers.
    Connection { tenant: &'a str },
    /// The list of connections; each item is still decided as [`Resource::Connection`].
    Connections,
    /// A variable of a tenant; a shared one is `tenant: "*"`, as for connections.
    Variable { tenant: &'a str },
    /// The list of variables; each item is still decided as [`Resource::Variable`].
    Variables,
    /// A DAG source (Airflow's DAG bundle) named `name`: of one tenant, or mounted at the root
    /// (`tenant: None`), where folder names give the tenants of its DAGs.
    Source {
        tenant: Option<&'a str>,
        name: &'a str,
    },
    /// The list of DAG sources; each item is still decided as [`Resource::Source`].
    Sources,
    /// An asset of a tenant (a URI names one asset within its tenant) and its events.
    Asset { tenant: &'a str },
    /// The lists of assets and of asset events; each item is still decided as
    /// [`Resource::Asset`].
    Assets,
    /// The server's configuration.
    Config,
    /// Users, their grants, and the roles.
    Users,
    /// The audit log's entries about one tenant's objects, or about none (`tenant: None`: users,
    /// shared pools).
    AuditLog { tenant: Option<&'a str> },
    /// The audit log as a list; each entry is still decided as [`Resource::AuditLog`].
    AuditLogs,
    /// The process's Prometheus metrics: they name every tenant's DAGs and pools, so only
    /// a role for every tenant reads them.
    Metrics,
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
    // Health is for load balancers; the version for anyone signed in (authentication, not
    // this decision, keeps strangers out).
    if matches!(resource, Resource::Health | Resource::Version) {
        return Decision::Allow;
    }
    if let Some(source) = &identity.webhook {
        return webhook_decision(source, action, resource);
    }
    if identity.metrics_only {
        return match (action, resource) {
            (Action::Read, Resource::Metrics) => Decision::Allow,
            _ => Decision::Forbid,
        };
    }
    let held = match tenant_of(resource) {
        Some(tenant) => match identity.role_in(tenant) {
            Some(role) if role > Role::Public => role,
            _ => return Decision::Hide,
        },
        None if is_listing(resource) => identity.strongest_role().unwrap_or(Role::Public),
        None if is_shared_with_every_tenant(resource) && action == Action::Read => {
            identity.strongest_role().unwrap_or(Role::Public)
        }
        None => identity.global_role().unwrap_or(Role::Public),
    };
    match needed(action, resource) {
        Some(needed) if held >= needed => Decision::Allow,
        _ => Decision::Forbid,
    }
}

/// A source's webhook may sync that source, and nothing else.
fn webhook_decision(source: &str, action: Action, resource: Resource<'_>) -> Decision {
    match (action, resource) {
        (Action::Trigger, Resource::Source { name, .. }) if name == source => Decision::Allow,
        _ => Decision::Forbid,
    }
}

fn tenant_of(resource: Resource<'_>) -> Option<&str> {
    match resource {
        Resource::Dag { tenant, .. }
        | Resource::XCom { tenant, .. }
        | Resource::ImportError { tenant }
        | Resource::Connection { tenant }
        | Resource::Variable { tenant }
        | Resource::Asset { tenant } => Some(tenant),
        Resource::Pool { tenant }
        | Resource::AuditLog { tenant }
        | Resource::Source { tenant, .. } => tenant,
        _ => None,
    }
}

/// Objects of no tenant that every tenant uses, so a role in any tenant may read them: shared
/// pools, DAG sources mounted at the root.
fn is_shared_with_every_tenant(resource: Resource<'_>) -> bool {
    matches!(
        resource,
        Resource::Pool { tenant: None } | Resource::Source { tenant: None, .. }
    )
}

fn is_listing(resource: Resource<'_>) -> bool {
    matches!(
        resource,
        Resource::Dags
            | Resource::ImportErrors
            | Resource::Pools
            | Resource::AuditLogs
            | Resource::Connections
            | Resource::Variables
            | Resource::Sources
            | Resource::Assets
    )
}

/// The weakest role that may do `action` on `resource`; `None` when no role may.
fn needed(action: Action, resource: Resource<'_>) -> Option<Role> {
    use Action::*;
    match (resource, action) {
        (Resource::Health | Resource::Version, Read) => Some(Role::Public),
        (Resource::Dag { .. }, Read) => Some(Role::Viewer),
        (Resource::Dag { .. }, Edit | Trigger | Delete) => Some(Role::User),
        (Resource::XCom { .. }, Read) => Some(Role::Viewer),
        (Resource::XCom { .. }, Create | Edit) => Some(Role::Op),
        (Resource::Dags, Read) => Some(Role::Viewer),
        (Resource::Dags, Edit) => Some(Role::User),
        (Resource::ImportError { .. } | Resource::ImportErrors, Read) => Some(Role::Viewer),
        (Resource::Pool { .. } | Resource::Pools, Read) => Some(Role::Viewer),
        (Resource::Pool { .. } | Resource::Pools, Edit | Create | Delete) => Some(Role::Op),
        (
            Resource::Connection { .. }
            | Resource::Connections
            | Resource::Variable { .. }
            | Resource::Variables,
            _,
        ) => Some(Role::Op),
        (Resource::Source { .. } | Resource::Sources, Read) => Some(Role::Viewer),
        (Resource::Source { .. }, Trigger) => Some(Role::Op),
        (Resource::Asset { .. } | Resource::Assets, Read) => Some(Role::Viewer),
        // An asset event recorded by hand triggers the tenant's consumers.
        (Resource::Asset { .. }, Create) => Some(Role::Op),
        (Resource::Config, Read) => Some(Role::Op),
        (Resource::Metrics, Read) => Some(Role::Viewer),
        (Resource::Users, _) => Some(Role::Admin),
        (Resource::AuditLog { .. } | Resource::AuditLogs, Read) => Some(Role::Admin),
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
    fn xcoms_are_read_as_their_dag_and_written_by_ops() {
        let xcom = Resource::XCom {
            tenant: "a",
            dag_id: "d",
        };
        let user = Identity::new("u", vec![Grant::for_tenant(Role::User, "a")]);
        assert_eq!(decide(&user, Action::Read, xcom), Decision::Allow);
        assert_eq!(decide(&user, Action::Create, xcom), Decision::Forbid);
        let op = Identity::new("o", vec![Grant::for_tenant(Role::Op, "a")]);
        assert_eq!(decide(&op, Action::Create, xcom), Decision::Allow);
        assert_eq!(decide(&op, Action::Edit, xcom), Decision::Allow);
        assert_eq!(decide(&op, Action::Delete, xcom), Decision::Forbid);
        let other = Identity::new("x", vec![Grant::for_tenant(Role::Admin, "b")]);
        assert_eq!(decide(&other, Action::Read, xcom), Decision::Hide);
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
    fn the_metrics_scraper_reads_the_metrics_and_nothing_else() {
        let scraper = Identity::metrics_scraper();
        assert_eq!(
            decide(&scraper, Action::Read, Resource::Metrics),
            Decision::Allow
        );
        for resource in [
            Resource::Dags,
            Resource::Config,
            Resource::Pools,
            Resource::Dag {
                tenant: "a",
                dag_id: "etl",
            },
        ] {
            assert_eq!(
                decide(&scraper, Action::Read, resource),
                Decision::Forbid,
                "{resource:?}"
            );
        }
    }

    #[test]
    fn metrics_need_a_role_for_every_tenant() {
        let tenant_admin = Identity::new("t", vec![Grant::for_tenant(Role::Admin, "a")]);
        assert_eq!(
            decide(&tenant_admin, Action::Read, Resource::Metrics),
            Decision::Forbid
        );
        let viewer = Identity::new("v", vec![Grant::everywhere(Role::Viewer)]);
        assert_eq!(
            decide(&viewer, Action::Read, Resource::Metrics),
            Decision::Allow
        );
        let public = Identity::new("p", vec![Grant::everywhere(Role::Public)]);
        assert_eq!(
            decide(&public, Action::Read, Resource::Metrics),
            Decision::Forbid
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
            Decision::Allow
        );
        assert_eq!(
            decide(&nobody, Action::Read, Resource::Dags),
            Decision::Forbid
        );
    }

    #[test]
    fn airflow_roles_add_up() {
        let role = |role| Identity::new("r", vec![Grant::everywhere(role)]);
        let may = |r, action, resource| decide(&role(r), action, resource).allowed();
        // Viewer reads DAGs, pools and import errors.
        assert!(may(Role::Viewer, Action::Read, dag("a")));
        assert!(may(Role::Viewer, Action::Read, Resource::Pools));
        assert!(may(Role::Viewer, Action::Read, Resource::ImportErrors));
        assert!(!may(Role::Viewer, Action::Edit, dag("a")));
        // User triggers, clears, marks, pauses, deletes runs; no pools.
        for action in [Action::Trigger, Action::Edit, Action::Delete] {
            assert!(may(Role::User, action, dag("a")));
        }
        assert!(!may(
            Role::User,
            Action::Create,
            Resource::Pool { tenant: None }
        ));
        assert!(!may(Role::User, Action::Read, Resource::Config));
        // Op: pools, connections, variables, configuration; not users nor the audit log.
        assert!(may(
            Role::Op,
            Action::Create,
            Resource::Pool { tenant: None }
        ));
        assert!(may(
            Role::Op,
            Action::Delete,
            Resource::Pool { tenant: Some("a") }
        ));
        assert!(may(
            Role::Op,
            Action::Edit,
            Resource::Connection { tenant: "a" }
        ));
        assert!(may(
            Role::Op,
            Action::Edit,
            Resource::Variable { tenant: "a" }
        ));
        assert!(may(Role::Op, Action::Read, Resource::Config));
        assert!(!may(Role::Op, Action::Read, Resource::Users));
        assert!(!may(Role::Op, Action::Read, Resource::AuditLogs));
        // Admin: users, roles, the audit log.
        assert!(may(Role::Admin, Action::Create, Resource::Users));
        assert!(may(Role::Admin, Action::Read, Resource::AuditLogs));
        assert!(may(
            Role::Admin,
            Action::Read,
            Resource::AuditLog { tenant: None }
        ));
    }

    #[test]
    fn tenant_admins_read_their_tenants_audit_entries_only() {
        let admin_a = Identity::new("a", vec![Grant::for_tenant(Role::Admin, "a")]);
        let entry = |tenant| Resource::AuditLog { tenant };
        assert_eq!(
            decide(&admin_a, Action::Read, Resource::AuditLogs),
            Decision::Allow
        );
        assert_eq!(
            decide(&admin_a, Action::Read, entry(Some("a"))),
            Decision::Allow
        );
        assert_eq!(
            decide(&admin_a, Action::Read, entry(Some("b"))),
            Decision::Hide
        );
        assert_eq!(
            decide(&admin_a, Action::Read, entry(None)),
            Decision::Forbid
        );
        let viewer_a = Identity::new("v", vec![Grant::for_tenant(Role::Viewer, "a")]);
        assert_eq!(
            decide(&viewer_a, Action::Read, entry(Some("a"))),
            Decision::Forbid
        );
    }

    #[test]
    fn shared_connections_and_variables_need_a_grant_for_every_tenant() {
        let op_a = Identity::new("a", vec![Grant::for_tenant(Role::Op, "a")]);
        let op = Identity::new("o", vec![Grant::everywhere(Role::Op)]);
        let shared = Resource::Connection { tenant: "*" };
        assert_eq!(decide(&op_a, Action::Read, shared), Decision::Hide);
        assert_eq!(decide(&op, Action::Edit, shared), Decision::Allow);
        assert_eq!(
            decide(&op_a, Action::Read, Resource::Variable { tenant: "a" }),
            Decision::Allow
        );
        assert_eq!(
            decide(&op_a, Action::Read, Resource::Connections),
            Decision::Allow
        );
        let viewer = Identity::new("v", vec![Grant::everywhere(Role::Viewer)]);
        assert_eq!(
            decide(&viewer, Action::Read, Resource::Variables),
            Decision::Forbid
        );
    }

    #[test]
    fn tenant_ops_manage_their_own_pools_and_only_read_shared_ones() {
        let op_a = Identity::new("o", vec![Grant::for_tenant(Role::Op, "a")]);
        let pool = |tenant| Resource::Pool { tenant };
        assert_eq!(
            decide(&op_a, Action::Create, pool(Some("a"))),
            Decision::Allow
        );
        assert_eq!(
            decide(&op_a, Action::Delete, pool(Some("a"))),
            Decision::Allow
        );
        assert_eq!(decide(&op_a, Action::Read, pool(None)), Decision::Allow);
        assert_eq!(decide(&op_a, Action::Edit, pool(None)), Decision::Forbid);
        assert_eq!(decide(&op_a, Action::Read, pool(Some("b"))), Decision::Hide);
        assert_eq!(
            decide(&op_a, Action::Create, pool(Some("b"))),
            Decision::Hide
        );
    }

    #[test]
    fn sources_are_read_by_their_tenant_and_synced_by_its_ops() {
        let source = |tenant| Resource::Source {
            tenant,
            name: "dags",
        };
        let viewer_a = Identity::new("v", vec![Grant::for_tenant(Role::Viewer, "a")]);
        let op_a = Identity::new("o", vec![Grant::for_tenant(Role::Op, "a")]);
        let op = Identity::new("g", vec![Grant::everywhere(Role::Op)]);
        assert_eq!(
            decide(&viewer_a, Action::Read, source(Some("a"))),
            Decision::Allow
        );
        assert_eq!(
            decide(&viewer_a, Action::Trigger, source(Some("a"))),
            Decision::Forbid
        );
        assert_eq!(
            decide(&viewer_a, Action::Read, source(Some("b"))),
            Decision::Hide
        );
        assert_eq!(
            decide(&op_a, Action::Trigger, source(Some("a"))),
            Decision::Allow
        );
        // Mounted at the root: read with a role in any tenant, synced by a global Op.
        assert_eq!(
            decide(&viewer_a, Action::Read, source(None)),
            Decision::Allow
        );
        assert_eq!(
            decide(&op_a, Action::Trigger, source(None)),
            Decision::Forbid
        );
        assert_eq!(decide(&op, Action::Trigger, source(None)), Decision::Allow);
        let public = Identity::new("p", vec![Grant::for_tenant(Role::Public, "a")]);
        assert_eq!(
            decide(&public, Action::Read, source(None)),
            Decision::Forbid
        );
        assert_eq!(
            decide(&viewer_a, Action::Read, Resource::Sources),
            Decision::Allow
        );
        assert!(!decide(&op, Action::Delete, source(None)).allowed());
    }

    #[test]
    fn a_webhook_syncs_its_own_source_and_nothing_else() {
        let hook = Identity::webhook("platform");
        let source = |tenant, name| Resource::Source { tenant, name };
        assert_eq!(
            decide(&hook, Action::Trigger, source(None, "platform")),
            Decision::Allow
        );
        assert_eq!(
            decide(&hook, Action::Trigger, source(Some("a"), "platform")),
            Decision::Allow
        );
        for (action, resource) in [
            (Action::Trigger, source(None, "other")),
            (Action::Read, source(None, "platform")),
            (Action::Read, Resource::Sources),
            (Action::Trigger, dag("a")),
            (Action::Read, dag("a")),
            (Action::Create, Resource::Users),
        ] {
            assert_eq!(
                decide(&hook, action, resource),
                Decision::Forbid,
                "{action:?} {resource:?}"
            );
        }
        // Grants do not widen it.
        let mut granted = Identity::webhook("platform");
        granted.grants.push(Grant::everywhere(Role::Admin));
        assert_eq!(decide(&granted, Action::Read, dag("a")), Decision::Forbid);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        const TENANTS: [&str; 3] = ["a", "b", "c"];
        const ACTIONS: [Action; 5] = [
            Action::Read,
            Action::Edit,
            Action::Trigger,
            Action::Create,
            Action::Delete,
        ];

        fn role() -> impl Strategy<Value = Role> {
            prop::sample::select(Role::ALL.to_vec())
        }

        fn grant() -> impl Strategy<Value = Grant> {
            (
                role(),
                prop::option::of(prop::sample::select(TENANTS.to_vec())),
            )
                .prop_map(|(role, tenant)| match tenant {
                    Some(tenant) => Grant::for_tenant(role, tenant),
                    None => Grant::everywhere(role),
                })
        }

        fn action() -> impl Strategy<Value = Action> {
            prop::sample::select(ACTIONS.to_vec())
        }

        fn resource() -> impl Strategy<Value = Resource<'static>> {
            let tenant = prop::sample::select(TENANTS.to_vec());
            prop_oneof![
                tenant.clone().prop_map(|tenant| Resource::Dag {
                    tenant,
                    dag_id: "d"
                }),
                Just(Resource::Dags),
                tenant
                    .clone()
                    .prop_map(|tenant| Resource::ImportError { tenant }),
                Just(Resource::ImportErrors),
                prop::option::of(tenant.clone()).prop_map(|tenant| Resource::Pool { tenant }),
                Just(Resource::Pools),
                tenant
                    .clone()
                    .prop_map(|tenant| Resource::Connection { tenant }),
                tenant
                    .clone()
                    .prop_map(|tenant| Resource::Variable { tenant }),
                Just(Resource::Config),
                Just(Resource::Users),
                prop::option::of(tenant.clone()).prop_map(|tenant| Resource::AuditLog { tenant }),
                Just(Resource::AuditLogs),
                prop::option::of(tenant).prop_map(|tenant| Resource::Source { tenant, name: "s" }),
                Just(Resource::Sources),
                Just(Resource::Version),
                Just(Resource::Health),
            ]
        }

        proptest! {
            /// An object of a tenant the caller holds no role in is never allowed, and never
            /// refused in a way that tells it exists.
            #[test]
            fn other_tenants_objects_are_always_hidden(
                grants in prop::collection::vec(grant(), 0..4),
                action in action(),
                resource in resource(),
            ) {
                let identity = Identity::new("x", grants);
                if let Some(tenant) = tenant_of(resource)
                    && identity.role_in(tenant).is_none_or(|role| role == Role::Public)
                {
                    prop_assert_eq!(decide(&identity, action, resource), Decision::Hide);
                }
            }

            /// Raising a grant's role never takes a permission away.
            #[test]
            fn a_stronger_role_never_loses_a_permission(
                grants in prop::collection::vec(grant(), 1..4),
                raised in role(),
                action in action(),
                resource in resource(),
            ) {
                let weaker = Identity::new("x", grants.clone());
                let mut stronger_grants = grants;
                stronger_grants[0].role = stronger_grants[0].role.max(raised);
                let stronger = Identity::new("x", stronger_grants);
                if decide(&weaker, action, resource).allowed() {
                    prop_assert!(decide(&stronger, action, resource).allowed());
                }
            }

            /// Grants for one tenant decide nothing about another tenant's objects.
            #[test]
            fn a_tenant_grant_changes_nothing_elsewhere(
                grants in prop::collection::vec(grant(), 0..4),
                extra in role(),
                action in action(),
                resource in resource(),
            ) {
                let Some(tenant) = tenant_of(resource) else { return Ok(()) };
                let other = TENANTS.iter().find(|t| **t != tenant).copied().unwrap_or("z");
                let without = Identity::new("x", grants.clone());
                let mut more = grants;
                more.push(Grant::for_tenant(extra, other));
                let with = Identity::new("x", more);
                prop_assert_eq!(decide(&without, action, resource), decide(&with, action, resource));
            }
        }
    }
}
