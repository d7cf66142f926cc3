//! Authentication through the real router over a temporary SQLite store: anonymous callers,
//! the login page and its session cookie, CSRF, API tokens (`POST /auth/token`), the login
//! rate limit, and turning authentication off.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use chrono::Utc;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use updraft_auth::{Grant, Role};
use updraft_server::authn::token::{self, Claims};
use updraft_server::authn::{AuthSettings, TokenKeys};
use updraft_server::{AppState, ServerConfig};
use updraft_store::{AdminStore, NewUser, SqliteStore, Store, UserStore};

const DAG: &str = "tasks:\n  - task_id: only\n    bash: echo only\n";
const PASSWORD: &str = "correct horse battery staple";

struct App {
    _dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    state: AppState,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.text))
    }

    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(&name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or_else(|| panic!("no {name} header: {} {}", self.status, self.text))
    }

    /// The `Set-Cookie` header setting `name`.
    fn set_cookie(&self, name: &str) -> String {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .find(|v| v.starts_with(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no cookie {name}: {:?}", self.headers))
    }

    /// `name=value` of a cookie set by this reply, for sending back.
    fn cookie_pair(&self, name: &str) -> String {
        self.set_cookie(name).split(';').next().unwrap().to_string()
    }

    /// The value of `<input name="{field}" value="...">` or `<meta name="{field}" content="...">`.
    fn page_value(&self, attribute: &str, name: &str) -> String {
        let marker = format!("name=\"{name}\" {attribute}=\"");
        let start = self
            .text
            .find(&marker)
            .unwrap_or_else(|| panic!("no {name} in the page: {}", self.text))
            + marker.len();
        self.text[start..].split('"').next().unwrap().to_string()
    }

    fn is_problem(&self, status: StatusCode) {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(
            self.header(header::CONTENT_TYPE),
            "application/problem+json",
            "{}",
            self.text
        );
        assert_eq!(self.json()["status"], status.as_u16());
    }
}

impl App {
    async fn new() -> App {
        App::with_settings(AuthSettings::ephemeral()).await
    }

    async fn with_settings(auth: AuthSettings) -> App {
        let dir = tempfile::tempdir().unwrap();
        let dags = dir.path().join("dags");
        std::fs::create_dir_all(&dags).unwrap();
        std::fs::write(dags.join("etl.yaml"), DAG).unwrap();
        let store = Arc::new(
            SqliteStore::open(&dir.path().join("updraft.db"))
                .await
                .unwrap(),
        );
        store.migrate().await.unwrap();
        let mut bag = updraft_dag::DagBag::with_options(&dags, Default::default());
        bag.refresh();
        updraft_runs::record_dag_bag(store.as_ref(), &bag, false, Utc::now())
            .await
            .unwrap();
        let state = AppState::new(
            store.clone() as Arc<dyn Store>,
            ServerConfig {
                keyring: None,
                source_sync: None,
                source_webhooks: Default::default(),
                bind: "127.0.0.1:0".parse().unwrap(),
                dags_folder: dags,
                logs_folder: dir.path().join("logs"),
                auth,
            },
            tokio::sync::broadcast::channel(16).0,
            Arc::new(|| {}),
        );
        App {
            _dir: dir,
            store,
            state,
        }
    }

    fn settings(&self) -> &AuthSettings {
        &self.state.config.auth
    }

    async fn add_user(&self, username: &str, grants: &[Grant]) {
        let user = NewUser {
            username: username.to_string(),
            email: format!("{username}@example.com"),
            first_name: username.to_string(),
            last_name: "Tester".to_string(),
            password_hash: Some(updraft_auth::password::hash(PASSWORD).unwrap()),
            source: "local".to_string(),
        };
        self.store.create_user(&user, grants).await.unwrap();
    }

    async fn send(&self, mut request: Request<Body>) -> Reply {
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 7], 50_000))));
        let response = updraft_server::router(self.state.clone())
            .oneshot(request)
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn request(&self, method: Method, uri: &str, headers: &[(&str, &str)]) -> Reply {
        let mut builder = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        self.send(builder.body(Body::empty()).unwrap()).await
    }

    async fn get(&self, uri: &str, headers: &[(&str, &str)]) -> Reply {
        self.request(Method::GET, uri, headers).await
    }

    async fn with_token(&self, method: Method, uri: &str, token: &str) -> Reply {
        let bearer = format!("Bearer {token}");
        self.request(method, uri, &[("authorization", &bearer)])
            .await
    }

    async fn post_json(&self, uri: &str, body: Value, headers: &[(&str, &str)]) -> Reply {
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        self.send(builder.body(Body::from(body.to_string())).unwrap())
            .await
    }

    async fn post_form(&self, uri: &str, form: &[(&str, &str)], cookie: &str) -> Reply {
        let body = serde_html_form::to_string(form).unwrap();
        let request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, cookie)
            .body(Body::from(body))
            .unwrap();
        self.send(request).await
    }

    /// Submits the login form as a browser would: fetch the page (its CSRF nonce cookie and
    /// token), post the form back.
    async fn login(&self, username: &str, password: &str, next: &str) -> Reply {
        let page = self.get(&format!("/login?next={next}"), &[]).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        let csrf = page.page_value("value", "csrf_token");
        let nonce = page.cookie_pair("updraft_login");
        self.post_form(
            "/login",
            &[
                ("username", username),
                ("password", password),
                ("csrf_token", &csrf),
                ("next", next),
            ],
            &nonce,
        )
        .await
    }

    /// Signs in through the login page: the session cookie (`name=value`) and the CSRF token
    /// its pages carry.
    async fn session(&self, username: &str) -> (String, String) {
        let signed_in = self.login(username, PASSWORD, "/dags").await;
        assert_eq!(
            signed_in.status,
            StatusCode::SEE_OTHER,
            "{}",
            signed_in.text
        );
        let cookie = signed_in.cookie_pair("updraft_session");
        let page = self.get("/dags", &[("cookie", &cookie)]).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        (cookie, page.page_value("content", "csrf-token"))
    }

    async fn token(&self, username: &str, password: &str) -> Reply {
        self.post_json(
            "/auth/token",
            json!({"username": username, "password": password}),
            &[],
        )
        .await
    }

    async fn token_for(&self, username: &str) -> String {
        let reply = self.token(username, PASSWORD).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        reply.json()["access_token"].as_str().unwrap().to_string()
    }
}

