//! The simulated kubelet: takes a pod through its phases, running its first container as a
//! local process.
//!
//! A container's termination message (`/dev/termination-log` in a real pod, put by the
//! kubelet into `state.terminated.message`) is simulated with a file: the process gets
//! [`TERMINATION_LOG_VAR`] naming a file of its own, absent at start; what it wrote there
//! (at most 4096 bytes, the kubelet's limit) becomes the message after it exits.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, Pod, PodCondition, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use nix::sys::signal::{Signal as Sig, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt as _;
use tokio::sync::watch;

use crate::{Shared, Signal};

/// How a pod's image asks it to behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Normal,
    ErrImagePull,
    Unschedulable,
    Oom,
    Evicted,
}

fn mode_of(image: &str) -> Mode {
    if image.contains("err-image-pull") {
        Mode::ErrImagePull
    } else if image.contains("unschedulable") {
        Mode::Unschedulable
    } else if image.contains("oom") {
        Mode::Oom
    } else if image.contains("evicted") {
        Mode::Evicted
    } else {
        Mode::Normal
    }
}

/// The variable naming the file a container writes its termination message to.
pub const TERMINATION_LOG_VAR: &str = "UPDRAFT_FAKE_TERMINATION_LOG";

/// The kubelet reads at most this much of a termination message.
const TERMINATION_MESSAGE_MAX: u64 = 4096;

/// The file standing for a pod's `/dev/termination-log`.
fn termination_log(shared: &Shared, ns: &str, name: &str) -> std::path::PathBuf {
    shared
        .workdir
        .path()
        .join(format!("termination-log-{ns}-{name}"))
}

/// The message the container left, as the kubelet reads it: `None` when it wrote nothing.
fn termination_message(path: &std::path::Path) -> Option<String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    file.take(TERMINATION_MESSAGE_MAX)
        .read_to_end(&mut bytes)
        .ok()?;
    let _ = std::fs::remove_file(path);
    (!bytes.is_empty()).then(|| String::from_utf8_lossy(&bytes).into_owned())
}

fn now() -> Time {
    Time(Timestamp::now())
}

fn container_status(
    name: &str,
    image: &str,
    state: ContainerState,
    started: bool,
) -> ContainerStatus {
    ContainerStatus {
        name: name.to_owned(),
        image: image.to_owned(),
        image_id: String::new(),
        ready: state.running.is_some(),
        restart_count: 0,
        started: Some(started),
        state: Some(state),
        ..ContainerStatus::default()
    }
}

fn condition(kind: &str, status: &str) -> PodCondition {
    PodCondition {
        type_: kind.to_owned(),
        status: status.to_owned(),
        last_transition_time: Some(now()),
        ..PodCondition::default()
    }
}

fn waiting(reason: &str, message: String) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_owned()),
            message: Some(message),
        }),
        ..ContainerState::default()
    }
}

/// What a pod's first container is.
struct Spec {
    name: String,
    image: String,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    active_deadline: Option<Duration>,
}

fn spec_of(pod: &Pod, env: Vec<(String, String)>) -> Spec {
    let spec = pod.spec.clone().unwrap_or_default();
    let c = spec.containers.first().cloned().unwrap_or_default();
    let mut argv = c.command.clone().unwrap_or_default();
    argv.extend(c.args.clone().unwrap_or_default());
    Spec {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        argv,
        env,
        active_deadline: spec
            .active_deadline_seconds
            .map(|s| Duration::from_secs(s.max(0) as u64)),
    }
}

