//! `/connections`: Airflow's connections, per tenant, encrypted at rest.
//!
//! Passwords are write-only: a response carries `***` for a connection that has one and
//! `null` for one that has none. Values of `extra` under sensitive keys are `***` too; a
//! `***` sent back (in `password` or inside `extra`) keeps the stored value, so a client can
//! return what it was shown.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use updraft_secrets::{Connection, MASK, Masker};
use updraft_store::{SecretQuery, StoreError, WriteMode};
use utoipa::{IntoParams, ToSchema};

use super::doc::{E400, E403, E404, E409, E422};
use super::params::{de_present, order_by, paging};
use super::secrets::{
    LOOKUP_LIMIT, mask_json_text, new_object_tenant, pick, rule_tenant, unmask, unmask_text, vault,
    vault_error,
};
use super::{ApiJson, ApiPath, ApiQuery, check_update_mask};
use crate::AppState;
use crate::audit::Entry;
use crate::auth::{self, Action, Caller, Identity, Resource};
use crate::error::ApiError;

/// A connection as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConnectionResponse {
    pub connection_id: String,
    pub conn_type: String,
    pub description: Option<String>,
    pub host: Option<String>,
    pub login: Option<String>,
    pub schema: Option<String>,
    pub port: Option<u16>,
    /// `***` when the connection has a password, else `null`: never the password.
    pub password: Option<String>,
    /// JSON text; values under sensitive keys are `***`.
    pub extra: Option<String>,
    /// The tenant; `null`: shared by every tenant.
    pub team_name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionCollectionResponse {
    pub connections: Vec<ConnectionResponse>,
    pub total_entries: u64,
}

/// `POST /connections`, `POST /connections/test`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct ConnectionBody {
    #[schema(max_length = 200, pattern = r"^[\w.-]+$")]
    pub connection_id: String,
    pub conn_type: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub login: Option<String>,
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub password: Option<String>,
    /// JSON text of an object.
    #[serde(default)]
    pub extra: Option<String>,
    /// The tenant (`*`: shared). Absent: the caller's only tenant, or shared for a caller
    /// who manages every tenant.
    #[serde(default)]
    pub team_name: Option<String>,
}

