//! Configuration: `updraft.toml` in `UPDRAFT_HOME`, overridden by `UPDRAFT__<SECTION>__<KEY>`
//! environment variables (as Airflow's `AIRFLOW__SECTION__KEY`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

pub const CONFIG_FILE: &str = "updraft.toml";
const ENV_PREFIX: &str = "UPDRAFT__";
const AIRFLOW_FERNET_KEY: &str = "AIRFLOW__CORE__FERNET_KEY";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub core: CoreSection,
    pub database: DatabaseSection,
    pub logging: LoggingSection,
    pub scheduler: SchedulerSection,
    pub api: ApiSection,
    pub kubernetes: KubernetesSection,
    pub auth: AuthSection,
    pub executor: ExecutorSection,
    pub secrets: SecretsSection,
    /// Settings per tenant (the first folder level under the DAGs folder).
    pub tenants: std::collections::BTreeMap<String, TenantSection>,
    /// DAG sources (`[[sources]]`): git repositories or object-store prefixes read instead of
    /// the DAGs folder; none: the DAGs folder.
    pub sources: Vec<updraft_sources::SourceConfig>,
}

/// How the local executor keeps tries apart from the scheduler and from each other.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecutorSection {
    /// Environment variables of the scheduler passed on to local tries besides `PATH`, `LANG`,
    /// `LC_*` and `TZ` (a trailing `*` matches a prefix). Nothing else of the scheduler's
    /// environment reaches a try.
    pub env_allowlist: Vec<String>,
    /// Where each local try gets a working directory of its own (relative to `UPDRAFT_HOME`).
    pub work_folder: PathBuf,
    /// Keep each try's working directory after it ends (else removed).
    pub keep_work_dirs: bool,
}

impl Default for ExecutorSection {
    fn default() -> Self {
        ExecutorSection {
            env_allowlist: Vec::new(),
            work_folder: PathBuf::from("tries"),
            keep_work_dirs: false,
        }
    }
}

/// Where connections and variables come from (`[secrets]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsSection {
    /// The backends asked, in order; the first that holds a name answers. `environment`
    /// (`AIRFLOW_CONN_*`, `AIRFLOW_VAR_*`, `UPDRAFT_CONN_*`, `UPDRAFT_VAR_*`), `database`,
    /// `files` (one file per connection or variable under `files_dir`) and `kubernetes` (the
    /// tenant's namespace's Secrets; needs `[kubernetes] enabled`).
    pub backends: Vec<String>,
    /// The folder of the `files` backend (a mounted Kubernetes Secret); relative to
    /// `UPDRAFT_HOME`.
    pub files_dir: PathBuf,
    /// How long answers of the backends other than the database are kept (`0s`: not kept).
    #[serde(with = "humantime_serde_str")]
    pub cache_ttl: Duration,
}

/// The secrets backends `[secrets] backends` may name.
pub const SECRETS_BACKENDS: &[&str] = &["environment", "database", "files", "kubernetes"];

impl Default for SecretsSection {
    fn default() -> Self {
        SecretsSection {
            backends: vec!["environment".to_string(), "database".to_string()],
            files_dir: PathBuf::from("secrets"),
            cache_ttl: Duration::from_secs(30),
        }
    }
}

impl SecretsSection {
    /// Every backend named is one updraft knows.
    pub fn check(&self) -> Result<()> {
        for name in &self.backends {
            if !SECRETS_BACKENDS.contains(&name.as_str()) {
                bail!(
                    "secrets.backends: unknown backend `{name}` (known: {})",
                    SECRETS_BACKENDS.join(", ")
                );
            }
        }
        Ok(())
    }
}

/// One tenant's settings (`[tenants.<tenant>]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantSection {
    /// The unix user the local executor runs this tenant's tries as (updraft must run as
    /// root); unset: updraft's own user.
    pub run_as_user: Option<String>,
}

/// Authentication (`[auth]`): local login with sessions, and API tokens. Sign-in methods of
/// their own get subsections (`[auth.oidc]`, `[auth.iap]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// Turning authentication off makes every caller an admin; allowed on a loopback
    /// `api.host` only.
    pub enabled: bool,
    /// Signs session cookies, CSRF tokens and (without a key pair) API tokens. Empty: a key
    /// generated at first start and kept in `$UPDRAFT_HOME/secret_key`. Several servers on
    /// one database need the same key.
    pub secret_key: String,
    /// `HS256` (with the secret key), or `RS256` / `ES256` with the key files below.
    pub token_algorithm: String,
    /// PEM private key that signs API tokens (RS256/ES256); relative to `UPDRAFT_HOME`.
    pub private_key_file: String,
    /// PEM public key that verifies API tokens (RS256/ES256); relative to `UPDRAFT_HOME`.
    pub public_key_file: String,
    /// How long an API token from `POST /auth/token` is valid.
    #[serde(with = "humantime_serde_str")]
    pub token_expiry: Duration,
    pub token_issuer: String,
    pub token_audience: String,
    /// How long a login session lasts.
    #[serde(with = "humantime_serde_str")]
    pub session_lifetime: Duration,
    /// Failed logins allowed per username and per client address within a minute.
    pub login_failures_per_minute: u32,
    /// `[auth.oidc]`: sign-in through an OpenID Connect provider.
    pub oidc: Option<OidcSection>,
    /// `[auth.iap]`: Google IAP's signed assertion checked on every request.
    pub iap: Option<IapSection>,
    /// A bearer token that reads `/metrics` and nothing else (a Prometheus' credential); empty:
    /// none. At least 16 characters.
    pub metrics_token: String,
}

impl Default for AuthSection {
    fn default() -> Self {
        use updraft_server::authn::settings as auth;
        AuthSection {
            enabled: true,
            secret_key: String::new(),
            token_algorithm: "HS256".to_string(),
            private_key_file: String::new(),
            public_key_file: String::new(),
            token_expiry: auth::DEFAULT_TOKEN_EXPIRY,
            token_issuer: auth::DEFAULT_ISSUER.to_string(),
            token_audience: auth::DEFAULT_AUDIENCE.to_string(),
            session_lifetime: auth::DEFAULT_SESSION_LIFETIME,
            login_failures_per_minute: auth::DEFAULT_LOGIN_FAILURES_PER_MINUTE,
            oidc: None,
            iap: None,
            metrics_token: String::new(),
        }
    }
}

/// Where task tries run (Airflow's `core.executor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutorKind {
    /// Local processes; `pod` tasks go to the cluster when `[kubernetes] enabled`.
    #[default]
    Local,
    /// Every task is a pod (bash and command tasks in the default template).
    Kubernetes,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesSection {
    /// Run `pod` tasks in a cluster (always on with `core.executor = "kubernetes"`).
    pub enabled: bool,
    /// A kubeconfig file; empty: the in-cluster service account when running in a pod, else
    /// `$KUBECONFIG` or `~/.kube/config`.
    pub kubeconfig: String,
    /// The kubeconfig context; empty: its current context.
    pub context: String,
    /// One folder per tenant holding its Pod templates; relative to `UPDRAFT_HOME`.
    pub templates_folder: PathBuf,
    /// Pod manifest for `bash`/`command` tasks under the kubernetes executor; empty: one
    /// container of `default_image`. Relative to `UPDRAFT_HOME`.
    pub default_template: String,
    pub default_image: String,
    /// How long a pod may take to start its container before its try fails.
    #[serde(with = "humantime_serde_str")]
    pub startup_timeout: Duration,
    /// When finished pods are deleted: `always`, `on_success` or `never`.
    pub delete_pod: updraft_dag::DeletePolicy,
    /// Grace period of a pod deleted while running (kill, execution_timeout).
    #[serde(with = "humantime_serde_str")]
    pub delete_grace: Duration,
    /// Namespaces each tenant may run pods in; a tenant not listed gets the namespace named
    /// like itself.
    pub namespaces: std::collections::BTreeMap<String, Vec<String>>,
}

