//! The server's guards over real TCP (`serve` on a free port, requests written byte by byte):
//! security headers on every kind of response, the `Host` check, oversized and malformed
//! headers (431 and 4xx from hyper or the handlers, never 500), and the limits of the live
//! event streams.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::middleware::Next;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, oneshot};
use updraft_server::auth::{Grant, Identity, Role};
use updraft_server::guard::{Guard, GuardSettings, StreamLimits};
use updraft_server::{AppState, ServerConfig};
use updraft_store::{SqliteStore, Store};

const PATIENCE: Duration = Duration::from_secs(20);

const DAG: &str = "dag_id: hello\nschedule: null\ntasks:\n  - task_id: a\n    bash: echo hi\n";

/// A server on a free loopback port; stopped on drop.
struct Server {
    addr: SocketAddr,
    state: AppState,
    stop: Option<oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn state(settings: GuardSettings) -> (AppState, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).unwrap();
    std::fs::write(dags.join("hello.yaml"), DAG).unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.unwrap());
    let mut bag = updraft_dag::DagBag::new(&dags);
    bag.refresh();
    updraft_runs::record_dag_bag(store.as_ref(), &bag, true, chrono::Utc::now())
        .await
        .unwrap();
    let config = ServerConfig {
        keyring: None,
        source_sync: None,
        source_webhooks: Default::default(),
        bind: "127.0.0.1:0".parse().unwrap(),
        dags_folder: dags,
        logs_folder: dir.path().join("logs"),
        auth: updraft_server::authn::AuthSettings::disabled(),
    };
    let state = AppState::new(store, config, broadcast::channel(64).0, Arc::new(|| {}))
        .with_guard(Guard::new(settings).unwrap());
    (state, dir)
}

/// `updraft_server::serve` as the binaries run it.
async fn start(settings: GuardSettings) -> Server {
    let (state, dir) = state(settings).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(updraft_server::serve(listener, state.clone(), async move {
        let _ = stopped.await;
    }));
    Server {
        addr,
        state,
        stop: Some(stop),
        _dir: dir,
    }
}

/// The router behind a stand-in for authentication: the `x-test-user` header names the
/// caller (a Viewer everywhere).
async fn start_with_users(settings: GuardSettings) -> Server {
    let (state, dir) = state(settings).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app =
        updraft_server::router(state.clone()).layer(axum::middleware::from_fn(identify_test_user));
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });
    Server {
        addr,
        state,
        stop: Some(stop),
        _dir: dir,
    }
}

async fn identify_test_user(mut request: Request, next: Next) -> axum::response::Response {
    let user = request
        .headers()
        .get("x-test-user")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(user) = user {
        request
            .extensions_mut()
            .insert(Identity::new(user, vec![Grant::everywhere(Role::Viewer)]));
    }
    next.run(request).await
}

/// A response as read off the wire.
#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

fn parse(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete response head in {text:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    Reply {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// Write `request` (whole, as bytes) and read the response until the server closes.
async fn exchange(addr: SocketAddr, request: Vec<u8>) -> Reply {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = tcp.split();
    // The server may answer (and close) before reading all of a huge request.
    let write = async move {
        let _ = writer.write_all(&request).await;
    };
    let read = async move {
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
                Err(e) if raw.is_empty() => panic!("no response: {e}"),
                Err(_) => break,
            }
        }
        raw
    };
    let (_, raw) = tokio::time::timeout(PATIENCE, async { tokio::join!(write, read) })
        .await
        .expect("a response in time");
    parse(&raw)
}

/// `GET path` with `Host: host` and `extra` header lines.
async fn get(addr: SocketAddr, path: &str, host: &str, extra: &[u8]) -> Reply {
    let mut request =
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n").into_bytes();
    request.extend_from_slice(extra);
    request.extend_from_slice(b"\r\n");
    exchange(addr, request).await
}

fn local(addr: SocketAddr) -> String {
    format!("localhost:{}", addr.port())
}

/// Open `/ui/events` as `user`: the connection once the stream said `ready`, or the refusal.
async fn open_stream(addr: SocketAddr, user: &str) -> Result<TcpStream, Reply> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /ui/events HTTP/1.1\r\nHost: localhost\r\nx-test-user: {user}\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(PATIENCE, tcp.read(&mut buf))
            .await
            .expect("the stream answers in time")
            .unwrap();
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw);
        if text.starts_with("HTTP/1.1 200") {
            if text.contains("event: ready") {
                return Ok(tcp);
            }
            assert!(n > 0, "the stream ended before it was ready: {text}");
        } else if n == 0 {
            return Err(parse(&raw));
        }
    }
}