/// `PATCH /connections/{connection_id}`: fields left out are kept; `null` clears one. A
/// `password` left out, `null` or `***` keeps the stored password (`update_mask=password`
/// with `null` clears it).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct ConnectionPatchBody {
    #[serde(default)]
    pub connection_id: Option<String>,
    #[serde(default)]
    pub conn_type: Option<String>,
    #[serde(default, deserialize_with = "de_present")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "de_present")]
    #[schema(value_type = Option<String>)]
    pub host: Option<Option<String>>,
    #[serde(default, deserialize_with = "de_present")]
    #[schema(value_type = Option<String>)]
    pub login: Option<Option<String>>,
    #[serde(default, deserialize_with = "de_present")]
    #[schema(value_type = Option<String>)]
    pub schema: Option<Option<String>>,
    #[serde(default, deserialize_with = "de_present")]
    #[schema(value_type = Option<u16>)]
    pub port: Option<Option<u16>>,
    #[serde(default, deserialize_with = "de_present")]
    #[schema(value_type = Option<String>)]
    pub password: Option<Option<String>>,
    #[serde(default, deserialize_with = "de_present")]
    #[schema(value_type = Option<String>)]
    pub extra: Option<Option<String>>,
    /// A connection's tenant cannot change; if given, it must be its tenant.
    #[serde(default)]
    pub team_name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionTestResponse {
    pub status: bool,
    pub message: String,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConnectionsQuery {
    /// Page size (default 50, at most 100).
    #[param(value_type = Option<u32>, minimum = 0)]
    limit: Option<String>,
    #[param(value_type = Option<u64>, minimum = 0)]
    offset: Option<String>,
    /// Substring of the connection id (`%` is ignored).
    connection_id_pattern: Option<String>,
    /// `connection_id` (or `id`): connections are listed by tenant (shared first), then id.
    #[serde(default)]
    #[param(value_type = Option<Vec<String>>)]
    order_by: Vec<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TeamQuery {
    /// The tenant whose connection is meant (`*`: the shared one); needed only when the id
    /// exists in several tenants the caller can see.
    team_name: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PatchQuery {
    /// The tenant whose connection is meant (`*`: the shared one).
    team_name: Option<String>,
    /// Fields of the body to apply (default: every field given).
    #[serde(default)]
    #[param(value_type = Option<Vec<String>>)]
    update_mask: Vec<String>,
}

const PATCHABLE: [&str; 9] = [
    "connection_id",
    "conn_type",
    "description",
    "host",
    "login",
    "schema",
    "port",
    "password",
    "extra",
];

pub fn connection_not_found(conn_id: &str) -> ApiError {
    ApiError::not_found(format!(
        "The Connection with connection_id: `{conn_id}` was not found"
    ))
}

fn resource(tenant: &str) -> Resource<'_> {
    Resource::Connection { tenant }
}

/// The values of a connection that are masked wherever it is shown.
fn masker_for(connection: &Connection) -> Masker {
    let mut masker = Masker::new();
    if let Some(password) = &connection.password {
        masker.add(password);
    }
    masker
}

/// The connection as shown: no password, sensitive extra masked. Its secret values join the
/// process-wide masker, so the server masks them wherever else it shows text (task logs).
pub fn connection_response(tenant: Option<&str>, connection: &Connection) -> ConnectionResponse {
    for secret in connection.secret_values() {
        updraft_secrets::mask::register(&secret);
    }
    let masker = masker_for(connection);
    ConnectionResponse {
        connection_id: connection.conn_id.clone(),
        conn_type: connection.conn_type.clone(),
        description: connection.description.clone(),
        host: connection.host.clone(),
        login: connection.login.clone(),
        schema: connection.schema.clone(),
        port: connection.port,
        password: connection.password.as_ref().map(|_| MASK.to_string()),
        extra: connection
            .extra
            .as_deref()
            .map(|e| mask_json_text(e, &masker)),
        team_name: tenant.map(str::to_string),
    }
}

/// What the audit log keeps of a connection: no password, sensitive extra masked.
fn audit_details(tenant: Option<&str>, connection: &Connection) -> Value {
    let shown = connection_response(tenant, connection);
    json!({
        "connection_id": shown.connection_id,
        "conn_type": shown.conn_type,
        "host": shown.host,
        "login": shown.login,
        "schema": shown.schema,
        "port": shown.port,
        "extra": shown.extra,
        "team_name": shown.team_name,
    })
}

fn check_conn_id(conn_id: &str) -> Result<(), ApiError> {
    let valid = !conn_id.is_empty()
        && conn_id.chars().count() <= 200
        && conn_id
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        Ok(())
    } else {
        Err(ApiError::unprocessable(format!(
            "connection_id: `{conn_id}` must be 1 to 200 letters, digits, `_`, `.` or `-`"
        )))
    }
}

fn check_conn_type(conn_type: &str) -> Result<(), ApiError> {
    if conn_type.trim().is_empty() {
        return Err(ApiError::unprocessable("conn_type: must not be empty"));
    }
    Ok(())
}

/// `extra` must be the JSON text of an object, as Airflow requires.
fn check_extra(extra: Option<&str>) -> Result<(), ApiError> {
    match extra.map(serde_json::from_str::<Value>) {
        None | Some(Ok(Value::Object(_))) => Ok(()),
        Some(_) => Err(ApiError::unprocessable(
            "extra: must be the JSON text of an object, e.g. {\"timeout\": 5}",
        )),
    }
}

fn body_connection(body: &ConnectionBody) -> Result<Connection, ApiError> {
    check_conn_id(&body.connection_id)?;
    check_conn_type(&body.conn_type)?;
    check_extra(body.extra.as_deref())?;
    Ok(Connection {
        conn_id: body.connection_id.clone(),
        conn_type: body.conn_type.clone(),
        description: body.description.clone(),
        host: body.host.clone(),
        schema: body.schema.clone(),
        login: body.login.clone(),
        password: body.password.clone(),
        port: body.port,
        extra: body.extra.clone(),
    })
}

/// Every tenant's connection with this exact id that the caller could see.
async fn candidates(
    state: &AppState,
    identity: &Identity,
    conn_id: &str,
) -> Result<Vec<(Option<String>, Connection)>, ApiError> {
    let query = SecretQuery {
        tenants: identity.visible_tenants(),
        include_shared: true,
        id: Some(conn_id.to_string()),
        limit: LOOKUP_LIMIT,
        ..SecretQuery::default()
    };
    let (found, _) = vault(state)?
        .connections(&query)
        .await
        .map_err(vault_error)?;
    Ok(found)
}

/// The connection a request means (see [`pick`]), after checking the caller may do `action`.
pub(crate) async fn find(
    state: &AppState,
    identity: &Identity,
    conn_id: &str,
    team: Option<&str>,
    action: Action,
) -> Result<(Option<String>, Connection), ApiError> {
    let found = candidates(state, identity, conn_id).await?;
    pick(identity, action, team, found, resource, || {
        connection_not_found(conn_id)
    })
}

/// Connections of the tenants the caller manages (and the shared ones, for a caller who
/// manages every tenant), by tenant then id.
#[utoipa::path(
    get,
    path = "/connections",
    tag = "Connection",
    params(ConnectionsQuery),
    responses((status = 200, description = "Successful response", body = ConnectionCollectionResponse), E400, E403, E422)
)]
pub async fn get_connections(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiQuery(query): ApiQuery<ConnectionsQuery>,
) -> Result<Json<ConnectionCollectionResponse>, ApiError> {
    auth::authorize(&identity, Action::Read, Resource::Connections)?;
    let (_, descending) = order_by(&query.order_by, &[("connection_id", ()), ("id", ())], ())?;
    if descending {
        return Err(ApiError::bad_request(
            "order_by: connections are listed by tenant then id, ascending only",
        ));
    }
    let page = paging(&query.limit, &query.offset)?;
    let tenants = identity.tenants_with(auth::Role::Op);
    let store_query = SecretQuery {
        include_shared: tenants.is_none(),
        tenants,
        id_pattern: query
            .connection_id_pattern
            .as_deref()
            .map(|p| p.replace('%', ""))
            .filter(|p| !p.is_empty()),
        id: None,
        limit: page.limit.unwrap_or(super::params::DEFAULT_LIMIT),
        offset: u32::try_from(page.offset).unwrap_or(u32::MAX),
    };
    let (rows, total) = vault(&state)?
        .connections(&store_query)
        .await
        .map_err(vault_error)?;
    Ok(Json(ConnectionCollectionResponse {
        connections: rows
            .iter()
            .filter(|(t, _)| {
                auth::allows(&identity, Action::Read, resource(rule_tenant(t.as_deref())))
            })
            .map(|(t, c)| connection_response(t.as_deref(), c))
            .collect(),
        total_entries: total,
    }))
}

