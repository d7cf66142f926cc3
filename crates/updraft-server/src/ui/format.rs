//! Small text helpers for the pages: times, durations, URL pieces, query strings.

use chrono::{DateTime, Utc};

/// `2024-01-01 03:00:00` (UTC), or an empty string.
pub fn time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// RFC 3339 for `<time datetime=...>`, or an empty string.
pub fn iso(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// A short human duration: `850ms`, `12s`, `3m 05s`, `2h 01m`, `3d 04h`.
pub fn duration(d: chrono::Duration) -> String {
    let ms = d.num_milliseconds().max(0);
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let s = ms / 1_000;
    match s {
        0..60 => format!("{s}s"),
        60..3_600 => format!("{}m {:02}s", s / 60, s % 60),
        3_600..86_400 => format!("{}h {:02}m", s / 3_600, (s % 3_600) / 60),
        _ => format!("{}d {:02}h", s / 86_400, (s % 86_400) / 3_600),
    }
}

/// Duration between two instants, `end` defaulting to `now` (for something still going on).
pub fn span(
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> String {
    match start {
        Some(s) => duration(end.unwrap_or(now) - s),
        None => String::new(),
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so the value is safe as
/// one path segment or one query value.
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Decodes a query component: `+` is a space, `%XX` a byte; bad escapes stay as they are.
pub fn dec(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The pairs of a raw query string, decoded, in order (repeated keys kept).
pub fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (dec(k), dec(v)),
            None => (dec(p), String::new()),
        })
        .collect()
}

/// First value of `key`, if present and not empty.
pub fn query_get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, v)| k == key && !v.is_empty())
        .map(|(_, v)| v.as_str())
}

/// Every non-empty value of `key`.
pub fn query_all<'a>(pairs: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(k, v)| k == key && !v.is_empty())
        .map(|(_, v)| v.as_str())
        .collect()
}

/// `/dags/{dag_id}`.
pub fn dag_url(dag_id: &str) -> String {
    format!("/dags/{}", enc(dag_id))
}

/// `/dags/{dag_id}/runs/{run_id}`.
pub fn run_url(dag_id: &str, run_id: &str) -> String {
    format!("/dags/{}/runs/{}", enc(dag_id), enc(run_id))
}

/// `/dags/{dag_id}/runs/{run_id}/tasks/{task_id}`.
pub fn ti_url(dag_id: &str, run_id: &str, task_id: &str) -> String {
    format!("{}/tasks/{}", run_url(dag_id, run_id), enc(task_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        let d = chrono::Duration::milliseconds;
        assert_eq!(duration(d(850)), "850ms");
        assert_eq!(duration(d(12_400)), "12s");
        assert_eq!(duration(d(185_000)), "3m 05s");
        assert_eq!(duration(d(7_260_000)), "2h 01m");
        assert_eq!(duration(d(90_000_000)), "1d 01h");
        assert_eq!(duration(d(-5)), "0ms");
    }

    #[test]
    fn encoding_round_trips_run_ids() {
        let run_id = "manual__2024-01-01T00:00:00+00:00 /?#&%";
        let encoded = enc(run_id);
        assert!(!encoded.contains(['/', '?', '#', '&', '+', ' ', ':']));
        assert_eq!(dec(&encoded), run_id);
    }

    #[test]
    fn query_pairs_decode_and_keep_repeats() {
        let pairs = query_pairs(Some("tags=a&tags=b%20c&search=x+y&empty=&flag&bad=%zz%4"));
        assert_eq!(query_all(&pairs, "tags"), ["a", "b c"]);
        assert_eq!(query_get(&pairs, "search"), Some("x y"));
        assert_eq!(query_get(&pairs, "empty"), None);
        assert_eq!(query_get(&pairs, "bad"), Some("%zz%4"));
        assert!(pairs.iter().any(|(k, _)| k == "flag"));
    }
}
