//! The local executor: runs task tries as child processes of this process.
//!
//! Each try is one child in its own process group, so that a timeout or a kill reaches
//! everything the task started (`SIGTERM` to the group, [`LocalExecutorConfig::kill_grace`],
//! then `SIGKILL` to the group). Its stdout and stderr are both appended to the try's log file,
//! between a header and a footer line written by the executor.
//!
//! A try that was given secrets (its [`RenderedTask::mask`] is not empty) writes into a pipe
//! instead, which this process reads as the try writes and copies to the log through an
//! [`updraft_secrets::StreamMasker`]: every secret is `***` in the log, also one written in
//! pieces that arrive in separate reads. A try without secrets writes to its log file
//! directly, as before. The try's `secret_env` (`AIRFLOW_CONN_<ID>`) is added to its
//! environment.
//!
//! Progress is reported on an unbounded channel as [`TryEvent`]s: `Started` once the process
//! is spawned, `Finished` the moment it exits (the executor awaits the child, it never polls).
//! Every launched try gets exactly one `Finished`; `Started` only precedes it when a process
//! was actually spawned (or for [`Program::Noop`]). So a `Finished` can come without a
//! `Started`: spawn failures, tries killed or shut down while waiting for a slot.
//!
//! A process that exits normally while processes it started keep running in its group is a
//! finished try: those leftovers are not killed (they were detached on purpose, or will be
//! found by whoever looks at the host).
//!
//! No try outlives this process. With the first try, the executor starts a reaper: a small
//! shell process in its own process group, reading the process group of every try as it starts
//! and ends from a pipe whose only writer is this process. When this process ends without
//! stopping its tries (`kill -9`, a crash, a forced exit), the kernel closes the pipe; the reaper
//! reads its end and sends `SIGKILL` to the groups of the tries still running, at once (the
//! tries are abandoned: whoever takes them over retries them, and no grace period may let an
//! old try run beside its retry). A clean shutdown ends every try first, so the reaper finds
//! nothing to do.
//!
//! The run's conf reaches each try as a file of its own, named in `UPDRAFT_CONF_FILE`: a
//! `<run_pk>-<task_id>-<try>.json` in a directory only this user can read, made once per
//! executor under the system's temporary directory (`$TMPDIR`, else `/tmp`); the file is
//! removed when the try ends.
//!
//! A successful try's pushes travel with its `Finished` event: the JSON object of the file
//! named in `UPDRAFT_XCOM_PATH` (in its working directory, absent at start) and, with
//! `do_xcom_push`, the last line of its output (see [`crate::xcom`]). A push that cannot be
//! taken fails the try; a try that pushed nothing costs one `stat`.
//!
//! A try gets only what [`TryIsolation`] lets through of this process's environment, runs in a
//! working directory of its own (also its `HOME` and `TMPDIR`; removed after the try unless
//! kept), writes to a log only updraft's user can read, and runs as its tenant's
//! `run_as_user` when one is configured (see [`crate::isolation`]).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::fs::File;
use std::io::{PipeReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};
use updraft_secrets::StreamMasker;

use crate::isolation::{self, RunAs, TryIsolation, open_log};
use crate::render::{Program, RenderedTask};
use crate::sensor::{
    Poke, PokeCheck, PokeFailure, PokeResult, PokeTools, RunTrigger, SensorProgram, SensorStates,
};
use crate::xcom::{self, XComPush};

/// Identifies one try of one task instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TryKey {
    /// Primary key of the DAG run in the store.
    pub run_pk: i64,
    pub task_id: String,
    /// The instance's map index (-1: not mapped).
    pub map_index: i32,
    pub try_number: u32,
}

impl fmt::Display for TryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "run {} task {}", self.run_pk, self.task_id)?;
        if self.map_index >= 0 {
            write!(f, " map index {}", self.map_index)?;
        }
        write!(f, " try {}", self.try_number)
    }
}

/// One try to run.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    pub key: TryKey,
    pub rendered: RenderedTask,
    /// The try's log file (see [`updraft_dag::log_path`]); its parent directories are created.
    pub log_path: PathBuf,
    /// The task's `execution_timeout`, counted from the moment the process is spawned.
    pub timeout: Option<Duration>,
}

/// Progress of a try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TryEvent {
    /// The process was spawned (`pid` is `None` only for [`Program::Noop`]) at `at`.
    Started {
        key: TryKey,
        pid: Option<u32>,
        at: DateTime<Utc>,
    },
    /// The try is over (its process reaped at `at`); sent exactly once per launched try.
    /// `xcoms`: what a successful try pushed (see [`crate::xcom`]); empty otherwise.
    Finished {
        key: TryKey,
        outcome: ExecOutcome,
        at: DateTime<Utc>,
        xcoms: Vec<XComPush>,
    },
}

/// How a try ended, as far as the executor can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecOutcome {
    /// Exit code 0.
    Success,
    /// Exit code [`updraft_dag::SKIP_EXIT_CODE`] (99).
    Skipped,
    /// Any other exit code, death by a signal, or a process that could not be started
    /// (both codes `None`; `message` says why).
    Failed {
        exit_code: Option<i32>,
        signal: Option<i32>,
        message: String,
    },
    /// `execution_timeout` expired; the process group was terminated.
    TimedOut,
    /// Ended by [`LocalExecutor::kill`] or [`LocalExecutor::shutdown`] (including tries that
    /// never got to start).
    Killed,
    /// A sensor's poke answered (see [`crate::sensor`]): the scheduler decides what it
    /// becomes.
    Poked(Poke),
}

impl ExecOutcome {
    /// A failure with no exit code or signal (the try could not run, or failed for a reason
    /// `message` gives).
    pub fn failed(message: impl Into<String>) -> Self {
        ExecOutcome::Failed {
            exit_code: None,
            signal: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for ExecOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecOutcome::Success => f.write_str("success"),
            ExecOutcome::Skipped => {
                write!(f, "skipped (exit code {})", updraft_dag::SKIP_EXIT_CODE)
            }
            ExecOutcome::Failed { message, .. } => write!(f, "failed: {message}"),
            ExecOutcome::TimedOut => f.write_str("timed out"),
            ExecOutcome::Killed => f.write_str("killed"),
            ExecOutcome::Poked(poke) => match poke.result {
                PokeResult::Done => write!(f, "poke {}: done", poke.poke_number),
                PokeResult::NotYet => write!(f, "poke {}: not yet", poke.poke_number),
                PokeResult::NotBefore(at) => {
                    write!(
                        f,
                        "poke {}: not before {}",
                        poke.poke_number,
                        at.to_rfc3339()
                    )
                }
            },
        }
    }
}

