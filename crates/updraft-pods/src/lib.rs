//! Running task tries as Kubernetes pods, through the Kubernetes API (kube-rs).
//!
//! The [`PodExecutor`] reports on the same [`TryEvent`] channel as the local executor: a try's
//! pod is built ([`manifest`]: template file, inline spec or a bare container, the task's
//! overrides, a deterministic name, labels and annotations naming the try), checked against
//! the tenant's allowed namespaces, created, then followed through its namespace's watch
//! ([`watches`]: one per namespace, shared by every try there; never polled): its
//! container's log is streamed into the try's log file while it runs, and its end becomes the
//! try's outcome ([`status`]: exit code 0 success, 99 skipped, anything else failed, with
//! Kubernetes' reason: OOMKilled, Evicted, DeadlineExceeded, ImagePullBackOff, Unschedulable
//! after the startup timeout). The pod is then deleted per the task's policy; a try that is
//! killed (its instance marked or cleared) or times out has its pod deleted.
//!
//! Pods outlive the scheduler: [`PodExecutor::detach`] stops following them without touching
//! them, and a scheduler starting later finds them by label ([`PodExecutor::find`]) and
//! follows them to their end ([`PodExecutor::adopt`]) instead of launching them again.
//!
//! Variables holding secrets (`RenderedTask::secret_env`, e.g. `AIRFLOW_CONN_<ID>`) never
//! appear in a pod's spec: they go into a Kubernetes Secret of the try ([`try_secret`]), which
//! the container reads through `secretKeyRef`; it is deleted when the try ends. The
//! container's log passes through the try's masker ([`updraft_secrets::StreamMasker`]) before
//! it is written, so a secret it prints leaves only `***`, even split across chunks.
//!
//! A pod receives the run's conf in its spec, as the `UPDRAFT_CONF` variable of its
//! containers (there is no `UPDRAFT_CONF_FILE` in a pod): a conf over [`POD_CONF_MAX_BYTES`]
//! fails the try before its pod is created, since the container could not start with it.

pub mod manifest;
mod secrets;
pub mod status;
mod try_secret;
mod watches;

pub use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::core::v1::Secret;
pub use kube;

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::AsyncReadExt as _;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use tokio::sync::{mpsc, watch};
use updraft_dag::DeletePolicy;
use updraft_executor::xcom::{self, XComPush};
use updraft_executor::{ExecOutcome, LaunchSpec, Program, RenderedTask, TryEvent, TryKey};
use updraft_secrets::{Masker, StreamMasker};

pub use manifest::{ManifestError, TryIdentity};
use manifest::{Overrides, build_pod, choose_namespace};
pub use secrets::KubernetesSecrets;
use status::Progress;
use watches::{PodChange, PodWatches};

/// Settings of a [`PodExecutor`].
#[derive(Debug, Clone)]
pub struct PodExecutorConfig {
    /// Holds one folder per tenant: `pod.template` paths are resolved in `<folder>/<tenant>/`.
    pub templates_folder: PathBuf,
    /// Namespaces each tenant's pods may run in; a tenant not listed may use only the
    /// namespace named like itself.
    pub namespaces: BTreeMap<String, Vec<String>>,
    /// The Pod manifest `bash`/`command` tasks run in when every task is a pod (the
    /// `kubernetes` executor); `None`: one container of `default_image`.
    pub default_template: Option<PathBuf>,
    /// Image for `bash`/`command` tasks run as pods, when the default template names none.
    pub default_image: String,
    /// The shell a `bash` task runs in, inside its container.
    pub shell: String,
    /// How long a pod may take to start its container before the try fails.
    pub startup_timeout: Duration,
    /// When finished pods are deleted, for tasks that do not say.
    pub delete_pod: DeletePolicy,
    /// Grace period given to a pod deleted while it runs (kill, timeout).
    pub delete_grace: Duration,
    /// The largest XCom value a try may push, in bytes of JSON (`[core] max_xcom_size`).
    pub max_xcom_size: usize,
}

impl Default for PodExecutorConfig {
    fn default() -> Self {
        PodExecutorConfig {
            templates_folder: PathBuf::from("templates"),
            namespaces: BTreeMap::new(),
            default_template: None,
            default_image: "debian:bookworm-slim".to_owned(),
            shell: "bash".to_owned(),
            startup_timeout: Duration::from_secs(120),
            delete_pod: DeletePolicy::Always,
            delete_grace: Duration::from_secs(10),
            max_xcom_size: xcom::DEFAULT_MAX_XCOM_SIZE,
        }
    }
}

impl PodExecutorConfig {
    /// The namespaces `tenant`'s pods may use.
    pub fn allowed_namespaces(&self, tenant: &str) -> Vec<String> {
        self.namespaces
            .get(tenant)
            .cloned()
            .unwrap_or_else(|| vec![tenant.to_owned()])
    }
}

/// The largest run conf (compact JSON) a pod receives: it is in the pod's spec as the
/// `UPDRAFT_CONF` variable, which the container's start refuses past 128 KiB. A try of a run
/// with a larger conf fails before its pod is created.
pub const POD_CONF_MAX_BYTES: usize = 96 * 1024;

