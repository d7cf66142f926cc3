//! Sign-in with an OpenID Connect provider (Keycloak, or any other): the authorization code
//! flow with PKCE.
//!
//! - `GET /auth/oidc/login?next=/dags` sends the browser to the provider with a fresh `state`,
//!   `nonce` and PKCE challenge; they, the verifier and `next` wait in a short-lived signed
//!   cookie (HttpOnly, SameSite=Lax so it comes back with the provider's redirect).
//! - `GET /auth/oidc/callback?code=..&state=..` checks `state` against the cookie, exchanges
//!   the code (with the PKCE verifier and the client's credentials), verifies the ID token
//!   (signature with the provider's JWKS, issuer, audience, expiry, nonce), reads the roles
//!   claim from the ID token or from the access token (verified as a JWT of the same issuer
//!   issued to this client first), maps them to grants, records the user with exactly those
//!   grants (re-synced at every sign-in), and starts a session.
//!
//! A user whose claim values map to nothing, with no default grant, is refused with a page
//! that says so; so is a user whose name belongs to a local user.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::header::{COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;
use updraft_auth::Grant;
use updraft_auth::claims::{ClaimPath, RoleMapping, Unmapped};
use updraft_store::NewUser;

use super::external::random_token;
use super::external_page::sign_in_failed;
use super::jwks::{KeySet, KeySource, VerifyError};
use super::{SOURCE_OIDC, SignInStore, SyncError};

pub const LOGIN_PATH: &str = "/auth/oidc/login";
pub const CALLBACK_PATH: &str = "/auth/oidc/callback";
/// The cookie holding a sign-in in progress.
pub const PENDING_COOKIE: &str = "updraft_oidc_pending";
/// How long a person may take at the provider.
pub const PENDING_LIFETIME: Duration = Duration::from_secs(600);

/// Signature algorithms accepted on the provider's tokens (never a shared-secret one).
const TOKEN_ALGORITHMS: [Algorithm; 8] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// Which token the roles claim is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimToken {
    /// The ID token (every provider can put claims there).
    #[default]
    Id,
    /// The access token, when it is a JWT (Keycloak's are; the seed's setup reads it).
    Access,
}

#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// The provider's name on the login page's "Sign in with ..." link.
    pub display_name: String,
    /// The provider's issuer, e.g. `https://keycloak.example.com/realms/data`; its discovery
    /// document is `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    /// `None` for a public client (PKCE only).
    pub client_secret: Option<String>,
    pub scopes: Vec<String>,
    /// Where the roles are, e.g. `resource_access.airflow.roles`.
    pub claim: ClaimPath,
    pub claim_token: ClaimToken,
    pub mapping: RoleMapping,
    /// The claim naming the user: `preferred_username` or `email`.
    pub username_claim: String,
    /// This server's callback as the provider knows it: `<public URL>/auth/oidc/callback`.
    pub redirect_url: String,
    /// Signs the pending-sign-in cookie; every server behind one address needs the same key.
    pub cookie_key: Vec<u8>,
    /// Mark the pending-sign-in cookie `Secure` (served over HTTPS).
    pub secure_cookie: bool,
    /// How long a call to the provider may take.
    pub http_timeout: Duration,
}

/// The provider's discovery document (the fields used).
#[derive(Debug, Clone, Deserialize)]
struct ProviderMetadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

struct Provider {
    metadata: ProviderMetadata,
    keys: KeySet,
}

pub struct Oidc {
    settings: OidcSettings,
    http: reqwest::Client,
    /// Sign and check the pending-sign-in cookie.
    cookie_signing: EncodingKey,
    cookie_checking: DecodingKey,
    /// Discovered on first use; a failed discovery is tried again by the next sign-in.
    provider: OnceCell<Provider>,
}

