//! What the object-store emulators share: the cache folder they are installed into (once,
//! under a file lock, reused by every later test binary), free ports, starting a server so
//! that it dies with the test binary, waiting until it answers HTTP, and [`ObjectServer`],
//! what a test gets: the environment that reaches the server through `object_store`, and
//! buckets.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

/// How long a server may take to answer after it was started (a first start of a Python
/// server compiles its modules).
const START_DEADLINE: Duration = Duration::from_secs(90);

/// The folder emulators are installed into: `UPDRAFT_TEST_SERVERS_DIR`, or
/// `<target>/test-servers` beside the test binary's profile folder.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("UPDRAFT_TEST_SERVERS_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    // <target>/<profile>/deps/<binary>
    let target = exe
        .ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("test-servers")
}

/// Runs `install` into `cache_dir()/<name>` (a name holding the version installed) unless a
/// previous run completed it; one
/// installer at a time across processes (a lock file), a half-done install started over.
pub fn installed(name: &str, install: impl FnOnce(&Path) -> Result<(), String>) -> PathBuf {
    let cache = cache_dir();
    fs::create_dir_all(&cache).unwrap_or_else(|e| panic!("{}: {e}", cache.display()));
    let lock = File::create(cache.join(format!(".{name}.lock")))
        .unwrap_or_else(|e| panic!("{}: {e}", cache.display()));
    let _lock = Flock::lock(lock, FlockArg::LockExclusive)
        .unwrap_or_else(|(_, e)| panic!("locking the {name} install: {e}"));
    let dir = cache.join(name);
    let done = dir.join(".installed");
    if !done.exists() {
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        if let Err(message) = install(&dir) {
            panic!("installing {name} into {}: {message}", dir.display());
        }
        fs::write(&done, b"").unwrap_or_else(|e| panic!("{}: {e}", done.display()));
    }
    dir
}

