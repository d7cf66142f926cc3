//! Masking: secret values replaced by `***` wherever updraft shows text.
//!
//! A [`Masker`] holds the values to hide. [`StreamMasker`] applies one to a stream (a task's
//! output) written in chunks: a value split across chunks is still replaced, because the
//! last bytes that could begin a secret are held back until the next chunk or the end.
//! Values shorter than [`MIN_MASKED_LEN`] are not masked (as Airflow's
//! `min_length_masked_secret`): hiding every `1` or `a` would make logs unreadable.
//! A multi-line value also has each of its lines masked (a private key printed line by line),
//! and its percent-encoded form (a password inside a URI), as Airflow's secrets masker does.
//! Matching is leftmost-longest over every value at once (Aho-Corasick), so when one value
//! contains another the longer one is hidden whole.
//! [`global`] is the process's own set, which updraft's own log lines go through.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

use aho_corasick::{AhoCorasick, MatchKind};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::MASK;

/// What Python's `urllib.parse.quote` leaves as it is: the encoded form masked is the one a
/// value takes in a URI Airflow writes.
const QUOTED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~')
    .remove(b'/');

/// The shortest value masked.
pub const MIN_MASKED_LEN: usize = 5;

/// Airflow's sensitive names (`DEFAULT_SENSITIVE_FIELDS`, plus `credential`): a variable, an
/// extra field or a conf key whose name contains one of these (case-insensitively) has its
/// value masked.
pub const SENSITIVE_NAMES: &[&str] = &[
    "access_token",
    "api_key",
    "apikey",
    "authorization",
    "passphrase",
    "passwd",
    "password",
    "private_key",
    "secret",
    "token",
    "keyfile_dict",
    "credential",
    "service_account",
];

/// Whether a key names a secret (`db_password`, `API_KEY`, `x-authorization`).
pub fn is_sensitive_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SENSITIVE_NAMES.iter().any(|s| lower.contains(s))
}

/// A set of values to hide.
#[derive(Clone, Default)]
pub struct Masker {
    secrets: BTreeSet<String>,
    /// Built on first use after the set changed.
    matcher: OnceLock<Option<Arc<Matcher>>>,
}

/// The values compiled for searching.
struct Matcher {
    automaton: AhoCorasick,
    longest: usize,
}

impl PartialEq for Masker {
    fn eq(&self, other: &Masker) -> bool {
        self.secrets == other.secrets
    }
}

impl Eq for Masker {}

impl Masker {
    pub fn new() -> Masker {
        Masker::default()
    }

    /// Adds a value (ignored when shorter than [`MIN_MASKED_LEN`] or only blanks), each of its
    /// lines when it has several, and its percent-encoded form.
    pub fn add(&mut self, secret: &str) {
        let mut forms = vec![secret];
        if secret.contains('\n') {
            forms.extend(secret.lines());
        }
        let encoded: Vec<String> = forms
            .iter()
            .map(|form| utf8_percent_encode(form, QUOTED).to_string())
            .collect();
        let added: Vec<String> = forms
            .into_iter()
            .map(str::to_owned)
            .chain(encoded)
            .filter(|form| form.len() >= MIN_MASKED_LEN && !form.trim().is_empty())
            .filter(|form| !self.secrets.contains(form))
            .collect();
        if !added.is_empty() {
            self.secrets.extend(added);
            self.matcher = OnceLock::new();
        }
    }

