//! The Helm chart `charts/updraft`: every values file under `charts/updraft/ci/` (one per setup
//! a user's guide describes) is linted and rendered by Helm itself (the `helm-python-sdk`
//! package embeds it) and every object is checked against the Kubernetes schemas
//! (`kubernetes-validate`, offline); the rendered objects are then asserted on here. The wiring
//! tests run what the pods would run: each scenario's `updraft.toml` and environment through
//! `updraft config show`, and the migration job, server and scheduler of the defaults as local
//! processes against PostgreSQL.
//!
//! Needs Python 3 and PyPI (a virtual environment under `target/`, made once) and
//! `UPDRAFT_TEST_POSTGRES_URL`. The tests fail, never skip, without them.

mod common;
#[path = "common/pg.rs"]
mod pg;
mod python;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use common::{DEFAULT_TIMEOUT, SchedulerProcess, bin, http, wait_until};

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../charts/updraft");
const RENDER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/helm/render.py");

/// Every file under `ci/`, by scenario name (`<name>-values.yaml`).
const SCENARIOS: &[&str] = &[
    "aks",
    "cloudsql",
    "default",
    "eks",
    "externalsecrets",
    "gke",
    "pgbouncer",
    "servicemonitor",
    "standalone",
    "tenants",
];

/// Custom resources no offline schema covers; the script skips only these, and says so.
const CUSTOM_KINDS: &[&str] = &[
    "ManagedCertificate",
    "BackendConfig",
    "ExternalSecret",
    "ServiceMonitor",
];

/// The pod executor's API calls in a tenant's namespace (crates/updraft-pods): pods and their
/// logs, and the Secret of each try.
fn pod_executor_rules() -> Value {
    json!([
        {"apiGroups": [""], "resources": ["pods"],
         "verbs": ["create", "get", "list", "watch", "delete"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["secrets"],
         "verbs": ["create", "get", "list", "patch", "delete"]},
    ])
}

fn venv() -> PathBuf {
    python::venv(
        "helm-chart-venv",
        &[
            "helm-python-sdk>=0.2,<0.3",
            "kubernetes-validate>=1.30",
            "pyyaml>=6",
        ],
    )
}

/// One scenario as Helm renders it (release `updraft` in namespace `updraft`).
struct Rendered {
    scenario: String,
    objects: Vec<Value>,
    schema_skipped: Vec<String>,
    secrets: BTreeMap<String, BTreeMap<String, String>>,
}

fn render(scenario: &str) -> Rendered {
    render_with(scenario, &json!({}))
}

/// Lints, renders and validates the chart with `ci/<scenario>-values.yaml` and `extra` values
/// over it; panics with the script's reasons when any step fails.
fn render_with(scenario: &str, extra: &Value) -> Rendered {
    let values = Path::new(CHART).join(format!("ci/{scenario}-values.yaml"));
    render_file(scenario, &values, extra)
}

/// [`render_with`] for any values file.
fn render_file(scenario: &str, values: &Path, extra: &Value) -> Rendered {
    let output = Command::new(venv().join("bin/python"))
        .arg(RENDER)
        .arg(CHART)
        .arg(values)
        .arg(extra.to_string())
        .output()
        .expect("running the render script");
    assert!(
        output.status.success(),
        "{scenario}: the chart does not lint, render or validate:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let parsed: Value = serde_json::from_slice(&output.stdout).expect("the script's JSON");
    Rendered {
        scenario: scenario.to_string(),
        objects: common::as_array(parsed["objects"].clone()),
        schema_skipped: serde_json::from_value(parsed["schema_skipped"].clone()).unwrap(),
        secrets: serde_json::from_value(parsed["secrets"].clone()).unwrap(),
    }
}

impl Rendered {
    fn all(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| o["kind"] == kind).collect()
    }

    fn find(&self, kind: &str, name: &str) -> Option<&Value> {
        self.objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
    }

    fn get(&self, kind: &str, name: &str) -> &Value {
        self.find(kind, name)
            .unwrap_or_else(|| panic!("{}: no {kind} {name}", self.scenario))
    }

    /// The first container of a Deployment's or Job's pod.
    fn container(&self, kind: &str, name: &str) -> &Value {
        &self.get(kind, name)["spec"]["template"]["spec"]["containers"][0]
    }

    fn config_map(&self) -> &Value {
        self.get("ConfigMap", "updraft")
    }

    fn updraft_toml(&self) -> toml::Table {
        let text = self.config_map()["data"]["updraft.toml"]
            .as_str()
            .expect("updraft.toml in the ConfigMap");
        text.parse()
            .unwrap_or_else(|e| panic!("{}: updraft.toml: {e}\n{text}", self.scenario))
    }

    fn annotations(&self, kind: &str, name: &str) -> BTreeMap<String, String> {
        serde_json::from_value(self.get(kind, name)["metadata"]["annotations"].clone()).unwrap()
    }
}

fn env_of<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
}

fn str_list(value: &Value) -> Vec<String> {
    serde_json::from_value(value.clone()).unwrap_or_default()
}

