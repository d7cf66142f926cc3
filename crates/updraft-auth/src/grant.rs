//! Roles and the grants that give them to a user, for one tenant or for all.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Airflow's roles, weakest first: each holds every permission of the ones before it.
///
/// - Public: nothing.
/// - Viewer: read DAGs, runs, task instances, logs, sources, pools, import errors.
/// - User: + trigger, clear, mark, pause, delete runs.
/// - Op: + pools, connections, variables, configuration.
/// - Admin: + users, roles, the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    Public,
    Viewer,
    User,
    Op,
    Admin,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Public,
        Role::Viewer,
        Role::User,
        Role::Op,
        Role::Admin,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Role::Public => "Public",
            Role::Viewer => "Viewer",
            Role::User => "User",
            Role::Op => "Op",
            Role::Admin => "Admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = GrantParseError;

    /// Role names as Airflow spells them; case is ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| GrantParseError::UnknownRole(s.to_string()))
    }
}

/// A role held for one tenant, or for every tenant (`tenant: None`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Grant {
    pub role: Role,
    pub tenant: Option<String>,
}

impl Grant {
    pub fn everywhere(role: Role) -> Self {
        Grant { role, tenant: None }
    }

    pub fn for_tenant(role: Role, tenant: impl Into<String>) -> Self {
        Grant {
            role,
            tenant: Some(tenant.into()),
        }
    }

    /// Whether this grant covers `tenant`.
    pub fn covers(&self, tenant: &str) -> bool {
        self.tenant.as_deref().is_none_or(|t| t == tenant)
    }
}

impl fmt::Display for Grant {
    /// `Role@tenant`, or `Role@*` for every tenant.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.role, self.tenant.as_deref().unwrap_or("*"))
    }
}

impl FromStr for Grant {
    type Err = GrantParseError;

    /// `Role`, `Role@*` (every tenant) or `Role@tenant`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (role, tenant) = match s.split_once('@') {
            Some((role, tenant)) => (role, Some(tenant.trim())),
            None => (s, None),
        };
        let role = role.parse()?;
        match tenant {
            None | Some("*") => Ok(Grant::everywhere(role)),
            Some("") => Err(GrantParseError::EmptyTenant(s.to_string())),
            Some(tenant) => Ok(Grant::for_tenant(role, tenant)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantParseError {
    #[error("unknown role `{0}` (roles: Public, Viewer, User, Op, Admin)")]
    UnknownRole(String),
    #[error("grant `{0}` names an empty tenant (write `Role@tenant`, or `Role@*` for all)")]
    EmptyTenant(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_parse_and_print() {
        assert_eq!(
            "user".parse::<Grant>().unwrap(),
            Grant::everywhere(Role::User)
        );
        assert_eq!(
            "Op@*".parse::<Grant>().unwrap(),
            Grant::everywhere(Role::Op)
        );
        assert_eq!(
            "Viewer@team_a".parse::<Grant>().unwrap(),
            Grant::for_tenant(Role::Viewer, "team_a")
        );
        assert_eq!(
            Grant::for_tenant(Role::Viewer, "team_a").to_string(),
            "Viewer@team_a"
        );
        assert_eq!(Grant::everywhere(Role::Admin).to_string(), "Admin@*");
        assert!("Root".parse::<Grant>().is_err());
        assert!("User@".parse::<Grant>().is_err());
    }

    #[test]
    fn roles_are_ordered_by_power() {
        assert!(Role::Public < Role::Viewer);
        assert!(Role::Viewer < Role::User);
        assert!(Role::User < Role::Op);
        assert!(Role::Op < Role::Admin);
    }
}
