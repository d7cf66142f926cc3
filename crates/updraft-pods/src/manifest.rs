//! Building a try's Pod: its base (a template file, an inline spec, or a bare container), the
//! task's overrides, the namespace it may run in, and the name and labels updraft finds it by.
//! No I/O here except reading the template file.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use sha2::{Digest, Sha256};
use updraft_dag::PodTask;

/// Label every updraft pod carries.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "updraft");
/// Keys of the labels (value made label-safe) and annotations (exact value) that say which
/// try a pod belongs to.
pub const TENANT_KEY: &str = "updraft.io/tenant";
pub const DAG_ID_KEY: &str = "updraft.io/dag-id";
pub const RUN_ID_KEY: &str = "updraft.io/run-id";
pub const TASK_ID_KEY: &str = "updraft.io/task-id";
pub const TRY_NUMBER_KEY: &str = "updraft.io/try-number";
/// Annotation naming the container whose exit decides the try.
pub const CONTAINER_KEY: &str = "updraft.io/container";
/// Name of the container updraft creates when there is no template (Airflow's choice).
pub const BASE_CONTAINER: &str = "base";

/// Which try a pod runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TryIdentity {
    pub tenant: String,
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    pub try_number: u32,
}

/// Why a pod could not be built. Nothing has been created in the cluster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("pod template {path}: {message}")]
    Template { path: String, message: String },
    #[error(
        "namespace `{namespace}` is not allowed for tenant `{tenant}` (allowed: {allowed}); set [kubernetes.namespaces] in updraft.toml"
    )]
    Namespace {
        namespace: String,
        tenant: String,
        allowed: String,
    },
    #[error("{0}")]
    Invalid(String),
}

fn template_error(path: &str, message: impl Into<String>) -> ManifestError {
    ManifestError::Template {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// Reads `templates_root/<tenant>/<rel>` as a Pod manifest. The path is refused when it could
/// leave the tenant's folder: absolute, with `..`, or a symbolic link (of the file or of a
/// folder on the way) that resolves outside it.
pub fn load_template(templates_root: &Path, tenant: &str, rel: &str) -> Result<Pod, ManifestError> {
    load_tenant_template(&templates_root.join(tenant), rel)
}

/// Reads `tenant_root/<rel>` as a Pod manifest, `tenant_root` being one tenant's templates
/// folder (in a DAG source's tree at a run's revision, for instance), under the same rules as
/// [`load_template`].
pub fn load_tenant_template(tenant_root: &Path, rel: &str) -> Result<Pod, ManifestError> {
    updraft_dag::check_template_path(rel).map_err(|m| template_error(rel, m))?;
    let root = tenant_root.canonicalize().map_err(|e| {
        template_error(
            rel,
            format!(
                "the tenant's templates folder {} cannot be read: {e}",
                tenant_root.display()
            ),
        )
    })?;
    let file = root.join(rel);
    let resolved = file
        .canonicalize()
        .map_err(|e| template_error(rel, format!("{} cannot be read: {e}", file.display())))?;
    if !resolved.starts_with(&root) {
        return Err(template_error(
            rel,
            format!(
                "resolves to {}, outside the tenant's templates folder {} (symbolic links may not lead out of it)",
                resolved.display(),
                root.display()
            ),
        ));
    }
    parse_template_file(&resolved, rel)
}

/// Reads a Pod manifest file named by the installation itself (the default template), which
/// may be anywhere.
pub fn load_trusted_template(path: &Path) -> Result<Pod, ManifestError> {
    parse_template_file(path, &path.display().to_string())
}

fn parse_template_file(path: &Path, shown: &str) -> Result<Pod, ManifestError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| template_error(shown, format!("cannot be read: {e}")))?;
    parse_template(&text).map_err(|m| template_error(shown, m))
}

/// A Pod manifest from YAML; the message of an error carries its line and column.
pub fn parse_template(text: &str) -> Result<Pod, String> {
    let value: serde_json::Value = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    let kind = value.get("kind").and_then(|k| k.as_str());
    if kind != Some("Pod") {
        return Err(format!(
            "is not a Pod manifest (`kind: Pod` expected, found {})",
            kind.map_or("no kind".to_owned(), |k| format!("`{k}`"))
        ));
    }
    let pod: Pod = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    if pod.spec.as_ref().is_none_or(|s| s.containers.is_empty()) {
        return Err("has no `spec.containers`".to_owned());
    }
    Ok(pod)
}

