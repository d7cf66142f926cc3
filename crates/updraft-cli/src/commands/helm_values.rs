//! `updraft helm-values-from-airflow FILE`: the values of Apache Airflow's official Helm chart
//! rewritten as values of updraft's chart (`charts/updraft`). Every value of the file is either
//! carried over or listed in the output's header with the reason it is not, so nothing is
//! dropped silently.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::{Map, Value, json};

/// Airflow values with no updraft equivalent, by path prefix, and why.
const NOT_NEEDED: &[(&str, &str)] = &[
    (
        "workers",
        "no Celery workers: tries run in the scheduler's executor or as pods (serviceAccount annotations are carried over)",
    ),
    (
        "triggerer",
        "no triggerer: sensors are poked by the scheduler and free their slot between pokes",
    ),
    ("redis", "no Celery broker"),
    ("flower", "no Celery"),
    (
        "statsd",
        "metrics are served in Prometheus format at /metrics (serviceMonitor.enabled)",
    ),
    ("dagProcessor", "DAG files are parsed inside the scheduler"),
    (
        "images",
        "updraft runs its own image (image.repository, image.tag)",
    ),
    (
        "postgresql",
        "the chart bundles no PostgreSQL: give database.url (a managed PostgreSQL) or set standalone.enabled (SQLite)",
    ),
    (
        "webserver.webserverConfig",
        "Flask AppBuilder's configuration: sign-in is auth.oidc (issuer, clientId, rolesClaim, roleMapping) or iap",
    ),
    (
        "apiServer.apiServerConfig",
        "Flask AppBuilder's configuration: sign-in is auth.oidc or iap",
    ),
    (
        "config.logging.remote_log_conn_id",
        "logs reach the bucket with the pods' workload identity (workloadIdentity.*) or env credentials, not a connection",
    ),
    (
        "dags.gitSync.credentialsSecret",
        "set sources[0].tokenSecret {name, key} to the Secret's password or token key, and sources[0].username",
    ),
    (
        "dags.gitSync.uid",
        "updraft syncs git itself, as the pod's user",
    ),
    (
        "webserver.defaultUser.role",
        "the chart's admin job makes an Admin of every tenant (Admin@*); other users with `updraft users create`",
    ),
    (
        "createUserJob.defaultUser.role",
        "the chart's admin job makes an Admin of every tenant (Admin@*); other users with `updraft users create`",
    ),
    (
        "dags.gitSync.containerName",
        "updraft syncs git itself: no sidecar",
    ),
    (
        "dags.gitSync.resources",
        "updraft syncs git itself: no sidecar",
    ),
    (
        "extraManifests",
        "apply them beside the chart; GKE's ManagedCertificate and BackendConfig are gke.managedCertificate and gke.backendConfig",
    ),
];

/// What the conversion made: the updraft chart's values, and every Airflow value left behind
/// with the reason.
#[derive(Debug, Default)]
pub struct Conversion {
    pub values: Map<String, Value>,
    pub left: Vec<(String, String)>,
    /// What the values need that the Airflow file cannot give (a Secret's key to add).
    pub to_do: Vec<String>,
}

