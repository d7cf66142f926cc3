//! Object-store locations: a URL (`s3://bucket/prefix`, `gs://…`, `az://container/prefix`,
//! Airflow's `wasb://container@account…` spelling, `file:///path`) opened as an
//! [`object_store::ObjectStore`] and a key prefix inside it.
//!
//! Credentials come from the environment the way each cloud's own SDK finds them (S3: the
//! `AWS_*` variables, web identity tokens as IRSA sets them, instance metadata; GCS:
//! `GOOGLE_APPLICATION_CREDENTIALS`, workload identity through the metadata server; Azure:
//! `AZURE_*` variables, workload identity's federated token file), so a pod needs only its
//! service account. Both DAG sources and remote task logs open their locations here.

use std::sync::Arc;
use std::time::Duration;

pub use object_store;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{BackoffConfig, ObjectStore, RetryConfig};
use url::Url;

/// An opened location: the store and the prefix every key lives under.
#[derive(Debug, Clone)]
pub struct ObjectLocation {
    pub store: Arc<dyn ObjectStore>,
    pub prefix: Path,
    /// The URL it was opened from (never holding credentials).
    pub url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LocationError {
    #[error("{url}: {reason}")]
    Invalid { url: String, reason: String },
    #[error("{url}: {source}")]
    Open {
        url: String,
        #[source]
        source: object_store::Error,
    },
}

/// The URL schemes [`ObjectLocation::open`] takes, as named in its errors.
const SCHEMES: &str = "s3://, gs://, az://, wasb://, wasbs://, file://";

/// Where an Azure URL names no account, the setting that gives it.
const AZURE_ACCOUNT_HINT: &str = "no storage account: set AZURE_STORAGE_ACCOUNT_NAME or write \
     wasb://container@account.blob.core.windows.net/prefix";

impl ObjectLocation {
    /// Opens `url`, credentials from the environment.
    pub fn open(url: &str) -> Result<Self, LocationError> {
        Self::open_with_env(url, std::iter::empty::<(String, String)>())
    }

    /// Opens `url` with `env` read as if it were in the environment, over the process's own
    /// (`AWS_*`, `GOOGLE_*`, `AZURE_*` as the clouds name them): for a process reaching
    /// several stores, and for tests.
    pub fn open_with_env<I, K, V>(url: &str, env: I) -> Result<Self, LocationError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        install_crypto_provider();
        let env: Vec<(String, String)> = env
            .into_iter()
            .map(|(k, v)| (k.as_ref().to_string(), v.as_ref().to_string()))
            .collect();
        let parsed = Url::parse(url).map_err(|e| LocationError::Invalid {
            url: shown(url),
            reason: format!("not a URL ({e}); expected one of {SCHEMES}"),
        })?;
        let url = display_url(&parsed);
        let invalid = |reason: String| LocationError::Invalid {
            url: url.clone(),
            reason,
        };
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(invalid(
                "a query or fragment is not read: settings and credentials come from the \
                 environment"
                    .into(),
            ));
        }
        let opened = match parsed.scheme() {
            "s3" => open_s3(&parsed, &env),
            "gs" => open_gcs(&parsed, &env),
            "az" | "wasb" | "wasbs" => open_azure(&parsed, &env),
            "file" => open_file(&parsed),
            other => Err(Failure::Invalid(format!(
                "unknown scheme {other}://; expected one of {SCHEMES}"
            ))),
        };
        let (store, prefix) = opened.map_err(|failure| match failure {
            Failure::Invalid(reason) => invalid(reason),
            Failure::Open(source) => LocationError::Open {
                url: url.clone(),
                source,
            },
        })?;
        Ok(ObjectLocation { store, prefix, url })
    }

    /// The key of `rel` (a `/`-separated relative path) under the prefix.
    pub fn key(&self, rel: &str) -> Path {
        let mut key = self.prefix.clone();
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            key = key.clone().join(part);
        }
        key
    }
}

enum Failure {
    Invalid(String),
    Open(object_store::Error),
}

type Opened = Result<(Arc<dyn ObjectStore>, Path), Failure>;

/// Requests are retried for a short while only: a caller (a sync, a log upload) fails and
/// tries again on its own schedule rather than hanging for minutes on a store that is gone.
fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: 3,
        retry_timeout: Duration::from_secs(20),
    }
}

/// A bucket store of `$builder` (S3's or GCS's): the process's environment, then `env`'s
/// variables starting with `$vars` that name one of `$key`'s settings, the bucket, the retry
/// policy. (The clouds' builders share no trait, so a macro rather than a generic function.)
macro_rules! open_bucket {
    ($url:expr, $env:expr, $builder:ty, $key:ty, $vars:literal) => {{
        let bucket = bucket($url, "bucket")?;
        let mut builder = <$builder>::from_env();
        for (key, value) in with_prefix($env, $vars) {
            if let Ok(key) = key.parse::<$key>() {
                builder = builder.with_config(key, value);
            }
        }
        let store = builder
            .with_bucket_name(bucket)
            .with_retry(retry_config())
            .build()
            .map_err(Failure::Open)?;
        Ok((Arc::new(store), prefix($url)?))
    }};
}

