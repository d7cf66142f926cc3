//! The page a person sees when signing in elsewhere fails: what went wrong, in words, and a
//! way to try again.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// A small self-contained HTML page (no script, no outside resources).
pub fn sign_in_failed(status: StatusCode, message: &str, retry: Option<&str>) -> Response {
    let retry = retry
        .map(|href| format!(r#"<p><a href="{}">Sign in again</a></p>"#, escape(href)))
        .unwrap_or_default();
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Sign-in failed · updraft</title></head><body>\
         <main id=\"sign-in-failed\"><h1>Sign-in failed</h1><p class=\"reason\">{}</p>{retry}</main>\
         </body></html>",
        escape(message)
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_escaped() {
        assert_eq!(
            escape(r#"<script>"a" & 'b'</script>"#),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
    }
}
