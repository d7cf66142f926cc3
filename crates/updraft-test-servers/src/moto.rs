//! An S3-compatible server: PyPI's `moto[server]`, installed into a virtualenv in the cache
//! folder on first use and started once per test binary.

use std::sync::OnceLock;

use crate::emulator::{self, ObjectServer, StoreKind};

/// The moto release the tests were written against.
const MOTO: &str = "moto[server]==5.2.5";

/// The S3 server of this test binary, started on first use.
pub fn moto() -> &'static ObjectServer {
    static SERVER: OnceLock<ObjectServer> = OnceLock::new();
    SERVER.get_or_init(start)
}

fn start() -> ObjectServer {
    let venv = emulator::installed("moto-5.2.5", |dir| {
        crate::emulator::python_venv(dir, &[MOTO])
    });
    let port = emulator::free_port();
    let log = emulator::log_path("moto");
    let running = emulator::start(
        &venv.join("bin/moto_server"),
        &[
            "-H".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
        ],
        port,
        log,
    );
    let endpoint = format!("http://127.0.0.1:{port}");
    let env = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "updraft-test"),
        ("AWS_SECRET_ACCESS_KEY", "updraft-test-secret"),
        ("AWS_REGION", "us-east-1"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .to_vec();
    ObjectServer {
        kind: StoreKind::S3,
        endpoint,
        env,
        running,
        create: create_bucket,
        upload: upload_object,
    }
}

/// moto accepts an unsigned path-style `PUT /<bucket>`.
fn create_bucket(server: &ObjectServer, name: &str) -> Result<(), String> {
    let (status, body) = emulator::request(server.port(), "PUT", &format!("/{name}"), &[], b"")
        .map_err(|e| e.to_string())?;
    match status {
        200 => Ok(()),
        _ => Err(format!("HTTP {status}: {body}")),
    }
}

/// An unsigned path-style `PUT /<bucket>/<key>`, which moto takes.
fn upload_object(
    server: &ObjectServer,
    bucket: &str,
    key: &str,
    body: &[u8],
) -> Result<(), String> {
    let path = format!("/{bucket}/{}", emulator::encode_key(key));
    let (status, answer) =
        emulator::request(server.port(), "PUT", &path, &[], body).map_err(|e| e.to_string())?;
    match status {
        200 => Ok(()),
        _ => Err(format!("HTTP {status}: {answer}")),
    }
}