/// A pod's environment: the rendered one, with the run's conf as `UPDRAFT_CONF` (the
/// renderer leaves out confs over `CONF_ENV_MAX_BYTES`, which pods still take up to
/// [`POD_CONF_MAX_BYTES`]). Pods have no `UPDRAFT_CONF_FILE`.
fn pod_env(rendered: &RenderedTask) -> Result<Vec<(String, String)>, ManifestError> {
    if rendered.conf.len() > POD_CONF_MAX_BYTES {
        return Err(ManifestError::Invalid(format!(
            "the run's conf is {} bytes of JSON; a pod receives it in its spec as \
             UPDRAFT_CONF, at most {POD_CONF_MAX_BYTES} bytes",
            rendered.conf.len()
        )));
    }
    let mut env = rendered.env.clone();
    if !env.iter().any(|(k, _)| k == "UPDRAFT_CONF") {
        env.push(("UPDRAFT_CONF".to_owned(), rendered.conf.clone()));
        env.sort();
    }
    Ok(env)
}

/// What is asked of a try's follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    No,
    /// End the try: delete its pod, report it killed.
    Kill,
    /// Stop following, leave the pod alone, report nothing (the scheduler is stopping).
    Detach,
}

/// Runs tries as pods. Cheap to clone: clones share the same executor.
#[derive(Clone)]
pub struct PodExecutor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PodExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodExecutor").finish_non_exhaustive()
    }
}

struct Inner {
    client: kube::Client,
    config: PodExecutorConfig,
    events: mpsc::UnboundedSender<TryEvent>,
    tries: Mutex<HashMap<TryKey, watch::Sender<Stop>>>,
    watches: PodWatches,
    /// Followers running; `detach` waits for it to reach 0.
    followers: watch::Sender<usize>,
}

/// A try to follow: created now, or adopted after a restart.
struct Job {
    key: TryKey,
    api: Api<Pod>,
    name: String,
    container: String,
    log_path: PathBuf,
    timeout: Option<Duration>,
    startup_timeout: Duration,
    delete_pod: DeletePolicy,
    /// The pod to create; `None` when adopting one that exists.
    create: Option<Pod>,
    /// The try's Secret (see [`try_secret`]), created before the pod; `None` when it has none
    /// or adopting.
    create_secret: Option<Secret>,
    /// The try has a Secret, deleted when it ends.
    has_secret: bool,
    /// What is masked in the container's log as it is copied to the try's log.
    mask: Masker,
    /// The last line of the container's output becomes `return_value`.
    do_xcom_push: bool,
}

impl PodExecutor {
    /// An executor creating pods through `client` and reporting on `events`.
    ///
    /// # Panics
    /// When called outside a tokio runtime.
    pub fn new(
        client: kube::Client,
        config: PodExecutorConfig,
        events: mpsc::UnboundedSender<TryEvent>,
    ) -> Self {
        let managed = format!("{}={}", manifest::MANAGED_BY.0, manifest::MANAGED_BY.1);
        PodExecutor {
            inner: Arc::new(Inner {
                watches: PodWatches::new(client.clone(), managed),
                client,
                config,
                events,
                tries: Mutex::new(HashMap::new()),
                followers: watch::Sender::new(0),
            }),
        }
    }

    pub fn config(&self) -> &PodExecutorConfig {
        &self.inner.config
    }

    /// Starts a try as a pod; never blocks. A `pod` task becomes its pod; a `bash` or
    /// `command` task runs in the default template. A pod that cannot be built (bad template,
    /// namespace not allowed) fails the try before anything is created, the reason in its log.
    pub fn launch(&self, spec: LaunchSpec, id: TryIdentity) {
        self.launch_with_templates(spec, id, None);
    }

    /// [`PodExecutor::launch`], a `template:` read from `tenant_templates` (the tenant's
    /// templates folder at the run's revision) instead of `templates_folder/<tenant>`.
    pub fn launch_with_templates(
        &self,
        spec: LaunchSpec,
        id: TryIdentity,
        tenant_templates: Option<PathBuf>,
    ) {
        match self.plan(&spec, &id, tenant_templates.as_deref()) {
            Ok((mut pod, container)) => {
                let secret = secret_of_try(&mut pod, &container, &id, &spec.rendered);
                let mut mask = spec.rendered.mask.clone();
                for (_, value) in &spec.rendered.secret_env {
                    mask.add(value);
                }
                let namespace = pod.metadata.namespace.clone().unwrap_or_default();
                let (startup_timeout, delete_pod) = match &spec.rendered.program {
                    Program::Pod(task) => (task.startup_timeout, task.delete_pod),
                    _ => (None, None),
                };
                let config = &self.inner.config;
                let startup_timeout = startup_timeout.unwrap_or(config.startup_timeout);
                let delete_pod = delete_pod.unwrap_or(config.delete_pod);
                let job = Job {
                    key: spec.key,
                    api: Api::namespaced(self.inner.client.clone(), &namespace),
                    name: pod.metadata.name.clone().unwrap_or_default(),
                    container,
                    log_path: spec.log_path,
                    timeout: spec.timeout,
                    startup_timeout,
                    delete_pod,
                    create: Some(pod),
                    has_secret: secret.is_some(),
                    create_secret: secret,
                    mask,
                    do_xcom_push: spec.rendered.do_xcom_push,
                };
                self.start(job);
            }
            Err(e) => self.fail_before_start(spec.key, &spec.log_path, e.to_string()),
        }
    }

