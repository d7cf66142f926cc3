//! An issuer's public keys (a JWKS), by key id, and JWT verification against them.
//!
//! Keys come from a URL (fetched on first use, again when a token names a key id not seen yet,
//! at most every [`MIN_REFRESH`], and when older than [`MAX_AGE`]) or from a local file (read
//! on first use, and again for an unknown key id at most every [`MIN_REFRESH`]). Symmetric (`oct`) keys are ignored: a published key set never holds a shared secret,
//! and accepting one would let anyone who read it sign tokens.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, RwLock};

/// By default an unknown key id refetches the keys at most this often, so tokens naming
/// made-up key ids cannot make the server hammer the issuer.
pub const MIN_REFRESH: Duration = Duration::from_secs(10);
/// Keys older than this are fetched again (so a key the issuer withdrew stops working).
pub const MAX_AGE: Duration = Duration::from_secs(3600);
/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Where the keys come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeySource {
    Url(String),
    File(PathBuf),
}

pub struct KeySet {
    source: KeySource,
    http: reqwest::Client,
    keys: RwLock<Keys>,
    min_refresh: Duration,
    /// Held while fetching, so concurrent misses fetch once.
    fetching: Mutex<()>,
}

#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, DecodingKey>,
    /// A key set with one key and no key ids: used for tokens without a `kid`.
    only: Option<DecodingKey>,
    fetched_at: Option<Instant>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the signing keys could not be fetched from {url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("the signing keys could not be read from {path}: {reason}")]
    File { path: String, reason: String },
    #[error("the token names a key the issuer does not publish ({0})")]
    UnknownKey(String),
}

impl KeySet {
    /// `http` must have a timeout: a slow key endpoint must not hold requests forever.
    pub fn new(source: KeySource, http: reqwest::Client) -> KeySet {
        KeySet {
            source,
            http,
            keys: RwLock::new(Keys::default()),
            min_refresh: MIN_REFRESH,
            fetching: Mutex::new(()),
        }
    }

    /// Refetch for an unknown key id at most this often (default [`MIN_REFRESH`]).
    pub fn with_min_refresh(mut self, interval: Duration) -> KeySet {
        self.min_refresh = interval;
        self
    }

    /// The key for `kid` (`None`: the token names none; only a single-key set answers that).
    pub async fn key(&self, kid: Option<&str>) -> Result<DecodingKey, KeyError> {
        if let Some(key) = self.cached(kid, MAX_AGE).await {
            return Ok(key);
        }
        let _fetching = self.fetching.lock().await;
        // Another request may have fetched while this one waited.
        if let Some(key) = self.cached(kid, MAX_AGE).await {
            return Ok(key);
        }
        let recently = self
            .keys
            .read()
            .await
            .fetched_at
            .is_some_and(|at| at.elapsed() < self.min_refresh);
        if !recently {
            let fresh = self.load().await?;
            *self.keys.write().await = fresh;
        }
        self.cached(kid, Duration::MAX)
            .await
            .ok_or_else(|| KeyError::UnknownKey(kid.unwrap_or("no key id").to_string()))
    }

    async fn cached(&self, kid: Option<&str>, max_age: Duration) -> Option<DecodingKey> {
        let keys = self.keys.read().await;
        let fresh = match (&self.source, keys.fetched_at) {
            (_, None) => false,
            (KeySource::File(_), Some(_)) => true,
            (KeySource::Url(_), Some(at)) => at.elapsed() < max_age,
        };
        if !fresh {
            return None;
        }
        match kid {
            Some(kid) => keys.by_kid.get(kid).cloned(),
            None => keys.only.clone(),
        }
    }

    async fn load(&self) -> Result<Keys, KeyError> {
        let text = match &self.source {
            KeySource::Url(url) => self.fetch(url).await.map_err(|reason| KeyError::Fetch {
                url: url.clone(),
                reason,
            })?,
            KeySource::File(path) => {
                tokio::fs::read_to_string(path)
                    .await
                    .map_err(|e| KeyError::File {
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    })?
            }
        };
        parse_key_set(&text).map_err(|reason| match &self.source {
            KeySource::Url(url) => KeyError::Fetch {
                url: url.clone(),
                reason,
            },
            KeySource::File(path) => KeyError::File {
                path: path.display().to_string(),
                reason,
            },
        })
    }

    async fn fetch(&self, url: &str) -> Result<String, String> {
        let response = self.http.get(url).send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        response.text().await.map_err(|e| e.to_string())
    }

    /// Verify `token`'s signature with the key it names (its algorithm must be one of
    /// `validation.algorithms` and fit the key), then its claims as `validation` says.
    pub async fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
        validation: &Validation,
    ) -> Result<T, VerifyError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(VerifyError::Malformed("the token is too long".to_string()));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| VerifyError::Malformed(e.to_string()))?;
        if !validation.algorithms.contains(&header.alg) {
            return Err(VerifyError::Algorithm(header.alg));
        }
        let key = self.key(header.kid.as_deref()).await?;
        // The library wants every listed algorithm to fit the key; the token's own (allowed
        // above) is the one that must, and a key of another family refuses it.
        let mut validation = validation.clone();
        validation.algorithms = vec![header.alg];
        jsonwebtoken::decode::<T>(token, &key, &validation)
            .map(|data| data.claims)
            .map_err(VerifyError::Invalid)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("the token is not a JWT: {0}")]
    Malformed(String),
    #[error("the token is signed with {0:?}, which is not accepted")]
    Algorithm(Algorithm),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("the token is not valid: {0}")]
    Invalid(jsonwebtoken::errors::Error),
}

#[derive(Deserialize)]
struct RawKeySet {
    keys: Vec<serde_json::Value>,
}

/// The signing keys of a JWKS document; keys of unknown types or for encryption are skipped.
fn parse_key_set(text: &str) -> Result<Keys, String> {
    let raw: RawKeySet =
        serde_json::from_str(text).map_err(|e| format!("not a JSON Web Key Set: {e}"))?;
    let usable: Vec<(Option<String>, DecodingKey)> = raw
        .keys
        .into_iter()
        .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
        .filter(|jwk| jwk.common.public_key_use != Some(PublicKeyUse::Encryption))
        .filter(|jwk| !matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)))
        .filter_map(|jwk| Some((jwk.common.key_id.clone(), DecodingKey::from_jwk(&jwk).ok()?)))
        .collect();
    if usable.is_empty() {
        return Err("the key set holds no usable signing key".to_string());
    }
    let only = match usable.as_slice() {
        [(_, key)] => Some(key.clone()),
        _ => None,
    };
    let by_kid = usable
        .into_iter()
        .filter_map(|(kid, key)| Some((kid?, key)))
        .collect();
    Ok(Keys {
        by_kid,
        only,
        fetched_at: Some(Instant::now()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encryption_and_symmetric_keys_are_skipped() {
        let text = r#"{"keys": [
            {"kty": "oct", "kid": "secret", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "alg": "RSA-OAEP", "n": "sXch", "e": "AQAB"},
            {"kty": "EC", "kid": "sig", "crv": "P-256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "weird", "kid": "w"}
        ]}"#;
        let keys = parse_key_set(text).unwrap();
        assert_eq!(
            keys.by_kid.keys().collect::<Vec<_>>(),
            ["sig"],
            "only the EC signing key is kept"
        );
        assert!(keys.only.is_some());
    }

    #[test]
    fn a_set_without_signing_keys_is_refused() {
        assert!(parse_key_set(r#"{"keys": []}"#).is_err());
        assert!(parse_key_set("not json").is_err());
    }
}
