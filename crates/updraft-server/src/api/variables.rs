//! `/variables`: Airflow's variables, per tenant, encrypted at rest.
//!
//! The value of a variable whose key looks sensitive (`db_password`, `api_token`) is shown as
//! `***`; in a JSON value, so are the values under sensitive keys. A `***` sent back keeps the
//! stored value.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use updraft_secrets::{MASK, Masker, Variable};
use updraft_store::{SecretQuery, StoreError, WriteMode};
use utoipa::{IntoParams, ToSchema};

use super::doc::{E400, E403, E404, E409, E422};
use super::params::{de_present, order_by, paging};
use super::secrets::{
    LOOKUP_LIMIT, new_object_tenant, parse_team, pick, rule_tenant, unmask, vault, vault_error,
};
use super::{ApiJson, ApiPath, ApiQuery, check_update_mask};
use crate::AppState;
use crate::audit::Entry;
use crate::auth::{self, Action, Caller, Identity, Resource};
use crate::error::ApiError;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VariableResponse {
    pub key: String,
    /// `***` when the key looks sensitive; in a JSON value, values under sensitive keys are.
    pub value: String,
    pub description: Option<String>,
    /// Always true: updraft encrypts every variable's value.
    pub is_encrypted: bool,
    /// The tenant; `null`: shared by every tenant.
    pub team_name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VariableCollectionResponse {
    pub variables: Vec<VariableResponse>,
    pub total_entries: u64,
}

/// `POST /variables`. A value that is not a string is stored as its JSON text.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct VariableBody {
    #[schema(max_length = 250)]
    pub key: String,
    #[schema(value_type = Object)]
    pub value: Value,
    #[serde(default)]
    pub description: Option<String>,
    /// The tenant (`*`: shared). Absent: the caller's only tenant, or shared for a caller
    /// who manages every tenant.
    #[serde(default)]
    pub team_name: Option<String>,
}

