//! Plain HTTP/1.1 calls to the REST API of a running `updraft standalone` (or `server`), for
//! tests of the binary (`common::http`).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

use crate::common::{DEFAULT_TIMEOUT, SchedulerProcess, wait_until};

/// The `host:port` the service announced for its web UI and API.
pub fn api_address(service: &SchedulerProcess) -> String {
    wait_until(
        "the server to announce its address",
        DEFAULT_TIMEOUT,
        || {
            let output = service.output();
            let (_, rest) = output.split_once("updraft web UI and API on http://")?;
            Some(rest.split(['/', ' ', '\n']).next()?.to_string())
        },
    )
}

/// `METHOD /api/v2{path}` with an optional JSON body: the status and the JSON answer (`Null`
/// when the body is not JSON). Panics when the server cannot be reached.
pub fn api(address: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    try_api(address, method, path, body)
        .unwrap_or_else(|| panic!("the API at {address} did not answer {method} {path}"))
}

/// [`api`], or `None` when the server cannot be reached or does not answer (for tests that
/// take the server or its database away).
pub fn try_api(
    address: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Option<(u16, Value)> {
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} /api/v2{path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (status, body) = exchange(address, &request)?;
    Some((status, serde_json::from_str(&body).unwrap_or(Value::Null)))
}

/// Sends `request` and reads the whole answer: its status and body; `None` when the server
/// cannot be reached or does not answer HTTP.
fn exchange(address: &str, request: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(address).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// An API token for `username` from `POST /auth/token`, as Airflow 3's clients get one.
pub fn access_token(address: &str, username: &str, password: &str) -> String {
    let body = serde_json::json!({"username": username, "password": password}).to_string();
    let mut stream = TcpStream::connect(address).expect("connecting to the server");
    write!(
        stream,
        "POST /auth/token HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("sending the token request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("reading the token response");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(
        head.starts_with("HTTP/1.1 201"),
        "POST /auth/token: {response}"
    );
    let token: Value = serde_json::from_str(body).expect("a JSON token response");
    token["access_token"]
        .as_str()
        .expect("an access_token")
        .to_string()
}

/// `GET /api/v2{path}`'s JSON answer, or `None` when the server does not answer with JSON.
pub fn get_json(address: &str, path: &str) -> Option<Value> {
    try_api(address, "GET", path, None).and_then(|(_, body)| (!body.is_null()).then_some(body))
}

/// `GET /api/v2{path}`.
pub fn get(address: &str, path: &str) -> (u16, Value) {
    api(address, "GET", path, None)
}

/// `POST /api/v2{path}` with a JSON body.
pub fn post(address: &str, path: &str, body: &Value) -> (u16, Value) {
    api(address, "POST", path, Some(body))
}

/// `GET {path}` (from the root, not under `/api/v2`): the status and the body as text, or
/// `None` when the server cannot be reached.
pub fn get_text(address: &str, path: &str) -> Option<(u16, String)> {
    exchange(
        address,
        &format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"),
    )
}