#[tokio::test]
async fn anonymous_api_calls_are_401_with_a_bearer_challenge() {
    let app = App::new().await;
    let closed = [
        (Method::GET, "/api/v2/dags"),
        (Method::GET, "/api/v2/dags/etl"),
        (Method::GET, "/api/v2/dags/etl/dagRuns"),
        (Method::GET, "/api/v2/pools"),
        (Method::GET, "/api/v2/importErrors"),
        (Method::GET, "/api/v2/version"),
        (Method::GET, "/api/v2/openapi.json"),
        (Method::GET, "/api/v2/no/such/path"),
        (Method::POST, "/api/v2/dags/etl/dagRuns"),
        (Method::PATCH, "/api/v2/dags/etl"),
        (Method::DELETE, "/api/v2/pools/default_pool"),
        (Method::GET, "/ui/events"),
    ];
    for (method, path) in closed {
        let reply = app.request(method.clone(), path, &[]).await;
        reply.is_problem(StatusCode::UNAUTHORIZED);
        assert_eq!(
            reply.header(header::WWW_AUTHENTICATE),
            "Bearer",
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn health_login_and_assets_are_open() {
    let app = App::new().await;
    assert_eq!(
        app.get("/api/v2/monitor/health", &[]).await.status,
        StatusCode::OK
    );
    let login = app.get("/login", &[]).await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(login.text.contains("Sign in"), "{}", login.text);
    assert!(
        !login.text.contains("<script>"),
        "no inline script: {}",
        login.text
    );
    // The login page's own stylesheet and script load without a session.
    for asset in ["/ui/static/app.css", "/ui/static/app.js"] {
        assert!(login.text.contains(asset), "{}", login.text);
        assert_eq!(app.get(asset, &[]).await.status, StatusCode::OK, "{asset}");
    }
}

#[tokio::test]
async fn anonymous_pages_redirect_to_the_login_page() {
    let app = App::new().await;
    for (page, next) in [
        ("/", "%2F"),
        (
            "/dags/etl/grid?run_id=x",
            "%2Fdags%2Fetl%2Fgrid%3Frun_id%3Dx",
        ),
        ("/pools", "%2Fpools"),
    ] {
        let reply = app.get(page, &[]).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{page}");
        assert_eq!(
            reply.header(header::LOCATION),
            format!("/login?next={next}")
        );
    }
}

#[tokio::test]
async fn malformed_oversized_and_foreign_credentials_are_401_never_500() {
    let app = App::new().await;
    let huge = format!("Bearer {}", "a".repeat(10 * 1024));
    let forged_session = "updraft_session=eyJ1IjoiYWRtaW4iLCJpYXQiOjAsImV4cCI6OTk5OTk5OTk5OX0.AAAA";
    let cases: Vec<(&str, String)> = vec![
        ("authorization", "Bearer garbage".into()),
        ("authorization", "Bearer a.b.c".into()),
        ("authorization", "Bearer ".into()),
        ("authorization", "Basic YWRtaW46YWRtaW4=".into()),
        ("authorization", huge),
        (
            "authorization",
            "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.".into(),
        ),
    ];
    for (name, value) in &cases {
        let reply = app.get("/api/v2/dags", &[(name, value)]).await;
        reply.is_problem(StatusCode::UNAUTHORIZED);
    }
    // A session cookie that is garbage or forged counts as none.
    for cookie in [
        forged_session.to_string(),
        format!("updraft_session={}", "x".repeat(10_000)),
    ] {
        let reply = app.get("/api/v2/dags", &[("cookie", &cookie)]).await;
        reply.is_problem(StatusCode::UNAUTHORIZED);
        let page = app.get("/dags", &[("cookie", &cookie)]).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER);
    }
}

#[tokio::test]
async fn a_wrong_password_or_unknown_user_gets_the_same_words() {
    let app = App::new().await;
    app.add_user("alice", &[Grant::everywhere(Role::Viewer)])
        .await;
    for (username, password) in [("alice", "wrong"), ("nobody", PASSWORD)] {
        let reply = app.login(username, password, "/dags").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert!(
            reply.text.contains("invalid username or password"),
            "{}",
            reply.text
        );
        assert!(
            reply
                .headers
                .get_all(header::SET_COOKIE)
                .iter()
                .all(|c| !c.to_str().unwrap().starts_with("updraft_session="))
        );
        let token = app.token(username, password).await;
        token.is_problem(StatusCode::UNAUTHORIZED);
        assert_eq!(token.json()["detail"], "invalid username or password");
    }
}

#[tokio::test]
async fn logging_in_sets_a_locked_down_cookie_and_shows_the_user() {
    let app = App::new().await;
    app.add_user("alice", &[Grant::everywhere(Role::Viewer)])
        .await;
    let reply = app.login("alice", PASSWORD, "/pools").await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
    assert_eq!(reply.header(header::LOCATION), "/pools");
    let cookie = reply.set_cookie("updraft_session");
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=43200"] {
        assert!(cookie.contains(flag), "{flag} missing: {cookie}");
    }
    assert!(!cookie.contains("Secure"), "http: not Secure: {cookie}");
    let session = reply.cookie_pair("updraft_session");
    let page = app.get("/pools", &[("cookie", &session)]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains(">alice</span>"), "{}", page.text);
    assert!(page.text.contains("action=\"/logout\""), "{}", page.text);
    // The API answers the session too.
    let api = app.get("/api/v2/dags", &[("cookie", &session)]).await;
    assert_eq!(api.status, StatusCode::OK, "{}", api.text);
    assert_eq!(api.json()["total_entries"], 1);
}

#[tokio::test]
async fn an_https_public_url_makes_the_cookie_secure() {
    let settings = AuthSettings::ephemeral()
        .with_public_url("https://updraft.example.com")
        .unwrap();
    let app = App::with_settings(settings).await;
    app.add_user("alice", &[Grant::everywhere(Role::Viewer)])
        .await;
    let reply = app.login("alice", PASSWORD, "/").await;
    assert!(reply.set_cookie("updraft_session").contains("Secure"));
}

#[tokio::test]
async fn login_sends_only_to_local_paths() {
    let app = App::new().await;
    app.add_user("alice", &[Grant::everywhere(Role::Viewer)])
        .await;
    for next in ["https://evil.example/", "//evil.example/x"] {
        let reply = app.login("alice", PASSWORD, next).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER);
        assert_eq!(reply.header(header::LOCATION), "/", "{next}");
    }
}