/// A sign-in waiting for the provider's answer, kept in the signed cookie.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    state: String,
    nonce: String,
    verifier: String,
    next: String,
    exp: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the identity provider could not be reached or answered wrongly: {0}")]
    Provider(String),
    #[error(
        "this sign-in was not started from this browser, or took longer than 10 minutes; \
         please sign in again"
    )]
    NoPendingSignIn,
    #[error("the identity provider refused the sign-in: {0}")]
    Refused(String),
    #[error("the identity provider's answer has no authorization code")]
    NoCode,
    #[error("the ID token was refused: {0}")]
    IdToken(VerifyError),
    #[error("the ID token was refused: it does not carry this sign-in's nonce")]
    Nonce,
    #[error("the ID token was refused: it was issued to another client")]
    AuthorizedParty,
    #[error("the access token was refused: {0}")]
    AccessToken(String),
    #[error("the identity provider sent no `{0}` claim to name the user")]
    NoUsername(String),
    #[error(transparent)]
    Unmapped(#[from] Unmapped),
    #[error(transparent)]
    Sync(#[from] SyncError),
}

impl OidcError {
    fn status(&self) -> StatusCode {
        match self {
            OidcError::Provider(_) => StatusCode::BAD_GATEWAY,
            OidcError::NoPendingSignIn | OidcError::NoCode => StatusCode::BAD_REQUEST,
            OidcError::Unmapped(_)
            | OidcError::Sync(SyncError::NameTaken { .. } | SyncError::Inactive(_)) => {
                StatusCode::FORBIDDEN
            }
            OidcError::Sync(SyncError::Store(_)) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("the key signing OIDC sign-ins in progress needs at least 32 bytes")]
    CookieKey,
    #[error("making the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// The verified outcome of a callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    pub username: String,
    pub grants: Vec<Grant>,
    /// Where to go now (a path on this server).
    pub next: String,
}

impl Oidc {
    /// The provider's name for people (the login page's link).
    pub fn display_name(&self) -> &str {
        &self.settings.display_name
    }

    pub fn new(settings: OidcSettings) -> Result<Oidc, SetupError> {
        if settings.cookie_key.len() < 32 {
            return Err(SetupError::CookieKey);
        }
        let http = reqwest::Client::builder()
            .timeout(settings.http_timeout)
            // The token endpoint answers directly; a redirect there is not followed.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let cookie_signing =
            EncodingKey::from_secret(&settings.cookie_key).map_err(|_| SetupError::CookieKey)?;
        let cookie_checking =
            DecodingKey::from_secret(&settings.cookie_key).map_err(|_| SetupError::CookieKey)?;
        Ok(Oidc {
            settings,
            http,
            cookie_signing,
            cookie_checking,
            provider: OnceCell::new(),
        })
    }

    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    async fn provider(&self) -> Result<&Provider, OidcError> {
        self.provider
            .get_or_try_init(|| async {
                let metadata = self.discover().await?;
                let keys =
                    KeySet::new(KeySource::Url(metadata.jwks_uri.clone()), self.http.clone());
                Ok(Provider { metadata, keys })
            })
            .await
    }

    async fn discover(&self) -> Result<ProviderMetadata, OidcError> {
        let issuer = self.settings.issuer.trim_end_matches('/');
        let url = format!("{issuer}/.well-known/openid-configuration");
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| OidcError::Provider(format!("{url}: {e}")))?;
        if !response.status().is_success() {
            return Err(OidcError::Provider(format!(
                "{url}: HTTP {}",
                response.status()
            )));
        }
        let metadata: ProviderMetadata = response
            .json()
            .await
            .map_err(|e| OidcError::Provider(format!("{url}: {e}")))?;
        // OpenID Connect Discovery 1.0 §4.3: the document must name the issuer asked for.
        if metadata.issuer.trim_end_matches('/') != issuer {
            return Err(OidcError::Provider(format!(
                "{url} names issuer {}, not the configured {issuer}",
                metadata.issuer
            )));
        }
        Ok(metadata)
    }

    /// Start a sign-in: where to send the browser, and the pending-sign-in cookie.
    pub async fn start(&self, next: Option<&str>) -> Result<(String, String), OidcError> {
        let provider = self.provider().await?;
        let pending = Pending {
            state: random_token(),
            nonce: random_token(),
            verifier: random_token(),
            next: safe_next(next).to_string(),
            exp: unix_now() + PENDING_LIFETIME.as_secs(),
        };
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(pending.verifier.as_bytes()));
        let mut url = url::Url::parse(&provider.metadata.authorization_endpoint)
            .map_err(|e| OidcError::Provider(format!("authorization endpoint: {e}")))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("redirect_uri", &self.settings.redirect_url)
            .append_pair("scope", &self.scope())
            .append_pair("state", &pending.state)
            .append_pair("nonce", &pending.nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &pending,
            &self.cookie_signing,
        )
        .map_err(|e| OidcError::Provider(format!("signing the sign-in cookie: {e}")))?;
        Ok((url.into(), self.cookie(&token, PENDING_LIFETIME)))
    }

    fn scope(&self) -> String {
        let mut scopes: Vec<&str> = self.settings.scopes.iter().map(String::as_str).collect();
        if !scopes.contains(&"openid") {
            scopes.insert(0, "openid");
        }
        scopes.join(" ")
    }

    fn cookie(&self, value: &str, max_age: Duration) -> String {
        let secure = if self.settings.secure_cookie {
            "; Secure"
        } else {
            ""
        };
        format!(
            "{PENDING_COOKIE}={value}; Path=/auth/oidc; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
            max_age.as_secs()
        )
    }

    /// The `Set-Cookie` value that removes the pending-sign-in cookie.
    pub fn clear_cookie(&self) -> String {
        self.cookie("", Duration::ZERO)
    }

    /// Finish a sign-in: check the callback against the cookie, verify the tokens, map and
    /// record the user.
    pub async fn finish(
        &self,
        callback: &Callback,
        cookie: Option<&str>,
        store: &dyn SignInStore,
    ) -> Result<SignedIn, OidcError> {
        let pending = self.pending(cookie)?;
        if callback.state.as_deref() != Some(pending.state.as_str()) {
            return Err(OidcError::NoPendingSignIn);
        }
        if let Some(error) = &callback.error {
            let detail = callback.error_description.as_deref().unwrap_or(error);
            return Err(OidcError::Refused(detail.to_string()));
        }
        let code = callback.code.as_deref().ok_or(OidcError::NoCode)?;
        let provider = self.provider().await?;
        let tokens = self.exchange(provider, code, &pending.verifier).await?;
        let id_claims = self
            .verify_id_token(provider, &tokens, &pending.nonce)
            .await?;
        let role_claims = match self.settings.claim_token {
            ClaimToken::Id => id_claims.clone(),
            ClaimToken::Access => self.verify_access_token(provider, &tokens).await?,
        };
        let username = claim_text(&id_claims, &self.settings.username_claim)
            .or_else(|| claim_text(&role_claims, &self.settings.username_claim))
            .ok_or_else(|| OidcError::NoUsername(self.settings.username_claim.clone()))?;
        let grants = self
            .settings
            .mapping
            .grants_for(&self.settings.claim.values(&role_claims))?;
        let user = NewUser {
            username: username.clone(),
            email: claim_text(&id_claims, "email").unwrap_or_default(),
            first_name: claim_text(&id_claims, "given_name").unwrap_or_default(),
            last_name: claim_text(&id_claims, "family_name").unwrap_or_default(),
            password_hash: None,
            source: SOURCE_OIDC.to_string(),
        };
        store.sign_in(&user, &grants).await?;
        Ok(SignedIn {
            username,
            grants,
            next: pending.next,
        })
    }

    fn pending(&self, cookie: Option<&str>) -> Result<Pending, OidcError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_aud = false;
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp"]);
        jsonwebtoken::decode::<Pending>(
            cookie.ok_or(OidcError::NoPendingSignIn)?,
            &self.cookie_checking,
            &validation,
        )
        .map(|data| data.claims)
        .map_err(|_| OidcError::NoPendingSignIn)
    }

    async fn exchange(
        &self,
        provider: &Provider,
        code: &str,
        verifier: &str,
    ) -> Result<TokenResponse, OidcError> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.settings.redirect_url.as_str()),
            ("code_verifier", verifier),
        ];
        let mut request = self.http.post(&provider.metadata.token_endpoint);
        match &self.settings.client_secret {
            // client_secret_basic (RFC 6749 §2.3.1: both parts form-encoded first).
            Some(secret) => {
                request = request.basic_auth(
                    form_encode(&self.settings.client_id),
                    Some(form_encode(secret)),
                );
            }
            None => form.push(("client_id", self.settings.client_id.as_str())),
        }
        let response = request
            .form(&form)
            .send()
            .await
            .map_err(|e| OidcError::Provider(format!("token endpoint: {e}")))?;
        let status = response.status();
        let body: TokenResponse = response
            .json()
            .await
            .map_err(|e| OidcError::Provider(format!("token endpoint (HTTP {status}): {e}")))?;
        if let Some(error) = &body.error {
            let detail = body.error_description.as_deref().unwrap_or(error);
            return Err(OidcError::Refused(detail.to_string()));
        }
        if !status.is_success() {
            return Err(OidcError::Provider(format!(
                "token endpoint: HTTP {status}"
            )));
        }
        Ok(body)
    }

    async fn verify_id_token(
        &self,
        provider: &Provider,
        tokens: &TokenResponse,
        nonce: &str,
    ) -> Result<Value, OidcError> {
        let id_token = tokens.id_token.as_deref().ok_or_else(|| {
            OidcError::Provider("the token endpoint sent no ID token".to_string())
        })?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.algorithms = TOKEN_ALGORITHMS.to_vec();
        validation.set_issuer(&[&provider.metadata.issuer]);
        validation.set_audience(&[&self.settings.client_id]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims: Value = provider
            .keys
            .verify(id_token, &validation)
            .await
            .map_err(OidcError::IdToken)?;
        if claims.get("nonce").and_then(Value::as_str) != Some(nonce) {
            return Err(OidcError::Nonce);
        }
        // OpenID Connect Core §3.1.3.7: with several audiences, `azp` must be this client.
        if let Some(Value::Array(audiences)) = claims.get("aud")
            && audiences.len() > 1
            && claims.get("azp").and_then(Value::as_str) != Some(self.settings.client_id.as_str())
        {
            return Err(OidcError::AuthorizedParty);
        }
        Ok(claims)
    }

    /// The access token's claims, once it is verified as a JWT signed by the provider, of the
    /// same issuer, not expired, and issued to this client (`azp`, or `aud` naming it).
    async fn verify_access_token(
        &self,
        provider: &Provider,
        tokens: &TokenResponse,
    ) -> Result<Value, OidcError> {
        let token = tokens.access_token.as_deref().ok_or_else(|| {
            OidcError::AccessToken("the token endpoint sent no access token".to_string())
        })?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.algorithms = TOKEN_ALGORITHMS.to_vec();
        validation.set_issuer(&[&provider.metadata.issuer]);
        validation.set_required_spec_claims(&["exp", "iss"]);
        // Keycloak's access tokens name the resource servers as audience; the client is `azp`.
        validation.validate_aud = false;
        let claims: Value = provider
            .keys
            .verify(token, &validation)
            .await
            .map_err(|e| OidcError::AccessToken(e.to_string()))?;
        let client = self.settings.client_id.as_str();
        let for_this_client = claims.get("azp").and_then(Value::as_str) == Some(client)
            || match claims.get("aud") {
                Some(Value::String(aud)) => aud == client,
                Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(client)),
                _ => false,
            };
        if !for_this_client {
            return Err(OidcError::AccessToken(
                "it was issued to another client".to_string(),
            ));
        }
        Ok(claims)
    }
}

