//! Git over SSH: Debian's OpenSSH server (`/usr/sbin/sshd`, package `openssh-server`) started
//! as the current user on a free local port, once per test binary, with a generated host key
//! and one authorized client key; `git-upload-pack` runs from the login's `PATH`. Gives the
//! client key and known_hosts files for it (plain, hashed, and one holding another key).

use std::fs;
use std::io::Read;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const SSHD: &str = "/usr/sbin/sshd";

/// The running server.
pub struct Sshd {
    port: u16,
    user: String,
    dir: tempfile::TempDir,
}

/// The server of this test binary, started on first use; killed when the binary exits.
pub fn sshd() -> &'static Sshd {
    static SERVER: OnceLock<Sshd> = OnceLock::new();
    SERVER.get_or_init(Sshd::start)
}

static CHILD: Mutex<Option<Child>> = Mutex::new(None);

extern "C" fn stop_sshd() {
    if let Ok(mut child) = CHILD.lock()
        && let Some(child) = child.as_mut()
    {
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Sshd {
    fn start() -> Sshd {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: install Debian's openssh-server (scripts/test does)"
        );
        let dir = tempfile::tempdir().expect("a folder for sshd");
        let user = current_user();
        keygen(&dir.path().join("host_ed25519"));
        keygen(&dir.path().join("client_ed25519"));
        keygen(&dir.path().join("other_host_ed25519"));
        fs::copy(
            dir.path().join("client_ed25519.pub"),
            dir.path().join("authorized_keys"),
        )
        .expect("authorized_keys");
        if is_root() {
            // sshd's privilege separation needs it when started as root.
            fs::create_dir_all("/run/sshd").expect("/run/sshd");
            fs::set_permissions("/run/sshd", fs::Permissions::from_mode(0o755))
                .expect("/run/sshd mode");
        }
        let port = free_port();
        let config = dir.path().join("sshd_config");
        fs::write(&config, sshd_config(dir.path(), port, &user)).expect("sshd_config");
        let log = fs::File::create(dir.path().join("sshd.log")).expect("sshd.log");
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting sshd");
        *CHILD.lock().unwrap() = Some(child);
        unsafe { libc::atexit(stop_sshd) };
        let server = Sshd { port, user, dir };
        server.wait_until_answering();
        server.write_known_hosts();
        server
    }

    fn wait_until_answering(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut banner = [0u8; 8];
                if stream.read_exact(&mut banner).is_ok() && banner.starts_with(b"SSH-2.0") {
                    return;
                }
            }
            if let Some(status) = CHILD
                .lock()
                .unwrap()
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                let log = fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default();
                panic!("sshd exited ({status}): {log}");
            }
            assert!(
                Instant::now() < deadline,
                "sshd did not answer on port {} within 20 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn write_known_hosts(&self) {
        let host = format!("[127.0.0.1]:{}", self.port);
        let line = |public: &str| {
            let key = fs::read_to_string(self.dir.path().join(public)).expect("a public key");
            let mut fields = key.split_whitespace();
            format!(
                "{host} {} {}\n",
                fields.next().unwrap(),
                fields.next().unwrap()
            )
        };
        fs::write(self.known_hosts(), line("host_ed25519.pub")).expect("known_hosts");
        fs::write(self.wrong_known_hosts(), line("other_host_ed25519.pub")).expect("known_hosts");
        fs::write(self.hashed_known_hosts(), line("host_ed25519.pub")).expect("known_hosts");
        let status = Command::new("ssh-keygen")
            .arg("-H")
            .arg("-f")
            .arg(self.hashed_known_hosts())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("ssh-keygen -H");
        assert!(status.success(), "ssh-keygen -H failed");
    }

    /// The `ssh://` URL of the repository at `path` on this machine.
    pub fn url(&self, path: &Path) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            path.display()
        )
    }

    /// The private key the server authorizes.
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_ed25519")
    }

    /// A known_hosts file holding the server's key (`[127.0.0.1]:port ssh-ed25519 …`).
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// The same, with the host name hashed by `ssh-keygen -H`.
    pub fn hashed_known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts_hashed")
    }

    /// A known_hosts file holding another key for the server's host and port.
    pub fn wrong_known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts_wrong")
    }
}

fn sshd_config(dir: &Path, port: u16, user: &str) -> String {
    let root_login = if is_root() { "prohibit-password" } else { "no" };
    format!(
        "Port {port}\n\
         ListenAddress 127.0.0.1\n\
         HostKey {dir}/host_ed25519\n\
         PidFile {dir}/sshd.pid\n\
         AuthorizedKeysFile {dir}/authorized_keys\n\
         AllowUsers {user}\n\
         PermitRootLogin {root_login}\n\
         StrictModes no\n\
         UsePAM no\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PubkeyAuthentication yes\n\
         MaxStartups 100\n\
         LogLevel ERROR\n",
        dir = dir.display()
    )
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "updraft-test", "-f"])
        .arg(path)
        .stdout(Stdio::null())
        .status()
        .expect("ssh-keygen (openssh-client)");
    assert!(status.success(), "ssh-keygen failed for {}", path.display());
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free local port")
        .port()
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

fn current_user() -> String {
    let output = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8(output.stdout)
        .expect("a user name")
        .trim()
        .to_string()
}
