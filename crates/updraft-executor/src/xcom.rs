//! XComs a try pushes, as Airflow's tasks push them: read when the try has succeeded.
//!
//! - **The XCom file.** A local try gets `UPDRAFT_XCOM_PATH`, a file in its own working
//!   directory, absent at start. Present after a successful exit, it holds ONE JSON object
//!   `{"<key>": <any JSON value>, ...}`: each member becomes an XCom with that key
//!   (`return_value` is Airflow's default key). A pod task writes the same object to its
//!   termination message.
//! - **`do_xcom_push`.** The last non-empty line of the try's output becomes `return_value`
//!   (a JSON value when the line parses as JSON, else the string), as Airflow's
//!   `BashOperator` pushes it. The XCom file's `return_value`, if any, wins.
//!
//! Each value is at most `max_xcom_size` bytes of compact JSON (`[core] max_xcom_size`,
//! [`DEFAULT_MAX_XCOM_SIZE`]); the file at most [`FILE_FACTOR`] times that. A value too big,
//! a file that is not a JSON object or not JSON at all fails the try (as Airflow fails the
//! task), with a message naming the file or key and the size and limit.

use std::io::Read as _;
use std::os::unix::fs::FileExt as _;
use std::path::Path;

/// The environment variable naming a local try's XCom file.
pub const XCOM_PATH_VAR: &str = "UPDRAFT_XCOM_PATH";

/// The XCom file's name in the try's working directory.
pub const XCOM_FILE_NAME: &str = ".updraft-xcom.json";

/// Airflow's default key.
pub const RETURN_VALUE: &str = "return_value";

/// The default `[core] max_xcom_size`: 1 MiB per value.
pub const DEFAULT_MAX_XCOM_SIZE: usize = 1024 * 1024;

/// The XCom file (or termination message) may hold this many times `max_xcom_size`.
pub const FILE_FACTOR: usize = 8;

/// One value a try pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XComPush {
    pub key: String,
    /// The value as compact JSON text.
    pub value: String,
}

/// The XComs in `text`, one JSON object read from `source` (named in errors).
pub fn parse_object(text: &str, source: &str, limit: usize) -> Result<Vec<XComPush>, String> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| format!("the XCom {source} is not valid JSON: {e}"))?;
    let serde_json::Value::Object(members) = value else {
        return Err(format!(
            "the XCom {source} must hold one JSON object {{\"<key>\": <value>, ...}}, found {}",
            kind_of(&value)
        ));
    };
    members
        .into_iter()
        .map(|(key, value)| pushed(key, &value, limit))
        .collect()
}

/// `return_value` from the last non-empty line of `output` (see the module doc); `None` when
/// every line is empty.
pub fn parse_last_line(output: &[u8], limit: usize) -> Option<Result<XComPush, String>> {
    let line = last_non_empty_line(output)?;
    let line = String::from_utf8_lossy(line);
    let value = serde_json::from_str::<serde_json::Value>(line.trim())
        .unwrap_or_else(|_| serde_json::Value::String(line.into_owned()));
    Some(pushed(RETURN_VALUE.to_owned(), &value, limit))
}

/// Merges `do_xcom_push`'s `return_value` under the file's pushes (the file's wins).
pub fn merge(mut file: Vec<XComPush>, line: Option<XComPush>) -> Vec<XComPush> {
    if let Some(line) = line
        && !file.iter().any(|p| p.key == line.key)
    {
        file.insert(0, line);
    }
    file
}

fn pushed(key: String, value: &serde_json::Value, limit: usize) -> Result<XComPush, String> {
    let text = value.to_string();
    if text.len() > limit {
        return Err(format!(
            "the XCom `{key}` is {} bytes of JSON, over the limit of {limit} bytes \
             ([core] max_xcom_size)",
            text.len()
        ));
    }
    Ok(XComPush { key, value: text })
}

/// The last line of `output` holding more than white space, without its line end.
fn last_non_empty_line(output: &[u8]) -> Option<&[u8]> {
    output
        .split(|b| *b == b'\n')
        .rev()
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .find(|line| line.iter().any(|b| !b.is_ascii_whitespace()))
}

