//! Protections every request passes, whatever its route:
//!
//! - **Security headers** on every response (API, UI, errors, static files): a
//!   Content-Security-Policy that allows no inline script or style and no framing,
//!   `X-Content-Type-Options: nosniff`, `Referrer-Policy: same-origin`, `X-Frame-Options: DENY`.
//! - **The `Host` check** against DNS rebinding: a page on another site whose name was made to
//!   resolve to this server's address sends its own name as `Host`, so only names updraft is
//!   known by are answered: the public URL's host, `api.allowed_hosts`, `localhost`. IP literals
//!   are always answered (a rebinding needs a name), and so is the health check, for load
//!   balancers that probe with a name of their own. Others get 421 Misdirected Request.
//! - **Event stream limits** ([`Guard::open_stream`]): the live event streams are long-lived
//!   connections, each holding a file descriptor; their number is capped per user and in total,
//!   and a new one is refused while fewer than `reserved_file_descriptors` would remain for the
//!   rest of the process (the API, the DAG scan, task launches).

use std::collections::HashMap;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::uri::Authority;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// The policy: scripts and styles from updraft's own static files only, images also as `data:`
/// URLs, no plugins, no framing, forms post to updraft only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'self'";

/// The path answered whatever the `Host` (load balancers' health probes).
pub const HEALTH_PATH: &str = "/api/v2/monitor/health";

/// What the guard enforces; [`GuardSettings::default`] suits a loopback server.
#[derive(Debug, Clone, Default)]
pub struct GuardSettings {
    /// The address users reach updraft at (`api.public_url`), e.g. `https://updraft.example.com`;
    /// its host is answered.
    pub public_url: Option<String>,
    /// More host names to answer (`api.allowed_hosts`); `*` turns the `Host` check off.
    pub allowed_hosts: Vec<String>,
    pub streams: StreamLimits,
}

/// Limits of the live event streams (`/ui/events`).
#[derive(Debug, Clone)]
pub struct StreamLimits {
    /// Open streams per user.
    pub per_user: usize,
    /// Open streams in all.
    pub total: usize,
    /// A stream that had nothing to send for this long ends (the page's script reconnects).
    pub idle_timeout: Duration,
    /// File descriptors kept free for everything else: a stream is refused when fewer would
    /// remain under the process's limit.
    pub reserved_file_descriptors: u64,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            per_user: 16,
            total: 256,
            idle_timeout: Duration::from_secs(30 * 60),
            reserved_file_descriptors: 256,
        }
    }
}

/// The guard's settings and the count of open event streams; one per server.
#[derive(Debug)]
pub struct Guard {
    settings: GuardSettings,
    /// Lower-case host names answered besides loopback names and IP literals.
    hosts: Vec<String>,
    any_host: bool,
    open: Mutex<OpenStreams>,
}

#[derive(Debug, Default)]
struct OpenStreams {
    total: usize,
    per_user: HashMap<String, usize>,
}

/// Why the settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("api.public_url: `{0}` is not a URL with a host (like https://updraft.example.com)")]
    PublicUrl(String),
    #[error("api.allowed_hosts: `{0}` is not a host name")]
    AllowedHost(String),
}

impl Default for Guard {
    fn default() -> Self {
        Guard::new(GuardSettings::default()).expect("the default settings are valid")
    }
}

impl Guard {
    pub fn new(settings: GuardSettings) -> Result<Guard, GuardError> {
        let mut hosts = Vec::new();
        if let Some(url) = settings.public_url.as_deref().filter(|u| !u.is_empty()) {
            hosts.push(url_host(url).ok_or_else(|| GuardError::PublicUrl(url.to_string()))?);
        }
        let mut any_host = false;
        for entry in &settings.allowed_hosts {
            if entry == "*" {
                any_host = true;
            } else {
                hosts.push(host_of(entry).ok_or_else(|| GuardError::AllowedHost(entry.clone()))?);
            }
        }
        Ok(Guard {
            settings,
            hosts,
            any_host,
            open: Mutex::new(OpenStreams::default()),
        })
    }

    pub fn settings(&self) -> &GuardSettings {
        &self.settings
    }

    /// Whether a request naming `host` (a `Host` header's value) may be answered.
    pub fn host_allowed(&self, host: &str) -> Result<(), HostRefusal> {
        if self.any_host {
            return Ok(());
        }
        let name = host_of(host).ok_or(HostRefusal::Malformed)?;
        let literal = name.trim_start_matches('[').trim_end_matches(']');
        if IpAddr::from_str(literal).is_ok()
            || name == "localhost"
            || name.ends_with(".localhost")
            || self.hosts.contains(&name)
        {
            Ok(())
        } else {
            Err(HostRefusal::Unknown(name))
        }
    }

