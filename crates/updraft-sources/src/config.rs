//! `[[sources]]` entries as written in `updraft.toml` ([`SourceConfig`]) and checked
//! ([`SourceSpec`]): every mistake names the entry and the field.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::SourceError;

/// One `[[sources]]` entry, as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub name: String,
    /// A URL git takes: `https://`, `http://`, `ssh://`, `user@host:path`, `file://`.
    pub git: Option<String>,
    /// An object-store prefix: `s3://`, `gs://`, `az://` (or `wasb://`), `file://`.
    pub objects: Option<String>,
    /// Git: the branch, tag or full commit sha to follow (default `main`).
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    /// The folder inside the tree holding the DAG files (default: the tree's root).
    pub subdir: Option<String>,
    /// The folder inside the tree holding pod templates (default `templates`).
    pub templates: Option<String>,
    /// The tenant the whole source belongs to; unset: folder names give tenants.
    pub tenant: Option<String>,
    /// How often to sync when nothing asks sooner (default 60s).
    pub period: Option<String>,
    /// Git: fetch depth (default 1, shallow; 0 for the whole history).
    pub depth: Option<u32>,
    /// Git over HTTPS: the user name sent with the token (default `git`).
    pub username: Option<String>,
    /// Git over HTTPS: a file holding the token (or password), read again at every sync.
    pub token_file: Option<PathBuf>,
    /// Git over HTTPS: an environment variable holding the token.
    pub token_env: Option<String>,
    /// Git over SSH: the private key.
    pub ssh_key_file: Option<PathBuf>,
    /// Git over SSH: the known_hosts file the server's key must be in.
    pub known_hosts_file: Option<PathBuf>,
    /// Git over SSH: check the server's host key (default true).
    pub ssh_host_key_check: Option<bool>,
    /// A link to a revision's page, `{revision}` replaced by it (e.g.
    /// `https://github.com/org/dags/commit/{revision}`).
    pub revision_url: Option<String>,
    /// Failed syncs in a row before the source is reported failing (default 0: the first).
    pub max_failures: Option<u32>,
    /// A file holding the secret a git host's webhook signs with (GitHub's
    /// `X-Hub-Signature-256`) or sends (GitLab's `X-Gitlab-Token`) to `POST
    /// /api/v2/sources/{name}/sync`; read when the server starts.
    pub webhook_secret_file: Option<PathBuf>,
    /// The same secret from an environment variable.
    pub webhook_secret_env: Option<String>,
}

