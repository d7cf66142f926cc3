//! The HTTP side: Kubernetes' paths, query parameters, bodies and status codes.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;
use tokio::sync::watch;

use crate::secrets;
use crate::selector::{fields_match, labels_match};
use crate::{Event, PodEntry, Shared, Signal};

pub(crate) type Params = Query<HashMap<String, String>>;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/version", get(version))
        .route("/api/v1/pods", get(list_all))
        .route(
            "/api/v1/namespaces/{ns}/pods",
            get(list_namespaced).post(create),
        )
        .route(
            "/api/v1/namespaces/{ns}/pods/{name}",
            get(get_pod).delete(delete),
        )
        .route("/api/v1/namespaces/{ns}/pods/{name}/log", get(log))
        .route("/api/v1/secrets", get(secrets::list_all))
        .route(
            "/api/v1/namespaces/{ns}/secrets",
            get(secrets::list).post(secrets::create),
        )
        .route(
            "/api/v1/namespaces/{ns}/secrets/{name}",
            get(secrets::get)
                .delete(secrets::delete)
                .patch(secrets::patch),
        )
        .layer(middleware::from_fn_with_state(shared.clone(), record))
        .with_state(shared)
}

async fn record(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let line = format!("{} {}", request.method(), request.uri());
    shared.lock().requests.push(line);
    next.run(request).await
}

/// A `Status` object, as every error of the API server.
pub(crate) fn status(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code.as_u16(),
    });
    (code, axum::Json(body)).into_response()
}

fn not_found(name: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("pods \"{name}\" not found"),
    )
}

async fn version() -> Response {
    axum::Json(json!({
        "major": "1", "minor": "31", "gitVersion": "v1.31.0-updraft-fake",
        "gitCommit": "", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.22", "compiler": "gc", "platform": "linux/amd64",
    }))
    .into_response()
}

async fn list_all(State(shared): State<Arc<Shared>>, params: Params) -> Response {
    list_or_watch(shared, None, params.0).await
}

async fn list_namespaced(
    State(shared): State<Arc<Shared>>,
    Path(ns): Path<String>,
    params: Params,
) -> Response {
    list_or_watch(shared, Some(ns), params.0).await
}

fn selected(pod: &Pod, ns: Option<&str>, params: &HashMap<String, String>) -> bool {
    ns.is_none_or(|ns| pod.metadata.namespace.as_deref() == Some(ns))
        && params
            .get("labelSelector")
            .is_none_or(|s| labels_match(s, &pod.metadata))
        && params
            .get("fieldSelector")
            .is_none_or(|s| fields_match(s, pod))
}

async fn list_or_watch(
    shared: Arc<Shared>,
    ns: Option<String>,
    params: HashMap<String, String>,
) -> Response {
    if matches!(params.get("watch").map(String::as_str), Some("true" | "1")) {
        return watch_pods(shared, ns, params);
    }
    let state = shared.lock();
    let items: Vec<&Pod> = state
        .pods
        .values()
        .map(|e| &e.pod)
        .filter(|p| selected(p, ns.as_deref(), &params))
        .collect();
    axum::Json(json!({
        "apiVersion": "v1", "kind": "PodList",
        "metadata": {"resourceVersion": state.rv.to_string()},
        "items": items,
    }))
    .into_response()
}

/// Newline-delimited watch events after the requested resource version (or the current pods
/// as ADDED when none is given), then live ones, until `timeoutSeconds`.
fn watch_pods(
    shared: Arc<Shared>,
    ns: Option<String>,
    params: HashMap<String, String>,
) -> Response {
    let from: Option<u64> = params
        .get("resourceVersion")
        .and_then(|rv| rv.parse().ok())
        .filter(|rv| *rv != 0);
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(1800), Duration::from_secs);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut changes = shared.changed.subscribe();
    let (initial, mut last, cuts) = {
        let state = shared.lock();
        if from.is_some_and(|rv| rv < state.compacted) {
            return expired(from.unwrap_or_default(), state.compacted);
        }
        let (initial, last) = match from {
            Some(rv) => (Vec::new(), rv),
            None => {
                let added: Vec<Event> = state
                    .pods
                    .values()
                    .filter(|e| selected(&e.pod, ns.as_deref(), &params))
                    .map(|e| Event {
                        rv: state.rv,
                        kind: "ADDED",
                        pod: e.pod.clone(),
                    })
                    .collect();
                (added, state.rv)
            }
        };
        (initial, last, state.watch_cuts)
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(64);
    tokio::spawn(async move {
        for event in initial {
            if tx.send(Ok(event_line(&event))).await.is_err() {
                return;
            }
        }
        loop {
            let events: Vec<Event> = {
                let state = shared.lock();
                if state.watch_cuts != cuts {
                    return;
                }
                state
                    .history
                    .iter()
                    .filter(|e| e.rv > last)
                    .filter(|e| selected(&e.pod, ns.as_deref(), &params))
                    .cloned()
                    .collect()
            };
            if let Some(e) = events.last() {
                last = e.rv;
            }
            for event in &events {
                if tx.send(Ok(event_line(event))).await.is_err() {
                    return;
                }
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep_until(deadline) => return,
                _ = tx.closed() => return,
            }
        }
    });
    let stream = tokio_stream_from(rx);
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .expect("a valid response")
}

