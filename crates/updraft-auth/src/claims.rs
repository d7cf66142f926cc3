//! Roles from an identity provider's token claims.
//!
//! - [`ClaimPath`]: where the role names are in a token's claims (`resource_access.airflow.roles`,
//!   `groups`, `realm_access.roles`: dots separate keys).
//! - [`RoleMapping`]: which grants each claim value gives (`viewer -> [Admin]`,
//!   `team-a-dev -> [User@team_a]`), and the grant of a user no value maps (or none: then
//!   such a user may not sign in).
//!
//! Pure: the callers verify tokens and read claims; this only reads the JSON they decoded.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use crate::{Grant, GrantParseError};

/// A path of keys into a JSON claims object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath(Vec<String>);

impl ClaimPath {
    /// The strings at this path: a string value gives one, an array gives its string items;
    /// anything else (missing, a number, an object) gives none.
    pub fn values(&self, claims: &Value) -> Vec<String> {
        let found = self
            .0
            .iter()
            .try_fold(claims, |value, key| value.as_object()?.get(key));
        match found {
            Some(Value::String(one)) => vec![one.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    }
}

impl FromStr for ClaimPath {
    type Err = ClaimPathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let keys: Vec<String> = s.split('.').map(|key| key.trim().to_string()).collect();
        if keys.iter().any(String::is_empty) {
            return Err(ClaimPathError(s.to_string()));
        }
        Ok(ClaimPath(keys))
    }
}

impl fmt::Display for ClaimPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "claim path `{0}` has an empty key (write keys separated by dots, e.g. `resource_access.airflow.roles`)"
)]
pub struct ClaimPathError(String);

/// Claim values to grants, and the grant of users no value maps.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoleMapping {
    table: BTreeMap<String, Vec<Grant>>,
    default: Option<Grant>,
}

impl RoleMapping {
    /// From the configured table (`value -> ["Role@tenant", ...]`) and default grant.
    pub fn parse(
        table: &BTreeMap<String, Vec<String>>,
        default: Option<&str>,
    ) -> Result<RoleMapping, GrantParseError> {
        let table = table
            .iter()
            .map(|(value, grants)| {
                let grants = grants
                    .iter()
                    .map(|g| g.parse())
                    .collect::<Result<Vec<Grant>, _>>()?;
                Ok((value.clone(), grants))
            })
            .collect::<Result<_, GrantParseError>>()?;
        let default = default
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(str::parse)
            .transpose()?;
        Ok(RoleMapping { table, default })
    }

    pub fn new(table: BTreeMap<String, Vec<Grant>>, default: Option<Grant>) -> RoleMapping {
        RoleMapping { table, default }
    }

    /// The grants `values` give: every mapped value's grants together, sorted and without
    /// repeats; the default grant when none is mapped; [`Unmapped`] when there is no default
    /// either. Values match the table exactly (case matters, as in the provider).
    pub fn grants_for(&self, values: &[String]) -> Result<Vec<Grant>, Unmapped> {
        let mut grants: Vec<Grant> = values
            .iter()
            .filter_map(|value| self.table.get(value))
            .flatten()
            .cloned()
            .collect();
        if grants.is_empty() {
            grants.extend(self.default.clone());
        }
        if grants.is_empty() {
            return Err(Unmapped {
                values: values.to_vec(),
            });
        }
        grants.sort_by(|a, b| (&a.tenant, a.role).cmp(&(&b.tenant, b.role)));
        grants.dedup();
        Ok(grants)
    }

    pub fn default_grant(&self) -> Option<&Grant> {
        self.default.as_ref()
    }
}

/// A user whose claim values map to no grant, with no default grant configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", describe_unmapped(.values))]
pub struct Unmapped {
    pub values: Vec<String>,
}

fn describe_unmapped(values: &[String]) -> String {
    if values.is_empty() {
        "your account has no role for updraft (the identity provider sent none)".to_string()
    } else {
        format!(
            "your account has no role for updraft (the identity provider sent {}, which give none)",
            values.join(", ")
        )
    }
}