/// Why a `pod` task reaching this executor fails.
pub const POD_WITHOUT_CLUSTER: &str = "this is a `pod` task but no Kubernetes cluster is configured: set `[kubernetes] enabled = true` in updraft.toml (see the README's \"Kubernetes\" section)";

/// Settings of a [`LocalExecutor`].
#[derive(Debug, Clone)]
pub struct LocalExecutorConfig {
    /// Tries running at once; further launches wait their turn in launch order.
    /// 0 means unbounded.
    pub max_concurrency: usize,
    /// Time between `SIGTERM` and `SIGKILL` when a try times out or is killed.
    pub kill_grace: Duration,
    /// Working directory of tries without a `cwd`, and base of relative ones. `None`: this
    /// process's working directory.
    pub default_cwd: Option<PathBuf>,
    /// Environment given to every try, beneath the task's own (which wins).
    pub base_env: Vec<(String, String)>,
    /// The shell for [`Program::Bash`] scripts, run as `<bash> -c <script>`.
    pub bash: PathBuf,
    /// What of this process a try sees, where it works, and which user it runs as.
    pub isolation: TryIsolation,
    /// The largest XCom value a try may push, in bytes of JSON (`[core] max_xcom_size`).
    pub max_xcom_size: usize,
    /// Where `python:` tasks' `requirements:` environments are kept; `None`:
    /// [`crate::venv::default_cache`].
    pub venv_cache: Option<PathBuf>,
    /// What `external_task` sensors read other DAGs' states through; without it their
    /// pokes fail.
    pub sensor_states: Option<Arc<dyn SensorStates>>,
    /// What `trigger_dag_run` tasks start other DAGs' runs through; without it they fail.
    pub run_trigger: Option<Arc<dyn RunTrigger>>,
    /// How long one in-process poke may take when its task sets no `execution_timeout`.
    pub poke_timeout: Duration,
}

/// [`LocalExecutorConfig::poke_timeout`]'s default.
pub const DEFAULT_POKE_TIMEOUT: Duration = Duration::from_secs(60);

impl Default for LocalExecutorConfig {
    fn default() -> Self {
        LocalExecutorConfig {
            max_concurrency: 32,
            kill_grace: Duration::from_secs(10),
            default_cwd: None,
            base_env: Vec::new(),
            bash: find_in_path("bash").unwrap_or_else(|| PathBuf::from("bash")),
            isolation: TryIsolation::default(),
            max_xcom_size: xcom::DEFAULT_MAX_XCOM_SIZE,
            venv_cache: None,
            sensor_states: None,
            run_trigger: None,
            poke_timeout: DEFAULT_POKE_TIMEOUT,
        }
    }
}

/// The first executable `name` on this process's `PATH`. Resolved once, so each spawn execs
/// the shell directly instead of trying every `PATH` entry in the child.
fn find_in_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Runs tries as child processes. Cheap to clone: clones share the same executor.
#[derive(Clone)]
pub struct LocalExecutor {
    inner: Arc<Inner>,
}

impl fmt::Debug for LocalExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalExecutor")
            .field("running", &self.running())
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: LocalExecutorConfig,
    /// Where tries' conf files go: made on first use (again if it has gone), removed with
    /// the executor.
    conf_dir: Mutex<Option<PathBuf>>,
    /// Where tries' working directories go when no `work_folder` is configured: made on first
    /// use, removed with the executor.
    work_root: Mutex<Option<PathBuf>>,
    events: mpsc::UnboundedSender<TryEvent>,
    handle: Handle,
    /// Slots: `max_concurrency`, or unbounded.
    max_running: usize,
    state: Mutex<State>,
    /// Tries (and reported failures) launched whose `Finished` has not been sent yet.
    in_flight: watch::Sender<usize>,
    /// Started with the first try that spawns a process; `None` if it could not start.
    reaper: OnceLock<Option<Reaper>>,
    /// The HTTP client of sensors' pokes, made on first use.
    http: OnceLock<reqwest::Client>,
}

#[derive(Default)]
struct State {
    /// Kill switches of the tries in flight (queued or running).
    tries: HashMap<TryKey, watch::Sender<bool>>,
    /// Tries waiting for a slot, in launch order.
    queue: VecDeque<Queued>,
    /// Tries holding a slot.
    running: usize,
    shutting_down: bool,
}

struct Queued {
    spec: LaunchSpec,
    kill: watch::Receiver<bool>,
    guard: InFlight,
    /// For a `bash`/`command` sensor: the poke this process answers.
    poke: Option<Box<SensorProgram>>,
}

impl LocalExecutor {
    /// Creates an executor reporting on `events`.
    ///
    /// # Panics
    /// When called outside a tokio runtime (tries run on the runtime current at creation).
    pub fn new(config: LocalExecutorConfig, events: mpsc::UnboundedSender<TryEvent>) -> Self {
        let max_running = match config.max_concurrency {
            0 => usize::MAX,
            n => n,
        };
        LocalExecutor {
            inner: Arc::new(Inner {
                config,
                conf_dir: Mutex::new(None),
                work_root: Mutex::new(None),
                events,
                handle: Handle::current(),
                max_running,
                state: Mutex::new(State::default()),
                in_flight: watch::Sender::new(0),
                reaper: OnceLock::new(),
                http: OnceLock::new(),
            }),
        }
    }

