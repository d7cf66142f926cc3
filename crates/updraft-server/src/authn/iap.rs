//! Sign-in by a trusted proxy: Google Cloud's Identity-Aware Proxy (IAP) signs every request
//! it lets through with a JWT in `x-goog-iap-jwt-assertion`. The assertion is verified on
//! every request (ES256 with Google's published keys, issuer `https://cloud.google.com/iap`,
//! audience `/projects/<number>/global/backendServices/<id>`, expiry); the user is its
//! `email`, with grants from the mapping table (by a claim's values, the address, or its
//! `@domain`) or the default grant.
//!
//! When IAP is configured every request needs a valid assertion except the health check, which
//! load balancers call without one. A request that did not come through the proxy has none
//! and is refused: updraft must only be reachable through IAP (the README says how).

use std::collections::HashMap;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Mutex;
use updraft_auth::claims::{ClaimPath, RoleMapping, Unmapped, email_keys};
use updraft_auth::{Grant, Identity};
use updraft_store::NewUser;

use crate::error::ApiError;

use super::external_page::sign_in_failed;
use super::jwks::{KeySet, KeySource, VerifyError};
use super::{SOURCE_PROXY, SignInStore, SyncError};

pub const ASSERTION_HEADER: &str = "x-goog-iap-jwt-assertion";
pub const GOOGLE_IAP_ISSUER: &str = "https://cloud.google.com/iap";
/// Where Google publishes the keys IAP signs with.
pub const GOOGLE_IAP_JWKS_URL: &str = "https://www.gstatic.com/iap/verify/public_key-jwk";
/// The one path answered without an assertion.
pub const HEALTH_PATH: &str = "/api/v2/monitor/health";
/// Users remembered as recorded with their grants; past this many the memory starts over.
const MAX_REMEMBERED: usize = 10_000;

#[derive(Debug, Clone)]
pub struct IapSettings {
    /// `/projects/<project number>/global/backendServices/<backend service id>`.
    pub audience: String,
    pub issuer: String,
    pub keys: KeySource,
    /// How long fetching the keys may take.
    pub http_timeout: Duration,
    /// A key id not seen yet fetches the keys again at most this often.
    pub min_key_refresh: Duration,
    /// A claim of the assertion whose values are looked up in `mapping` (besides the email
    /// address and its domain); `None`: only the address and domain.
    pub claim: Option<ClaimPath>,
    pub mapping: RoleMapping,
}

impl IapSettings {
    /// Google's issuer and keys, for `audience`.
    pub fn google(audience: impl Into<String>, mapping: RoleMapping) -> IapSettings {
        IapSettings {
            audience: audience.into(),
            issuer: GOOGLE_IAP_ISSUER.to_string(),
            keys: KeySource::Url(GOOGLE_IAP_JWKS_URL.to_string()),
            http_timeout: Duration::from_secs(10),
            min_key_refresh: super::jwks::MIN_REFRESH,
            claim: None,
            mapping,
        }
    }
}

/// A verified assertion's user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyUser {
    pub email: String,
    pub grants: Vec<Grant>,
}

pub struct Iap {
    settings: IapSettings,
    keys: KeySet,
    validation: Validation,
    /// The grants each user was last recorded with, so a user is written to the database when
    /// first seen or when its grants change, not on every request.
    recorded: Mutex<HashMap<String, Vec<Grant>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum IapError {
    #[error(
        "this server accepts only requests that come through the identity-aware proxy (no {ASSERTION_HEADER} header)"
    )]
    Missing,
    #[error("the proxy's assertion was refused: {0}")]
    Refused(#[from] VerifyError),
    #[error("the proxy's assertion names no email address")]
    NoEmail,
    #[error(transparent)]
    Unmapped(#[from] Unmapped),
    #[error(transparent)]
    Sync(#[from] SyncError),
}

#[derive(Deserialize)]
struct AssertionClaims {
    email: Option<String>,
    #[serde(flatten)]
    rest: serde_json::Map<String, Value>,
}

impl Iap {
    pub fn new(settings: IapSettings) -> Result<Iap, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(settings.http_timeout)
            .build()?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = 30;
        Ok(Iap {
            keys: KeySet::new(settings.keys.clone(), http)
                .with_min_refresh(settings.min_key_refresh),
            settings,
            validation,
            recorded: Mutex::new(HashMap::new()),
        })
    }

    /// Verify an assertion and map its user to grants.
    pub async fn verify(&self, assertion: &str) -> Result<ProxyUser, IapError> {
        let claims: AssertionClaims = self.keys.verify(assertion.trim(), &self.validation).await?;
        let email = claims
            .email
            .map(|e| e.trim().to_ascii_lowercase())
            .filter(|e| !e.is_empty())
            .ok_or(IapError::NoEmail)?;
        let mut keys = email_keys(&email);
        if let Some(claim) = &self.settings.claim {
            keys.extend(claim.values(&Value::Object(claims.rest)));
        }
        let grants = self.settings.mapping.grants_for(&keys)?;
        Ok(ProxyUser { email, grants })
    }

    /// The caller of a request: its assertion verified, the user recorded with its grants
    /// (when first seen or when they changed).
    pub async fn identify(
        &self,
        headers: &HeaderMap,
        store: &dyn SignInStore,
    ) -> Result<Identity, IapError> {
        let assertion = headers
            .get(ASSERTION_HEADER)
            .ok_or(IapError::Missing)?
            .to_str()
            .map_err(|_| VerifyError::Malformed("the header is not text".to_string()))?;
        let user = self.verify(assertion).await?;
        self.record(&user, store).await?;
        Ok(Identity::new(user.email, user.grants))
    }

    async fn record(&self, user: &ProxyUser, store: &dyn SignInStore) -> Result<(), SyncError> {
        if self.recorded.lock().await.get(&user.email) == Some(&user.grants) {
            return Ok(());
        }
        let new_user = NewUser {
            username: user.email.clone(),
            email: user.email.clone(),
            source: SOURCE_PROXY.to_string(),
            ..NewUser::default()
        };
        store.sign_in(&new_user, &user.grants).await?;
        let mut recorded = self.recorded.lock().await;
        if recorded.len() >= MAX_REMEMBERED {
            recorded.clear();
        }
        recorded.insert(user.email.clone(), user.grants.clone());
        Ok(())
    }
}

/// The response to a refused request: why, in words (the assertion itself is never repeated),
/// as the API's JSON error for API calls and as a page otherwise.
pub fn refusal(error: &IapError, api: bool) -> Response {
    let status = match error {
        IapError::Missing | IapError::Refused(_) | IapError::NoEmail => StatusCode::UNAUTHORIZED,
        IapError::Unmapped(_)
        | IapError::Sync(SyncError::NameTaken { .. } | SyncError::Inactive(_)) => {
            StatusCode::FORBIDDEN
        }
        IapError::Sync(SyncError::Store(_)) => StatusCode::SERVICE_UNAVAILABLE,
    };
    if status == StatusCode::SERVICE_UNAVAILABLE {
        tracing::error!("recording a user signed in by the proxy: {error}");
    } else {
        tracing::info!("request refused: {error}");
    }
    if api {
        ApiError::new(status, error.to_string()).into_response()
    } else {
        sign_in_failed(status, &error.to_string(), None)
    }
}
