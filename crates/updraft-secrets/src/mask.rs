//! Masking: secret values replaced by `***` wherever updraft shows text.
//!
//! A [`Masker`] holds the values to hide. [`StreamMasker`] applies one to a stream (a task's
//! output) written in chunks: a value split across chunks is still replaced, because the
//! last bytes that could begin a secret are held back until the next chunk or the end.
//! Values shorter than [`MIN_MASKED_LEN`] are not masked (as Airflow's
//! `min_length_masked_secret`): hiding every `1` or `a` would make logs unreadable.
//! [`global`] is the process's own set, which updraft's own log lines go through.

use std::collections::BTreeSet;

/// The shortest value masked.
pub const MIN_MASKED_LEN: usize = 5;

/// Airflow's sensitive names (`DEFAULT_SENSITIVE_FIELDS`): a variable, an extra field or a
/// conf key whose name contains one of these (case-insensitively) has its value masked.
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
    "service_account",
];

/// Whether a key names a secret (`db_password`, `API_KEY`, `x-authorization`).
pub fn is_sensitive_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SENSITIVE_NAMES.iter().any(|s| lower.contains(s))
}

/// A set of values to hide.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Masker {
    secrets: BTreeSet<String>,
}

impl Masker {
    pub fn new() -> Masker {
        Masker::default()
    }

    /// Adds a value (ignored when shorter than [`MIN_MASKED_LEN`]).
    pub fn add(&mut self, secret: &str) {
        let _ = secret;
        todo!("masker add")
    }

    /// Adds every value of `other`.
    pub fn extend(&mut self, other: &Masker) {
        self.secrets.extend(other.secrets.iter().cloned());
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// `text` with every value replaced by `***`.
    pub fn mask(&self, text: &str) -> String {
        let _ = text;
        todo!("masker mask")
    }

    /// A JSON value with every string under a sensitive key, and every value of this set
    /// inside any string, replaced by `***` (for run conf, rendered fields, audit details).
    pub fn mask_json(&self, value: &serde_json::Value) -> serde_json::Value {
        let _ = value;
        todo!("masker mask_json")
    }

    /// A streaming masker for output written in chunks.
    pub fn stream(&self) -> StreamMasker {
        todo!("stream masker")
    }
}

/// Never prints the values.
impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Masker({} values)", self.secrets.len())
    }
}

/// Masks a stream of bytes written in chunks (see the module doc).
pub struct StreamMasker {
    _private: (),
}

impl StreamMasker {
    /// Takes the next chunk; returns the bytes that are now safe to write.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let _ = chunk;
        todo!("stream push")
    }

    /// The stream ended: the bytes held back, masked.
    pub fn finish(&mut self) -> Vec<u8> {
        todo!("stream finish")
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