    /// The pod for a try, and the container that decides it.
    fn plan(
        &self,
        spec: &LaunchSpec,
        id: &TryIdentity,
        tenant_templates: Option<&Path>,
    ) -> Result<(Pod, String), ManifestError> {
        let config = &self.inner.config;
        let env = &pod_env(&spec.rendered)?;
        let allowed = config.allowed_namespaces(&id.tenant);
        match &spec.rendered.program {
            Program::Pod(task) => {
                let base = match (&task.template, &task.spec) {
                    (Some(rel), _) => match tenant_templates {
                        Some(root) => manifest::load_tenant_template(root, rel)?,
                        None => manifest::load_template(&config.templates_folder, &id.tenant, rel)?,
                    },
                    (None, Some(spec)) => manifest::pod_from_spec(spec)?,
                    (None, None) => manifest::bare_pod(task.image.as_deref().unwrap_or_default()),
                };
                let ns = choose_namespace(task.namespace.as_deref(), &base, &id.tenant, &allowed)?;
                build_pod(base, &Overrides::of_pod_task(task, env), id, &ns)
            }
            program => {
                let command = match program {
                    Program::Bash(script) => {
                        vec![config.shell.clone(), "-c".to_owned(), script.clone()]
                    }
                    Program::Command(argv) => argv.clone(),
                    _ => {
                        return Err(ManifestError::Invalid(
                            "this task kind does not run in a pod".to_owned(),
                        ));
                    }
                };
                let base = match &config.default_template {
                    Some(path) => manifest::load_trusted_template(path)?,
                    None => manifest::bare_pod(&config.default_image),
                };
                let needs_image = base
                    .spec
                    .as_ref()
                    .and_then(|s| s.containers.first())
                    .is_some_and(|c| c.image.as_deref().is_none_or(str::is_empty));
                let ns = choose_namespace(None, &base, &id.tenant, &allowed)?;
                let overrides = Overrides {
                    image: needs_image.then_some(config.default_image.as_str()),
                    command: Some(command),
                    args: Some(Vec::new()),
                    env: env.clone(),
                    working_dir: spec.rendered.cwd.as_ref().map(|p| p.display().to_string()),
                    ..Overrides::default()
                };
                build_pod(base, &overrides, id, &ns)
            }
        }
    }

    /// The pod of a try, if one exists in a namespace its tenant may use.
    pub async fn find(&self, id: &TryIdentity) -> Result<Option<Pod>, kube::Error> {
        let params = ListParams::default().labels(&manifest::identity_selector(id));
        for namespace in self.inner.config.allowed_namespaces(&id.tenant) {
            let api: Api<Pod> = Api::namespaced(self.inner.client.clone(), &namespace);
            let pods = api.list(&params).await?;
            if let Some(pod) = pods
                .items
                .into_iter()
                .find(|p| manifest::identity_of(p).as_ref() == Some(id))
            {
                return Ok(Some(pod));
            }
        }
        Ok(None)
    }

    /// Every pod of `tenant`'s tries in its namespaces, by try: one list call per namespace,
    /// for looking up many tries at once (after a restart).
    pub async fn pods_of_tenant(
        &self,
        tenant: &str,
    ) -> Result<HashMap<TryIdentity, Pod>, kube::Error> {
        let selector = format!(
            "{}={},{}={}",
            manifest::MANAGED_BY.0,
            manifest::MANAGED_BY.1,
            manifest::TENANT_KEY,
            manifest::label_value(tenant)
        );
        let params = ListParams::default().labels(&selector);
        let mut found = HashMap::new();
        for namespace in self.inner.config.allowed_namespaces(tenant) {
            let api: Api<Pod> = Api::namespaced(self.inner.client.clone(), &namespace);
            for pod in api.list(&params).await?.items {
                if let Some(id) = manifest::identity_of(&pod).filter(|id| id.tenant == tenant) {
                    found.insert(id, pod);
                }
            }
        }
        Ok(found)
    }

    /// Deletes the Secret of a try (found by its labels in its tenant's namespaces), for a try
    /// that will not be followed to its end: an orphan whose pod is gone, or a try whose
    /// scheduler died between creating the Secret and the pod. Returns how many were deleted.
    pub async fn delete_try_secrets(&self, id: &TryIdentity) -> Result<usize, kube::Error> {
        let namespaces = self.inner.config.allowed_namespaces(&id.tenant);
        try_secret::delete_by_identity(&self.inner.client, &namespaces, id).await
    }

