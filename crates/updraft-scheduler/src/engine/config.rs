//! How a scheduler is configured: its folders, limits, timings and the cluster it may use.

use std::path::PathBuf;
use std::time::Duration;

use updraft_pods::PodExecutorConfig;

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// `None` when the DAGs are put in the store by the caller (`dags test`).
    pub dags_folder: Option<PathBuf>,
    pub logs_folder: PathBuf,
    /// Task instances queued or running at once, installation-wide.
    pub parallelism: u32,
    pub default_pool_slots: i64,
    pub dags_are_paused_at_creation: bool,
    /// Full rescan of the DAGs folder, in case a change notification was missed.
    pub rescan_interval: Duration,
    /// How often to look for work recorded by other processes.
    pub poll_interval: Duration,
    /// Between SIGTERM and SIGKILL when a try is stopped.
    pub kill_grace: Duration,
    /// How long shutdown waits for running tries before stopping them.
    pub shutdown_grace: Duration,
    /// How the DAGs folder is read: file size, entry and depth limits.
    pub dag_bag: updraft_dag::DagBagOptions,
    pub hostname: String,
    /// Working directory of tries that set none; `None`: a directory of each try's own.
    pub default_cwd: Option<PathBuf>,
    /// What local tries see of the scheduler, where they work and which user runs them.
    pub isolation: updraft_executor::TryIsolation,
    /// How often the scheduler records that it is alive.
    pub heartbeat_interval: Duration,
    /// A scheduler silent for this long is declared dead; its tries are failed and retried.
    pub health_check_threshold: Duration,
    /// True when no other scheduler can be running on the database (SQLite, under its
    /// scheduler lock): every other scheduler job is then dead at once, without waiting for
    /// `health_check_threshold`.
    pub exclusive: bool,
    /// Where `pod` tasks run (and, with `every_task`, all tasks); `None`: no cluster, and
    /// `pod` tasks fail saying so.
    pub kubernetes: Option<KubernetesConfig>,
    /// Where tries' connections and variables are looked up (the configured backends in
    /// order); `None`: nowhere, so a template naming `conn` or `var` fails its try saying so.
    pub secrets: Option<std::sync::Arc<updraft_secrets::Secrets>>,
    /// DAG sources read instead of `dags_folder` (synced by the scheduler while it runs);
    /// `None` or empty: the DAGs folder.
    pub sources: Option<std::sync::Arc<updraft_sources::Sources>>,
    /// The largest XCom value a try may push, in bytes of JSON (`[core] max_xcom_size`); a
    /// try pushing a larger one fails.
    pub max_xcom_size: usize,
    /// How often, how far apart and how long each notification of the DAGs' notifiers is tried
    /// (`[scheduler] notification_*`).
    pub notification_retry: updraft_notify::RetryPolicy,
    /// The most instances a mapped task may expand to (`[core] max_map_length`, Airflow's,
    /// 1024 by default); a task expanding to more fails.
    pub max_map_length: usize,
    /// How long one in-process poke of a sensor (or a `trigger_dag_run` task) may take when its
    /// task sets no `execution_timeout` (`[scheduler] sensor_poke_timeout`, 60 s by default).
    pub sensor_poke_timeout: std::time::Duration,
}

/// A Kubernetes cluster to run tries in.
#[derive(Clone)]
pub struct KubernetesConfig {
    pub client: updraft_pods::kube::Client,
    pub pods: PodExecutorConfig,
    /// Run `bash` and `command` tasks as pods too (the `kubernetes` executor).
    pub every_task: bool,
}

impl std::fmt::Debug for KubernetesConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesConfig")
            .field("pods", &self.pods)
            .field("every_task", &self.every_task)
            .finish_non_exhaustive()
    }
}
