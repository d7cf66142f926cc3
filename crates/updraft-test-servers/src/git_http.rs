//! Git over HTTP: `git http-backend` (git's own smart-HTTP server, run as CGI) behind a small
//! axum server on a free local port, started once per test binary. Repositories are folders
//! under [`GitHttp::root`] (a test creates, renames or removes them); a repository can require
//! HTTP basic auth with a user and token the test sets and changes, and its responses can be
//! slowed down so that a test can interrupt a fetch halfway.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::StreamExt;

/// The running server.
pub struct GitHttp {
    addr: SocketAddr,
    state: Arc<Shared>,
    _root: tempfile::TempDir,
}

struct Shared {
    root: PathBuf,
    /// Repository name to the (user, token) it requires.
    credentials: Mutex<HashMap<String, (String, String)>>,
    /// Repository name to the pause after each 16 KiB of a response.
    throttles: Mutex<HashMap<String, Duration>>,
}

/// The server of this test binary, started on first use.
pub fn git_http() -> &'static GitHttp {
    static SERVER: OnceLock<GitHttp> = OnceLock::new();
    SERVER.get_or_init(GitHttp::start)
}

impl GitHttp {
    fn start() -> GitHttp {
        let root = tempfile::tempdir().expect("a folder for the served repositories");
        let state = Arc::new(Shared {
            root: root.path().to_path_buf(),
            credentials: Mutex::default(),
            throttles: Mutex::default(),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free local port");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let addr = listener.local_addr().expect("the listener's address");
        let app = axum::Router::new()
            .fallback(serve)
            .with_state(state.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime for the git HTTP server");
            runtime.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                axum::serve(listener, app)
                    .await
                    .expect("the git HTTP server");
            });
        });
        GitHttp {
            addr,
            state,
            _root: root,
        }
    }

    /// The folder repositories are served from: `<root>/<name>` is `url(name)`.
    pub fn root(&self) -> &Path {
        &self.state.root
    }

    /// The URL of the repository `name`.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}", self.addr)
    }

    /// From now on `name` answers only requests with this user and token.
    pub fn require_auth(&self, name: &str, user: &str, token: &str) {
        self.state
            .credentials
            .lock()
            .unwrap()
            .insert(name.to_string(), (user.to_string(), token.to_string()));
    }

    /// From now on `name`'s responses pause `pause` after each 16 KiB (zero: no pause).
    pub fn throttle(&self, name: &str, pause: Duration) {
        let mut throttles = self.state.throttles.lock().unwrap();
        if pause.is_zero() {
            throttles.remove(name);
        } else {
            throttles.insert(name.to_string(), pause);
        }
    }
}

async fn serve(
    State(state): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let repo = path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let required = state.credentials.lock().unwrap().get(&repo).cloned();
    let user = match required {
        Some((user, token)) if !authorized(&headers, &user, &token) => {
            return Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .header(header::WWW_AUTHENTICATE, "Basic realm=\"git\"")
                .body(Body::empty())
                .unwrap();
        }
        Some((user, _)) => Some(user),
        None => None,
    };
    let request = CgiRequest {
        root: state.root.clone(),
        method: method.to_string(),
        path,
        query: uri.query().unwrap_or_default().to_string(),
        headers,
        user,
    };
    let output = tokio::task::spawn_blocking(move || run_backend(&request, &body))
        .await
        .expect("the CGI task");
    let pause = state.throttles.lock().unwrap().get(&repo).copied();
    match output {
        Ok(output) => cgi_response(&output, pause),
        Err(error) => Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(Body::from(error))
            .unwrap(),
    }
}

fn authorized(headers: &HeaderMap, user: &str, token: &str) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(encoded) = value.strip_prefix("Basic ") else {
        return false;
    };
    STANDARD
        .decode(encoded.trim())
        .is_ok_and(|decoded| decoded == format!("{user}:{token}").as_bytes())
}

struct CgiRequest {
    root: PathBuf,
    method: String,
    path: String,
    query: String,
    headers: HeaderMap,
    user: Option<String>,
}

fn run_backend(request: &CgiRequest, body: &[u8]) -> Result<Vec<u8>, String> {
    let header = |name: &str| {
        request
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let mut child = Command::new("git")
        .arg("http-backend")
        .env("GIT_PROJECT_ROOT", &request.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", &request.method)
        .env("PATH_INFO", &request.path)
        .env("QUERY_STRING", &request.query)
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("REMOTE_USER", request.user.as_deref().unwrap_or_default())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("git http-backend: {e}"))?;
    let mut stdin = child.stdin.take().expect("a piped stdin");
    let body = body.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let output = child
        .wait_with_output()
        .map_err(|e| format!("git http-backend: {e}"))?;
    let _ = writer.join();
    Ok(output.stdout)
}

/// Turns CGI output (headers, a blank line, the body) into a response.
fn cgi_response(output: &[u8], pause: Option<Duration>) -> Response {
    let split = output
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| (at, at + 4))
        .or_else(|| {
            output
                .windows(2)
                .position(|w| w == b"\n\n")
                .map(|at| (at, at + 2))
        });
    let Some((head_end, body_start)) = split else {
        return Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .body(Body::from("git http-backend wrote no headers"))
            .unwrap();
    };
    let mut builder = Response::builder().status(StatusCode::OK);
    for line in String::from_utf8_lossy(&output[..head_end]).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value
                .split_whitespace()
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or(500);
            builder = builder.status(code);
        } else if let Ok(value) = HeaderValue::from_str(value) {
            builder = builder.header(name.trim(), value);
        }
    }
    let body = output[body_start..].to_vec();
    match pause {
        None => builder.body(Body::from(body)).unwrap(),
        Some(pause) => builder.body(throttled(body, pause)).unwrap(),
    }
}

fn throttled(body: Vec<u8>, pause: Duration) -> Body {
    let chunks: Vec<Bytes> = body.chunks(16 * 1024).map(Bytes::copy_from_slice).collect();
    let stream = futures::stream::iter(chunks).then(move |chunk| async move {
        tokio::time::sleep(pause).await;
        Ok::<_, std::convert::Infallible>(chunk)
    });
    Body::from_stream(stream)
}