    /// Count a new event stream of `user`, or say why it may not open. The stream counts
    /// until the returned permit is dropped.
    pub fn open_stream(self: &Arc<Self>, user: &str) -> Result<StreamPermit, StreamRefusal> {
        let limits = &self.settings.streams;
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let mine = open.per_user.get(user).copied().unwrap_or(0);
        if mine >= limits.per_user {
            return Err(StreamRefusal::PerUser(limits.per_user));
        }
        if open.total >= limits.total {
            return Err(StreamRefusal::Total(limits.total));
        }
        if !descriptors_to_spare(limits.reserved_file_descriptors) {
            return Err(StreamRefusal::Descriptors);
        }
        open.total += 1;
        *open.per_user.entry(user.to_string()).or_default() += 1;
        Ok(StreamPermit {
            guard: self.clone(),
            user: user.to_string(),
        })
    }

    /// Event streams open now, in all.
    pub fn open_streams(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).total
    }

    fn close_stream(&self, user: &str) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_user.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                open.per_user.remove(user);
            }
        }
    }
}

/// An open event stream, counted until dropped.
#[derive(Debug)]
pub struct StreamPermit {
    guard: Arc<Guard>,
    user: String,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        self.guard.close_stream(&self.user);
    }
}

/// Why a `Host` is not answered.
#[derive(Debug, PartialEq, Eq)]
pub enum HostRefusal {
    Malformed,
    Unknown(String),
}

impl From<HostRefusal> for ApiError {
    fn from(refusal: HostRefusal) -> Self {
        match refusal {
            HostRefusal::Malformed => ApiError::bad_request("the Host header is not a host name"),
            HostRefusal::Unknown(name) => ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "this server does not answer to the host `{name}`. If that is its address, \
                     set api.public_url to its URL or add `{name}` to api.allowed_hosts \
                     (a check against DNS rebinding)"
                ),
            ),
        }
    }
}

/// Why an event stream may not open now.
#[derive(Debug, PartialEq, Eq)]
pub enum StreamRefusal {
    PerUser(usize),
    Total(usize),
    Descriptors,
}

/// Seconds a refused client should wait before trying again.
const STREAM_RETRY_AFTER_SECS: u64 = 30;

impl IntoResponse for StreamRefusal {
    fn into_response(self) -> Response {
        let error = match self {
            StreamRefusal::PerUser(n) => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "you have {n} live update streams open, the most allowed per user \
                     (api.event_streams_per_user); close some pages"
                ),
            ),
            StreamRefusal::Total(n) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the server has {n} live update streams open, the most it allows \
                     (api.event_streams_max)"
                ),
            ),
            StreamRefusal::Descriptors => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is short of file descriptors; live updates are refused until some \
                 close (api.reserved_file_descriptors)",
            ),
        };
        let mut response = error.into_response();
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(STREAM_RETRY_AFTER_SECS),
        );
        response
    }
}

/// The middleware: refuses unknown hosts, then adds the security headers to whatever the
/// router answers.
pub async fn protect(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let mut response = match check_host(&state, &request) {
        Ok(()) => next.run(request).await,
        Err(refusal) => ApiError::from(refusal).into_response(),
    };
    add_security_headers(response.headers_mut());
    response
}

fn check_host(state: &AppState, request: &Request) -> Result<(), HostRefusal> {
    if request.uri().path() == HEALTH_PATH {
        return Ok(());
    }
    let host = match request.headers().get(header::HOST) {
        Some(value) => Some(value.to_str().map_err(|_| HostRefusal::Malformed)?),
        None => request.uri().authority().map(Authority::as_str),
    };
    // No host at all (HTTP/1.0, in-process calls): nothing a browser would send.
    host.map_or(Ok(()), |host| state.guard().host_allowed(host))
}