    /// Starts a try in the background; never blocks. Its progress arrives as [`TryEvent`]s.
    ///
    /// Slots are given in launch order: when all are taken, the try waits for the ones
    /// launched before it. After [`shutdown`](Self::shutdown) has begun, the try is reported
    /// `Killed` at once. A try whose key is already in flight is reported `Failed` (the one in
    /// flight is left alone). [`Program::Noop`] reports `Started` and `Finished { Success }`
    /// right away, without a slot or a log file. A [`Program::Sensor`] pokes on a task of its
    /// own without a slot, except a `bash`/`command` check, which runs as a process try.
    pub fn launch(&self, mut spec: LaunchSpec) {
        let inner = &self.inner;
        let mut state = inner.lock();
        if state.shutting_down {
            drop(state);
            inner.send(TryEvent::Finished {
                key: spec.key,
                outcome: ExecOutcome::Killed,
                at: Utc::now(),
                xcoms: Vec::new(),
            });
            return;
        }
        if matches!(spec.rendered.program, Program::Noop) {
            drop(state);
            inner.send(TryEvent::Started {
                key: spec.key.clone(),
                pid: None,
                at: Utc::now(),
            });
            inner.send(TryEvent::Finished {
                key: spec.key,
                outcome: ExecOutcome::Success,
                at: Utc::now(),
                xcoms: Vec::new(),
            });
            return;
        }
        if state.tries.contains_key(&spec.key) {
            drop(state);
            let message = format!("{} is already in flight in this executor", spec.key);
            tracing::error!("{message}");
            inner.send(TryEvent::Finished {
                key: spec.key,
                outcome: ExecOutcome::failed(message),
                at: Utc::now(),
                xcoms: Vec::new(),
            });
            return;
        }
        let (kill_tx, kill) = watch::channel(false);
        state.tries.insert(spec.key.clone(), kill_tx);
        let guard = InFlight::new(inner.clone());
        let poke = match take_sensor(&mut spec) {
            Sensor::InProcess(sensor) => {
                drop(state);
                let poking = poke_in_process(inner.clone(), spec, *sensor, kill, guard);
                inner.handle.spawn(poking);
                return;
            }
            Sensor::Process(sensor) => Some(sensor),
            Sensor::No => None,
        };
        let queued = Queued {
            spec,
            kill,
            guard,
            poke,
        };
        if state.running < inner.max_running {
            state.running += 1;
            inner.start(queued);
        } else {
            state.queue.push_back(queued);
        }
    }

    /// Asks a try to stop: `SIGTERM` to its process group, then `SIGKILL` to the group after
    /// the grace period. It is reported `Finished { Killed }` once its process is gone, or at
    /// once if it was still waiting for a slot. Returns false when no such try is in flight.
    pub fn kill(&self, key: &TryKey) -> bool {
        let inner = &self.inner;
        let mut state = inner.lock();
        if let Some(pos) = state.queue.iter().position(|q| q.spec.key == *key) {
            let queued = state.queue.remove(pos).expect("position is in range");
            state.tries.remove(key);
            inner.send(TryEvent::Finished {
                key: queued.spec.key,
                outcome: ExecOutcome::Killed,
                at: Utc::now(),
                xcoms: Vec::new(),
            });
            drop(queued.guard);
            return true;
        }
        match state.tries.get(key) {
            // Fails when the try has already stopped listening: it is finishing anyway.
            Some(switch) => switch.send(true).is_ok(),
            None => false,
        }
    }

    /// Counts a try that is still being prepared (rendered) as in flight until the returned
    /// guard is dropped, so that [`shutdown`](Self::shutdown) waits for it to be launched or
    /// reported: launched after shutdown began, it is reported `Killed` at once.
    pub fn preparing(&self) -> Preparing {
        Preparing {
            _in_flight: InFlight::new(self.inner.clone()),
        }
    }