async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(started.elapsed() < PATIENCE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_security_headers(reply: &Reply, what: &str) {
    let csp = reply
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no CSP in {}", reply.head));
    assert!(csp.contains("script-src 'self'"), "{what}: {csp}");
    assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert_eq!(
        reply.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(
        reply.header("referrer-policy"),
        Some("same-origin"),
        "{what}"
    );
    assert_eq!(reply.header("x-frame-options"), Some("DENY"), "{what}");
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let server = start(GuardSettings::default()).await;
    let host = local(server.addr);
    let css = {
        let page = get(server.addr, "/dags", &host, b"").await;
        let at = page
            .body
            .find("/ui/static/app.css")
            .expect("the stylesheet link");
        page.body[at..]
            .split('"')
            .next()
            .unwrap()
            .replace("&amp;", "&")
    };
    for (path, status) in [
        ("/api/v2/dags", 200),
        ("/dags", 200),
        ("/dags/hello/grid", 200),
        (css.as_str(), 200),
        ("/api/v2/dags/nope", 404),
        ("/dags/nope/grid", 404),
        ("/no/such/page", 404),
    ] {
        let reply = get(server.addr, path, &host, b"").await;
        assert_eq!(reply.status, status, "{path}: {}", reply.head);
        assert_security_headers(&reply, path);
    }
    let refused = get(server.addr, "/dags", "evil.example", b"").await;
    assert_eq!(refused.status, 421);
    assert_security_headers(&refused, "a refused host");
}

#[tokio::test]
async fn only_known_hosts_are_answered() {
    let server = start(GuardSettings {
        public_url: Some("https://updraft.example.com".to_string()),
        allowed_hosts: vec!["ops.internal".to_string()],
        ..Default::default()
    })
    .await;
    let port = server.addr.port();
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        "[::1]".to_string(),
        "updraft.example.com".to_string(),
        "UPDRAFT.example.com:443".to_string(),
        "ops.internal:8080".to_string(),
    ] {
        let reply = get(server.addr, "/api/v2/dags", &host, b"").await;
        assert_eq!(reply.status, 200, "{host}: {}", reply.head);
    }
    // A name made to resolve to this server (DNS rebinding) is not answered.
    let rebound = get(server.addr, "/api/v2/dags", "attacker.example:8080", b"").await;
    assert_eq!(rebound.status, 421, "{}", rebound.head);
    assert_eq!(
        rebound.header("content-type"),
        Some("application/problem+json")
    );
    let problem: serde_json::Value = serde_json::from_str(&rebound.body).unwrap();
    assert_eq!(problem["status"], 421);
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("attacker.example") && detail.contains("api.allowed_hosts"),
        "{detail}"
    );
    let ui = get(server.addr, "/dags", "attacker.example", b"").await;
    assert_eq!(ui.status, 421);
    assert!(!ui.body.contains("hello"), "no DAG shown: {}", ui.body);
    // Load balancers probe the health check with names of their own.
    let health = get(
        server.addr,
        "/api/v2/monitor/health",
        "10-0-0-7.lb.internal",
        b"",
    )
    .await;
    assert_eq!(health.status, 200, "{}", health.head);
    assert!(health.body.contains("metadatabase"), "{}", health.body);
    let malformed = get(server.addr, "/api/v2/dags", "bad host", b"").await;
    assert!((400..500).contains(&malformed.status), "{}", malformed.head);
}