/// The security headers, unless the response set its own.
pub fn add_security_headers(headers: &mut axum::http::HeaderMap) {
    let fixed: [(HeaderName, &'static str); 4] = [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    for (name, value) in fixed {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
}

/// The lower-case host of `host[:port]` (IPv6 literals in brackets), without a trailing dot.
fn host_of(text: &str) -> Option<String> {
    let authority = Authority::from_str(text.trim()).ok()?;
    let port = authority.as_str().strip_prefix(authority.host())?;
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !port_ok {
        return None;
    }
    let host = authority.host().trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

/// The host of `scheme://host[:port]/path`.
fn url_host(url: &str) -> Option<String> {
    let uri = axum::http::Uri::from_str(url.trim()).ok()?;
    uri.scheme()?;
    host_of(uri.authority()?.as_str())
}

/// Whether more than `reserved` descriptors remain under the soft limit. Counts the open ones
/// in `/proc/self/fd` (Linux); elsewhere there is nothing cheap to count and the answer is yes.
fn descriptors_to_spare(reserved: u64) -> bool {
    let Some(open) = open_descriptors() else {
        return true;
    };
    let limit = match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
        Ok((soft, _)) => soft,
        Err(_) => return true,
    };
    limit.saturating_sub(open) > reserved
}

fn open_descriptors() -> Option<u64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    Some(entries.count() as u64)
}

/// Raise the soft limit of open files to the hard limit, so the server and scheduler can use
/// what the system allows. Returns the limit now in force.
pub fn raise_descriptor_limit() -> Option<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return Some(hard);
    }
    Some(soft)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(public_url: Option<&str>, allowed: &[&str]) -> Guard {
        Guard::new(GuardSettings {
            public_url: public_url.map(str::to_string),
            allowed_hosts: allowed.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn loopback_names_and_ip_literals_are_answered() {
        let g = guard(None, &[]);
        for host in [
            "localhost",
            "localhost:8080",
            "LOCALHOST.",
            "127.0.0.1:8080",
            "[::1]:8080",
            "[::1]",
            "10.1.2.3",
            "app.localhost:80",
        ] {
            assert_eq!(g.host_allowed(host), Ok(()), "{host}");
        }
    }

    #[test]
    fn other_names_are_refused_unless_configured() {
        let g = guard(None, &[]);
        assert_eq!(
            g.host_allowed("evil.example:8080"),
            Err(HostRefusal::Unknown("evil.example".to_string()))
        );
        let g = guard(Some("https://Updraft.Example.com/base"), &["ops.example:9"]);
        assert_eq!(g.host_allowed("updraft.example.com"), Ok(()));
        assert_eq!(g.host_allowed("updraft.example.com:443"), Ok(()));
        assert_eq!(g.host_allowed("ops.example"), Ok(()));
        assert!(g.host_allowed("example.com").is_err());
        assert!(g.host_allowed("updraft.example.com.evil.example").is_err());
        assert_eq!(guard(None, &["*"]).host_allowed("anything.example"), Ok(()));
    }

    #[test]
    fn malformed_hosts_are_refused() {
        let g = guard(None, &[]);
        for host in ["", "a b", "user@localhost", "localhost:port", "[::1"] {
            assert_eq!(
                g.host_allowed(host),
                Err(HostRefusal::Malformed),
                "{host:?}"
            );
        }
    }

    #[test]
    fn bad_settings_are_named() {
        let bad = |public_url: &str, allowed: &[&str]| {
            Guard::new(GuardSettings {
                public_url: Some(public_url.to_string()),
                allowed_hosts: allowed.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            })
            .unwrap_err()
            .to_string()
        };
        assert!(bad("updraft.example.com", &[]).contains("api.public_url"));
        assert!(bad("https://ok.example", &["a b"]).contains("api.allowed_hosts"));
    }

    #[test]
    fn streams_are_counted_per_user_and_in_all() {
        let g = Arc::new(
            Guard::new(GuardSettings {
                streams: StreamLimits {
                    per_user: 2,
                    total: 3,
                    ..Default::default()
                },
                ..Default::default()
            })
            .unwrap(),
        );
        let a1 = g.open_stream("a").unwrap();
        let _a2 = g.open_stream("a").unwrap();
        assert_eq!(g.open_stream("a").unwrap_err(), StreamRefusal::PerUser(2));
        let _b1 = g.open_stream("b").unwrap();
        assert_eq!(g.open_stream("b").unwrap_err(), StreamRefusal::Total(3));
        drop(a1);
        assert_eq!(g.open_streams(), 2);
        let _b2 = g.open_stream("b").unwrap();
    }

    #[test]
    fn streams_are_refused_when_descriptors_run_short() {
        let (soft, _) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
        let g = Arc::new(
            Guard::new(GuardSettings {
                streams: StreamLimits {
                    reserved_file_descriptors: soft,
                    ..Default::default()
                },
                ..Default::default()
            })
            .unwrap(),
        );
        assert_eq!(g.open_stream("a").unwrap_err(), StreamRefusal::Descriptors);
    }
}