    /// Writes `message` to the log at `log_path` and reports the try `Finished { Failed }`
    /// without running anything: for tries that fail before launch (e.g. a template error).
    pub fn report_failure(&self, key: TryKey, log_path: PathBuf, message: String) {
        let inner = self.inner.clone();
        let guard = InFlight::new(inner.clone());
        inner.handle.clone().spawn(async move {
            let header = header_line(key.try_number);
            let line = format!("[updraft] {message}\n");
            let path = log_path.clone();
            let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                let mut f = open_log(&path)?;
                f.write_all(header.as_bytes())?;
                f.write_all(line.as_bytes())
            })
            .await;
            if !matches!(written, Ok(Ok(()))) {
                tracing::warn!(log = %log_path.display(), "could not write the failure of {key} to its log");
            }
            let _state = inner.lock();
            inner.send(TryEvent::Finished {
                key,
                outcome: ExecOutcome::failed(message),
                at: Utc::now(),
                xcoms: Vec::new(),
            });
            drop(guard);
        });
    }

    /// Stops accepting tries and ends the ones in flight: tries still waiting for a slot are
    /// reported `Killed` at once; running ones get up to `grace` to finish on their own, then
    /// are killed like [`kill`](Self::kill) does. Returns when every try has been reported.
    pub async fn shutdown(&self, grace: Duration) {
        let inner = &self.inner;
        {
            let mut state = inner.lock();
            state.shutting_down = true;
            for q in std::mem::take(&mut state.queue) {
                state.tries.remove(&q.spec.key);
                inner.send(TryEvent::Finished {
                    key: q.spec.key,
                    outcome: ExecOutcome::Killed,
                    at: Utc::now(),
                    xcoms: Vec::new(),
                });
                drop(q.guard);
            }
        }
        let mut in_flight = inner.in_flight.subscribe();
        let done = tokio::time::timeout(grace, in_flight.wait_for(|n| *n == 0))
            .await
            .is_ok();
        if !done {
            for switch in inner.lock().tries.values() {
                switch.send_replace(true);
            }
            let _ = in_flight.wait_for(|n| *n == 0).await;
        }
    }

    /// Tries holding a slot: spawning or running.
    pub fn running(&self) -> usize {
        self.inner.lock().running
    }

    /// Tries launched and not yet reported `Finished` (running or waiting for a slot).
    pub fn in_flight(&self) -> usize {
        let _state = self.inner.lock();
        *self.inner.in_flight.borrow()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(dir) = self.existing_conf_dir() {
            let _ = std::fs::remove_dir_all(dir);
        }
        if self.config.isolation.work_folder.is_none()
            && let Some(dir) = self.existing_work_root()
            && !self.config.isolation.keep_work_dirs
        {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Inner {
    /// The private directory of conf files, made on first use.
    ///
    /// A failure is not kept: the next try makes it again (the disk may have room by then),
    /// as it does when the directory was removed (by a cleaner of old temporary files).
    fn conf_dir(&self) -> Result<PathBuf, String> {
        let mut dir = self.conf_dir.lock().unwrap_or_else(|e| e.into_inner());
        match &*dir {
            Some(d) if d.is_dir() => Ok(d.clone()),
            _ => {
                // Passable (not listable) by others: a try running as its tenant's user opens
                // its own conf file, handed over to that user, by name.
                let made = make_temp_dir("updraft-conf", 0o711)?;
                *dir = Some(made.clone());
                Ok(made)
            }
        }
    }

    /// The folder of tries' working directories: the configured one, else one made on first
    /// use under the system's temporary directory.
    fn work_root(&self) -> Result<PathBuf, String> {
        if let Some(folder) = &self.config.isolation.work_folder {
            return Ok(folder.clone());
        }
        let mut dir = self.work_root.lock().unwrap_or_else(|e| e.into_inner());
        match &*dir {
            Some(d) if d.is_dir() => Ok(d.clone()),
            _ => {
                let made = make_temp_dir("updraft-tries", 0o711)?;
                *dir = Some(made.clone());
                Ok(made)
            }
        }
    }

    /// The folder of tries' working directories, if there is one.
    fn existing_work_root(&self) -> Option<PathBuf> {
        match &self.config.isolation.work_folder {
            Some(folder) => Some(folder.clone()),
            None => self
                .work_root
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }

    /// The directory of conf files, if one was made.
    fn existing_conf_dir(&self) -> Option<PathBuf> {
        self.conf_dir
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing panics while holding the lock; recover the state if something ever did.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn send(&self, event: TryEvent) {
        // The receiver is gone only when the scheduler is shutting down: nothing to tell.
        let _ = self.events.send(event);
    }

    /// Runs a try in the slot already counted for it in `State::running`.
    fn start(self: &Arc<Self>, q: Queued) {
        let slot = Slot(Some(self.clone()));
        self.handle
            .spawn(run_try(self.clone(), q.spec, q.kill, q.guard, slot, q.poke));
    }
}

/// A try being prepared for [`LocalExecutor::launch`]: counted in flight until dropped.
pub struct Preparing {
    _in_flight: InFlight,
}

/// Counts a try in flight until dropped (after its `Finished` is sent).
struct InFlight(Arc<Inner>);

impl InFlight {
    fn new(inner: Arc<Inner>) -> Self {
        inner.in_flight.send_modify(|n| *n += 1);
        InFlight(inner)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.send_modify(|n| *n -= 1);
    }
}

/// A slot held by a running try. Releasing it hands the slot to the next queued try.
struct Slot(Option<Arc<Inner>>);

impl Slot {
    fn release(mut self, state: &mut State) {
        if let Some(inner) = self.0.take() {
            inner.hand_over(state);
        }
    }
}

impl Drop for Slot {
    /// Only when a try's task ends abnormally (panic, runtime shutdown).
    fn drop(&mut self) {
        if let Some(inner) = self.0.take() {
            let mut state = inner.lock();
            inner.hand_over(&mut state);
        }
    }
}

impl Inner {
    fn hand_over(self: &Arc<Self>, state: &mut State) {
        match state.queue.pop_front() {
            Some(next) if !state.shutting_down => self.start(next),
            _ => state.running -= 1,
        }
    }
}

async fn run_try(
    inner: Arc<Inner>,
    spec: LaunchSpec,
    mut kill: watch::Receiver<bool>,
    guard: InFlight,
    slot: Slot,
    poke: Option<Box<SensorProgram>>,
) {
    let key = spec.key.clone();
    let python = matches!(spec.rendered.program, Program::Python(_));
    let started = Utc::now();
    let (outcome, xcoms, log) = drive(&inner, spec, &mut kill).await;
    let (outcome, xcoms) = match poke {
        Some(sensor) => (process_poke(&sensor, outcome, started), Vec::new()),
        None => (outcome, xcoms),
    };
    let ended = Utc::now();
    if let Some(dir) = inner.existing_conf_dir() {
        // One unlink; the file is absent when the try never got to spawn.
        let _ = std::fs::remove_file(conf_path(&dir, &key));
        if python {
            let _ = std::fs::remove_file(call_path(&dir, &key));
        }
    }
    let leftover = if inner.config.isolation.keep_work_dirs {
        None
    } else {
        inner
            .existing_work_root()
            .and_then(|root| set_aside(&root, &work_dir_name(&key)))
    };
    // Stop listening first, so that `kill` answers false from now on.
    drop(kill);
    if let Some((mut file, footer)) = log {
        // A single small append to a file that is already open.
        let _ = file.write_all(footer(&outcome).as_bytes());
    }
    // One critical section, so that the counts seen after the event are up to date, and the
    // slot is handed over only after `Finished` is sent: events never show more than
    // `max_concurrency` tries between `Started` and `Finished`.
    let mut state = inner.lock();
    state.tries.remove(&key);
    inner.send(TryEvent::Finished {
        key,
        outcome,
        at: ended,
        xcoms,
    });
    slot.release(&mut state);
    drop(guard);
    drop(state);
    if let Some(dir) = leftover {
        // A try's files are its own business, and may be many: removed off the try's path.
        tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir));
    }
}

/// Moves a finished try's working folder out of the way under a name no try uses (one rename,
/// before `Finished` is sent), so that the next try of the same name (a sensor's next poke
/// keeps its try number) makes a fresh one and the removal can wait until after the report.
/// `None` when there is no folder to remove.
fn set_aside(root: &Path, name: &str) -> Option<PathBuf> {
    static SET_ASIDE: AtomicU64 = AtomicU64::new(0);
    let dir = root.join(name);
    let serial = SET_ASIDE.fetch_add(1, Ordering::Relaxed);
    let aside = root.join(format!(".ended-{}-{serial}-{name}", std::process::id()));
    std::fs::rename(&dir, &aside).ok().map(|()| aside)
}

type Footer = Box<dyn FnOnce(&ExecOutcome) -> String + Send>;

/// Runs the try to its end. Returns the outcome, what it pushed, and the log file with the
/// footer to write.
async fn drive(
    inner: &Arc<Inner>,
    spec: LaunchSpec,
    kill: &mut watch::Receiver<bool>,
) -> (ExecOutcome, Vec<XComPush>, Option<(File, Footer)>) {
    if *kill.borrow() {
        return (ExecOutcome::Killed, Vec::new(), None);
    }
    // Creating directories, opening the log and fork/exec are blocking system calls.
    let config = inner.clone();
    let LaunchSpec {
        key,
        rendered,
        log_path,
        timeout,
    } = spec;
    let try_number = key.try_number;
    let do_xcom_push = rendered.do_xcom_push;
    let log_to_read = log_path.clone();
    let masker = (!rendered.mask.is_empty()).then(|| rendered.mask.stream());
    // The start is stamped just before the spawn, so it never follows the process's first
    // instruction.
    let spawned = tokio::task::spawn_blocking(move || {
        let reaper = config.reaper();
        let place = prepare(&config, &rendered, &key);
        let at = Utc::now();
        let spawned = spawn(&config.config, &rendered, place, &log_path, &key);
        // At once, so that the window in which a crash would leave the try unknown to the
        // reaper is as short as it can be.
        if let (Some(reaper), Ok(Spawned { child, .. })) = (reaper, &spawned)
            && let Some(pid) = child.id()
        {
            reaper.track(pid);
        }
        spawned.map(|s| (s, at, key))
    })
    .await;
    let (
        Spawned {
            mut child,
            mut log,
            output,
            output_start,
        },
        spawned_at,
        key,
    ) = match spawned {
        Ok(Ok(s)) => s,
        Ok(Err((message, log))) => {
            let footer: Footer = Box::new(|_| String::new());
            return (
                ExecOutcome::failed(message),
                Vec::new(),
                log.map(|f| (f, footer)),
            );
        }
        Err(join) => {
            return (
                ExecOutcome::failed(format!("spawning failed: {join}")),
                Vec::new(),
                None,
            );
        }
    };
    let pushes = Pushes {
        file: inner
            .existing_work_root()
            .map(|root| root.join(work_dir_name(&key)).join(xcom::XCOM_FILE_NAME)),
        log: log_to_read,
        output_start,
        do_xcom_push,
        limit: inner.config.max_xcom_size,
    };
    let started = Instant::now();
    let pid = child.id();
    let pump = match (output, masker) {
        (Some(output), Some(masker)) => Some(start_masked_copy(output, &log, masker)),
        _ => None,
    };
    inner.send(TryEvent::Started {
        key,
        pid,
        at: spawned_at,
    });
    let footer: Footer = Box::new(move |outcome| {
        let secs = started.elapsed().as_secs_f64();
        format!(
            "[updraft] try {try_number} finished at {}: {outcome} after {secs:.3}s\n",
            now()
        )
    });
    let Some(pid) = pid else {
        // Already reaped: cannot happen before we wait, but do not signal a bogus group.
        let outcome = outcome_of(child.wait().await);
        finish_masked_copy(pump).await;
        let (outcome, xcoms) = pushes.read(outcome, &log).await;
        return (outcome, xcoms, Some((log, footer)));
    };
    let pgid = Pid::from_raw(pid as i32);
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let grace = inner.config.kill_grace;

    let outcome = tokio::select! {
        biased;
        status = child.wait() => outcome_of(status),
        true = raised(kill) => {
            let _ = writeln!(log, "[updraft] kill requested at {}: terminating process group {pgid}", now());
            terminate_group(&mut child, pgid, grace).await;
            ExecOutcome::Killed
        }
        _ = sleep_until(deadline), if deadline.is_some() => {
            let t = timeout.unwrap_or_default();
            let _ = writeln!(
                log,
                "[updraft] execution_timeout of {} exceeded at {}: terminating process group {pgid}",
                humanize(t),
                now(),
            );
            terminate_group(&mut child, pgid, grace).await;
            ExecOutcome::TimedOut
        }
    };
    if let Some(reaper) = inner.reaper() {
        reaper.untrack(pid);
    }
    finish_masked_copy(pump).await;
    let (outcome, xcoms) = pushes.read(outcome, &log).await;
    (outcome, xcoms, Some((log, footer)))
}

/// How a launched try's program runs, as far as sensors go.
enum Sensor {
    No,
    /// A poke in this process.
    InProcess(Box<SensorProgram>),
    /// A `bash`/`command` check: the spec now holds its process; its exit code answers.
    Process(Box<SensorProgram>),
}

/// Takes a sensor's program out of `spec`, putting a process check's program in its place.
fn take_sensor(spec: &mut LaunchSpec) -> Sensor {
    let program = &mut spec.rendered.program;
    let Program::Sensor(sensor) = program else {
        return Sensor::No;
    };
    let sensor = sensor.clone();
    match &sensor.check {
        PokeCheck::Process(process) => {
            *program = (**process).clone();
            Sensor::Process(sensor)
        }
        _ => Sensor::InProcess(sensor),
    }
}

/// What a `bash`/`command` sensor's process said (Airflow's `BashSensor`): exit 0 is done,
/// [`updraft_dag::SKIP_EXIT_CODE`] skips, any other exit code is not yet; a process that
/// could not start, was killed or timed out keeps its outcome.
fn process_poke(
    sensor: &SensorProgram,
    outcome: ExecOutcome,
    started: DateTime<Utc>,
) -> ExecOutcome {
    match outcome {
        ExecOutcome::Success => ExecOutcome::Poked(sensor.poke(PokeResult::Done, started)),
        ExecOutcome::Failed {
            exit_code: Some(_), ..
        } => ExecOutcome::Poked(sensor.poke(PokeResult::NotYet, started)),
        other => other,
    }
}

/// One in-process poke (see [`crate::sensor`]): `Started` without a pid, the poke bounded by
/// the task's `execution_timeout` (else [`LocalExecutorConfig::poke_timeout`]) and stopped by
/// a kill, a line in the try's log, then `Finished`. Holds no slot.
async fn poke_in_process(
    inner: Arc<Inner>,
    spec: LaunchSpec,
    sensor: SensorProgram,
    mut kill: watch::Receiver<bool>,
    guard: InFlight,
) {
    let key = spec.key.clone();
    let started = Utc::now();
    inner.send(TryEvent::Started {
        key: key.clone(),
        pid: None,
        at: started,
    });
    let tools = PokeTools {
        states: inner.config.sensor_states.clone(),
        trigger: inner.config.run_trigger.clone(),
        http: inner.http.get_or_init(reqwest::Client::new).clone(),
    };
    let limit = spec.timeout.unwrap_or(inner.config.poke_timeout);
    let mut xcoms = Vec::new();
    let outcome = tokio::select! {
        biased;
        true = raised(&mut kill) => ExecOutcome::Killed,
        answer = tokio::time::timeout(limit, crate::sensor::poke(&sensor.check, &tools, started)) => {
            match answer {
                Ok(Ok(answer)) => {
                    write_poke_log(&spec, &answer.found).await;
                    xcoms = answer.pushes;
                    ExecOutcome::Poked(sensor.poke(answer.result, started))
                }
                Ok(Err(PokeFailure::FailedState(message))) if sensor.timing.soft_fail => {
                    write_poke_log(&spec, &message).await;
                    ExecOutcome::Skipped
                }
                Ok(Err(PokeFailure::Skip(message))) => {
                    write_poke_log(&spec, &message).await;
                    ExecOutcome::Skipped
                }
                Ok(Err(failure)) => {
                    let message = spec.rendered.mask.mask(&failure.to_string());
                    write_poke_log(&spec, &message).await;
                    ExecOutcome::failed(message)
                }
                Err(_) => {
                    write_poke_log(&spec, &format!("the poke took longer than {}", humanize(limit))).await;
                    ExecOutcome::TimedOut
                }
            }
        }
    };
    drop(kill);
    let mut state = inner.lock();
    state.tries.remove(&key);
    inner.send(TryEvent::Finished {
        key,
        outcome,
        at: Utc::now(),
        xcoms,
    });
    drop(state);
    drop(guard);
}

/// Appends what a poke found to the try's log (one log per try: its pokes follow each other).
async fn write_poke_log(spec: &LaunchSpec, found: &str) {
    let path = spec.log_path.clone();
    let line = format!("[updraft] {} poke: {found}\n", now());
    let written = tokio::task::spawn_blocking(move || {
        let mut f = open_log(&path)?;
        f.write_all(line.as_bytes())
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        tracing::debug!(log = %spec.log_path.display(), "could not write a poke to its log");
    }
}

/// Where a try's pushes are read from once it has succeeded.
struct Pushes {
    /// The XCom file (`None`: the try had no working directory).
    file: Option<PathBuf>,
    /// The try's log, and where the try's output begins in it.
    log: PathBuf,
    output_start: u64,
    do_xcom_push: bool,
    limit: usize,
}

impl Pushes {
    /// What a successful try pushed; a push that cannot be taken (too big, not a JSON object,
    /// not JSON) fails the try, the reason in its log. Nothing is read for another outcome.
    async fn read(self, outcome: ExecOutcome, log: &File) -> (ExecOutcome, Vec<XComPush>) {
        if outcome != ExecOutcome::Success {
            return (outcome, Vec::new());
        }
        let file_present = self
            .file
            .as_deref()
            .is_some_and(|f| f.symlink_metadata().is_ok());
        if !file_present && !self.do_xcom_push {
            return (outcome, Vec::new());
        }
        let read = tokio::task::spawn_blocking(move || {
            let file = self.file.unwrap_or_default();
            xcom::read_local(
                &file,
                &self.log,
                self.output_start,
                self.do_xcom_push,
                self.limit,
            )
        })
        .await
        .unwrap_or_else(|e| Err(format!("reading the try's XComs failed: {e}")));
        match read {
            Ok(xcoms) => (outcome, xcoms),
            Err(message) => {
                let _ = writeln!(&*log, "[updraft] {message}");
                (ExecOutcome::failed(message), Vec::new())
            }
        }
    }
}

/// How long the end of a try waits for the rest of its output once its process has exited:
/// processes it left running may keep the pipe open; their output is still copied, after
/// the footer.
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

/// Copies what the try writes into `output` to its log, masked, as it comes.
fn start_masked_copy(
    output: PipeReader,
    log: &File,
    masker: StreamMasker,
) -> tokio::task::JoinHandle<()> {
    let log = log.try_clone();
    tokio::spawn(async move {
        let mut log = match log {
            Ok(log) => log,
            Err(e) => {
                tracing::warn!("cannot copy a try's output to its log: {e}");
                return;
            }
        };
        if let Err(e) = copy_masked(output, &mut log, masker).await {
            let _ = writeln!(log, "[updraft] reading the task's output failed: {e}");
        }
    })
}

async fn copy_masked(
    output: PipeReader,
    log: &mut File,
    mut masker: StreamMasker,
) -> std::io::Result<()> {
    use tokio::io::AsyncReadExt as _;
    let fd = std::os::fd::OwnedFd::from(output);
    let mut pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(fd)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = pipe.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        let safe = masker.push(&buf[..n]);
        if !safe.is_empty() {
            log.write_all(&safe)?;
        }
    }
    log.write_all(&masker.finish())
}

/// Waits for the masked copy to reach the end of the try's output, at most [`OUTPUT_DRAIN`].
async fn finish_masked_copy(pump: Option<tokio::task::JoinHandle<()>>) {
    if let Some(mut pump) = pump
        && tokio::time::timeout(OUTPUT_DRAIN, &mut pump).await.is_err()
    {
        tracing::debug!("a try's leftover processes still hold its output open");
    }
}

/// Resolves to true once the flag is raised; false (never) when its sender is gone.
async fn raised(flag: &mut watch::Receiver<bool>) -> bool {
    flag.wait_for(|f| *f).await.is_ok()
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// `SIGTERM` to the group; once the leader is gone, up to the rest of `grace` for the others
/// to leave; then `SIGKILL` to whatever is left of the group, and reap the leader.
async fn terminate_group(child: &mut Child, pgid: Pid, grace: Duration) {
    let until = tokio::time::Instant::now() + grace;
    let _ = killpg(pgid, Signal::SIGTERM);
    if tokio::time::timeout_at(until, child.wait()).await.is_ok() {
        // The leader is gone; its descendants have no exit to await. This only runs while
        // killing, so a short poll costs nothing on the hot path.
        while tokio::time::Instant::now() < until && killpg(pgid, None) != Err(Errno::ESRCH) {
            tokio::time::sleep(Duration::from_millis(10).min(grace)).await;
        }
    }
    match killpg(pgid, Signal::SIGKILL) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => tracing::warn!(%pgid, "could not SIGKILL process group: {e}"),
    }
    let _ = child.wait().await;
}

impl Inner {
    /// The reaper, started on first use (a blocking call: spawn it off the loop).
    fn reaper(&self) -> Option<&Reaper> {
        self.reaper
            .get_or_init(|| {
                let _runtime = self.handle.enter();
                Reaper::start(&self.config.bash)
                    .inspect_err(|e| {
                        tracing::warn!(
                            "cannot start the reaper of local tries ({e}): tries will outlive \
                             this process if it is killed"
                        );
                    })
                    .ok()
            })
            .as_ref()
    }
}

/// What the reaper runs: it keeps the set of live process groups from `+ <pgid>` and
/// `- <pgid>` lines on its standard input, and on end of input (this process is gone) kills
/// the groups left. It ignores the signals that stop a service, so it outlives the scheduler's
/// own shutdown; nothing but the end of its input ends it.
const REAPER_SCRIPT: &str = r#"trap '' HUP INT TERM
groups=()
while read -r op pgid; do
  [[ $pgid =~ ^[0-9]+$ ]] || continue
  case $op in
    +) groups[pgid]=1 ;;
    -) unset 'groups[pgid]' ;;
  esac