/// One connection.
#[utoipa::path(
    get,
    path = "/connections/{connection_id}",
    tag = "Connection",
    params(("connection_id" = String, Path), TeamQuery),
    responses((status = 200, description = "Successful response", body = ConnectionResponse), E400, E403, E404, E422)
)]
pub async fn get_connection(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath(conn_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<TeamQuery>,
) -> Result<Json<ConnectionResponse>, ApiError> {
    let (tenant, connection) = find(
        &state,
        &identity,
        &conn_id,
        query.team_name.as_deref(),
        Action::Read,
    )
    .await?;
    Ok(Json(connection_response(tenant.as_deref(), &connection)))
}

/// The tenant a new connection (or one being tested) belongs to, after checking the caller
/// may create connections there.
fn creation_tenant(identity: &Identity, asked: Option<&str>) -> Result<Option<String>, ApiError> {
    auth::authorize(identity, Action::Create, Resource::Connections)?;
    let tenant = new_object_tenant(identity, asked, "connections")?;
    // Naming a tenant the caller may not see is refused like any it may not manage.
    auth::authorize_or_missing(
        identity,
        Action::Create,
        resource(rule_tenant(tenant.as_deref())),
        || {
            ApiError::forbidden(format!(
                "{} may not create connections for that tenant",
                identity.username
            ))
        },
    )?;
    Ok(tenant)
}

/// Create a connection.
#[utoipa::path(
    post,
    path = "/connections",
    tag = "Connection",
    request_body = ConnectionBody,
    responses((status = 201, description = "Created", body = ConnectionResponse), E400, E403, E409, E422)
)]
pub async fn post_connection(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiJson(body): ApiJson<ConnectionBody>,
) -> Result<(StatusCode, Json<ConnectionResponse>), ApiError> {
    let tenant = creation_tenant(&identity, body.team_name.as_deref())?;
    let connection = body_connection(&body)?;
    vault(&state)?
        .write_connection(tenant.as_deref(), &connection, WriteMode::Create)
        .await
        .map_err(|e| match e {
            updraft_secrets::SecretsError::Store(StoreError::Conflict(_)) => {
                ApiError::conflict(format!(
                    "The connection with connection_id: `{}` already exists",
                    connection.conn_id
                ))
            }
            other => vault_error(other),
        })?;
    Entry::new(&identity, "post_connection")
        .tenant(tenant.as_deref())
        .extra(audit_details(tenant.as_deref(), &connection))
        .record(&state)
        .await;
    Ok((
        StatusCode::CREATED,
        Json(connection_response(tenant.as_deref(), &connection)),
    ))
}

