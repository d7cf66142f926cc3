//! Apache Airflow's official Python client against `updraft standalone` with authentication
//! on: the script gets a token from `POST /auth/token` as Airflow 3's users do, and the
//! client's pydantic models must accept every response (see `airflow_client/check_api.py`).
//!
//! Needs Python 3 and PyPI: the client is installed into a virtual environment kept under
//! `target/` (made once). The test fails, never skips, when it cannot be installed.

mod common;
mod python;

use std::process::Command;
use std::time::Instant;

use common::Home;

#[test]
fn the_official_airflow_client_drives_the_api() {
    let venv = python::venv("airflow-client-venv", &["apache-airflow-client>=3.0,<4"]);
    let home = Home::new()
        .with_auth()
        .with_env("UPDRAFT__CORE__LOAD_EXAMPLES", "true")
        .with_env("UPDRAFT__CORE__DAGS_ARE_PAUSED_AT_CREATION", "true");
    home.create_user("operator", "client-password", "Admin");
    let service = home.start_standalone();
    let address = python::api_address(&service);
    // After the examples were written into the empty folder: a file that fails to load.
    home.write_dag("broken.yaml", "tasks: [\n");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/airflow_client/check_api.py"
    );
    let started = Instant::now();
    let output = Command::new(venv.join("bin/python"))
        .arg(script)
        .arg(&address)
        .args(["operator", "client-password"])
        .output()
        .expect("running the client script");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the client script failed ({}) after {:?}:\n{stdout}\n{}\n--- server ---\n{}",
        output.status,
        started.elapsed(),
        String::from_utf8_lossy(&output.stderr),
        service.output()
    );
    assert!(stdout.contains("official client checks passed"), "{stdout}");
}
