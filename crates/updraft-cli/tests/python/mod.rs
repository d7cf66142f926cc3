//! Python tools for the API tests: a virtual environment with some packages from PyPI, made
//! once and kept under `target/` so later runs reuse it, and the address the server under
//! test announces.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::{SchedulerProcess, wait_until};

/// A virtual environment under `target/tmp/<name>` with `requirements` installed; created on
/// first use (or when the requirements change). Panics, failing the test, when Python or pip
/// cannot make it: the test needs the real packages and must not pass without them.
pub fn venv(name: &str, requirements: &[&str]) -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(root).expect("creating target/tmp");
    let dir = root.join(name);
    let marker = dir.join("updraft-requirements.txt");
    let wanted = requirements.join("\n");
    // Tests running at once take turns; the marker is written only after a complete install.
    let lock = fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(root.join(format!("{name}.lock")))
        .expect("opening the venv lock");
    lock.lock().expect("locking the venv");
    if fs::read_to_string(&marker).ok().as_deref() == Some(wanted.as_str()) {
        return dir;
    }
    let _ = fs::remove_dir_all(&dir);
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&dir),
        "python3 -m venv (is Python 3 with the venv module installed?)",
    );
    run(
        Command::new(dir.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-input",
            ])
            .args(requirements),
        &format!("pip install {}", requirements.join(" ")),
    );
    fs::write(&marker, &wanted).expect("writing the venv marker");
    dir
}

fn run(command: &mut Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: could not start: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The `http://ADDR` the service prints once its server listens.
pub fn api_address(service: &SchedulerProcess) -> String {
    wait_until(
        "the server to announce its address",
        Duration::from_secs(60),
        || {
            let output = service.output();
            let (_, rest) = output.split_once("updraft web UI and API on ")?;
            let address = rest.split_whitespace().next()?;
            address.starts_with("http://").then(|| address.to_string())
        },
    )
}