#[derive(Debug, Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
    access_token: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// The provider's redirect back: a code, or an error.
#[derive(Debug, Default, Deserialize)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

fn claim_text(claims: &Value, name: &str) -> Option<String> {
    claims
        .get(name)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn form_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `next` when it is a path on this server, else `/`: a sign-in never sends the browser to
/// another site (`//evil.example`, `https://...`, `/\evil.example`).
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(next)
            if next.starts_with('/')
                && !next.starts_with("//")
                && !next.contains('\\')
                && !next.chars().any(char::is_control) =>
        {
            next
        }
        _ => "/",
    }
}

/// Starts a session for a user who signed in: `(username, next) -> response`.
pub type StartSession = Arc<dyn Fn(&str, &str) -> Response + Send + Sync>;

/// What the OIDC routes need.
#[derive(Clone)]
pub struct OidcRoutes {
    pub oidc: Arc<Oidc>,
    pub store: Arc<dyn SignInStore>,
    pub start_session: StartSession,
}

/// `GET /auth/oidc/login` and `GET /auth/oidc/callback`.
pub fn router<S>(routes: OidcRoutes) -> Router<S> {
    Router::new()
        .route(LOGIN_PATH, get(login))
        .route(CALLBACK_PATH, get(callback))
        .with_state(routes)
}

