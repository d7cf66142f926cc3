//! The stylesheet and script, compiled into the binary and served with a content-derived
//! version in their URLs, so browsers may cache them for good.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

pub const CSS: &str = include_str!("static/app.css");
pub const JS: &str = include_str!("static/app.js");

/// A short hash of the assets, appended to their URLs (`?v=...`).
pub static VERSION: LazyLock<String> = LazyLock::new(|| {
    // FNV-1a: stable across builds of the same text, no dependency needed.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in CSS.bytes().chain(JS.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:012x}", h & 0xffff_ffff_ffff)
});

pub async fn serve(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "app.css" => (CSS, "text/css; charset=utf-8"),
        "app.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such file").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        body,
    )
        .into_response()
}