#[tokio::test]
async fn the_login_form_needs_its_csrf_token() {
    let app = App::new().await;
    app.add_user("alice", &[Grant::everywhere(Role::Viewer)])
        .await;
    let page = app.get("/login", &[]).await;
    let nonce = page.cookie_pair("updraft_login");
    let form = [("username", "alice"), ("password", PASSWORD), ("next", "/")];
    let without = app.post_form("/login", &form, &nonce).await;
    assert_eq!(without.status, StatusCode::FORBIDDEN);
    let csrf = page.page_value("value", "csrf_token");
    let mut with_token = form.to_vec();
    with_token.push(("csrf_token", &csrf));
    let no_nonce = app.post_form("/login", &with_token, "").await;
    assert_eq!(no_nonce.status, StatusCode::FORBIDDEN);
    let ok = app.post_form("/login", &with_token, &nonce).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.text);
}

#[tokio::test]
async fn session_writes_need_the_csrf_token_and_bearer_writes_do_not() {
    let app = App::new().await;
    app.add_user("alice", &[Grant::everywhere(Role::Admin)])
        .await;
    let (cookie, csrf) = app.session("alice").await;
    let pause = || {
        Request::builder()
            .method(Method::PATCH)
            .uri("/api/v2/dags/etl")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::COOKIE, &cookie)
    };
    let body = || Body::from(json!({"is_paused": true}).to_string());
    let missing = app.send(pause().body(body()).unwrap()).await;
    missing.is_problem(StatusCode::FORBIDDEN);
    assert!(missing.text.contains("CSRF"), "{}", missing.text);
    let wrong = app
        .send(pause().header("x-csrf-token", "AAAA").body(body()).unwrap())
        .await;
    wrong.is_problem(StatusCode::FORBIDDEN);
    let right = app
        .send(pause().header("x-csrf-token", &csrf).body(body()).unwrap())
        .await;
    assert_eq!(right.status, StatusCode::OK, "{}", right.text);
    assert_eq!(right.json()["is_paused"], true);
    // Another session's token is refused: it is bound to its session.
    let (_, other_csrf) = app.session("alice").await;
    if other_csrf != csrf {
        let foreign = app
            .send(
                pause()
                    .header("x-csrf-token", &other_csrf)
                    .body(body())
                    .unwrap(),
            )
            .await;
        foreign.is_problem(StatusCode::FORBIDDEN);
    }
    // A token needs no CSRF token: no browser sends it on its own.
    let token = app.token_for("alice").await;
    let request = Request::builder()
        .method(Method::PATCH)
        .uri("/api/v2/dags/etl")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::from(json!({"is_paused": false}).to_string()))
        .unwrap();
    let by_token = app.send(request).await;
    assert_eq!(by_token.status, StatusCode::OK, "{}", by_token.text);
}