    /// Follows an existing pod (found by [`find`](Self::find)) to its end, as if this executor
    /// had launched it: its log continues in `log_path` where it stopped.
    pub fn adopt(
        &self,
        key: TryKey,
        pod: &Pod,
        log_path: PathBuf,
        timeout: Option<Duration>,
        delete_pod: Option<DeletePolicy>,
        do_xcom_push: bool,
    ) {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let container = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(manifest::CONTAINER_KEY).cloned())
            .or_else(|| {
                pod.spec
                    .as_ref()
                    .and_then(|s| s.containers.first())
                    .map(|c| c.name.clone())
            })
            .unwrap_or_default();
        // The timeout counts from the pod's creation, not from now.
        let age = pod
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| Duration::from_secs(t.0.as_second().max(0) as u64))
            .and_then(|created| {
                let now = Duration::from_secs(Utc::now().timestamp().max(0) as u64);
                now.checked_sub(created)
            })
            .unwrap_or_default();
        let job = Job {
            key,
            api: Api::namespaced(self.inner.client.clone(), &namespace),
            name: pod.metadata.name.clone().unwrap_or_default(),
            container,
            log_path,
            timeout: timeout.map(|t| t.saturating_sub(age)),
            startup_timeout: self.inner.config.startup_timeout,
            delete_pod: delete_pod.unwrap_or(self.inner.config.delete_pod),
            create: None,
            create_secret: None,
            has_secret: try_secret::is_referenced_by(pod),
            mask: Masker::new(),
            do_xcom_push,
        };
        self.start(job);
    }

    /// Asks a try to stop: its pod is deleted and the try reported `Killed`. False when no
    /// such try is followed.
    pub fn kill(&self, key: &TryKey) -> bool {
        let tries = self.inner.lock();
        tries
            .get(key)
            .is_some_and(|stop| stop.send(Stop::Kill).is_ok())
    }

    /// Stops following one try's pod, leaving it running (another scheduler follows it now);
    /// nothing is reported for it. False when no such try is followed.
    pub fn release(&self, key: &TryKey) -> bool {
        let tries = self.inner.lock();
        tries
            .get(key)
            .is_some_and(|stop| stop.send(Stop::Detach).is_ok())
    }

    /// Stops following every pod, leaving them running, and reports nothing for them; returns
    /// once every follower has stopped, their namespaces' watches closed.
    pub async fn detach(&self) {
        for stop in self.inner.lock().values() {
            stop.send_replace(Stop::Detach);
        }
        let mut followers = self.inner.followers.subscribe();
        let _ = followers.wait_for(|n| *n == 0).await;
        self.inner.watches.stop_all();
    }

    /// Namespaces whose pods are watched now (one watch connection each).
    pub fn namespaces_watched(&self) -> usize {
        self.inner.watches.watched()
    }

    /// Tries followed now.
    pub fn in_flight(&self) -> usize {
        self.inner.lock().len()
    }

    fn start(&self, job: Job) {
        let (stop_tx, stop) = watch::channel(Stop::No);
        {
            let mut tries = self.inner.lock();
            if tries.contains_key(&job.key) {
                drop(tries);
                let message = format!("{} is already followed by this executor", job.key);
                self.inner
                    .finished(job.key, ExecOutcome::failed(message), Utc::now());
                return;
            }
            tries.insert(job.key.clone(), stop_tx);
        }
        self.inner.followers.send_modify(|n| *n += 1);
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let key = job.key.clone();
            let ended = follow(&inner, job, stop).await;
            inner.lock().remove(&key);
            if let Some((outcome, at, xcoms)) = ended {
                inner.send(TryEvent::Finished {
                    key,
                    outcome,
                    at,
                    xcoms,
                });
            }
            inner.followers.send_modify(|n| *n -= 1);
        });
    }

    fn fail_before_start(&self, key: TryKey, log_path: &Path, message: String) {
        let mut log = LogFile::open(log_path);
        log.line(&format!("try {} started at {}", key.try_number, now()));
        log.line(&format!("no pod was created: {message}"));
        self.inner
            .finished(key, ExecOutcome::failed(message), Utc::now());
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TryKey, watch::Sender<Stop>>> {
        self.tries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn send(&self, event: TryEvent) {
        // The receiver is gone only when the scheduler is shutting down: nothing to tell.
        let _ = self.events.send(event);
    }

    fn finished(&self, key: TryKey, outcome: ExecOutcome, at: DateTime<Utc>) {
        self.send(TryEvent::Finished {
            key,
            outcome,
            at,
            xcoms: Vec::new(),
        });
    }
}

/// The line after which a try's log holds the container's output, byte for byte.
const LOG_MARKER: &str = "log of the container follows";

/// A try's log file; write failures are reported once and otherwise ignored (the try goes on).
struct LogFile {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl LogFile {
    fn open(path: &Path) -> LogFile {
        let opened = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
            });
        let file = match opened {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::warn!(log = %path.display(), "cannot open a try's log: {e}");
                None
            }
        };
        LogFile {
            path: path.to_owned(),
            file,
        }
    }

    fn line(&mut self, text: &str) {
        self.bytes(format!("[updraft] {text}\n").as_bytes());
    }

    fn bytes(&mut self, data: &[u8]) {
        if let Some(f) = &mut self.file
            && let Err(e) = f.write_all(data)
        {
            tracing::warn!(log = %self.path.display(), "cannot write a try's log: {e}");
            self.file = None;
        }
    }

    /// Bytes of container output already in the log (after the last marker line), or `None`
    /// when the container's log was never started in it.
    fn container_bytes_written(path: &Path) -> Option<u64> {
        let text = std::fs::read(path).ok()?;
        let marker = LOG_MARKER.as_bytes();
        let at = text.windows(marker.len()).rposition(|w| w == marker)?;
        let line_end = text[at..].iter().position(|b| *b == b'\n')? + at + 1;
        Some((text.len() - line_end) as u64)
    }
}

