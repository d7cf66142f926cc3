//! The `http` check: one request; a status in `expected_status` ends the wait, any other
//! status is "not yet" (Airflow's `HttpSensor` waits on 404 and fails on other errors;
//! updraft waits on every unexpected status, which the list makes explicit). A request that
//! cannot be sent (bad URL, refused connection, timeout) fails the try, as Airflow's does.

use super::{HttpRequest, PokeFailure, PokeResult};

pub(super) async fn poke(
    client: &reqwest::Client,
    request: &HttpRequest,
) -> Result<(PokeResult, String), PokeFailure> {
    let method = reqwest::Method::from_bytes(request.method.as_bytes())
        .map_err(|e| PokeFailure::Error(format!("bad HTTP method {:?}: {e}", request.method)))?;
    let mut builder = client.request(method, &request.url);
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    if let Some(body) = &request.body {
        builder = builder.body(body.clone());
    }
    let response = builder.send().await.map_err(|e| {
        PokeFailure::Error(format!(
            "{} {} failed: {}",
            request.method,
            request.url,
            updraft_secrets::mask::global()
                .read()
                .map(|m| m.mask(&e.to_string()))
                .unwrap_or_default()
        ))
    })?;
    let status = response.status().as_u16();
    let line = format!("{} {} answered {status}", request.method, request.url);
    if request.expected_status.contains(&status) {
        Ok((PokeResult::Done, line))
    } else {
        Ok((PokeResult::NotYet, line))
    }
}

/// The URL of an HTTP connection's `endpoint`, as Airflow's `HttpHook` builds it: the host
/// (with `schema://` unless it has one; `http` by default) and port, then the endpoint,
/// joined by one `/`.
pub fn connection_url(
    connection: &updraft_secrets::Connection,
    endpoint: &str,
) -> Result<String, String> {
    let host = connection
        .host
        .as_deref()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("connection {} has no host", connection.conn_id))?;
    let mut base = if host.contains("://") {
        host.to_owned()
    } else {
        let schema = connection
            .schema
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or("http");
        format!("{schema}://{host}")
    };
    if let Some(port) = connection.port {
        base = format!("{base}:{port}");
    }
    Ok(join(&base, endpoint))
}

/// `base` and `endpoint` with one `/` between them (none added for an empty endpoint).
pub fn join(base: &str, endpoint: &str) -> String {
    if endpoint.is_empty() {
        return base.to_owned();
    }
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        endpoint.trim_start_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_urls_follow_airflow_s_http_hook() {
        let mut c = updraft_secrets::Connection {
            conn_id: "api".into(),
            conn_type: "http".into(),
            host: Some("example.com".into()),
            ..Default::default()
        };
        assert_eq!(
            connection_url(&c, "/health").unwrap(),
            "http://example.com/health"
        );
        c.schema = Some("https".into());
        c.port = Some(8443);
        assert_eq!(
            connection_url(&c, "v1/ready").unwrap(),
            "https://example.com:8443/v1/ready"
        );
        c.host = Some("http://h/".into());
        c.port = None;
        assert_eq!(connection_url(&c, "/x").unwrap(), "http://h/x");
        c.host = None;
        assert!(connection_url(&c, "/x").is_err());
    }
}
