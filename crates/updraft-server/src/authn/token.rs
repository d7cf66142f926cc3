//! API tokens: JWTs issued by `POST /auth/token` (as Airflow 3) and presented as
//! `Authorization: Bearer <token>`. Verified for signature, algorithm, `exp`, `nbf`, `iss`
//! and `aud`; the user is then looked up, so a deleted or deactivated user's token stops
//! working at once.

use std::time::Duration;

use jsonwebtoken::{Header, Validation};
use serde::{Deserialize, Serialize};

use super::settings::AuthSettings;

/// Tokens longer than this are refused before any decoding (a real one is a few hundred bytes).
pub const MAX_TOKEN_LEN: usize = 4096;

/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// The username.
    pub sub: String,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// A unique id, so two tokens issued in the same second differ.
    pub jti: String,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TokenError {
    #[error("the token is too long")]
    TooLong,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid: {0}")]
    Invalid(String),
    #[error("could not sign the token: {0}")]
    Signing(String),
}

/// Verifies presented tokens; built once from the settings.
#[derive(Clone)]
pub struct TokenVerifier {
    validation: Validation,
}

impl TokenVerifier {
    pub fn new(settings: &AuthSettings) -> Self {
        let mut validation = Validation::new(settings.token_keys.algorithm);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY.as_secs();
        TokenVerifier { validation }
    }

    /// The claims of a valid token.
    pub fn verify(&self, settings: &AuthSettings, token: &str) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong);
        }
        jsonwebtoken::decode::<Claims>(token, &settings.token_keys.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid(e.to_string()),
            })
    }
}

/// A token for `username`, valid from `now` for the configured expiry.
pub fn issue(
    settings: &AuthSettings,
    username: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<String, TokenError> {
    let iat = now.timestamp();
    let claims = Claims {
        sub: username.to_string(),
        iss: settings.issuer.clone(),
        aud: settings.audience.clone(),
        iat,
        nbf: iat,
        exp: iat + settings.token_expiry.as_secs() as i64,
        jti: super::encode_b64(&super::settings::random_bytes::<16>()),
    };
    sign(settings, &claims)
}

/// Signs arbitrary claims with the configured key (tests use it to forge edge cases).
pub fn sign(settings: &AuthSettings, claims: &Claims) -> Result<String, TokenError> {
    jsonwebtoken::encode(
        &Header::new(settings.token_keys.algorithm),
        claims,
        &settings.token_keys.encoding,
    )
    .map_err(|e| TokenError::Signing(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AuthSettings {
        AuthSettings::ephemeral()
    }

    #[test]
    fn an_issued_token_verifies() {
        let settings = settings();
        let token = issue(&settings, "alice", chrono::Utc::now()).unwrap();
        let claims = TokenVerifier::new(&settings)
            .verify(&settings, &token)
            .unwrap();
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.exp - claims.iat, 24 * 3600);
    }

    #[test]
    fn garbage_and_huge_tokens_are_invalid_not_panics() {
        let settings = settings();
        let verifier = TokenVerifier::new(&settings);
        for token in ["", "a", "a.b.c", "....", "eyJ.eyJ.sig", "\u{0}\u{1}"] {
            assert!(matches!(
                verifier.verify(&settings, token),
                Err(TokenError::Invalid(_))
            ));
        }
        let huge = "a".repeat(10 * 1024);
        assert_eq!(verifier.verify(&settings, &huge), Err(TokenError::TooLong));
    }

    #[test]
    fn an_unsigned_token_is_refused() {
        let settings = settings();
        let token = issue(&settings, "alice", chrono::Utc::now()).unwrap();
        let mut parts: Vec<&str> = token.split('.').collect();
        // {"alg":"none","typ":"JWT"}
        parts[0] = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
        let unsigned = format!("{}.{}.", parts[0], parts[1]);
        assert!(
            TokenVerifier::new(&settings)
                .verify(&settings, &unsigned)
                .is_err()
        );
    }
}