/// Follows a try's pod to its end. Returns its outcome and when it ended, or `None` when
/// detached.
/// How a followed try ended: its outcome, when, and what it pushed.
type Ended = (ExecOutcome, DateTime<Utc>, Vec<XComPush>);

async fn follow(inner: &Arc<Inner>, mut job: Job, stop: watch::Receiver<Stop>) -> Option<Ended> {
    let ended = follow_pod(inner, &mut job, stop).await;
    // Detached, the pod runs on and still needs its Secret.
    if ended.is_some() && job.has_secret {
        try_secret::delete(&job.secret_api(&inner.client), &job.name).await;
    }
    ended
}

async fn follow_pod(
    inner: &Arc<Inner>,
    job: &mut Job,
    mut stop: watch::Receiver<Stop>,
) -> Option<Ended> {
    let mut log = LogFile::open(&job.log_path);
    let adopted = job.create.is_none();
    // Subscribed before the pod is created, so that none of its changes is missed.
    let mut changes = inner.watches.subscribe(job.namespace(), &job.name);
    // The pod's state known before its first change arrives.
    let mut known: Option<Pod> = None;
    if let Some(pod) = &job.create {
        log.line(&format!(
            "try {} started at {}: pod {}/{}",
            job.key.try_number,
            now(),
            job.namespace(),
            job.name
        ));
        let at = Utc::now();
        // Creating may take minutes while the API server is unavailable (the client retries):
        // a kill or a detach is heard meanwhile.
        let created = tokio::select! {
            created = create_try(inner, job, pod) => Some(created),
            _ = stop.wait_for(|s| *s != Stop::No) => None,
        };
        match created {
            Some(Creation::Created) => {}
            Some(Creation::SecretRefused(message)) => {
                // Not created, or another's: not this try's to delete.
                job.has_secret = false;
                log.line(&message);
                return Some((ExecOutcome::failed(message), Utc::now(), Vec::new()));
            }
            Some(Creation::PodRefused(message)) => {
                log.line(&message);
                return Some((ExecOutcome::failed(message), Utc::now(), Vec::new()));
            }
            None if *stop.borrow() == Stop::Detach => return None,
            None => {
                log.line(&format!(
                    "kill requested at {} while creating pod {}",
                    now(),
                    job.name
                ));
                // The request may have reached the server before it was dropped.
                delete(job, inner.config.delete_grace).await;
                return Some((ExecOutcome::Killed, Utc::now(), Vec::new()));
            }
        }
        inner.send(TryEvent::Started {
            key: job.key.clone(),
            pid: None,
            at,
        });
    } else {
        // Found by a list a moment ago, the pod may have gone since, its deletion passed
        // before the subscription: ask once.
        match job.api.get_opt(&job.name).await {
            Ok(Some(pod)) => {
                if job.has_secret {
                    job.mask = adopted_mask(&job.secret_api(&inner.client), &job.name).await;
                }
                known = Some(pod);
            }
            Ok(None) => {
                let message = format!("pod {} no longer exists", job.name);
                log.line(&message);
                return Some((ExecOutcome::failed(message), Utc::now(), Vec::new()));
            }
            Err(e) => tracing::warn!(pod = %job.name, "reading the adopted pod: {e}"),
        }
    }
    let created = tokio::time::Instant::now();
    let deadline = job.timeout.map(|t| created + t);
    let startup_deadline = created + job.startup_timeout;

    let mut logs: Option<tokio::task::JoinHandle<()>> = None;
    let (container_ended, ended) = watch::channel(false);
    let mut last_why: Option<String> = None;
    // A change of the pod has been heard (so the pod was there after the subscription).
    let mut seen = known.is_some();
    let mut pushed = Vec::new();

    let outcome = loop {
        tokio::select! {
            changed = stop.changed() => {
                let asked = if changed.is_ok() { *stop.borrow() } else { Stop::Detach };
                match asked {
                    Stop::No => continue,
                    Stop::Detach => {
                        if let Some(l) = logs.take() { l.abort(); }
                        return None;
                    }
                    Stop::Kill => {
                        log.line(&format!("kill requested at {}: deleting pod {}", now(), job.name));
                        delete(job, inner.config.delete_grace).await;
                        break ExecOutcome::Killed;
                    }
                }
            }
            _ = sleep_until(deadline) => {
                let t = job.timeout.unwrap_or_default();
                log.line(&format!(
                    "execution_timeout of {}s exceeded at {}: deleting pod {}",
                    t.as_secs_f64(), now(), job.name
                ));
                delete(job, inner.config.delete_grace).await;
                break ExecOutcome::TimedOut;
            }
            _ = tokio::time::sleep_until(startup_deadline), if logs.is_none() => {
                let why = last_why.clone().unwrap_or_else(|| "no reason given".to_owned());
                let message = format!(
                    "the pod did not start within the startup timeout of {}s: {why}",
                    job.startup_timeout.as_secs_f64()
                );
                log.line(&message);
                delete_per_policy(job, false, &mut log).await;
                break ExecOutcome::failed(message);
            }
            change = next_change(&mut known, &mut changes) => {
                let Some(change) = change else { break ExecOutcome::failed("the pod watch ended") };
                let gone = || format!("pod {} was deleted before it finished", job.name);
                let pod = match change {
                    PodChange::Changed(p) => { seen = true; *p }
                    PodChange::Deleted => {
                        let message = gone();
                        log.line(&message);
                        break ExecOutcome::failed(message);
                    }
                    // Not heard of yet: the list was taken before the pod was created. Were it
                    // deleted unseen, the startup timeout ends the try.
                    PodChange::Missing if !seen => continue,
                    PodChange::Missing => match job.api.get_opt(&job.name).await {
                        Ok(Some(p)) => p,
                        Ok(None) => {
                            let message = gone();
                            log.line(&message);
                            break ExecOutcome::failed(message);
                        }
                        Err(e) => {
                            tracing::warn!(pod = %job.name, "reading the pod after a relist: {e}");
                            continue;
                        }
                    },
                };
                match status::progress(&pod, &job.container) {
                    Progress::Waiting { why } => {
                        if why.is_some() && why != last_why {
                            log.line(&format!("pod {} waiting: {}", job.name, why.as_deref().unwrap_or_default()));
                        }
                        last_why = why;
                    }
                    Progress::Started => {
                        if logs.is_none() {
                            logs = Some(stream_logs(job, &mut log, adopted, ended.clone()));
                        }
                    }
                    Progress::CannotStart(why) => {
                        let message = format!("the pod cannot start: {why}");
                        log.line(&message);
                        delete_per_policy(job, false, &mut log).await;
                        break ExecOutcome::failed(message);
                    }
                    Progress::Ended(outcome) => {
                        container_ended.send_replace(true);
                        if logs.is_none() {
                            logs = Some(stream_logs(job, &mut log, adopted, ended.clone()));
                        }
                        if let Some(l) = logs.take() {
                            // The log stream ends with the container; the bound only guards
                            // against a server that never closes it.
                            let _ = tokio::time::timeout(Duration::from_secs(30), l).await;
                        }
                        let outcome = match outcome {
                            ExecOutcome::Success => match pod_xcoms(&pod, job, inner.config.max_xcom_size) {
                                Ok(xcoms) => {
                                    pushed = xcoms;
                                    ExecOutcome::Success
                                }
                                Err(message) => {
                                    log.line(&message);
                                    ExecOutcome::failed(message)
                                }
                            },
                            other => other,
                        };
                        let ok = matches!(outcome, ExecOutcome::Success | ExecOutcome::Skipped);
                        delete_per_policy(job, ok, &mut log).await;
                        break outcome;
                    }
                }
            }
        }
    };
    if let Some(l) = logs.take() {
        l.abort();
    }
    let ended = Utc::now();
    let mut log = LogFile::open(&job.log_path);
    let note = if adopted {
        " (followed again after a scheduler restart)"
    } else {
        ""
    };
    log.line(&format!(
        "try {} finished at {}: {outcome}{note}",
        job.key.try_number,
        ended.to_rfc3339_opts(SecondsFormat::Millis, true)
    ));
    Some((outcome, ended, pushed))
}

