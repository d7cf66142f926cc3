//! Shared by the tests of sign-in elsewhere (IAP, OIDC): generated ES256 keys that sign
//! tokens, a local HTTP server publishing their JWKS, and a record of the users signed in.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use axum::Router;
use axum::routing::get;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::{Value, json};
use updraft_auth::Grant;
use updraft_server::authn::{SignInStore, SyncError};
use updraft_store::{NewUser, UserRow};

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A P-256 key pair made for the test, with a key id.
pub struct EsKey {
    kid: String,
    pkcs8: Vec<u8>,
    public: Vec<u8>,
}

impl EsKey {
    pub fn generate(kid: &str) -> EsKey {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap()
            .as_ref()
            .to_vec();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng).unwrap();
        EsKey {
            kid: kid.to_string(),
            public: pair.public_key().as_ref().to_vec(),
            pkcs8,
        }
    }

    /// The public key as a JWK (an uncompressed point: 0x04, x, y).
    pub fn jwk(&self) -> Value {
        json!({
            "kty": "EC",
            "crv": "P-256",
            "alg": "ES256",
            "use": "sig",
            "kid": self.kid,
            "x": b64(&self.public[1..33]),
            "y": b64(&self.public[33..65]),
        })
    }

    pub fn sign(&self, claims: &Value) -> String {
        let header = jsonwebtoken::Header {
            kid: Some(self.kid.clone()),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256)
        };
        jsonwebtoken::encode(
            &header,
            claims,
            &jsonwebtoken::EncodingKey::from_ec_der(&self.pkcs8),
        )
        .unwrap()
    }
}

/// Serves `{"keys": [...]}` at `/jwks` on a loopback port, counting fetches; stops with the
/// test's runtime.
pub struct JwksServer {
    addr: std::net::SocketAddr,
    keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
}

impl JwksServer {
    pub async fn start(keys: Vec<Value>) -> JwksServer {
        let keys = Arc::new(Mutex::new(keys));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (served, counted) = (keys.clone(), fetches.clone());
        let app = Router::new().route(
            "/jwks",
            get(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                let keys = served.lock().unwrap().clone();
                async move { axum::Json(json!({ "keys": keys })) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        JwksServer {
            addr,
            keys,
            fetches,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/jwks", self.addr)
    }

    pub fn publish(&self, keys: Vec<Value>) {
        *self.keys.lock().unwrap() = keys;
    }

    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// Remembers every user signed in, with its grants.
#[derive(Default)]
pub struct RecordingUsers {
    signed_in: Mutex<Vec<(NewUser, Vec<Grant>)>>,
}

impl RecordingUsers {
    pub fn recorded(&self) -> Vec<(NewUser, Vec<Grant>)> {
        self.signed_in.lock().unwrap().clone()
    }
}

#[async_trait]
impl SignInStore for RecordingUsers {
    async fn sign_in(&self, user: &NewUser, grants: &[Grant]) -> Result<UserRow, SyncError> {
        self.signed_in
            .lock()
            .unwrap()
            .push((user.clone(), grants.to_vec()));
        Ok(UserRow {
            username: user.username.clone(),
            email: user.email.clone(),
            first_name: user.first_name.clone(),
            last_name: user.last_name.clone(),
            password_hash: None,
            active: true,
            created_at: chrono::Utc::now(),
            last_login: Some(chrono::Utc::now()),
            source: user.source.clone(),
            grants: grants.to_vec(),
        })
    }
}

/// A virtual environment under `target/tmp/<name>` with `requirements` from PyPI; made once
/// (again when the requirements change). Fails the test when Python or pip cannot make it.
pub fn venv(name: &str, requirements: &[&str]) -> std::path::PathBuf {
    use std::fs;
    use std::process::Command;
    let root = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(root).expect("creating target/tmp");
    let dir = root.join(name);
    let marker = dir.join("updraft-requirements.txt");
    let wanted = requirements.join("\n");
    // Tests running at once take turns; the marker is written only after a complete install.
    let lock = fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(root.join(format!("{name}.lock")))
        .expect("opening the venv lock");
    lock.lock().expect("locking the venv");
    if fs::read_to_string(&marker).ok().as_deref() == Some(wanted.as_str()) {
        return dir;
    }
    let _ = fs::remove_dir_all(&dir);
    let run = |command: &mut Command, what: &str| {
        let output = command
            .output()
            .unwrap_or_else(|e| panic!("{what}: could not start: {e}"));
        assert!(
            output.status.success(),
            "{what} failed ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    };
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&dir),
        "python3 -m venv (is Python 3 with the venv module installed?)",
    );
    run(
        Command::new(dir.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-input",
            ])
            .args(requirements),
        &format!("pip install {}", requirements.join(" ")),
    );
    fs::write(&marker, &wanted).expect("writing the venv marker");
    dir
}

/// A real OpenID Connect provider from PyPI (`oidc-provider-mock`, built on authlib): RS256
/// ID tokens with the claims set per user through its `PUT /users/<sub>`, a sign-in form
/// that asks for the subject. Killed on drop.
pub struct Provider {
    child: std::process::Child,
    pub issuer: String,
}

impl Provider {
    pub const PACKAGE: &str = "oidc-provider-mock==0.3.4";

    pub async fn start() -> Provider {
        let venv = venv("oidc-provider-venv", &[Self::PACKAGE]);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = std::process::Command::new(venv.join("bin/python"))
            .args(["-m", "oidc_provider_mock", "--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting oidc-provider-mock");
        let provider = Provider {
            child,
            issuer: format!("http://127.0.0.1:{port}"),
        };
        let discovery = format!("{}/.well-known/openid-configuration", provider.issuer);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if let Ok(response) = reqwest::get(&discovery).await
                && response.status().is_success()
            {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "oidc-provider-mock did not answer {discovery} within 60 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        provider
    }

    /// Set the claims the provider gives `sub` from now on.
    pub async fn set_user(&self, sub: &str, claims: &Value) {
        let response = reqwest::Client::new()
            .put(format!("{}/users/{sub}", self.issuer))
            .json(claims)
            .send()
            .await
            .expect("setting the user's claims");
        assert!(
            response.status().is_success(),
            "PUT /users/{sub}: {}",
            response.status()
        );
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