fn open_s3(url: &Url, env: &[(String, String)]) -> Opened {
    open_bucket!(url, env, AmazonS3Builder, AmazonS3ConfigKey, "AWS_")
}

fn open_gcs(url: &Url, env: &[(String, String)]) -> Opened {
    open_bucket!(
        url,
        env,
        GoogleCloudStorageBuilder,
        GoogleConfigKey,
        "GOOGLE_"
    )
}

/// `az://container/prefix` (account from the environment), or `az://`, `wasb://`,
/// `wasbs://` as `container@account.blob.core.windows.net/prefix`.
fn open_azure(url: &Url, env: &[(String, String)]) -> Opened {
    let host = url.host_str().unwrap_or_default();
    let mut builder = MicrosoftAzureBuilder::from_env();
    for (key, value) in with_prefix(env, "AZURE_") {
        if let Ok(key) = key.parse::<AzureConfigKey>() {
            builder = builder.with_config(key, value);
        }
    }
    let emulator = builder
        .get_config_value(&AzureConfigKey::UseEmulator)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if url.username().is_empty() {
        if url.scheme() != "az" {
            return Err(Failure::Invalid(format!(
                "expected {}://container@account.blob.core.windows.net/prefix",
                url.scheme()
            )));
        }
        builder = builder.with_container_name(bucket(url, "container")?);
        if !emulator
            && builder
                .get_config_value(&AzureConfigKey::AccountName)
                .is_none()
        {
            return Err(Failure::Invalid(AZURE_ACCOUNT_HINT.into()));
        }
    } else {
        let container = url.username();
        let Some((account, domain)) = host.split_once('.') else {
            return Err(Failure::Invalid(format!(
                "{host:?} is not an account's host (account.blob.core.windows.net)"
            )));
        };
        if account.is_empty() || container.is_empty() {
            return Err(Failure::Invalid(
                "expected container@account.blob.core.windows.net".into(),
            ));
        }
        builder = builder.with_container_name(container).with_account(account);
        if domain != "blob.core.windows.net" && !emulator {
            builder = builder.with_endpoint(format!("https://{host}"));
        }
    }
    let store = builder
        .with_retry(retry_config())
        .build()
        .map_err(Failure::Open)?;
    Ok((Arc::new(store), prefix(url)?))
}

/// `file:///abs/path`: a folder that exists; keys are paths under it.
fn open_file(url: &Url) -> Opened {
    if url
        .host_str()
        .is_some_and(|h| !h.is_empty() && h != "localhost")
    {
        return Err(Failure::Invalid(
            "a file:// URL names a local folder: file:///absolute/path".into(),
        ));
    }
    let folder = url
        .to_file_path()
        .map_err(|()| Failure::Invalid("not an absolute local path".into()))?;
    if !folder.is_dir() {
        return Err(Failure::Invalid(format!(
            "{} is not a folder",
            folder.display()
        )));
    }
    let store = LocalFileSystem::new_with_prefix(&folder).map_err(Failure::Open)?;
    Ok((Arc::new(store), Path::default()))
}

/// The bucket (or container) a URL's host names.
fn bucket(url: &Url, what: &str) -> Result<String, Failure> {
    match url.host_str() {
        Some(host) if !host.is_empty() => Ok(host.to_string()),
        _ => Err(Failure::Invalid(format!(
            "no {what}: expected {}://{what}/prefix",
            url.scheme()
        ))),
    }
}

/// The key prefix a URL's path names (percent-decoded, without empty parts).
fn prefix(url: &Url) -> Result<Path, Failure> {
    let trimmed = url.path().trim_matches('/');
    let mut prefix = Path::default();
    for part in trimmed.split('/').filter(|p| !p.is_empty()) {
        let part =
            Path::from_url_path(part).map_err(|e| Failure::Invalid(format!("prefix: {e}")))?;
        if part.as_ref() == "." || part.as_ref() == ".." {
            return Err(Failure::Invalid(format!(
                "prefix: {part} is not a folder name"
            )));
        }
        prefix = prefix.join(part.as_ref());
    }
    Ok(prefix)
}

fn with_prefix<'a>(
    env: &'a [(String, String)],
    prefix: &'a str,
) -> impl Iterator<Item = (String, &'a str)> + 'a {
    env.iter()
        .filter(move |(k, _)| k.starts_with(prefix))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
}

/// A URL as it may be shown: no password, no query (a SAS token), no fragment; for a URL
/// with a password the user name goes too.
fn display_url(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(None);
        let _ = shown.set_username("");
    }
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// Text that failed to parse as a URL, shown without anything after its scheme's `//` up to
/// an `@` (where credentials would be).
fn shown(text: &str) -> String {
    let without_query = text.split(['?', '#']).next().unwrap_or_default();
    match (without_query.find("://"), without_query.rfind('@')) {
        (Some(start), Some(at)) if at > start => {
            format!(
                "{}://…@{}",
                &without_query[..start],
                &without_query[at + 1..]
            )
        }
        _ => without_query.to_string(),
    }
}

#[cfg(test)]
mod tests;

/// Makes ring the process's rustls crypto provider unless one is installed already: the
/// clouds' HTTP clients (reqwest without a provider of its own) take the process's, and ring
/// is the one the Kubernetes client uses too.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