    /// Adds every value of `other`.
    pub fn extend(&mut self, other: &Masker) {
        let before = self.secrets.len();
        self.secrets.extend(other.secrets.iter().cloned());
        if self.secrets.len() != before {
            self.matcher = OnceLock::new();
        }
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// How many values (with their lines and encoded forms) are hidden.
    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    fn matcher(&self) -> Option<Arc<Matcher>> {
        self.matcher
            .get_or_init(|| {
                let longest = self.secrets.iter().map(String::len).max()?;
                let automaton = AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(&self.secrets)
                    .expect("a set of non-empty literal values always compiles");
                Some(Arc::new(Matcher { automaton, longest }))
            })
            .clone()
    }

    /// `text` with every value replaced by `***`.
    pub fn mask(&self, text: &str) -> String {
        match self.matcher() {
            None => text.to_owned(),
            Some(matcher) => {
                let mut out = String::with_capacity(text.len());
                matcher
                    .automaton
                    .replace_all_with(text, &mut out, |_, _, out| {
                        out.push_str(MASK);
                        true
                    });
                out
            }
        }
    }

    /// `bytes` (not necessarily UTF-8) with every value replaced by `***`.
    pub fn mask_bytes(&self, bytes: &[u8]) -> Vec<u8> {
        match self.matcher() {
            None => bytes.to_vec(),
            Some(matcher) => mask_bytes_with(&matcher, bytes),
        }
    }

    /// A JSON value with every string under a sensitive key, and every value of this set
    /// inside any string, replaced by `***` (for run conf, rendered fields, audit details).
    pub fn mask_json(&self, value: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match value {
            Value::String(text) => Value::String(self.mask(text)),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.mask_json(v)).collect()),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(key, v)| {
                        let masked = if is_sensitive_name(key) {
                            hide_all_strings(v)
                        } else {
                            self.mask_json(v)
                        };
                        (key.clone(), masked)
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// A streaming masker for output written in chunks.
    pub fn stream(&self) -> StreamMasker {
        StreamMasker {
            matcher: self.matcher(),
            pending: Vec::new(),
        }
    }
}

/// Every string inside `value` replaced by `***` (Airflow's `_redact_all`: what sits under a
/// sensitive key is hidden whole, however deep).
fn hide_all_strings(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(_) => Value::String(MASK.to_owned()),
        Value::Array(items) => Value::Array(items.iter().map(hide_all_strings).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), hide_all_strings(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn mask_bytes_with(matcher: &Matcher, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    matcher
        .automaton
        .replace_all_with_bytes(bytes, &mut out, |_, _, out| {
            out.extend_from_slice(MASK.as_bytes());
            true
        });
    out
}

/// Never prints the values.
impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Masker({} values)", self.secrets.len())
    }
}

/// Masks a stream of bytes written in chunks (see the module doc).
///
/// The output of every [`push`](StreamMasker::push) and the final
/// [`finish`](StreamMasker::finish), put together, is what [`Masker::mask_bytes`] gives for
/// the whole stream, however it was cut. At most the longest value's length minus one byte is
/// held back between chunks.
pub struct StreamMasker {
    matcher: Option<Arc<Matcher>>,
    /// Bytes received but not yet written: a value may begin in them.
    pending: Vec<u8>,
}

impl StreamMasker {
    /// Takes the next chunk; returns the bytes that are now safe to write.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let Some(matcher) = self.matcher.clone() else {
            return chunk.to_vec();
        };
        self.pending.extend_from_slice(chunk);
        // A value starting before `settled` lies wholly in `pending`, so what the search finds
        // there is what it would find in the whole stream; later starts wait for more bytes.
        let settled = self.pending.len().saturating_sub(matcher.longest - 1);
        let mut out = Vec::new();
        let mut written = 0;
        for found in matcher.automaton.find_iter(&self.pending[..]) {
            if found.start() >= settled {
                break;
            }
            out.extend_from_slice(&self.pending[written..found.start()]);
            out.extend_from_slice(MASK.as_bytes());
            written = found.end();
        }
        let kept_from = written.max(settled);
        out.extend_from_slice(&self.pending[written..kept_from]);
        self.pending.drain(..kept_from);
        out
    }

    /// The stream ended: the bytes held back, masked.
    pub fn finish(&mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.pending);
        match &self.matcher {
            None => rest,
            Some(matcher) => mask_bytes_with(matcher, &rest),
        }
    }
}

/// The process's own set: values every part of updraft learns are secret (connections and
/// variables it has read) are added here, and updraft's own log lines are masked with it.
pub fn global() -> &'static std::sync::RwLock<Masker> {
    static GLOBAL: std::sync::OnceLock<std::sync::RwLock<Masker>> = std::sync::OnceLock::new();
    GLOBAL.get_or_init(Default::default)
}

/// Adds `secret` to the [`global`] set.
pub fn register(secret: &str) {
    if let Ok(mut global) = global().write() {
        global.add(secret);
    }
}

/// `text` masked with the [`global`] set.
pub fn mask_global(text: &str) -> String {
    match global().read() {
        Ok(masker) => masker.mask(text),
        Err(poisoned) => poisoned.into_inner().mask(text),
    }
}
