//! Local login: the login page (`GET /login`), the form's target (`POST /login`), logout
//! (`POST /logout`), and Airflow 3's token endpoint (`POST /auth/token`: username and password
//! in, a JWT out). Failed logins are limited per username and per client address.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::session;
use crate::AppState;
use crate::api::ApiJson;
use crate::error::ApiError;

/// The login form's CSRF nonce cookie (there is no session yet to bind the token to).
pub const NONCE_COOKIE: &str = "updraft_login";
const NONCE_LIFETIME: Duration = Duration::from_secs(3600);
/// The only words a failed login gets: they do not tell whether the user exists.
pub const INVALID_LOGIN: &str = "invalid username or password";
const WINDOW: Duration = Duration::from_secs(60);
/// Distinct usernames and addresses tracked before expired entries are dropped.
const MAX_TRACKED: usize = 10_000;

/// Verifying a password against this when the user does not exist keeps the time the same,
/// so response times do not tell which usernames exist.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    updraft_auth::password::hash("not a password of anyone").expect("hashing a constant")
});

/// Failed logins in the last minute, per username and per client address, in memory: each
/// server process limits on its own.
#[derive(Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl LoginLimiter {
    /// `Some(retry after)` when `keys` have had `limit` failures within the last minute.
    pub fn blocked(&self, keys: &[String], limit: u32, now: Instant) -> Option<Duration> {
        let failures = self.failures.lock().expect("limiter lock");
        keys.iter()
            .filter_map(|key| failures.get(key))
            .filter_map(|times| {
                let recent: Vec<&Instant> = times
                    .iter()
                    .filter(|t| now.duration_since(**t) < WINDOW)
                    .collect();
                (recent.len() >= limit as usize).then(|| {
                    let oldest = recent[recent.len() - limit as usize];
                    WINDOW.saturating_sub(now.duration_since(*oldest))
                })
            })
            .max()
    }

    pub fn record_failure(&self, keys: &[String], limit: u32, now: Instant) {
        let mut failures = self.failures.lock().expect("limiter lock");
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < WINDOW)
            });
        }
        for key in keys {
            let times = failures.entry(key.clone()).or_default();
            times.push_back(now);
            while times.len() > limit as usize {
                times.pop_front();
            }
        }
    }

    /// A successful login forgets the username's failures (not the address's).
    pub fn forget(&self, key: &str) {
        self.failures.lock().expect("limiter lock").remove(key);
    }
}

/// The client's address when the server knows it (it does when serving over TCP).
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip()),
        ))
    }
}

/// Why a password login failed.
enum LoginFailure {
    /// Too many failures: try again after this long.
    Limited(Duration),
    Invalid,
    Store(ApiError),
}

/// Checks `username`/`password` against the store, with the rate limit; records the login.
async fn check_password(
    state: &AppState,
    client: Option<IpAddr>,
    username: &str,
    password: &str,
) -> Result<(), LoginFailure> {
    let limit = state.config.auth.login_failures_per_minute;
    let user_key = format!("user:{username}");
    let mut keys = vec![user_key.clone()];
    if let Some(ip) = client {
        keys.push(format!("ip:{ip}"));
    }
    let limiter = &state.authn.limiter;
    if let Some(retry) = limiter.blocked(&keys, limit, Instant::now()) {
        return Err(LoginFailure::Limited(retry));
    }
    let user = state
        .store
        .user(username)
        .await
        .map_err(|e| LoginFailure::Store(e.into()))?;
    let stored = user
        .as_ref()
        .filter(|user| user.active)
        .and_then(|user| user.password_hash.clone());
    let matches = verify_password(password.to_string(), stored).await;
    if !matches {
        limiter.record_failure(&keys, limit, Instant::now());
        tracing::info!(username, client = ?client, "failed login");
        return Err(LoginFailure::Invalid);
    }
    limiter.forget(&user_key);
    state
        .store
        .record_login(username, Utc::now())
        .await
        .map_err(|e| LoginFailure::Store(e.into()))?;
    Ok(())
}

/// argon2 is slow on purpose: verify off the async threads. No stored hash (unknown user,
/// inactive, or one who signs in elsewhere) verifies against a dummy and fails.
async fn verify_password(password: String, stored: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let (hash, real) = match &stored {
            Some(hash) => (hash.as_str(), true),
            None => (DUMMY_HASH.as_str(), false),
        };
        let verified = updraft_auth::password::verify(&password, hash).unwrap_or_else(|e| {
            tracing::error!("a stored password hash is unusable: {e}");
            false
        });
        real && verified
    })
    .await
    .unwrap_or(false)
}

#[derive(Debug, Deserialize)]
pub struct NextQuery {
    #[serde(default)]
    next: Option<String>,
}

#[derive(Serialize)]
struct LoginPage<'a> {
    title: &'a str,
    section: &'a str,
    next: &'a str,
    username: &'a str,
    csrf_token: String,
    error: Option<String>,
    /// "Sign in with <provider>" when OIDC is configured: the provider's name and the link.
    oidc_name: Option<String>,
    oidc_link: String,
}

/// `GET /login`: the form, with a fresh CSRF nonce. A signed-in user goes on to `next`.
pub async fn login_page(
    State(state): State<AppState>,
    signed_in: Option<axum::Extension<super::SignedIn>>,
    headers: HeaderMap,
    Query(query): Query<NextQuery>,
) -> Response {
    let next = session::safe_next(query.next.as_deref().unwrap_or("/"));
    if signed_in.is_some() || !state.config.auth.enabled {
        return session::redirect(next);
    }
    login_form(&state, &headers, StatusCode::OK, next, "", None)
}

