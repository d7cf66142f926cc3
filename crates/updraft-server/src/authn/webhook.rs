//! Git hosts' webhooks for DAG sources: `POST /api/v2/sources/{name}/sync` proved by the
//! source's webhook secret (`ServerConfig::source_webhooks`) instead of a user's credentials.
//!
//! - GitHub (and Gitea, Forgejo): `X-Hub-Signature-256: sha256=<hex>`, the HMAC-SHA256 of the
//!   body keyed with the secret;
//! - GitLab: `X-Gitlab-Token: <secret>`.
//!
//! Both are compared in constant time. A request that presents either header is a webhook
//! call: a match makes its caller [`Identity::webhook`], whom the one authorization decision
//! lets sync that source and nothing else; anything else (no secret configured for the
//! source, a wrong signature or token, another path) is 401.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use hmac::{KeyInit, Mac};
use subtle::ConstantTimeEq;
use updraft_auth::Identity;

use super::unauthorized;
use crate::state::WebhookSecrets;

/// GitHub's signature header.
pub const GITHUB_SIGNATURE: &str = "x-hub-signature-256";
/// GitLab's token header.
pub const GITLAB_TOKEN: &str = "x-gitlab-token";
/// Largest webhook body read (GitHub caps its payloads at 25 MB).
const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Whether the request presents a webhook's signature or token.
pub fn is_webhook_call(headers: &HeaderMap) -> bool {
    headers.contains_key(GITHUB_SIGNATURE) || headers.contains_key(GITLAB_TOKEN)
}

/// The source named by a sync path, `/api/v2/sources/{name}/sync`.
fn source_of_path(path: &str) -> Option<&str> {
    let name = path
        .strip_prefix("/api/v2/sources/")?
        .strip_suffix("/sync")?;
    (!name.is_empty() && !name.contains('/')).then_some(name)
}

/// Checks a webhook call: `Ok` gives the request back (its body re-assembled) with the
/// source's webhook identity; `Err` is the 401 to send.
pub async fn identify(
    secrets: &WebhookSecrets,
    request: Request,
) -> Result<(Identity, Request), Response> {
    let refused = || unauthorized("the webhook's signature or token does not match");
    if request.method() != Method::POST {
        return Err(refused());
    }
    let name = source_of_path(request.uri().path())
        .map(decode_segment)
        .ok_or_else(refused)?;
    let secret = secrets.get(&name).ok_or_else(refused)?.as_bytes().to_vec();
    if let Some(token) = request.headers().get(GITLAB_TOKEN) {
        return if bool::from(token.as_bytes().ct_eq(&secret)) {
            Ok((Identity::webhook(&name), request))
        } else {
            Err(refused())
        };
    }
    let signature = request
        .headers()
        .get(GITHUB_SIGNATURE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("sha256="))
        .and_then(|hex_digest| hex::decode(hex_digest).ok())
        .ok_or_else(refused)?;
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| refused())?;
    if !signature_matches(&secret, &bytes, &signature) {
        return Err(refused());
    }
    Ok((
        Identity::webhook(&name),
        Request::from_parts(parts, Body::from(bytes)),
    ))
}

/// Whether `signature` is the HMAC-SHA256 of `body` keyed with `secret` (compared in constant
/// time).
pub fn signature_matches(secret: &[u8], body: &[u8], signature: &[u8]) -> bool {
    let Ok(mut mac) = <HmacSha256 as KeyInit>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(signature).is_ok()
}

/// A path segment as the router decodes it (percent-encoding undone).
fn decode_segment(segment: &str) -> String {
    percent_decode(segment).unwrap_or_else(|| segment.to_string())
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex_pair = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex_pair, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_paths_name_their_source() {
        assert_eq!(source_of_path("/api/v2/sources/dags/sync"), Some("dags"));
        assert_eq!(source_of_path("/api/v2/sources/dags"), None);
        assert_eq!(source_of_path("/api/v2/sources//sync"), None);
        assert_eq!(source_of_path("/api/v2/sources/a/b/sync"), None);
        assert_eq!(source_of_path("/api/v2/dags/x/sync"), None);
        assert_eq!(decode_segment("team%2Da"), "team-a");
    }

    #[test]
    fn github_signatures_are_the_bodys_hmac_with_the_secret() {
        // GitHub's documented example: secret "It's a Secret to Everybody", body
        // "Hello, World!".
        let expected =
            hex::decode("757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
                .unwrap();
        assert!(signature_matches(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            &expected
        ));
        assert!(!signature_matches(
            b"It's a Secret to Everybody",
            b"Hello, World?",
            &expected
        ));
        assert!(!signature_matches(
            b"another secret",
            b"Hello, World!",
            &expected
        ));
        assert!(!signature_matches(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            &expected[..31]
        ));
    }
}
