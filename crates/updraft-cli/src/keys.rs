//! The Fernet keys connections and variables are encrypted with: `core.fernet_key` (or
//! `AIRFLOW__CORE__FERNET_KEY`), `core.fernet_key_file`, or the key `standalone` generated
//! into `$UPDRAFT_HOME/fernet_key` when neither is set.
//!
//! Keys in a file are read again whenever they are needed, so a scheduler follows a rotation
//! of a mounted Kubernetes Secret without a restart.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use updraft_secrets::Keyring;

use crate::config::Settings;

/// Where `standalone` keeps the key it generated, in `UPDRAFT_HOME`.
pub const GENERATED_KEY_FILE: &str = "fernet_key";

/// The setting error messages name.
pub const KEY_SETTING: &str = "core.fernet_key";

/// Where the keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// `core.fernet_key`, fixed for the life of the process.
    Value(Keyring),
    /// A file read whenever the keys are needed; `setting` names it for messages.
    File { path: PathBuf, setting: String },
}

impl KeySource {
    /// The keys as they are now.
    pub fn keyring(&self) -> Result<Keyring> {
        match self {
            KeySource::Value(keyring) => Ok(keyring.clone()),
            KeySource::File { path, setting } => {
                let text = read_key_file(path, setting)?;
                Ok(Keyring::parse(&text, setting)?)
            }
        }
    }
}

fn read_key_file(path: &Path, setting: &str) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{setting}: cannot read the key file {}", path.display()))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

impl Settings {
    /// Where the Fernet keys come from; `None` when none is configured nor generated.
    pub fn key_source(&self) -> Result<Option<KeySource>> {
        let core = &self.config.core;
        let value = core.fernet_key.trim();
        let file = core.fernet_key_file.trim();
        if !value.is_empty() && !file.is_empty() {
            bail!("set core.fernet_key or core.fernet_key_file, not both");
        }
        if !value.is_empty() {
            return Ok(Some(KeySource::Value(Keyring::parse(value, KEY_SETTING)?)));
        }
        if !file.is_empty() {
            let path = self.home.join(file);
            let source = KeySource::File {
                setting: format!("core.fernet_key_file ({})", path.display()),
                path,
            };
            source.keyring()?;
            return Ok(Some(source));
        }
        let generated = self.generated_key_file();
        if generated.exists() {
            let source = KeySource::File {
                setting: format!("{KEY_SETTING} (generated into {})", generated.display()),
                path: generated,
            };
            source.keyring()?;
            return Ok(Some(source));
        }
        Ok(None)
    }

    /// The Fernet keys, or an error saying how to configure them.
    pub fn keyring(&self) -> Result<Keyring> {
        match self.key_source()? {
            Some(source) => source.keyring(),
            None => bail!(
                "no Fernet key is configured: set {KEY_SETTING} (UPDRAFT__CORE__FERNET_KEY or \
                 AIRFLOW__CORE__FERNET_KEY) or core.fernet_key_file; `updraft config \
                 generate-fernet-key` prints a new key"
            ),
        }
    }

    pub fn generated_key_file(&self) -> PathBuf {
        self.home.join(GENERATED_KEY_FILE)
    }
}

/// `standalone`'s first start: with no key configured, generate one into
/// `$UPDRAFT_HOME/fernet_key` (readable by its owner only). Returns the file when it was
/// written now.
pub fn ensure_generated_key(settings: &Settings) -> Result<Option<PathBuf>> {
    if settings.key_source()?.is_some() {
        return Ok(None);
    }
    let path = settings.generated_key_file();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut file) => {
            let key = Keyring::generate_key();
            file.write_all(format!("{key}\n").as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("writing the Fernet key to {}", path.display()))?;
            Ok(Some(path))
        }
        // Another process started at the same moment and wrote it first.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
        Err(e) => Err(e).with_context(|| format!("writing the Fernet key to {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(home: &Path, toml: &str) -> Settings {
        Settings {
            home: home.to_path_buf(),
            config: toml::from_str(toml).unwrap(),
        }
    }

    #[test]
    fn a_key_file_is_read_again_after_it_changes() {
        let home = tempfile::tempdir().unwrap();
        let (old, new) = (Keyring::generate_key(), Keyring::generate_key());
        std::fs::write(home.path().join("keys"), format!("{old}\n")).unwrap();
        let s = settings(home.path(), "[core]\nfernet_key_file = \"keys\"\n");
        let source = s.key_source().unwrap().unwrap();
        let token = source.keyring().unwrap().encrypt("pw");
        std::fs::write(home.path().join("keys"), format!("{new},{old}\n")).unwrap();
        let keyring = source.keyring().unwrap();
        assert_eq!(keyring.len(), 2);
        assert_eq!(keyring.decrypt(&token, "x").unwrap(), "pw");
    }

    #[test]
    fn an_unreadable_key_file_names_the_setting_and_path() {
        let home = tempfile::tempdir().unwrap();
        let s = settings(home.path(), "[core]\nfernet_key_file = \"missing\"\n");
        let err = format!("{:#}", s.key_source().unwrap_err());
        assert!(err.contains("core.fernet_key_file"), "{err}");
        assert!(err.contains("missing"), "{err}");
    }

    #[test]
    fn no_key_is_an_error_naming_the_setting_and_a_generated_one_is_kept() {
        let home = tempfile::tempdir().unwrap();
        let s = settings(home.path(), "");
        let err = format!("{:#}", s.keyring().unwrap_err());
        assert!(err.contains("core.fernet_key"), "{err}");
        let written = ensure_generated_key(&s).unwrap().unwrap();
        assert!(ensure_generated_key(&s).unwrap().is_none());
        let text = std::fs::read_to_string(&written).unwrap();
        let keyring = s.keyring().unwrap();
        let token = keyring.encrypt("x");
        assert_eq!(
            Keyring::parse(text.trim(), "t")
                .unwrap()
                .decrypt(&token, "x")
                .unwrap(),
            "x"
        );
    }
}
