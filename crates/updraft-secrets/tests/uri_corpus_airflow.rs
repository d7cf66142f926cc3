//! The URI corpus (`data/uri_corpus.json`) checked against Apache Airflow itself: its
//! `Connection(uri=...)` must read each URI as the corpus says and its `get_uri()` write each
//! connection as the corpus says (so the corpus, which `uri_corpus.rs` holds updraft to, is
//! Airflow's behaviour and not a guess).
//!
//! Uses the virtualenv the Airflow benchmark caches (`~/.cache/airflow-bench/venv-3.3.2`) when
//! it has Airflow; otherwise installs apache-airflow 3.3.2 into a virtualenv under the target
//! directory (a few minutes, once).

use std::path::{Path, PathBuf};
use std::process::Command;

const AIRFLOW_VERSION: &str = "3.3.2";

fn imports_airflow(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import airflow.models.connection"])
        .env(
            "AIRFLOW_HOME",
            std::env::temp_dir().join("updraft-airflow-probe"),
        )
        .output()
        .is_ok_and(|out| out.status.success())
}

fn run(command: &mut Command) {
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(status.success(), "{command:?} failed");
}

fn airflow_python() -> PathBuf {
    let cached = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(format!(
            ".cache/airflow-bench/venv-{AIRFLOW_VERSION}/bin/python"
        ));
    if imports_airflow(&cached) {
        return cached;
    }
    let venv =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("airflow-{AIRFLOW_VERSION}"));
    let python = venv.join("bin/python");
    if !imports_airflow(&python) {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
        run(Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "-q",
            &format!("apache-airflow=={AIRFLOW_VERSION}"),
        ]));
    }
    assert!(
        imports_airflow(&python),
        "Airflow is not importable from {}",
        python.display()
    );
    python
}

#[test]
fn the_corpus_is_what_apache_airflow_does() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(airflow_python())
        .arg(data.join("verify_uri_corpus.py"))
        .arg(data.join("uri_corpus.json"))
        .env("AIRFLOW_HOME", home.path())
        .env("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("0 differences"),
        "Airflow disagrees with the corpus:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
