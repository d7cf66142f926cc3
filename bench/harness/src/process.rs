//! Processes, ports and folders the scenarios share, and the physical limit.
//!
//! Every process the harness starts runs in a process group of its own, and every temporary
//! folder is registered: they are stopped and removed when their guard is dropped (the normal
//! end and any error), and by [`clean_up_on_signals`] when the harness is interrupted.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Process groups started and not yet ended.
static GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());
/// Temporary folders not yet removed.
static FOLDERS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// How long a stopped group has to end (the Airflow script stops Airflow in its exit trap)
/// before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// A fresh folder under the system's temporary directory, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .subsec_nanos();
        let path = std::env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        lock(&FOLDERS).push(path.clone());
        Ok(TempDir(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        lock(&FOLDERS).retain(|p| p != &self.0);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A child process leading a process group of its own: the group is stopped (SIGTERM, then
/// SIGKILL after a grace period) when this is dropped.
pub struct Group {
    child: Child,
}

impl Group {
    pub fn spawn(mut command: Command) -> Result<Self> {
        let child = command
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {:?}", command.get_program()))?;
        lock(&GROUPS).push(child.id() as i32);
        Ok(Group { child })
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Waits for the leader, giving up (and stopping the group) after `patience`.
    pub fn wait(&mut self, patience: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                self.stop();
                bail!("did not finish within {} s", patience.as_secs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops every process of the group and reaps the leader.
    pub fn stop(&mut self) {
        let pgid = self.child.id() as i32;
        stop_group(pgid);
        let _ = self.child.wait();
        lock(&GROUPS).retain(|g| *g != pgid);
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.stop();
    }
}

/// SIGTERM to the group, SIGKILL if some of it is still there after [`STOP_GRACE`].
fn stop_group(pgid: i32) {
    let pgid = Pid::from_raw(pgid);
    if killpg(pgid, Signal::SIGTERM) == Err(Errno::ESRCH) {
        return;
    }
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if !has_live_member(pgid.as_raw()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = killpg(pgid, Signal::SIGKILL);
}

/// Whether some process of group `pgid` is still running: not a zombie waiting to be
/// reaped (a group's leader stays one until its `Child` is waited for).
fn has_live_member(pgid: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|stat| stat_state_and_group(&stat))
            .is_some_and(|(state, group)| group == pgid && state != 'Z')
    })
}

/// The state letter and process group in the text of `/proc/PID/stat`.
fn stat_state_and_group(stat: &str) -> Option<(char, i32)> {
    // "PID (COMMAND) STATE PPID PGRP ...": the command may hold spaces and parentheses.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let group = fields.nth(1)?.parse().ok()?;
    Some((state, group))
}

/// Runs `command` in a group of its own (stderr passed through) and returns its stdout;
/// a failed exit or more than `patience` is an error.
pub fn run_captured(mut command: Command, patience: Duration) -> Result<String> {
    let program = format!("{:?}", command.get_program());
    command.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut group = Group::spawn(command)?;
    let mut stdout = group.child().stdout.take().context("no stdout")?;
    // Read on a thread: a full pipe must not stall the child while we wait for it.
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).map(|_| text)
    });
    let status = group.wait(patience).with_context(|| program.clone())?;
    group.stop();
    let text = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reading the output of {program}"))??;
    if !status.success() {
        bail!("{program} failed ({status})");
    }
    Ok(text)
}

/// On SIGINT or SIGTERM: stop every group still running, remove every temporary folder and
/// exit (130 or 143, as a shell reports them).
pub fn clean_up_on_signals() {
    use tokio::signal::unix::{SignalKind, signal};
    tokio::spawn(async {
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            eprintln!("cannot watch for signals: an interrupted run may leave processes behind");
            return;
        };
        let code = tokio::select! {
            _ = int.recv() => 130,
            _ = term.recv() => 143,
        };
        eprintln!("interrupted: stopping what the harness started");
        tokio::task::spawn_blocking(clean_up).await.ok();
        std::process::exit(code);
    });
}

fn clean_up() {
    let groups = lock(&GROUPS).clone();
    let stoppers: Vec<_> = groups
        .into_iter()
        .map(|g| std::thread::spawn(move || stop_group(g)))
        .collect();
    for s in stoppers {
        let _ = s.join();
    }
    for folder in lock(&FOLDERS).drain(..) {
        let _ = std::fs::remove_dir_all(folder);
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until `GET /api/v2/monitor/health` on `port` answers 200.
pub fn wait_for_health(
    port: u16,
    patience: Duration,
    mut alive: impl FnMut() -> bool,
) -> Result<()> {
    let deadline = Instant::now() + patience;
    while Instant::now() < deadline {
        if health_ok(port) {
            return Ok(());
        }
        if !alive() {
            bail!("the service exited before its API was ready");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    bail!("the API on port {port} was not ready in {patience:?}")
}

fn health_ok(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let request = format!(
        "GET /api/v2/monitor/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    );
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.ends_with(b"200")
}

/// Seconds for the shell to spawn `/bin/true` `n` times, one after the other: the least a
/// process-per-task orchestrator can spend on `n` tasks on this machine.
pub fn spawn_true(n: usize) -> Result<f64> {
    let script = format!("i=0; while [ $i -lt {n} ]; do /bin/true; i=$((i+1)); done");
    let started = Instant::now();
    let status = Command::new("bash").arg("-c").arg(script).status()?;
    let seconds = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!("the spawn loop failed");
    }
    Ok(seconds)
}

/// Seconds to spawn `/bin/true` once and wait for it, from this process.
pub fn spawn_true_once() -> Result<f64> {
    let started = Instant::now();
    Command::new("/bin/true").status()?;
    Ok(started.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_state_and_group_from_proc_stat() {
        let stat = "4242 (updraft (x) y) S 1 4240 4240 0 -1 4194560 0 0";
        assert_eq!(stat_state_and_group(stat), Some(('S', 4240)));
        assert_eq!(stat_state_and_group("7 (z) Z 1 9"), Some(('Z', 9)));
        assert_eq!(stat_state_and_group("garbage"), None);
    }

    #[test]
    fn a_dropped_group_takes_its_children_with_it() {
        let mut command = Command::new("sh");
        command.args(["-c", "sleep 30 & sleep 30"]);
        let group = Group::spawn(command).unwrap();
        let pgid = group.child.id() as i32;
        std::thread::sleep(Duration::from_millis(100));
        assert!(has_live_member(pgid));
        drop(group);
        assert!(!has_live_member(pgid));
        assert!(!lock(&GROUPS).contains(&pgid));
    }

    #[test]
    fn a_temporary_folder_is_removed_when_dropped() {
        let dir = TempDir::new("updraft-bench-test").unwrap();
        let path = dir.path().to_path_buf();
        std::fs::write(path.join("f"), "x").unwrap();
        drop(dir);
        assert!(!path.exists());
        assert!(!lock(&FOLDERS).contains(&path));
    }
}