/// What the API server answers a watch from a compacted resource version: one ERROR event
/// carrying a 410 `Status`.
fn expired(from: u64, oldest: u64) -> Response {
    let event = json!({
        "type": "ERROR",
        "object": {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("too old resource version: {from} ({oldest})"),
            "reason": "Expired", "code": 410,
        },
    });
    let mut line = serde_json::to_vec(&event).expect("an event serializes");
    line.push(b'\n');
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(line))
        .expect("a valid response")
}

fn tokio_stream_from(
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, Infallible>>,
) -> impl futures::Stream<Item = Result<Bytes, Infallible>> {
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

fn event_line(event: &Event) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": event.kind, "object": event.pod}))
        .expect("an event serializes");
    line.push(b'\n');
    Bytes::from(line)
}

async fn get_pod(
    State(shared): State<Arc<Shared>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    match shared.lock().pods.get(&(ns, name.clone())) {
        Some(entry) => axum::Json(&entry.pod).into_response(),
        None => not_found(&name),
    }
}

pub(crate) fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric()
}

async fn create(
    State(shared): State<Arc<Shared>>,
    Path(ns): Path<String>,
    body: Bytes,
) -> Response {
    let mut pod: Pod = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("the body is not a Pod: {e}"),
            );
        }
    };
    if let Some(refused) = check_new_pod(&shared, &ns, &mut pod) {
        return refused;
    }
    let failure = take_create_failure(&shared);
    if let Some(f) = failure.filter(|f| !f.created_anyway) {
        return create_failure(f.code);
    }
    let created = create_pod(shared, ns, pod);
    match failure {
        Some(f) => create_failure(f.code),
        None => created,
    }
}

/// One of the failures [`crate::FakeKube::fail_next_creates`] asked for, if any is left.
fn take_create_failure(shared: &Shared) -> Option<crate::FailingCreates> {
    let mut state = shared.lock();
    let failing = state.failing_creates.as_mut()?;
    if failing.left == 0 {
        return None;
    }
    failing.left -= 1;
    Some(*failing)
}

fn create_failure(code: u16) -> Response {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let reason = match code {
        StatusCode::GATEWAY_TIMEOUT => "Timeout",
        StatusCode::TOO_MANY_REQUESTS => "TooManyRequests",
        _ => "ServiceUnavailable",
    };
    status(code, reason, format!("the server answered {code}"))
}

fn create_pod(shared: Arc<Shared>, ns: String, mut pod: Pod) -> Response {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let (signal, signals) = watch::channel(Signal::None);
    {
        let mut state = shared.lock();
        if state.pods.contains_key(&(ns.clone(), name.clone())) {
            return status(
                StatusCode::CONFLICT,
                "AlreadyExists",
                format!("pods \"{name}\" already exists"),
            );
        }
        state.next_uid += 1;
        pod.metadata.uid = Some(format!("00000000-0000-0000-0000-{:012}", state.next_uid));
        pod.metadata.namespace = Some(ns.clone());
        pod.metadata.creation_timestamp = Some(Time(Timestamp::now()));
        pod.status = Some(PodStatus {
            phase: Some("Pending".to_owned()),
            ..PodStatus::default()
        });
        shared.record(&mut state, "ADDED", &mut pod);
        state.pods.insert(
            (ns.clone(), name.clone()),
            PodEntry {
                pod: pod.clone(),
                log: Vec::new(),
                started: false,
                log_done: false,
                signal,
            },
        );
    }
    shared.notify();
    tokio::spawn(crate::kubelet::run(shared.clone(), ns, name, signals));
    (StatusCode::CREATED, axum::Json(pod)).into_response()
}