/// A checked source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSpec {
    pub name: String,
    pub kind: SourceKind,
    pub subdir: Option<String>,
    pub templates: String,
    pub tenant: Option<String>,
    pub period: Duration,
    pub revision_url: Option<String>,
    pub max_failures: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    Git(GitSpec),
    Objects(ObjectsSpec),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitSpec {
    pub url: String,
    pub reference: String,
    /// 0: the whole history.
    pub depth: u32,
    pub auth: GitAuth,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitAuth {
    None,
    Token {
        username: String,
        token: TokenSource,
    },
    Ssh {
        key_file: PathBuf,
        known_hosts_file: Option<PathBuf>,
        check_host_key: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    File(PathBuf),
    Env(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectsSpec {
    pub url: String,
}

impl SourceConfig {
    /// Checks the entry: exactly one of `git`/`objects`, a usable name, fields that belong to
    /// its kind, a period that parses.
    pub fn check(&self) -> Result<SourceSpec, SourceError> {
        let name = self.name.trim();
        if !is_folder_name(name) {
            return Err(config_error(
                if name.is_empty() { "?" } else { name },
                "name",
                "must be 1 to 64 letters, digits, '-', '_' or '.', not starting with '.'",
            ));
        }
        let kind = match (&self.git, &self.objects) {
            (Some(url), None) => SourceKind::Git(self.check_git(name, url)?),
            (None, Some(url)) => SourceKind::Objects(self.check_objects(name, url)?),
            (Some(_), Some(_)) => {
                return Err(config_error(
                    name,
                    "git",
                    "give either `git` or `objects`, not both",
                ));
            }
            (None, None) => {
                return Err(config_error(
                    name,
                    "git",
                    "give `git` (a repository URL) or `objects` (an s3://, gs:// or az:// prefix)",
                ));
            }
        };
        if let Some(tenant) = &self.tenant
            && !is_folder_name(tenant)
        {
            return Err(config_error(
                name,
                "tenant",
                "must be a folder name: letters, digits, '-', '_' or '.', not starting with '.'",
            ));
        }
        let subdir = match &self.subdir {
            Some(subdir) => Some(check_relative(name, "subdir", subdir)?),
            None => None,
        };
        let templates = match &self.templates {
            Some(templates) => check_relative(name, "templates", templates)?,
            None => "templates".to_string(),
        };
        if let Some(url) = &self.revision_url {
            check_revision_url(name, url)?;
        }
        if self.webhook_secret_file.is_some() && self.webhook_secret_env.is_some() {
            return Err(config_error(
                name,
                "webhook_secret_file",
                "give either webhook_secret_file or webhook_secret_env, not both",
            ));
        }
        Ok(SourceSpec {
            name: name.to_string(),
            kind,
            subdir,
            templates,
            tenant: self.tenant.clone(),
            period: self.check_period(name)?,
            revision_url: self.revision_url.clone(),
            max_failures: self.max_failures.unwrap_or(0),
        })
    }

    /// The secret of this source's webhook, when one is configured: the file's content or
    /// the variable's value, a trailing newline dropped. An empty or unreadable secret is an
    /// error naming the field (never the value).
    pub fn webhook_secret(&self) -> Result<Option<String>, SourceError> {
        let name = self.name.trim();
        let (field, secret) = match (&self.webhook_secret_file, &self.webhook_secret_env) {
            (Some(file), _) => (
                "webhook_secret_file",
                std::fs::read_to_string(file).map_err(|e| {
                    config_error(
                        name,
                        "webhook_secret_file",
                        &format!("{}: {e}", file.display()),
                    )
                })?,
            ),
            (None, Some(var)) => (
                "webhook_secret_env",
                std::env::var(var).map_err(|_| {
                    config_error(name, "webhook_secret_env", &format!("{var} is not set"))
                })?,
            ),
            (None, None) => return Ok(None),
        };
        let secret = secret.trim_end_matches(['\n', '\r']).to_string();
        if secret.is_empty() {
            return Err(config_error(name, field, "the secret is empty"));
        }
        Ok(Some(secret))
    }

    fn check_period(&self, name: &str) -> Result<Duration, SourceError> {
        let Some(period) = &self.period else {
            return Ok(DEFAULT_PERIOD);
        };
        let parsed = humantime::parse_duration(period.trim()).map_err(|e| {
            config_error(
                name,
                "period",
                &format!("{period:?}: {e} (write e.g. \"30s\" or \"5m\")"),
            )
        })?;
        if parsed.is_zero() {
            return Err(config_error(name, "period", "must be longer than zero"));
        }
        Ok(parsed)
    }

    fn check_objects(&self, name: &str, url: &str) -> Result<ObjectsSpec, SourceError> {
        let git_only: [(&str, bool); 8] = [
            ("ref", self.reference.is_some()),
            ("depth", self.depth.is_some()),
            ("username", self.username.is_some()),
            ("token_file", self.token_file.is_some()),
            ("token_env", self.token_env.is_some()),
            ("ssh_key_file", self.ssh_key_file.is_some()),
            ("known_hosts_file", self.known_hosts_file.is_some()),
            ("ssh_host_key_check", self.ssh_host_key_check.is_some()),
        ];
        if let Some((field, _)) = git_only.iter().find(|(_, set)| *set) {
            return Err(config_error(name, field, "applies to git sources only"));
        }
        let scheme = url.split_once("://").map(|(scheme, _)| scheme);
        if !matches!(scheme, Some("s3" | "gs" | "az" | "wasb" | "wasbs" | "file")) {
            return Err(config_error(
                name,
                "objects",
                "must start with s3://, gs://, az://, wasb://, wasbs:// or file://",
            ));
        }
        Ok(ObjectsSpec {
            url: url.to_string(),
        })
    }

    fn check_git(&self, name: &str, url: &str) -> Result<GitSpec, SourceError> {
        let transport = git_transport(url).ok_or_else(|| {
            config_error(
                name,
                "git",
                "must be an https://, http://, ssh://, git://, file:// or user@host:path URL",
            )
        })?;
        if url_has_password(url) {
            return Err(config_error(
                name,
                "git",
                "holds a password: put the token in token_file or token_env",
            ));
        }
        let reference = self.reference.clone().unwrap_or_else(|| "main".to_string());
        if !is_valid_reference(&reference) {
            return Err(config_error(
                name,
                "ref",
                "must be a branch, a tag, a full ref name (refs/...) or a full commit sha",
            ));
        }
        Ok(GitSpec {
            url: url.to_string(),
            reference,
            depth: self.depth.unwrap_or(1),
            auth: self.check_git_auth(name, transport)?,
        })
    }

    fn check_git_auth(&self, name: &str, transport: Transport) -> Result<GitAuth, SourceError> {
        let token = match (&self.token_file, &self.token_env) {
            (Some(_), Some(_)) => {
                return Err(config_error(
                    name,
                    "token_file",
                    "give either token_file or token_env, not both",
                ));
            }
            (Some(file), None) => Some(TokenSource::File(file.clone())),
            (None, Some(var)) => {
                if !is_env_name(var) {
                    return Err(config_error(
                        name,
                        "token_env",
                        "must be an environment variable's name",
                    ));
                }
                Some(TokenSource::Env(var.clone()))
            }
            (None, None) => None,
        };
        let ssh_fields = [
            ("ssh_key_file", self.ssh_key_file.is_some()),
            ("known_hosts_file", self.known_hosts_file.is_some()),
            ("ssh_host_key_check", self.ssh_host_key_check.is_some()),
        ];
        match transport {
            Transport::Ssh => {
                if token.is_some() || self.username.is_some() {
                    let field = if self.username.is_some() {
                        "username"
                    } else if self.token_file.is_some() {
                        "token_file"
                    } else {
                        "token_env"
                    };
                    return Err(config_error(
                        name,
                        field,
                        "applies to https:// URLs only (an SSH URL names its user)",
                    ));
                }
                let key_file = self.ssh_key_file.clone().ok_or_else(|| {
                    config_error(name, "ssh_key_file", "an SSH URL needs a private key file")
                })?;
                Ok(GitAuth::Ssh {
                    key_file,
                    known_hosts_file: self.known_hosts_file.clone(),
                    check_host_key: self.ssh_host_key_check.unwrap_or(true),
                })
            }
            Transport::Http | Transport::Other => {
                if let Some((field, _)) = ssh_fields.iter().find(|(_, set)| *set) {
                    return Err(config_error(name, field, "applies to SSH URLs only"));
                }
                match token {
                    Some(token) if transport == Transport::Http => Ok(GitAuth::Token {
                        username: self.username.clone().unwrap_or_else(|| "git".to_string()),
                        token,
                    }),
                    Some(_) => {
                        let field = if self.token_file.is_some() {
                            "token_file"
                        } else {
                            "token_env"
                        };
                        Err(config_error(name, field, "applies to https:// URLs only"))
                    }
                    None if self.username.is_some() => Err(config_error(
                        name,
                        "username",
                        "needs token_file or token_env",
                    )),
                    None => Ok(GitAuth::None),
                }
            }
        }
    }
}

const DEFAULT_PERIOD: Duration = Duration::from_secs(60);

fn config_error(name: &str, field: &str, reason: &str) -> SourceError {
    SourceError::Config {
        name: name.to_string(),
        field: field.to_string(),
        reason: reason.to_string(),
    }
}

/// How a git URL is reached, as far as credentials go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Http,
    Ssh,
    /// `file://` and `git://`: no credentials.
    Other,
}

/// The transport of a URL git takes, `None` when git would not take it.
pub(crate) fn git_transport(url: &str) -> Option<Transport> {
    if url.trim() != url || url.is_empty() || url.chars().any(char::is_control) {
        return None;
    }
    if let Some((scheme, rest)) = url.split_once("://") {
        if rest.is_empty() {
            return None;
        }
        return match scheme {
            "https" | "http" => Some(Transport::Http),
            "ssh" | "git+ssh" | "ssh+git" => Some(Transport::Ssh),
            "git" | "file" => Some(Transport::Other),
            _ => None,
        };
    }
    // scp-like `user@host:path`: a colon before any slash.
    let (host, path) = url.split_once(':')?;
    (!host.is_empty() && !host.contains('/') && !path.is_empty()).then_some(Transport::Ssh)
}

/// Whether `url` carries `user:password@` (a token in a URL would be shown wherever it is).
fn url_has_password(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// A branch or tag name, a full ref name, or a full commit sha.
fn is_valid_reference(reference: &str) -> bool {
    if is_full_sha(reference) {
        return true;
    }
    if reference.starts_with('-') {
        return false;
    }
    let full = if reference.starts_with("refs/") {
        reference.to_string()
    } else {
        format!("refs/heads/{reference}")
    };
    git2::Reference::is_valid_name(&full)
}

/// 40 hexadecimal digits (SHA-1) or 64 (SHA-256).
pub(crate) fn is_full_sha(reference: &str) -> bool {
    matches!(reference.len(), 40 | 64) && reference.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A name usable as one folder: letters, digits, `-`, `_`, `.`, not starting with `.`.
fn is_folder_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A relative folder inside the tree: no absolute path, no `..`, no empty parts; returned
/// without `./` parts or a trailing `/`.
fn check_relative(name: &str, field: &str, path: &str) -> Result<String, SourceError> {
    if path.starts_with('/') {
        return Err(config_error(
            name,
            field,
            "must be relative to the source's root",
        ));
    }
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(config_error(name, field, "must not contain '..'"));
    }
    if parts.iter().any(|p| p.chars().any(char::is_control)) {
        return Err(config_error(
            name,
            field,
            "must not contain control characters",
        ));
    }
    if parts.is_empty() {
        return Err(config_error(
            name,
            field,
            "must name a folder (leave it out for the root)",
        ));
    }
    Ok(parts.join("/"))
}

fn check_revision_url(name: &str, url: &str) -> Result<(), SourceError> {
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(config_error(
            name,
            "revision_url",
            "must be an http(s):// URL",
        ));
    }
    if !url.contains("{revision}") {
        return Err(config_error(
            name,
            "revision_url",
            "must contain {revision}, replaced by the commit sha",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(url: &str) -> SourceConfig {
        SourceConfig {
            name: "platform".into(),
            git: Some(url.into()),
            ..SourceConfig::default()
        }
    }

    fn field_of(error: SourceError) -> String {
        match error {
            SourceError::Config { name, field, .. } => {
                assert_eq!(name, "platform");
                field
            }
            other => panic!("not a configuration error: {other}"),
        }
    }

    #[test]
    fn defaults_of_a_git_source() {
        let spec = git("https://git.example.com/platform/dags.git")
            .check()
            .unwrap();
        assert_eq!(spec.period, Duration::from_secs(60));
        assert_eq!(spec.templates, "templates");
        assert_eq!(spec.subdir, None);
        assert_eq!(spec.max_failures, 0);
        let SourceKind::Git(git) = spec.kind else {
            panic!("not git")
        };
        assert_eq!(git.reference, "main");
        assert_eq!(git.depth, 1);
        assert_eq!(git.auth, GitAuth::None);
    }

    #[test]
    fn exactly_one_of_git_and_objects() {
        let mut both = git("https://h/r.git");
        both.objects = Some("s3://b/p".into());
        assert_eq!(field_of(both.check().unwrap_err()), "git");
        let neither = SourceConfig {
            name: "platform".into(),
            ..SourceConfig::default()
        };
        assert_eq!(field_of(neither.check().unwrap_err()), "git");
    }

    #[test]
    fn a_webhook_secret_comes_from_one_place_and_is_never_empty() {
        let mut config = git("https://git.example.com/dags.git");
        assert_eq!(config.webhook_secret().unwrap(), None);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "s3cret-value\n").unwrap();
        config.webhook_secret_file = Some(file.clone());
        assert_eq!(
            config.webhook_secret().unwrap().as_deref(),
            Some("s3cret-value")
        );
        config.webhook_secret_env = Some("UPDRAFT_TEST_WEBHOOK_SECRET".into());
        assert_eq!(field_of(config.check().unwrap_err()), "webhook_secret_file");
        config.webhook_secret_env = None;
        std::fs::write(&file, "\n").unwrap();
        let error = config.webhook_secret().unwrap_err();
        assert!(error.to_string().contains("empty"), "{error}");
        std::fs::remove_file(&file).unwrap();
        assert_eq!(
            field_of(config.webhook_secret().unwrap_err()),
            "webhook_secret_file"
        );
    }

    #[test]
    fn names_must_be_folder_names() {
        for bad in ["", "../x", "a/b", ".hidden", "a b"] {
            let mut config = git("https://h/r.git");
            config.name = bad.into();
            let error = config.check().unwrap_err();
            assert!(
                matches!(&error, SourceError::Config { field, .. } if field == "name"),
                "{bad:?}: {error}"
            );
        }
        let mut tenant = git("https://h/r.git");
        tenant.tenant = Some("../team".into());
        assert_eq!(field_of(tenant.check().unwrap_err()), "tenant");
    }

    #[test]
    fn git_fields_are_refused_on_object_sources() {
        let mut config = SourceConfig {
            name: "platform".into(),
            objects: Some("s3://bucket/dags".into()),
            ..SourceConfig::default()
        };
        assert!(config.check().is_ok());
        config.reference = Some("main".into());
        assert_eq!(field_of(config.check().unwrap_err()), "ref");
        config.reference = None;
        config.depth = Some(0);
        assert_eq!(field_of(config.check().unwrap_err()), "depth");
        config.depth = None;
        config.objects = Some("ftp://x/y".into());
        assert_eq!(field_of(config.check().unwrap_err()), "objects");
    }

    #[test]
    fn period_parses_with_humantime() {
        let mut config = git("file:///srv/dags.git");
        config.period = Some("30s".into());
        assert_eq!(config.check().unwrap().period, Duration::from_secs(30));
        config.period = Some("soon".into());
        assert_eq!(field_of(config.check().unwrap_err()), "period");
        config.period = Some("0s".into());
        assert_eq!(field_of(config.check().unwrap_err()), "period");
    }

    #[test]
    fn token_from_a_file_or_the_environment_not_both() {
        let mut config = git("https://h/r.git");
        config.token_file = Some("/run/secrets/token".into());
        config.username = Some("ci".into());
        let SourceKind::Git(spec) = config.check().unwrap().kind else {
            panic!()
        };
        assert_eq!(
            spec.auth,
            GitAuth::Token {
                username: "ci".into(),
                token: TokenSource::File("/run/secrets/token".into())
            }
        );
        config.token_env = Some("GIT_TOKEN".into());
        assert_eq!(field_of(config.check().unwrap_err()), "token_file");
        config.token_file = None;
        config.token_env = Some("NOT A NAME".into());
        assert_eq!(field_of(config.check().unwrap_err()), "token_env");
        let mut over_ssh = git("ssh://git@h/r.git");
        over_ssh.token_env = Some("GIT_TOKEN".into());
        over_ssh.ssh_key_file = Some("/k".into());
        assert_eq!(field_of(over_ssh.check().unwrap_err()), "token_env");
        let mut over_file = git("file:///srv/r.git");
        over_file.token_env = Some("GIT_TOKEN".into());
        assert_eq!(field_of(over_file.check().unwrap_err()), "token_env");
    }

    #[test]
    fn ssh_key_only_for_ssh_urls_and_host_keys_checked_by_default() {
        let mut https = git("https://h/r.git");
        https.ssh_key_file = Some("/k".into());
        assert_eq!(field_of(https.check().unwrap_err()), "ssh_key_file");
        let mut https_check = git("https://h/r.git");
        https_check.ssh_host_key_check = Some(false);
        assert_eq!(
            field_of(https_check.check().unwrap_err()),
            "ssh_host_key_check"
        );
        for url in ["ssh://git@h:2222/r.git", "git@h:org/r.git"] {
            let mut ssh = git(url);
            assert_eq!(field_of(ssh.check().unwrap_err()), "ssh_key_file");
            ssh.ssh_key_file = Some("/k".into());
            let SourceKind::Git(spec) = ssh.check().unwrap().kind else {
                panic!()
            };
            assert_eq!(
                spec.auth,
                GitAuth::Ssh {
                    key_file: "/k".into(),
                    known_hosts_file: None,
                    check_host_key: true
                }
            );
        }
    }

    #[test]
    fn urls_git_would_not_take_or_holding_a_password_are_refused() {
        for bad in [
            "",
            "ftp://h/r",
            "https://",
            " https://h/r",
            "https://u:secret@h/r.git",
        ] {
            let error = git(bad).check().unwrap_err();
            assert_eq!(field_of(error), "git", "{bad:?}");
        }
        let message = git("https://u:secret@h/r.git")
            .check()
            .unwrap_err()
            .to_string();
        assert!(!message.contains("secret"), "{message}");
        assert!(git("https://u@h/r.git").check().is_ok());
    }

    #[test]
    fn references_branches_tags_and_shas() {
        for good in [
            "main",
            "release/1.2",
            "v1.0",
            "refs/tags/v1",
            &"a".repeat(40),
        ] {
            let mut config = git("file:///r.git");
            config.reference = Some(good.into());
            assert!(config.check().is_ok(), "{good}");
        }
        for bad in ["", "a..b", "-x", "with space", "main.lock"] {
            let mut config = git("file:///r.git");
            config.reference = Some(bad.into());
            assert_eq!(field_of(config.check().unwrap_err()), "ref", "{bad:?}");
        }
    }

    #[test]
    fn subdir_and_templates_stay_inside_the_tree() {
        let mut config = git("file:///r.git");
        config.subdir = Some("./dags/".into());
        config.templates = Some("deploy/templates".into());
        let spec = config.check().unwrap();
        assert_eq!(spec.subdir.as_deref(), Some("dags"));
        assert_eq!(spec.templates, "deploy/templates");
        for (field, bad) in [
            ("subdir", "/etc"),
            ("subdir", "dags/../.."),
            ("templates", "../t"),
            ("templates", "."),
        ] {
            let mut config = git("file:///r.git");
            if field == "subdir" {
                config.subdir = Some(bad.into());
            } else {
                config.templates = Some(bad.into());
            }
            assert_eq!(field_of(config.check().unwrap_err()), field, "{bad:?}");
        }
    }

    #[test]
    fn revision_url_needs_the_placeholder() {
        let mut config = git("file:///r.git");
        config.revision_url = Some("https://github.com/org/dags/commit/{revision}".into());
        assert!(config.check().is_ok());
        config.revision_url = Some("https://github.com/org/dags".into());
        assert_eq!(field_of(config.check().unwrap_err()), "revision_url");
    }
}