#[tokio::test]
async fn huge_headers_get_431() {
    let server = start(GuardSettings::default()).await;
    let host = local(server.addr);
    // One header of 1 MiB: more than hyper reads for a request head.
    let huge = format!("X-Filler: {}\r\n", "a".repeat(1024 * 1024));
    let reply = get(server.addr, "/api/v2/dags", &host, huge.as_bytes()).await;
    assert_eq!(reply.status, 431, "{}", reply.head);
    // More header lines than hyper accepts.
    let many: String = (0..200).map(|i| format!("X-Filler-{i}: {i}\r\n")).collect();
    let reply = get(server.addr, "/api/v2/dags", &host, many.as_bytes()).await;
    assert_eq!(reply.status, 431, "{}", reply.head);
    // The server still answers.
    assert_eq!(
        get(server.addr, "/api/v2/dags", &host, b"").await.status,
        200
    );
}

#[tokio::test]
async fn malformed_credentials_never_get_500() {
    let server = start(GuardSettings::default()).await;
    let host = local(server.addr);
    let big = "A".repeat(64 * 1024);
    let mut cases: Vec<Vec<u8>> = vec![
        format!("Authorization: Bearer {big}\r\n").into_bytes(),
        format!("Authorization: Basic {big}\r\n").into_bytes(),
        format!("Cookie: session={big}\r\n").into_bytes(),
        format!("Cookie: {big}\r\n").into_bytes(),
        b"Authorization: Bearer \xff\xfe\x80garbage\r\n".to_vec(),
        b"Authorization: \xc3\x28\xa0\xa1\r\n".to_vec(),
        b"Authorization: Bearer a.b.c\r\n".to_vec(),
        b"Authorization: Bearer\r\n".to_vec(),
        b"Authorization:\r\n".to_vec(),
        b"Cookie: =;;;=; \xff\xff=\x80\r\n".to_vec(),
        b"Cookie: session=\"unterminated\r\n".to_vec(),
        b"Authorization: Bearer \x01\x02\r\n".to_vec(),
        b"Host: second.example\r\n".to_vec(),
    ];
    cases.push(
        [
            b"Authorization: Bearer x\r\n".as_slice(),
            b"Authorization: Basic y\r\n",
        ]
        .concat(),
    );
    for path in ["/api/v2/dags", "/dags", "/ui/events-not-a-stream"] {
        for extra in &cases {
            let reply = get(server.addr, path, &host, extra).await;
            assert!(
                reply.status < 500,
                "{path} with {:?}: {}",
                String::from_utf8_lossy(&extra[..extra.len().min(60)]),
                reply.head
            );
        }
    }
}

fn limits(per_user: usize, total: usize) -> GuardSettings {
    GuardSettings {
        streams: StreamLimits {
            per_user,
            total,
            ..Default::default()
        },
        ..Default::default()
    }
}

#[tokio::test]
async fn event_streams_are_capped_in_all_and_the_api_still_answers() {
    const TOTAL: usize = 6;
    let server = start_with_users(limits(TOTAL, TOTAL)).await;
    let mut open = Vec::new();
    for i in 0..TOTAL {
        let user = format!("user{}", i % 3);
        open.push(
            open_stream(server.addr, &user)
                .await
                .expect("under the cap"),
        );
    }
    assert_eq!(server.state.guard().open_streams(), TOTAL);
    let refused = open_stream(server.addr, "someone_else")
        .await
        .expect_err("over the cap");
    assert_eq!(refused.status, 503, "{}", refused.head);
    assert!(refused.header("retry-after").is_some(), "{}", refused.head);
    assert!(
        refused.body.contains("api.event_streams_max"),
        "{}",
        refused.body
    );

    let api = get(server.addr, "/api/v2/dags", "localhost", b"").await;
    assert_eq!(api.status, 200, "the API answers beside the streams");
    assert!(api.body.contains("hello"));

    // A page closes: its stream is counted out and another may open.
    drop(open.pop());
    eventually("the closed stream to be counted out", async || {
        (server.state.guard().open_streams() < TOTAL).then_some(())
    })
    .await;
    open.push(
        open_stream(server.addr, "someone_else")
            .await
            .expect("a free place again"),
    );
}