/// `PATCH /variables/{variable_key}`: fields left out are kept.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct VariablePatchBody {
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub value: Option<Value>,
    #[serde(default, deserialize_with = "de_present")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// A variable's tenant cannot change; if given, it must be its tenant.
    #[serde(default)]
    pub team_name: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VariablesQuery {
    /// Page size (default 50, at most 100).
    #[param(value_type = Option<u32>, minimum = 0)]
    limit: Option<String>,
    #[param(value_type = Option<u64>, minimum = 0)]
    offset: Option<String>,
    /// Substring of the key (`%` is ignored).
    variable_key_pattern: Option<String>,
    /// `key` (or `id`): variables are listed by tenant (shared first), then key.
    #[serde(default)]
    #[param(value_type = Option<Vec<String>>)]
    order_by: Vec<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TeamQuery {
    /// The tenant whose variable is meant (`*`: the shared one); needed only when the key
    /// exists in several tenants the caller can see.
    team_name: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PatchQuery {
    /// The tenant whose variable is meant (`*`: the shared one).
    team_name: Option<String>,
    /// Fields of the body to apply: `key`, `value`, `description` (default: every field given).
    #[serde(default)]
    #[param(value_type = Option<Vec<String>>)]
    update_mask: Vec<String>,
}

pub fn variable_not_found(key: &str) -> ApiError {
    ApiError::not_found(format!("The Variable with key: `{key}` was not found"))
}

fn resource(tenant: &str) -> Resource<'_> {
    Resource::Variable { tenant }
}

/// A variable's value as shown. A sensitive value joins the process-wide masker, so the
/// server masks it wherever else it shows text (task logs).
pub fn shown_value(variable: &Variable) -> String {
    if variable.is_sensitive() {
        updraft_secrets::mask::register(&variable.value);
        return MASK.to_string();
    }
    match serde_json::from_str::<Value>(&variable.value) {
        Ok(value @ (Value::Object(_) | Value::Array(_))) => {
            let masked = Masker::new().mask_json(&value);
            if masked == value {
                variable.value.clone()
            } else {
                masked.to_string()
            }
        }
        _ => variable.value.clone(),
    }
}

pub fn variable_response(tenant: Option<&str>, variable: &Variable) -> VariableResponse {
    VariableResponse {
        key: variable.key.clone(),
        value: shown_value(variable),
        description: variable.description.clone(),
        is_encrypted: true,
        team_name: tenant.map(str::to_string),
    }
}

fn audit_details(tenant: Option<&str>, variable: &Variable) -> Value {
    json!({
        "key": variable.key,
        "value": shown_value(variable),
        "description": variable.description,
        "team_name": tenant,
    })
}

fn check_key(key: &str) -> Result<(), ApiError> {
    if key.trim().is_empty() || key.chars().count() > 250 {
        return Err(ApiError::unprocessable("key: 1 to 250 characters"));
    }
    Ok(())
}

/// A body's value as stored: a string as is, anything else as its JSON text.
fn stored_value(value: Value) -> String {
    match value {
        Value::String(text) => text,
        other => other.to_string(),
    }
}

/// A new value whose `***` (as shown: the whole value, or values inside JSON) keeps the
/// stored one.
fn merge_value(new: String, old: &str) -> String {
    if new == MASK {
        return old.to_string();
    }
    match (
        serde_json::from_str::<Value>(&new),
        serde_json::from_str::<Value>(old),
    ) {
        (Ok(new_value @ (Value::Object(_) | Value::Array(_))), Ok(old_value)) => {
            let merged = unmask(new_value.clone(), &old_value);
            if merged == new_value {
                new
            } else {
                merged.to_string()
            }
        }
        _ => new,
    }
}

async fn candidates(
    state: &AppState,
    identity: &Identity,
    key: &str,
) -> Result<Vec<(Option<String>, Variable)>, ApiError> {
    let query = SecretQuery {
        tenants: identity.visible_tenants(),
        include_shared: true,
        id: Some(key.to_string()),
        limit: LOOKUP_LIMIT,
        ..SecretQuery::default()
    };
    let (found, _) = vault(state)?.variables(&query).await.map_err(vault_error)?;
    Ok(found)
}

pub(crate) async fn find(
    state: &AppState,
    identity: &Identity,
    key: &str,
    team: Option<&str>,
    action: Action,
) -> Result<(Option<String>, Variable), ApiError> {
    let found = candidates(state, identity, key).await?;
    pick(identity, action, team, found, resource, || {
        variable_not_found(key)
    })
}

/// Variables of the tenants the caller manages (and the shared ones, for a caller who manages
/// every tenant), by tenant then key.
#[utoipa::path(
    get,
    path = "/variables",
    tag = "Variable",
    params(VariablesQuery),
    responses((status = 200, description = "Successful response", body = VariableCollectionResponse), E400, E403, E422)
)]
pub async fn get_variables(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiQuery(query): ApiQuery<VariablesQuery>,
) -> Result<Json<VariableCollectionResponse>, ApiError> {
    auth::authorize(&identity, Action::Read, Resource::Variables)?;
    let (_, descending) = order_by(&query.order_by, &[("key", ()), ("id", ())], ())?;
    if descending {
        return Err(ApiError::bad_request(
            "order_by: variables are listed by tenant then key, ascending only",
        ));
    }
    let page = paging(&query.limit, &query.offset)?;
    let tenants = identity.tenants_with(auth::Role::Op);
    let store_query = SecretQuery {
        include_shared: tenants.is_none(),
        tenants,
        id_pattern: query
            .variable_key_pattern
            .as_deref()
            .map(|p| p.replace('%', ""))
            .filter(|p| !p.is_empty()),
        id: None,
        limit: page.limit.unwrap_or(super::params::DEFAULT_LIMIT),
        offset: u32::try_from(page.offset).unwrap_or(u32::MAX),
    };
    let (rows, total) = vault(&state)?
        .variables(&store_query)
        .await
        .map_err(vault_error)?;
    Ok(Json(VariableCollectionResponse {
        variables: rows
            .iter()
            .filter(|(t, _)| {
                auth::allows(&identity, Action::Read, resource(rule_tenant(t.as_deref())))
            })
            .map(|(t, v)| variable_response(t.as_deref(), v))
            .collect(),
        total_entries: total,
    }))
}

/// One variable.
#[utoipa::path(
    get,
    path = "/variables/{variable_key}",
    tag = "Variable",
    params(("variable_key" = String, Path), TeamQuery),
    responses((status = 200, description = "Successful response", body = VariableResponse), E400, E403, E404, E422)
)]
pub async fn get_variable(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath(key): ApiPath<String>,
    ApiQuery(query): ApiQuery<TeamQuery>,
) -> Result<Json<VariableResponse>, ApiError> {
    let (tenant, variable) = find(
        &state,
        &identity,
        &key,
        query.team_name.as_deref(),
        Action::Read,
    )
    .await?;
    Ok(Json(variable_response(tenant.as_deref(), &variable)))
}

