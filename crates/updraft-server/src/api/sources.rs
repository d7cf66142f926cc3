//! `/dagSources/{dag_id}`: the file a DAG version was parsed from.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use super::doc::{E403, E404, E406, E422};
use super::models::DagSourceResponse;
use super::{Accept, ApiPath, ApiQuery, load_dag, versions_of};
use crate::AppState;
use crate::auth::{Action, Caller};
use crate::error::ApiError;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SourceQuery {
    /// Default: the latest version.
    #[param(value_type = Option<i64>)]
    version_number: Option<String>,
}

/// A DAG's source text (`application/json` or `text/plain`).
#[utoipa::path(
    get,
    path = "/dagSources/{dag_id}",
    tag = "DagSource",
    params(("dag_id" = String, Path), SourceQuery),
    responses(
        (status = 200, description = "Successful response", content(
            (DagSourceResponse = "application/json"),
            (String = "text/plain")
        )),
        E403, E404, E406, E422
    )
)]
pub async fn get_dag_source(
    State(state): State<AppState>,
    Caller(identity): Caller,
    accept: Accept,
    ApiPath(dag_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<SourceQuery>,
) -> Result<Response, ApiError> {
    let row = load_dag(&state, &identity, &dag_id, Action::Read).await?;
    let versions = versions_of(&state, &dag_id).await?;
    let (version, number) = match query.version_number.as_deref().map(str::trim) {
        None | Some("") => (row.version.clone(), versions.number_of(&row.version)),
        Some(text) => {
            let number: i64 = text.parse().map_err(|_| {
                ApiError::unprocessable(format!(
                    "query parameter `version_number`: expected an integer, got `{text}`"
                ))
            })?;
            let found = versions.by_number(number).ok_or_else(|| {
                ApiError::not_found(format!(
                    "The source of Dag `{dag_id}` version `{number}` was not found"
                ))
            })?;
            (found.version.clone(), Some(number))
        }
    };
    let content = state.store.dag_source(&dag_id, &version).await?;
    Ok(match accept {
        Accept::Text => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            content.unwrap_or_default(),
        )
            .into_response(),
        Accept::Json => Json(DagSourceResponse {
            content,
            dag_id: dag_id.clone(),
            dag_display_name: dag_id,
            version_number: number,
        })
        .into_response(),
    })
}