/// Runs a created pod to its end, then waits for deletion.
pub async fn run(
    shared: Arc<Shared>,
    ns: String,
    name: String,
    mut signals: watch::Receiver<Signal>,
) {
    let Some(pod) = shared
        .lock()
        .pods
        .get(&(ns.clone(), name.clone()))
        .map(|e| e.pod.clone())
    else {
        return;
    };
    let container = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .cloned()
        .unwrap_or_default();
    let env = crate::secrets::container_env(&shared, &ns, &container);
    let spec = spec_of(&pod, env.clone().unwrap_or_default());
    let mode = mode_of(&spec.image);
    let set_status = |status: PodStatus| {
        shared.update(&ns, &name, |e| e.pod.status = Some(status));
    };

    if mode == Mode::Unschedulable {
        let mut scheduled = condition("PodScheduled", "False");
        scheduled.reason = Some("Unschedulable".to_owned());
        scheduled.message = Some("0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.".to_owned());
        set_status(PodStatus {
            phase: Some("Pending".to_owned()),
            conditions: Some(vec![scheduled]),
            ..PodStatus::default()
        });
        return until_deleted(&shared, &ns, &name, &mut signals).await;
    }
    let pending = |state: ContainerState| PodStatus {
        phase: Some("Pending".to_owned()),
        conditions: Some(vec![condition("PodScheduled", "True")]),
        container_statuses: Some(vec![container_status(
            &spec.name,
            &spec.image,
            state,
            false,
        )]),
        ..PodStatus::default()
    };
    set_status(pending(waiting("ContainerCreating", String::new())));
    if mode == Mode::ErrImagePull {
        let pull = format!("failed to pull image \"{}\": not found", spec.image);
        set_status(pending(waiting("ErrImagePull", pull)));
        // Kubernetes backs off after the first failed pull; so does the fake, briefly.
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                let back_off = format!("Back-off pulling image \"{}\"", spec.image);
                set_status(pending(waiting("ImagePullBackOff", back_off)));
            }
            _ = signals.changed() => {}
        }
        return until_deleted(&shared, &ns, &name, &mut signals).await;
    }
    if let Err(message) = env {
        set_status(pending(waiting("CreateContainerConfigError", message)));
        return until_deleted(&shared, &ns, &name, &mut signals).await;
    }
    if *signals.borrow() != Signal::None {
        return until_deleted(&shared, &ns, &name, &mut signals).await;
    }

    let started_at = now();
    let message_path = termination_log(&shared, &ns, &name);
    let (code, killed) = match spawn(&shared, &spec, &message_path) {
        Ok(child) => {
            shared.update(&ns, &name, |e| e.started = true);
            set_status(running(&spec, &started_at));
            supervise(&shared, &ns, &name, child, &spec, &mut signals).await
        }
        Err(message) => {
            append_log(&shared, &ns, &name, format!("{message}\n").into_bytes());
            shared.update(&ns, &name, |e| e.started = true);
            (128, Ending::Normal)
        }
    };
    let (phase, pod_reason, container_reason, code) = match (mode, killed) {
        (_, Ending::Deadline) => (
            "Failed",
            Some((
                "DeadlineExceeded",
                "Pod was active on the node longer than the specified deadline",
            )),
            "Error",
            137,
        ),
        (Mode::Oom, Ending::Normal) => ("Failed", None, "OOMKilled", 137),
        (Mode::Evicted, Ending::Normal) => (
            "Failed",
            Some((
                "Evicted",
                "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi.",
            )),
            "Error",
            137,
        ),
        (_, _) if code == 0 => ("Succeeded", None, "Completed", 0),
        _ => ("Failed", None, "Error", code),
    };
    let terminated = ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: code,
            reason: Some(container_reason.to_owned()),
            started_at: Some(started_at.clone()),
            finished_at: Some(now()),
            message: termination_message(&message_path),
            ..ContainerStateTerminated::default()
        }),
        ..ContainerState::default()
    };
    shared.update(&ns, &name, |e| {
        e.log_done = true;
        e.pod.status = Some(PodStatus {
            phase: Some(phase.to_owned()),
            reason: pod_reason.map(|(r, _)| r.to_owned()),
            message: pod_reason.map(|(_, m)| m.to_owned()),
            start_time: Some(started_at.clone()),
            conditions: Some(vec![
                condition("PodScheduled", "True"),
                condition("Ready", "False"),
            ]),
            container_statuses: Some(vec![container_status(
                &spec.name,
                &spec.image,
                terminated,
                false,
            )]),
            ..PodStatus::default()
        });
    });
    until_deleted(&shared, &ns, &name, &mut signals).await;
}

fn running(spec: &Spec, started_at: &Time) -> PodStatus {
    let state = ContainerState {
        running: Some(ContainerStateRunning {
            started_at: Some(started_at.clone()),
        }),
        ..ContainerState::default()
    };
    PodStatus {
        phase: Some("Running".to_owned()),
        pod_ip: Some("10.0.0.7".to_owned()),
        start_time: Some(started_at.clone()),
        conditions: Some(vec![
            condition("PodScheduled", "True"),
            condition("Ready", "True"),
        ]),
        container_statuses: Some(vec![container_status(&spec.name, &spec.image, state, true)]),
        ..PodStatus::default()
    }
}