/// A pod whose spec is `spec` (an inline `pod.spec`).
pub fn pod_from_spec(spec: &serde_json::Value) -> Result<Pod, ManifestError> {
    let spec: PodSpec = serde_json::from_value(spec.clone())
        .map_err(|e| ManifestError::Invalid(format!("`pod.spec` is not a valid pod spec: {e}")))?;
    Ok(Pod {
        spec: Some(spec),
        ..Pod::default()
    })
}

/// A pod with one container, [`BASE_CONTAINER`], running `image`.
pub fn bare_pod(image: &str) -> Pod {
    Pod {
        spec: Some(PodSpec {
            containers: vec![Container {
                name: BASE_CONTAINER.to_owned(),
                image: Some(image.to_owned()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

/// What a try changes in its base pod.
#[derive(Debug, Clone, Default)]
pub struct Overrides<'a> {
    /// The container to change; `None`: the first.
    pub container: Option<&'a str>,
    pub image: Option<&'a str>,
    pub command: Option<Vec<String>>,
    pub args: Option<Vec<String>>,
    /// Set in order (a later entry wins over an earlier one and over the manifest's).
    pub env: Vec<(String, String)>,
    pub resources: Option<&'a updraft_dag::PodResources>,
    pub working_dir: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

impl<'a> Overrides<'a> {
    /// The overrides a rendered `pod:` task asks for, with `env` (the task's environment) set
    /// beneath the pod's own `env`.
    pub fn of_pod_task(pod: &'a PodTask, env: &[(String, String)]) -> Self {
        let mut all_env = env.to_vec();
        all_env.extend(pod.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        Overrides {
            container: pod.container.as_deref(),
            image: pod.image.as_deref(),
            command: pod.cmds.clone(),
            args: pod.args.clone(),
            env: all_env,
            resources: pod.resources.as_ref(),
            working_dir: None,
            labels: pod.labels.clone(),
            annotations: pod.annotations.clone(),
        }
    }
}

/// The namespace a try's pod goes to: the one asked for, else the manifest's, else the first
/// one the tenant is allowed. Refused unless the tenant is allowed it.
pub fn choose_namespace(
    requested: Option<&str>,
    base: &Pod,
    tenant: &str,
    allowed: &[String],
) -> Result<String, ManifestError> {
    let chosen = requested
        .map(str::to_owned)
        .or_else(|| base.metadata.namespace.clone())
        .or_else(|| allowed.first().cloned())
        .ok_or_else(|| {
            ManifestError::Invalid(format!("tenant `{tenant}` is allowed no namespace"))
        })?;
    if allowed.contains(&chosen) {
        Ok(chosen)
    } else {
        Err(ManifestError::Namespace {
            namespace: chosen,
            tenant: tenant.to_owned(),
            allowed: allowed.join(", "),
        })
    }
}

/// The try's pod: `base` with the overrides applied, named and labelled for `id`, in
/// `namespace`, never restarted by Kubernetes (retries are updraft's). Returns the pod and the
/// name of the container whose exit decides the try.
pub fn build_pod(
    mut base: Pod,
    overrides: &Overrides<'_>,
    id: &TryIdentity,
    namespace: &str,
) -> Result<(Pod, String), ManifestError> {
    let spec = base.spec.get_or_insert_with(PodSpec::default);
    let container = pick_container(spec, overrides.container)?;
    apply_to_container(container, overrides);
    let container_name = container.name.clone();
    if container.image.as_deref().is_none_or(str::is_empty) {
        return Err(ManifestError::Invalid(format!(
            "container `{container_name}` has no image: set `pod.image` or an image in the template"
        )));
    }
    spec.restart_policy = Some("Never".to_owned());

    let meta = &mut base.metadata;
    meta.name = Some(pod_name(id));
    meta.generate_name = None;
    meta.namespace = Some(namespace.to_owned());
    meta.resource_version = None;
    meta.uid = None;
    meta.creation_timestamp = None;
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    labels.extend(overrides.labels.clone());
    labels.extend(identity_labels(id));
    let annotations = meta.annotations.get_or_insert_with(BTreeMap::new);
    annotations.extend(overrides.annotations.clone());
    annotations.extend(identity_annotations(id));
    annotations.insert(CONTAINER_KEY.to_owned(), container_name.clone());
    base.status = None;
    Ok((base, container_name))
}

fn pick_container<'p>(
    spec: &'p mut PodSpec,
    name: Option<&str>,
) -> Result<&'p mut Container, ManifestError> {
    let names: Vec<String> = spec.containers.iter().map(|c| c.name.clone()).collect();
    let found = match name {
        Some(wanted) => spec.containers.iter_mut().find(|c| c.name == wanted),
        None => spec.containers.first_mut(),
    };
    found.ok_or_else(|| match name {
        Some(wanted) => ManifestError::Invalid(format!(
            "the pod has no container `{wanted}` (its containers: {})",
            names.join(", ")
        )),
        None => ManifestError::Invalid("the pod has no containers".to_owned()),
    })
}

fn apply_to_container(c: &mut Container, o: &Overrides<'_>) {
    if let Some(image) = o.image {
        c.image = Some(image.to_owned());
    }
    if let Some(command) = &o.command {
        c.command = Some(command.clone());
    }
    if let Some(args) = &o.args {
        c.args = Some(args.clone());
    }
    if let Some(dir) = &o.working_dir {
        c.working_dir = Some(dir.clone());
    }
    let env = c.env.get_or_insert_with(Vec::new);
    for (name, value) in &o.env {
        let var = EnvVar {
            name: name.clone(),
            value: Some(value.clone()),
            value_from: None,
        };
        match env.iter_mut().find(|v| v.name == *name) {
            Some(existing) => *existing = var,
            None => env.push(var),
        }
    }
    if let Some(res) = o.resources {
        let r = c
            .resources
            .get_or_insert_with(ResourceRequirements::default);
        set_quantities(&mut r.requests, &res.requests);
        set_quantities(&mut r.limits, &res.limits);
    }
}

fn set_quantities(
    slot: &mut Option<BTreeMap<String, Quantity>>,
    values: &BTreeMap<String, String>,
) {
    if values.is_empty() {
        return;
    }
    let map = slot.get_or_insert_with(BTreeMap::new);
    for (k, v) in values {
        map.insert(k.clone(), Quantity(v.clone()));
    }
}

/// A deterministic DNS-1123 label (at most 63 characters): the DAG and task ids made
/// name-safe, then a hash of the whole identity (tenant, DAG, run, task, try), then the try.
pub fn pod_name(id: &TryIdentity) -> String {
    let hash = identity_hash(id);
    let suffix = format!("-{hash}-{}", id.try_number);
    let readable = dns_label_part(&format!("{}-{}", id.dag_id, id.task_id));
    let room = 63 - suffix.len();
    let mut prefix: String = readable.chars().take(room).collect();
    while prefix.ends_with('-') {
        prefix.pop();
    }
    if prefix.is_empty() {
        prefix.push_str("try");
    }
    format!("{prefix}{suffix}")
}

fn identity_hash(id: &TryIdentity) -> String {
    let mut h = Sha256::new();
    for part in [&id.tenant, &id.dag_id, &id.run_id, &id.task_id] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.update(id.try_number.to_string().as_bytes());
    h.finalize()[..5]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Lowercase letters, digits and single `-`, starting with a letter or digit.
fn dns_label_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out
}

/// A label value: at most 63 of `[A-Za-z0-9._-]`, starting and ending alphanumeric; other
/// characters become `_`. Long values keep their start and get a hash, so they stay distinct.
pub fn label_value(s: &str) -> String {
    let mapped: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut value = if mapped.len() > 63 {
        let digest = Sha256::digest(s.as_bytes());
        let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        format!("{}_{hash}", &mapped[..54])
    } else {
        mapped
    };
    let trim = |c: char| !c.is_ascii_alphanumeric();
    value = value.trim_matches(trim).to_owned();
    value
}

/// The labels a try's pod is found by.
pub fn identity_labels(id: &TryIdentity) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
        (TENANT_KEY.to_owned(), label_value(&id.tenant)),
        (DAG_ID_KEY.to_owned(), label_value(&id.dag_id)),
        (RUN_ID_KEY.to_owned(), label_value(&id.run_id)),
        (TASK_ID_KEY.to_owned(), label_value(&id.task_id)),
        (TRY_NUMBER_KEY.to_owned(), id.try_number.to_string()),
    ])
}

/// The label selector matching a try's pod (and, rarely, another try whose ids make the same
/// label values: [`identity_of`] tells them apart).
pub fn identity_selector(id: &TryIdentity) -> String {
    identity_labels(id)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The exact ids, as annotations.
pub fn identity_annotations(id: &TryIdentity) -> BTreeMap<String, String> {
    BTreeMap::from([
        (TENANT_KEY.to_owned(), id.tenant.clone()),
        (DAG_ID_KEY.to_owned(), id.dag_id.clone()),
        (RUN_ID_KEY.to_owned(), id.run_id.clone()),
        (TASK_ID_KEY.to_owned(), id.task_id.clone()),
        (TRY_NUMBER_KEY.to_owned(), id.try_number.to_string()),
    ])
}

/// The try a pod runs, from its annotations; `None` for pods updraft did not create.
pub fn identity_of(pod: &Pod) -> Option<TryIdentity> {
    let a = pod.metadata.annotations.as_ref()?;
    Some(TryIdentity {
        tenant: a.get(TENANT_KEY)?.clone(),
        dag_id: a.get(DAG_ID_KEY)?.clone(),
        run_id: a.get(RUN_ID_KEY)?.clone(),
        task_id: a.get(TASK_ID_KEY)?.clone(),
        try_number: a.get(TRY_NUMBER_KEY)?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(run_id: &str) -> TryIdentity {
        TryIdentity {
            tenant: "shop".into(),
            dag_id: "Orders_Daily".into(),
            run_id: run_id.into(),
            task_id: "settle.orders".into(),
            try_number: 2,
        }
    }

    #[test]
    fn pod_names_are_dns_labels_distinct_per_try_and_stable() {
        let a = pod_name(&id("scheduled__2024-01-01T00:00:00+00:00"));
        let b = pod_name(&id("scheduled__2024-01-02T00:00:00+00:00"));
        assert_eq!(a, pod_name(&id("scheduled__2024-01-01T00:00:00+00:00")));
        assert_ne!(a, b);
        assert!(a.starts_with("orders-daily-settle-orders-"), "{a}");
        assert!(a.ends_with("-2"));
        let long = TryIdentity {
            dag_id: "d".repeat(200),
            task_id: "-".repeat(10),
            ..id("r")
        };
        for name in [a, b, pod_name(&long)] {
            assert!(name.len() <= 63, "{name}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            );
            assert!(!name.starts_with('-') && !name.ends_with('-'));
        }
    }

    #[test]
    fn label_values_are_valid_and_annotations_exact() {
        let i = id("manual__2024-01-01T00:00:00.123456+00:00");
        let labels = identity_labels(&i);
        assert_eq!(
            labels[RUN_ID_KEY],
            "manual__2024-01-01T00_00_00.123456_00_00"
        );
        let long = label_value(&"x".repeat(100));
        assert!(long.len() <= 63);
        assert_ne!(long, label_value(&format!("{}y", "x".repeat(99))));
        let mut pod = Pod::default();
        pod.metadata.annotations = Some(identity_annotations(&i));
        assert_eq!(identity_of(&pod), Some(i));
    }

    #[test]
    fn overrides_apply_to_the_named_container_only() {
        let base = parse_template(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  namespace: shop\n  labels: {app: orders}\nspec:\n  restartPolicy: Always\n  containers:\n    - name: sidecar\n      image: proxy:1\n    - name: main\n      image: order:1\n      env: [{name: REGION, value: us}, {name: KEEP, value: k}]\n      resources: {requests: {cpu: 50m, memory: 64Mi}}\n",
        )
        .unwrap();
        let res = updraft_dag::PodResources {
            requests: BTreeMap::from([("cpu".into(), "100m".into())]),
            limits: BTreeMap::from([("memory".into(), "256Mi".into())]),
        };
        let o = Overrides {
            container: Some("main"),
            image: Some("order:2"),
            command: Some(vec!["sh".into(), "-c".into()]),
            args: Some(vec!["./settle".into()]),
            env: vec![("REGION".into(), "jp".into())],
            resources: Some(&res),
            ..Overrides::default()
        };
        let (pod, container) = build_pod(base, &o, &id("r"), "shop").unwrap();
        assert_eq!(container, "main");
        let spec = pod.spec.unwrap();
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(spec.containers[0].image.as_deref(), Some("proxy:1"));
        let main = &spec.containers[1];
        assert_eq!(main.image.as_deref(), Some("order:2"));
        assert_eq!(main.command.as_ref().unwrap(), &["sh", "-c"]);
        let env: Vec<(&str, &str)> = main
            .env
            .as_ref()
            .unwrap()
            .iter()
            .map(|v| (v.name.as_str(), v.value.as_deref().unwrap()))
            .collect();
        assert_eq!(env, [("REGION", "jp"), ("KEEP", "k")]);
        let r = main.resources.as_ref().unwrap();
        assert_eq!(r.requests.as_ref().unwrap()["cpu"].0, "100m");
        assert_eq!(r.requests.as_ref().unwrap()["memory"].0, "64Mi");
        assert_eq!(r.limits.as_ref().unwrap()["memory"].0, "256Mi");
        let labels = pod.metadata.labels.unwrap();
        assert_eq!(labels["app"], "orders");
        assert_eq!(labels[MANAGED_BY.0], "updraft");
    }

    #[test]
    fn a_missing_container_or_image_is_an_error() {
        let o = Overrides {
            container: Some("nope"),
            ..Overrides::default()
        };
        let e = build_pod(bare_pod("x"), &o, &id("r"), "shop").unwrap_err();
        assert!(
            e.to_string()
                .contains("no container `nope` (its containers: base)"),
            "{e}"
        );
        let e = build_pod(bare_pod(""), &Overrides::default(), &id("r"), "shop").unwrap_err();
        assert!(e.to_string().contains("has no image"), "{e}");
    }

    #[test]
    fn namespaces_outside_the_allow_list_are_refused() {
        let allowed = vec!["shop".to_owned(), "shop-batch".to_owned()];
        let pod = bare_pod("x");
        assert_eq!(
            choose_namespace(None, &pod, "shop", &allowed).unwrap(),
            "shop"
        );
        assert_eq!(
            choose_namespace(Some("shop-batch"), &pod, "shop", &allowed).unwrap(),
            "shop-batch"
        );
        let e = choose_namespace(Some("kube-system"), &pod, "shop", &allowed).unwrap_err();
        assert_eq!(
            e.to_string(),
            "namespace `kube-system` is not allowed for tenant `shop` (allowed: shop, shop-batch); set [kubernetes.namespaces] in updraft.toml"
        );
        let mut other = bare_pod("x");
        other.metadata.namespace = Some("billing".into());
        assert!(choose_namespace(None, &other, "shop", &allowed).is_err());
    }

    #[test]
    fn templates_are_pod_manifests_with_located_errors() {
        assert!(
            parse_template("apiVersion: v1\nkind: Deployment\n")
                .unwrap_err()
                .contains("`Deployment`")
        );
        let e = parse_template(
            "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n    - name: a\n      image: [1, 2\n",
        )
        .unwrap_err();
        assert!(e.contains("line"), "{e}");
    }

    #[test]
    fn template_paths_cannot_leave_the_tenant_folder() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("shop/app")).unwrap();
        std::fs::create_dir_all(root.join("billing")).unwrap();
        let manifest = "apiVersion: v1\nkind: Pod\nspec:\n  containers: [{name: a, image: b}]\n";
        std::fs::write(root.join("shop/app/job.yaml"), manifest).unwrap();
        std::fs::write(root.join("billing/secret.yaml"), manifest).unwrap();
        std::os::unix::fs::symlink(
            root.join("billing/secret.yaml"),
            root.join("shop/app/link.yaml"),
        )
        .unwrap();
        std::os::unix::fs::symlink(root.join("billing"), root.join("shop/other")).unwrap();
        assert!(load_template(root, "shop", "app/job.yaml").is_ok());
        for rel in [
            "../billing/secret.yaml",
            "/etc/passwd",
            "app/link.yaml",
            "other/secret.yaml",
        ] {
            let e = load_template(root, "shop", rel).unwrap_err();
            assert!(matches!(e, ManifestError::Template { .. }), "{rel}: {e}");
        }
        let e = load_template(root, "shop", "app/link.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("outside the tenant's templates folder"), "{e}");
        let e = load_template(root, "shop", "app/missing.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot be read"), "{e}");
    }
}