fn kind_of(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// What a local try pushed: its XCom file (if it wrote one) and, with `do_xcom_push`, the last
/// line of its output, the bytes of `log` from `output_start`. Blocking.
pub(crate) fn read_local(
    file: &Path,
    log: &Path,
    output_start: u64,
    do_xcom_push: bool,
    limit: usize,
) -> Result<Vec<XComPush>, String> {
    let pushed = match read_bounded(file, limit.saturating_mul(FILE_FACTOR))? {
        Some(text) => parse_object(&text, &format!("file {}", file.display()), limit)?,
        None => Vec::new(),
    };
    if !do_xcom_push {
        return Ok(pushed);
    }
    let tail = std::fs::File::open(log)
        .and_then(|log| read_tail(&log, output_start, limit.saturating_add(2)))
        .map_err(|e| format!("cannot read the try's output for do_xcom_push: {e}"))?;
    let line = parse_last_line(&tail, limit).transpose()?;
    Ok(merge(pushed, line))
}

/// The file's text, `None` when absent; over `max` bytes, unreadable or not a regular file
/// (the try could have made it a link to a file only updraft may read, or a pipe), an error
/// naming it.
fn read_bounded(path: &Path, max: usize) -> Result<Option<String>, String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let unreadable =
        |e: std::io::Error| format!("cannot read the XCom file {}: {e}", path.display());
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Err(format!(
                "the XCom file {} is a symbolic link; it must be a regular file",
                path.display()
            ));
        }
        Err(e) => return Err(unreadable(e)),
    };
    if !file.metadata().map_err(unreadable)?.is_file() {
        return Err(format!(
            "the XCom file {} is not a regular file",
            path.display()
        ));
    }
    let mut bytes = Vec::new();
    file.take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the XCom file {}: {e}", path.display()))?;
    if bytes.len() > max {
        return Err(format!(
            "the XCom file {} is over {max} bytes, the limit ({FILE_FACTOR} × [core] \
             max_xcom_size)",
            path.display()
        ));
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| format!("the XCom file {} is not UTF-8", path.display()))
}

/// The last `max` bytes of `log` after `start` (enough for a line of `max` bytes: a longer
/// last line is cut, and then over the limit anyway).
fn read_tail(log: &std::fs::File, start: u64, max: usize) -> std::io::Result<Vec<u8>> {
    let end = log.metadata()?.len();
    let from = end.saturating_sub(max as u64).max(start);
    let mut bytes = vec![0; usize::try_from(end.saturating_sub(from)).unwrap_or(0)];
    log.read_exact_at(&mut bytes, from)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_member_of_the_object_is_one_xcom() {
        let pushed = parse_object(r#"{"return_value": "hi", "n": [1, 2]}"#, "file x", 100);
        assert_eq!(
            pushed.unwrap(),
            [
                XComPush {
                    key: "n".into(),
                    value: "[1,2]".into()
                },
                XComPush {
                    key: "return_value".into(),
                    value: "\"hi\"".into()
                },
            ]
        );
    }

    #[test]
    fn not_an_object_or_not_json_or_too_big_is_an_error_naming_the_source() {
        let e = parse_object("[1]", "file /w/x.json", 100).unwrap_err();
        assert!(
            e.contains("file /w/x.json") && e.contains("an array"),
            "{e}"
        );
        let e = parse_object("{oops", "file /w/x.json", 100).unwrap_err();
        assert!(e.contains("not valid JSON"), "{e}");
        let e = parse_object(r#"{"big": "0123456789"}"#, "f", 8).unwrap_err();
        assert!(
            e.contains("`big`") && e.contains("12 bytes") && e.contains("8 bytes"),
            "{e}"
        );
    }

    #[test]
    fn the_last_non_empty_line_is_json_or_a_string() {
        let line = |out: &str| parse_last_line(out.as_bytes(), 100).map(|r| r.unwrap().value);
        assert_eq!(line("a\n{\"k\": 1}\n\n  \n"), Some("{\"k\":1}".into()));
        assert_eq!(line("first\nlast words\r\n"), Some("\"last words\"".into()));
        assert_eq!(line("42"), Some("42".into()));
        assert_eq!(line("\n \n"), None);
    }

    #[test]
    fn the_file_s_return_value_wins_over_the_last_line() {
        let file = vec![XComPush {
            key: RETURN_VALUE.into(),
            value: "1".into(),
        }];
        let line = XComPush {
            key: RETURN_VALUE.into(),
            value: "2".into(),
        };
        assert_eq!(merge(file.clone(), Some(line.clone())), file);
        assert_eq!(merge(Vec::new(), Some(line.clone())), [line]);
    }
}
