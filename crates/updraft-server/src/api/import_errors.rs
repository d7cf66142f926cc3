//! `/importErrors`: DAG files that failed to load.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use updraft_store::{ImportErrorOrder, ImportErrorQuery};
use utoipa::IntoParams;

use super::doc::{E400, E403, E404, E422};
use super::models::{ImportErrorCollectionResponse, ImportErrorResponse};
use super::params::{order_by, paging};
use super::{ApiPath, ApiQuery, tenants_of};
use crate::AppState;
use crate::auth::{self, Action, Caller, Identity, Resource};
use crate::error::ApiError;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportErrorsQuery {
    /// Page size (default 50, at most 100).
    #[param(value_type = Option<u32>, minimum = 0)]
    limit: Option<String>,
    #[param(value_type = Option<u64>, minimum = 0)]
    offset: Option<String>,
    /// Case-insensitive substring of the file name; `%` and `_` are SQL LIKE wildcards.
    filename_pattern: Option<String>,
    /// `id`/`import_error_id`, `timestamp` or `filename` (default: the order of the last
    /// load of the DAGs folder); `-` in front for descending.
    #[serde(default)]
    #[param(value_type = Option<Vec<String>>)]
    order_by: Vec<String>,
}

const ORDER: [(&str, ImportErrorOrder); 4] = [
    ("id", ImportErrorOrder::Id),
    ("import_error_id", ImportErrorOrder::Id),
    ("timestamp", ImportErrorOrder::Timestamp),
    ("filename", ImportErrorOrder::Filename),
];

/// May the identity see errors of this tenant's files?
fn visible(identity: &Identity, tenant: &str) -> bool {
    crate::auth::allows(identity, Action::Read, Resource::ImportError { tenant })
}

/// List import errors.
#[utoipa::path(
    get,
    path = "/importErrors",
    tag = "Import Error",
    params(ImportErrorsQuery),
    responses((status = 200, description = "Successful response", body = ImportErrorCollectionResponse), E400, E403, E422)
)]
pub async fn get_import_errors(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiQuery(query): ApiQuery<ImportErrorsQuery>,
) -> Result<Json<ImportErrorCollectionResponse>, ApiError> {
    auth::authorize(&identity, Action::Read, Resource::ImportErrors)?;
    let (order, descending) = order_by(&query.order_by, &ORDER, ImportErrorOrder::Position)?;
    let page = state
        .store
        .import_errors_page(&ImportErrorQuery {
            tenants: tenants_of(&identity),
            filename_pattern: query.filename_pattern.clone().filter(|p| !p.is_empty()),
            order_by: order,
            descending,
            paging: paging(&query.limit, &query.offset)?,
        })
        .await?;
    Ok(Json(ImportErrorCollectionResponse {
        import_errors: page
            .items
            .iter()
            .filter(|row| visible(&identity, &row.error.tenant))
            .map(ImportErrorResponse::from)
            .collect(),
        total_entries: page.total,
    }))
}

/// One import error. Its id stays the same while the file keeps failing the same way.
#[utoipa::path(
    get,
    path = "/importErrors/{import_error_id}",
    tag = "Import Error",
    params(("import_error_id" = i64, Path)),
    responses((status = 200, description = "Successful response", body = ImportErrorResponse), E403, E404, E422)
)]
pub async fn get_import_error(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ImportErrorResponse>, ApiError> {
    let not_found = || {
        ApiError::not_found(format!(
            "The ImportError with import_error_id: `{id}` was not found"
        ))
    };
    let row = state.store.import_error(id).await?.ok_or_else(not_found)?;
    let tenant = &row.error.tenant;
    auth::authorize_or_missing(
        &identity,
        Action::Read,
        Resource::ImportError { tenant },
        not_found,
    )?;
    Ok(Json(ImportErrorResponse::from(&row)))
}