#[test]
fn every_guides_values_file_lints_renders_and_validates() {
    let mut on_disk: Vec<String> = fs::read_dir(Path::new(CHART).join("ci"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let listed: Vec<String> = SCENARIOS
        .iter()
        .map(|s| format!("{s}-values.yaml"))
        .collect();
    assert_eq!(on_disk, listed, "every ci/ file is a scenario of this test");

    for scenario in SCENARIOS {
        let rendered = render(scenario);
        assert!(!rendered.objects.is_empty(), "{scenario}: nothing rendered");
        for skipped in &rendered.schema_skipped {
            let kind = skipped.split('/').next().unwrap();
            assert!(
                CUSTOM_KINDS.contains(&kind),
                "{scenario}: schema skipped for {skipped}"
            );
        }
        // The skipped kinds are exactly the custom resources rendered.
        let custom = rendered
            .objects
            .iter()
            .filter(|o| CUSTOM_KINDS.contains(&o["kind"].as_str().unwrap()))
            .count();
        assert_eq!(custom, rendered.schema_skipped.len(), "{scenario}");
        // Every object the chart names carries its prefix; tenants' namespaces are named by
        // the tenant map.
        for object in rendered.objects.iter().filter(|o| o["kind"] != "Namespace") {
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            assert!(
                name.starts_with("updraft"),
                "{scenario}: {name} is not prefixed"
            );
        }
    }
}

#[test]
fn postgres_runs_two_schedulers_a_server_and_a_migration_hook() {
    let r = render("default");
    let scheduler = r.get("Deployment", "updraft-scheduler");
    assert_eq!(scheduler["spec"]["replicas"], 2);
    let pdb = r.get("PodDisruptionBudget", "updraft-scheduler");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        scheduler["spec"]["selector"]["matchLabels"]
    );

    let sc = r.container("Deployment", "updraft-scheduler");
    assert_eq!(sc["args"], json!(["scheduler"]));
    assert_eq!(
        sc["livenessProbe"]["exec"]["command"],
        json!([
            "updraft",
            "jobs",
            "check",
            "--job-type",
            "SchedulerJob",
            "--local"
        ])
    );
    assert_eq!(
        sc["ports"],
        json!([{"name": "metrics", "containerPort": 9090, "protocol": "TCP"}])
    );
    assert_eq!(
        env_of(sc, "UPDRAFT__SCHEDULER__METRICS_PORT").unwrap()["value"],
        "9090"
    );

    let server = r.container("Deployment", "updraft-server");
    assert_eq!(server["args"], json!(["server"]));
    assert_eq!(server["ports"][0]["name"], "api");
    assert_eq!(server["ports"][0]["containerPort"], 8080);
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(
            server[probe]["httpGet"],
            json!({"path": "/api/v2/monitor/health", "port": "api"}),
            "{probe}"
        );
    }
    let service = r.get("Service", "updraft");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "api");
    assert_eq!(
        service["spec"]["selector"]["app.kubernetes.io/component"],
        "server"
    );

    let job = r.get("Job", "updraft-migration");
    let hooks = r.annotations("Job", "updraft-migration");
    assert_eq!(hooks["helm.sh/hook"], "pre-install,pre-upgrade");
    assert_eq!(
        hooks["helm.sh/hook-delete-policy"],
        "before-hook-creation,hook-succeeded"
    );
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["args"],
        json!(["db", "migrate"])
    );
    assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");
    // Hooks run before the release's Secret exists: the job's URL is in a hook Secret made
    // before it.
    let url = env_of(
        &job["spec"]["template"]["spec"]["containers"][0],
        "UPDRAFT__DATABASE__URL",
    )
    .unwrap();
    let secret = url["valueFrom"]["secretKeyRef"]["name"].as_str().unwrap();
    let secret_hooks = r.annotations("Secret", secret);
    assert_eq!(secret_hooks["helm.sh/hook"], "pre-install,pre-upgrade");
    assert!(
        secret_hooks["helm.sh/hook-weight"].parse::<i32>().unwrap()
            < hooks["helm.sh/hook-weight"].parse::<i32>().unwrap()
    );

    // Every updraft pod runs as the image's non-root user, without a shell anywhere.
    for kind in ["Deployment", "Job"] {
        for object in r.all(kind) {
            let spec = &object["spec"]["template"]["spec"];
            assert_eq!(spec["securityContext"]["runAsUser"], 65532);
            assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
            let container = &spec["containers"][0];
            assert_eq!(
                container["securityContext"]["allowPrivilegeEscalation"],
                false
            );
            assert!(
                container.get("command").is_none(),
                "the image's entrypoint runs"
            );
            let args = container["args"].to_string();
            assert!(!args.contains("sh") && !args.contains("${"), "{args}");
        }
    }
    // The pods roll when updraft.toml changes.
    let checksum = &scheduler["spec"]["template"]["metadata"]["annotations"]["checksum/config"];
    assert_eq!(checksum.as_str().map(str::len), Some(64));
    let changed = render_with("default", &json!({"core": {"parallelism": 7}}));
    assert_ne!(
        &changed.get("Deployment", "updraft-scheduler")["spec"]["template"]["metadata"]["annotations"]
            ["checksum/config"],
        checksum
    );
    assert_eq!(
        changed.updraft_toml()["core"]["parallelism"].as_integer(),
        Some(7)
    );
}

#[test]
fn standalone_is_one_pod_on_a_claim() {
    let r = render("standalone");
    assert!(r.find("Deployment", "updraft-scheduler").is_none());
    assert!(r.find("Deployment", "updraft-server").is_none());
    assert!(r.all("Job").is_empty(), "no migration job");
    let deployment = r.get("Deployment", "updraft-standalone");
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
    let spec = &deployment["spec"]["template"]["spec"];
    assert_eq!(spec["containers"][0]["args"], json!(["standalone"]));
    let claim = r.get("PersistentVolumeClaim", "updraft-home");
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "5Gi");
    let home = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "home")
        .unwrap();
    assert_eq!(home["persistentVolumeClaim"]["claimName"], "updraft-home");
    assert!(env_of(&spec["containers"][0], "UPDRAFT__DATABASE__URL").is_none());
    assert!(
        r.updraft_toml().get("database").is_none(),
        "SQLite, the default"
    );
    assert_eq!(
        r.get("Service", "updraft")["spec"]["selector"]["app.kubernetes.io/component"],
        "standalone"
    );
}

