//! `/pools`: named slot budgets.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use updraft_dag::DEFAULT_POOL;
use updraft_store::{PoolRow, PoolUsage};
use utoipa::IntoParams;

use super::doc::{E400, E403, E404, E409, E422};
use super::models::{PoolBody, PoolCollectionResponse, PoolPatchBody, PoolResponse, pool_response};
use super::params::{order_by, paging};
use super::{ApiJson, ApiPath, ApiQuery, check_update_mask};
use crate::AppState;
use crate::audit::Entry;
use crate::auth::{self, Action, Caller, Identity, Resource, Role};
use crate::error::ApiError;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PoolsQuery {
    /// Page size (default 50, at most 100).
    #[param(value_type = Option<u32>, minimum = 0)]
    limit: Option<String>,
    #[param(value_type = Option<u64>, minimum = 0)]
    offset: Option<String>,
    /// Case-insensitive substring of the pool name.
    pool_name_pattern: Option<String>,
    /// `id`/`pool`/`name` (default) or `slots`; `-` in front for descending.
    #[serde(default)]
    #[param(value_type = Option<Vec<String>>)]
    order_by: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
enum PoolOrder {
    Name,
    Slots,
}

const ORDER: [(&str, PoolOrder); 5] = [
    ("id", PoolOrder::Name),
    ("pool", PoolOrder::Name),
    ("name", PoolOrder::Name),
    ("slots", PoolOrder::Slots),
    ("description", PoolOrder::Name),
];

async fn usage(state: &AppState) -> Result<HashMap<String, PoolUsage>, ApiError> {
    Ok(state.store.pool_usage().await?)
}

fn pool_not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("The Pool with name: `{name}` was not found"))
}

fn pool_resource(pool: &PoolRow) -> Resource<'_> {
    Resource::Pool {
        tenant: pool.tenant.as_deref(),
    }
}

/// The pool, after checking the caller may do `action` on it; another tenant's pool is
/// answered exactly as a missing one.
async fn find(
    state: &AppState,
    identity: &Identity,
    name: &str,
    action: Action,
) -> Result<PoolRow, ApiError> {
    let pool = state
        .store
        .pools()
        .await?
        .into_iter()
        .find(|p| p.name == name)
        .ok_or_else(|| pool_not_found(name))?;
    auth::authorize_or_missing(identity, action, pool_resource(&pool), || {
        pool_not_found(name)
    })?;
    Ok(pool)
}

/// The tenant a new pool belongs to: the one asked for, else the caller's only tenant with
/// Op, else (for a global Op) none: shared.
fn new_pool_tenant(identity: &Identity, asked: Option<&str>) -> Result<Option<String>, ApiError> {
    if let Some(tenant) = asked {
        return Ok(Some(tenant.to_string()));
    }
    match identity.tenants_with(Role::Op) {
        None => Ok(None),
        Some(tenants) if tenants.len() == 1 => Ok(tenants.into_iter().next()),
        Some(tenants) if tenants.is_empty() => Ok(None),
        Some(tenants) => Err(ApiError::unprocessable(format!(
            "team_name: you manage pools of several tenants ({}); name the pool's tenant",
            tenants.join(", ")
        ))),
    }
}