/// What a pod's successful try pushed: the JSON object of its container's termination
/// message and, with `do_xcom_push`, the last line of the container's output (see
/// [`updraft_executor::xcom`]).
fn pod_xcoms(pod: &Pod, job: &Job, limit: usize) -> Result<Vec<XComPush>, String> {
    let pushed = match status::termination_message(pod, &job.container) {
        Some(message) => xcom::parse_object(message, "termination message", limit)?,
        None => Vec::new(),
    };
    if !job.do_xcom_push {
        return Ok(pushed);
    }
    let tail = container_output_tail(&job.log_path, limit.saturating_add(2))
        .map_err(|e| format!("cannot read the container's output for do_xcom_push: {e}"))?;
    let line = xcom::parse_last_line(&tail, limit).transpose()?;
    Ok(xcom::merge(pushed, line))
}

/// The last `max` bytes of the try's log, from the container's output only (after the last
/// [`LOG_MARKER`] line, when that falls within them).
fn container_output_tail(path: &Path, max: usize) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt as _;
    let file = std::fs::File::open(path)?;
    let end = file.metadata()?.len();
    let from = end.saturating_sub(max as u64 + LOG_MARKER.len() as u64 + 1);
    let mut bytes = vec![0; usize::try_from(end - from).unwrap_or(0)];
    file.read_exact_at(&mut bytes, from)?;
    let marker = LOG_MARKER.as_bytes();
    if let Some(at) = bytes.windows(marker.len()).rposition(|w| w == marker) {
        let line_end = bytes[at..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(bytes.len(), |p| at + p + 1);
        bytes.drain(..line_end);
    }
    Ok(bytes)
}

impl Job {
    fn namespace(&self) -> &str {
        self.api.namespace().unwrap_or_default()
    }

    fn secret_api(&self, client: &kube::Client) -> Api<Secret> {
        Api::namespaced(client.clone(), self.namespace())
    }
}

/// The try's Secret, when it has variables holding secrets: `pod`'s `container` is changed
/// to take them from it.
fn secret_of_try(
    pod: &mut Pod,
    container: &str,
    id: &TryIdentity,
    rendered: &RenderedTask,
) -> Option<Secret> {
    if rendered.secret_env.is_empty() {
        return None;
    }
    let secret = try_secret::build(pod, id, &rendered.secret_env);
    let name = secret.metadata.name.clone().unwrap_or_default();
    let names: Vec<&str> = rendered
        .secret_env
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    try_secret::reference(pod, container, &name, &names);
    Some(secret)
}