/// A text field of a patch: its name, what the body says of it, where it goes.
type TextPatch<'a> = (&'a str, Option<Option<String>>, &'a mut Option<String>);

/// Applies a patch body to a stored connection; `fields` empty: every field given.
fn apply_patch(
    connection: &mut Connection,
    body: ConnectionPatchBody,
    fields: &[String],
) -> Result<(), ApiError> {
    let wanted = |field: &str| fields.is_empty() || fields.iter().any(|f| f == field);
    let named = |field: &str| fields.iter().any(|f| f == field);
    if wanted("conn_type")
        && let Some(conn_type) = body.conn_type
    {
        check_conn_type(&conn_type)?;
        connection.conn_type = conn_type;
    }
    let text_fields: [TextPatch<'_>; 4] = [
        ("description", body.description, &mut connection.description),
        ("host", body.host, &mut connection.host),
        ("login", body.login, &mut connection.login),
        ("schema", body.schema, &mut connection.schema),
    ];
    for (name, given, slot) in text_fields {
        match given {
            Some(value) if wanted(name) => *slot = value,
            None if named(name) => *slot = None,
            _ => {}
        }
    }
    match body.port {
        Some(port) if wanted("port") => connection.port = port,
        None if named("port") => connection.port = None,
        _ => {}
    }
    match body.password {
        Some(Some(password)) if wanted("password") => {
            connection.password = unmask_text(Some(password), connection.password.as_deref());
        }
        Some(None) | None if named("password") => connection.password = None,
        _ => {}
    }
    match body.extra {
        Some(Some(extra)) if wanted("extra") => {
            check_extra(Some(&extra))?;
            connection.extra = Some(merge_extra(&extra, connection.extra.as_deref()));
        }
        Some(None) if wanted("extra") => connection.extra = None,
        None if named("extra") => connection.extra = None,
        _ => {}
    }
    Ok(())
}

/// A new `extra` whose `***` values (as shown) keep the stored ones.
fn merge_extra(new: &str, old: Option<&str>) -> String {
    let old = old.and_then(|o| serde_json::from_str::<Value>(o).ok());
    match (serde_json::from_str::<Value>(new), old) {
        (Ok(new_value), Some(old_value)) => {
            let merged = unmask(new_value.clone(), &old_value);
            if merged == new_value {
                new.to_string()
            } else {
                merged.to_string()
            }
        }
        _ => new.to_string(),
    }
}