#[test]
fn credentials_never_reach_a_config_map() {
    for scenario in SCENARIOS {
        let r = render(scenario);
        let secret_values: Vec<&String> =
            r.secrets.values().flat_map(|data| data.values()).collect();
        for map in r.all("ConfigMap") {
            let text = map["data"].to_string();
            assert!(!text.contains("postgres://"), "{scenario}: {text}");
            assert!(!text.contains("change-me"), "{scenario}: {text}");
            for value in &secret_values {
                assert!(
                    !text.contains(value.as_str()),
                    "{scenario}: a secret in {text}"
                );
            }
        }
        for kind in ["Deployment", "Job"] {
            for object in r.all(kind) {
                for container in object["spec"]["template"]["spec"]["containers"]
                    .as_array()
                    .unwrap()
                {
                    for name in [
                        "UPDRAFT__DATABASE__URL",
                        "DATABASE_URL",
                        "UPDRAFT__CORE__FERNET_KEY",
                        "UPDRAFT__AUTH__SECRET_KEY",
                        "UPDRAFT__AUTH__OIDC__CLIENT_SECRET",
                        "UPDRAFT_ADMIN_PASSWORD",
                    ] {
                        if let Some(var) = env_of(container, name) {
                            assert!(
                                var.get("value").is_none()
                                    && var["valueFrom"]["secretKeyRef"].is_object(),
                                "{scenario}: {name} inline in {}",
                                object["metadata"]["name"]
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn tenant_namespaces_get_exactly_the_pod_executors_role() {
    let r = render("tenants");
    let roles = r.all("Role");
    let namespaces: Vec<&str> = roles
        .iter()
        .map(|role| role["metadata"]["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(namespaces, ["payments", "shop", "shop-batch"]);
    for role in roles {
        assert_eq!(role["rules"], pod_executor_rules());
        let namespace = role["metadata"]["namespace"].as_str().unwrap();
        let binding = r
            .all("RoleBinding")
            .into_iter()
            .find(|b| b["metadata"]["namespace"] == namespace)
            .expect("a RoleBinding beside each Role");
        assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": "updraft", "namespace": "updraft"}])
        );
    }
    assert!(r.all("ClusterRole").is_empty() && r.all("ClusterRoleBinding").is_empty());
    let toml = r.updraft_toml();
    let kubernetes = toml["kubernetes"].as_table().unwrap();
    assert_eq!(kubernetes["enabled"].as_bool(), Some(true));
    assert_eq!(toml["core"]["executor"].as_str(), Some("kubernetes"));
    let namespaces = kubernetes["namespaces"].as_table().unwrap();
    assert_eq!(
        namespaces["shop"].as_array().unwrap(),
        &vec![toml::Value::from("shop"), toml::Value::from("shop-batch")]
    );
    assert_eq!(namespaces.len(), 2);
    // A git source over HTTPS: its token and webhook secret as files mounted from the Secret.
    let source = &toml["sources"].as_array().unwrap()[0];
    assert_eq!(
        source["token_file"].as_str(),
        Some("/var/run/secrets/updraft/sources/platform/token")
    );
    assert_eq!(source["username"].as_str(), Some("ci"));
    let spec = &r.get("Deployment", "updraft-scheduler")["spec"]["template"]["spec"];
    let projected = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "sources")
        .expect("the sources volume");
    assert!(projected.to_string().contains(r#""path":"platform/token""#));
    assert_eq!(spec["serviceAccountName"], "updraft");
}

#[test]
fn gke_puts_iap_and_a_managed_certificate_in_front_and_uses_workload_identity() {
    let r = render("gke");
    let backend = r.get("BackendConfig", "updraft");
    assert_eq!(
        backend["spec"]["iap"],
        json!({"enabled": true, "oauthclientCredentials": {"secretName": "iap-oauth-client"}})
    );
    assert_eq!(
        backend["spec"]["healthCheck"],
        json!({"type": "HTTP", "requestPath": "/api/v2/monitor/health", "port": 8080})
    );
    let service = r.annotations("Service", "updraft");
    assert_eq!(service["cloud.google.com/neg"], r#"{"ingress": true}"#);
    let named: Value = serde_json::from_str(&service["cloud.google.com/backend-config"]).unwrap();
    assert_eq!(named, json!({"default": "updraft"}));
    let certificate = r.get("ManagedCertificate", "updraft");
    assert_eq!(
        certificate["spec"]["domains"],
        json!(["workflow.momota.dev"])
    );
    let ingress = r.annotations("Ingress", "updraft");
    assert_eq!(ingress["networking.gke.io/managed-certificates"], "updraft");
    assert_eq!(
        ingress["kubernetes.io/ingress.global-static-ip-name"],
        "airflow-v2-web-static-ip"
    );
    assert_eq!(
        r.annotations("ServiceAccount", "updraft")["iam.gke.io/gcp-service-account"],
        "updraft@my-project.iam.gserviceaccount.com"
    );
    let toml = r.updraft_toml();
    assert_eq!(
        toml["auth"]["iap"]["audience"].as_str(),
        Some("/projects/123456789012/global/backendServices/4567890123456789")
    );
    assert_eq!(
        toml["logging"]["remote_base_log_folder"].as_str(),
        Some("gs://momota-updraft-logs/logs")
    );
    let source = &toml["sources"].as_array().unwrap()[0];
    assert_eq!(
        source["ssh_key_file"].as_str(),
        Some("/var/run/secrets/updraft/sources/team-c/ssh-key")
    );
    assert_eq!(
        source["known_hosts_file"].as_str(),
        Some("/var/run/secrets/updraft/sources/team-c/known_hosts")
    );
    assert!(
        r.config_map()["data"]["known-hosts-team-c"]
            .as_str()
            .unwrap()
            .starts_with("github.com ssh-ed25519 ")
    );
    // The user's own Secrets, by the names given.
    let server = r.container("Deployment", "updraft-server");
    assert_eq!(
        env_of(server, "UPDRAFT__DATABASE__URL").unwrap()["valueFrom"]["secretKeyRef"],
        json!({"name": "updraft-database", "key": "url"})
    );
    assert_eq!(
        env_of(server, "UPDRAFT__CORE__FERNET_KEY").unwrap()["valueFrom"]["secretKeyRef"]["name"],
        "updraft-fernet"
    );
    assert!(!r.secrets["updraft"].contains_key("database-url"));
}

#[test]
fn eks_and_aks_get_their_identities_storage_and_sign_in() {
    let eks = render("eks");
    assert_eq!(
        eks.annotations("ServiceAccount", "updraft")["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::123456789012:role/updraft"
    );
    assert_eq!(
        eks.get("Ingress", "updraft")["spec"]["ingressClassName"],
        "alb"
    );
    for claim in ["updraft-dags", "updraft-logs"] {
        let pvc = eks.get("PersistentVolumeClaim", claim);
        assert_eq!(pvc["spec"]["storageClassName"], "efs-sc");
        assert_eq!(pvc["spec"]["accessModes"], json!(["ReadWriteMany"]));
    }
    let mounts = eks.container("Deployment", "updraft-scheduler")["volumeMounts"].to_string();
    assert!(
        mounts.contains(r#""mountPath":"/home/nonroot/dags""#),
        "{mounts}"
    );
    assert!(
        mounts.contains(r#""mountPath":"/home/nonroot/logs""#),
        "{mounts}"
    );
    let toml = eks.updraft_toml();
    assert_eq!(
        toml["sources"].as_array().unwrap()[0]["objects"].as_str(),
        Some("s3://example-updraft-dags/dags")
    );
    assert_eq!(
        toml["logging"]["remote_base_log_folder"].as_str(),
        Some("s3://example-updraft-logs/updraft")
    );
    assert_eq!(
        env_of(eks.container("Deployment", "updraft-server"), "AWS_REGION").unwrap()["value"],
        "ap-northeast-2"
    );

    let aks = render("aks");
    let account = aks.annotations("ServiceAccount", "updraft");
    assert_eq!(
        account["azure.workload.identity/client-id"],
        "00000000-0000-0000-0000-000000000001"
    );
    for name in ["updraft-scheduler", "updraft-server"] {
        let labels = &aks.get("Deployment", name)["spec"]["template"]["metadata"]["labels"];
        assert_eq!(labels["azure.workload.identity/use"], "true", "{name}");
    }
    let default = render("default");
    let labels =
        &default.get("Deployment", "updraft-server")["spec"]["template"]["metadata"]["labels"];
    assert!(labels.get("azure.workload.identity/use").is_none());
    assert_eq!(
        aks.get("PersistentVolumeClaim", "updraft-logs")["spec"]["storageClassName"],
        "azurefile-csi"
    );
    let toml = aks.updraft_toml();
    assert_eq!(
        toml["logging"]["remote_base_log_folder"].as_str(),
        Some("az://updraft-logs/logs")
    );
    let oidc = &toml["auth"]["oidc"];
    assert_eq!(
        oidc["issuer"].as_str(),
        Some("https://keycloak.example.com/realms/data")
    );
    assert_eq!(oidc["client_id"].as_str(), Some("airflow"));
    assert_eq!(
        oidc["roles_claim"].as_str(),
        Some("resource_access.airflow.roles")
    );
    assert_eq!(
        oidc["role_mapping"]["team-a-dev"].as_array().unwrap().len(),
        2
    );
    assert!(oidc.get("client_secret").is_none());
    assert_eq!(
        env_of(
            aks.container("Deployment", "updraft-server"),
            "UPDRAFT__AUTH__OIDC__CLIENT_SECRET"
        )
        .unwrap()["valueFrom"]["secretKeyRef"],
        json!({"name": "keycloak-client", "key": "client-secret"})
    );
}

#[test]
fn pgbouncer_pools_the_services_and_the_migration_stays_direct() {
    let r = render("pgbouncer");
    let secret = &r.secrets["updraft"];
    assert_eq!(
        secret["database-pooled-url"],
        "postgres://updraft:change-me@updraft-pgbouncer:5432/updraft"
    );
    let pooled = |name: &str| {
        env_of(r.container("Deployment", name), "UPDRAFT__DATABASE__URL").unwrap()["valueFrom"]
            ["secretKeyRef"]["key"]
            .clone()
    };
    assert_eq!(pooled("updraft-scheduler"), "database-pooled-url");
    assert_eq!(pooled("updraft-server"), "database-pooled-url");
    let migration = r.container("Job", "updraft-migration");
    let reference =
        &env_of(migration, "UPDRAFT__DATABASE__URL").unwrap()["valueFrom"]["secretKeyRef"];
    assert_eq!(
        r.secrets[reference["name"].as_str().unwrap()][reference["key"].as_str().unwrap()],
        "postgres://updraft:change-me@postgres.db.svc:5432/updraft"
    );
    let toml = r.updraft_toml();
    assert_eq!(toml["database"]["statement_cache"].as_bool(), Some(false));
    assert_eq!(toml["database"]["migrate_on_start"].as_bool(), Some(false));
    let bouncer = r.container("Deployment", "updraft-pgbouncer");
    assert_eq!(
        env_of(bouncer, "POOL_MODE").unwrap()["value"],
        "transaction"
    );
    assert_eq!(
        r.get("Service", "updraft-pgbouncer")["spec"]["ports"][0]["port"],
        5432
    );

    // The administrator, after install, without a shell: Kubernetes expands $(VAR).
    let admin = r.get("Job", "updraft-create-admin");
    assert_eq!(
        r.annotations("Job", "updraft-create-admin")["helm.sh/hook"],
        "post-install"
    );
    let container = &admin["spec"]["template"]["spec"]["containers"][0];
    let args = str_list(&container["args"]);
    assert_eq!(args[..2], ["users", "create"]);
    assert_eq!(args.last().unwrap(), "$(UPDRAFT_ADMIN_PASSWORD)");
    assert_eq!(secret["admin-password"], "change-me-too");
}

#[test]
fn external_secrets_make_the_secret_the_pods_read() {
    let r = render("externalsecrets");
    assert!(
        r.find("Secret", "updraft").is_none(),
        "the operator makes it"
    );
    let external = r.get("ExternalSecret", "updraft");
    assert_eq!(external["apiVersion"], "external-secrets.io/v1");
    assert_eq!(external["spec"]["target"]["name"], "updraft");
    assert_eq!(
        external["spec"]["secretStoreRef"],
        json!({"name": "azure-key-vault", "kind": "SecretStore"})
    );
    let keys: Vec<&str> = external["spec"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["secretKey"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["database-url", "fernet-key", "jwt-secret"]);
    // Every key the pods read from it is one the ExternalSecret fills.
    for kind in ["Deployment", "Job"] {
        for object in r.all(kind) {
            for var in object["spec"]["template"]["spec"]["containers"][0]["env"]
                .as_array()
                .unwrap()
            {
                let reference = &var["valueFrom"]["secretKeyRef"];
                if reference["name"] == "updraft" {
                    assert!(keys.contains(&reference["key"].as_str().unwrap()), "{var}");
                }
            }
        }
    }
    // It exists before the migration hook runs.
    assert_eq!(
        r.annotations("ExternalSecret", "updraft")["helm.sh/hook"],
        "pre-install,pre-upgrade"
    );
}

#[test]
fn the_service_monitor_scrapes_servers_and_schedulers() {
    let r = render("servicemonitor");
    let monitor = r.get("ServiceMonitor", "updraft");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    let endpoints = &monitor["spec"]["endpoints"];
    assert_eq!(endpoints[0]["port"], "http");
    assert_eq!(endpoints[1]["port"], "metrics");
    assert_eq!(endpoints[0]["path"], "/metrics");
    // The API port's /metrics needs sign-in: Prometheus sends the token of the named Secret,
    // which the servers take as `[auth] metrics_token`; the schedulers do not get it.
    assert_eq!(
        endpoints[0]["authorization"]["credentials"],
        json!({"name": "updraft-metrics-token", "key": "token"})
    );
    assert!(endpoints[1].get("authorization").is_none());
    let token_from = |name: &str| {
        r.container("Deployment", name)["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "UPDRAFT__AUTH__METRICS_TOKEN")
            .map(|v| v["valueFrom"]["secretKeyRef"].clone())
    };
    assert_eq!(
        token_from("updraft-server"),
        Some(json!({"name": "updraft-metrics-token", "key": "token"}))
    );
    assert_eq!(token_from("updraft-scheduler"), None);
    // The ports it names exist on the Services it selects.
    assert_eq!(
        r.get("Service", "updraft")["spec"]["ports"][0]["name"],
        "http"
    );
    let metrics = r.get("Service", "updraft-scheduler-metrics");
    assert_eq!(metrics["spec"]["ports"][0]["name"], "metrics");
    assert_eq!(metrics["spec"]["ports"][0]["targetPort"], "metrics");
    assert_eq!(
        r.get("PodDisruptionBudget", "updraft-server")["spec"]["maxUnavailable"],
        1
    );
}

// ---- wiring: what the pods run, run here -----------------------------------------------------

/// One container of a rendered pod made into a local process: its files under `root` where
/// the pod would mount them, its environment resolved from the rendered Secrets and
/// ConfigMaps.
struct LocalPod {
    root: PathBuf,
    env: Vec<(String, String)>,
    args: Vec<String>,
}

impl LocalPod {
    fn new(r: &Rendered, kind: &str, name: &str, root: &Path) -> LocalPod {
        let spec = &r.get(kind, name)["spec"]["template"]["spec"];
        let container = &spec["containers"][0];
        let mounts = container["volumeMounts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let local = |path: &str| root.join(path.trim_start_matches('/'));
        for mount in &mounts {
            let path = local(mount["mountPath"].as_str().unwrap());
            let volume = spec["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == mount["name"])
                .unwrap_or_else(|| panic!("{name}: no volume for {mount}"));
            if let Some(map) = volume["configMap"]["name"].as_str() {
                let data = &r.get("ConfigMap", map)["data"];
                match mount["subPath"].as_str() {
                    Some(key) => {
                        fs::create_dir_all(path.parent().unwrap()).unwrap();
                        fs::write(&path, data[key].as_str().unwrap()).unwrap();
                    }
                    None => {
                        fs::create_dir_all(&path).unwrap();
                        for (key, value) in data.as_object().unwrap() {
                            fs::write(path.join(key), value.as_str().unwrap()).unwrap();
                        }
                    }
                }
            } else if let Some(sources) = volume["projected"]["sources"].as_array() {
                for source in sources {
                    let (kind, from) = if source.get("secret").is_some() {
                        ("secret", &source["secret"])
                    } else {
                        ("configMap", &source["configMap"])
                    };
                    let name = from["name"].as_str().unwrap();
                    for item in from["items"].as_array().unwrap() {
                        let key = item["key"].as_str().unwrap();
                        let text = if kind == "secret" {
                            r.secrets
                                .get(name)
                                .and_then(|s| s.get(key))
                                .cloned()
                                .unwrap_or_else(|| format!("stand-in {key}"))
                        } else {
                            r.get("ConfigMap", name)["data"][key]
                                .as_str()
                                .unwrap()
                                .to_string()
                        };
                        let file = path.join(item["path"].as_str().unwrap());
                        fs::create_dir_all(file.parent().unwrap()).unwrap();
                        fs::write(file, text).unwrap();
                    }
                }
            } else {
                assert!(
                    volume.get("emptyDir").is_some()
                        || volume.get("persistentVolumeClaim").is_some(),
                    "{name}: volume {volume} is not mapped by this test"
                );
                fs::create_dir_all(&path).unwrap();
            }
        }
        let mut env: Vec<(String, String)> = Vec::new();
        for var in container["env"].as_array().unwrap() {
            let name = var["name"].as_str().unwrap().to_string();
            let value = if let Some(value) = var["value"].as_str() {
                value.to_string()
            } else if let Some(reference) = var["valueFrom"]["secretKeyRef"].as_object() {
                let secret = reference["name"].as_str().unwrap();
                r.secrets[secret][reference["key"].as_str().unwrap()].clone()
            } else if let Some(reference) = var["valueFrom"]["configMapKeyRef"].as_object() {
                let map = r.get("ConfigMap", reference["name"].as_str().unwrap());
                map["data"][reference["key"].as_str().unwrap()]
                    .as_str()
                    .unwrap()
                    .to_string()
            } else {
                panic!("{name}: env {var} is not resolved by this test");
            };
            // A path inside a mount is the same path under `root`.
            let value = if mounts
                .iter()
                .any(|m| value.starts_with(m["mountPath"].as_str().unwrap()))
            {
                local(&value).display().to_string()
            } else {
                value
            };
            env.push((name, value));
        }
        let expand = |arg: &str, env: &[(String, String)]| {
            let mut arg = arg.to_string();
            for (name, value) in env {
                arg = arg.replace(&format!("$({name})"), value);
            }
            arg
        };
        let args = str_list(&container["args"])
            .iter()
            .map(|a| expand(a, &env))
            .collect();
        LocalPod {
            root: root.to_path_buf(),
            env,
            args,
        }
    }

    /// `updraft ARGS` with exactly the pod's environment (and a PATH).
    fn command(&self, args: &[String]) -> Command {
        let mut cmd = Command::new(bin());
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("UPDRAFT_LOG", "info")
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    fn run(&self) -> std::process::Output {
        self.command(&self.args).output().expect("running updraft")
    }

    fn start(&self, label: &str) -> SchedulerProcess {
        SchedulerProcess::spawn(
            self.command(&self.args),
            self.root.join(format!("{label}.log")),
        )
    }
}

#[test]
fn every_scenarios_updraft_toml_and_environment_are_accepted_by_updraft() {
    for scenario in SCENARIOS {
        let r = render(scenario);
        let name = if *scenario == "standalone" {
            "updraft-standalone"
        } else {
            "updraft-scheduler"
        };
        let root = tempfile::tempdir().unwrap();
        let pod = LocalPod::new_lenient(&r, name, root.path());
        let out = pod
            .command(&["config".into(), "show".into()])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{scenario}: updraft refuses the rendered configuration:\n{}\n--- updraft.toml ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            r.config_map()["data"]["updraft.toml"].as_str().unwrap()
        );
        assert!(!stdout.contains("change-me"), "{scenario}: {stdout}");
    }
}

impl LocalPod {
    /// [`LocalPod::new`] for a scenario whose Secrets come from outside the chart: such values
    /// are stand-ins (a database URL nobody connects to).
    fn new_lenient(r: &Rendered, name: &str, root: &Path) -> LocalPod {
        let mut filled = Rendered {
            scenario: r.scenario.clone(),
            objects: r.objects.clone(),
            schema_skipped: Vec::new(),
            secrets: r.secrets.clone(),
        };
        let container = r.container("Deployment", name).clone();
        for var in container["env"].as_array().unwrap() {
            if let Some(reference) = var["valueFrom"]["secretKeyRef"].as_object() {
                let secret = reference["name"].as_str().unwrap().to_string();
                let key = reference["key"].as_str().unwrap().to_string();
                let stand_in = if key.contains("url") {
                    "postgres://stand-in@127.0.0.1:1/updraft".to_string()
                } else {
                    format!("stand-in-{key}")
                };
                filled
                    .secrets
                    .entry(secret)
                    .or_default()
                    .entry(key)
                    .or_insert(stand_in);
            }
        }
        LocalPod::new(&filled, "Deployment", name, root)
    }
}

#[test]
fn the_rendered_migration_server_and_scheduler_run_against_postgres() {
    let database = pg::TestDatabase::create();
    let port = free_port();
    let metrics = free_port();
    let r = render_with(
        "default",
        &json!({
            "database": {"url": database.url},
            "api": {"port": port},
            "scheduler": {"metrics": {"port": metrics}},
            // The services must find the schema the migration job made.
            "config": {"database": {"migrate_on_start": false}},
        }),
    );
    let root = tempfile::tempdir().unwrap();

    let migration = LocalPod::new(
        &r,
        "Job",
        "updraft-migration",
        &root.path().join("migration"),
    );
    let out = migration.run();
    assert!(
        out.status.success(),
        "updraft db migrate failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let server = LocalPod::new(
        &r,
        "Deployment",
        "updraft-server",
        &root.path().join("server"),
    );
    let server_process = server.start("server");
    let address = format!("127.0.0.1:{port}");
    let probe = r.container("Deployment", "updraft-server")["readinessProbe"]["httpGet"]["path"]
        .as_str()
        .unwrap()
        .strip_prefix("/api/v2")
        .unwrap()
        .to_string();
    wait_until(
        "the server's health check",
        Duration::from_secs(60),
        || match http::try_api(&address, "GET", &probe, None) {
            Some((200, _)) => Some(()),
            _ => None,
        },
    );
    assert!(
        server_process.output().contains(&port.to_string()),
        "{}",
        server_process.output()
    );

    let scheduler = LocalPod::new(
        &r,
        "Deployment",
        "updraft-scheduler",
        &root.path().join("scheduler"),
    );
    let scheduler_process = scheduler.start("scheduler");
    let health = wait_until(
        "a running scheduler in the health check",
        Duration::from_secs(60),
        || {
            let (status, body) = http::try_api(&address, "GET", &probe, None)?;
            (status == 200 && body["scheduler"]["status"] == "healthy").then_some(body)
        },
    );
    assert_eq!(health["metadatabase"]["status"], "healthy", "{health}");
    let jobs = scheduler
        .command(&["jobs".into(), "list".into(), "-o".into(), "json".into()])
        .output()
        .unwrap();
    let jobs: Value = serde_json::from_slice(&jobs.stdout).expect("jobs list as JSON");
    assert!(
        common::as_array(jobs)
            .iter()
            .any(|j| j["state"] == "running" && j["pid"] == scheduler_process.pid()),
        "{}",
        scheduler_process.output()
    );

    // The chart's generated Fernet key is one updraft takes: a variable is stored encrypted.
    let set = scheduler
        .command(&[
            "variables".into(),
            "set".into(),
            "chart_check".into(),
            "1".into(),
        ])
        .output()
        .unwrap();
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );

    // The liveness probe as the pod runs it.
    let command = str_list(
        &r.container("Deployment", "updraft-scheduler")["livenessProbe"]["exec"]["command"],
    );
    let probe = scheduler.command(&command[1..]).output().unwrap();
    assert!(
        probe.status.success(),
        "the liveness probe fails on a live scheduler:\n{}",
        String::from_utf8_lossy(&probe.stderr)
    );

    // What the ServiceMonitor scrapes: the scheduler's metrics port, without sign-in.
    let scraped = wait_until(
        "the scheduler's metrics port",
        Duration::from_secs(60),
        || common::http::get_text(&format!("127.0.0.1:{metrics}"), "/metrics"),
    );
    assert_eq!(scraped.0, 200, "{}", scraped.1);
    assert!(
        scraped
            .1
            .contains(r#"airflow_pool_open_slots{pool_name="default_pool"} 128"#),
        "{}",
        scraped.1
    );
    drop(scheduler_process);
    drop(server_process);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `updraft helm-values-from-airflow`: Airflow chart values as the users' guides write them
/// (Celery, git-sync over SSH, GCS logs, GKE workload identity, an Ingress, the default user)
/// become values this chart lints, renders and validates, with the same database Secret,
/// source, logs bucket, identity and host; what has no equivalent is listed with the reason.
#[test]
fn airflow_chart_values_convert_to_values_this_chart_renders() {
    let airflow = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/helm/airflow-values.yaml"
    );
    let out = Command::new(bin())
        .args(["helm-values-from-airflow", airflow])
        .output()
        .unwrap();
    let converted = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for left in [
        "#   workers.replicas: no Celery workers",
        "#   redis.enabled: no Celery broker",
        "#   images.airflow.repository: updraft runs its own image",
        "#   config.logging.remote_log_conn_id: logs reach the bucket",
        "#   dags.gitSync.uid: updraft syncs git itself",
        "#   add the key `pooled-url` to the Secret `airflow-metadata`",
    ] {
        assert!(converted.contains(left), "no `{left}` in:\n{converted}");
    }
    let dir = tempfile::tempdir().unwrap();
    let values = dir.path().join("from-airflow.yaml");
    fs::write(&values, &converted).unwrap();
    let r = render_file("from-airflow", &values, &json!({}));

    assert_eq!(
        r.get("Deployment", "updraft-scheduler")["spec"]["replicas"],
        2
    );
    assert_eq!(r.get("Deployment", "updraft-server")["spec"]["replicas"], 2);
    assert!(r.find("Deployment", "updraft-pgbouncer").is_some());
    let toml = r.updraft_toml();
    assert_eq!(
        toml["sources"][0]["git"].as_str(),
        Some("git@github.com:example/airflow-dags.git")
    );
    assert_eq!(toml["sources"][0]["ref"].as_str(), Some("main"));
    assert_eq!(
        toml["logging"]["remote_base_log_folder"].as_str(),
        Some("gs://example-airflow-logs/logs")
    );
    assert_eq!(
        toml["api"]["public_url"].as_str(),
        Some("https://workflow.example.com")
    );
    let account = r.all("ServiceAccount")[0];
    assert_eq!(
        account["metadata"]["annotations"]["iam.gke.io/gcp-service-account"],
        "airflow@example-project.iam.gserviceaccount.com"
    );
    let ingress = r.all("Ingress")[0];
    assert_eq!(ingress["spec"]["ingressClassName"], "gce");
    assert_eq!(ingress["spec"]["rules"][0]["host"], "workflow.example.com");
    // The database URL comes from Airflow's own Secret: under its key for the migration, and
    // through PgBouncer (the key the header asks to add) for the services.
    let url_ref = |kind: &str, name: &str| {
        r.container(kind, name)["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "UPDRAFT__DATABASE__URL")
            .map(|v| v["valueFrom"]["secretKeyRef"].clone())
            .expect("the database URL variable")
    };
    assert_eq!(
        url_ref("Job", "updraft-migration"),
        json!({"name": "airflow-metadata", "key": "connection"})
    );
    assert_eq!(
        url_ref("Deployment", "updraft-scheduler"),
        json!({"name": "airflow-metadata", "key": "pooled-url"})
    );
}

/// A value of the wrong kind in an Airflow values file stops the conversion, naming the file
/// and the value's path; nothing is printed as values.
#[test]
fn a_wrong_airflow_value_names_the_file_and_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("values.yaml");
    fs::write(&file, "scheduler:\n  replicas: [2]\n").unwrap();
    let out = Command::new(bin())
        .arg("helm-values-from-airflow")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(error.contains(&file.display().to_string()), "{error}");
    assert!(
        error.contains("`scheduler.replicas`: expected a whole number, found a list"),
        "{error}"
    );
}

/// The standalone pod as a local process: SQLite in its claim, the API on its port, healthy
/// with its scheduler; `/metrics` there asks for sign-in, as the chart's values say.
#[test]
fn the_rendered_standalone_pod_runs_on_its_claim() {
    let port = free_port();
    let r = render_with("standalone", &json!({"api": {"port": port}}));
    let root = tempfile::tempdir().unwrap();
    let pod = LocalPod::new(&r, "Deployment", "updraft-standalone", root.path());
    let process = pod.start("standalone");
    let address = format!("127.0.0.1:{port}");
    let health = wait_until(
        "the standalone pod's health check with its scheduler",
        Duration::from_secs(60),
        || {
            let (status, body) = http::try_api(&address, "GET", "/monitor/health", None)?;
            (status == 200 && body["scheduler"]["status"] == "healthy").then_some(body)
        },
    );
    assert_eq!(health["metadatabase"]["status"], "healthy", "{health}");
    let claim = r.get("Deployment", "updraft-standalone")["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v.get("persistentVolumeClaim").is_some())
        .cloned()
        .expect("the standalone pod's claim");
    let home = pod
        .env
        .iter()
        .find(|(name, _)| name == "UPDRAFT_HOME")
        .map(|(_, value)| PathBuf::from(value))
        .expect("UPDRAFT_HOME");
    assert!(
        home.starts_with(root.path()),
        "UPDRAFT_HOME {} is on the claim {claim}",
        home.display()
    );
    let database = wait_until("the SQLite database in the home", DEFAULT_TIMEOUT, || {
        fs::read_dir(&home)
            .ok()?
            .filter_map(Result::ok)
            .find(|e| e.file_name().to_string_lossy().ends_with(".db"))
    });
    assert!(database.metadata().unwrap().len() > 0);
    assert_eq!(
        http::get_text(&address, "/metrics").map(|(status, _)| status),
        Some(401),
        "{}",
        process.output()
    );
    drop(process);
}

/// The YAML block a deploy guide tells users to write as `values-<cloud>.yaml`.
fn guide_values(cloud: &str) -> String {
    let path = format!(
        "{}/../../docs/deploy/{cloud}.md",
        env!("CARGO_MANIFEST_DIR")
    );
    let guide = fs::read_to_string(&path).unwrap();
    let marker = format!("The values, `values-{cloud}.yaml`");
    let at = guide
        .find(&marker)
        .unwrap_or_else(|| panic!("{path}: no `{marker}`"));
    let after = &guide[at..];
    let start = after
        .find("```yaml\n")
        .unwrap_or_else(|| panic!("{path}: no YAML block after `{marker}`"))
        + "```yaml\n".len();
    let end = after[start..]
        .find("```")
        .unwrap_or_else(|| panic!("{path}: the YAML block after `{marker}` does not end"));
    after[start..start + end].to_string()
}

/// The values files the GKE, EKS and AKS guides have users write lint, render and validate,
/// and updraft accepts the configuration and environment they give the scheduler: the
/// guides cannot drift from the chart.
#[test]
fn the_deploy_guides_values_render_and_updraft_accepts_them() {
    for cloud in ["gke", "eks", "aks"] {
        let dir = tempfile::tempdir().unwrap();
        let values = dir.path().join(format!("values-{cloud}.yaml"));
        fs::write(&values, guide_values(cloud)).unwrap();
        let r = render_file(&format!("docs/deploy/{cloud}.md"), &values, &json!({}));
        assert!(
            r.find("Deployment", "updraft-scheduler").is_some(),
            "{cloud}: no schedulers"
        );
        let pod = LocalPod::new_lenient(&r, "updraft-scheduler", dir.path());
        let out = pod
            .command(&["config".into(), "show".into()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{cloud}: updraft refuses the guide's configuration:\n{}\n--- updraft.toml ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            r.config_map()["data"]["updraft.toml"].as_str().unwrap()
        );
    }
}

/// Sidecars where the seeds' setups need them (the Cloud SQL Auth Proxy): a native sidecar in
/// the schedulers and the migration Job (whose pod must end), a plain one in the servers; shared
/// settings from a Secret in every updraft container.
#[test]
fn sidecars_and_shared_settings_reach_the_pods_that_need_them() {
    let r = render("cloudsql");
    let pod = |kind: &str, name: &str| r.get(kind, name)["spec"]["template"]["spec"].clone();
    let scheduler = pod("Deployment", "updraft-scheduler");
    assert_eq!(scheduler["initContainers"][0]["name"], "cloud-sql-proxy");
    assert_eq!(scheduler["initContainers"][0]["restartPolicy"], "Always");
    let server = pod("Deployment", "updraft-server");
    let names: Vec<&str> = server["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["server", "cloud-sql-proxy"]);
    let migration = pod("Job", "updraft-migration");
    assert_eq!(migration["containers"].as_array().unwrap().len(), 1);
    assert_eq!(migration["initContainers"][0]["restartPolicy"], "Always");
    for (kind, name) in [
        ("Deployment", "updraft-scheduler"),
        ("Deployment", "updraft-server"),
        ("Job", "updraft-migration"),
    ] {
        assert_eq!(
            r.container(kind, name)["envFrom"],
            json!([{"secretRef": {"name": "cloud-settings"}}]),
            "{name}"
        );
    }
    // Without the values, nothing of this is rendered.
    let plain = render("default");
    let plain_scheduler = &plain.get("Deployment", "updraft-scheduler")["spec"]["template"]["spec"];
    assert!(plain_scheduler.get("initContainers").is_none());
    assert!(
        plain
            .container("Deployment", "updraft-scheduler")
            .get("envFrom")
            .is_none()
    );
}

/// `createTenantNamespaces`: the tenants' namespaces are made with the release, each once.
#[test]
fn tenant_namespaces_are_created_when_asked() {
    let r = render("tenants");
    let mut namespaces: Vec<&str> = r
        .all("Namespace")
        .iter()
        .map(|n| n["metadata"]["name"].as_str().unwrap())
        .collect();
    namespaces.sort();
    assert_eq!(namespaces, ["payments", "shop", "shop-batch"]);
    assert!(render("default").all("Namespace").is_empty());
}