/// Create a variable.
#[utoipa::path(
    post,
    path = "/variables",
    tag = "Variable",
    request_body = VariableBody,
    responses((status = 201, description = "Created", body = VariableResponse), E400, E403, E409, E422)
)]
pub async fn post_variable(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiJson(body): ApiJson<VariableBody>,
) -> Result<(StatusCode, Json<VariableResponse>), ApiError> {
    auth::authorize(&identity, Action::Create, Resource::Variables)?;
    let tenant = new_object_tenant(&identity, body.team_name.as_deref(), "variables")?;
    auth::authorize_or_missing(
        &identity,
        Action::Create,
        resource(rule_tenant(tenant.as_deref())),
        || {
            ApiError::forbidden(format!(
                "{} may not create variables for that tenant",
                identity.username
            ))
        },
    )?;
    check_key(&body.key)?;
    let variable = Variable {
        key: body.key.clone(),
        value: stored_value(body.value),
        description: body.description,
    };
    vault(&state)?
        .write_variable(tenant.as_deref(), &variable, WriteMode::Create)
        .await
        .map_err(|e| match e {
            updraft_secrets::SecretsError::Store(StoreError::Conflict(_)) => ApiError::conflict(
                format!("The Variable with key: `{}` already exists", variable.key),
            ),
            other => vault_error(other),
        })?;
    Entry::new(&identity, "post_variable")
        .tenant(tenant.as_deref())
        .extra(audit_details(tenant.as_deref(), &variable))
        .record(&state)
        .await;
    Ok((
        StatusCode::CREATED,
        Json(variable_response(tenant.as_deref(), &variable)),
    ))
}

/// Change a variable's value or description. Its key and tenant cannot change.
#[utoipa::path(
    patch,
    path = "/variables/{variable_key}",
    tag = "Variable",
    params(("variable_key" = String, Path), PatchQuery),
    request_body = VariablePatchBody,
    responses((status = 200, description = "Successful response", body = VariableResponse), E400, E403, E404, E422)
)]
pub async fn patch_variable(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath(key): ApiPath<String>,
    ApiQuery(query): ApiQuery<PatchQuery>,
    ApiJson(body): ApiJson<VariablePatchBody>,
) -> Result<Json<VariableResponse>, ApiError> {
    let fields = check_update_mask(&query.update_mask, &["key", "value", "description"])?;
    let wanted = |field: &str| fields.is_empty() || fields.iter().any(|f| f == field);
    let (tenant, mut variable) = find(
        &state,
        &identity,
        &key,
        query.team_name.as_deref(),
        Action::Edit,
    )
    .await?;
    if let Some(given) = &body.key
        && *given != key
    {
        return Err(ApiError::bad_request(
            "Invalid body, key from request body doesn't match uri parameter",
        ));
    }
    if let Some(team) = &body.team_name
        && parse_team(team) != tenant.as_deref()
    {
        return Err(ApiError::bad_request(
            "team_name: a variable's tenant cannot change: create a new variable instead",
        ));
    }
    if wanted("value") {
        match body.value {
            Some(value) => variable.value = merge_value(stored_value(value), &variable.value),
            None if !fields.is_empty() => {
                return Err(ApiError::bad_request(
                    "update_mask names `value`, which is not in the body",
                ));
            }
            None => {}
        }
    }
    if wanted("description") {
        match body.description {
            Some(description) => variable.description = description,
            None if !fields.is_empty() => variable.description = None,
            None => {}
        }
    }
    vault(&state)?
        .write_variable(tenant.as_deref(), &variable, WriteMode::Update)
        .await
        .map_err(vault_error)?;
    let mut details = audit_details(tenant.as_deref(), &variable);
    details["update_mask"] = json!(fields);
    Entry::new(&identity, "patch_variable")
        .tenant(tenant.as_deref())
        .extra(details)
        .record(&state)
        .await;
    Ok(Json(variable_response(tenant.as_deref(), &variable)))
}

/// Delete a variable.
#[utoipa::path(
    delete,
    path = "/variables/{variable_key}",
    tag = "Variable",
    params(("variable_key" = String, Path), TeamQuery),
    responses((status = 204, description = "Deleted"), E400, E403, E404, E422)
)]
pub async fn delete_variable(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath(key): ApiPath<String>,
    ApiQuery(query): ApiQuery<TeamQuery>,
) -> Result<StatusCode, ApiError> {
    let (tenant, _) = find(
        &state,
        &identity,
        &key,
        query.team_name.as_deref(),
        Action::Delete,
    )
    .await?;
    if !vault(&state)?
        .delete_variable(tenant.as_deref(), &key)
        .await
        .map_err(vault_error)?
    {
        return Err(variable_not_found(&key));
    }
    Entry::new(&identity, "delete_variable")
        .tenant(tenant.as_deref())
        .extra(json!({ "key": key, "team_name": tenant }))
        .record(&state)
        .await;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_values_sent_back_keep_the_stored_value() {
        assert_eq!(merge_value("***".into(), "old"), "old");
        assert_eq!(merge_value("new".into(), "old"), "new");
        assert_eq!(
            merge_value(
                r#"{"token":"***","a":1}"#.into(),
                r#"{"token":"t0k","a":0}"#
            ),
            r#"{"a":1,"token":"t0k"}"#
        );
        assert_eq!(stored_value(json!({"a": 1})), r#"{"a":1}"#);
        assert_eq!(stored_value(json!("text")), "text");
    }
}
