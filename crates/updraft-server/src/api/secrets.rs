//! What the connections and variables endpoints share: the [`Vault`] they read and write
//! through, the tenant an object is found in or created for, and masking.
//!
//! The same id may exist in several tenants (and once shared, as tenant `*`). A request that
//! names no tenant (`team_name`) gets the one object the caller can see with that id, or a 400
//! naming the tenants it could mean. An object of a tenant the caller holds no role in is
//! answered exactly as a missing one.

use serde_json::Value;
use updraft_secrets::{MASK, Masker, SecretsError, Vault};
use updraft_store::SecretStore;

use crate::AppState;
use crate::auth::{self, Action, Decision, Identity, Resource, Role};
use crate::error::ApiError;

/// How a shared object's tenant is written in `team_name` query parameters and in the rules.
pub const SHARED: &str = "*";

/// The vault over the server's store and keyring; 503 naming the setting without a keyring.
pub fn vault(state: &AppState) -> Result<Vault, ApiError> {
    let keyring = state.config.keyring.clone().ok_or_else(no_keyring)?;
    let store: std::sync::Arc<dyn SecretStore> = state.store.clone();
    Ok(Vault::new(store, keyring))
}

pub fn no_keyring() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "connections and variables are encrypted at rest and no Fernet key is configured: set \
         core.fernet_key (UPDRAFT__CORE__FERNET_KEY) or core.fernet_key_file",
    )
}

/// A vault failure as an answer. Decryption errors name the key setting, never a value.
pub fn vault_error(error: SecretsError) -> ApiError {
    match error {
        SecretsError::Store(e) => e.into(),
        other => {
            tracing::error!("connections and variables: {other}");
            ApiError::internal(other.to_string())
        }
    }
}

/// The tenant as the rules name it: a shared object's is `*`.
pub fn rule_tenant(tenant: Option<&str>) -> &str {
    tenant.unwrap_or(SHARED)
}

/// A `team_name` query parameter: `*` is the shared tenant (`None`).
pub fn parse_team(team: &str) -> Option<&str> {
    (team != SHARED).then_some(team)
}

/// How a tenant is named in messages.
pub fn tenant_label(tenant: Option<&str>) -> String {
    match tenant {
        Some(t) => format!("`{t}`"),
        None => format!("`{SHARED}` (shared)"),
    }
}

/// The tenant a new object belongs to: the one asked for (`*`: shared), else the caller's
/// only tenant with Op, else (for a global Op) none: shared.
pub fn new_object_tenant(
    identity: &Identity,
    asked: Option<&str>,
    kind: &str,
) -> Result<Option<String>, ApiError> {
    if let Some(tenant) = asked {
        return Ok(parse_team(tenant).map(str::to_string));
    }
    match identity.tenants_with(Role::Op) {
        None => Ok(None),
        Some(tenants) if tenants.len() == 1 => Ok(tenants.into_iter().next()),
        Some(tenants) if tenants.is_empty() => Ok(None),
        Some(tenants) => Err(ApiError::bad_request(format!(
            "team_name: you manage {kind} of several tenants ({}); name the tenant, or `*` \
             for a shared one",
            tenants.join(", ")
        ))),
    }
}

/// Of the objects with one id in several tenants (`candidates`, each with its tenant), the one
/// a request means: the tenant named by `team` (`*`: shared), else the only one the caller can
/// see. The caller must be allowed `action` on it; a hidden one is `missing()`.
pub fn pick<T>(
    identity: &Identity,
    action: Action,
    team: Option<&str>,
    candidates: Vec<(Option<String>, T)>,
    resource: fn(&str) -> Resource<'_>,
    missing: impl Fn() -> ApiError,
) -> Result<(Option<String>, T), ApiError> {
    let wanted = team.map(parse_team);
    let mut visible: Vec<(Option<String>, T)> = candidates
        .into_iter()
        .filter(|(tenant, _)| wanted.is_none_or(|w| w == tenant.as_deref()))
        .filter(|(tenant, _)| {
            auth::decide(
                identity,
                Action::Read,
                resource(rule_tenant(tenant.as_deref())),
            ) != Decision::Hide
        })
        .collect();
    if visible.len() > 1 {
        let tenants: Vec<String> = visible
            .iter()
            .map(|(t, _)| tenant_label(t.as_deref()))
            .collect();
        return Err(ApiError::bad_request(format!(
            "several tenants have this id: {}; name one with the `team_name` query parameter \
             (`*` for the shared one)",
            tenants.join(", ")
        )));
    }
    let (tenant, item) = visible.pop().ok_or_else(&missing)?;
    auth::authorize_or_missing(
        identity,
        action,
        resource(rule_tenant(tenant.as_deref())),
        &missing,
    )?;
    Ok((tenant, item))
}

/// A JSON text with the values under sensitive keys, and any of `masker`'s values, replaced by
/// `***`. Text that is not JSON is masked whole: it cannot be told safe.
pub fn mask_json_text(text: &str, masker: &Masker) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(value) => {
            let masked = masker.mask_json(&value);
            if masked == value {
                text.to_string()
            } else {
                masked.to_string()
            }
        }
        Err(_) => MASK.to_string(),
    }
}

/// A new JSON value whose `***` strings are put back from `old` (at the same key path): the
/// masked values a client was shown and sends back unchanged keep what they were.
pub fn unmask(new: Value, old: &Value) -> Value {
    match (new, old) {
        (Value::String(s), Value::String(_)) if s == MASK => old.clone(),
        (Value::Object(map), Value::Object(old_map)) => Value::Object(
            map.into_iter()
                .map(|(key, value)| {
                    let value = match old_map.get(&key) {
                        Some(previous) => unmask(value, previous),
                        None => value,
                    };
                    (key, value)
                })
                .collect(),
        ),
        (Value::Array(items), Value::Array(old_items)) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| match old_items.get(i) {
                    Some(previous) => unmask(item, previous),
                    None => item,
                })
                .collect(),
        ),
        (new, _) => new,
    }
}

/// A text value that may be `***` (as shown): the old value then.
pub fn unmask_text(new: Option<String>, old: Option<&str>) -> Option<String> {
    match (new, old) {
        (Some(n), Some(o)) if n == MASK => Some(o.to_string()),
        (new, _) => new,
    }
}

/// How many rows an exact-id lookup reads at most (one per tenant).
pub const LOOKUP_LIMIT: u32 = 10_000;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn masked_values_sent_back_keep_the_stored_ones() {
        let old = json!({"token": "s3cret", "region": "eu", "nested": {"api_key": "k1"}});
        let new = json!({"token": "***", "region": "us", "nested": {"api_key": "***"}, "x": "***"});
        assert_eq!(
            unmask(new, &old),
            json!({"token": "s3cret", "region": "us", "nested": {"api_key": "k1"}, "x": "***"})
        );
        assert_eq!(
            unmask_text(Some("***".into()), Some("pw")),
            Some("pw".into())
        );
        assert_eq!(
            unmask_text(Some("new".into()), Some("pw")),
            Some("new".into())
        );
        assert_eq!(unmask_text(None, Some("pw")), None);
    }
}