/// The server's `GET /auth/oidc/login` and `GET /auth/oidc/callback` (merged in
/// `authn::router`): the provider of `auth.oidc`, users recorded in the server's store, and a
/// session started as the login form starts one. 404 when OIDC is not configured.
pub(crate) fn server_routes() -> Router<crate::AppState> {
    Router::new()
        .route(LOGIN_PATH, get(server_login))
        .route(CALLBACK_PATH, get(server_callback))
}

fn routes_of(state: &crate::AppState) -> Option<OidcRoutes> {
    let oidc = state.config.auth.oidc.clone()?;
    let server = state.clone();
    Some(OidcRoutes {
        oidc,
        store: Arc::new(state.store.clone()),
        start_session: Arc::new(move |username: &str, next: &str| {
            super::session::sign_in_response(&server, username, next)
        }),
    })
}

fn not_configured() -> Response {
    crate::error::ApiError::new(
        StatusCode::NOT_FOUND,
        "sign-in through OIDC is not configured ([auth.oidc])",
    )
    .into_response()
}

async fn server_login(State(state): State<crate::AppState>, query: Query<LoginQuery>) -> Response {
    match routes_of(&state) {
        Some(routes) => login(State(routes), query).await,
        None => not_configured(),
    }
}

async fn server_callback(
    State(state): State<crate::AppState>,
    headers: HeaderMap,
    query: Query<Callback>,
) -> Response {
    match routes_of(&state) {
        Some(routes) => callback(State(routes), headers, query).await,
        None => not_configured(),
    }
}