#[tokio::test]
async fn event_streams_are_capped_per_user() {
    let server = start_with_users(limits(2, 100)).await;
    let _ann1 = open_stream(server.addr, "ann").await.unwrap();
    let _ann2 = open_stream(server.addr, "ann").await.unwrap();
    let refused = open_stream(server.addr, "ann")
        .await
        .expect_err("ann's third");
    assert_eq!(refused.status, 429, "{}", refused.head);
    assert!(refused.header("retry-after").is_some());
    assert!(
        refused.body.contains("api.event_streams_per_user"),
        "{}",
        refused.body
    );
    let _bob = open_stream(server.addr, "bob")
        .await
        .expect("another user is not held back by ann's streams");
}

#[tokio::test]
async fn idle_event_streams_end_and_free_their_place() {
    let server = start_with_users(GuardSettings {
        streams: StreamLimits {
            per_user: 1,
            idle_timeout: Duration::from_millis(300),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let mut stream = open_stream(server.addr, "ann").await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest))
        .await
        .expect("the idle stream ends")
        .unwrap();
    eventually("the ended stream to be counted out", async || {
        (server.state.guard().open_streams() == 0).then_some(())
    })
    .await;
    open_stream(server.addr, "ann")
        .await
        .expect("ann may open a stream again");
}

#[tokio::test]
async fn event_streams_are_refused_when_descriptors_run_short() {
    // The limit `serve` runs under, raised as it raises it.
    let soft = updraft_server::guard::raise_descriptor_limit().expect("the open-files limit");
    let server = start(GuardSettings {
        streams: StreamLimits {
            // Whatever is open, fewer than this remain.
            reserved_file_descriptors: soft,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let refused = open_stream(server.addr, "ann").await.expect_err("refused");
    assert_eq!(refused.status, 503, "{}", refused.head);
    assert!(
        refused.body.contains("file descriptors"),
        "{}",
        refused.body
    );
    assert_eq!(server.state.guard().open_streams(), 0);
}

/// The first inline script, event handler attribute or style attribute in `html`, which the
/// Content-Security-Policy would refuse.
fn inline_code(html: &str) -> Option<String> {
    let lower = html.to_ascii_lowercase();
    if let Some(at) = lower.find(" style=") {
        return Some(lower[at..].chars().take(60).collect());
    }
    for (at, _) in lower.match_indices("<script") {
        let tag = &lower[at..at + lower[at..].find('>')?];
        if !tag.contains(" src=") {
            return Some(tag.to_string());
        }
    }
    lower.match_indices(" on").find_map(|(at, _)| {
        let name: String = lower[at + 3..]
            .chars()
            .take_while(char::is_ascii_lowercase)
            .collect();
        let after = &lower[at + 3 + name.len()..];
        (!name.is_empty() && after.starts_with('=')).then(|| lower[at..].chars().take(60).collect())
    })
}

#[tokio::test]
async fn pages_have_no_inline_script_or_style() {
    assert!(inline_code(r#"<p style="x">"#).is_some());
    assert!(inline_code("<script>alert(1)</script>").is_some());
    assert!(inline_code(r#"<a onclick="x()">"#).is_some());
    assert!(inline_code(r#"<script src="/a.js" defer></script><p>on time</p>"#).is_none());

    let server = start(GuardSettings::default()).await;
    let host = local(server.addr);
    for path in [
        "/dags",
        "/dags/hello/grid",
        "/dags/hello/graph",
        "/dags/hello/gantt",
        "/dags/hello/code",
        "/dags/hello/runs",
        "/dags/hello/trigger",
        "/pools",
        "/import-errors",
        "/dags/nope/grid",
    ] {
        let page = get(server.addr, path, &host, b"").await;
        assert!(page.body.contains("</html>"), "{path}: {}", page.head);
        assert_eq!(inline_code(&page.body), None, "{path}");
    }
}
