//! Authentication: who is calling. One middleware, [`authenticate`], runs before every route
//! and puts the caller's [`Identity`] into the request's extensions:
//!
//! 1. an `Identity` already there (code embedding the router) is kept;
//! 2. with authentication off (`auth.enabled = false`, loopback binds only) the caller is the
//!    local admin;
//! 3. `Authorization: Bearer <JWT>` ([`token`]), else the session cookie ([`session`]): the
//!    user and its grants are then read from the store, so a deleted or deactivated user, or a
//!    removed grant, takes effect at the next request. State-changing requests authenticated
//!    by the cookie must carry the session's CSRF token;
//! 4. no credentials: the open paths (health, `/auth/*`, `/login`, `/logout`, static assets)
//!    pass as [`anonymous`], who holds no role (Public); the rest of the API is 401, UI pages
//!    redirect to `/login`.
//!
//! A call of a DAG source's webhook (`POST /api/v2/sources/{name}/sync` carrying a git host's
//! signature or token, [`webhook`]) is checked against the source's secret before anything
//! else: a match is that source's webhook identity, anything else 401. `[auth] metrics_token`
//! at `/metrics` is the metrics scraper, who reads the metrics alone, even behind IAP.
//!
//! With Google IAP configured (`auth.iap`, [`iap`]) step 3 and 4 are replaced: every request
//! but the health check needs the proxy's valid assertion, and sessions and API tokens are not
//! accepted. With OIDC configured (`auth.oidc`, [`oidc`]) the login page links to
//! `/auth/oidc/login`, whose callback starts the same session as the login form.
//!
//! Handlers then ask `crate::auth::authorize` what the identity may do.

pub mod external;
mod external_page;
pub mod iap;
pub mod jwks;
pub mod login;
pub mod oidc;
pub mod session;
pub mod settings;
pub mod token;
pub mod webhook;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use updraft_auth::Identity;

use crate::AppState;
use crate::error::ApiError;
pub use external::{SOURCE_OIDC, SOURCE_PROXY, SignInStore, SyncError};
pub use settings::{AuthConfigError, AuthSettings, TokenKeys};

/// Largest form body read to find its CSRF token.
const MAX_FORM_BYTES: usize = 64 * 1024;
/// The header carrying the CSRF token of state-changing requests from pages.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// What the authentication layer keeps between requests: keys derived from the settings and
/// the failed-login counts.
pub struct Authn {
    pub sessions: session::SessionKeys,
    pub tokens: token::TokenVerifier,
    pub limiter: login::LoginLimiter,
}

impl Authn {
    pub fn new(settings: &AuthSettings) -> Self {
        Authn {
            sessions: session::SessionKeys::new(settings),
            tokens: token::TokenVerifier::new(settings),
            limiter: login::LoginLimiter::default(),
        }
    }
}

/// The login, logout and token routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(login::login_page).post(login::login_submit))
        .route("/logout", post(login::logout))
        .route("/auth/token", post(login::create_token))
        .merge(oidc::server_routes())
}

/// What pages show of the caller: the name and logout button in the header, and the CSRF
/// token their scripts and forms send back.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PageAuth {
    pub username: Option<String>,
    pub csrf_token: Option<String>,
}

tokio::task_local! {
    static PAGE_AUTH: PageAuth;
}

/// The current request's [`PageAuth`] (empty outside a request).
pub fn page_auth() -> PageAuth {
    PAGE_AUTH.try_with(Clone::clone).unwrap_or_default()
}

/// The caller of an open path without credentials: no grants, so Public (the health check).
pub fn anonymous() -> Identity {
    Identity::new("anonymous", Vec::new())
}

/// Put in a request's extensions when its caller proved who it is (not [`anonymous`]).
#[derive(Debug, Clone, Copy)]
pub struct SignedIn;

/// Paths anyone may reach: the health check for load balancers, sign-in and its assets.
pub fn is_open_path(path: &str) -> bool {
    path == "/api/v2/monitor/health"
        || path == "/login"
        || path == "/logout"
        || path.starts_with("/auth/")
        || path.starts_with("/ui/static/")
}

/// How a request proved who it is.
enum Credentials {
    None,
    Bearer(Identity),
    /// The session cookie's value, for the CSRF check.
    Session(Identity, String),
}