#[tokio::test]
async fn logout_needs_the_csrf_token_and_clears_the_cookie() {
    let app = App::new().await;
    app.add_user("alice", &[Grant::everywhere(Role::Viewer)])
        .await;
    let (cookie, csrf) = app.session("alice").await;
    let refused = app.post_form("/logout", &[], &cookie).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let out = app
        .post_form("/logout", &[("csrf_token", &csrf)], &cookie)
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.header(header::LOCATION), "/login");
    let cleared = out.set_cookie("updraft_session");
    assert!(cleared.starts_with("updraft_session=;"), "{cleared}");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
}

#[tokio::test]
async fn an_api_token_is_issued_as_airflow_does_and_verified() {
    let app = App::new().await;
    app.add_user("alice", &[Grant::everywhere(Role::Viewer)])
        .await;
    let reply = app.token("alice", PASSWORD).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let body = reply.json();
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    let token = body["access_token"].as_str().unwrap();
    let listed = app.with_token(Method::GET, "/api/v2/dags", token).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    assert_eq!(listed.json()["total_entries"], 1);
    let lower = app
        .request(
            Method::GET,
            "/api/v2/dags",
            &[("authorization", &format!("bearer {token}"))],
        )
        .await;
    assert_eq!(lower.status, StatusCode::OK);
    // The token endpoint takes JSON only, and says what is wrong.
    let bad = app
        .post_json("/auth/token", json!({"username": "alice"}), &[])
        .await;
    bad.is_problem(StatusCode::UNPROCESSABLE_ENTITY);
}