#[derive(Debug, Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

async fn login(State(routes): State<OidcRoutes>, Query(query): Query<LoginQuery>) -> Response {
    match routes.oidc.start(query.next.as_deref()).await {
        Ok((location, cookie)) => redirect(&location, &[cookie]),
        Err(error) => failure(&error, None),
    }
}

async fn callback(
    State(routes): State<OidcRoutes>,
    headers: HeaderMap,
    Query(callback): Query<Callback>,
) -> Response {
    let cookie = read_cookie(&headers, PENDING_COOKIE);
    let outcome = routes
        .oidc
        .finish(&callback, cookie.as_deref(), routes.store.as_ref())
        .await;
    let mut response = match outcome {
        Ok(signed_in) => {
            tracing::info!(
                "{} signed in through OIDC with {}",
                signed_in.username,
                signed_in
                    .grants
                    .iter()
                    .map(Grant::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            (routes.start_session)(&signed_in.username, &signed_in.next)
        }
        Err(error) => failure(&error, Some(LOGIN_PATH)),
    };
    if let Ok(clear) = HeaderValue::from_str(&routes.oidc.clear_cookie()) {
        response.headers_mut().append(SET_COOKIE, clear);
    }
    response
}

fn failure(error: &OidcError, retry: Option<&str>) -> Response {
    let status = error.status();
    if status.is_server_error() {
        tracing::warn!("OIDC sign-in failed: {error}");
    } else {
        tracing::info!("OIDC sign-in refused: {error}");
    }
    sign_in_failed(status, &error.to_string(), retry)
}

fn redirect(location: &str, cookies: &[String]) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(location) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, location);
    }
    for cookie in cookies {
        if let Ok(cookie) = HeaderValue::from_str(cookie) {
            response.headers_mut().append(SET_COOKIE, cookie);
        }
    }
    response
}

/// A cookie's value from the request's `Cookie` headers.
pub fn read_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_server() {
        assert_eq!(safe_next(Some("/dags?tag=a")), "/dags?tag=a");
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil.example",
            "dags",
            "/a\nb",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(
            COOKIE,
            HeaderValue::from_static("a=1; updraft_oidc_pending=xyz"),
        );
        headers.append(COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(
            read_cookie(&headers, PENDING_COOKIE).as_deref(),
            Some("xyz")
        );
        assert_eq!(read_cookie(&headers, "b").as_deref(), Some("2"));
        assert_eq!(read_cookie(&headers, "c"), None);
    }
}