/// Runs an installer command, its output kept for the error.
pub fn run(command: &mut Command) -> Result<(), String> {
    let shown = format!("{command:?}");
    let output = command
        .output()
        .map_err(|e| format!("{shown}: cannot start: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{shown}: {}\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Installs `packages` from PyPI into a new virtualenv at `dir`.
pub fn python_venv(dir: &Path, packages: &[&str]) -> Result<(), String> {
    run(Command::new("python3").arg("-m").arg("venv").arg(dir))?;
    run(Command::new(dir.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(packages))
}

/// The file for a server's output: `<cache>/logs/<server>-<pid>.log`; logs of test
/// binaries no longer running are removed.
pub fn log_path(server: &str) -> PathBuf {
    let logs = cache_dir().join("logs");
    fs::create_dir_all(&logs).unwrap_or_else(|e| panic!("{}: {e}", logs.display()));
    for entry in fs::read_dir(&logs).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix(&format!("{server}-"))
            .and_then(|rest| rest.strip_suffix(".log"));
        if pid.is_some_and(|pid| !Path::new("/proc").join(pid).exists()) {
            let _ = fs::remove_file(entry.path());
        }
    }
    logs.join(format!("{server}-{}.log", std::process::id()))
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a local port");
    listener.local_addr().expect("local address").port()
}

/// A server process that lives as long as the test binary: it is started under a small
/// shell that holds the read end of a pipe whose write end only this process has; when the
/// test binary exits (however it ends) the pipe closes and the shell kills the server.
pub struct Running {
    pub port: u16,
    pub log: PathBuf,
    _lifeline: ChildStdin,
    _shell: Child,
}

/// Runs the server (`"$@"`) in the background, with a watcher that kills it when its
/// standard input (the lifeline) reaches end of file, and exits when the server does.
/// Background jobs of a non-interactive shell read `/dev/null`, so the watcher reads the
/// lifeline through a copy on descriptor 3.
const LIFELINE_SCRIPT: &str = r#"exec 3<&0
"$@" </dev/null 3<&- &
server=$!
{ read _ignored <&3; kill "$server" 2>/dev/null; } &
wait "$server"
"#;

/// Starts `program args…` (its output into `log`) and waits until it answers HTTP on `port`.
pub fn start(program: &Path, args: &[String], port: u16, log: PathBuf) -> Running {
    start_until(program, args, port, log, answers_http)
}

/// [`start`], waiting until `ready(port)` holds.
pub fn start_until(
    program: &Path,
    args: &[String],
    port: u16,
    log: PathBuf,
    ready: fn(u16) -> bool,
) -> Running {
    let log_file = File::create(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(LIFELINE_SCRIPT)
        .arg("sh")
        .arg(program)
        .args(args)
        .current_dir(log.parent().expect("the log's folder"))
        .stdin(Stdio::piped())
        .stdout(log_file.try_clone().expect("log file"))
        .stderr(log_file)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
    let lifeline = child.stdin.take().expect("the server's lifeline");
    let deadline = Instant::now() + START_DEADLINE;
    while !ready(port) {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{} exited ({status}) before answering on port {port}:\n{}",
                program.display(),
                tail(&log)
            );
        }
        if Instant::now() > deadline {
            panic!(
                "{} did not answer on port {port} within {START_DEADLINE:?}:\n{}",
                program.display(),
                tail(&log)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Running {
        port,
        log,
        _lifeline: lifeline,
        _shell: child,
    }
}

fn tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let mut start = text.len().saturating_sub(4000);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

fn answers_http(port: u16) -> bool {
    request(port, "GET", "/", &[], b"").is_ok()
}

/// One HTTP/1.1 request to `127.0.0.1:port`: the status code and the body.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()?;
    let _ = stream.shutdown(Shutdown::Write);
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {text:.200}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, body)| body.to_string());
    Ok((status, body))
}

/// `key` percent-encoded for a URL's path, its `/` kept.
pub fn encode_key(key: &str) -> String {
    let mut encoded = String::new();
    for byte in key.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'/' | b'-' | b'_' | b'.' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// The kinds of object store an emulator stands in for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    S3,
    Azure,
    Gcs,
}

/// A running object-store emulator, as a test sees it.
pub struct ObjectServer {
    pub kind: StoreKind,
    /// The address `object_store` reaches it at.
    pub endpoint: String,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) running: Running,
    pub(crate) create: fn(&ObjectServer, &str) -> Result<(), String>,
    pub(crate) upload: fn(&ObjectServer, &str, &str, &[u8]) -> Result<(), String>,
}

impl ObjectServer {
    /// The environment variables a process (or `ObjectLocation::open_with_env`) needs to
    /// reach this server through `object_store`'s client.
    pub fn env(&self) -> Vec<(String, String)> {
        self.env.clone()
    }

    pub fn port(&self) -> u16 {
        self.running.port
    }

    /// Creates the bucket (S3, GCS) or container (Azure) `name`.
    pub fn create_bucket(&self, name: &str) {
        if let Err(message) = (self.create)(self, name) {
            panic!(
                "creating bucket {name} on {:?}: {message}\n{}",
                self.kind,
                tail(&self.running.log)
            );
        }
    }

    /// Writes `body` as object `key` of `bucket` through the server's own upload API (not
    /// object_store): how tests lay out a store's content on every emulator alike.
    pub fn upload(&self, bucket: &str, key: &str, body: &[u8]) {
        if let Err(message) = (self.upload)(self, bucket, key, body) {
            panic!(
                "uploading {bucket}/{key} to {:?}: {message}\n{}",
                self.kind,
                tail(&self.running.log)
            );
        }
    }

    /// Creates a bucket of a name no other test of this binary uses, and returns its name.
    pub fn new_bucket(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        // Letters and digits only: valid under every store's naming rules.
        let name = format!(
            "updraft{}n{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        self.create_bucket(&name);
        name
    }

    /// The URL of `prefix` in `bucket`, as `[[sources]] objects` or
    /// `remote_base_log_folder` would name it.
    pub fn url(&self, bucket: &str, prefix: &str) -> String {
        let scheme = match self.kind {
            StoreKind::S3 => "s3",
            StoreKind::Azure => "az",
            StoreKind::Gcs => "gs",
        };
        format!("{scheme}://{bucket}/{}", prefix.trim_matches('/'))
    }
}
