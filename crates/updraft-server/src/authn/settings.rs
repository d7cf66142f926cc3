//! How the server authenticates callers: [`AuthSettings`], part of the server's configuration,
//! and the secret key that signs sessions and (by default) API tokens.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

/// The file under `UPDRAFT_HOME` holding the generated secret key when none is configured.
pub const SECRET_KEY_FILE: &str = "secret_key";

/// A configured secret key shorter than this many bytes is refused.
pub const MIN_SECRET_KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error(
        "auth.secret_key is {len} bytes long; it needs at least {MIN_SECRET_KEY_LEN} \
         (e.g. `openssl rand -hex 32`)"
    )]
    SecretTooShort { len: usize },
    #[error("{path}: {source}")]
    SecretFile {
        path: String,
        source: std::io::Error,
    },
    #[error("auth.token_algorithm: `{0}` is not one of HS256, RS256, ES256")]
    UnknownAlgorithm(String),
    #[error("auth.{setting}: {path}: {source}")]
    KeyFile {
        setting: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("auth.{setting}: not a valid {algorithm:?} PEM key: {message}")]
    BadKey {
        setting: &'static str,
        algorithm: Algorithm,
        message: String,
    },
    #[error("auth.public_url: `{0}` is not an http:// or https:// URL")]
    BadPublicUrl(String),
}

/// Authentication settings (`[auth]` in `updraft.toml`).
#[derive(Clone)]
pub struct AuthSettings {
    /// Off: every caller is the local admin. Allowed on a loopback bind only.
    pub enabled: bool,
    /// Signs session cookies and CSRF tokens, and API tokens unless a key pair is configured.
    secret_key: Vec<u8>,
    /// How API tokens are signed and verified.
    pub token_keys: TokenKeys,
    /// How long an API token from `POST /auth/token` is valid.
    pub token_expiry: Duration,
    /// The `iss` claim of issued tokens, required of presented ones.
    pub issuer: String,
    /// The `aud` claim of issued tokens, required of presented ones.
    pub audience: String,
    /// How long a login session lasts.
    pub session_lifetime: Duration,
    /// Where browsers reach the server (`https://updraft.example.com`); an https URL makes
    /// session cookies `Secure`.
    pub public_url: Option<String>,
    /// Failed logins allowed per username and per client address within a minute; more get 429.
    pub login_failures_per_minute: u32,
    /// Sign-in through an OpenID Connect provider, besides the login form (`/auth/oidc/*`).
    pub oidc: Option<std::sync::Arc<super::oidc::Oidc>>,
    /// Google IAP's signed assertion, checked on every request but the health check instead of
    /// sessions and API tokens.
    pub iap: Option<std::sync::Arc<super::iap::Iap>>,
    /// `[auth] metrics_token`: a bearer token that reads `/metrics` and nothing else, for a
    /// Prometheus (it does not expire as API tokens do, and passes behind IAP).
    pub metrics_token: Option<String>,
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field("enabled", &self.enabled)
            .field("secret_key", &"***")
            .field("token_algorithm", &self.token_keys.algorithm)
            .field("token_expiry", &self.token_expiry)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("session_lifetime", &self.session_lifetime)
            .field("public_url", &self.public_url)
            .field("oidc", &self.oidc.is_some())
            .field("iap", &self.iap.is_some())
            .field("metrics_token", &self.metrics_token.as_ref().map(|_| "***"))
            .field("login_failures_per_minute", &self.login_failures_per_minute)
            .finish()
    }
}

pub const DEFAULT_TOKEN_EXPIRY: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
pub const DEFAULT_ISSUER: &str = "updraft";
pub const DEFAULT_AUDIENCE: &str = "updraft";
pub const DEFAULT_LOGIN_FAILURES_PER_MINUTE: u32 = 5;

impl AuthSettings {
    /// Authentication on, with `secret_key` and the defaults: HS256 tokens valid 24 hours,
    /// 12-hour sessions.
    pub fn new(secret_key: Vec<u8>) -> Result<Self, AuthConfigError> {
        if secret_key.len() < MIN_SECRET_KEY_LEN {
            return Err(AuthConfigError::SecretTooShort {
                len: secret_key.len(),
            });
        }
        let token_keys = TokenKeys::from_secret(&derive_key(&secret_key, b"updraft api tokens"));
        Ok(AuthSettings {
            enabled: true,
            secret_key,
            token_keys,
            token_expiry: DEFAULT_TOKEN_EXPIRY,
            issuer: DEFAULT_ISSUER.to_string(),
            audience: DEFAULT_AUDIENCE.to_string(),
            session_lifetime: DEFAULT_SESSION_LIFETIME,
            public_url: None,
            login_failures_per_minute: DEFAULT_LOGIN_FAILURES_PER_MINUTE,
            oidc: None,
            iap: None,
            metrics_token: None,
        })
    }

    /// Authentication on with a fresh random secret key (sessions and tokens end with the
    /// process): for tests and embedding.
    pub fn ephemeral() -> Self {
        AuthSettings::new(random_bytes::<32>().to_vec()).expect("32 random bytes are long enough")
    }

    /// Authentication off: every caller is the local admin (loopback binds only).
    pub fn disabled() -> Self {
        AuthSettings {
            enabled: false,
            ..AuthSettings::ephemeral()
        }
    }

