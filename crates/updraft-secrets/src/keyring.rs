//! Fernet encryption at rest, with Airflow's key format.
//!
//! `core.fernet_key` holds one or more url-safe base64 keys of 32 bytes, separated by commas.
//! Every key decrypts; the first encrypts (so a new key is put first, `updraft
//! rotate-fernet-key` re-encrypts everything with it, then the old ones can go). Tokens are
//! those of Python's `cryptography.fernet`, so a database written by either reads in the
//! other with the same key.

use fernet::{Fernet, MultiFernet};

/// The configured Fernet keys.
#[derive(Clone)]
pub struct Keyring {
    keys: MultiFernet,
    count: usize,
    /// Where the keys were configured (`core.fernet_key`, `core.fernet_key_file = /path`), for
    /// error messages.
    setting: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    /// The configured value is not a list of Fernet keys.
    #[error(
        "{setting}: key {position} is not a Fernet key (32 bytes in url-safe base64, as `updraft config generate-fernet-key` prints)"
    )]
    BadKey { setting: String, position: usize },
    #[error("{setting} is empty: set it to one or more Fernet keys, separated by commas")]
    NoKey { setting: String },
    /// A stored value was written with a key that is not (or no longer) configured.
    #[error(
        "cannot decrypt {what}: it was encrypted with a Fernet key that is not in {setting}; set {setting} to the key the database was written with (old keys may follow the new one, separated by commas)"
    )]
    WrongKey { what: String, setting: String },
    #[error("cannot decrypt {what}: the decrypted value is not UTF-8")]
    NotText { what: String },
}

impl Keyring {
    /// Parses `value` (comma-separated keys, blanks around them ignored); `setting` names
    /// where it was configured.
    pub fn parse(value: &str, setting: &str) -> Result<Keyring, KeyringError> {
        let keys: Vec<&str> = value
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .collect();
        if keys.is_empty() {
            return Err(KeyringError::NoKey {
                setting: setting.to_owned(),
            });
        }
        let fernets = keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                Fernet::new(key).ok_or_else(|| KeyringError::BadKey {
                    setting: setting.to_owned(),
                    position: i + 1,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Keyring {
            count: fernets.len(),
            keys: MultiFernet::new(fernets),
            setting: setting.to_owned(),
        })
    }

    /// A new random key, in the format `core.fernet_key` takes.
    pub fn generate_key() -> String {
        Fernet::generate_key()
    }

    /// How many keys are configured.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Where the keys were configured.
    pub fn setting(&self) -> &str {
        &self.setting
    }

    /// A Fernet token of `plain`, made with the first key.
    pub fn encrypt(&self, plain: &str) -> String {
        self.keys.encrypt(plain.as_bytes())
    }

    /// The text in `token`; `what` names the value for the error (`connection my_db's
    /// password`).
    pub fn decrypt(&self, token: &str, what: &str) -> Result<String, KeyringError> {
        let bytes = self
            .keys
            .decrypt(token)
            .map_err(|_| KeyringError::WrongKey {
                what: what.to_owned(),
                setting: self.setting.clone(),
            })?;
        String::from_utf8(bytes).map_err(|_| KeyringError::NotText {
            what: what.to_owned(),
        })
    }

    /// `token` decrypted with any key and encrypted again with the first.
    pub fn rotate(&self, token: &str, what: &str) -> Result<String, KeyringError> {
        Ok(self.encrypt(&self.decrypt(token, what)?))
    }
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keyring({} keys from {})", self.count, self.setting)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_key_encrypts_and_every_key_decrypts() {
        let old = Keyring::generate_key();
        let new = Keyring::generate_key();
        let before = Keyring::parse(&old, "core.fernet_key").unwrap();
        let token = before.encrypt("s3cret");
        let both = Keyring::parse(&format!("{new}, {old}"), "core.fernet_key").unwrap();
        assert_eq!(both.decrypt(&token, "x").unwrap(), "s3cret");
        let rotated = both.rotate(&token, "x").unwrap();
        let only_new = Keyring::parse(&new, "core.fernet_key").unwrap();
        assert_eq!(only_new.decrypt(&rotated, "x").unwrap(), "s3cret");
        let err = only_new
            .decrypt(&token, "connection a's password")
            .unwrap_err();
        assert!(err.to_string().contains("core.fernet_key"), "{err}");
        assert!(err.to_string().contains("connection a's password"), "{err}");
    }

    #[test]
    fn a_bad_key_is_named_by_position() {
        let good = Keyring::generate_key();
        let err = Keyring::parse(&format!("{good},nope"), "core.fernet_key").unwrap_err();
        assert_eq!(
            err,
            KeyringError::BadKey {
                setting: "core.fernet_key".into(),
                position: 2
            }
        );
        assert!(matches!(
            Keyring::parse(" , ", "core.fernet_key"),
            Err(KeyringError::NoKey { .. })
        ));
    }
}
