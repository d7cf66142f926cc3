//! The parts of Python's `urllib.parse` that Airflow's connection URI format is defined by:
//! `urlsplit` (with its `username`, `password`, `hostname` and `port`), `quote`, `unquote`,
//! `urlencode` and `parse_qsl`, and `json.dumps`' default text. Reproducing their edge cases
//! (a lower-cased host, `+` as a space in queries, the last duplicate query key winning) is
//! what makes a URI read here exactly as Airflow reads it.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::FormatError;

/// Left as they are by `quote(s, safe="")`.
const QUOTE_ALL: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~');

/// Left as they are by `quote_plus` before spaces become `+`.
const QUOTE_PLUS: &AsciiSet = &QUOTE_ALL.remove(b' ');

/// `urllib.parse.urlsplit`'s answer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SplitUrl {
    pub scheme: String,
    pub netloc: String,
    pub path: String,
    pub query: String,
}

/// `urllib.parse.urlsplit(url)`.
pub fn urlsplit(url: &str) -> Result<SplitUrl, FormatError> {
    let cleaned: String = url
        .trim_start_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\r' | '\n'))
        .collect();
    let (scheme, mut rest) = split_scheme(&cleaned);
    let mut netloc = "";
    if let Some(after) = rest.strip_prefix("//") {
        let end = after.find(['/', '?', '#']).unwrap_or(after.len());
        netloc = &after[..end];
        rest = &after[end..];
        if netloc.contains('[') != netloc.contains(']') {
            return Err(FormatError::new(format!(
                "host {netloc:?} has an unclosed IPv6 bracket"
            )));
        }
    }
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let split = SplitUrl {
        scheme,
        netloc: netloc.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
    };
    split.check_bracketed_host()?;
    Ok(split)
}

fn split_scheme(url: &str) -> (String, &str) {
    if let Some(colon) = url.find(':') {
        let candidate = &url[..colon];
        let valid = candidate.starts_with(|c: char| c.is_ascii_alphabetic())
            && candidate
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if valid {
            return (candidate.to_ascii_lowercase(), &url[colon + 1..]);
        }
    }
    (String::new(), url)
}

impl SplitUrl {
    fn userinfo(&self) -> Option<&str> {
        self.netloc.rsplit_once('@').map(|(info, _)| info)
    }

    fn hostinfo(&self) -> &str {
        self.netloc
            .rsplit_once('@')
            .map_or(self.netloc.as_str(), |(_, host)| host)
    }

    /// The raw host and port text, as `_hostinfo` splits them (brackets of an IPv6 address
    /// removed).
    fn host_and_port(&self) -> (&str, Option<&str>) {
        let hostinfo = self.hostinfo();
        let (host, port) = match hostinfo.split_once('[') {
            Some((_, bracketed)) => {
                let (host, after) = bracketed.split_once(']').unwrap_or((bracketed, ""));
                (host, after.split_once(':').map_or("", |(_, port)| port))
            }
            None => hostinfo.split_once(':').unwrap_or((hostinfo, "")),
        };
        (host, (!port.is_empty()).then_some(port))
    }

    fn check_bracketed_host(&self) -> Result<(), FormatError> {
        if !self.hostinfo().contains('[') {
            return Ok(());
        }
        let (host, _) = self.host_and_port();
        let address = host.split_once('%').map_or(host, |(address, _)| address);
        if host.starts_with('v') || address.parse::<std::net::Ipv6Addr>().is_ok() {
            Ok(())
        } else {
            Err(FormatError::new(format!(
                "host \"[{host}]\" is not an IPv6 address"
            )))
        }
    }

    pub fn username(&self) -> Option<&str> {
        self.userinfo()
            .map(|info| info.split_once(':').map_or(info, |(user, _)| user))
    }

    pub fn password(&self) -> Option<&str> {
        self.userinfo()
            .and_then(|info| info.split_once(':').map(|(_, password)| password))
    }

    /// Lower-cased up to a `%` (Python keeps an IPv6 zone's case, and so everything after a
    /// percent-escape); `None` when empty.
    pub fn hostname(&self) -> Option<String> {
        let (host, _) = self.host_and_port();
        if host.is_empty() {
            return None;
        }
        Some(match host.split_once('%') {
            Some((before, after)) => format!("{}%{after}", before.to_ascii_lowercase()),
            None => host.to_ascii_lowercase(),
        })
    }

    pub fn port(&self) -> Result<Option<u16>, FormatError> {
        let Some(port) = self.host_and_port().1 else {
            return Ok(None);
        };
        if !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(FormatError::new(format!("port {port:?} is not a number")));
        }
        port.parse::<u16>()
            .map(Some)
            .map_err(|_| FormatError::new(format!("port {port} is out of range (0-65535)")))
    }
}