/// What became of creating a try's Secret and pod.
enum Creation {
    Created,
    /// The Secret could not be created (nothing was): the reason.
    SecretRefused(String),
    /// The pod could not be created: the reason.
    PodRefused(String),
}

/// Creates the try's Secret (if any), then its pod, then makes the pod the Secret's owner,
/// so that a cluster's garbage collector deletes the Secret with the pod.
async fn create_try(inner: &Inner, job: &Job, pod: &Pod) -> Creation {
    let secrets = job.secret_api(&inner.client);
    if let Some(secret) = &job.create_secret
        && let Err(message) = try_secret::create(&secrets, secret).await
    {
        return Creation::SecretRefused(message);
    }
    match create(job, pod).await {
        Ok(uid) => {
            if let (Some(uid), true) = (uid, job.has_secret) {
                try_secret::set_owner(&secrets, &job.name, &uid).await;
            }
            Creation::Created
        }
        Err(message) => Creation::PodRefused(message),
    }
}

/// The masker of an adopted try: the values of its Secret (the renderer's mask is not kept
/// across a restart), with what this process already knows to be secret.
async fn adopted_mask(secrets: &Api<Secret>, name: &str) -> Masker {
    let mut mask = match secrets.get_opt(name).await {
        Ok(Some(secret)) => try_secret::masker_of(&secret),
        Ok(None) => Masker::new(),
        Err(e) => {
            tracing::warn!(secret = %name, "reading the Secret of an adopted try: {e}");
            Masker::new()
        }
    };
    if let Ok(global) = updraft_secrets::mask::global().read() {
        mask.extend(&global);
    }
    mask
}

/// Waits before each new attempt at creating a pod after a transient error: about 6 s in all,
/// enough for an API server's brief unavailability, short of a task's usual timeouts.
const CREATE_RETRY_WAITS: [Duration; 5] = [
    Duration::from_millis(200),
    Duration::from_millis(400),
    Duration::from_millis(800),
    Duration::from_millis(1600),
    Duration::from_millis(3200),
];

/// Creates the pod, trying again after transient errors the client does not retry itself (it
/// does 429, 503 and 504: kube's default retry policy): the connection failing, 500 and 502. One
/// already there under this name is this very try's (created before a crash, or by an attempt
/// whose answer was lost) when its annotations say so: it is followed instead.
async fn create(job: &Job, pod: &Pod) -> Result<Option<String>, String> {
    let mut waits = CREATE_RETRY_WAITS.iter();
    loop {
        match job.api.create(&PostParams::default(), pod).await {
            Ok(created) => return Ok(created.metadata.uid),
            Err(kube::Error::Api(status)) if status.code == 409 => {
                return claim_existing(job, pod).await;
            }
            Err(e) if is_transient(&e) => match waits.next() {
                Some(wait) => {
                    tracing::warn!(pod = %job.name, "creating the pod, trying again: {e}");
                    tokio::time::sleep(*wait).await;
                }
                None => return Err(format!("the pod could not be created: {e}")),
            },
            Err(e) => return Err(format!("the pod could not be created: {e}")),
        }
    }
}