/// Change a connection. Its id and tenant cannot change.
#[utoipa::path(
    patch,
    path = "/connections/{connection_id}",
    tag = "Connection",
    params(("connection_id" = String, Path), PatchQuery),
    request_body = ConnectionPatchBody,
    responses((status = 200, description = "Successful response", body = ConnectionResponse), E400, E403, E404, E422)
)]
pub async fn patch_connection(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath(conn_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<PatchQuery>,
    ApiJson(body): ApiJson<ConnectionPatchBody>,
) -> Result<Json<ConnectionResponse>, ApiError> {
    let fields = check_update_mask(&query.update_mask, &PATCHABLE)?;
    let (tenant, mut connection) = find(
        &state,
        &identity,
        &conn_id,
        query.team_name.as_deref(),
        Action::Edit,
    )
    .await?;
    if let Some(given) = &body.connection_id
        && *given != conn_id
    {
        return Err(ApiError::bad_request(
            "The connection_id in the request body does not match the URL parameter",
        ));
    }
    if let Some(team) = &body.team_name
        && super::secrets::parse_team(team) != tenant.as_deref()
    {
        return Err(ApiError::bad_request(
            "team_name: a connection's tenant cannot change: create a new connection instead",
        ));
    }
    apply_patch(&mut connection, body, &fields)?;
    vault(&state)?
        .write_connection(tenant.as_deref(), &connection, WriteMode::Update)
        .await
        .map_err(vault_error)?;
    let mut details = audit_details(tenant.as_deref(), &connection);
    details["update_mask"] = json!(fields);
    Entry::new(&identity, "patch_connection")
        .tenant(tenant.as_deref())
        .extra(details)
        .record(&state)
        .await;
    Ok(Json(connection_response(tenant.as_deref(), &connection)))
}

/// Delete a connection.
#[utoipa::path(
    delete,
    path = "/connections/{connection_id}",
    tag = "Connection",
    params(("connection_id" = String, Path), TeamQuery),
    responses((status = 204, description = "Deleted"), E400, E403, E404, E422)
)]
pub async fn delete_connection(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiPath(conn_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<TeamQuery>,
) -> Result<StatusCode, ApiError> {
    let (tenant, _) = find(
        &state,
        &identity,
        &conn_id,
        query.team_name.as_deref(),
        Action::Delete,
    )
    .await?;
    if !vault(&state)?
        .delete_connection(tenant.as_deref(), &conn_id)
        .await
        .map_err(vault_error)?
    {
        return Err(connection_not_found(&conn_id));
    }
    Entry::new(&identity, "delete_connection")
        .tenant(tenant.as_deref())
        .extra(json!({ "connection_id": conn_id, "team_name": tenant }))
        .record(&state)
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// How long a connection test may take.
const TEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Test a connection: `http`/`https` send a GET to the host, `postgres` connects and runs
/// `SELECT 1`; other types answer `status: false`. Like creating one, testing needs Op in the
/// connection's tenant. A `password` left out or `***` uses the stored connection's (of the
/// same id and tenant), so a stored connection can be tested without sending its password.
#[utoipa::path(
    post,
    path = "/connections/test",
    tag = "Connection",
    request_body = ConnectionBody,
    responses((status = 200, description = "Successful response", body = ConnectionTestResponse), E400, E403, E422)
)]
pub async fn test_connection(
    State(state): State<AppState>,
    Caller(identity): Caller,
    ApiJson(body): ApiJson<ConnectionBody>,
) -> Result<Json<ConnectionTestResponse>, ApiError> {
    let tenant = creation_tenant(&identity, body.team_name.as_deref())?;
    let mut connection = body_connection(&body)?;
    if connection.password.is_none() || connection.password.as_deref() == Some(MASK) {
        let stored = vault(&state)?
            .connection(tenant.as_deref(), &connection.conn_id)
            .await
            .map_err(vault_error)?;
        connection.password = stored.and_then(|s| s.password);
    }
    let (status, message) = match tokio::time::timeout(TEST_TIMEOUT, probe(&connection)).await {
        Ok(result) => result,
        Err(_) => (
            false,
            format!("no answer within {} s", TEST_TIMEOUT.as_secs()),
        ),
    };
    // The message may quote what a server answered; it must not quote a secret.
    let message = masker_for(&connection).mask(&message);
    Ok(Json(ConnectionTestResponse { status, message }))
}

async fn probe(connection: &Connection) -> (bool, String) {
    match connection.conn_type.as_str() {
        "http" | "https" => probe_http(connection).await,
        "postgres" | "postgresql" => probe_postgres(connection).await,
        other => (
            false,
            format!(
                "testing connections of type `{other}` is not supported; updraft tests http, \
                 https and postgres connections"
            ),
        ),
    }
}

