//! `/eventLogs`: the audit log, as Airflow 3's event log. Admins read it; an Admin of some
//! tenants reads the entries about those tenants' objects only.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use updraft_store::{EventQuery, EventRow};
use utoipa::{IntoParams, ToSchema};

use super::doc::{E400, E403, E404, E422};
use super::params::{order_by, paging};
use super::{ApiPath, ApiQuery};
use crate::AppState;
use crate::auth::{self, Action, Caller, Identity, Resource, Role};
use crate::error::ApiError;

/// Airflow's `EventLogResponse`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventLogResponse {
    pub event_log_id: i64,
    pub when: DateTime<Utc>,
    pub dag_id: Option<String>,
    pub task_id: Option<String>,
    pub run_id: Option<String>,
    pub map_index: Option<i64>,
    pub try_number: Option<i64>,
    pub event: String,
    /// updraft does not record the run's logical date with the entry: always null.
    pub logical_date: Option<DateTime<Utc>>,
    /// Who did it.
    pub owner: Option<String>,
    /// The request's parameters as JSON text, secrets masked.
    pub extra: Option<String>,
    /// The tenant of the object; null for objects of no tenant (shared pools).
    pub tenant: Option<String>,
}

impl From<EventRow> for EventLogResponse {
    fn from(row: EventRow) -> Self {
        EventLogResponse {
            event_log_id: row.id,
            when: row.when,
            dag_id: row.dag_id,
            task_id: row.task_id,
            run_id: row.run_id,
            map_index: row.map_index,
            try_number: row.try_number,
            event: row.event,
            logical_date: None,
            owner: Some(row.username),
            extra: row.extra,
            tenant: row.tenant,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventLogCollectionResponse {
    pub event_logs: Vec<EventLogResponse>,
    pub total_entries: u64,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventLogsQuery {
    /// Page size (default 50, at most 100).
    #[param(value_type = Option<u32>, minimum = 0)]
    limit: Option<String>,
    #[param(value_type = Option<u64>, minimum = 0)]
    offset: Option<String>,
    dag_id: Option<String>,
    task_id: Option<String>,
    run_id: Option<String>,
    /// Who did it.
    owner: Option<String>,
    event: Option<String>,
    /// Entries after this time.
    #[param(value_type = Option<String>, format = DateTime)]
    after: Option<String>,
    /// Entries before this time.
    #[param(value_type = Option<String>, format = DateTime)]
    before: Option<String>,
    /// Newest first only: `-id`, `-event_log_id` or `-when` (the default).
    #[serde(default)]
    #[param(value_type = Option<Vec<String>>)]
    order_by: Vec<String>,
}

fn parse_time(name: &str, value: &Option<String>) -> Result<Option<DateTime<Utc>>, ApiError> {
    value
        .as_deref()
        .map(|text| {
            DateTime::parse_from_rfc3339(text.trim())
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    ApiError::unprocessable(format!(
                        "query parameter `{name}`: expected an RFC 3339 date-time, got `{text}`"
                    ))
                })
        })
        .transpose()
}

fn newest_first_only(order: &[String]) -> Result<(), ApiError> {
    let known = [("id", ()), ("event_log_id", ()), ("when", ())];
    let ((), descending) = order_by(order, &known, ())?;
    if !order.is_empty() && !descending {
        return Err(ApiError::bad_request(
            "order_by: the event log is read newest first only (`-when`)",
        ));
    }
    Ok(())
}

/// The entries the caller may read: every entry for a global Admin; else those about the
/// tenants it is Admin of.
fn scope(identity: &Identity) -> (Option<Vec<String>>, bool) {
    let global_admin = identity.global_role() == Some(Role::Admin);
    (identity.tenants_with(Role::Admin), global_admin)
}

fn readable(identity: &Identity, row: &EventRow) -> bool {
    auth::allows(
        identity,
        Action::Read,
        Resource::AuditLog {
            tenant: row.tenant.as_deref(),
        },
    )
}

/// List the audit log, newest first.
#[utoipa::path(
    get,
    path = "/eventLogs",
    tag = "Event Log",
    params(EventLogsQuery),
    responses((status = 200, description = "Successful response", body = EventLogCollectionResponse), E400, E403, E422)
)]
pub async fn get_event_logs(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiQuery(query): ApiQuery<EventLogsQuery>,
) -> Result<Json<EventLogCollectionResponse>, ApiError> {
    auth::authorize(&identity, Action::Read, Resource::AuditLogs)?;
    newest_first_only(&query.order_by)?;
    let page = paging(&query.limit, &query.offset)?;
    let (tenants, include_untenanted) = scope(&identity);
    let (rows, total) = state
        .store
        .events(&EventQuery {
            id: None,
            tenants,
            include_untenanted,
            dag_id: query.dag_id.clone(),
            run_id: query.run_id.clone(),
            task_id: query.task_id.clone(),
            event: query.event.clone(),
            username: query.owner.clone(),
            after: parse_time("after", &query.after)?,
            before: parse_time("before", &query.before)?,
            limit: page.limit.unwrap_or(super::params::DEFAULT_LIMIT),
            offset: u32::try_from(page.offset).unwrap_or(u32::MAX),
        })
        .await?;
    Ok(Json(EventLogCollectionResponse {
        event_logs: rows
            .into_iter()
            .filter(|row| readable(&identity, row))
            .map(EventLogResponse::from)
            .collect(),
        total_entries: total,
    }))
}

fn event_not_found(id: i64) -> ApiError {
    ApiError::not_found(format!("The Event Log with id: `{id}` not found"))
}

/// One entry of the audit log.
#[utoipa::path(
    get,
    path = "/eventLogs/{event_log_id}",
    tag = "Event Log",
    params(("event_log_id" = i64, Path)),
    responses((status = 200, description = "Successful response", body = EventLogResponse), E403, E404, E422)
)]
pub async fn get_event_log(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<EventLogResponse>, ApiError> {
    let row = find(&state, id).await?.ok_or_else(|| event_not_found(id))?;
    let tenant = row.tenant.as_deref();
    auth::authorize_or_missing(
        &identity,
        Action::Read,
        Resource::AuditLog { tenant },
        || event_not_found(id),
    )?;
    Ok(Json(EventLogResponse::from(row)))
}

/// The entry with this id.
async fn find(state: &AppState, id: i64) -> Result<Option<EventRow>, ApiError> {
    let (rows, _) = state
        .store
        .events(&EventQuery {
            id: Some(id),
            limit: 1,
            ..EventQuery::default()
        })
        .await?;
    Ok(rows.into_iter().next())
}