/// The middleware: see the module's documentation.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Some(identity) = request.extensions().get::<Identity>() {
        let page = PageAuth {
            username: Some(identity.username.clone()),
            csrf_token: None,
        };
        return PAGE_AUTH.scope(page, next.run(request)).await;
    }
    if webhook::is_webhook_call(request.headers()) {
        return match webhook::identify(&state.config.source_webhooks, request).await {
            Ok((identity, mut request)) => {
                request.extensions_mut().insert(identity);
                request.extensions_mut().insert(SignedIn);
                next.run(request).await
            }
            Err(refusal) => refusal,
        };
    }
    if !state.config.auth.enabled {
        request.extensions_mut().insert(Identity::local_admin());
        return next.run(request).await;
    }
    if let Some(identity) = metrics_scraper(&state.config.auth, &request) {
        request.extensions_mut().insert(identity);
        request.extensions_mut().insert(SignedIn);
        return next.run(request).await;
    }
    if let Some(iap) = state.config.auth.iap.clone() {
        return through_proxy(&state, &iap, request, next).await;
    }
    let open = is_open_path(request.uri().path());
    let credentials = match credentials(&state, request.headers()).await {
        Ok(credentials) => credentials,
        Err(_) if open => Credentials::None,
        Err(refusal) => return refusal,
    };
    match credentials {
        Credentials::None if open => {
            request.extensions_mut().insert(anonymous());
            next.run(request).await
        }
        Credentials::None => refuse_anonymous(&request),
        Credentials::Bearer(identity) => {
            request.extensions_mut().insert(identity);
            request.extensions_mut().insert(SignedIn);
            next.run(request).await
        }
        Credentials::Session(identity, cookie) => {
            let request = match check_csrf(&state, request, &cookie).await {
                Ok(request) => request,
                Err(refusal) => return refusal,
            };
            let page = PageAuth {
                username: Some(identity.username.clone()),
                csrf_token: Some(state.authn.sessions.csrf_token(&cookie)),
            };
            let mut request = request;
            request.extensions_mut().insert(identity);
            request.extensions_mut().insert(SignedIn);
            PAGE_AUTH.scope(page, next.run(request)).await
        }
    }
}

/// Behind Google IAP: every request but the health check proves its caller with the proxy's
/// assertion; sessions and API tokens are not accepted (a request that did not come through
/// the proxy must not get in). State-changing requests from pages still carry a CSRF token,
/// bound to the user, since the browser sends IAP's cookie with any site's requests.
async fn through_proxy(
    state: &AppState,
    iap: &iap::Iap,
    mut request: Request,
    next: Next,
) -> Response {
    if request.uri().path() == iap::HEALTH_PATH {
        request.extensions_mut().insert(anonymous());
        return next.run(request).await;
    }
    let store: std::sync::Arc<dyn updraft_store::Store> = state.store.clone();
    let identity = match iap.identify(request.headers(), &store).await {
        Ok(identity) => identity,
        Err(error) => return iap::refusal(&error, !is_page_path(request.uri().path())),
    };
    let csrf_subject = format!("iap:{}", identity.username);
    let request = match check_csrf(state, request, &csrf_subject).await {
        Ok(request) => request,
        Err(refusal) => return refusal,
    };
    let page = PageAuth {
        username: Some(identity.username.clone()),
        csrf_token: Some(state.authn.sessions.csrf_token(&csrf_subject)),
    };
    let mut request = request;
    request.extensions_mut().insert(identity);
    request.extensions_mut().insert(SignedIn);
    PAGE_AUTH.scope(page, next.run(request)).await
}

fn is_page_path(path: &str) -> bool {
    !path.starts_with("/api/")
        && !path.starts_with("/ui/")
        && !path.starts_with("/auth/")
        && !is_machine_path(path)
}