/// The keys an email address is looked up by in a [`RoleMapping`]: the address itself and
/// its domain with a leading `@` (`alice@example.com`, `@example.com`), lowercased.
pub fn email_keys(email: &str) -> Vec<String> {
    let email = email.trim().to_ascii_lowercase();
    match email.rsplit_once('@') {
        Some((_, domain)) if !domain.is_empty() => {
            let domain = format!("@{domain}");
            vec![email, domain]
        }
        _ => vec![email],
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::Role;

    fn path(s: &str) -> ClaimPath {
        s.parse().unwrap()
    }

    fn keycloak_claims() -> Value {
        json!({
            "sub": "f00",
            "preferred_username": "alice",
            "groups": ["team-a", "ops", 7],
            "realm_access": {"roles": ["offline_access", "viewer"]},
            "resource_access": {
                "airflow": {"roles": ["viewer", "admin"]},
                "account": {"roles": ["manage-account"]}
            },
            "department": "data",
        })
    }

    #[test]
    fn claim_paths_read_strings_and_arrays_of_strings() {
        let claims = keycloak_claims();
        assert_eq!(
            path("resource_access.airflow.roles").values(&claims),
            ["viewer", "admin"]
        );
        assert_eq!(
            path("realm_access.roles").values(&claims),
            ["offline_access", "viewer"]
        );
        assert_eq!(path("groups").values(&claims), ["team-a", "ops"]);
        assert_eq!(path("department").values(&claims), ["data"]);
    }

    #[test]
    fn missing_or_other_shaped_claims_give_no_values() {
        let claims = keycloak_claims();
        assert!(
            path("resource_access.other.roles")
                .values(&claims)
                .is_empty()
        );
        assert!(path("resource_access.airflow").values(&claims).is_empty());
        assert!(path("groups.0").values(&claims).is_empty());
        assert!(path("nothing").values(&json!("a string")).is_empty());
    }

    #[test]
    fn claim_paths_refuse_empty_keys() {
        for bad in ["", ".", "a..b", "a.", ".a"] {
            assert!(bad.parse::<ClaimPath>().is_err(), "{bad:?}");
        }
        assert_eq!(path(" groups ").to_string(), "groups");
    }

    fn seed_mapping(default: Option<&str>) -> RoleMapping {
        let table = BTreeMap::from([
            ("viewer".to_string(), vec!["Admin".to_string()]),
            (
                "team-a".to_string(),
                vec!["User@team_a".to_string(), "Viewer".to_string()],
            ),
            ("ops".to_string(), vec!["Op@team_a".to_string()]),
        ]);
        RoleMapping::parse(&table, default).unwrap()
    }

    fn values(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_seed_mapping_makes_keycloak_viewers_admins() {
        let mapping = seed_mapping(None);
        let claims = keycloak_claims();
        let roles = path("resource_access.airflow.roles").values(&claims);
        assert_eq!(
            mapping.grants_for(&roles).unwrap(),
            [Grant::everywhere(Role::Admin)]
        );
    }

    #[test]
    fn mapped_values_give_every_grant_once() {
        let mapping = seed_mapping(Some("Viewer"));
        let grants = mapping
            .grants_for(&values(&["ops", "team-a", "ops", "unknown"]))
            .unwrap();
        assert_eq!(
            grants,
            [
                Grant::everywhere(Role::Viewer),
                Grant::for_tenant(Role::User, "team_a"),
                Grant::for_tenant(Role::Op, "team_a"),
            ]
        );
    }

    #[test]
    fn unmapped_users_get_the_default_or_are_refused() {
        let with_default = seed_mapping(Some("Viewer@team_b"));
        assert_eq!(
            with_default.grants_for(&values(&["stranger"])).unwrap(),
            [Grant::for_tenant(Role::Viewer, "team_b")]
        );
        assert_eq!(
            with_default.grants_for(&[]).unwrap(),
            [Grant::for_tenant(Role::Viewer, "team_b")]
        );
        let without = seed_mapping(None);
        let refused = without.grants_for(&values(&["stranger"])).unwrap_err();
        assert!(refused.to_string().contains("stranger"), "{refused}");
        assert!(without.grants_for(&[]).is_err());
        // An empty default is no default.
        assert!(seed_mapping(Some(" ")).default_grant().is_none());
    }

    #[test]
    fn values_match_exactly() {
        let mapping = seed_mapping(None);
        assert!(mapping.grants_for(&values(&["Viewer"])).is_err());
    }

    #[test]
    fn bad_grants_in_the_table_are_refused() {
        let table = BTreeMap::from([("x".to_string(), vec!["Root".to_string()])]);
        assert!(RoleMapping::parse(&table, None).is_err());
        assert!(RoleMapping::parse(&BTreeMap::new(), Some("Viewer@")).is_err());
    }

    #[test]
    fn emails_are_looked_up_by_address_and_domain() {
        assert_eq!(
            email_keys("Alice@Example.com"),
            ["alice@example.com", "@example.com"]
        );
        assert_eq!(email_keys("no-domain"), ["no-domain"]);
    }

    fn arb_grant() -> impl Strategy<Value = Grant> {
        (
            prop::sample::select(Role::ALL.to_vec()),
            prop::option::of("[a-c]"),
        )
            .prop_map(|(role, tenant)| Grant { role, tenant })
    }

    proptest! {
        /// A nested object's keys, joined by dots, always lead back to the value put there.
        #[test]
        fn a_path_finds_what_was_put_at_it(
            keys in prop::collection::vec("[a-z_]{1,8}", 1..5),
            roles in prop::collection::vec("[a-zA-Z0-9 -]{0,12}", 0..6),
        ) {
            let claims = keys.iter().rev().fold(json!(roles), |inner, key| json!({ key: inner }));
            let path: ClaimPath = keys.join(".").parse().unwrap();
            prop_assert_eq!(path.values(&claims), roles);
        }

        /// The grants are exactly the union of the mapped values' grants (or the default when
        /// there are none), in a canonical order that does not depend on the values' order.
        #[test]
        fn grants_are_the_union_of_the_mapped_values(
            table in prop::collection::btree_map("[a-e]", prop::collection::vec(arb_grant(), 0..3), 0..5),
            default in prop::option::of(arb_grant()),
            mut sent in prop::collection::vec("[a-g]", 0..6),
        ) {
            let mapping = RoleMapping::new(table.clone(), default.clone());
            let mut expected: Vec<Grant> = sent.iter().filter_map(|v| table.get(v)).flatten().cloned().collect();
            if expected.is_empty() {
                expected.extend(default);
            }
            let got = mapping.grants_for(&sent);
            if expected.is_empty() {
                prop_assert!(got.is_err());
            } else {
                let got = got.unwrap();
                prop_assert!(expected.iter().all(|g| got.contains(g)));
                prop_assert!(got.iter().all(|g| expected.contains(g)));
                prop_assert!(got.windows(2).all(|w| w[0] != w[1]));
                sent.reverse();
                prop_assert_eq!(mapping.grants_for(&sent).unwrap(), got);
            }
        }
    }
}
