//! Processes, ports and folders the scenarios share, and the physical limit.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A fresh folder under the system's temporary directory, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .subsec_nanos();
        let path = std::env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(TempDir(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
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
