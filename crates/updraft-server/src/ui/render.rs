//! Templates (embedded at build time) and how pages become responses.
//!
//! Every `.html` template is autoescaped by minijinja: values from the store (DAG ids,
//! descriptions, logs, import error messages) can never become markup.

use std::sync::LazyLock;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use minijinja::Environment;
use minijinja::value::{Serde, Value};
use serde::Serialize;

use crate::error::ApiError;

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("macros.html", include_str!("templates/macros.html")),
    ("error.html", include_str!("templates/error.html")),
    ("dags.html", include_str!("templates/dags.html")),
    ("dags_live.html", include_str!("templates/dags_live.html")),
    ("dag_base.html", include_str!("templates/dag_base.html")),
    ("grid.html", include_str!("templates/grid.html")),
    ("grid_live.html", include_str!("templates/grid_live.html")),
    ("graph.html", include_str!("templates/graph.html")),
    ("graph_live.html", include_str!("templates/graph_live.html")),
    ("gantt.html", include_str!("templates/gantt.html")),
    ("gantt_live.html", include_str!("templates/gantt_live.html")),
    ("code.html", include_str!("templates/code.html")),
    ("runs.html", include_str!("templates/runs.html")),
    ("runs_live.html", include_str!("templates/runs_live.html")),
    ("trigger.html", include_str!("templates/trigger.html")),
    (
        "connections.html",
        include_str!("templates/connections.html"),
    ),
    (
        "connection_form.html",
        include_str!("templates/connection_form.html"),
    ),
    ("variables.html", include_str!("templates/variables.html")),
    (
        "variable_form.html",
        include_str!("templates/variable_form.html"),
    ),
    ("run.html", include_str!("templates/run.html")),
    ("run_live.html", include_str!("templates/run_live.html")),
    ("task.html", include_str!("templates/task.html")),
    ("task_live.html", include_str!("templates/task_live.html")),
    ("pools.html", include_str!("templates/pools.html")),
    ("pools_live.html", include_str!("templates/pools_live.html")),
    (
        "import_errors.html",
        include_str!("templates/import_errors.html"),
    ),
    ("login.html", include_str!("templates/login.html")),
    ("sources.html", include_str!("templates/sources.html")),
    ("assets.html", include_str!("templates/assets.html")),
    ("asset.html", include_str!("templates/asset.html")),
];

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.add_global("asset_v", super::assets::VERSION.as_str());
    // One path segment or query value: everything but unreserved characters percent-encoded.
    env.add_filter("urlenc", |value: String| super::format::enc(&value));
    for (name, source) in TEMPLATES {
        env.add_template(name, source)
            .unwrap_or_else(|e| panic!("template {name} does not compile: {e:#}"));
    }
    env
});

/// Renders a template to HTML. Every page also gets `auth`: the signed-in user's name and the
/// session's CSRF token (see `crate::authn::PageAuth`), and `source_alerts`: the failing DAG
/// sources the caller may see (see `super::sources::banner`).
pub fn html<T: Serialize>(name: &str, ctx: &T) -> Result<String, UiError> {
    let template = ENV
        .get_template(name)
        .map_err(|e| UiError(ApiError::internal(format!("template {name}: {e}"))))?;
    let ctx = minijinja::context! {
        auth => Value::from(Serde(crate::authn::page_auth())),
        source_alerts => Value::from(Serde(super::sources::source_alerts())),
        ..Value::from(Serde(ctx))
    };
    template.render(ctx).map_err(|e| {
        tracing::error!("rendering {name} failed: {e:#}");
        UiError(ApiError::internal(format!("rendering {name} failed")))
    })
}

/// A whole page, or only its live part (`partial`, for the page's script to swap in).
pub fn page<T: Serialize>(
    name: &str,
    live: &str,
    partial: bool,
    ctx: &T,
) -> Result<Response, UiError> {
    let body = html(if partial { live } else { name }, ctx)?;
    Ok(html_response(StatusCode::OK, body))
}

pub fn html_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// A failed page: the problem rendered as an HTML page with the problem's status.
#[derive(Debug)]
pub struct UiError(pub ApiError);

impl From<ApiError> for UiError {
    fn from(e: ApiError) -> Self {
        UiError(e)
    }
}

impl From<updraft_store::StoreError> for UiError {
    fn from(e: updraft_store::StoreError) -> Self {
        UiError(e.into())
    }
}

#[derive(Serialize)]
struct ErrorPage<'a> {
    title: &'a str,
    section: &'a str,
    status: u16,
    reason: &'a str,
    detail: &'a str,
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let e = self.0;
        let ctx = ErrorPage {
            title: &e.title,
            section: "",
            status: e.status_code,
            reason: &e.title,
            detail: &e.detail,
        };
        match html("error.html", &ctx) {
            Ok(body) => html_response(e.status, body),
            Err(_) => (e.status, e.detail).into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_template_compiles() {
        for (name, _) in super::TEMPLATES {
            super::ENV.get_template(name).unwrap();
        }
    }
}