/// An error another attempt may not meet: the connection failed, or the server (or a webhook
/// it called, or a proxy in front of it) failed.
fn is_transient(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => matches!(status.code, 500 | 502),
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// The pod named like this try's already exists: follow it if it is this try's.
async fn claim_existing(job: &Job, pod: &Pod) -> Result<Option<String>, String> {
    let existing = job
        .api
        .get_opt(&job.name)
        .await
        .map_err(|e| format!("pod {} exists but cannot be read: {e}", job.name))?;
    let ours = existing
        .as_ref()
        .and_then(manifest::identity_of)
        .is_some_and(|id| Some(id) == manifest::identity_of(pod));
    if ours {
        Ok(existing.and_then(|p| p.metadata.uid))
    } else {
        Err(format!(
            "a pod named {} already exists and does not belong to this try",
            job.name
        ))
    }
}

async fn delete(job: &Job, grace: Duration) {
    let params = DeleteParams {
        grace_period_seconds: Some(grace.as_secs().min(u32::MAX as u64) as u32),
        ..DeleteParams::default()
    };
    match job.api.delete(&job.name, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(e) => tracing::warn!(pod = %job.name, "could not delete the pod: {e}"),
    }
}

async fn delete_per_policy(job: &Job, succeeded: bool, log: &mut LogFile) {
    let delete_it = match job.delete_pod {
        DeletePolicy::Always => true,
        DeletePolicy::OnSuccess => succeeded,
        DeletePolicy::Never => false,
    };
    if delete_it {
        delete(job, Duration::ZERO).await;
    } else {
        log.line(&format!(
            "pod {} is kept ({})",
            job.name,
            job.delete_pod.as_str()
        ));
    }
}

/// Streams the container's log into the try's log, live, until the container ends (`ended`
/// turns true). A stream that breaks off while the container runs is opened again, skipping
/// what is already written; so is it when following a try again after a restart.
fn stream_logs(
    job: &Job,
    log: &mut LogFile,
    adopted: bool,
    ended: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let already = if adopted {
        LogFile::container_bytes_written(&job.log_path)
    } else {
        None
    };
    if already.is_none() {
        log.line(&format!(
            "pod {}: {LOG_MARKER} ({})",
            job.name, job.container
        ));
    }
    let source = LogSource {
        api: job.api.clone(),
        name: job.name.clone(),
        params: LogParams {
            container: Some(job.container.clone()),
            follow: true,
            ..LogParams::default()
        },
    };
    let path = job.log_path.clone();
    let written = already.unwrap_or(0);
    let mask = (!job.mask.is_empty()).then(|| job.mask.stream());
    tokio::spawn(copy_container_log(source, path, written, ended, mask))
}

struct LogSource {
    api: Api<Pod>,
    name: String,
    params: LogParams,
}

/// The try's log as the container's output is written to it: through the try's masker, if
/// it has secrets to hide.
struct MaskedLog {
    out: LogFile,
    mask: Option<StreamMasker>,
    /// The last byte written does not end a line.
    line_open: bool,
}

impl MaskedLog {
    fn write(&mut self, chunk: &[u8]) {
        match &mut self.mask {
            Some(mask) => {
                let safe = mask.push(chunk);
                self.write_out(&safe);
            }
            None => self.write_out(chunk),
        }
    }

    /// The stream ended: what the masker held back goes out.
    fn finish(&mut self) {
        if let Some(mask) = &mut self.mask {
            let rest = mask.finish();
            self.write_out(&rest);
        }
        // The lines updraft writes after the output start on a line of their own.
        if self.line_open {
            self.out.bytes(b"\n");
        }
    }

    fn write_out(&mut self, bytes: &[u8]) {
        if let Some(last) = bytes.last() {
            self.line_open = *last != b'\n';
        }
        self.out.bytes(bytes);
    }
}

/// How long to wait before opening a broken-off log stream again.
const LOG_RETRY: Duration = Duration::from_millis(500);

async fn copy_container_log(
    source: LogSource,
    path: PathBuf,
    mut written: u64,
    mut ended: watch::Receiver<bool>,
    mask: Option<StreamMasker>,
) {
    let mut out = MaskedLog {
        out: LogFile::open(&path),
        mask,
        line_open: false,
    };
    loop {
        // Known ended before this stream opened: this stream has read everything.
        let last_read = *ended.borrow();
        match source.api.log_stream(&source.name, &source.params).await {
            Ok(mut reader) => {
                // The server sends the log from the container's start: skip what is written.
                let mut skip = written;
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    match reader.read(&mut buf).await {
                        Ok(0) => break,
                        Ok(n) => {
                            let skipped = skip.min(n as u64) as usize;
                            skip -= skipped as u64;
                            let fresh = &buf[skipped..n];
                            written += fresh.len() as u64;
                            out.write(fresh);
                        }
                        Err(e) => {
                            tracing::warn!(pod = %source.name, "the container's log stream broke off: {e}");
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(pod = %source.name, "the container's log cannot be read yet: {e}")
            }
        }
        if last_read {
            break;
        }
        // The stream ended while the container was (as far as is known) running: it has just
        // ended, its status on its way, or the stream broke off. Either way the log is read
        // again from where it stopped, once the end is known or after a short wait.
        let _ = tokio::time::timeout(LOG_RETRY, ended.wait_for(|e| *e)).await;
    }
    out.finish();
}

/// The state known before any change was heard, then each change as it comes.
async fn next_change(
    known: &mut Option<Pod>,
    changes: &mut watches::Subscription,
) -> Option<PodChange> {
    match known.take() {
        Some(pod) => Some(PodChange::Changed(Box::new(pod))),
        None => changes.next().await,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(conf_bytes: usize, env: Vec<(String, String)>) -> RenderedTask {
        let conf = serde_json::json!({ "b": "x".repeat(conf_bytes - 8) }).to_string();
        assert_eq!(conf.len(), conf_bytes);
        RenderedTask {
            secret_env: Vec::new(),
            mask: Default::default(),
            do_xcom_push: false,
            program: Program::Noop,
            env,
            cwd: None,
            conf,
        }
    }

    #[test]
    fn pods_receive_the_conf_in_their_spec_up_to_the_limit() {
        // Over the local executor's environment threshold, still given to a pod.
        let env = pod_env(&rendered(64 * 1024, vec![("A".into(), "a".into())])).unwrap();
        let conf = env.iter().find(|(k, _)| k == "UPDRAFT_CONF").unwrap();
        assert_eq!(conf.1.len(), 64 * 1024);
        assert_eq!(env[0], ("A".into(), "a".into()));
        // Already in the rendered environment: kept once.
        let small = rendered(100, vec![]);
        let with = vec![("UPDRAFT_CONF".to_owned(), small.conf.clone())];
        let env = pod_env(&rendered(100, with.clone())).unwrap();
        assert_eq!(env, with);
        // Over the limit: the reason names it.
        let e = pod_env(&rendered(POD_CONF_MAX_BYTES + 1, vec![])).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "the run's conf is {} bytes of JSON; a pod receives it in its spec as \
                 UPDRAFT_CONF, at most {POD_CONF_MAX_BYTES} bytes",
                POD_CONF_MAX_BYTES + 1
            )
        );
    }
}