done
[ ${#groups[@]} -eq 0 ] && exit 0
for pgid in "${!groups[@]}"; do kill -KILL -- "-$pgid" 2>/dev/null; done
echo "updraft: the process that ran these tries ended without stopping them; killed their process groups: ${!groups[*]}" >&2
"#;

/// The writing end of the reaper's pipe (see the module's doc).
struct Reaper {
    /// Non-blocking and close-on-exec: no try inherits it, so only this process's end closes
    /// the pipe, and a reaper that stopped reading never blocks a launch.
    pipe: std::io::PipeWriter,
    /// Whether a failed write was already reported.
    warned: std::sync::atomic::AtomicBool,
}

impl Reaper {
    fn start(bash: &Path) -> std::io::Result<Reaper> {
        let (reader, writer) = std::io::pipe()?;
        nix::fcntl::fcntl(
            &writer,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )?;
        // Its own process group, so a terminal's Ctrl-C reaches the scheduler and not it.
        // Tokio reaps it when it exits, the handle being dropped.
        Command::new(bash)
            .arg("-c")
            .arg(REAPER_SCRIPT)
            .arg("updraft-reaper")
            .stdin(Stdio::from(reader))
            .stdout(Stdio::null())
            .process_group(0)
            .kill_on_drop(false)
            .spawn()?;
        Ok(Reaper {
            pipe: writer,
            warned: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn track(&self, pgid: u32) {
        self.send(&format!("+ {pgid}\n"));
    }

    fn untrack(&self, pgid: u32) {
        self.send(&format!("- {pgid}\n"));
    }

    /// One `write` of a line shorter than `PIPE_BUF`, so lines from several threads never mix.
    fn send(&self, line: &str) {
        if let Err(e) = (&self.pipe).write_all(line.as_bytes())
            && !self.warned.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(
                "the reaper of local tries is not listening ({e}): tries may outlive this \
                 process if it is killed"
            );
        }
    }
}

fn outcome_of(status: std::io::Result<ExitStatus>) -> ExecOutcome {
    use std::os::unix::process::ExitStatusExt;
    let status = match status {
        Ok(s) => s,
        Err(e) => return ExecOutcome::failed(format!("waiting for the process failed: {e}")),
    };
    match (status.code(), status.signal()) {
        (Some(0), _) => ExecOutcome::Success,
        (Some(updraft_dag::SKIP_EXIT_CODE), _) => ExecOutcome::Skipped,
        (Some(code), _) => ExecOutcome::Failed {
            exit_code: Some(code),
            signal: None,
            message: format!("exit code {code}"),
        },
        (None, Some(sig)) => {
            let name = Signal::try_from(sig)
                .map(|s| s.as_str())
                .unwrap_or("unknown signal");
            ExecOutcome::Failed {
                exit_code: None,
                signal: Some(sig),
                message: format!("killed by signal {sig} ({name})"),
            }
        }
        (None, None) => ExecOutcome::failed(format!("ended with {status}")),
    }
}

type SpawnError = (String, Option<File>);

/// A spawned try: its process, its log, the pipe of its output when it goes through a
/// masker, and where its output begins in the log.
struct Spawned {
    child: Child,
    log: File,
    output: Option<PipeReader>,
    output_start: u64,
}

/// Where and as whom a try runs, made ready before it is spawned.
struct Place {
    run_as: Option<RunAs>,
    work_dir: PathBuf,
    conf_file: PathBuf,
    /// A python task's call, for the runner.
    call_file: Option<PathBuf>,
}

/// Names the file describing a python task's call (see [`crate::render::PythonCall`]).
pub const PYTHON_CALL_FILE_VAR: &str = "UPDRAFT_PYTHON_CALL_FILE";

/// The tenant of a rendered task: `UPDRAFT_TENANT`, which the renderer sets last (no `env` of
/// the DAG or task can change it).
fn tenant_of(rendered: &RenderedTask) -> Option<&str> {
    rendered
        .env
        .iter()
        .find(|(name, _)| name == "UPDRAFT_TENANT")
        .map(|(_, value)| value.as_str())
}

/// Resolves the user the try runs as, makes its working directory and writes its conf file,
/// both handed over to that user. The error says what could not be done.
fn prepare(inner: &Inner, rendered: &RenderedTask, key: &TryKey) -> Result<Place, String> {
    let run_as = inner.config.isolation.run_as(tenant_of(rendered))?;
    let root = inner.work_root()?;
    let work_dir = isolation::make_work_dir(&root, &work_dir_name(key), run_as.as_ref())?;
    let conf_file = inner
        .conf_dir()
        .map(|dir| conf_path(&dir, key))
        .and_then(|path| write_conf_file(&path, &rendered.conf).map(|()| path))
        .map_err(|e| format!("cannot write the run's conf file: {e}"))?;
    let call_file = match &rendered.program {
        Program::Python(python) => Some(
            inner
                .conf_dir()
                .map(|dir| call_path(&dir, key))
                .and_then(|path| write_conf_file(&path, &python.call).map(|()| path))
                .map_err(|e| format!("cannot write the python task's call file: {e}"))?,
        ),
        _ => None,
    };
    if let Some(user) = &run_as {
        for file in std::iter::once(&conf_file).chain(&call_file) {
            isolation::hand_over(file, user).map_err(|e| {
                format!(
                    "cannot hand {} over to `{}`: {e}",
                    file.display(),
                    user.name
                )
            })?;
        }
    }
    Ok(Place {
        run_as,
        work_dir,
        conf_file,
        call_file,
    })
}

/// The name of a try's working directory (task ids are plain identifiers: no `/`).
fn work_dir_name(key: &TryKey) -> String {
    try_stem(key)
}

/// What names a try's own files and folders: `<run>-<task>-<try>`, and for a mapped instance
/// `<run>-<task>@<map index>-<try>` (`@` is in no task id, so no two tries share a name).
fn try_stem(key: &TryKey) -> String {
    if key.map_index < 0 {
        format!("{}-{}-{}", key.run_pk, key.task_id, key.try_number)
    } else {
        format!(
            "{}-{}@{}-{}",
            key.run_pk, key.task_id, key.map_index, key.try_number
        )
    }
}

/// Opens the log, writes the header and spawns the process. On failure, the message has
/// been written to the log (if it could be opened).
fn spawn(
    config: &LocalExecutorConfig,
    rendered: &RenderedTask,
    place: Result<Place, String>,
    log_path: &Path,
    key: &TryKey,
) -> Result<Spawned, SpawnError> {
    let try_number = key.try_number;
    let mut log = open_log(log_path).map_err(|e| {
        (
            format!("cannot open log file {}: {e}", log_path.display()),
            None,
        )
    })?;
    let _ = log.write_all(header_line(try_number).as_bytes());
    let output_start = log.metadata().map_or(0, |m| m.len());
    let fail = |mut log: File, message: String| {
        // The program, its directory and the user may have been rendered from secrets.
        let message = if rendered.mask.is_empty() {
            message
        } else {
            rendered.mask.mask(&message)
        };
        let _ = writeln!(log, "[updraft] {message}");
        Err((message, Some(log)))
    };

    let mut cmd = match &rendered.program {
        Program::Bash(script) => {
            let mut c = Command::new(&config.bash);
            c.arg("-c").arg(script);
            c
        }
        Program::Command(argv) => match argv.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args);
                c
            }
            None => return fail(log, "cannot start the process: empty command".into()),
        },
        Program::Noop | Program::Sensor(_) => unreachable!("never spawned"),
        Program::Pod(_) => return fail(log, POD_WITHOUT_CLUSTER.into()),
        Program::Python(python) => {
            let interpreter = if python.requirements.is_empty() {
                PathBuf::from(&python.interpreter)
            } else {
                let cache = config
                    .venv_cache
                    .clone()
                    .unwrap_or_else(crate::venv::default_cache);
                let tenant = tenant_of(rendered).unwrap_or("default");
                let made = crate::venv::ensure(
                    &cache,
                    tenant,
                    &python.interpreter,
                    &python.requirements,
                    &log,
                );
                match made {
                    Ok(python) => python,
                    Err(message) => return fail(log, message),
                }
            };
            let mut c = Command::new(interpreter);
            c.arg("-u").arg("-c").arg(crate::render::PYTHON_RUNNER);
            c
        }
    };
    let place = match place {
        Ok(place) => place,
        Err(message) => return fail(log, message),
    };
    // Nothing of this process's environment but what the allow-list names.
    cmd.env_clear();
    cmd.envs(config.isolation.inherited_env());
    cmd.env("HOME", &place.work_dir)
        .env("TMPDIR", &place.work_dir);
    if let Some(user) = &place.run_as {
        cmd.env("USER", &user.name).env("LOGNAME", &user.name);
        // Also drops supplementary groups (the standard library does, as root).
        cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    }
    cmd.envs(config.base_env.iter().map(|(k, v)| (k, v)));
    cmd.envs(rendered.env.iter().map(|(k, v)| (k, v)));
    cmd.envs(rendered.secret_env.iter().map(|(k, v)| (k, v)));
    cmd.env(
        crate::leftovers::TRY_MARK_VAR,
        crate::leftovers::try_mark(std::process::id(), key, try_number),
    );
    cmd.env("UPDRAFT_CONF_FILE", &place.conf_file);
    if let Some(call_file) = &place.call_file {
        cmd.env(PYTHON_CALL_FILE_VAR, call_file);
    }
    cmd.env(
        xcom::XCOM_PATH_VAR,
        place.work_dir.join(xcom::XCOM_FILE_NAME),
    );
    let cwd = match (&config.default_cwd, &rendered.cwd) {
        (Some(base), Some(cwd)) => base.join(cwd),
        (None, Some(cwd)) => cwd.clone(),
        (Some(base), None) => base.clone(),
        (None, None) => place.work_dir.clone(),
    };
    cmd.current_dir(&cwd);
    let (out, err, output) = if rendered.mask.is_empty() {
        match (log.try_clone(), log.try_clone()) {
            (Ok(o), Ok(e)) => (Stdio::from(o), Stdio::from(e), None),
            (Err(e), _) | (_, Err(e)) => {
                return fail(log, format!("cannot duplicate the log file handle: {e}"));
            }
        }
    } else {
        match output_pipe() {
            Ok((o, e, reader)) => (o, e, Some(reader)),
            Err(e) => {
                return fail(
                    log,
                    format!("cannot make the pipe of the task's output: {e}"),
                );
            }
        }
    };
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .kill_on_drop(false);
    match cmd.spawn() {
        Ok(child) => Ok(Spawned {
            child,
            log,
            output,
            output_start,
        }),
        Err(e) => {
            let what = match &rendered.program {
                Program::Bash(_) => config.bash.display().to_string(),
                Program::Command(argv) => argv[0].clone(),
                Program::Python(python) => python.interpreter.clone(),
                Program::Noop | Program::Pod(_) | Program::Sensor(_) => unreachable!(),
            };
            let user = place
                .run_as
                .map(|u| format!(" as user `{}`", u.name))
                .unwrap_or_default();
            fail(
                log,
                format!("cannot start `{what}` in {}{user}: {e}", cwd.display()),
            )
        }
    }
}

/// A pipe for a try's stdout and stderr (both write ends) and the end this process reads.
fn output_pipe() -> std::io::Result<(Stdio, Stdio, PipeReader)> {
    let (reader, writer) = std::io::pipe()?;
    let second = writer.try_clone()?;
    Ok((Stdio::from(writer), Stdio::from(second), reader))
}

/// A new directory `<prefix>-…` under the system's temporary directory, with `mode` (`0711`:
/// only this user may list it).
fn make_temp_dir(prefix: &str, mode: u32) -> Result<PathBuf, String> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    let base = std::env::temp_dir();
    let mut last_error = None;
    for attempt in 0..16u32 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = base.join(format!(
            "{prefix}-{}-{nanos:x}{attempt}",
            std::process::id()
        ));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            // The umask may have taken bits of `mode` away.
            Ok(()) => {
                return std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))
                    .map(|()| dir)
                    .map_err(|e| e.to_string());
            }
            Err(e) => last_error = Some(e),
        }
    }
    let e = last_error.map(|e| e.to_string()).unwrap_or_default();
    Err(format!(
        "cannot make a directory in {}: {e}",
        base.display()
    ))
}

/// The conf file of one try (task ids are plain identifiers: no `/`).
fn conf_path(dir: &Path, key: &TryKey) -> PathBuf {
    dir.join(format!("{}.json", try_stem(key)))
}

/// The call file of one python try, beside its conf file.
fn call_path(dir: &Path, key: &TryKey) -> PathBuf {
    dir.join(format!("{}.call.json", try_stem(key)))
}

fn write_conf_file(path: &Path, conf: &str) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(conf.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn header_line(try_number: u32) -> String {
    format!("[updraft] try {try_number} started at {}\n", now())
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn humanize(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.3}s", d.as_secs_f64())
    }
}
