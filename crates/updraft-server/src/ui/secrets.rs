//! Connections and variables: lists, and forms to create and edit them. As on every page,
//! writes are made by the page's script through the REST API (with the session's CSRF
//! token); the pages only read. Passwords are write-only (the form's field starts empty:
//! left empty, the stored password is kept) and sensitive values are shown as `***`.

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use serde::Serialize;
use updraft_store::SecretQuery;

use super::common::Frame;
use super::format::{enc, query_get, query_pairs};
use super::render::{self, UiError};
use crate::api::connections::{self, ConnectionResponse};
use crate::api::secrets::{SHARED, rule_tenant, vault, vault_error};
use crate::api::variables::{self, VariableResponse};
use crate::auth::{self, Action, Caller, Identity, Resource, Role};
use crate::state::AppState;

/// Rows a list page shows.
const PAGE_ROWS: u32 = 500;

#[derive(Serialize)]
struct ListPage<T> {
    #[serde(flatten)]
    frame: Frame,
    items: Vec<Line<T>>,
    total: u64,
    shown: usize,
}

#[derive(Serialize)]
struct Line<T> {
    #[serde(flatten)]
    item: T,
    /// `*` for a shared one.
    tenant: String,
    edit_url: String,
    api_url: String,
}

#[derive(Serialize)]
struct FormPage<T> {
    #[serde(flatten)]
    frame: Frame,
    /// `None`: a new one.
    item: Option<T>,
    /// Tenants a new one may be created for (`*`: shared).
    tenants: Vec<String>,
    /// Of an existing one.
    tenant: String,
    api_url: String,
    method: &'static str,
}

/// The query the list pages read: the tenants the caller manages (and the shared ones for a
/// caller who manages every tenant).
fn managed(identity: &Identity) -> SecretQuery {
    let tenants = identity.tenants_with(Role::Op);
    SecretQuery {
        include_shared: tenants.is_none(),
        tenants,
        id_pattern: None,
        id: None,
        limit: PAGE_ROWS,
        offset: 0,
    }
}

/// Tenants a new object may be given: the caller's tenants with Op, `*` for a global Op.
fn creatable_tenants(identity: &Identity) -> Vec<String> {
    match identity.tenants_with(Role::Op) {
        None => vec![SHARED.to_string()],
        Some(tenants) => tenants,
    }
}

fn tenant_query(tenant: Option<&str>) -> String {
    format!("team_name={}", enc(rule_tenant(tenant)))
}

pub async fn connections_list(
    State(state): State<AppState>,
    Caller(identity): Caller,
) -> Result<Response, UiError> {
    auth::authorize(&identity, Action::Read, Resource::Connections)?;
    let (rows, total) = vault(&state)?
        .connections(&managed(&identity))
        .await
        .map_err(vault_error)?;
    let items: Vec<Line<ConnectionResponse>> = rows
        .iter()
        .filter(|(t, _)| {
            auth::allows(
                &identity,
                Action::Read,
                Resource::Connection {
                    tenant: rule_tenant(t.as_deref()),
                },
            )
        })
        .map(|(t, c)| {
            let id = enc(&c.conn_id);
            let team = tenant_query(t.as_deref());
            Line {
                item: connections::connection_response(t.as_deref(), c),
                tenant: rule_tenant(t.as_deref()).to_string(),
                edit_url: format!("/connections/{id}/edit?{team}"),
                api_url: format!("/api/v2/connections/{id}?{team}"),
            }
        })
        .collect();
    let page = ListPage {
        frame: Frame::new("Connections", "connections"),
        shown: items.len(),
        items,
        total,
    };
    render::page("connections.html", "connections.html", false, &page)
}

pub async fn connection_new(Caller(identity): Caller) -> Result<Response, UiError> {
    auth::authorize(&identity, Action::Create, Resource::Connections)?;
    let page: FormPage<ConnectionResponse> = FormPage {
        frame: Frame::new("New connection", "connections"),
        item: None,
        tenants: creatable_tenants(&identity),
        tenant: String::new(),
        api_url: "/api/v2/connections".to_string(),
        method: "POST",
    };
    render::page("connection_form.html", "connection_form.html", false, &page)
}

pub async fn connection_edit(
    State(state): State<AppState>,
    Caller(identity): Caller,
    Path(conn_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    let pairs = query_pairs(raw.as_deref());
    let team = query_get(&pairs, "team_name");
    let (tenant, connection) =
        connections::find(&state, &identity, &conn_id, team, Action::Edit).await?;
    let page = FormPage {
        frame: Frame::new(format!("Connection {conn_id}"), "connections"),
        item: Some(connections::connection_response(
            tenant.as_deref(),
            &connection,
        )),
        tenants: Vec::new(),
        tenant: rule_tenant(tenant.as_deref()).to_string(),
        api_url: format!(
            "/api/v2/connections/{}?{}",
            enc(&conn_id),
            tenant_query(tenant.as_deref())
        ),
        method: "PATCH",
    };
    render::page("connection_form.html", "connection_form.html", false, &page)
}

pub async fn variables_list(
    State(state): State<AppState>,
    Caller(identity): Caller,
) -> Result<Response, UiError> {
    auth::authorize(&identity, Action::Read, Resource::Variables)?;
    let (rows, total) = vault(&state)?
        .variables(&managed(&identity))
        .await
        .map_err(vault_error)?;
    let items: Vec<Line<VariableResponse>> = rows
        .iter()
        .filter(|(t, _)| {
            auth::allows(
                &identity,
                Action::Read,
                Resource::Variable {
                    tenant: rule_tenant(t.as_deref()),
                },
            )
        })
        .map(|(t, v)| {
            let key = enc(&v.key);
            let team = tenant_query(t.as_deref());
            Line {
                item: variables::variable_response(t.as_deref(), v),
                tenant: rule_tenant(t.as_deref()).to_string(),
                edit_url: format!("/variables/{key}/edit?{team}"),
                api_url: format!("/api/v2/variables/{key}?{team}"),
            }
        })
        .collect();
    let page = ListPage {
        frame: Frame::new("Variables", "variables"),
        shown: items.len(),
        items,
        total,
    };
    render::page("variables.html", "variables.html", false, &page)
}

pub async fn variable_new(Caller(identity): Caller) -> Result<Response, UiError> {
    auth::authorize(&identity, Action::Create, Resource::Variables)?;
    let page: FormPage<VariableResponse> = FormPage {
        frame: Frame::new("New variable", "variables"),
        item: None,
        tenants: creatable_tenants(&identity),
        tenant: String::new(),
        api_url: "/api/v2/variables".to_string(),
        method: "POST",
    };
    render::page("variable_form.html", "variable_form.html", false, &page)
}

pub async fn variable_edit(
    State(state): State<AppState>,
    Caller(identity): Caller,
    Path(key): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    let pairs = query_pairs(raw.as_deref());
    let team = query_get(&pairs, "team_name");
    let (tenant, variable) = variables::find(&state, &identity, &key, team, Action::Edit).await?;
    let page = FormPage {
        frame: Frame::new(format!("Variable {key}"), "variables"),
        item: Some(variables::variable_response(tenant.as_deref(), &variable)),
        tenants: Vec::new(),
        tenant: rule_tenant(tenant.as_deref()).to_string(),
        api_url: format!(
            "/api/v2/variables/{}?{}",
            enc(&key),
            tenant_query(tenant.as_deref())
        ),
        method: "PATCH",
    };
    render::page("variable_form.html", "variable_form.html", false, &page)
}