impl Default for KubernetesSection {
    fn default() -> Self {
        KubernetesSection {
            enabled: false,
            kubeconfig: String::new(),
            context: String::new(),
            templates_folder: PathBuf::from("templates"),
            default_template: String::new(),
            default_image: "debian:bookworm-slim".to_string(),
            startup_timeout: Duration::from_secs(120),
            delete_pod: updraft_dag::DeletePolicy::Always,
            delete_grace: Duration::from_secs(10),
            namespaces: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// Address the web UI and REST API listen on. Non-loopback addresses need authentication
    /// on (`auth.enabled`, the default).
    pub host: String,
    pub port: u16,
    /// The URL users reach updraft at (`https://updraft.example.com`). Requests naming another
    /// host are refused (against DNS rebinding) unless it is a loopback name, an IP address or
    /// listed in `allowed_hosts`; https makes session cookies Secure. Empty: loopback names and
    /// IP addresses only.
    pub public_url: String,
    /// More host names to answer; `["*"]` turns the host check off.
    pub allowed_hosts: Vec<String>,
    /// Live update streams (`/ui/events`, one per open page) allowed at once, in all.
    pub event_streams_max: usize,
    /// Live update streams allowed at once per user.
    pub event_streams_per_user: usize,
    /// A live update stream with nothing to send for this long ends; the page reconnects.
    #[serde(with = "humantime_serde_str")]
    pub event_stream_idle_timeout: Duration,
    /// File descriptors kept for the API, the DAG scan and task launches: a new live update
    /// stream is refused when fewer would remain under the open-files limit (which updraft
    /// raises to the hard limit at start).
    pub reserved_file_descriptors: u64,
}

impl Default for ApiSection {
    fn default() -> Self {
        let streams = updraft_server::guard::StreamLimits::default();
        ApiSection {
            host: "127.0.0.1".to_string(),
            port: 8080,
            public_url: String::new(),
            allowed_hosts: Vec::new(),
            event_streams_max: streams.total,
            event_streams_per_user: streams.per_user,
            event_stream_idle_timeout: streams.idle_timeout,
            reserved_file_descriptors: streams.reserved_file_descriptors,
        }
    }
}

impl ApiSection {
    /// The server's `Host` check and live update stream limits.
    pub fn guard(&self) -> Result<updraft_server::guard::Guard> {
        let settings = updraft_server::guard::GuardSettings {
            public_url: Some(self.public_url.clone()).filter(|u| !u.trim().is_empty()),
            allowed_hosts: self.allowed_hosts.clone(),
            streams: updraft_server::guard::StreamLimits {
                per_user: self.event_streams_per_user,
                total: self.event_streams_max,
                idle_timeout: self.event_stream_idle_timeout,
                reserved_file_descriptors: self.reserved_file_descriptors,
            },
        };
        Ok(updraft_server::guard::Guard::new(settings)?)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoreSection {
    /// Relative paths are resolved against `UPDRAFT_HOME`.
    pub dags_folder: PathBuf,
    pub parallelism: u32,
    pub dags_are_paused_at_creation: bool,
    pub default_pool_slots: i64,
    /// Offer the example DAGs when `standalone` finds the DAGs folder empty.
    pub load_examples: bool,
    /// DAG files larger than this many bytes are import errors.
    pub max_dag_file_size: u64,
    /// A walk of the DAGs folder reading more entries (files, folders, links, hidden ones
    /// included) stops there, with an import error.
    pub max_dag_folder_entries: usize,
    /// Folders nested deeper than this below the DAGs folder are import errors, not read.
    pub max_dag_folder_depth: usize,
    /// The largest XCom value a try may push, in bytes of JSON; a try pushing a larger one
    /// fails.
    pub max_xcom_size: usize,
    /// The most instances a mapped task may expand to (Airflow's `max_map_length`); a task
    /// expanding to more fails.
    pub max_map_length: usize,
    /// `local` or `kubernetes`.
    pub executor: ExecutorKind,
    /// The Fernet keys connections and variables are encrypted with, separated by commas:
    /// the first encrypts, every one decrypts (Airflow's format; `AIRFLOW__CORE__FERNET_KEY`
    /// is read too).
    pub fernet_key: String,
    /// A file holding the keys instead (a mounted Kubernetes Secret); relative to
    /// `UPDRAFT_HOME`. Read again when it changes, so keys rotate without a restart.
    pub fernet_key_file: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSection {
    /// `sqlite://<path>` (relative to `UPDRAFT_HOME`) or `postgres://user:password@host/db`.
    pub url: String,
    /// PostgreSQL: most connections each process opens.
    pub max_connections: u32,
    /// PostgreSQL: how long a database call waits for a connection (e.g. while the server
    /// restarts) before it fails and is retried later.
    #[serde(with = "humantime_serde_str")]
    pub acquire_timeout: Duration,
    /// PostgreSQL: keep prepared statements per connection. Set false behind a
    /// transaction-pooling PgBouncer.
    pub statement_cache: bool,
    /// Create or upgrade the schema whenever a command opens the database. Behind a
    /// transaction-pooling PgBouncer set false and run `updraft db migrate` against the
    /// database directly (the migration lock is held per session).
    pub migrate_on_start: bool,
    /// SQLite: check the file's pages (`PRAGMA quick_check`) when `scheduler`, `server` or
    /// `standalone` starts, so a corrupt database stops them at once. It reads the whole file
    /// (some 6-10 s per GB); `updraft db check` runs it on demand.
    pub check_on_start: bool,
}

/// The metadata database `database.url` names.
#[derive(Debug, Clone, PartialEq)]
pub enum Database {
    Sqlite(PathBuf),
    Postgres(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingSection {
    pub base_log_folder: PathBuf,
    /// `error`, `warn`, `info`, `debug` or a tracing filter.
    pub level: String,
    /// Where tries' logs are uploaded: `s3://bucket/prefix`, `gs://bucket/prefix`,
    /// `az://container/prefix` or Airflow's `wasb://container@account…`; empty: logs stay
    /// local. Credentials come from the environment, as each cloud's SDK finds them.
    pub remote_base_log_folder: String,
    /// Airflow's switch: `false` keeps logs local even with `remote_base_log_folder` set.
    pub remote_logging: bool,
    /// Remove a try's local log once it is uploaded whole.
    pub delete_local_logs: bool,
    /// How often a running try's new log lines are uploaded.
    #[serde(with = "humantime_serde_str")]
    pub remote_log_upload_interval: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerSection {
    #[serde(with = "humantime_serde_str")]
    pub poll_interval: Duration,
    #[serde(with = "humantime_serde_str")]
    pub rescan_interval: Duration,
    #[serde(with = "humantime_serde_str")]
    pub kill_grace: Duration,
    #[serde(with = "humantime_serde_str")]
    pub shutdown_grace: Duration,
    /// How often a scheduler records that it is alive.
    #[serde(with = "humantime_serde_str")]
    pub heartbeat_interval: Duration,
    /// A scheduler silent this long is declared dead; its tries are failed and retried by the
    /// others (Airflow's `scheduler_health_check_threshold`).
    #[serde(with = "humantime_serde_str")]
    pub health_check_threshold: Duration,
    /// Tries of one notification (a webhook, Slack message or email) before it is given up.
    pub notification_tries: u32,
    /// The wait after a notification's first failed try, doubled after each further one.
    #[serde(with = "humantime_serde_str")]
    pub notification_retry_delay: Duration,
    /// The limit of one try of a notification.
    #[serde(with = "humantime_serde_str")]
    pub notification_timeout: Duration,
    /// The limit of one in-process poke of a sensor whose task sets no `execution_timeout`.
    #[serde(with = "humantime_serde_str")]
    pub sensor_poke_timeout: Duration,
    /// A port on which `updraft scheduler` serves `GET /metrics` (Prometheus), without
    /// authentication; none by default. (`standalone` and `server` serve `/metrics` on the
    /// API's port, behind sign-in.)
    pub metrics_port: Option<u16>,
    /// The address of the metrics port: loopback unless a Prometheus elsewhere (another pod)
    /// scrapes it.
    pub metrics_host: String,
}

impl Default for CoreSection {
    fn default() -> Self {
        CoreSection {
            dags_folder: PathBuf::from("dags"),
            parallelism: 32,
            dags_are_paused_at_creation: true,
            default_pool_slots: 128,
            load_examples: true,
            max_dag_file_size: updraft_dag::DEFAULT_MAX_FILE_SIZE,
            max_dag_folder_entries: updraft_dag::DEFAULT_MAX_ENTRIES,
            max_dag_folder_depth: updraft_dag::DEFAULT_MAX_DEPTH,
            max_xcom_size: updraft_executor::xcom::DEFAULT_MAX_XCOM_SIZE,
            max_map_length: updraft_core::mapping::DEFAULT_MAX_MAP_LENGTH,
            executor: ExecutorKind::Local,
            fernet_key: String::new(),
            fernet_key_file: String::new(),
        }
    }
}

impl Default for DatabaseSection {
    fn default() -> Self {
        DatabaseSection {
            url: "sqlite://updraft.db".to_string(),
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            statement_cache: true,
            migrate_on_start: true,
            check_on_start: true,
        }
    }
}

impl Default for LoggingSection {
    fn default() -> Self {
        LoggingSection {
            base_log_folder: PathBuf::from("logs"),
            level: "info".to_string(),
            remote_base_log_folder: String::new(),
            remote_logging: true,
            delete_local_logs: false,
            remote_log_upload_interval: Duration::from_secs(30),
        }
    }
}

impl Default for SchedulerSection {
    fn default() -> Self {
        SchedulerSection {
            poll_interval: Duration::from_secs(1),
            rescan_interval: Duration::from_secs(30),
            kill_grace: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(5),
            health_check_threshold: Duration::from_secs(30),
            notification_tries: 3,
            notification_retry_delay: Duration::from_secs(1),
            notification_timeout: Duration::from_secs(30),
            sensor_poke_timeout: updraft_executor::local::DEFAULT_POKE_TIMEOUT,
            metrics_port: None,
            metrics_host: "127.0.0.1".to_string(),
        }
    }
}

/// Sign-in with an OpenID Connect provider (`[auth.oidc]`), Keycloak first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OidcSection {
    /// The provider's name on the login page ("Sign in with Keycloak").
    pub display_name: String,
    /// The provider's issuer (`https://keycloak.example.com/realms/<realm>`); its discovery
    /// document is `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    /// Empty for a public client. Secret: set it with `UPDRAFT__AUTH__OIDC__CLIENT_SECRET`.
    pub client_secret: String,
    pub scopes: Vec<String>,
    /// Where the roles are in the token: `resource_access.<client>.roles`, `groups`,
    /// `realm_access.roles`.
    pub roles_claim: String,
    /// The token the roles claim is read from: `id_token` or `access_token` (a JWT, verified).
    pub roles_token: String,
    /// Claim value → grants (`viewer = ["Admin"]`, `team-a = ["User@team_a"]`).
    pub role_mapping: std::collections::BTreeMap<String, Vec<String>>,
    /// The grant of users no claim value maps (`Viewer`, `Viewer@team_a`); empty: such users
    /// may not sign in.
    pub default_role: String,
    /// The claim naming the user: `preferred_username` or `email`.
    pub username_claim: String,
    /// The callback the provider redirects to; empty: `<api.public_url>/auth/oidc/callback`.
    pub redirect_url: String,
    /// How long a call to the provider may take.
    #[serde(with = "humantime_serde_str")]
    pub timeout: Duration,
}

impl Default for OidcSection {
    fn default() -> Self {
        OidcSection {
            display_name: "OpenID Connect".to_string(),
            issuer: String::new(),
            client_id: String::new(),
            client_secret: String::new(),
            scopes: ["openid", "profile", "email"].map(String::from).to_vec(),
            roles_claim: "groups".to_string(),
            roles_token: "id_token".to_string(),
            role_mapping: Default::default(),
            default_role: String::new(),
            username_claim: "preferred_username".to_string(),
            redirect_url: String::new(),
            timeout: Duration::from_secs(10),
        }
    }
}

impl OidcSection {
    /// The server's OIDC settings; `public_url` is where browsers reach updraft, `cookie_key`
    /// signs sign-ins in progress.
    pub fn settings(
        &self,
        public_url: &str,
        cookie_key: Vec<u8>,
    ) -> Result<updraft_server::authn::oidc::OidcSettings> {
        use updraft_server::authn::oidc::{CALLBACK_PATH, ClaimToken, OidcSettings};
        let required = |value: &str, key: &str| {
            if value.trim().is_empty() {
                bail!("auth.oidc.{key} is required");
            }
            Ok(value.trim().to_string())
        };
        let issuer = required(&self.issuer, "issuer")?;
        let client_id = required(&self.client_id, "client_id")?;
        let redirect_url = if self.redirect_url.trim().is_empty() {
            let base = public_url.trim().trim_end_matches('/');
            if base.is_empty() {
                bail!("auth.oidc needs api.public_url (or auth.oidc.redirect_url)");
            }
            format!("{base}{CALLBACK_PATH}")
        } else {
            self.redirect_url.trim().to_string()
        };
        let claim_token = match self.roles_token.trim() {
            "id_token" | "id" => ClaimToken::Id,
            "access_token" | "access" => ClaimToken::Access,
            other => bail!("auth.oidc.roles_token: `{other}` is not id_token or access_token"),
        };
        Ok(OidcSettings {
            display_name: self.display_name.trim().to_string(),
            issuer,
            client_id,
            client_secret: Some(self.client_secret.clone()).filter(|s| !s.is_empty()),
            scopes: self.scopes.clone(),
            claim: self.roles_claim.parse().context("auth.oidc.roles_claim")?,
            claim_token,
            mapping: role_mapping(&self.role_mapping, &self.default_role, "auth.oidc")?,
            username_claim: required(&self.username_claim, "username_claim")?,
            secure_cookie: redirect_url.starts_with("https://"),
            redirect_url,
            cookie_key,
            http_timeout: self.timeout,
        })
    }
}

/// Sign-in by a trusted proxy's signed assertion (`[auth.iap]`): Google's Identity-Aware Proxy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IapSection {
    /// `/projects/<project number>/global/backendServices/<backend service id>`.
    pub audience: String,
    pub issuer: String,
    /// Where the proxy's public keys are published.
    pub jwks_url: String,
    /// A local JWKS file instead (relative to `UPDRAFT_HOME`); wins over `jwks_url`.
    pub jwks_file: String,
    /// A claim of the assertion whose values are looked up in `role_mapping`, besides the
    /// user's email address and its `@domain`; empty: only those.
    pub roles_claim: String,
    /// Email address, `@domain` or claim value → grants.
    pub role_mapping: std::collections::BTreeMap<String, Vec<String>>,
    /// The grant of users nothing maps; empty: such users are refused.
    pub default_role: String,
    /// How long fetching the keys may take.
    #[serde(with = "humantime_serde_str")]
    pub timeout: Duration,
}

impl Default for IapSection {
    fn default() -> Self {
        use updraft_server::authn::iap;
        IapSection {
            audience: String::new(),
            issuer: iap::GOOGLE_IAP_ISSUER.to_string(),
            jwks_url: iap::GOOGLE_IAP_JWKS_URL.to_string(),
            jwks_file: String::new(),
            roles_claim: String::new(),
            role_mapping: Default::default(),
            default_role: String::new(),
            timeout: Duration::from_secs(10),
        }
    }
}

impl IapSection {
    pub fn settings(&self, home: &Path) -> Result<updraft_server::authn::iap::IapSettings> {
        use updraft_server::authn::iap::IapSettings;
        use updraft_server::authn::jwks::{KeySource, MIN_REFRESH};
        let audience = self.audience.trim();
        if !(audience.starts_with("/projects/") && audience.contains("/global/backendServices/")
            || audience.starts_with("/projects/") && audience.contains("/apps/"))
        {
            bail!(
                "auth.iap.audience: `{audience}` is not an IAP audience \
                 (/projects/<number>/global/backendServices/<id>)"
            );
        }
        let keys = if !self.jwks_file.trim().is_empty() {
            KeySource::File(home.join(self.jwks_file.trim()))
        } else if !self.jwks_url.trim().is_empty() {
            KeySource::Url(self.jwks_url.trim().to_string())
        } else {
            bail!("auth.iap needs jwks_url or jwks_file");
        };
        let claim = Some(self.roles_claim.trim())
            .filter(|c| !c.is_empty())
            .map(str::parse)
            .transpose()
            .context("auth.iap.roles_claim")?;
        Ok(IapSettings {
            audience: audience.to_string(),
            issuer: self.issuer.trim().to_string(),
            keys,
            http_timeout: self.timeout,
            min_key_refresh: MIN_REFRESH,
            claim,
            mapping: role_mapping(&self.role_mapping, &self.default_role, "auth.iap")?,
        })
    }
}

fn role_mapping(
    table: &std::collections::BTreeMap<String, Vec<String>>,
    default_role: &str,
    section: &str,
) -> Result<updraft_auth::claims::RoleMapping> {
    updraft_auth::claims::RoleMapping::parse(table, Some(default_role))
        .with_context(|| format!("{section}.role_mapping / {section}.default_role"))
}

mod humantime_serde_str {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// Where the configuration came from, and the resolved configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub home: PathBuf,
    pub config: Config,
}

impl Settings {
    /// Read `UPDRAFT_HOME` (default: the current directory), its `updraft.toml` if present,
    /// and the `UPDRAFT__*` environment overrides.
    pub fn load() -> Result<Settings> {
        let home = match std::env::var_os("UPDRAFT_HOME") {
            Some(home) => PathBuf::from(home),
            None => std::env::current_dir().context("reading the current directory")?,
        };
        let vars = with_airflow_logging(with_airflow_fernet_key(std::env::vars().collect()));
        let config = load_config(&home, &vars)?;
        Ok(Settings { home, config })
    }

    pub fn dags_folder(&self) -> PathBuf {
        self.home.join(&self.config.core.dags_folder)
    }

    /// Where the DAG sources' trees are kept.
    pub fn sources_folder(&self) -> PathBuf {
        self.home.join("sources")
    }

    /// The `[[sources]]` entries, checked.
    pub fn source_specs(&self) -> Result<Vec<updraft_sources::SourceSpec>> {
        check_sources(&self.config.sources)
    }

    pub fn logs_folder(&self) -> PathBuf {
        self.home.join(&self.config.logging.base_log_folder)
    }

    /// Where tries' logs are uploaded and read back (`[logging] remote_base_log_folder`),
    /// or `None` when they stay local.
    pub fn remote_logs(&self) -> Result<Option<updraft_logs::RemoteLogs>> {
        let logging = &self.config.logging;
        let url = logging.remote_base_log_folder.trim();
        if url.is_empty() || !logging.remote_logging {
            return Ok(None);
        }
        if logging.remote_log_upload_interval.is_zero() {
            bail!("logging.remote_log_upload_interval: must be more than 0s");
        }
        let remote = updraft_logs::RemoteLogs::open(url, self.logs_folder()).map_err(|e| {
            anyhow::anyhow!(
                "logging.remote_base_log_folder: {}",
                mask_url_password(&e.to_string())
            )
        })?;
        Ok(Some(remote))
    }

    /// How tries' logs are uploaded when [`Settings::remote_logs`] is set.
    pub fn log_upload_settings(&self) -> updraft_logs::UploadSettings {
        updraft_logs::UploadSettings {
            upload_interval: self.config.logging.remote_log_upload_interval,
            delete_local_logs: self.config.logging.delete_local_logs,
            ..updraft_logs::UploadSettings::default()
        }
    }

    /// Whether tries' logs are uploaded (a stop then waits for the uploads, within a bound).
    pub fn uploads_logs(&self) -> bool {
        let logging = &self.config.logging;
        logging.remote_logging && !logging.remote_base_log_folder.trim().is_empty()
    }

    /// The database named by `database.url`.
    pub fn database(&self) -> Result<Database> {
        let url = self.config.database.url.trim();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Database::Postgres(url.to_string()));
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .with_context(|| {
                format!(
                    "database.url: expected sqlite://<path> or postgres://..., got `{}`",
                    mask_url_password(url)
                )
            })?;
        Ok(Database::Sqlite(self.home.join(path)))
    }

    /// The SQLite database file, or `None` on PostgreSQL.
    pub fn sqlite_path(&self) -> Result<Option<PathBuf>> {
        Ok(match self.database()? {
            Database::Sqlite(path) => Some(path),
            Database::Postgres(_) => None,
        })
    }

    /// The server's authentication settings from `[auth]`: the secret key as configured, or
    /// generated once into `$UPDRAFT_HOME/secret_key`; the token key pair when configured.
    pub fn auth_settings(&self) -> Result<updraft_server::authn::AuthSettings> {
        use updraft_server::authn::{AuthSettings, TokenKeys, settings};
        let auth = &self.config.auth;
        if !auth.enabled {
            if auth.oidc.is_some() || auth.iap.is_some() {
                bail!("[auth.oidc] and [auth.iap] need authentication on (auth.enabled = true)");
            }
            return Ok(AuthSettings::disabled());
        }
        let secret = if auth.secret_key.is_empty() {
            settings::load_or_create_secret_key(&self.home.join(settings::SECRET_KEY_FILE))?
        } else {
            auth.secret_key.as_bytes().to_vec()
        };
        let mut result = AuthSettings::new(secret)?;
        let algorithm = auth.token_algorithm.trim();
        if !algorithm.eq_ignore_ascii_case("HS256") {
            if auth.private_key_file.is_empty() || auth.public_key_file.is_empty() {
                bail!(
                    "auth.token_algorithm = \"{algorithm}\" needs auth.private_key_file and \
                     auth.public_key_file"
                );
            }
            result.token_keys = TokenKeys::from_pem_files(
                algorithm,
                &self.home.join(&auth.private_key_file),
                &self.home.join(&auth.public_key_file),
            )?;
        }
        result.token_expiry = auth.token_expiry;
        result.issuer = auth.token_issuer.clone();
        result.audience = auth.token_audience.clone();
        result.session_lifetime = auth.session_lifetime;
        result.login_failures_per_minute = auth.login_failures_per_minute.max(1);
        // One public URL for the Host check and for Secure cookies.
        let public_url = &self.config.api.public_url;
        if !public_url.is_empty() {
            result = result.with_public_url(public_url)?;
        }
        self.external_sign_in(&mut result)?;
        let metrics_token = auth.metrics_token.trim();
        if !metrics_token.is_empty() {
            if metrics_token.chars().count() < MIN_METRICS_TOKEN_CHARS {
                bail!(
                    "auth.metrics_token: at least {MIN_METRICS_TOKEN_CHARS} characters, so it \
                     cannot be guessed (e.g. `openssl rand -hex 32`)"
                );
            }
            result.metrics_token = Some(metrics_token.to_string());
        }
        Ok(result)
    }

    /// `[auth.oidc]` and `[auth.iap]` into the server's settings.
    fn external_sign_in(&self, result: &mut updraft_server::authn::AuthSettings) -> Result<()> {
        use std::sync::Arc;
        use updraft_server::authn::{iap::Iap, oidc::Oidc};
        let auth = &self.config.auth;
        if let Some(oidc) = &auth.oidc {
            let cookie_key = result.derived_key(b"updraft oidc sign-in").to_vec();
            let settings = oidc.settings(&self.config.api.public_url, cookie_key)?;
            result.oidc = Some(Arc::new(Oidc::new(settings).context("auth.oidc")?));
        }
        if let Some(iap) = &auth.iap {
            let settings = iap.settings(&self.home)?;
            result.iap = Some(Arc::new(Iap::new(settings).context("auth.iap")?));
        }
        Ok(())
    }

    /// The database for messages: the SQLite path, or the URL with its password masked.
    pub fn database_display(&self) -> String {
        match self.database() {
            Ok(Database::Sqlite(path)) => path.display().to_string(),
            Ok(Database::Postgres(url)) => mask_url_password(&url),
            Err(_) => mask_url_password(&self.config.database.url),
        }
    }
}

/// `AIRFLOW__CORE__FERNET_KEY` as `UPDRAFT__CORE__FERNET_KEY` when that is not set, so an
/// Airflow deployment's key setting carries over.
fn with_airflow_fernet_key(mut vars: Vec<(String, String)>) -> Vec<(String, String)> {
    const UPDRAFT: &str = "UPDRAFT__CORE__FERNET_KEY";
    if vars.iter().any(|(name, _)| name == UPDRAFT) {
        return vars;
    }
    if let Some((_, value)) = vars.iter().find(|(name, _)| name == AIRFLOW_FERNET_KEY) {
        let value = value.clone();
        vars.push((UPDRAFT.to_string(), value));
    }
    vars
}

/// Airflow's remote logging variables (`AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER`, ...) as
/// their `UPDRAFT__LOGGING__*` names when those are not set; Airflow's `True`/`False` read as
/// booleans.
fn with_airflow_logging(mut vars: Vec<(String, String)>) -> Vec<(String, String)> {
    const KEYS: [&str; 3] = [
        "REMOTE_BASE_LOG_FOLDER",
        "REMOTE_LOGGING",
        "DELETE_LOCAL_LOGS",
    ];
    for key in KEYS {
        let updraft = format!("UPDRAFT__LOGGING__{key}");
        let airflow = format!("AIRFLOW__LOGGING__{key}");
        if vars.iter().any(|(name, _)| *name == updraft) {
            continue;
        }
        if let Some((_, value)) = vars.iter().find(|(name, _)| *name == airflow) {
            let value = match value.trim() {
                v if v.eq_ignore_ascii_case("true") => "true".to_string(),
                v if v.eq_ignore_ascii_case("false") => "false".to_string(),
                _ => value.clone(),
            };
            vars.push((updraft, value));
        }
    }
    vars
}

pub fn load_config(home: &Path, vars: &[(String, String)]) -> Result<Config> {
    let config = load_unchecked_config(home, vars)?;
    config.secrets.check()?;
    check_sources(&config.sources)?;
    Ok(config)
}

/// Checks every `[[sources]]` entry; an error names the entry and the field.
fn check_sources(
    sources: &[updraft_sources::SourceConfig],
) -> Result<Vec<updraft_sources::SourceSpec>> {
    let mut names = std::collections::HashSet::new();
    let mut specs = Vec::with_capacity(sources.len());
    for (i, source) in sources.iter().enumerate() {
        if !names.insert(source.name.as_str()) {
            bail!(
                "[[sources]] {} (entry {}): name: another entry has this name; names must be unique",
                source.name,
                i + 1
            );
        }
        specs.push(source.check()?);
    }
    Ok(specs)
}

fn load_unchecked_config(home: &Path, vars: &[(String, String)]) -> Result<Config> {
    let path = home.join(CONFIG_FILE);
    let mut table = match std::fs::read_to_string(&path) {
        Ok(text) => {
            // Parsing into the typed config first gives errors with the file's line and column.
            toml::from_str::<Config>(&text).with_context(|| format!("{}", path.display()))?;
            text.parse::<toml::Table>()
                .with_context(|| format!("{}", path.display()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => toml::Table::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    for (name, value) in vars {
        if name.starts_with(ENV_PREFIX) {
            apply_env_override(&mut table, name, value)?;
            // Checked one variable at a time, so an error names the variable at fault.
            toml::Value::Table(table.clone())
                .try_into::<Config>()
                .with_context(|| format!("environment variable {name}"))?;
        }
    }
    toml::Value::Table(table)
        .try_into::<Config>()
        .context("applying UPDRAFT__<SECTION>__<KEY> environment overrides")
}

fn apply_env_override(table: &mut toml::Table, name: &str, value: &str) -> Result<()> {
    let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
        return Ok(());
    };
    let Some((section, key)) = rest.split_once("__") else {
        bail!("{name}: expected UPDRAFT__<SECTION>__<KEY>");
    };
    // `UPDRAFT__AUTH__OIDC__CLIENT_SECRET` sets `client_secret` in `[auth.oidc]`.
    let (section, key) = (section.to_lowercase(), key.to_lowercase());
    let mut path: Vec<&str> = std::iter::once(section.as_str())
        .chain(key.split("__"))
        .collect();
    let key = path.pop().unwrap_or_default().to_string();
    let mut current = table;
    for part in path {
        let entry = current
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(inner) = entry else {
            bail!("{name}: `{part}` is not a section");
        };
        current = inner;
    }
    current.insert(key, env_value(value));
    Ok(())
}

/// Environment values are strings; numbers and booleans are recognised as such, and so are
/// TOML inline tables and arrays (`{shop = ["shop", "shop-batch"]}`) for keys that take them.
fn env_value(value: &str) -> toml::Value {
    if let Ok(b) = value.parse::<bool>() {
        return toml::Value::Boolean(b);
    }
    if let Ok(i) = value.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if value.trim_start().starts_with(['{', '['])
        && let Ok(mut parsed) = format!("v = {value}").parse::<toml::Table>()
        && let Some(inline) = parsed.remove("v")
    {
        return inline;
    }
    toml::Value::String(value.to_string())
}

/// The configuration as TOML with secrets masked: values of keys that look secret, and
/// passwords inside URLs.
/// The shortest `[auth] metrics_token` taken.
const MIN_METRICS_TOKEN_CHARS: usize = 16;

pub fn masked_toml(config: &Config) -> Result<String> {
    let mut value = toml::Value::try_from(config)?;
    mask_value(None, &mut value);
    Ok(toml::to_string_pretty(&value)?)
}

fn mask_value(key: Option<&str>, value: &mut toml::Value) {
    match value {
        toml::Value::Table(table) => {
            for (k, v) in table.iter_mut() {
                mask_value(Some(k), v);
            }
        }
        toml::Value::String(s) => {
            if key.is_some_and(is_secret_key) {
                *s = "***".to_string();
            } else {
                *s = mask_url_password(s);
            }
        }
        _ => {}
    }
}

fn is_secret_key(key: &str) -> bool {
    let key = key.to_lowercase();
    [
        "password",
        "secret",
        "token",
        "fernet",
        "private_key",
        "api_key",
    ]
    .iter()
    .any(|word| key.contains(word))
}

/// `scheme://user:password@host` → `scheme://user:***@host`.
pub fn mask_url_password(text: &str) -> String {
    let Some(scheme_end) = text.find("://") else {
        return text.to_string();
    };
    let rest = &text[scheme_end + 3..];
    let Some(at) = rest.find('@') else {
        return text.to_string();
    };
    match rest[..at].split_once(':') {
        Some((user, _)) => format!("{}://{user}:***@{}", &text[..scheme_end], &rest[at + 1..]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_win_over_the_file() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join(CONFIG_FILE), "[core]\nparallelism = 4\n").unwrap();
        let vars = vec![
            ("UPDRAFT__CORE__PARALLELISM".to_string(), "9".to_string()),
            (
                "UPDRAFT__SCHEDULER__POLL_INTERVAL".to_string(),
                "250ms".to_string(),
            ),
        ];
        let config = load_config(home.path(), &vars).unwrap();
        assert_eq!(config.core.parallelism, 9);
        assert_eq!(config.scheduler.poll_interval, Duration::from_millis(250));
    }

    #[test]
    fn notification_retries_are_configured_in_the_scheduler_section() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(
            home.path().join(CONFIG_FILE),
            "[scheduler]\nnotification_tries = 5\nnotification_retry_delay = \"250ms\"\n",
        )
        .unwrap();
        let vars = vec![(
            "UPDRAFT__SCHEDULER__NOTIFICATION_TIMEOUT".to_string(),
            "2s".to_string(),
        )];
        let config = load_config(home.path(), &vars).unwrap();
        assert_eq!(config.scheduler.notification_tries, 5);
        assert_eq!(
            config.scheduler.notification_retry_delay,
            Duration::from_millis(250)
        );
        assert_eq!(
            config.scheduler.notification_timeout,
            Duration::from_secs(2)
        );
        let defaults = load_config(tempfile::tempdir().unwrap().path(), &[]).unwrap();
        assert_eq!(defaults.scheduler.notification_tries, 3);
    }

    #[test]
    fn the_sensor_poke_bound_is_configured_in_the_scheduler_section() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(
            home.path().join(CONFIG_FILE),
            "[scheduler]\nsensor_poke_timeout = \"5s\"\n",
        )
        .unwrap();
        let config = load_config(home.path(), &[]).unwrap();
        assert_eq!(config.scheduler.sensor_poke_timeout, Duration::from_secs(5));
        let defaults = load_config(tempfile::tempdir().unwrap().path(), &[]).unwrap();
        assert_eq!(
            defaults.scheduler.sensor_poke_timeout,
            Duration::from_secs(60)
        );
    }

    #[test]
    fn a_metrics_token_reaches_the_server_settings_unless_too_short() {
        let home = tempfile::tempdir().unwrap();
        let settings = |token: &str| {
            let vars = vec![(
                "UPDRAFT__AUTH__METRICS_TOKEN".to_string(),
                token.to_string(),
            )];
            Settings {
                config: load_config(home.path(), &vars).unwrap(),
                home: home.path().to_path_buf(),
            }
        };
        let good = "0123456789abcdef0123";
        assert_eq!(
            settings(good)
                .auth_settings()
                .unwrap()
                .metrics_token
                .as_deref(),
            Some(good)
        );
        let error = settings("short").auth_settings().unwrap_err().to_string();
        assert!(error.contains("auth.metrics_token"), "{error}");
        assert!(
            masked_toml(&settings(good).config)
                .unwrap()
                .contains("metrics_token = \"***\""),
            "masked in `config show`"
        );
    }

    #[test]
    fn the_scheduler_s_metrics_port_is_off_unless_configured() {
        let defaults = load_config(tempfile::tempdir().unwrap().path(), &[]).unwrap();
        assert_eq!(defaults.scheduler.metrics_port, None);
        assert_eq!(defaults.scheduler.metrics_host, "127.0.0.1");
        let vars = vec![
            (
                "UPDRAFT__SCHEDULER__METRICS_PORT".to_string(),
                "9090".to_string(),
            ),
            (
                "UPDRAFT__SCHEDULER__METRICS_HOST".to_string(),
                "0.0.0.0".to_string(),
            ),
        ];
        let config = load_config(tempfile::tempdir().unwrap().path(), &vars).unwrap();
        assert_eq!(config.scheduler.metrics_port, Some(9090));
        assert_eq!(config.scheduler.metrics_host, "0.0.0.0");
    }

    #[test]
    fn env_overrides_take_inline_tables() {
        let home = tempfile::tempdir().unwrap();
        let vars = vec![(
            "UPDRAFT__KUBERNETES__NAMESPACES".to_string(),
            r#"{shop = ["shop", "shop-batch"]}"#.to_string(),
        )];
        let config = load_config(home.path(), &vars).unwrap();
        assert_eq!(
            config.kubernetes.namespaces["shop"],
            ["shop".to_string(), "shop-batch".to_string()]
        );
    }

    #[test]
    fn tenants_users_and_the_executors_allowlist_come_from_file_and_environment() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(
            home.path().join(CONFIG_FILE),
            "[executor]\nenv_allowlist = [\"AWS_REGION\"]\n\n[tenants.team_a]\nrun_as_user = \"svc_a\"\n",
        )
        .unwrap();
        let vars = vec![
            (
                "UPDRAFT__TENANTS__TEAM_B".to_string(),
                r#"{run_as_user = "svc_b"}"#.to_string(),
            ),
            (
                "UPDRAFT__EXECUTOR__KEEP_WORK_DIRS".to_string(),
                "true".to_string(),
            ),
        ];
        let config = load_config(home.path(), &vars).unwrap();
        assert_eq!(config.executor.env_allowlist, ["AWS_REGION"]);
        assert!(config.executor.keep_work_dirs);
        assert_eq!(config.executor.work_folder, PathBuf::from("tries"));
        let users: Vec<(&str, Option<&str>)> = config
            .tenants
            .iter()
            .map(|(t, s)| (t.as_str(), s.run_as_user.as_deref()))
            .collect();
        assert_eq!(
            users,
            [("team_a", Some("svc_a")), ("team_b", Some("svc_b"))]
        );
    }

    #[test]
    fn api_host_check_and_stream_limits_are_read_and_checked() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(
            home.path().join(CONFIG_FILE),
            "[api]\npublic_url = \"https://updraft.example.com\"\nevent_streams_max = 40\n",
        )
        .unwrap();
        let vars = vec![
            (
                "UPDRAFT__API__ALLOWED_HOSTS".to_string(),
                r#"["ops.internal"]"#.to_string(),
            ),
            (
                "UPDRAFT__API__EVENT_STREAM_IDLE_TIMEOUT".to_string(),
                "5m".to_string(),
            ),
        ];
        let config = load_config(home.path(), &vars).unwrap();
        let guard = config.api.guard().unwrap();
        assert!(guard.host_allowed("updraft.example.com").is_ok());
        assert!(guard.host_allowed("ops.internal:8080").is_ok());
        assert!(guard.host_allowed("other.example").is_err());
        assert_eq!(guard.settings().streams.total, 40);
        assert_eq!(guard.settings().streams.per_user, 16);
        assert_eq!(
            guard.settings().streams.idle_timeout,
            Duration::from_secs(300)
        );
        let mut bad = config.api.clone();
        bad.public_url = "updraft.example.com".to_string();
        let err = bad.guard().unwrap_err().to_string();
        assert!(err.contains("api.public_url"), "{err}");
    }

    #[test]
    fn unknown_key_in_file_names_file_and_line() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join(CONFIG_FILE), "[core]\n\nparalelism = 4\n").unwrap();
        let err = format!("{:#}", load_config(home.path(), &[]).unwrap_err());
        assert!(err.contains("updraft.toml"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("paralelism"), "{err}");
    }

    #[test]
    fn unknown_key_in_environment_names_the_variable() {
        let home = tempfile::tempdir().unwrap();
        let vars = vec![
            ("UPDRAFT__CORE__PARALLELISM".to_string(), "9".to_string()),
            ("UPDRAFT__CORE__PARALELISM".to_string(), "4".to_string()),
        ];
        let err = format!("{:#}", load_config(home.path(), &vars).unwrap_err());
        assert!(
            err.contains("environment variable UPDRAFT__CORE__PARALELISM"),
            "{err}"
        );
        assert!(err.contains("unknown field `paralelism`"), "{err}");
    }

    #[test]
    fn airflows_fernet_key_variable_counts_unless_updrafts_is_set() {
        let home = tempfile::tempdir().unwrap();
        let airflow = || {
            (
                "AIRFLOW__CORE__FERNET_KEY".to_string(),
                "from-airflow".to_string(),
            )
        };
        let config = load_config(home.path(), &with_airflow_fernet_key(vec![airflow()])).unwrap();
        assert_eq!(config.core.fernet_key, "from-airflow");
        let both = with_airflow_fernet_key(vec![
            airflow(),
            (
                "UPDRAFT__CORE__FERNET_KEY".to_string(),
                "from-updraft".to_string(),
            ),
        ]);
        assert_eq!(
            load_config(home.path(), &both).unwrap().core.fernet_key,
            "from-updraft"
        );
        assert!(!masked_toml(&config).unwrap().contains("from-airflow"));
    }

    #[test]
    fn remote_logging_comes_from_the_file_and_airflows_variables() {
        let home = tempfile::tempdir().unwrap();
        let config = load_config(home.path(), &[]).unwrap();
        assert_eq!(config.logging.remote_base_log_folder, "");
        assert_eq!(
            config.logging.remote_log_upload_interval,
            Duration::from_secs(30)
        );
        std::fs::write(
            home.path().join(CONFIG_FILE),
            "[logging]\nremote_base_log_folder = \"s3://from-file/logs\"\n\
             remote_log_upload_interval = \"5s\"\n",
        )
        .unwrap();
        let var = |name: &str, value: &str| (name.to_string(), value.to_string());
        let airflow = with_airflow_logging(vec![
            var(
                "AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER",
                "wasb://logs@acct",
            ),
            var("AIRFLOW__LOGGING__DELETE_LOCAL_LOGS", "True"),
            var("AIRFLOW__LOGGING__REMOTE_LOGGING", "True"),
        ]);
        let config = load_config(home.path(), &airflow).unwrap();
        assert_eq!(config.logging.remote_base_log_folder, "wasb://logs@acct");
        assert!(config.logging.delete_local_logs && config.logging.remote_logging);
        assert_eq!(
            config.logging.remote_log_upload_interval,
            Duration::from_secs(5)
        );
        let mut both = airflow.clone();
        both.push(var(
            "UPDRAFT__LOGGING__REMOTE_BASE_LOG_FOLDER",
            "gs://mine/x",
        ));
        let config = load_config(home.path(), &with_airflow_logging(both)).unwrap();
        assert_eq!(config.logging.remote_base_log_folder, "gs://mine/x");
        let off = with_airflow_logging(vec![var("AIRFLOW__LOGGING__REMOTE_LOGGING", "False")]);
        let settings = Settings {
            home: home.path().to_path_buf(),
            config: load_config(home.path(), &off).unwrap(),
        };
        assert!(!settings.uploads_logs());
        assert!(settings.remote_logs().unwrap().is_none());
    }

    #[test]
    fn secrets_backends_are_read_in_order_and_unknown_ones_named() {
        let home = tempfile::tempdir().unwrap();
        let defaults = load_config(home.path(), &[]).unwrap();
        assert_eq!(defaults.secrets.backends, ["environment", "database"]);
        std::fs::write(
            home.path().join(CONFIG_FILE),
            "[secrets]\nbackends = [\"files\", \"database\"]\nfiles_dir = \"/var/run/secrets/updraft\"\ncache_ttl = \"5s\"\n",
        )
        .unwrap();
        let config = load_config(home.path(), &[]).unwrap();
        assert_eq!(config.secrets.backends, ["files", "database"]);
        assert_eq!(config.secrets.cache_ttl, Duration::from_secs(5));
        assert_eq!(
            config.secrets.files_dir,
            PathBuf::from("/var/run/secrets/updraft")
        );
        let vars = vec![(
            "UPDRAFT__SECRETS__BACKENDS".to_string(),
            r#"["environment", "hashicorp"]"#.to_string(),
        )];
        let err = format!("{:#}", load_config(home.path(), &vars).unwrap_err());
        assert!(err.contains("secrets.backends"), "{err}");
        assert!(err.contains("hashicorp"), "{err}");
    }

    #[test]
    fn url_passwords_are_masked() {
        assert_eq!(
            mask_url_password("postgres://app:hunter2@db:5432/updraft"),
            "postgres://app:***@db:5432/updraft"
        );
        assert_eq!(
            mask_url_password("sqlite://updraft.db"),
            "sqlite://updraft.db"
        );
    }

    /// Seed 001's Keycloak setup (Airflow's `webserver_config.py`) as updraft configuration.
    const KEYCLOAK: &str = r#"
[auth.oidc]
issuer = "https://keycloak.example.com/realms/data"
client_id = "airflow"
roles_claim = "resource_access.airflow.roles"
roles_token = "access_token"

[auth.oidc.role_mapping]
viewer = ["Admin"]
"team-a" = ["User@team_a", "Viewer"]
"#;

    #[test]
    fn the_keycloak_section_reads_as_the_seed_meant_it() {
        use updraft_auth::{Grant, Role};
        use updraft_server::authn::oidc::ClaimToken;
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join(CONFIG_FILE), KEYCLOAK).unwrap();
        let vars = vec![(
            "UPDRAFT__AUTH__OIDC__CLIENT_SECRET".to_string(),
            "from-the-environment".to_string(),
        )];
        let config = load_config(home.path(), &vars).unwrap();
        let oidc = config.auth.oidc.as_ref().expect("[auth.oidc]");
        let settings = oidc
            .settings("https://updraft.example.com/", b"k".repeat(32))
            .unwrap();
        assert_eq!(
            settings.client_secret.as_deref(),
            Some("from-the-environment")
        );
        assert_eq!(
            settings.redirect_url,
            "https://updraft.example.com/auth/oidc/callback"
        );
        assert!(settings.secure_cookie);
        assert_eq!(settings.claim_token, ClaimToken::Access);
        assert_eq!(settings.scopes, ["openid", "profile", "email"]);
        assert_eq!(settings.username_claim, "preferred_username");
        assert_eq!(
            settings
                .mapping
                .grants_for(&["viewer".to_string()])
                .unwrap(),
            [Grant::everywhere(Role::Admin)]
        );
        assert!(settings.mapping.grants_for(&["x".to_string()]).is_err());
        assert!(config.auth.iap.is_none());
        let shown = masked_toml(&config).unwrap();
        assert!(!shown.contains("from-the-environment"), "{shown}");
    }

    #[test]
    fn the_oidc_and_iap_sections_reach_the_server_settings() {
        let home = tempfile::tempdir().unwrap();
        let settings = |text: &str| Settings {
            home: home.path().to_path_buf(),
            config: toml::from_str(text).unwrap(),
        };
        let both = settings(
            "[api]\npublic_url = \"https://updraft.example.com\"\n\
             [auth]\nsecret_key = \"0123456789abcdef0123456789abcdef\"\n\
             [auth.oidc]\nissuer = \"https://kc.example.com/realms/data\"\nclient_id = \"airflow\"\n\
             [auth.iap]\naudience = \"/projects/1/global/backendServices/2\"\ndefault_role = \"Viewer\"\n",
        )
        .auth_settings()
        .unwrap();
        assert_eq!(both.oidc.as_ref().unwrap().display_name(), "OpenID Connect");
        assert!(both.iap.is_some());
        let none = settings("").auth_settings().unwrap();
        assert!(none.oidc.is_none() && none.iap.is_none());
        let off = settings(
            "[auth]\nenabled = false\n[auth.iap]\naudience = \"/projects/1/global/backendServices/2\"\n",
        );
        let err = format!("{:#}", off.auth_settings().unwrap_err());
        assert!(err.contains("auth.enabled"), "{err}");
    }

    #[test]
    fn oidc_mistakes_are_named() {
        let section = |text: &str| -> OidcSection {
            let config: Config = toml::from_str(text).unwrap();
            config.auth.oidc.unwrap()
        };
        let err = |section: OidcSection, public_url: &str| {
            format!(
                "{:#}",
                section.settings(public_url, vec![0; 32]).unwrap_err()
            )
        };
        let no_issuer = section("[auth.oidc]\nclient_id = \"a\"\n");
        assert!(err(no_issuer, "http://x").contains("auth.oidc.issuer"));
        let no_url = section("[auth.oidc]\nissuer = \"http://i\"\nclient_id = \"a\"\n");
        assert!(err(no_url, "").contains("api.public_url"));
        let bad_role = section(
            "[auth.oidc]\nissuer = \"http://i\"\nclient_id = \"a\"\n[auth.oidc.role_mapping]\nx = [\"Root\"]\n",
        );
        assert!(err(bad_role, "http://x").contains("Root"));
        let bad_token = section(
            "[auth.oidc]\nissuer = \"http://i\"\nclient_id = \"a\"\nroles_token = \"refresh\"\n",
        );
        assert!(err(bad_token, "http://x").contains("roles_token"));
    }

    #[test]
    fn the_iap_section_reads_as_the_gke_setup_needs_it() {
        use updraft_auth::{Grant, Role};
        use updraft_server::authn::jwks::KeySource;
        let home = tempfile::tempdir().unwrap();
        std::fs::write(
            home.path().join(CONFIG_FILE),
            r#"
[auth.iap]
audience = "/projects/123456789/global/backendServices/987654321"
default_role = "Viewer"

[auth.iap.role_mapping]
"momota@example.com" = ["Admin"]
"#,
        )
        .unwrap();
        let config = load_config(home.path(), &[]).unwrap();
        let settings = config.auth.iap.unwrap().settings(home.path()).unwrap();
        assert_eq!(settings.issuer, "https://cloud.google.com/iap");
        assert!(matches!(settings.keys, KeySource::Url(ref url) if url.contains("gstatic.com")));
        assert_eq!(
            settings
                .mapping
                .grants_for(&["someone@else.org".to_string()])
                .unwrap(),
            [Grant::everywhere(Role::Viewer)]
        );

        let wrong: Config = toml::from_str("[auth.iap]\naudience = \"my-client-id\"\n").unwrap();
        let err = format!(
            "{:#}",
            wrong.auth.iap.unwrap().settings(home.path()).unwrap_err()
        );
        assert!(err.contains("backendServices"), "{err}");
    }
}