/// `[auth] metrics_token` presented at a metrics path: the metrics scraper, who may read the
/// metrics and nothing else. Checked before IAP: a Prometheus in the cluster does not come
/// through the proxy. Any other bearer token goes on to be verified as an API token.
fn metrics_scraper(settings: &AuthSettings, request: &Request) -> Option<Identity> {
    use subtle::ConstantTimeEq;
    let expected = settings.metrics_token.as_deref()?;
    let path = request.uri().path();
    if !METRICS_PATHS.contains(&path) {
        return None;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()
        .and_then(bearer_token)?;
    bool::from(presented.as_bytes().ct_eq(expected.as_bytes())).then(Identity::metrics_scraper)
}

/// Where the metrics are served: Prometheus' `/metrics` and the documented operation.
const METRICS_PATHS: [&str; 2] = ["/metrics", "/api/v2/monitor/metrics"];

/// Paths read by machines outside `/api/`: answered like the API (401, never a login page).
fn is_machine_path(path: &str) -> bool {
    METRICS_PATHS.contains(&path)
}

/// The request's credentials. `Err` is the response for credentials presented but refused
/// (a bad token); a bad or expired session cookie counts as none, so the browser is sent to
/// the login page.
async fn credentials(state: &AppState, headers: &HeaderMap) -> Result<Credentials, Response> {
    if let Some(authorization) = headers.get(header::AUTHORIZATION) {
        let token = authorization
            .to_str()
            .ok()
            .and_then(bearer_token)
            .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
        let claims = state
            .authn
            .tokens
            .verify(&state.config.auth, token)
            .map_err(|e| unauthorized(&e.to_string()))?;
        return Ok(Credentials::Bearer(active_user(state, &claims.sub).await?));
    }
    let Some(cookie) = session::cookie_value(headers, session::COOKIE) else {
        return Ok(Credentials::None);
    };
    let Some(found) = state.authn.sessions.decode(cookie, chrono::Utc::now()) else {
        return Ok(Credentials::None);
    };
    match active_user(state, &found.username).await {
        Ok(identity) => Ok(Credentials::Session(identity, cookie.to_string())),
        Err(_) => Ok(Credentials::None),
    }
}

fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The identity of a recorded, active user, with its grants as recorded now.
async fn active_user(state: &AppState, username: &str) -> Result<Identity, Response> {
    match state.store.user(username).await {
        Ok(Some(user)) if user.active => Ok(Identity::new(user.username, user.grants)),
        Ok(_) => Err(unauthorized("the user does not exist or is not active")),
        Err(e) => Err(ApiError::from(e).into_response()),
    }
}

/// Without credentials: the API answers 401, pages send the browser to the login page.
fn refuse_anonymous(request: &Request) -> Response {
    let path = request.uri().path();
    let page = !path.starts_with("/api/") && !path.starts_with("/ui/") && !is_machine_path(path);
    if page && (request.method() == Method::GET || request.method() == Method::HEAD) {
        let target = request.uri().path_and_query().map_or(path, |p| p.as_str());
        return session::redirect(&format!("/login?next={}", crate::ui::format::enc(target)));
    }
    unauthorized(
        "not authenticated: sign in, or send `Authorization: Bearer <token>` (from POST /auth/token)",
    )
}

/// 401 as problem details, with `WWW-Authenticate: Bearer`.
pub fn unauthorized(detail: &str) -> Response {
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, detail).into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

fn is_state_changing(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

#[derive(Deserialize)]
struct CsrfField {
    csrf_token: Option<String>,
}

/// A state-changing request authenticated by the session cookie must carry the session's CSRF
/// token: in the `X-CSRF-Token` header (scripts) or a `csrf_token` field (HTML forms). The
/// request is given back (its body re-assembled when it was read for the field).
async fn check_csrf(state: &AppState, request: Request, cookie: &str) -> Result<Request, Response> {
    if !is_state_changing(request.method()) {
        return Ok(request);
    }
    let sessions = &state.authn.sessions;
    if let Some(presented) = request.headers().get(CSRF_HEADER) {
        let presented = presented.to_str().unwrap_or_default();
        return if sessions.csrf_matches(cookie, presented) {
            Ok(request)
        } else {
            Err(csrf_refused())
        };
    }
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(csrf_refused());
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| csrf_refused())?;
    let field: Option<String> = serde_html_form::from_bytes::<CsrfField>(&bytes)
        .ok()
        .and_then(|f| f.csrf_token);
    match field {
        Some(presented) if sessions.csrf_matches(cookie, &presented) => {
            Ok(Request::from_parts(parts, Body::from(bytes)))
        }
        _ => Err(csrf_refused()),
    }
}

fn csrf_refused() -> Response {
    ApiError::forbidden(
        "missing or wrong CSRF token: reload the page (requests signed in by the session cookie \
         must send the page's X-CSRF-Token)",
    )
    .into_response()
}

pub(crate) fn encode_b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn decode_b64(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}