    /// Sets the public URL, checking that it is an http(s) URL.
    pub fn with_public_url(mut self, url: &str) -> Result<Self, AuthConfigError> {
        let url = url.trim().trim_end_matches('/');
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(AuthConfigError::BadPublicUrl(url.to_string()));
        }
        self.public_url = Some(url.to_string());
        Ok(self)
    }

    /// Whether cookies must be `Secure`: the public URL is https.
    pub fn secure_cookies(&self) -> bool {
        self.public_url
            .as_deref()
            .is_some_and(|url| url.starts_with("https://"))
    }

    /// A key for one purpose (`b"updraft sessions"`, ...), derived from the secret key so that
    /// no two purposes share a key.
    pub fn derived_key(&self, purpose: &[u8]) -> [u8; 32] {
        derive_key(&self.secret_key, purpose)
    }
}

/// The algorithm and keys that sign and verify API tokens.
#[derive(Clone)]
pub struct TokenKeys {
    pub algorithm: Algorithm,
    pub(crate) encoding: EncodingKey,
    pub(crate) decoding: DecodingKey,
}

impl TokenKeys {
    /// HS256 with a shared secret (32 bytes derived from the secret key).
    fn from_secret(secret: &[u8; 32]) -> Self {
        TokenKeys {
            algorithm: Algorithm::HS256,
            encoding: EncodingKey::from_secret(secret).expect("a 32-byte secret is a key"),
            decoding: DecodingKey::from_secret(secret).expect("a 32-byte secret is a key"),
        }
    }

    /// RS256 or ES256 with a PEM private key (signing) and public key (verifying).
    pub fn from_pem(
        algorithm: &str,
        private_pem: &[u8],
        public_pem: &[u8],
    ) -> Result<Self, AuthConfigError> {
        let algorithm = match algorithm.trim().to_ascii_uppercase().as_str() {
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            other => return Err(AuthConfigError::UnknownAlgorithm(other.to_string())),
        };
        let bad = |setting: &'static str| {
            move |e: jsonwebtoken::errors::Error| AuthConfigError::BadKey {
                setting,
                algorithm,
                message: e.to_string(),
            }
        };
        let (encoding, decoding) = if algorithm == Algorithm::RS256 {
            (
                EncodingKey::from_rsa_pem(private_pem).map_err(bad("private_key_file"))?,
                DecodingKey::from_rsa_pem(public_pem).map_err(bad("public_key_file"))?,
            )
        } else {
            (
                EncodingKey::from_ec_pem(private_pem).map_err(bad("private_key_file"))?,
                DecodingKey::from_ec_pem(public_pem).map_err(bad("public_key_file"))?,
            )
        };
        Ok(TokenKeys {
            algorithm,
            encoding,
            decoding,
        })
    }

    /// [`TokenKeys::from_pem`] with the keys read from files.
    pub fn from_pem_files(
        algorithm: &str,
        private_key_file: &Path,
        public_key_file: &Path,
    ) -> Result<Self, AuthConfigError> {
        let read = |setting: &'static str, path: &Path| {
            std::fs::read(path).map_err(|source| AuthConfigError::KeyFile {
                setting,
                path: path.display().to_string(),
                source,
            })
        };
        Self::from_pem(
            algorithm,
            &read("private_key_file", private_key_file)?,
            &read("public_key_file", public_key_file)?,
        )
    }
}

/// The secret key kept in `path`: read it, or (first start) generate 32 random bytes and write
/// them there as hex, readable by the owner only, so sessions and tokens survive restarts.
pub fn load_or_create_secret_key(path: &Path) -> Result<Vec<u8>, AuthConfigError> {
    let failed = |source| AuthConfigError::SecretFile {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => return checked_secret(text.trim().as_bytes().to_vec()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(failed(e)),
    }
    let key = hex(&random_bytes::<32>());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(key.as_bytes()).map_err(failed)?;
            file.sync_all().map_err(failed)?;
            Ok(key.into_bytes())
        }
        // Another process started at the same moment and wrote it first.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path).map_err(failed)?;
            checked_secret(text.trim().as_bytes().to_vec())
        }
        Err(e) => Err(failed(e)),
    }
}

fn checked_secret(key: Vec<u8>) -> Result<Vec<u8>, AuthConfigError> {
    if key.len() < MIN_SECRET_KEY_LEN {
        return Err(AuthConfigError::SecretTooShort { len: key.len() });
    }
    Ok(key)
}

fn derive_key(secret: &[u8], purpose: &[u8]) -> [u8; 32] {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(purpose);
    mac.finalize().into_bytes().into()
}

/// `N` bytes from the operating system's random source.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    bytes
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_key_is_generated_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SECRET_KEY_FILE);
        let first = load_or_create_secret_key(&path).unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(load_or_create_secret_key(&path).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_short_secret_is_refused() {
        let err = AuthSettings::new(b"short".to_vec()).unwrap_err();
        assert!(err.to_string().contains("auth.secret_key"), "{err}");
    }

    #[test]
    fn keys_for_different_purposes_differ() {
        let settings = AuthSettings::ephemeral();
        assert_ne!(settings.derived_key(b"a"), settings.derived_key(b"b"));
        assert!(!format!("{settings:?}").contains(&hex(&settings.secret_key)));
    }
}