fn spawn(
    shared: &Shared,
    spec: &Spec,
    termination_log: &std::path::Path,
) -> Result<tokio::process::Child, String> {
    let Some((program, args)) = spec.argv.split_first() else {
        return Err("the container has no command (the fake has no image entrypoints)".to_owned());
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", shared.workdir.path())
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .env(TERMINATION_LOG_VAR, termination_log)
        .current_dir(shared.workdir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    cmd.spawn().map_err(|e| format!("exec {program}: {e}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Normal,
    Deadline,
    Signalled,
}

/// Waits for the process (copying its output to the log) or for a signal to end it.
async fn supervise(
    shared: &Arc<Shared>,
    ns: &str,
    name: &str,
    mut child: tokio::process::Child,
    spec: &Spec,
    signals: &mut watch::Receiver<Signal>,
) -> (i32, Ending) {
    let pgid = child.id().map(|id| Pid::from_raw(id as i32));
    let readers = [
        child
            .stdout
            .take()
            .map(|o| copy_output(shared.clone(), ns, name, o)),
        child
            .stderr
            .take()
            .map(|e| copy_output(shared.clone(), ns, name, e)),
    ];
    let deadline = spec
        .active_deadline
        .map(|d| tokio::time::Instant::now() + d);
    let mut ending = Ending::Normal;
    let mut forced_code = None;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } }, if ending == Ending::Normal => {
                ending = Ending::Deadline;
                signal_group(pgid, Sig::SIGKILL);
            }
            changed = signals.changed() => {
                if changed.is_err() { signal_group(pgid, Sig::SIGKILL); continue; }
                let signal = *signals.borrow();
                match signal {
                    Signal::None => {}
                    Signal::Finish(code) => {
                        forced_code = Some(code);
                        ending = Ending::Signalled;
                        signal_group(pgid, Sig::SIGKILL);
                    }
                    Signal::Terminate { grace } => {
                        ending = Ending::Signalled;
                        signal_group(pgid, Sig::SIGTERM);
                        let shared_pgid = pgid;
                        tokio::spawn(async move {
                            tokio::time::sleep(grace).await;
                            signal_group(shared_pgid, Sig::SIGKILL);
                        });
                    }
                }
            }
        }
    };
    for reader in readers.into_iter().flatten() {
        let _ = reader.await;
    }
    let code = forced_code.unwrap_or_else(|| exit_code(status));
    (code, ending)
}

fn exit_code(status: std::io::Result<std::process::ExitStatus>) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    match status {
        Ok(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(9)),
        Err(_) => 128,
    }
}

fn signal_group(pgid: Option<Pid>, signal: Sig) {
    if let Some(pgid) = pgid {
        let _ = killpg(pgid, signal);
    }
}

fn copy_output(
    shared: Arc<Shared>,
    ns: &str,
    name: &str,
    mut out: impl tokio::io::AsyncRead + Unpin + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let (ns, name) = (ns.to_owned(), name.to_owned());
    tokio::spawn(async move {
        let mut buf = vec![0u8; 8192];
        while let Ok(n) = out.read(&mut buf).await {
            if n == 0 {
                break;
            }
            append_log(&shared, &ns, &name, buf[..n].to_vec());
        }
    })
}

fn append_log(shared: &Shared, ns: &str, name: &str, bytes: Vec<u8>) {
    {
        let mut state = shared.lock();
        if let Some(entry) = state.pods.get_mut(&(ns.to_owned(), name.to_owned())) {
            entry.log.push((chrono::Utc::now(), bytes));
        }
    }
    shared.notify();
}

/// After the container: the pod stays until deleted; then it is removed (DELETED).
async fn until_deleted(
    shared: &Shared,
    ns: &str,
    name: &str,
    signals: &mut watch::Receiver<Signal>,
) {
    loop {
        if matches!(*signals.borrow(), Signal::Terminate { .. }) {
            break;
        }
        if signals.changed().await.is_err() {
            return;
        }
    }
    {
        let mut state = shared.lock();
        let Some(mut entry) = state.pods.remove(&(ns.to_owned(), name.to_owned())) else {
            return;
        };
        shared.record(&mut state, "DELETED", &mut entry.pod);
        crate::secrets::collect_owned_by(&mut state, &entry.pod);
    }
    shared.notify();
}