/// The URL an HTTP connection's host names, as Airflow's `HttpHook` builds its base URL.
fn http_url(connection: &Connection) -> Option<String> {
    let host = connection.host.as_deref()?.trim();
    if host.is_empty() {
        return None;
    }
    let mut url = if host.contains("://") {
        host.to_string()
    } else {
        format!("{}://{host}", connection.conn_type)
    };
    if let Some(port) = connection.port {
        url.push_str(&format!(":{port}"));
    }
    if let Some(schema) = connection.schema.as_deref().filter(|s| !s.is_empty()) {
        url.push('/');
        url.push_str(schema.trim_start_matches('/'));
    }
    Some(url)
}

async fn probe_http(connection: &Connection) -> (bool, String) {
    let Some(url) = http_url(connection) else {
        return (false, "the connection has no host".to_string());
    };
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TEST_TIMEOUT)
        .build()
    {
        Ok(client) => client,
        Err(e) => return (false, format!("cannot make an HTTP client: {e}")),
    };
    let mut request = client.get(&url);
    if let Some(login) = &connection.login {
        request = request.basic_auth(login, connection.password.as_deref());
    }
    match request.send().await {
        Ok(response) if response.status().is_success() || response.status().is_redirection() => {
            (true, format!("GET {url}: {}", response.status()))
        }
        Ok(response) => (false, format!("GET {url}: {}", response.status())),
        Err(e) => (false, format!("GET {url}: {e}")),
    }
}

async fn probe_postgres(connection: &Connection) -> (bool, String) {
    use sqlx::Connection as _;
    let Some(host) = connection.host.as_deref().filter(|h| !h.is_empty()) else {
        return (false, "the connection has no host".to_string());
    };
    let mut options = sqlx::postgres::PgConnectOptions::new()
        .host(host)
        .port(connection.port.unwrap_or(5432));
    if let Some(login) = &connection.login {
        options = options.username(login);
    }
    if let Some(password) = &connection.password {
        options = options.password(password);
    }
    if let Some(schema) = connection.schema.as_deref().filter(|s| !s.is_empty()) {
        options = options.database(schema);
    }
    let mut db = match sqlx::PgConnection::connect_with(&options).await {
        Ok(db) => db,
        Err(e) => return (false, format!("cannot connect to {host}: {e}")),
    };
    let answer = sqlx::query_scalar::<_, i32>("SELECT 1")
        .fetch_one(&mut db)
        .await;
    let _ = db.close().await;
    match answer {
        Ok(_) => (true, "Connection successfully tested".to_string()),
        Err(e) => (
            false,
            format!("connected to {host}, but SELECT 1 failed: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_urls_are_built_as_airflow_builds_them() {
        let conn = |host: &str, port, schema: Option<&str>| Connection {
            conn_id: "c".into(),
            conn_type: "https".into(),
            host: Some(host.into()),
            port,
            schema: schema.map(str::to_string),
            ..Connection::default()
        };
        assert_eq!(
            http_url(&conn("example.com", None, None)).as_deref(),
            Some("https://example.com")
        );
        assert_eq!(
            http_url(&conn("http://h", Some(8080), Some("api"))).as_deref(),
            Some("http://h:8080/api")
        );
        assert_eq!(http_url(&conn(" ", None, None)), None);
    }

    #[test]
    fn patches_keep_the_password_unless_named() {
        let mut stored = Connection {
            conn_id: "c".into(),
            conn_type: "http".into(),
            host: Some("a".into()),
            password: Some("pw".into()),
            ..Connection::default()
        };
        let body: ConnectionPatchBody =
            serde_json::from_value(json!({"host": "b", "password": null})).unwrap();
        apply_patch(&mut stored, body, &[]).unwrap();
        assert_eq!(stored.host.as_deref(), Some("b"));
        assert_eq!(stored.password.as_deref(), Some("pw"));
        let body: ConnectionPatchBody = serde_json::from_value(json!({"password": "***"})).unwrap();
        apply_patch(&mut stored, body, &[]).unwrap();
        assert_eq!(stored.password.as_deref(), Some("pw"));
        let body: ConnectionPatchBody = serde_json::from_value(json!({})).unwrap();
        apply_patch(&mut stored, body, &["password".to_string()]).unwrap();
        assert_eq!(stored.password, None);
    }
}