/// Pools are few: the whole list is read and paged here.
#[utoipa::path(
    get,
    path = "/pools",
    tag = "Pool",
    params(PoolsQuery),
    responses((status = 200, description = "Successful response", body = PoolCollectionResponse), E400, E403, E422)
)]
pub async fn get_pools(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiQuery(query): ApiQuery<PoolsQuery>,
) -> Result<Json<PoolCollectionResponse>, ApiError> {
    auth::authorize(&identity, Action::Read, Resource::Pools)?;
    let (order, descending) = order_by(&query.order_by, &ORDER, PoolOrder::Name)?;
    let page = paging(&query.limit, &query.offset)?;
    let pattern = query
        .pool_name_pattern
        .as_deref()
        .map(|p| p.replace('%', "").to_lowercase());
    let mut pools: Vec<PoolRow> = state
        .store
        .pools()
        .await?
        .into_iter()
        .filter(|p| auth::allows(&identity, Action::Read, pool_resource(p)))
        .filter(|p| {
            pattern
                .as_deref()
                .is_none_or(|pat| p.name.to_lowercase().contains(pat))
        })
        .collect();
    match order {
        PoolOrder::Name => pools.sort_by(|a, b| a.name.cmp(&b.name)),
        PoolOrder::Slots => pools.sort_by(|a, b| a.slots.cmp(&b.slots).then(a.name.cmp(&b.name))),
    }
    if descending {
        pools.reverse();
    }
    let total = pools.len() as u64;
    let usage = usage(&state).await?;
    Ok(Json(PoolCollectionResponse {
        pools: pools
            .iter()
            .skip(usize::try_from(page.offset).unwrap_or(usize::MAX))
            .take(page.limit.map_or(usize::MAX, |l| l as usize))
            .map(|p| pool_response(p, &usage))
            .collect(),
        total_entries: total,
    }))
}