/// `urllib.parse.unquote`: invalid escapes kept as they are, invalid UTF-8 replaced.
pub fn unquote(text: &str) -> String {
    percent_decode_str(text).decode_utf8_lossy().into_owned()
}

/// `urllib.parse.quote(text, safe="")`.
pub fn quote(text: &str) -> String {
    utf8_percent_encode(text, QUOTE_ALL).to_string()
}

fn quote_plus(text: &str) -> String {
    utf8_percent_encode(text, QUOTE_PLUS)
        .to_string()
        .replace(' ', "+")
}

fn unquote_plus(text: &str) -> String {
    unquote(&text.replace('+', " "))
}

/// `urllib.parse.urlencode(pairs)`.
pub fn urlencode<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    pairs
        .into_iter()
        .map(|(key, value)| format!("{}={}", quote_plus(key), quote_plus(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `dict(urllib.parse.parse_qsl(query, keep_blank_values=True))`, in the dict's order: a key
/// keeps the place it first appeared at and the value it last had.
pub fn parse_qsl_dict(query: &str) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for field in query.split('&').filter(|field| !field.is_empty()) {
        let (name, value) = field.split_once('=').unwrap_or((field, ""));
        let (name, value) = (unquote_plus(name), unquote_plus(value));
        match pairs.iter_mut().find(|(known, _)| *known == name) {
            Some(pair) => pair.1 = value,
            None => pairs.push((name, value)),
        }
    }
    pairs
}

/// Python's `json.dumps(value)` text for an object with its fields in this order (`", "` and
/// `": "` separators, non-ASCII escaped).
pub fn json_dumps_fields(pairs: &[(String, serde_json::Value)]) -> String {
    let fields: Vec<String> = pairs
        .iter()
        .map(|(key, value)| format!("{}: {}", json_string(key), json_dumps(value)))
        .collect();
    format!("{{{}}}", fields.join(", "))
}

/// Python's `json.dumps(value)` text.
pub fn json_dumps(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::String(text) => json_string(text),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(json_dumps).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) => {
            let fields: Vec<String> = map
                .iter()
                .map(|(key, value)| format!("{}: {}", json_string(key), json_dumps(value)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
        other => other.to_string(),
    }
}

fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || !c.is_ascii() => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON object's fields in the order they are written (the map type used elsewhere sorts
/// them, and the order shows in the URI written from them).
pub struct OrderedObject(pub Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for OrderedObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = OrderedObject;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<OrderedObject, A::Error> {
                let mut fields: Vec<(String, serde_json::Value)> = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, serde_json::Value>()? {
                    match fields.iter_mut().find(|(known, _)| *known == key) {
                        Some(field) => field.1 = value,
                        None => fields.push((key, value)),
                    }
                }
                Ok(OrderedObject(fields))
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_as_python_does() {
        let split = urlsplit("Type://User:p%40ss@Host.Example:5432/db?a=1#frag").unwrap();
        assert_eq!(split.scheme, "type");
        assert_eq!(split.netloc, "User:p%40ss@Host.Example:5432");
        assert_eq!(split.path, "/db");
        assert_eq!(split.query, "a=1");
        assert_eq!(split.username(), Some("User"));
        assert_eq!(split.password(), Some("p%40ss"));
        assert_eq!(split.hostname().as_deref(), Some("host.example"));
        assert_eq!(split.port().unwrap(), Some(5432));
    }

    #[test]
    fn ipv6_hosts_lose_their_brackets() {
        let split = urlsplit("pg://u@[::1]:5432/db").unwrap();
        assert_eq!(split.hostname().as_deref(), Some("::1"));
        assert_eq!(split.port().unwrap(), Some(5432));
        assert!(urlsplit("pg://[::1/db").is_err());
        assert!(urlsplit("pg://[nothost]/db").is_err());
    }

    #[test]
    fn quoting_matches_python() {
        assert_eq!(quote("a b/c@d~e_f.g-h"), "a%20b%2Fc%40d~e_f.g-h");
        assert_eq!(urlencode([("k y", "v+w x")]), "k+y=v%2Bw+x");
        assert_eq!(
            parse_qsl_dict("a=1&b&a=2&c=x+y%21"),
            vec![
                ("a".to_owned(), "2".to_owned()),
                ("b".to_owned(), String::new()),
                ("c".to_owned(), "x y!".to_owned())
            ]
        );
    }

    #[test]
    fn json_text_matches_python() {
        let value = serde_json::json!({"a": ["x", 1, true, null], "b": "é\n"});
        assert_eq!(
            json_dumps(&value),
            r#"{"a": ["x", 1, true, null], "b": "\u00e9\n"}"#
        );
    }
}