/// The login page. The browser's nonce cookie is kept when it has one: a second login page
/// loaded meanwhile (another tab, a favicon sent to the login page) must not expire the form
/// already shown.
fn login_form(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    next: &str,
    username: &str,
    error: Option<String>,
) -> Response {
    let nonce = session::cookie_value(headers, NONCE_COOKIE)
        .filter(|nonce| !nonce.is_empty() && nonce.len() <= 64)
        .map(str::to_string)
        .unwrap_or_else(|| super::encode_b64(&super::settings::random_bytes::<16>()));
    let page = LoginPage {
        title: "Sign in",
        section: "login",
        next,
        username,
        csrf_token: state.authn.sessions.csrf_token(&format!("login:{nonce}")),
        error,
        oidc_name: (state.config.auth.oidc.as_ref()).map(|oidc| oidc.display_name().to_string()),
        oidc_link: format!(
            "{}?next={}",
            super::oidc::LOGIN_PATH,
            crate::ui::format::enc(next)
        ),
    };
    let body = match crate::ui::render::html("login.html", &page) {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    let mut response = crate::ui::render::html_response(status, body);
    response.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(&state.config.auth, NONCE_COOKIE, nonce, NONCE_LIFETIME),
    );
    response
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    next: String,
}

/// `POST /login`: checks the form's CSRF token and the password, then starts a session.
pub async fn login_submit(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = session::safe_next(&form.next);
    let nonce = session::cookie_value(&headers, NONCE_COOKIE).unwrap_or_default();
    let csrf_ok = !nonce.is_empty()
        && state
            .authn
            .sessions
            .csrf_matches(&format!("login:{nonce}"), &form.csrf_token);
    if !csrf_ok {
        let error = "The login form expired; please sign in again.".to_string();
        return login_form(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            next,
            &form.username,
            Some(error),
        );
    }
    match check_password(&state, client, &form.username, &form.password).await {
        Ok(()) => session::sign_in_response(&state, &form.username, next),
        Err(LoginFailure::Invalid) => login_form(
            &state,
            &headers,
            StatusCode::UNAUTHORIZED,
            next,
            &form.username,
            Some(INVALID_LOGIN.to_string()),
        ),
        Err(LoginFailure::Limited(retry)) => {
            let error = format!(
                "Too many failed logins; try again in {} seconds.",
                retry_secs(retry)
            );
            let mut response = login_form(
                &state,
                &headers,
                StatusCode::TOO_MANY_REQUESTS,
                next,
                &form.username,
                Some(error),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_secs(retry).into());
            response
        }
        Err(LoginFailure::Store(e)) => crate::ui::render::UiError(e).into_response(),
    }
}

/// `POST /logout`: ends the session (the middleware has checked the form's CSRF token).
pub async fn logout(State(state): State<AppState>) -> Response {
    session::sign_out_response(&state)
}

#[derive(Debug, Deserialize)]
pub struct TokenRequest {
    username: String,
    password: String,
}

#[derive(Debug, Serialize)]
pub struct TokenResponse {
    access_token: String,
}

/// `POST /auth/token` (Airflow 3): `{"username", "password"}` → 201 `{"access_token"}`.
pub async fn create_token(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    ApiJson(request): ApiJson<TokenRequest>,
) -> Response {
    match check_password(&state, client, &request.username, &request.password).await {
        Ok(()) => match super::token::issue(&state.config.auth, &request.username, Utc::now()) {
            Ok(access_token) => (
                StatusCode::CREATED,
                [(header::CACHE_CONTROL, "no-store")],
                axum::Json(TokenResponse { access_token }),
            )
                .into_response(),
            Err(e) => ApiError::internal(e.to_string()).into_response(),
        },
        Err(LoginFailure::Invalid) => super::unauthorized(INVALID_LOGIN),
        Err(LoginFailure::Limited(retry)) => {
            let mut response = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many failed logins; try again in {} seconds",
                    retry_secs(retry)
                ),
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_secs(retry).into());
            response
        }
        Err(LoginFailure::Store(e)) => e.into_response(),
    }
}

fn retry_secs(retry: Duration) -> u64 {
    retry.as_secs() + u64::from(retry.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_blocks_after_the_limit_and_forgets_after_a_minute() {
        let limiter = LoginLimiter::default();
        let keys = vec!["user:alice".to_string(), "ip:127.0.0.1".to_string()];
        let start = Instant::now();
        for _ in 0..5 {
            assert_eq!(limiter.blocked(&keys, 5, start), None);
            limiter.record_failure(&keys, 5, start);
        }
        let retry = limiter
            .blocked(&keys, 5, start + Duration::from_secs(10))
            .unwrap();
        assert_eq!(retry, Duration::from_secs(50));
        // Another user from the same address is blocked too; from elsewhere, not.
        assert!(
            limiter
                .blocked(&["user:bob".into(), "ip:127.0.0.1".into()], 5, start)
                .is_some()
        );
        assert!(
            limiter
                .blocked(&["user:bob".into(), "ip:10.0.0.1".into()], 5, start)
                .is_none()
        );
        assert_eq!(
            limiter.blocked(&keys, 5, start + Duration::from_secs(61)),
            None
        );
    }
}
