//! Authorization: one function, [`authorize`], that every API and UI handler calls with the
//! caller's [`Identity`]. The rules themselves are `updraft_auth::decide`; this maps its
//! decision to HTTP: a hidden object is 404 (the caller cannot tell it from a missing one), a
//! forbidden action 403.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

pub use updraft_auth::{Action, Decision, Grant, Identity, Resource, Role, decide};

use crate::error::ApiError;

/// May `identity` do `action` on `resource`? `Err` is the response to send: 404 when the
/// caller may not know the object exists, 403 when it may not do this to it.
pub fn authorize(
    identity: &Identity,
    action: Action,
    resource: Resource<'_>,
) -> Result<(), ApiError> {
    match decide(identity, action, resource) {
        Decision::Allow => Ok(()),
        Decision::Hide => Err(ApiError::not_found(hidden_detail(resource))),
        Decision::Forbid => Err(ApiError::forbidden(format!(
            "{} may not {action:?} {}",
            identity.username,
            describe(resource)
        ))),
    }
}

/// [`authorize`] for an object whose handler has its own not-found answer: a hidden object
/// gets exactly `missing`, so the caller cannot tell it from one that does not exist.
pub fn authorize_or_missing(
    identity: &Identity,
    action: Action,
    resource: Resource<'_>,
    missing: impl FnOnce() -> ApiError,
) -> Result<(), ApiError> {
    match decide(identity, action, resource) {
        Decision::Hide => Err(missing()),
        _ => authorize(identity, action, resource),
    }
}

/// The answer for a DAG that does not exist, or that the caller may not know of.
pub fn dag_not_found(dag_id: &str) -> ApiError {
    ApiError::not_found(format!("The Dag with ID: `{dag_id}` was not found"))
}

/// The answer for a DAG source that does not exist, or that the caller may not know of.
pub fn source_not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("The source with name: `{name}` was not found"))
}

/// Whether `identity` may do `action` on `resource`, for filtering listings and showing
/// buttons.
pub fn allows(identity: &Identity, action: Action, resource: Resource<'_>) -> bool {
    decide(identity, action, resource).allowed()
}

/// The same words a missing object gets, so a hidden one cannot be told apart.
fn hidden_detail(resource: Resource<'_>) -> String {
    match resource {
        Resource::Dag { dag_id, .. } | Resource::XCom { dag_id, .. } => {
            dag_not_found(dag_id).detail
        }
        Resource::Source { name, .. } => source_not_found(name).detail,
        other => format!("{} was not found", describe(other)),
    }
}

fn describe(resource: Resource<'_>) -> String {
    match resource {
        Resource::Dag { dag_id, .. } => format!("DAG `{dag_id}`"),
        Resource::XCom { dag_id, .. } => format!("the XComs of DAG `{dag_id}`"),
        Resource::Dags => "DAGs".to_string(),
        Resource::ImportError { .. } => "the import error".to_string(),
        Resource::ImportErrors => "import errors".to_string(),
        Resource::Pool { .. } => "the pool".to_string(),
        Resource::Pools => "pools".to_string(),
        Resource::Connection { .. } => "the connection".to_string(),
        Resource::Connections => "connections".to_string(),
        Resource::Variable { .. } => "the variable".to_string(),
        Resource::Variables => "variables".to_string(),
        Resource::Source { name, .. } => format!("source `{name}`"),
        Resource::Sources => "DAG sources".to_string(),
        Resource::Asset { .. } => "the asset".to_string(),
        Resource::Assets => "assets".to_string(),
        Resource::Config => "the configuration".to_string(),
        Resource::Users => "users".to_string(),
        Resource::AuditLog { .. } => "the audit log entry".to_string(),
        Resource::AuditLogs => "the audit log".to_string(),
        Resource::Metrics => "the metrics".to_string(),
        Resource::Version => "the version".to_string(),
        Resource::Health => "the health check".to_string(),
    }
}

/// The caller of a handler: the [`Identity`] the authentication layer (`crate::authn`) put in
/// the request's extensions. Without one the request is 401: only the open paths (health,
/// login) reach handlers unauthenticated, and those do not ask for a caller.
#[derive(Debug, Clone)]
pub struct Caller(pub Identity);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Identity>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| ApiError::new(axum::http::StatusCode::UNAUTHORIZED, "not authenticated"))
    }
}