/// A value of the wrong kind, named by its path in the file.
#[derive(Debug)]
pub struct FieldError {
    path: String,
    expected: &'static str,
    found: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}`: expected {}, found {}",
            self.path, self.expected, self.found
        )
    }
}

impl std::error::Error for FieldError {}

pub fn run(file: &Path) -> Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let airflow: Value = serde_saphyr::from_str(&text)
        .with_context(|| format!("{}: not a YAML values file", file.display()))?;
    let conversion = convert(&airflow).with_context(|| format!("{}", file.display()))?;
    print!("{}", render(&conversion, file)?);
    Ok(ExitCode::SUCCESS)
}

/// The output: a header naming what was left behind, then the values as YAML.
pub fn render(conversion: &Conversion, file: &Path) -> Result<String> {
    let mut out = format!(
        "# updraft chart values converted from Apache Airflow's chart values in {}.\n",
        file.display()
    );
    if conversion.left.is_empty() {
        out.push_str("# Every value was carried over.\n");
    } else {
        out.push_str("# Not carried over:\n");
        for (path, why) in &conversion.left {
            out.push_str(&format!("#   {path}: {why}\n"));
        }
    }
    if !conversion.to_do.is_empty() {
        out.push_str("# To do before installing:\n");
        for item in &conversion.to_do {
            out.push_str(&format!("#   {item}\n"));
        }
    }
    if !conversion.values.is_empty() {
        out.push_str(&serde_saphyr::to_string(&Value::Object(
            conversion.values.clone(),
        ))?);
    }
    Ok(out)
}

/// Reads the Airflow values, remembering which paths were used.
struct Reader<'a> {
    root: &'a Value,
    used: BTreeSet<String>,
}

impl<'a> Reader<'a> {
    fn get(&mut self, path: &str) -> Option<&'a Value> {
        let mut value = self.root;
        for part in path.split('.') {
            value = value.get(part)?;
        }
        if value.is_null() {
            return None;
        }
        self.used.insert(path.to_owned());
        Some(value)
    }

    fn string(&mut self, path: &str) -> Result<Option<String>, FieldError> {
        match self.get(path) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(wrong(path, "a string", other)),
        }
    }

    fn boolean(&mut self, path: &str) -> Result<Option<bool>, FieldError> {
        match self.get(path) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s == "true" || s == "false" => Ok(Some(s == "true")),
            Some(other) => Err(wrong(path, "true or false", other)),
        }
    }

    fn integer(&mut self, path: &str) -> Result<Option<i64>, FieldError> {
        match self.get(path) {
            None => Ok(None),
            Some(Value::Number(n)) if n.is_i64() => Ok(n.as_i64()),
            Some(Value::String(s)) if s.parse::<i64>().is_ok() => Ok(s.parse().ok()),
            Some(other) => Err(wrong(path, "a whole number", other)),
        }
    }

    fn mapping(&mut self, path: &str) -> Result<Option<Map<String, Value>>, FieldError> {
        match self.get(path) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m.clone())),
            Some(other) => Err(wrong(path, "a mapping", other)),
        }
    }

    fn list(&mut self, path: &str) -> Result<Option<Vec<Value>>, FieldError> {
        match self.get(path) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items.clone())),
            Some(other) => Err(wrong(path, "a list", other)),
        }
    }

    /// A value copied as it is (resources, tolerations, ...), whatever its shape.
    fn raw(&mut self, path: &str) -> Option<Value> {
        self.get(path).cloned()
    }
}

fn wrong(path: &str, expected: &'static str, found: &Value) -> FieldError {
    let found = match found {
        Value::Null => "nothing".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("the text {s:?}"),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "a mapping".to_owned(),
    };
    FieldError {
        path: path.to_owned(),
        expected,
        found,
    }
}

/// Sets `path` (dotted) in `values`, making the mappings on the way.
fn put(values: &mut Map<String, Value>, path: &str, value: Value) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts.pop().expect("a path has a last part");
    let mut map = values;
    for part in parts {
        map = map
            .entry(part)
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .expect("only mappings are made on the way");
    }
    map.insert(last.to_owned(), value);
}

/// Airflow's values, as the updraft chart's.
pub fn convert(airflow: &Value) -> Result<Conversion, FieldError> {
    let mut reader = Reader {
        root: airflow,
        used: BTreeSet::new(),
    };
    let mut out = Map::new();
    let mut to_do = Vec::new();
    secrets(&mut reader, &mut out)?;
    database(&mut reader, &mut out, &mut to_do)?;
    executor(&mut reader, &mut out)?;
    components(&mut reader, &mut out)?;
    service_accounts(&mut reader, &mut out)?;
    dags(&mut reader, &mut out)?;
    logs(&mut reader, &mut out)?;
    core_config(&mut reader, &mut out)?;
    ingress(&mut reader, &mut out)?;
    admin(&mut reader, &mut out)?;
    env(&mut reader, &mut out)?;
    let left = left_behind(airflow, &reader.used);
    Ok(Conversion {
        values: out,
        left,
        to_do,
    })
}

fn secrets(r: &mut Reader, out: &mut Map<String, Value>) -> Result<(), FieldError> {
    if let Some(key) = r.string("fernetKey")? {
        put(out, "fernetKey", json!(key));
    }
    if let Some(secret) = r.string("fernetKeySecretName")? {
        put(out, "fernetKeyExistingSecret", json!(secret));
        put(out, "fernetKeyExistingSecretKey", json!("fernet-key"));
    }
    for (value, secret, key) in [
        (
            "webserverSecretKey",
            "webserverSecretKeySecretName",
            "webserver-secret-key",
        ),
        ("apiSecretKey", "apiSecretKeySecretName", "api-secret-key"),
    ] {
        if let Some(signing) = r.string(value)? {
            put(out, "jwtSecret", json!(signing));
        }
        if let Some(name) = r.string(secret)? {
            put(out, "jwtSecretExistingSecret", json!(name));
            put(out, "jwtSecretExistingSecretKey", json!(key));
        }
    }
    Ok(())
}

fn database(
    r: &mut Reader,
    out: &mut Map<String, Value>,
    to_do: &mut Vec<String>,
) -> Result<(), FieldError> {
    let secret = r.string("data.metadataSecretName")?;
    if let Some(secret) = &secret {
        put(out, "database.existingSecret", json!(secret));
        // Airflow's chart keeps the URL under `connection`.
        put(out, "database.existingSecretKey", json!("connection"));
    }
    if r.get("data.metadataConnection").is_some() {
        let protocol = r
            .string("data.metadataConnection.protocol")?
            .unwrap_or_else(|| "postgresql".into());
        if !protocol.starts_with("postgres") {
            return Err(FieldError {
                path: "data.metadataConnection.protocol".into(),
                expected: "postgresql (updraft runs on PostgreSQL or SQLite)",
                found: format!("the text {protocol:?}"),
            });
        }
        let user = r
            .string("data.metadataConnection.user")?
            .unwrap_or_default();
        let password = r
            .string("data.metadataConnection.pass")?
            .unwrap_or_default();
        let host = r
            .string("data.metadataConnection.host")?
            .unwrap_or_default();
        let port = r.integer("data.metadataConnection.port")?.unwrap_or(5432);
        let db = r
            .string("data.metadataConnection.db")?
            .unwrap_or_else(|| "postgres".into());
        let mut url = format!(
            "postgres://{}:{}@{host}:{port}/{db}",
            encode(&user),
            encode(&password)
        );
        if let Some(mode) = r.string("data.metadataConnection.sslmode")? {
            url.push_str(&format!("?sslmode={mode}"));
        }
        put(out, "database.url", json!(url));
    }
    if let Some(enabled) = r.boolean("pgbouncer.enabled")? {
        put(out, "pgbouncer.enabled", json!(enabled));
        if let (true, Some(secret)) = (enabled, &secret) {
            to_do.push(format!(
                "add the key `pooled-url` to the Secret `{secret}`: the same database's URL \
                 through the chart's PgBouncer Service (<release>-pgbouncer:5432); the \
                 migration job keeps `connection`"
            ));
        }
    }
    if let Some(n) = r.integer("pgbouncer.maxClientConn")? {
        put(out, "pgbouncer.maxClientConn", json!(n));
    }
    if let Some(n) = r.integer("pgbouncer.metadataPoolSize")? {
        put(out, "pgbouncer.defaultPoolSize", json!(n));
    }
    if let Some(enabled) = r.boolean("migrateDatabaseJob.enabled")? {
        put(out, "migration.enabled", json!(enabled));
    }
    Ok(())
}

/// Percent-encodes what a URL's user or password may not hold as it is.
fn encode(part: &str) -> String {
    part.chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '-' | '.' | '_' | '~' => c.to_string(),
            other => {
                let mut buf = [0u8; 4];
                other
                    .encode_utf8(&mut buf)
                    .bytes()
                    .map(|b| format!("%{b:02X}"))
                    .collect()
            }
        })
        .collect()
}

fn executor(r: &mut Reader, out: &mut Map<String, Value>) -> Result<(), FieldError> {
    let Some(executor) = r.string("executor")? else {
        return Ok(());
    };
    // Every executor Airflow names comes down to updraft's two: local processes, or pods.
    let pods_for_every_task = executor == "KubernetesExecutor";
    let pods_available = executor.contains("Kubernetes");
    put(
        out,
        "kubernetes.executor",
        json!(if pods_for_every_task {
            "kubernetes"
        } else {
            "local"
        }),
    );
    if pods_available {
        put(out, "kubernetes.enabled", json!(true));
    }
    Ok(())
}

/// Replicas, resources and scheduling of the scheduler and the webserver (Airflow 2) or API
/// server (Airflow 3), which is updraft's server.
fn components(r: &mut Reader, out: &mut Map<String, Value>) -> Result<(), FieldError> {
    for (airflow, updraft) in [
        ("scheduler", "scheduler"),
        ("webserver", "server"),
        ("apiServer", "server"),
    ] {
        if let Some(n) = r.integer(&format!("{airflow}.replicas"))? {
            put(out, &format!("{updraft}.replicas"), json!(n));
        }
        for field in ["resources", "nodeSelector", "tolerations", "affinity"] {
            if let Some(value) = r.raw(&format!("{airflow}.{field}")) {
                put(out, &format!("{updraft}.{field}"), value);
            }
        }
        if let Some(annotations) = r.mapping(&format!("{airflow}.podAnnotations"))? {
            put(
                out,
                &format!("{updraft}.podAnnotations"),
                Value::Object(annotations),
            );
        }
        if let Some(labels) = r.mapping(&format!("{airflow}.labels"))? {
            put(out, &format!("{updraft}.podLabels"), Value::Object(labels));
        }
        if let Some(enabled) = r.boolean(&format!("{airflow}.podDisruptionBudget.enabled"))? {
            put(
                out,
                &format!("{updraft}.podDisruptionBudget.enabled"),
                json!(enabled),
            );
        }
        if let Some(unavailable) = r.raw(&format!(
            "{airflow}.podDisruptionBudget.config.maxUnavailable"
        )) {
            put(
                out,
                &format!("{updraft}.podDisruptionBudget.maxUnavailable"),
                unavailable,
            );
        }
        if updraft == "server" {
            if let Some(kind) = r.string(&format!("{airflow}.service.type"))? {
                put(out, "server.service.type", json!(kind));
            }
            if let Some(annotations) = r.mapping(&format!("{airflow}.service.annotations"))? {
                put(
                    out,
                    "server.service.annotations",
                    Value::Object(annotations),
                );
            }
        }
    }
    // Airflow's top-level scheduling constraints apply to every component.
    for field in ["nodeSelector", "tolerations", "affinity"] {
        if let Some(value) = r.raw(field) {
            for component in ["scheduler", "server", "migration", "standalone"] {
                let path = format!("{component}.{field}");
                if !has(out, &path) {
                    put(out, &path, value.clone());
                }
            }
        }
    }
    Ok(())
}

fn has(values: &Map<String, Value>, path: &str) -> bool {
    let mut value = values.get(path.split('.').next().unwrap_or_default());
    for part in path.split('.').skip(1) {
        value = value.and_then(|v| v.get(part));
    }
    value.is_some()
}

/// The annotations of every component's service account become the one ServiceAccount's;
/// the clouds' workload identities are named as the chart's `workloadIdentity` values.
fn service_accounts(r: &mut Reader, out: &mut Map<String, Value>) -> Result<(), FieldError> {
    let mut annotations = Map::new();
    for component in [
        "scheduler",
        "webserver",
        "apiServer",
        "workers",
        "triggerer",
        "migrateDatabaseJob",
    ] {
        let path = format!("{component}.serviceAccount.annotations");
        if let Some(found) = r.mapping(&path)? {
            annotations.extend(found);
        }
        if let Some(name) = r.string(&format!("{component}.serviceAccount.name"))? {
            put(out, "serviceAccount.name", json!(name));
        }
        if let Some(create) = r.boolean(&format!("{component}.serviceAccount.create"))? {
            put(out, "serviceAccount.create", json!(create));
        }
    }
    for (annotation, value) in [
        ("iam.gke.io/gcp-service-account", "gcpServiceAccount"),
        ("eks.amazonaws.com/role-arn", "awsRoleArn"),
        ("azure.workload.identity/client-id", "azureClientId"),
        ("azure.workload.identity/tenant-id", "azureTenantId"),
    ] {
        if let Some(identity) = annotations.remove(annotation) {
            put(out, &format!("workloadIdentity.{value}"), identity);
        }
    }
    if !annotations.is_empty() {
        put(
            out,
            "serviceAccount.annotations",
            Value::Object(annotations),
        );
    }
    Ok(())
}

fn dags(r: &mut Reader, out: &mut Map<String, Value>) -> Result<(), FieldError> {
    if r.boolean("dags.gitSync.enabled")? == Some(true) {
        let mut source = Map::new();
        source.insert("name".into(), json!("dags"));
        let repo = r.string("dags.gitSync.repo")?.ok_or_else(|| FieldError {
            path: "dags.gitSync.repo".into(),
            expected: "the repository's URL (gitSync is enabled)",
            found: "nothing".into(),
        })?;
        source.insert("git".into(), json!(repo));
        let rev = r.string("dags.gitSync.rev")?;
        let branch = r.string("dags.gitSync.branch")?;
        let reference = rev.filter(|rev| rev != "HEAD").or(branch);
        if let Some(reference) = reference {
            source.insert("ref".into(), json!(reference));
        }
        if let Some(subdir) = r.string("dags.gitSync.subPath")?.filter(|s| !s.is_empty()) {
            source.insert("subdir".into(), json!(subdir));
        }
        if let Some(depth) = r.integer("dags.gitSync.depth")? {
            source.insert("depth".into(), json!(depth));
        }
        if let Some(period) = r.string("dags.gitSync.period")? {
            source.insert("period".into(), json!(period));
        } else if let Some(wait) = r.integer("dags.gitSync.wait")? {
            source.insert("period".into(), json!(format!("{wait}s")));
        }
        if let Some(failures) = r.integer("dags.gitSync.maxFailures")? {
            source.insert("maxFailures".into(), json!(failures));
        }
        if let Some(secret) = r.string("dags.gitSync.sshKeySecret")? {
            // Airflow's chart reads the key from `gitSshKey`.
            source.insert(
                "sshKeySecret".into(),
                json!({"name": secret, "key": "gitSshKey"}),
            );
        }
        if let Some(known_hosts) = r.string("dags.gitSync.knownHosts")? {
            source.insert("knownHosts".into(), json!(known_hosts));
        }
        put(out, "sources", json!([source]));
    } else {
        r.get("dags.gitSync.enabled");
    }
    if let Some(enabled) = r.boolean("dags.persistence.enabled")? {
        put(out, "dags.persistence.enabled", json!(enabled));
    }
    persistence(r, out, "dags.persistence")
}

/// A persistence block: Airflow's `accessMode` and `storageClassName` as the chart's
/// `accessModes` and `storageClass`.
fn persistence(
    r: &mut Reader,
    out: &mut Map<String, Value>,
    prefix: &str,
) -> Result<(), FieldError> {
    if let Some(claim) = r.string(&format!("{prefix}.existingClaim"))? {
        put(out, &format!("{prefix}.existingClaim"), json!(claim));
    }
    if let Some(size) = r.string(&format!("{prefix}.size"))? {
        put(out, &format!("{prefix}.size"), json!(size));
    }
    if let Some(class) = r.string(&format!("{prefix}.storageClassName"))? {
        put(out, &format!("{prefix}.storageClass"), json!(class));
    }
    if let Some(mode) = r.string(&format!("{prefix}.accessMode"))? {
        put(out, &format!("{prefix}.accessModes"), json!([mode]));
    }
    Ok(())
}

fn logs(r: &mut Reader, out: &mut Map<String, Value>) -> Result<(), FieldError> {
    let remote = r.boolean("config.logging.remote_logging")?;
    if let Some(folder) = r.string("config.logging.remote_base_log_folder")?
        && remote != Some(false)
    {
        put(out, "logs.remote.url", json!(folder));
    }
    if let Some(enabled) = r.boolean("logs.persistence.enabled")? {
        put(out, "logs.persistence.enabled", json!(enabled));
    }
    persistence(r, out, "logs.persistence")
}

fn core_config(r: &mut Reader, out: &mut Map<String, Value>) -> Result<(), FieldError> {
    if let Some(n) = r.integer("config.core.parallelism")? {
        put(out, "core.parallelism", json!(n));
    }
    if let Some(paused) = r.boolean("config.core.dags_are_paused_at_creation")? {
        put(out, "core.dagsArePausedAtCreation", json!(paused));
    }
    if let Some(examples) = r.boolean("config.core.load_examples")? {
        put(out, "core.loadExamples", json!(examples));
    }
    for path in ["config.webserver.base_url", "config.api.base_url"] {
        if let Some(url) = r.string(path)? {
            put(out, "api.publicUrl", json!(url));
        }
    }
    if let Some(level) = r.string("config.logging.logging_level")? {
        put(out, "logLevel", json!(level.to_lowercase()));
    }
    Ok(())
}

fn ingress(r: &mut Reader, out: &mut Map<String, Value>) -> Result<(), FieldError> {
    for prefix in ["ingress.web", "ingress.apiServer"] {
        if let Some(enabled) = r.boolean(&format!("{prefix}.enabled"))? {
            put(out, "ingress.enabled", json!(enabled));
        }
        if let Some(class) = r.string(&format!("{prefix}.ingressClassName"))? {
            put(out, "ingress.className", json!(class));
        }
        if let Some(annotations) = r.mapping(&format!("{prefix}.annotations"))? {
            put(out, "ingress.annotations", Value::Object(annotations));
        }
        if let Some(path) = r.string(&format!("{prefix}.path"))? {
            put(out, "ingress.path", json!(path));
        }
        if let Some(kind) = r.string(&format!("{prefix}.pathType"))? {
            put(out, "ingress.pathType", json!(kind));
        }
        if let Some(hosts) = r.list(&format!("{prefix}.hosts"))? {
            let (names, tls) = ingress_hosts(&hosts, prefix)?;
            put(out, "ingress.hosts", json!(names));
            if !tls.is_empty() {
                put(out, "ingress.tls", json!(tls));
            }
        }
        if let Some(tls) = r.mapping(&format!("{prefix}.tls"))?
            && tls.get("enabled") == Some(&json!(true))
        {
            let hosts = out
                .get("ingress")
                .and_then(|i| i.get("hosts"))
                .cloned()
                .unwrap_or(json!([]));
            put(
                out,
                "ingress.tls",
                json!([{"secretName": tls.get("secretName").cloned().unwrap_or(json!("")), "hosts": hosts}]),
            );
        }
    }
    Ok(())
}

/// Airflow's hosts: names, or `{name, tls: {enabled, secretName}}`.
fn ingress_hosts(hosts: &[Value], prefix: &str) -> Result<(Vec<String>, Vec<Value>), FieldError> {
    let mut names = Vec::new();
    let mut tls = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        match host {
            Value::String(name) => names.push(name.clone()),
            Value::Object(entry) => {
                let name = entry.get("name").and_then(Value::as_str).ok_or_else(|| {
                    wrong(&format!("{prefix}.hosts[{i}].name"), "a host name", host)
                })?;
                names.push(name.to_owned());
                let host_tls = entry.get("tls");
                if host_tls.and_then(|t| t.get("enabled")) == Some(&json!(true)) {
                    let secret = host_tls.and_then(|t| t.get("secretName")).cloned();
                    tls.push(json!({
                        "secretName": secret.unwrap_or(json!("")),
                        "hosts": [name],
                    }));
                }
            }
            other => return Err(wrong(&format!("{prefix}.hosts[{i}]"), "a host name", other)),
        }
    }
    Ok((names, tls))
}

fn admin(r: &mut Reader, out: &mut Map<String, Value>) -> Result<(), FieldError> {
    for prefix in ["webserver.defaultUser", "createUserJob.defaultUser"] {
        if let Some(enabled) = r.boolean(&format!("{prefix}.enabled"))? {
            put(out, "auth.admin.enabled", json!(enabled));
        }
        for (airflow, updraft) in [
            ("username", "username"),
            ("email", "email"),
            ("firstName", "firstname"),
            ("lastName", "lastname"),
            ("password", "password"),
        ] {
            if let Some(value) = r.string(&format!("{prefix}.{airflow}"))? {
                put(out, &format!("auth.admin.{updraft}"), json!(value));
            }
        }
    }
    Ok(())
}

/// `env` (EnvVar objects) and `extraEnv` (EnvVar objects as YAML text, Airflow's habit).
fn env(r: &mut Reader, out: &mut Map<String, Value>) -> Result<(), FieldError> {
    let mut vars = r.list("env")?.unwrap_or_default();
    if let Some(text) = r.string("extraEnv")? {
        let extra: Value = serde_saphyr::from_str(&text).map_err(|e| FieldError {
            path: "extraEnv".into(),
            expected: "a YAML list of environment variables",
            found: e.to_string(),
        })?;
        match extra {
            Value::Array(items) => vars.extend(items),
            Value::Null => {}
            other => {
                return Err(wrong(
                    "extraEnv",
                    "a YAML list of environment variables",
                    &other,
                ));
            }
        }
    }
    if !vars.is_empty() {
        put(out, "env", Value::Array(vars));
    }
    Ok(())
}

/// Every leaf of the Airflow values not read by a rule, with the reason it stays behind.
fn left_behind(airflow: &Value, used: &BTreeSet<String>) -> Vec<(String, String)> {
    let mut leaves = Vec::new();
    collect_leaves(airflow, String::new(), &mut leaves);
    leaves
        .into_iter()
        .filter(|path| {
            !used
                .iter()
                .any(|u| path == u || path.starts_with(&format!("{u}.")))
        })
        .map(|path| {
            let why = NOT_NEEDED
                .iter()
                .find(|(prefix, _)| path == *prefix || path.starts_with(&format!("{prefix}.")))
                .map(|(_, why)| why.to_string())
                .unwrap_or_else(|| {
                    "no equivalent in the updraft chart; see its values.yaml (`config:` takes \
                     more updraft.toml settings)"
                        .to_owned()
                });
            (path, why)
        })
        .collect()
}

fn collect_leaves(value: &Value, path: String, leaves: &mut Vec<String>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                let child_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                collect_leaves(child, child_path, leaves);
            }
        }
        // Empty values and nulls are Airflow's defaults restated: nothing to carry.
        Value::Null => {}
        Value::Object(_) => {}
        Value::Array(items) if items.is_empty() => {}
        Value::String(s) if s.is_empty() => {}
        _ if path.is_empty() => {}
        _ => leaves.push(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn converted(yaml: &str) -> Conversion {
        convert(&serde_saphyr::from_str(yaml).unwrap()).unwrap()
    }

    #[test]
    fn git_sync_over_ssh_becomes_a_source_with_its_key_and_known_hosts() {
        let c = converted(
            "dags:\n  gitSync:\n    enabled: true\n    repo: git@github.com:example/dags.git\n    branch: main\n    rev: HEAD\n    depth: 1\n    maxFailures: 0\n    subPath: \"\"\n    sshKeySecret: airflow-ssh-git-secret\n    knownHosts: |\n      github.com ssh-ed25519 AAAA\n    containerName: git-sync\n    uid: 65533\n",
        );
        assert_eq!(
            c.values["sources"],
            json!([{
                "name": "dags",
                "git": "git@github.com:example/dags.git",
                "ref": "main",
                "depth": 1,
                "maxFailures": 0,
                "sshKeySecret": {"name": "airflow-ssh-git-secret", "key": "gitSshKey"},
                "knownHosts": "github.com ssh-ed25519 AAAA\n",
            }])
        );
        let left: Vec<&str> = c.left.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(left, ["dags.gitSync.containerName", "dags.gitSync.uid"]);
    }

    #[test]
    fn the_metadata_connection_becomes_a_url_with_its_password_encoded() {
        let c = converted(
            "data:\n  metadataConnection:\n    user: airflow\n    pass: 'p@ss:word'\n    protocol: postgresql\n    host: 10.0.0.5\n    port: 5432\n    db: airflow\n    sslmode: require\n",
        );
        assert_eq!(
            c.values["database"]["url"],
            "postgres://airflow:p%40ss%3Aword@10.0.0.5:5432/airflow?sslmode=require"
        );
        assert!(c.left.is_empty(), "{:?}", c.left);
    }

    #[test]
    fn a_mysql_metadata_database_is_refused_naming_the_field() {
        let airflow: Value =
            serde_saphyr::from_str("data:\n  metadataConnection:\n    protocol: mysql\n").unwrap();
        let error = convert(&airflow).unwrap_err().to_string();
        assert!(
            error.contains("`data.metadataConnection.protocol`"),
            "{error}"
        );
        assert!(error.contains("mysql"), "{error}");
    }

    #[test]
    fn a_value_of_the_wrong_kind_is_named_by_its_path() {
        let airflow: Value = serde_saphyr::from_str("scheduler:\n  replicas: two\n").unwrap();
        let error = convert(&airflow).unwrap_err().to_string();
        assert_eq!(
            error,
            "`scheduler.replicas`: expected a whole number, found the text \"two\""
        );
    }

    #[test]
    fn workload_identity_annotations_are_named_and_celery_parts_left_with_reasons() {
        let c = converted(
            "executor: CeleryExecutor\nworkers:\n  replicas: 3\n  serviceAccount:\n    annotations:\n      eks.amazonaws.com/role-arn: arn:aws:iam::1:role/airflow\nredis:\n  enabled: true\nscheduler:\n  replicas: 2\n",
        );
        assert_eq!(
            c.values["workloadIdentity"]["awsRoleArn"],
            "arn:aws:iam::1:role/airflow"
        );
        assert_eq!(c.values["kubernetes"]["executor"], "local");
        assert_eq!(c.values["scheduler"]["replicas"], 2);
        let left: Vec<&str> = c.left.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(left, ["redis.enabled", "workers.replicas"]);
        assert!(c.left[1].1.contains("no Celery workers"));
    }

    #[test]
    fn extra_env_given_as_yaml_text_becomes_env_objects() {
        let c = converted(
            "extraEnv: |\n  - name: AIRFLOW__CORE__DEFAULT_TIMEZONE\n    value: Asia/Tokyo\n",
        );
        assert_eq!(
            c.values["env"],
            json!([{"name": "AIRFLOW__CORE__DEFAULT_TIMEZONE", "value": "Asia/Tokyo"}])
        );
    }

    #[test]
    fn unknown_values_are_listed_never_dropped() {
        let c = converted("somethingNew:\n  deep:\n    flag: true\n");
        assert_eq!(c.left.len(), 1);
        assert_eq!(c.left[0].0, "somethingNew.deep.flag");
        let text = render(&c, Path::new("values.yaml")).unwrap();
        assert!(
            text.contains("#   somethingNew.deep.flag: no equivalent"),
            "{text}"
        );
    }
}