/// The checks the API server makes before accepting a pod; `Some` is the refusal.
fn check_new_pod(shared: &Shared, ns: &str, pod: &mut Pod) -> Option<Response> {
    if let Some(known) = &shared.lock().namespaces
        && !known.contains(ns)
    {
        return Some(status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("namespaces \"{ns}\" not found"),
        ));
    }
    if let Some(other) = pod.metadata.namespace.as_deref()
        && other != ns
    {
        return Some(status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!(
                "the namespace of the provided object ({other}) does not match the namespace sent on the request ({ns})"
            ),
        ));
    }
    if pod.metadata.name.is_none()
        && let Some(prefix) = &pod.metadata.generate_name
    {
        let n = shared.lock().next_uid + 1;
        pod.metadata.name = Some(format!("{prefix}{:05x}", n * 7919 % 0xfffff));
    }
    let name = pod.metadata.name.clone().unwrap_or_default();
    if !is_dns_subdomain(&name) {
        return Some(status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!(
                "Pod \"{name}\" is invalid: metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'"
            ),
        ));
    }
    if pod.spec.as_ref().is_none_or(|s| s.containers.is_empty()) {
        return Some(status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!("Pod \"{name}\" is invalid: spec.containers: Required value"),
        ));
    }
    None
}

async fn delete(
    State(shared): State<Arc<Shared>>,
    Path((ns, name)): Path<(String, String)>,
    params: Params,
    body: Bytes,
) -> Response {
    let from_body = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("gracePeriodSeconds").and_then(|g| g.as_u64()));
    let grace = params
        .get("gracePeriodSeconds")
        .and_then(|g| g.parse().ok())
        .or(from_body)
        .unwrap_or(30);
    let grace = Duration::from_secs(grace);
    let deleted = shared.update(&ns, &name, |entry| {
        if entry.pod.metadata.deletion_timestamp.is_none() {
            entry.pod.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
            entry.pod.metadata.deletion_grace_period_seconds = Some(grace.as_secs() as i64);
        }
        entry.signal.send_replace(Signal::Terminate { grace });
    });
    if !deleted {
        return not_found(&name);
    }
    match shared.lock().pods.get(&(ns, name.clone())) {
        Some(entry) => axum::Json(&entry.pod).into_response(),
        None => not_found(&name),
    }
}

async fn log(
    State(shared): State<Arc<Shared>>,
    Path((ns, name)): Path<(String, String)>,
    params: Params,
) -> Response {
    let key = (ns, name.clone());
    {
        let state = shared.lock();
        let Some(entry) = state.pods.get(&key) else {
            return not_found(&name);
        };
        let containers: Vec<String> = entry
            .pod
            .spec
            .as_ref()
            .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
            .unwrap_or_default();
        match params.get("container") {
            Some(c) if !containers.contains(c) => {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    format!("container {c} is not valid for pod {name}"),
                );
            }
            None if containers.len() > 1 => {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    format!(
                        "a container name must be specified for pod {name}, choose one of: [{}]",
                        containers.join(" ")
                    ),
                );
            }
            _ => {}
        }
        if !entry.started {
            let container = params
                .get("container")
                .cloned()
                .or_else(|| containers.first().cloned())
                .unwrap_or_default();
            let reason = waiting_reason(&entry.pod);
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!(
                    "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
                ),
            );
        }
    }
    let since: Option<chrono::DateTime<chrono::Utc>> = params
        .get("sinceTime")
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.to_utc());
    let follow = matches!(params.get("follow").map(String::as_str), Some("true" | "1"));
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(64);
    let mut changes = shared.changed.subscribe();
    let cuts = shared.lock().log_cuts;
    tokio::spawn(async move {
        let mut sent = 0;
        loop {
            let (chunks, done) = {
                let state = shared.lock();
                if state.log_cuts != cuts {
                    return;
                }
                match state.pods.get(&key) {
                    Some(entry) => (entry.log[sent..].to_vec(), entry.log_done),
                    None => (Vec::new(), true),
                }
            };
            sent += chunks.len();
            for (at, chunk) in chunks {
                if since.is_some_and(|s| at < s) {
                    continue;
                }
                if tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                    return;
                }
            }
            if !follow || done {
                return;
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                _ = tx.closed() => return,
            }
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from_stream(tokio_stream_from(rx)))
        .expect("a valid response")
}

fn waiting_reason(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.reason.clone())
        .unwrap_or_else(|| "ContainerCreating".to_owned())
}