fn claims(app: &App, username: &str) -> Claims {
    let now = Utc::now().timestamp();
    Claims {
        sub: username.to_string(),
        iss: app.settings().issuer.clone(),
        aud: app.settings().audience.clone(),
        iat: now,
        nbf: now,
        exp: now + 3600,
        jti: "test".to_string(),
    }
}

#[tokio::test]
async fn expired_future_foreign_and_misaddressed_tokens_are_refused() {
    let app = App::new().await;
    app.add_user("alice", &[Grant::everywhere(Role::Viewer)])
        .await;
    let now = Utc::now().timestamp();
    let good = token::sign(app.settings(), &claims(&app, "alice")).unwrap();
    assert_eq!(
        app.with_token(Method::GET, "/api/v2/dags", &good)
            .await
            .status,
        StatusCode::OK
    );
    let cases = [
        (
            "expired",
            Claims {
                iat: now - 7200,
                nbf: now - 7200,
                exp: now - 3600,
                ..claims(&app, "alice")
            },
        ),
        (
            "not yet valid",
            Claims {
                nbf: now + 3600,
                exp: now + 7200,
                ..claims(&app, "alice")
            },
        ),
        (
            "wrong issuer",
            Claims {
                iss: "someone-else".into(),
                ..claims(&app, "alice")
            },
        ),
        (
            "wrong audience",
            Claims {
                aud: "another-app".into(),
                ..claims(&app, "alice")
            },
        ),
        ("unknown user", claims(&app, "mallory")),
    ];
    for (why, claims) in cases {
        let token = token::sign(app.settings(), &claims).unwrap();
        let reply = app.with_token(Method::GET, "/api/v2/dags", &token).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{why}: {}",
            reply.text
        );
    }
    // Signed by another server's key.
    let other = AuthSettings::ephemeral();
    let foreign = token::sign(&other, &claims(&app, "alice")).unwrap();
    let reply = app.with_token(Method::GET, "/api/v2/dags", &foreign).await;
    reply.is_problem(StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_deleted_users_token_and_session_stop_working() {
    let app = App::new().await;
    app.add_user("alice", &[Grant::everywhere(Role::Viewer)])
        .await;
    let token = app.token_for("alice").await;
    let (cookie, _) = app.session("alice").await;
    assert!(app.store.delete_user("alice").await.unwrap());
    let by_token = app.with_token(Method::GET, "/api/v2/dags", &token).await;
    by_token.is_problem(StatusCode::UNAUTHORIZED);
    let page = app.get("/dags", &[("cookie", &cookie)]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_removed_grant_takes_effect_at_the_next_request() {
    let app = App::new().await;
    let viewer = Grant::everywhere(Role::Viewer);
    app.add_user("alice", std::slice::from_ref(&viewer)).await;
    let token = app.token_for("alice").await;
    let before = app.with_token(Method::GET, "/api/v2/dags", &token).await;
    assert_eq!(before.status, StatusCode::OK);
    assert!(app.store.remove_grant("alice", &viewer).await.unwrap());
    let after = app.with_token(Method::GET, "/api/v2/dags", &token).await;
    assert!(
        after.status == StatusCode::FORBIDDEN || after.status == StatusCode::NOT_FOUND,
        "{} {}",
        after.status,
        after.text
    );
}

#[tokio::test]
async fn repeated_failed_logins_are_limited_per_user_and_address() {
    let app = App::new().await;
    app.add_user("alice", &[Grant::everywhere(Role::Viewer)])
        .await;
    for _ in 0..5 {
        let reply = app.token("alice", "wrong").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    // Now even the right password waits: the limit comes before the check.
    let limited = app.token("alice", PASSWORD).await;
    limited.is_problem(StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = limited.header(header::RETRY_AFTER).parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let page = app.login("alice", PASSWORD, "/").await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(page.headers.contains_key(header::RETRY_AFTER));
    // The same address trying another username is limited too.
    app.add_user("bob", &[Grant::everywhere(Role::Viewer)])
        .await;
    assert_eq!(
        app.token("bob", PASSWORD).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn tokens_signed_with_a_key_pair_verify_with_its_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("private.pem");
    let public = dir.path().join("public.pem");
    openssl(
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ],
        &private,
    );
    openssl(
        &["pkey", "-pubout", "-in", private.to_str().unwrap(), "-out"],
        &public,
    );
    let mut settings = AuthSettings::ephemeral();
    settings.token_keys = TokenKeys::from_pem_files("ES256", &private, &public).unwrap();
    let app = App::with_settings(settings).await;
    app.add_user("alice", &[Grant::everywhere(Role::Viewer)])
        .await;
    let token = app.token_for("alice").await;
    let header = token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header).unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "ES256");
    assert_eq!(
        app.with_token(Method::GET, "/api/v2/dags", &token)
            .await
            .status,
        StatusCode::OK
    );
    // An HS256 token made with the secret key is not accepted in place of ES256.
    let hs = token::sign(&AuthSettings::ephemeral(), &claims(&app, "alice")).unwrap();
    assert_eq!(
        app.with_token(Method::GET, "/api/v2/dags", &hs)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

fn openssl(args: &[&str], out: &std::path::Path) {
    let status = std::process::Command::new("openssl")
        .args(args)
        .arg(out)
        .status()
        .expect("this test needs the openssl command (Debian: apt-get install openssl)");
    assert!(status.success(), "openssl {args:?} failed");
}

#[tokio::test]
async fn with_authentication_off_every_caller_is_the_local_admin() {
    let app = App::with_settings(AuthSettings::disabled()).await;
    let reply = app.get("/api/v2/dags", &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let page = app.get("/dags", &[]).await;
    assert_eq!(page.status, StatusCode::OK);
}

#[test]
fn authentication_may_be_off_on_loopback_only() {
    let public: SocketAddr = "0.0.0.0:8080".parse().unwrap();
    let loopback: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let err = updraft_server::check_bind(public, false).unwrap_err();
    assert!(err.to_string().contains("auth.enabled = false"), "{err}");
    assert!(updraft_server::check_bind(public, true).is_ok());
    assert!(updraft_server::check_bind(loopback, false).is_ok());
    assert!(updraft_server::check_bind("[::1]:8080".parse().unwrap(), false).is_ok());
}

/// `[auth] metrics_token`: a Prometheus presenting it reads `/metrics` (and the documented
/// `/api/v2/monitor/metrics`), and nothing else; a wrong token is 401, as any bad bearer token.
#[tokio::test]
async fn the_metrics_token_reads_the_metrics_and_nothing_else() {
    let token = "a-metrics-token-of-32-characters";
    let mut settings = AuthSettings::ephemeral();
    settings.metrics_token = Some(token.to_string());
    let app = App::with_settings(settings).await;
    let bearer = format!("Bearer {token}");
    for path in ["/metrics", "/api/v2/monitor/metrics"] {
        let reply = app.get(path, &[("authorization", &bearer)]).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text);
        assert!(
            reply.text.contains("airflow_pool_open_slots"),
            "{}",
            reply.text
        );
    }
    for path in ["/api/v2/dags", "/api/v2/config", "/api/v2/pools"] {
        let reply = app.get(path, &[("authorization", &bearer)]).await;
        reply.is_problem(StatusCode::UNAUTHORIZED);
    }
    let wrong = app
        .get(
            "/metrics",
            &[("authorization", "Bearer not-the-metrics-token")],
        )
        .await;
    wrong.is_problem(StatusCode::UNAUTHORIZED);
    app.get("/metrics", &[])
        .await
        .is_problem(StatusCode::UNAUTHORIZED);
}
