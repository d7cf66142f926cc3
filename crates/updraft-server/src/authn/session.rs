//! Login sessions: a cookie carrying the username, when it was issued and when it expires,
//! signed with HMAC-SHA256 under a key derived from the secret key. The user's roles are not in
//! it: they are read from the store at every request, so a removed grant takes effect at once.
//!
//! Every state-changing request authenticated by the cookie must carry the session's CSRF
//! token (an HMAC of the cookie) in `X-CSRF-Token` or a `csrf_token` form field.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use cookie::{Cookie, SameSite};
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};

use super::settings::AuthSettings;
use super::{decode_b64, encode_b64};
use crate::AppState;

/// The session cookie's name.
pub const COOKIE: &str = "updraft_session";
/// Cookies longer than this are ignored without decoding.
const MAX_COOKIE_LEN: usize = 2048;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// The username.
    #[serde(rename = "u")]
    pub username: String,
    /// Issued at, in Unix seconds.
    pub iat: i64,
    /// Expires at, in Unix seconds.
    pub exp: i64,
}

/// The keys of sessions and CSRF tokens.
#[derive(Clone)]
pub struct SessionKeys {
    session: [u8; 32],
    csrf: [u8; 32],
}

impl SessionKeys {
    pub fn new(settings: &AuthSettings) -> Self {
        SessionKeys {
            session: settings.derived_key(b"updraft sessions"),
            csrf: settings.derived_key(b"updraft csrf"),
        }
    }

    /// The cookie value of `session`.
    pub fn encode(&self, session: &Session) -> String {
        let payload = encode_b64(&serde_json::to_vec(session).expect("a session serializes"));
        let signature = encode_b64(&mac(&self.session, payload.as_bytes()));
        format!("{payload}.{signature}")
    }

    /// The session in a cookie value, if it is well-formed, correctly signed and not expired.
    pub fn decode(&self, value: &str, now: DateTime<Utc>) -> Option<Session> {
        if value.len() > MAX_COOKIE_LEN {
            return None;
        }
        let (payload, signature) = value.split_once('.')?;
        let signature = decode_b64(signature)?;
        let mut check = HmacSha256::new_from_slice(&self.session).expect("HMAC takes any key");
        check.update(payload.as_bytes());
        check.verify_slice(&signature).ok()?;
        let session: Session = serde_json::from_slice(&decode_b64(payload)?).ok()?;
        (session.exp > now.timestamp()).then_some(session)
    }

    /// The CSRF token of a session (given by its cookie value), or of a login form (given by
    /// its nonce).
    pub fn csrf_token(&self, bound_to: &str) -> String {
        encode_b64(&mac(&self.csrf, bound_to.as_bytes()))
    }

    /// Whether `presented` is the CSRF token of `bound_to`, compared in constant time.
    pub fn csrf_matches(&self, bound_to: &str, presented: &str) -> bool {
        let Some(presented) = decode_b64(presented) else {
            return false;
        };
        let mut check = HmacSha256::new_from_slice(&self.csrf).expect("HMAC takes any key");
        check.update(bound_to.as_bytes());
        check.verify_slice(&presented).is_ok()
    }
}

fn mac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The value of the cookie `name` in the request's `Cookie` headers.
pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"'))
}

/// A `Set-Cookie` header for an HttpOnly, SameSite=Lax cookie on `/`, Secure when the public
/// URL is https; `max_age` zero removes it.
pub fn set_cookie(
    settings: &AuthSettings,
    name: &str,
    value: String,
    max_age: std::time::Duration,
) -> HeaderValue {
    let cookie = Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(settings.secure_cookies())
        .max_age(cookie::time::Duration::seconds(max_age.as_secs() as i64))
        .build();
    HeaderValue::from_str(&cookie.to_string()).expect("cookie values are header-safe")
}

/// A new session for `username`, starting now.
pub fn new_session(settings: &AuthSettings, username: &str, now: DateTime<Utc>) -> Session {
    Session {
        username: username.to_string(),
        iat: now.timestamp(),
        exp: now.timestamp() + settings.session_lifetime.as_secs() as i64,
    }
}

/// Starts a session for `username` (whose sign-in was checked elsewhere: a password, an OIDC
/// provider, a trusted proxy) and redirects to `next` (a local path; anything else goes to `/`).
pub fn sign_in_response(state: &AppState, username: &str, next: &str) -> Response {
    let settings = &state.config.auth;
    let session = new_session(settings, username, Utc::now());
    let value = state.authn.sessions.encode(&session);
    let mut response = redirect(safe_next(next));
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        set_cookie(settings, COOKIE, value, settings.session_lifetime),
    );
    headers.append(
        header::SET_COOKIE,
        set_cookie(
            settings,
            super::login::NONCE_COOKIE,
            String::new(),
            std::time::Duration::ZERO,
        ),
    );
    response
}

/// Ends the session: removes the cookie and goes to the login page.
pub fn sign_out_response(state: &AppState) -> Response {
    let mut response = redirect("/login");
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            &state.config.auth,
            COOKIE,
            String::new(),
            std::time::Duration::ZERO,
        ),
    );
    response
}

/// 303 See Other to `location`.
pub fn redirect(location: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, location.to_string()),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
    )
        .into_response()
}

/// `next` when it is a path on this server, else `/`: a login link cannot send the user to
/// another site.
pub fn safe_next(next: &str) -> &str {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && !next.chars().any(|c| c.is_control() || c == '\\');
    if local { next } else { "/" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_round_trips_and_tampering_is_refused() {
        let settings = AuthSettings::ephemeral();
        let keys = SessionKeys::new(&settings);
        let now = Utc::now();
        let session = new_session(&settings, "alice", now);
        let value = keys.encode(&session);
        assert_eq!(keys.decode(&value, now), Some(session.clone()));
        let other = SessionKeys::new(&AuthSettings::ephemeral());
        assert_eq!(other.decode(&value, now), None);
        let forged = Session {
            username: "admin".into(),
            ..session
        };
        let (_, signature) = value.split_once('.').unwrap();
        let payload = encode_b64(&serde_json::to_vec(&forged).unwrap());
        assert_eq!(keys.decode(&format!("{payload}.{signature}"), now), None);
        for garbage in ["", ".", "a.b", "%%%.%%%", &"x".repeat(10_000)] {
            assert_eq!(keys.decode(garbage, now), None);
        }
    }

    #[test]
    fn an_expired_session_is_refused() {
        let settings = AuthSettings::ephemeral();
        let keys = SessionKeys::new(&settings);
        let then = Utc::now() - chrono::Duration::hours(13);
        let value = keys.encode(&new_session(&settings, "alice", then));
        assert_eq!(keys.decode(&value, Utc::now()), None);
    }

    #[test]
    fn csrf_tokens_are_bound_to_their_session() {
        let keys = SessionKeys::new(&AuthSettings::ephemeral());
        let token = keys.csrf_token("session-a");
        assert!(keys.csrf_matches("session-a", &token));
        assert!(!keys.csrf_matches("session-b", &token));
        assert!(!keys.csrf_matches("session-a", "not base64!"));
    }

    #[test]
    fn only_local_paths_are_next() {
        assert_eq!(safe_next("/dags/x?tab=1"), "/dags/x?tab=1");
        for outside in [
            "https://evil.example",
            "//evil.example",
            "/\\evil",
            "evil",
            "",
        ] {
            assert_eq!(safe_next(outside), "/", "{outside}");
        }
    }
}
