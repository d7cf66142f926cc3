//! An SMTP sink: PyPI's `aiosmtpd`, installed into a virtualenv in the cache folder on first
//! use and started once per test binary, keeping every message it accepts in a Maildir.

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::emulator::{self, Running};

/// The aiosmtpd release the tests were written against.
const AIOSMTPD: &str = "aiosmtpd==1.4.6";

/// The SMTP server of this test binary: plain SMTP (no TLS, no authentication) on a local
/// port.
pub struct SmtpSink {
    pub port: u16,
    maildir: PathBuf,
    _running: Running,
}

/// The SMTP sink of this test binary, started on first use.
pub fn smtp() -> &'static SmtpSink {
    static SERVER: OnceLock<SmtpSink> = OnceLock::new();
    SERVER.get_or_init(start)
}

fn start() -> SmtpSink {
    let venv = emulator::installed("aiosmtpd-1.4.6", |dir| {
        emulator::python_venv(dir, &[AIOSMTPD])
    });
    let port = emulator::free_port();
    let log = emulator::log_path("aiosmtpd");
    let maildir = log.with_extension("maildir");
    let _ = std::fs::remove_dir_all(&maildir);
    let running = emulator::start_until(
        &venv.join("bin/python"),
        &[
            "-m".into(),
            "aiosmtpd".into(),
            "-n".into(),
            "-l".into(),
            format!("127.0.0.1:{port}"),
            "-c".into(),
            "aiosmtpd.handlers.Mailbox".into(),
            maildir.display().to_string(),
        ],
        port,
        log,
        greets,
    );
    SmtpSink {
        port,
        maildir,
        _running: running,
    }
}

/// Whether an SMTP server on `port` sends its `220` greeting.
fn greets(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut greeting = [0u8; 3];
    stream.read_exact(&mut greeting).is_ok() && &greeting == b"220"
}

impl SmtpSink {
    /// The messages received so far (raw RFC 5322 text), in no particular order.
    pub fn messages(&self) -> Vec<String> {
        read_maildir(&self.maildir)
    }

    /// Waits until a received message contains `needle`, up to `deadline`; the message.
    pub fn wait_for(&self, needle: &str, deadline: Duration) -> Option<String> {
        let until = Instant::now() + deadline;
        loop {
            if let Some(found) = self.messages().into_iter().find(|m| m.contains(needle)) {
                return Some(found);
            }
            if Instant::now() > until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn read_maildir(maildir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        for entry in std::fs::read_dir(maildir.join(sub))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(text) = std::fs::read_to_string(entry.path()) {
                out.push(text);
            }
        }
    }
    out
}