/// One pool.
#[utoipa::path(
    get,
    path = "/pools/{pool_name}",
    tag = "Pool",
    params(("pool_name" = String, Path)),
    responses((status = 200, description = "Successful response", body = PoolResponse), E403, E404, E422)
)]
pub async fn get_pool(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<PoolResponse>, ApiError> {
    let pool = find(&state, &identity, &name, Action::Read).await?;
    Ok(Json(pool_response(&pool, &usage(&state).await?)))
}

fn check_slots(slots: i64) -> Result<(), ApiError> {
    if slots < 0 {
        return Err(ApiError::bad_request(
            "slots: updraft pools have a fixed number of slots (0 or more); -1 (unlimited) is \
             not supported",
        ));
    }
    Ok(())
}

fn check_unsupported(include_deferred: Option<bool>) -> Result<(), ApiError> {
    if include_deferred == Some(true) {
        return Err(ApiError::bad_request(
            "include_deferred: updraft has no deferred task instances; it must be false",
        ));
    }
    Ok(())
}

/// Create a pool.
#[utoipa::path(
    post,
    path = "/pools",
    tag = "Pool",
    request_body = PoolBody,
    responses((status = 201, description = "Created", body = PoolResponse), E400, E403, E409, E422)
)]
pub async fn post_pool(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiJson(body): ApiJson<PoolBody>,
) -> Result<(StatusCode, Json<PoolResponse>), ApiError> {
    auth::authorize(&identity, Action::Create, Resource::Pools)?;
    if body.name.trim().is_empty() || body.name.chars().count() > 256 {
        return Err(ApiError::unprocessable("name: 1 to 256 characters"));
    }
    check_slots(body.slots)?;
    check_unsupported(Some(body.include_deferred))?;
    let tenant = new_pool_tenant(&identity, body.team_name.as_deref())?;
    // Naming a tenant the caller may not see is refused like any tenant it may not manage.
    auth::authorize_or_missing(
        &identity,
        Action::Create,
        Resource::Pool {
            tenant: tenant.as_deref(),
        },
        || {
            ApiError::forbidden(format!(
                "{} may not create pools for that tenant",
                identity.username
            ))
        },
    )?;
    let pool = PoolRow {
        name: body.name.clone(),
        slots: body.slots,
        description: body.description.clone().unwrap_or_default(),
        tenant,
    };
    // Pool names are one namespace (tasks name their pool); a clash with another tenant's
    // pool is a conflict that does not say whose it is.
    state.store.create_pool(&pool).await.map_err(|e| match e {
        updraft_store::StoreError::Conflict(_) => {
            ApiError::conflict(format!("a pool named `{}` already exists", pool.name))
        }
        other => other.into(),
    })?;
    // Tasks waiting for a pool that did not exist may run now.
    state.wake_scheduler();
    Entry::new(&identity, "post_pool")
        .tenant(pool.tenant.as_deref())
        .extra(serde_json::json!({
            "name": pool.name,
            "slots": pool.slots,
            "description": pool.description,
            "team_name": pool.tenant,
        }))
        .record(&state)
        .await;
    Ok((
        StatusCode::CREATED,
        Json(pool_response(&pool, &usage(&state).await?)),
    ))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PoolMaskQuery {
    /// Fields of the body to apply: `slots`, `description`, `include_deferred`, `pool`
    /// (default: every field given).
    #[serde(default)]
    #[param(value_type = Option<Vec<String>>)]
    update_mask: Vec<String>,
}

/// Change a pool's slots or description. Renaming is not supported; `default_pool`'s
/// description cannot change (and its slots are reset to `core.default_pool_slots` when the
/// scheduler starts).
#[utoipa::path(
    patch,
    path = "/pools/{pool_name}",
    tag = "Pool",
    params(("pool_name" = String, Path), PoolMaskQuery),
    request_body = PoolPatchBody,
    responses((status = 200, description = "Successful response", body = PoolResponse), E400, E403, E404, E422)
)]
pub async fn patch_pool(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath(name): ApiPath<String>,
    ApiQuery(mask): ApiQuery<PoolMaskQuery>,
    ApiJson(body): ApiJson<PoolPatchBody>,
) -> Result<Json<PoolResponse>, ApiError> {
    let fields = check_update_mask(
        &mask.update_mask,
        &["slots", "description", "include_deferred", "pool", "name"],
    )?;
    let wanted = |field: &str| fields.is_empty() || fields.iter().any(|f| f == field);
    let mut pool = find(&state, &identity, &name, Action::Edit).await?;
    if (wanted("pool") || wanted("name"))
        && let Some(new_name) = &body.pool
        && *new_name != name
    {
        return Err(ApiError::bad_request(
            "renaming a pool is not supported: create a new pool instead",
        ));
    }
    check_unsupported(if wanted("include_deferred") {
        body.include_deferred
    } else {
        None
    })?;
    if let Some(team) = &body.team_name
        && pool.tenant.as_ref() != Some(team)
    {
        return Err(ApiError::bad_request(
            "team_name: a pool's tenant cannot change: create a new pool instead",
        ));
    }
    if wanted("slots") {
        match body.slots {
            Some(slots) => {
                check_slots(slots)?;
                pool.slots = slots;
            }
            None if !fields.is_empty() => {
                return Err(ApiError::bad_request(
                    "update_mask names `slots`, which is null",
                ));
            }
            None => {}
        }
    }
    if wanted("description")
        && let Some(description) = &body.description
    {
        if name == DEFAULT_POOL {
            return Err(ApiError::bad_request(
                "Only slots and included_deferred can be modified on Default Pool",
            ));
        }
        pool.description = description.clone().unwrap_or_default();
    }
    state.store.upsert_pool(&pool).await?;
    state.wake_scheduler();
    Entry::new(&identity, "patch_pool")
        .tenant(pool.tenant.as_deref())
        .extra(serde_json::json!({
            "name": pool.name,
            "slots": pool.slots,
            "description": pool.description,
            "update_mask": fields,
        }))
        .record(&state)
        .await;
    Ok(Json(pool_response(&pool, &usage(&state).await?)))
}

/// Delete a pool (not `default_pool`).
#[utoipa::path(
    delete,
    path = "/pools/{pool_name}",
    tag = "Pool",
    params(("pool_name" = String, Path)),
    responses((status = 204, description = "Deleted"), E400, E403, E404, E422)
)]
pub async fn delete_pool(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let pool = find(&state, &identity, &name, Action::Delete).await?;
    if name == DEFAULT_POOL {
        return Err(ApiError::bad_request("Default Pool can't be deleted"));
    }
    if !state.store.delete_pool(&name).await? {
        return Err(pool_not_found(&name));
    }
    Entry::new(&identity, "delete_pool")
        .tenant(pool.tenant.as_deref())
        .extra(serde_json::json!({ "name": name }))
        .record(&state)
        .await;
    Ok(StatusCode::NO_CONTENT)
}
